//! Stage 5 of the pipeline: a pool of target-interpreter workers that write
//! pycs. Filled in by the compiler work (issue 4).

pub mod plan;
