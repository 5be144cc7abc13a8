//! Stage 4 of the pipeline: applies the [`crate::pyc`] rules to a set of
//! modules, in parallel. Filled in by the compiler work (issue 4).
