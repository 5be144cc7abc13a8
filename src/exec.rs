//! Stage 6 of the pipeline: replace this process with the real interpreter.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

/// Bit `fd` is set when standard descriptor `fd` (0, 1 or 2) was closed
/// when the process started.
static CLOSED_AT_START: AtomicU8 = AtomicU8::new(0);

/// Records which of the standard descriptors 0-2 are closed. Must run
/// before the Rust runtime starts, which reopens closed ones on
/// `/dev/null`: the `kolosal-python` binary registers it in `.init_array`.
/// The exec closes them again, so the program gets the descriptors the
/// launcher got (`sys.stdin is None` under `<&-`, as with plain python).
pub extern "C" fn note_closed_std_fds() {
    let mut closed = 0u8;
    for fd in 0..3 {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            closed |= 1 << fd;
        }
    }
    CLOSED_AT_START.store(closed, Ordering::Relaxed);
}

/// What the exec changes in the child's environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExecEnv {
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
pub(crate) fn exec_python(
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
    let closed = CLOSED_AT_START.load(Ordering::Relaxed);
    if closed != 0 {
        // SAFETY: close(2) is async-signal-safe and runs in this process
        // just before execve; the descriptors closed are the /dev/null
        // ones the runtime opened in place of closed ones.
        unsafe {
            cmd.pre_exec(move || {
                for fd in 0..3 {
                    if closed & (1 << fd) != 0 {
                        libc::close(fd);
                    }
                }
                Ok(())
            });
        }
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
