//! Stage 3 of the pipeline: the import closure of an entry.
//!
//! * [`resolve`]: the importlib-exact resolver (which file `import NAME` loads).

pub mod resolve;
