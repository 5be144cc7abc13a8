//! Stage 3 of the pipeline: the import closure of an entry.
//!
//! * [`scan`]: the token-level import scanner.
//! * [`resolve`]: the importlib-exact resolver (which file `import NAME` loads).
//! * [`import_cache`]: per-file scan results persisted across runs.

pub mod import_cache;
pub mod resolve;
pub mod scan;
