//! Stage 3 of the pipeline: the import closure of an entry.
//!
//! * [`scan`]: the token-level import scanner.
//! * `resolve`: the importlib-exact resolver (which file `import NAME` loads).
//! * `graph`: the closure walk (scan + resolve, breadth-first, in parallel).
//! * `import_cache`: per-file scan results persisted across runs.
//! * `listing`: directory listings as far as imports can tell them apart.

pub(crate) mod graph;
pub(crate) mod import_cache;
pub(crate) mod listing;
pub(crate) mod resolve;
pub(crate) mod scan;

pub use graph::{
    compute, compute_learned, compute_persisted, Closure, ClosureModule, ClosureOptions, Entry,
    Learned, LearnedRoot, Origin, Via,
};
pub use import_cache::ImportCache;
pub use resolve::{resolve_relative, ModuleKind, Resolver};
pub use scan::{scan, ImportFlags, ImportStmt};
