//! Stage 3 of the pipeline: the import closure of an entry.
//!
//! * [`scan`]: the token-level import scanner.
//! * [`resolve`]: the importlib-exact resolver (which file `import NAME` loads).
//! * [`graph`]: the closure walk (scan + resolve, breadth-first, in parallel).
//! * [`import_cache`]: per-file scan results persisted across runs.
//! * [`listing`]: directory listings as far as imports can tell them apart.

pub mod graph;
pub mod import_cache;
pub mod listing;
pub mod resolve;
pub mod scan;
