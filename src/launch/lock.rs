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

use crate::manifest::LaunchKey;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A held lock; released on drop (and by the kernel if the process dies).
pub struct CacheLock {
    _lock: Flock<File>,
}

/// Blocks until the lock for this cache is held. `None` when there is no
/// usable cache directory: the caller compiles without a lock.
pub fn lock_cache(python: &Path, optimize: u32, prefix: Option<&Path>) -> Option<CacheLock> {
    use std::os::unix::ffi::OsStrExt;
    let mut key = LaunchKey::new();
    key.part(python.as_os_str().as_bytes())
        .part(&optimize.to_le_bytes());
    key.opt_part(prefix.map(|p| p.as_os_str().as_bytes()));
    let dir = crate::cache::cache_subdir("locks").ok()?;
    let path = dir.join(format!("{}.lock", key.digest()));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .ok()?;
    Flock::lock(file, FlockArg::LockExclusive)
        .ok()
        .map(|l| CacheLock { _lock: l })
}
