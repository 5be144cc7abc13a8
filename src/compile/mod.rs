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
//! Workers run under the launched program's warning filters
//! (`warning_flags`) and record what compiling each file shows: the
//! launcher leaves a module that warns to the interpreter
//! ([`OnWarning::LeaveToInterpreter`]: no pyc, so the program shows or raises
//! exactly what python would); `kolosal compile` writes it and prints the
//! warning, as compileall does ([`OnWarning::WriteAndReport`]).
//!
//! [`compile_all`] is the entry point; see `pool` for the scheduling rules
//! (worker count, load balancing, time-outs, crash retries). Before any
//! worker starts, every job the [`code_cache`] can serve is written from
//! it (no process); the workers return the bodies they compile cleanly, which
//! go into the cache for the next tree.

pub mod code_cache;
pub mod plan;
pub(crate) mod pool;
pub(crate) mod protocol;

pub use pool::{compile_all, worker_count};

use crate::argv::LaunchSpec;
use crate::pyc::PycTarget;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The worker script, embedded in the binary (runs on CPython 3.6+; hash-based
/// pycs need 3.7+).
pub(crate) const WORKER_SCRIPT: &str = include_str!("worker.py");

/// Longest time one file may take in a worker before it is killed (uv's
/// figure). The one place this time-out is written.
pub(crate) const WORKER_TIMEOUT: Duration = Duration::from_secs(60);

/// What a worker does with a module whose compilation shows a warning (or
/// raises one turned into an error) under its warning filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnWarning {
    /// Write no pyc and report [`Outcome::LeftToInterpreter`]: the program's
    /// own interpreter then compiles the module in process and shows (or
    /// raises) exactly what plain `python` would. The launcher's choice.
    LeaveToInterpreter,
    /// Write the pyc and report the warnings' text
    /// ([`Outcome::WrittenWarned`]), as `compileall` writes the pyc and lets
    /// the warning print. `kolosal compile`'s choice.
    WriteAndReport,
}

/// One pyc to write: a [`PycTarget`] (which it dereferences to) and how to
/// compile it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileJob {
    /// The source file, as importlib would name it (it becomes the code
    /// object's `co_filename`), and the exact pyc path to write (its
    /// `__pycache__` is created if needed).
    pub pyc: PycTarget,
    /// Optimisation level (`compile(..., optimize=N)`); 0 for no `-O`.
    pub optimize: u32,
    /// How the pyc is tied to its source.
    pub invalidation: crate::pyc::InvalidationMode,
}

impl std::ops::Deref for CompileJob {
    type Target = PycTarget;
    fn deref(&self) -> &PycTarget {
        &self.pyc
    }
}

impl AsRef<PycTarget> for CompileJob {
    fn as_ref(&self) -> &PycTarget {
        &self.pyc
    }
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
    /// Interpreter flags that change the code objects or the warning
    /// filters, placed after `-I -S` (e.g. `-X no_debug_ranges` on 3.11+,
    /// `-X utf8`, the launch's `warning_flags`).
    pub extra_flags: Vec<OsString>,
    /// What to do with a module whose compilation warns.
    pub on_warning: OnWarning,
    /// Testing only: lets the worker honour fault-injection hooks keyed on
    /// source file names (`kolosal_hook_crash_first`, `..._crash_always`,
    /// `..._exit_always`, `..._hang`); turns the code cache off, so every
    /// job reaches a worker. Never set it in production.
    pub test_hooks: bool,
}

impl PoolConfig {
    /// A config for `python` with automatic worker count, the
    /// `WORKER_TIMEOUT` per file, no extra flags (default warning
    /// filters), and modules that warn left to the interpreter.
    pub fn new(python: impl Into<PathBuf>) -> Self {
        PoolConfig {
            python: python.into(),
            workers: 0,
            timeout: WORKER_TIMEOUT,
            extra_flags: Vec::new(),
            on_warning: OnWarning::LeaveToInterpreter,
            test_hooks: false,
        }
    }
}

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The pyc was written.
    Written,
    /// The pyc was written although compiling showed warnings
    /// ([`OnWarning::WriteAndReport`] only).
    WrittenWarned {
        /// The warnings as the interpreter would print them
        /// (`warnings.formatwarning`), newline-terminated.
        warnings: String,
    },
    /// Compiling showed a warning, or raised one turned into an error, under
    /// the launch's warning filters ([`OnWarning::LeaveToInterpreter`]): no
    /// pyc was written, so the interpreter compiles the module itself and
    /// the user sees what plain `python` shows.
    LeftToInterpreter {
        /// The source.
        path: PathBuf,
        /// The warnings as printed (empty when one was raised as an error).
        warnings: String,
    },
    /// `compile()` refused the source with something other than a
    /// `SyntaxError` (NUL bytes before 3.12: `ValueError`; nesting too deep:
    /// `MemoryError`, `RecursionError`); no pyc was written.
    Rejected {
        /// `"<path>: <ExceptionType>: <msg> (raised by compile())"`.
        message: String,
    },
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
            Outcome::WrittenWarned { warnings } => {
                format!("written, with warnings: {}", first_line(warnings))
            }
            Outcome::LeftToInterpreter { path, warnings } => format!(
                "{}: left to the interpreter (it warns): {}",
                path.display(),
                first_line(warnings)
            ),
            Outcome::Rejected { message } => message.clone(),
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

    /// True when a pyc was written ([`Outcome::Written`],
    /// [`Outcome::WrittenWarned`]).
    pub fn is_written(&self) -> bool {
        matches!(self, Outcome::Written | Outcome::WrittenWarned { .. })
    }

    /// True when no pyc was written because of the source itself: a syntax
    /// error, `compile()` refusing it otherwise ([`Outcome::Rejected`]), or
    /// a warning under the launch's filters
    /// ([`Outcome::LeftToInterpreter`]). The interpreter reports these
    /// itself when the program imports the module, so the launcher need not
    /// say anything. False for kolosal's own failures (unwritable target,
    /// time-out, crashed worker). Decided by the worker's reply status.
    pub fn is_source_error(&self) -> bool {
        match self {
            Outcome::SyntaxError { .. }
            | Outcome::Rejected { .. }
            | Outcome::LeftToInterpreter { .. } => true,
            Outcome::Failed { .. } | Outcome::Written | Outcome::WrittenWarned { .. } => false,
        }
    }
}

/// The first line of `text`, trimmed (for one-line descriptions).
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

/// The interpreter flags that give a worker the warning filters the
/// launched program will have, so that a module compiles in the worker with
/// the warnings it would show in the program.
///
/// The worker runs under `-I`, which ignores `PYTHONWARNINGS`, and dev mode
/// would also slow it down (debug allocators); so every entry of
/// `sys.warnoptions` that CPython derives from the environment and from
/// `-X dev` goes on the command line as a `-W`, in CPython's order (see
/// [`LaunchSpec::warn_options`]), and `-b`/`-bb` are passed as they are:
/// CPython adds their `BytesWarning` filter last itself.
// mirrors config_init_warnoptions (Python/initconfig.c): the worker's
// sys.warnoptions equal the program's.
pub(crate) fn warning_flags(spec: &LaunchSpec) -> Vec<OsString> {
    let mut flags = Vec::with_capacity(spec.warn_options.len() * 2 + 1);
    match spec.bytes_warning {
        0 => {}
        1 => flags.push(OsString::from("-b")),
        _ => flags.push(OsString::from("-bb")),
    }
    for option in &spec.warn_options {
        flags.push(OsString::from("-W"));
        flags.push(option.clone());
    }
    flags
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

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Spawn { error, .. } => Some(error),
            PoolError::Handshake { .. } => None,
        }
    }
}
