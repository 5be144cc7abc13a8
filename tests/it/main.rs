//! The integration tests, one binary (`cargo test --test it`): each module
//! is one suite. Every suite drives real interpreters (see [`common`]) and
//! prints which ones it ran on. The heavy suites (PyPI installs, whole
//! stdlib sweeps, every interpreter) are `#[ignore]`d unless the `heavy`
//! feature is on: `cargo test --features heavy`, as `.ci/run` does.

mod common;

mod argv_differential;
mod cache_trust;
mod cli_ci;
mod closure_runtime;
mod code_cache;
mod code_cache_restore;
mod compile_cli;
mod compile_pool;
mod compile_safety;
mod compileall_parity;
mod dropin;
mod install_shims;
mod interpreter_discovery;
mod interpreter_trust;
mod launcher_concurrency;
mod launcher_e2e;
mod launcher_passthrough;
mod learned_run;
mod learned_trace;
mod probe_cheaper;
mod probe_guess;
mod pyc_differential;
mod reliability_cases;
mod reliability_fuzz;
mod resolve_differential;
mod scan_fuzz;
mod scan_snapshot;
mod scan_vs_ast;
mod startup_files;
mod uv_run;
mod wheel;
