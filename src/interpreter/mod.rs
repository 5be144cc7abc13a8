//! Stage 2 of the pipeline: which real interpreter runs, and its facts.

pub mod facts;
pub mod probe;

pub use facts::PythonFacts;
pub use probe::{run_probe, ProbeConfig, ProbeError};
