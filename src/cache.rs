//! kolosal's own cache directory, who may write it, and the safe way to
//! read and write inside it.
//!
//! The directory is `$KOLOSAL_CACHE_DIR`, else `<user cache dir>/kolosal`
//! (`~/.cache/kolosal` on Linux). It is created with mode 0700.
//!
//! What is read back from it decides which code runs: a manifest carries
//! environment variables for the exec, the fallback pycache holds pycs the
//! interpreter will load. So the cache is used only when nobody but this
//! user (or root) can have written it ([`trusted_root`]):
//!
//! * the cache directory and each of its subdirectories is owned by the
//!   effective uid and is not group- or world-writable;
//! * every ancestor up to `/` is owned by the effective uid or root, and is
//!   not group- or world-writable unless it has the sticky bit (`/tmp`):
//!   in a sticky directory nobody else can rename or remove an entry we
//!   own, and an entry someone else created first fails the owner check.
//!
//! A cache that fails these checks is refused with one warning and the
//! launch carries on without a cache. Every file is opened without
//! following symlinks and checked for its type and owner
//! ([`open_private`], [`create_private`]); every write goes to a unique
//! temporary name and is renamed into place ([`write_atomic`]), so a reader
//! never sees a torn file. A cache entry that is in the way (a directory
//! where a file belongs) is removed, so the cache heals itself.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Group- and world-write bits.
const GROUP_OR_WORLD_WRITE: u32 = 0o022;
/// The sticky bit (`S_ISVTX`).
const STICKY: u32 = 0o1000;

/// The cache root as configured, without creating or checking it. `None`
/// when no home or cache dir is known and `KOLOSAL_CACHE_DIR` is unset.
pub(crate) fn cache_root() -> Option<PathBuf> {
    match std::env::var_os("KOLOSAL_CACHE_DIR") {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => dirs::cache_dir().map(|d| d.join("kolosal")),
    }
}

/// The cache root, created (0700) if missing, when it and the path to it
/// pass the ownership checks (see the module docs). Decided once per
/// process; a refusal prints one warning (at `KOLOSAL_LOG=warn` or above)
/// and every later call returns the same error.
pub(crate) fn trusted_root() -> io::Result<PathBuf> {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let verdict = ROOT.get_or_init(|| {
        let verdict = check_root();
        if let Err(e) = &verdict {
            // A cache someone else could have written is worth a warning;
            // a cache that cannot be created (no HOME, a read-only home in
            // a container) is an ordinary set-up, said at debug level.
            let log = crate::log::Log::from_env();
            if e.contains(REFUSED) {
                log.warn(format_args!("cache not used: {e}"));
            } else {
                log.debug(format_args!("no cache: {e}"));
            }
        }
        verdict
    });
    verdict
        .clone()
        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))
}

fn check_root() -> Result<PathBuf, String> {
    let root = cache_root()
        .ok_or_else(|| "no cache directory: set KOLOSAL_CACHE_DIR or HOME".to_string())?;
    let root = if root.is_absolute() {
        root
    } else {
        std::env::current_dir()
            .map_err(|e| format!("{}: {e}", root.display()))?
            .join(root)
    };
    ensure_private_dir_following(&root).map_err(|e| e.to_string())?;
    // Judge, and from now on use, the directory the path really names: a
    // symlink on the way that someone swaps later cannot redirect us.
    let root = fs::canonicalize(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    trusted_path(&root).map_err(|e| e.to_string())?;
    Ok(root)
}

/// `trusted_root()/sub`, created (mode 0700) if needed and checked like the
/// root. Fails when the cache is refused or `sub` is not a private
/// directory of this user.
pub(crate) fn cache_subdir(sub: &str) -> io::Result<PathBuf> {
    let dir = trusted_root()?.join(sub);
    ensure_private_dir(&dir)?;
    Ok(dir)
}

/// `trusted_root()/sub` when it already exists as a private directory of
/// this user; nothing is created (the warm path's read-only view).
pub(crate) fn existing_subdir(sub: &str) -> io::Result<PathBuf> {
    let dir = trusted_root()?.join(sub);
    check_private_dir(&dir, &fs::symlink_metadata(&dir)?)?;
    Ok(dir)
}

/// Checks `dir` and each ancestor (see the module docs). `dir` must be
/// absolute.
pub(crate) fn trusted_path(dir: &Path) -> io::Result<()> {
    check_private_dir(dir, &fs::symlink_metadata(dir)?)?;
    trusted_ancestry(dir, 1)
}

/// The one ownership walk behind the cache's rule ([`trusted_path`]) and
/// the `.venv` rule (`interpreter::dotvenv_trust`), in the spirit of git's
/// `safe.directory`: `real` and every ancestor must be owned by the
/// effective user or root. The first `strict` of them (`real` is depth 0)
/// must also be writable by neither group nor others; further up, such a
/// directory is accepted only when it is sticky (`/tmp`) and the entry
/// below it is the user's or root's, which nobody else can then rename or
/// replace.
///
/// `real` must be canonical (no symlink in it): each step is lstat'ed,
/// never followed.
pub(crate) fn trusted_ancestry(real: &Path, strict: usize) -> io::Result<()> {
    let euid = euid();
    // The owner of the entry below the directory being checked.
    let mut child_owner = None;
    for (depth, dir) in real.ancestors().enumerate() {
        let m = fs::symlink_metadata(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        if m.uid() != euid && m.uid() != 0 {
            return Err(refused(
                dir,
                &format!("is owned by uid {}, not by you or root", m.uid()),
            ));
        }
        let open = m.mode() & GROUP_OR_WORLD_WRITE != 0;
        let sticky_over_ours =
            m.mode() & STICKY != 0 && child_owner.is_some_and(|o| o == euid || o == 0);
        if open && (depth < strict || !sticky_over_ours) {
            return Err(refused(
                dir,
                &format!("is writable by other users (mode {:o})", m.mode() & 0o7777),
            ));
        }
        child_owner = Some(m.uid());
    }
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700, then checks that
/// `dir` is a private directory of this user (not a symlink, owned by the
/// effective uid, no group or world access for writing).
pub(crate) fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            fs::symlink_metadata(dir)?
        }
        Err(e) => return Err(e),
    };
    check_private_dir(dir, &meta)
}

/// [`ensure_private_dir`] for the configured root, which may be reached
/// through a symlink (checked afterwards by its canonical path).
fn ensure_private_dir_following(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", dir.display()),
        )),
        Err(_) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
    }
}

fn check_private_dir(dir: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if meta.file_type().is_symlink() {
        return Err(refused(dir, "is a symlink"));
    }
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", dir.display()),
        ));
    }
    if meta.uid() != euid() {
        return Err(refused(dir, "is owned by another user"));
    }
    if meta.mode() & GROUP_OR_WORLD_WRITE != 0 {
        return Err(refused(dir, "can be written by other users"));
    }
    Ok(())
}

/// The effective uid: who kolosal acts as.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Ends the message of every ownership or permission refusal.
const REFUSED: &str = "(refused: another user could write it)";

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} {why} {REFUSED}", path.display()),
    )
}

/// Opens a cache file for reading: never through a symlink, never blocking
/// on a FIFO, and only when it is a regular file that this user (or root)
/// owns and nobody else can write.
pub(crate) fn open_private(path: &Path) -> io::Result<File> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    check_private_file(path, &file)?;
    Ok(file)
}

/// [`open_private`], then the whole contents.
pub(crate) fn read_private(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = open_private(path)?;
    let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Opens (creating it, mode 0600) a cache file that is used in place, such
/// as a lock file: never through a symlink, never blocking, and only when
/// what was opened is a regular file of this user. Something else in the
/// way (a directory, a FIFO) is removed once and the open retried.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let open = || {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
    };
    let file = match open() {
        Ok(f) if check_private_file(path, &f).is_ok() => return Ok(f),
        Ok(f) => f,
        Err(e) => {
            if !clear_in_the_way(path)? {
                return Err(e);
            }
            return open().and_then(|f| check_private_file(path, &f).map(|()| f));
        }
    };
    // A regular file of someone else's (or with loose permissions) inside
    // our own private directory: replace it.
    drop(file);
    if !clear_in_the_way(path)? {
        return Err(refused(path, "is not a private file of this user"));
    }
    let file = open()?;
    check_private_file(path, &file)?;
    Ok(file)
}

fn check_private_file(path: &Path, file: &File) -> io::Result<()> {
    let m = file.metadata()?;
    let euid = euid();
    if !m.file_type().is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    if m.uid() != euid && m.uid() != 0 {
        return Err(refused(path, "is owned by another user"));
    }
    if m.permissions().mode() & GROUP_OR_WORLD_WRITE != 0 {
        return Err(refused(path, "can be written by other users"));
    }
    Ok(())
}

/// Removes whatever is at `path` (a directory tree, a symlink, a FIFO, a
/// foreign file) so a cache file can take its place. Only ever called for
/// paths inside the trusted cache. Returns whether something was removed.
fn clear_in_the_way(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map(|()| true),
        Ok(_) => fs::remove_file(path).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` atomically: a unique temporary file in the same
/// directory (mode 0600), then `rename`. A concurrent reader sees the old
/// file or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] for contents produced piece by piece: `fill` writes
/// them through a buffer straight into the temporary file, so a large file
/// is never held in memory whole. A directory in the way at `path` (a
/// cache entry that became one) is removed and the rename retried.
pub(crate) fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), unique()));
    let result = (|| {
        // create_new is O_EXCL: it never follows a symlink at `tmp`.
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        let mut w = io::BufWriter::with_capacity(64 << 10, f);
        fill(&mut w)?;
        w.flush()?;
        drop(w);
        match fs::rename(&tmp, path) {
            // rename(2) replaces a symlink or file, but not a directory.
            Err(_) if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) => {
                fs::remove_dir_all(path)?;
                fs::rename(&tmp, path)
            }
            other => other,
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (N.fetch_add(1, Ordering::Relaxed) << 32) ^ t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_checks() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        ensure_private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        trusted_path(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o770)).unwrap();
        assert!(ensure_private_dir(&d).is_err());
        assert!(trusted_path(&d).is_err());
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        // A group-writable ancestor without the sticky bit taints the path.
        fs::set_permissions(t.path().join("a"), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(trusted_path(&d).is_err());
        // With the sticky bit, an entry of ours inside it is safe.
        fs::set_permissions(t.path().join("a"), fs::Permissions::from_mode(0o1777)).unwrap();
        trusted_path(&d).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(ensure_private_dir(&link).is_err());
    }

    #[test]
    fn in_the_way_entries_are_replaced() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("entry");
        fs::create_dir_all(p.join("sub")).unwrap();
        write_atomic(&p, b"x").unwrap();
        assert_eq!(read_private(&p).unwrap(), b"x");
        let lock = t.path().join("l.lock");
        fs::create_dir(&lock).unwrap();
        create_private(&lock).unwrap();
        assert!(fs::symlink_metadata(&lock).unwrap().is_file());
    }

    #[test]
    fn symlinks_and_fifos_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        let link = t.path().join("x.lock");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        // The dangling link is replaced, never followed.
        create_private(&link).unwrap();
        assert!(!victim.exists());
        assert!(fs::symlink_metadata(&link).unwrap().is_file());
        // Reading through a symlink fails.
        fs::write(&victim, b"v").unwrap();
        let l2 = t.path().join("l2");
        std::os::unix::fs::symlink(&victim, &l2).unwrap();
        assert!(read_private(&l2).is_err());
        // A FIFO is refused without blocking.
        let fifo = t.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(read_private(&fifo).is_err());
    }
}
