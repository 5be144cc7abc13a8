//! One compile at a time per pyc cache.
//!
//! Many launches of one app at once (container replicas on a shared volume,
//! a process manager starting workers) must not compile the same files at
//! the same moment. The cold path takes an exclusive `flock` on a lock file
//! named after the cache (interpreter, optimisation level, pycache prefix)
//! before compiling; whoever waited re-checks freshness afterwards and
//! usually finds nothing left to do. Pycs are written by rename, so even
//! without the lock no reader could see a torn file: the lock only saves
//! duplicate work.
//!
//! The wait is bounded ([`LOCK_WAIT_LIMIT`]): a holder that is stuck (or
//! just slow) never keeps a launch from starting its program; the waiter
//! gives up and the program runs without precompiling. The lock file is
//! opened without following a symlink and without blocking (a FIFO planted
//! there), and used only when it is a regular file owned by this user.

use crate::manifest::LaunchKey;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest a launch waits for another launch's compile to release the lock.
pub(super) const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(10);

/// First pause between two tries to take a busy lock; it doubles up to
/// [`LOCK_POLL_MAX`].
const LOCK_POLL_MIN: Duration = Duration::from_millis(1);

/// Longest pause between two tries to take a busy lock.
const LOCK_POLL_MAX: Duration = Duration::from_millis(50);

/// Set once a wait in this process ran out: a second attempt (the cold path
/// after a failed repair) gives up at once instead of waiting again.
static GAVE_UP: AtomicBool = AtomicBool::new(false);

/// A held lock; released on drop (and by the kernel if the process dies).
pub(super) struct CacheLock {
    _lock: Flock<File>,
    /// Another process held it first: what it compiled meanwhile must be
    /// checked again. Taken at the first try, nobody was compiling when the
    /// caller's check ran moments before (one who started and finished in
    /// between only makes the caller write the same pycs again).
    pub(super) waited: bool,
}

/// What [`lock_cache`] got.
pub(super) enum Locked {
    /// The lock is held until this is dropped.
    Held(CacheLock),
    /// No usable lock (no cache directory, a lock path that is a symlink,
    /// not a regular file or not ours): compile without it.
    Unavailable,
    /// Another process held the lock for [`LOCK_WAIT_LIMIT`]: do not
    /// compile, run the program.
    Busy,
}

/// Takes the lock for this cache, waiting at most [`LOCK_WAIT_LIMIT`].
pub(super) fn lock_cache(python: &Path, optimize: u32, prefix: Option<&Path>) -> Locked {
    use std::os::unix::ffi::OsStrExt;
    let mut key = LaunchKey::new();
    key.part(python.as_os_str().as_bytes())
        .part(&optimize.to_le_bytes());
    key.opt_part(prefix.map(|p| p.as_os_str().as_bytes()));
    let Ok(dir) = crate::cache::cache_subdir("locks") else {
        return Locked::Unavailable;
    };
    match open_lock_file(&dir.join(format!("{}.lock", key.digest()))) {
        Some(file) => wait_for(file, LOCK_WAIT_LIMIT),
        None => Locked::Unavailable,
    }
}

/// Opens (creating it 0600 if needed) the lock file at `path` with
/// [`crate::cache::create_private`]: never through a symlink (a dangling
/// link planted there must not create a file elsewhere), never blocking on
/// a FIFO, and only as a regular file of this user; whatever else is in the
/// way inside the private cache is replaced.
fn open_lock_file(path: &Path) -> Option<File> {
    crate::cache::create_private(path).ok()
}

/// Polls for the exclusive lock on `file` (`LOCK_NB`, backing off from
/// [`LOCK_POLL_MIN`] to [`LOCK_POLL_MAX`]) until it is held or `limit` has
/// passed.
fn wait_for(file: File, limit: Duration) -> Locked {
    let deadline = Instant::now() + limit;
    let mut pause = LOCK_POLL_MIN;
    let mut file = file;
    let mut waited = false;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                return Locked::Held(CacheLock {
                    _lock: lock,
                    waited,
                })
            }
            Err((f, Errno::EINTR)) => file = f,
            Err((f, Errno::EWOULDBLOCK)) => {
                waited = true;
                let now = Instant::now();
                if now >= deadline || GAVE_UP.load(Ordering::Relaxed) {
                    GAVE_UP.store(true, Ordering::Relaxed);
                    return Locked::Busy;
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(LOCK_POLL_MAX);
                file = f;
            }
            Err(_) => return Locked::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_waited_for_a_bounded_time() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("x.lock");
        let holder = open_lock_file(&path).unwrap();
        let _held = Flock::lock(holder, FlockArg::LockExclusive).unwrap();
        let start = Instant::now();
        let got = wait_for(open_lock_file(&path).unwrap(), Duration::from_millis(200));
        assert!(matches!(got, Locked::Busy));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        GAVE_UP.store(false, Ordering::Relaxed);
    }

    #[test]
    fn links_fifos_and_foreign_files_are_replaced_never_followed() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("elsewhere");
        let link = t.path().join("link.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_lock_file(&link).is_some());
        assert!(
            !target.exists(),
            "a dangling link must not create its target"
        );
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        let fifo = t.path().join("fifo.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(open_lock_file(&fifo).is_some());
        assert!(std::fs::symlink_metadata(&fifo).unwrap().is_file());
        let plain = t.path().join("plain.lock");
        assert!(open_lock_file(&plain).is_some());
        if crate::cache::euid() == 0 {
            std::os::unix::fs::chown(&plain, Some(12345), None).unwrap();
            assert!(open_lock_file(&plain).is_some());
            assert_eq!(std::fs::metadata(&plain).unwrap().uid(), 0);
        }
    }
}
