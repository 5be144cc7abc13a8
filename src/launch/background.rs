//! Finishing a launch's compile after the program has started.
//!
//! On a first run, about half of a large closure is only reachable through
//! imports inside function bodies ([`crate::closure::graph::ClosureModule::lazy`]):
//! the program does not import those modules while it starts, if ever.
//! Compiling them before exec would make the first start wait for work the
//! interpreter may never need. So the launcher compiles the module-level
//! closure first, execs, and leaves the rest to a background run of itself:
//!
//! 1. The launcher records the manifest with the lazy pycs' `__pycache__`
//!    directories marked pending ([`crate::manifest::Expect::Pending`]), so
//!    no launch trusts them before they are written.
//! 2. It takes this launch key's background lock (`<digest>.bg` next to the
//!    manifests; if someone holds it, a background run is already on its
//!    way and nothing is started), then starts `kolosal-python` again with
//!    the same argv, working directory and environment, plus
//!    `KOLOSAL_INTERNAL_BACKGROUND=run`, as a grandchild
//!    ([`spawn_detached`]: fork, fork, exec; the middle process exits at
//!    once and is reaped here), in its own process group with stdin,
//!    stdout and stderr on `/dev/null`. The lock's descriptor is handed
//!    down to it. So the background run is nobody's child (not the
//!    program's: a program reaping "any child" never sees it) and never
//!    the terminal's (Ctrl-C does not reach it), and the launch waits for
//!    two `fork`s, not for an `exec`.
//! 3. (A launcher of an earlier build started a `detach` step first, which
//!    started the run and exited: [`detach`] still does that.)
//! 4. The background run lowers its priority (`nice` 10, inherited by its
//!    compile workers), finds the manifest's pending entries through the
//!    repair path, compiles what is still stale under the usual cache lock,
//!    re-stamps the manifest, and exits. It never execs the program.
//!
//! A launch that ran on the probe cache's guess (a venv made again at the
//! same path, `prepare::hand_over`) records no manifest and starts a
//! background run whatever it deferred: that run finds the old venv's
//! manifest stale (or none), takes the cold path (the probe, the closure
//! from the real facts, every pyc still stale) and records the manifest the
//! launch did not.
//!
//! The background run stores the manifest under the key's store lock
//! ([`STORE_LOCK`]), which the learner holds across its compare and rename.
//!
//! The `.bg` lock is held from step 2 until the background run exits, so
//! anything that needs the compile to be over (a test, a benchmark's
//! clean-up) can wait with `flock <cache>/manifests/<digest>.bg true`.
//!
//! `KOLOSAL_BACKGROUND=0` turns this off: everything is compiled before
//! exec. If the background run never happens (the container stops first),
//! the pending marks send the next launch to the repair path, which does
//! the work then.

use super::error::StartError;
use crate::manifest::LaunchKey;
use nix::fcntl::{Flock, FlockArg};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The variable that tells `kolosal-python` which background stage it is.
pub(crate) const STAGE_VAR: &str = "KOLOSAL_INTERNAL_BACKGROUND";

/// Which part a `kolosal-python` process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// A normal launch: ends in exec.
    Launch,
    /// Step 3: start the background run and exit (what a launcher of an
    /// earlier build starts; this one starts [`Stage::Run`] itself).
    Detach,
    /// Step 4: compile what the launch left, then exit.
    Run,
    /// The learner (`launch::learn`): watch the program, record what it loaded, exit.
    Learn,
}

impl Stage {
    /// The stage this process was started for, from [`STAGE_VAR`].
    pub(crate) fn from_env() -> Stage {
        match std::env::var_os(STAGE_VAR)
            .as_deref()
            .and_then(|v| v.to_str())
        {
            Some("detach") => Stage::Detach,
            Some("run") => Stage::Run,
            Some("learn") => Stage::Learn,
            _ => Stage::Launch,
        }
    }
}

/// `<cache>/manifests/<digest>.<ext>`: a lock that belongs to one launch
/// key (`bg`: its background run, `learn`: its learner).
pub(super) fn key_lock_path(key: &LaunchKey, ext: &str) -> Option<PathBuf> {
    crate::cache::cache_subdir("manifests")
        .ok()
        .map(|d| d.join(format!("{}.{ext}", key.digest())))
}

/// Takes the `ext` lock of `key` without waiting; `Ok(None)` when someone
/// else holds it. The file is opened as every lock in the cache is
/// ([`crate::cache::create_private`]).
pub(super) fn try_key_lock(key: &LaunchKey, ext: &str) -> Result<Option<Flock<File>>, StartError> {
    let file = key_lock_file(key, ext)?;
    Ok(Flock::lock(file, FlockArg::LockExclusiveNonblock).ok())
}

/// The `ext` lock file of `key`, opened as every lock in the cache is
/// ([`crate::cache::create_private`]).
fn key_lock_file(key: &LaunchKey, ext: &str) -> Result<File, StartError> {
    let path = key_lock_path(key, ext).ok_or(StartError::NoCache)?;
    crate::cache::create_private(&path).map_err(|source| StartError::Lock { path, source })
}

/// The lock every manifest store of a background run or a learner is made
/// under (`<digest>.store`): the learner holds it from its check that the
/// manifest on disk is still the one it merged into until its rename, so a
/// background run's store cannot land in between and be overwritten by a
/// manifest that still marks its `__pycache__` directories pending. Never
/// taken by a launch (nothing in the launch waits for a background process)
/// nor held while anything but a store runs.
pub(super) const STORE_LOCK: &str = "store";

/// Takes the `ext` lock of `key`, waiting for it; `None` when the lock
/// file cannot be opened or locked (the caller goes on without it).
pub(super) fn wait_key_lock(key: &LaunchKey, ext: &str) -> Option<Flock<File>> {
    let mut file = key_lock_file(key, ext).ok()?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Some(lock),
            Err((f, nix::errno::Errno::EINTR)) => file = f,
            Err(_) => return None,
        }
    }
}

/// How long a learner waits for a pending background run of its launch
/// before it reads the manifest anyway.
pub(super) const BACKGROUND_WAIT: Duration = Duration::from_secs(60);

/// How often that wait looks at the lock.
const BACKGROUND_POLL: Duration = Duration::from_millis(20);

/// Returns once no background run of `key` is pending, or after `limit`
/// (at once when none is: no lock file, or one nobody holds).
pub(super) fn wait_until_done(key: &LaunchKey, limit: Duration) {
    let Some(Ok(mut file)) = key_lock_path(key, "bg").map(|p| crate::cache::open_private(&p))
    else {
        return;
    };
    let start = std::time::Instant::now();
    loop {
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if start.elapsed() < limit => {
                file = f;
                std::thread::sleep(BACKGROUND_POLL);
            }
            _ => return,
        }
    }
}

/// Step 2: starts the background run for this launch unless one is already
/// pending for `key`. `argv0` is passed on unchanged: it decides which
/// interpreter name discovery looks for (a `python3.11` shim link), so the
/// background run finds the same interpreter and the same manifest.
/// Returns whether one was started.
pub(crate) fn start(
    key: &LaunchKey,
    argv0: Option<&OsStr>,
    args: &[OsString],
) -> Result<bool, StartError> {
    let Some(lock) = try_key_lock(key, "bg")? else {
        return Ok(false);
    };
    let exe = std::env::current_exe().map_err(StartError::CurrentExe)?;
    // The lock's descriptor passes to the background run (close-on-exec
    // cleared in it alone), not to the program this process execs.
    spawn_detached(
        &exe,
        argv0.unwrap_or(exe.as_os_str()),
        args,
        "run",
        None,
        &[lock.as_raw_fd()],
    )?;
    // Our descriptor closes with this process's exec (close-on-exec); the
    // background run keeps its own. Dropping the Flock would unlock the
    // shared open file description for the background run too.
    std::mem::forget(lock);
    Ok(true)
}

/// Whether a process this launcher leaves behind would become the
/// program's child. A detached background run is re-parented to the
/// nearest child subreaper, or to PID 1: when the program itself is PID 1
/// (a container's entrypoint) or a subreaper, it would inherit a child it
/// never created (`os.wait()` returning a foreign PID, zombies). Then
/// nothing may be left to run after exec.
pub(crate) fn orphans_reach_program() -> bool {
    if std::process::id() == 1 {
        return true;
    }
    let mut flag: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int through the pointer,
    // which points at a live local.
    let rc = unsafe {
        libc::prctl(
            libc::PR_GET_CHILD_SUBREAPER,
            &mut flag as *mut libc::c_int as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    rc == 0 && flag != 0
}

/// Step 3: starts the background run (inheriting the lock) and returns.
pub(crate) fn detach() -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_else(|| exe.clone().into_os_string());
    Command::new(&exe)
        .arg0(argv0)
        .args(argv)
        .env(STAGE_VAR, "run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
}

/// Step 4's set-up: lower this process's priority (its workers inherit
/// it) and drop [`STAGE_VAR`] so nothing started from here sees it.
pub(crate) fn enter_run() {
    // SAFETY: setpriority(2) on this process; no memory is involved.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
    std::env::remove_var(STAGE_VAR);
}

/// Starts `kolosal-python` again as a grandchild (the background run or
/// the learner): fork, fork again, exec. The middle process exits at once
/// and is reaped here, so the grandchild is nobody's child (not the
/// program's, which this process becomes) and the launch waits for two
/// `fork`s, not for an `exec`. It runs in its own process group with stdio
/// on `/dev/null`, with this process's environment plus `stage`
/// ([`STAGE_VAR`]) and, for a learner, its `handoff`
/// (`learn::HANDOFF_VAR`); `keep` are the descriptors it inherits
/// (close-on-exec cleared in it alone, at most three).
pub(super) fn spawn_detached(
    exe: &Path,
    argv0: &OsStr,
    args: &[OsString],
    stage: &str,
    handoff: Option<&str>,
    keep: &[RawFd],
) -> Result<(), StartError> {
    use super::learn::HANDOFF_VAR;
    use std::ffi::CString;
    let c = |b: &[u8]| CString::new(b).map_err(StartError::Nul);
    // Everything the child needs is allocated before fork.
    let path = c(exe.as_os_str().as_bytes())?;
    let mut argv = vec![c(argv0.as_bytes())?];
    for a in args {
        argv.push(c(a.as_bytes())?);
    }
    let mut envp = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k == STAGE_VAR || k == HANDOFF_VAR {
            continue;
        }
        let mut kv = k.into_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        envp.push(c(&kv)?);
    }
    envp.push(c(format!("{STAGE_VAR}={stage}").as_bytes())?);
    if let Some(handoff) = handoff {
        envp.push(c(format!("{HANDOFF_VAR}={handoff}").as_bytes())?);
    }
    let argv_p: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp_p: Vec<*const libc::c_char> = envp
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(StartError::DevNull)?;
    let null_fd = null.as_raw_fd();
    let keep: [RawFd; 3] = [
        keep.first().copied().unwrap_or(-1),
        keep.get(1).copied().unwrap_or(-1),
        keep.get(2).copied().unwrap_or(-1),
    ];
    // SAFETY: between fork and exec/_exit the children call only
    // async-signal-safe functions (fork, setpgid, dup2, fcntl, execve,
    // _exit) on memory prepared above.
    unsafe {
        let child = libc::fork();
        if child < 0 {
            return Err(StartError::Fork(std::io::Error::last_os_error()));
        }
        if child == 0 {
            if libc::fork() == 0 {
                libc::setpgid(0, 0);
                for fd in 0..3 {
                    libc::dup2(null_fd, fd);
                }
                for fd in keep {
                    if fd >= 0 {
                        libc::fcntl(fd, libc::F_SETFD, 0);
                    }
                }
                libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
                libc::_exit(127);
            }
            libc::_exit(0);
        }
        let mut status = 0;
        while libc::waitpid(child, &mut status, 0) < 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
    }
    Ok(())
}
