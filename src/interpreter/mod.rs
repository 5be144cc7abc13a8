//! Stage 2 of the pipeline: which real interpreter runs, and its facts.
//!
//! * [`discover()`]: the interpreter and the rule that chose it;
//! * `pyenv`: pyenv shims resolved without running bash;
//! * [`facts_for`]: the interpreter's [`PythonFacts`], probed once and cached.

pub(crate) mod discover;
pub(crate) mod facts;
pub(crate) mod probe;
pub(crate) mod probe_cache;
pub(crate) mod pyenv;

pub use discover::{
    discover, dotvenv_trust, DiscoverError, DiscoverRequest, Discovered, FileId, Rule,
};
pub use facts::PythonFacts;
pub use probe::{run_probe, ProbeConfig, ProbeError, FACT_ENV_VARS};
/// The probe's text, for the differential tests that run it by hand.
#[doc(hidden)]
pub use probe::{PROBE_PROLOGUE, PROBE_SCRIPT};
pub use probe_cache::{
    facts_for, facts_for_report, facts_in, known_unsupported, CacheReport, CacheStatus,
};
pub(crate) use probe_cache::{known_facts, Known};
pub use pyenv::is_executable_file;
