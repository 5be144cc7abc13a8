//! Stage 6 of the pipeline: replace this process with the real interpreter.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// What the exec changes in the child's environment.
#[derive(Debug, Clone, Default)]
pub struct ExecEnv {
    /// Set `PYTHONDONTWRITEBYTECODE=1` (kolosal already wrote the pycs).
    pub dont_write_bytecode: bool,
    /// Extra variables to set (for example a fallback `PYTHONPYCACHEPREFIX`).
    pub set: Vec<(OsString, OsString)>,
}

/// Replaces the current process with `program`, passing `argv0` as
/// `argv[0]` and `args` unchanged after it.
///
/// `argv0` should be the interpreter's unresolved path (for example a venv's
/// `bin/python` symlink): CPython derives `sys.executable` and `sys.prefix`
/// from it, so resolving the symlink would lose the venv.
///
/// Only returns on failure, with the error from `execve`.
pub fn exec_python(
    program: &Path,
    argv0: &OsStr,
    args: &[OsString],
    env: &ExecEnv,
) -> std::io::Error {
    let mut cmd = Command::new(program);
    cmd.arg0(argv0).args(args);
    if env.dont_write_bytecode {
        cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    }
    for (k, v) in &env.set {
        cmd.env(k, v);
    }
    cmd.exec()
}

/// Puts SIGPIPE back to its default action.
///
/// Rust's runtime ignores SIGPIPE before `main`, and an ignored signal stays
/// ignored across `execve`: without this the interpreter (and every program
/// it starts) would inherit a disposition plain `python` never gets, and the
/// `kolosal` CLI would panic on `kolosal info | head` instead of exiting.
pub fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
