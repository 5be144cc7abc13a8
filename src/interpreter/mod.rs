//! Stage 2 of the pipeline: which real interpreter runs, and its facts.
//!
//! * [`discover()`]: the interpreter and the rule that chose it;
//! * [`pyenv`]: pyenv shims resolved without running bash;
//! * [`facts_for`]: the interpreter's [`PythonFacts`], probed once and cached.

pub mod discover;
pub mod facts;
pub mod probe;
pub mod probe_cache;
pub mod pyenv;

pub use discover::{discover, DiscoverError, DiscoverRequest, Discovered, FileId, Rule};
pub use facts::PythonFacts;
pub use probe::{run_probe, ProbeConfig, ProbeError};
pub use probe_cache::{facts_for, facts_for_report, known_unsupported, CacheReport, CacheStatus};
