//! kolosal: start Python programs fast.
//!
//! The launcher (`kolosal-python`) runs a pipeline whose stages are the
//! modules of this crate, in order:
//!
//! ```text
//! argv ─► interpreter ─► closure ─► freshness ─► compile ─► exec
//! ```
//!
//! * [`argv`]: CPython's command-line model, turning argv + environment into a
//!   [`argv::LaunchSpec`].
//! * [`interpreter`]: which real interpreter runs, and its probed facts.
//! * [`closure`]: the import closure of the entry (scanner + importlib-exact resolver).
//! * [`pyc`]: CPython's pyc rules (cache paths, header validation, source hashes).
//! * [`freshness`]: applies the [`pyc`] rules to a set of modules, in parallel.
//! * [`compile`]: a pool of target-interpreter workers that write fresh pycs.
//! * [`exec`]: replaces this process with the real interpreter.
//!
//! [`launch`] strings the stages together for `kolosal-python`: its hot path
//! checks a [`manifest`] of file stamps and execs at once when it holds; its
//! cold path runs every stage and records a new one. [`knobs`] reads the
//! `KOLOSAL_*` environment, [`log`] writes diagnostics (stderr only), and
//! [`cache`] owns kolosal's cache directory.
//!
//! The `kolosal` binary (management CLI) is built from [`cli`].

#![warn(missing_docs)]

pub mod argv;
mod binfmt;
pub mod cache;
pub mod cli;
pub mod closure;
pub mod compile;
pub mod exec;
pub mod freshness;
pub mod interpreter;
pub mod knobs;
pub mod launch;
pub mod log;
pub mod manifest;
pub mod pyc;
mod sync;
