//! kolosal: start Python programs fast.
//!
//! The launcher (`kolosal-python`) runs a pipeline whose stages are the
//! modules of this crate, in order:
//!
//! ```text
//! argv ─► interpreter ─► closure ─► freshness ─► compile ─► exec
//! ```
//!
//! The library's public surface is what a tool needs to do the same work
//! by hand; each module re-exports a handful of items:
//!
//! | to … | use |
//! |---|---|
//! | read a command line as CPython would | [`argv::parse`] → [`argv::LaunchSpec`] |
//! | find and describe an interpreter | [`interpreter::discover`], [`interpreter::facts_for`] → [`interpreter::PythonFacts`] |
//! | compute an entry's import closure | [`closure::compute`] with [`closure::Entry`] and [`closure::ClosureOptions`] |
//! | check one pyc exactly as importlib would | [`pyc::check`] with [`pyc::PycRules`] → [`pyc::Verdict`] |
//! | check many at once | [`freshness::check_all`] → [`freshness::Freshness`] |
//! | find a tree's sources and their pycs | [`compile::plan::find_sources`], [`compile::plan::targets`] |
//! | compile a set of sources | [`compile::compile_all`] with [`compile::PoolConfig`] and [`compile::CompileJob`]s |
//! | clean | [`pyc::source_from_cache`] (which source a pyc belongs to) |
//! | the shared code cache | [`compile::code_cache::stats`], [`compile::code_cache::prune`] |
//!
//! [`knobs`] reads the `KOLOSAL_*` environment and [`log`] writes
//! diagnostics (stderr only). Everything else is private: the launcher's
//! hot and cold paths (`launch`, hidden, public only for the two binaries),
//! the manifest of file stamps it checks (`manifest`, hidden, public for the
//! fuzz tests), kolosal's cache directory and its trust rules (`cache`), and
//! the final `execv` (`exec`).
//!
//! The `kolosal` management CLI (clap) lives beside its binary in
//! `src/bin/kolosal/`, and uses only this public surface.

#![warn(missing_docs, unreachable_pub)]

pub mod argv;
mod binfmt;
pub(crate) mod cache;
pub mod closure;
pub mod compile;
pub(crate) mod exec;
pub mod freshness;
pub mod interpreter;
pub mod knobs;
#[doc(hidden)]
pub mod launch;
pub mod log;
#[doc(hidden)]
pub mod manifest;
pub mod pyc;
mod sync;
