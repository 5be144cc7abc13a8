//! Stage 3 of the pipeline: the import closure of an entry. Filled in by the
//! closure work (issue 3).

pub mod scan;
