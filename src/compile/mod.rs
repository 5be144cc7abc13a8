//! Stage 5 of the pipeline: a pool of target-interpreter workers that write
//! pycs.
//!
//! Only the target interpreter can produce its own marshalled code, so each
//! worker is a long-lived process of that interpreter (`python -I -S
//! [extra flags] -c worker.py`) that compiles one file per request and
//! writes the pyc exactly as `py_compile.compile` does (temp file +
//! `os.replace`, mode = source mode | 0o200, refusing symlink and
//! non-regular targets), with the optimisation level and invalidation mode
//! given explicitly for every file.
//!
//! [`compile_all`] is the entry point; see [`pool`] for the scheduling rules
//! (worker count, load balancing, time-outs, crash retries).

pub mod plan;
pub mod pool;
pub mod protocol;

pub use pool::{compile_all, worker_count};

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The worker script, embedded in the binary (runs on CPython 3.6+; hash-based
/// pycs need 3.7+).
pub const WORKER_SCRIPT: &str = include_str!("worker.py");

/// What the worker appends to a failure raised by `compile()` itself (not
/// a `SyntaxError`); see [`Outcome::is_source_error`].
const REJECTED_BY_COMPILE: &str = " (raised by compile())";

/// One pyc to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileJob {
    /// The source file, as importlib would name it (it becomes the code
    /// object's `co_filename`).
    pub source: PathBuf,
    /// The exact pyc path to write (its `__pycache__` is created if needed).
    pub cfile: PathBuf,
    /// Optimisation level (`compile(..., optimize=N)`); 0 for no `-O`.
    pub optimize: u32,
    /// How the pyc is tied to its source.
    pub invalidation: crate::pyc::InvalidationMode,
}

/// How to run the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// The target interpreter.
    pub python: PathBuf,
    /// Number of worker processes; 0 picks one from the amount of work and
    /// the available parallelism (see [`worker_count`]).
    pub workers: usize,
    /// Longest time one file may take; a worker exceeding it is killed and
    /// the file reported as timed out.
    pub timeout: Duration,
    /// Interpreter flags that change the code objects, placed after
    /// `-I -S` (e.g. `-X no_debug_ranges` on 3.11+, `-X utf8`).
    pub extra_flags: Vec<OsString>,
    /// Testing only: lets the worker honour fault-injection hooks keyed on
    /// source file names (`kolosal_hook_crash_first`, `..._crash_always`,
    /// `..._exit_always`, `..._hang`). Never set it in production.
    pub test_hooks: bool,
}

impl PoolConfig {
    /// A config for `python` with automatic worker count, a 60 s per-file
    /// time-out (uv's figure) and no extra flags.
    pub fn new(python: impl Into<PathBuf>) -> Self {
        PoolConfig {
            python: python.into(),
            workers: 0,
            timeout: Duration::from_secs(60),
            extra_flags: Vec::new(),
            test_hooks: false,
        }
    }
}

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The pyc was written.
    Written,
    /// The source does not compile; no pyc was written.
    SyntaxError {
        /// The file the error is in (normally the job's source).
        path: PathBuf,
        /// 1-based line, when the compiler reported one.
        line: Option<u32>,
        /// `"<ExceptionType>: <msg>"`, e.g. `"SyntaxError: invalid syntax"`.
        message: String,
    },
    /// Anything else (refused or unwritable target, unreadable source,
    /// time-out, worker crash): one line starting with the source path.
    Failed {
        /// The explanation.
        message: String,
    },
}

impl Outcome {
    /// One line for the user: `path:line: message` for syntax errors (the
    /// form compilers and editors understand), the message otherwise.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Written => "written".to_string(),
            Outcome::SyntaxError {
                path,
                line: Some(line),
                message,
            } => format!("{}:{line}: {message}", path.display()),
            Outcome::SyntaxError {
                path,
                line: None,
                message,
            } => format!("{}: {message}", path.display()),
            Outcome::Failed { message } => message.clone(),
        }
    }

    /// True for [`Outcome::Written`].
    pub fn is_written(&self) -> bool {
        matches!(self, Outcome::Written)
    }

    /// True when the source itself does not compile: a syntax error, or
    /// `compile()` refusing it otherwise (NUL bytes before 3.12, nesting too
    /// deep: `ValueError`, `MemoryError`, `RecursionError`). The interpreter
    /// reports these itself when the program imports the module, so the
    /// launcher need not say anything. False for kolosal's own failures
    /// (unwritable target, time-out, crashed worker).
    pub fn is_source_error(&self) -> bool {
        match self {
            Outcome::SyntaxError { .. } => true,
            Outcome::Failed { message } => message.ends_with(REJECTED_BY_COMPILE),
            Outcome::Written => false,
        }
    }
}

/// The pool could not run at all: no worker process could be started.
#[derive(Debug)]
pub enum PoolError {
    /// The interpreter could not be executed.
    Spawn {
        /// The interpreter.
        python: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// It started but did not become a worker (exited, printed something
    /// else, or stayed silent).
    Handshake {
        /// The interpreter.
        python: PathBuf,
        /// What went wrong, with the last line of its stderr when there is one.
        detail: String,
    },
}

impl PoolError {
    fn python(&self) -> &Path {
        match self {
            PoolError::Spawn { python, .. } | PoolError::Handshake { python, .. } => python,
        }
    }
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolError::Spawn { error, .. } => write!(
                f,
                "cannot start {} to compile bytecode: {error}; check that it is an executable Python",
                self.python().display()
            ),
            PoolError::Handshake { detail, .. } => write!(
                f,
                "{} cannot run the compile worker ({detail}); kolosal needs CPython 3.6 or newer",
                self.python().display()
            ),
        }
    }
}

impl std::error::Error for PoolError {}
