//! kolosal's own cache directory and the safe way to write into it.
//!
//! The directory is `$KOLOSAL_CACHE_DIR`, else `<user cache dir>/kolosal`
//! (`~/.cache/kolosal` on Linux). It is created with mode 0700. Every file in
//! it is written to a temporary name and renamed into place, so a reader
//! never sees a torn file; readers treat unreadable or foreign contents as
//! absent.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The cache root, without creating it. `None` when no home or cache dir is
/// known and `KOLOSAL_CACHE_DIR` is unset.
pub fn cache_root() -> Option<PathBuf> {
    match std::env::var_os("KOLOSAL_CACHE_DIR") {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => dirs::cache_dir().map(|d| d.join("kolosal")),
    }
}

/// `cache_root()/sub`, created (mode 0700) if needed. Fails when the path
/// exists but is not a directory.
pub fn cache_subdir(sub: &str) -> io::Result<PathBuf> {
    let root = cache_root().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no cache directory: set KOLOSAL_CACHE_DIR",
        )
    })?;
    let dir = root.join(sub);
    ensure_private_dir(&dir)?;
    Ok(dir)
}

/// Creates `dir` and its missing parents with mode 0700; an existing
/// directory is accepted as it is.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
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

/// Writes `bytes` to `path` atomically: a unique temporary file in the same
/// directory (mode 0600), then `rename`. A concurrent reader sees the old
/// file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] for contents produced piece by piece: `fill` writes
/// them through a buffer straight into the temporary file, so a large file
/// is never held in memory whole.
pub fn write_atomic_with(
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
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut w = io::BufWriter::with_capacity(64 << 10, f);
        fill(&mut w)?;
        w.flush()?;
        drop(w);
        fs::rename(&tmp, path)
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
