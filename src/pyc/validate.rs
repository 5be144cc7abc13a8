//! Would the source loader use this pyc? `SourceLoader.get_code`'s decision,
//! made without running Python and reading only the pyc's header.

use super::header::{parse_header, validate_timestamp, PycKind};
pub use super::reason::StaleReason;
use super::{source_hash, HashCheckMode, PycRules};
use std::fs::{Metadata, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The loader's decision about one pyc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The loader would unmarshal this pyc.
    Fresh,
    /// The loader would compile the source instead.
    Stale(StaleReason),
}

impl From<Result<(), StaleReason>> for Verdict {
    /// `Ok` is [`Verdict::Fresh`]; `Err(reason)` is stale for that reason.
    fn from(decision: Result<(), StaleReason>) -> Verdict {
        match decision {
            Ok(()) => Verdict::Fresh,
            Err(reason) => Verdict::Stale(reason),
        }
    }
}

impl Verdict {
    /// True for [`Verdict::Fresh`].
    pub fn is_fresh(&self) -> bool {
        matches!(self, Verdict::Fresh)
    }
}

/// Checks `pyc` against `source` exactly as `SourceLoader.get_code` would
/// under `--check-hash-based-pycs mode`. Stats the source, reads the pyc's
/// header, and reads the source only when a hash must be checked.
pub fn check(source: &Path, pyc: &Path, rules: &PycRules, mode: HashCheckMode) -> Verdict {
    // get_code: `st = self.path_stats(source_path)` (os.stat, follows symlinks)
    match std::fs::metadata(source) {
        Ok(meta) => check_with_meta(source, &meta, pyc, rules, mode),
        Err(_) => Verdict::Stale(StaleReason::SourceUnreadable),
    }
}

/// The fewest body bytes (after the header) a pyc can have: the smallest
/// marshalled module code object is 71 bytes (3.6/3.7, empty module, empty
/// file name); 48 leaves a margin for future layouts.
pub const MIN_BODY: usize = 48;

/// marshal's `TYPE_CODE` (`'c'`); the `FLAG_REF` bit (0x80) may be set.
const TYPE_CODE: u8 = b'c';
const FLAG_REF: u8 = 0x80;

/// [`check`], and also that the pyc could be loaded: its body is at least
/// [`MIN_BODY`] bytes long and starts with marshal's code-object type byte.
///
/// This is kolosal's policy, not the loader's: importlib accepts such a pyc
/// by its header and then fails the import. A pyc reported
/// [`StaleReason::CorruptBody`] is rewritten by kolosal, so the program
/// runs where bare `python` would raise. Costs nothing measurable: the same
/// single `read`, of `header + MIN_BODY` bytes instead of the header.
// mirrors importlib._bootstrap_external._compile_bytecode (marshal.loads
// must yield a code object) in its cheapest necessary condition
pub fn check_loadable(source: &Path, pyc: &Path, rules: &PycRules, mode: HashCheckMode) -> Verdict {
    match std::fs::metadata(source) {
        Ok(meta) => check_loadable_with_meta(source, &meta, pyc, rules, mode),
        Err(_) => Verdict::Stale(StaleReason::SourceUnreadable),
    }
}

/// [`check_loadable`] with the source's metadata (`std::fs::metadata`,
/// following symlinks) already in hand.
pub fn check_loadable_with_meta(
    source: &Path,
    source_meta: &Metadata,
    pyc: &Path,
    rules: &PycRules,
    mode: HashCheckMode,
) -> Verdict {
    decide(source, source_meta, pyc, rules, mode, true).into()
}

/// [`check`] with the source's metadata (`std::fs::metadata`, following
/// symlinks) already in hand.
///
/// The loader also unmarshals the body of a pyc whose header passes; a
/// corrupt body makes the import fail rather than recompile, so it is not a
/// staleness this function reports (it reads only the header).
// mirrors importlib._bootstrap_external.SourceLoader.get_code (the part that
// decides between `_compile_bytecode(pyc)` and `source_to_code(source)`)
pub fn check_with_meta(
    source: &Path,
    source_meta: &Metadata,
    pyc: &Path,
    rules: &PycRules,
    mode: HashCheckMode,
) -> Verdict {
    decide(source, source_meta, pyc, rules, mode, false).into()
}

fn decide(
    source: &Path,
    source_meta: &Metadata,
    pyc: &Path,
    rules: &PycRules,
    mode: HashCheckMode,
    body: bool,
) -> Result<(), StaleReason> {
    if !source_meta.is_file() {
        return Err(StaleReason::NotRegularFile);
    }
    let mut buf = [0u8; 16 + MIN_BODY];
    let hl = rules.header_len();
    let want = if body { hl + MIN_BODY } else { hl };
    let n = read_header(pyc, &mut buf[..want])?;
    decide_read(source, source_meta, &buf[..n], rules, mode, body)
}

/// [`check_loadable`] for a caller that already read the start of the pyc
/// (`read`: up to `header_len + MIN_BODY` bytes, fewer when the file is
/// shorter) and stat'ed the source: one read per pyc for callers that also
/// look at the header themselves.
pub(crate) fn check_loadable_read(
    source: &Path,
    source_meta: &Metadata,
    read: &[u8],
    rules: &PycRules,
    mode: HashCheckMode,
) -> Verdict {
    let decided = if source_meta.is_file() {
        decide_read(source, source_meta, read, rules, mode, true)
    } else {
        Err(StaleReason::NotRegularFile)
    };
    decided.into()
}

/// The decision once the pyc's first bytes are in `read`.
fn decide_read(
    source: &Path,
    source_meta: &Metadata,
    read: &[u8],
    rules: &PycRules,
    mode: HashCheckMode,
    body: bool,
) -> Result<(), StaleReason> {
    let hl = rules.header_len();
    let want = if body { hl + MIN_BODY } else { hl };
    let n = read.len().min(want);
    let buf = read;
    let header = parse_header(&buf[..n.min(hl)], rules)?;
    let header_ok = match header.kind {
        PycKind::Timestamp { mtime, size } => validate_timestamp(
            mtime,
            size,
            super::mtime_seconds(source_meta),
            source_meta.len(),
            rules,
        ),
        PycKind::Hash { checked, hash } => {
            if !hash_must_be_checked(checked, mode) {
                Ok(())
            } else {
                let bytes = read_source(source)?;
                // mirrors importlib._bootstrap_external._validate_hash_pyc
                if source_hash(rules, &bytes) == hash {
                    Ok(())
                } else {
                    Err(StaleReason::Hash)
                }
            }
        }
    };
    header_ok?;
    if body && (n < want || buf[hl] & !FLAG_REF != TYPE_CODE) {
        return Err(StaleReason::CorruptBody);
    }
    Ok(())
}

/// Whether a hash-based pyc is compared with its source.
// mirrors get_code: `_imp.check_hash_based_pycs != 'never' and
// (check_source or _imp.check_hash_based_pycs == 'always')`
pub(crate) fn hash_must_be_checked(checked: bool, mode: HashCheckMode) -> bool {
    match mode {
        HashCheckMode::Never => false,
        HashCheckMode::Always => true,
        HashCheckMode::Default => checked,
    }
}

/// Opens `path` for reading as kolosal opens every pyc (and a source whose
/// hash it checks): without blocking (`O_NONBLOCK`: a FIFO there has no
/// writer and must not hang the launch), and only if it is a regular file
/// (`fstat` on what was opened, so a file swapped in between cannot slip
/// through). Symlinks are followed, as importlib follows them.
pub(crate) fn open_regular(path: &Path) -> Result<std::fs::File, StaleReason> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) {
                StaleReason::Missing
            } else {
                StaleReason::Unreadable
            }
        })?;
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        Ok(_) => Err(StaleReason::NotRegularFile),
        Err(_) => Err(StaleReason::Unreadable),
    }
}

/// The invalidation mode importlib uses when it rewrites the stale pyc at
/// `pyc`: mirrors the write at the end of `SourceLoader.get_code`, which
/// keeps an existing hash-based pyc hash-based (with its `check_source`
/// flag) and otherwise writes a timestamp pyc. A missing or unreadable pyc,
/// or one from another version, gives a timestamp pyc. The pyc is read
/// as every pyc is (`read_header`: never blocking, so a
/// FIFO there cannot hang the launch; anything but a regular file counts as
/// unreadable).
pub fn rewrite_mode(pyc: &std::path::Path, rules: &PycRules) -> crate::pyc::InvalidationMode {
    use crate::pyc::InvalidationMode;
    let mut buf = [0u8; 16];
    let n = read_header(pyc, &mut buf).unwrap_or(0);
    match parse_header(&buf[..n], rules) {
        Ok(h) => h.kind.mode(),
        Err(_) => InvalidationMode::Timestamp,
    }
}

/// Reads up to `buf.len()` bytes from the start of `pyc`; returns how many.
/// One `open`, one `fstat` and (on a local filesystem) one `read`, through
/// [`open_regular`]: a FIFO, device or directory never blocks and is
/// reported as [`StaleReason::NotRegularFile`].
pub(crate) fn read_header(pyc: &Path, buf: &mut [u8]) -> Result<usize, StaleReason> {
    let mut file = open_regular(pyc)?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(StaleReason::Unreadable),
        }
    }
    Ok(n)
}

/// The whole of a source file whose hash must be checked, read through
/// [`open_regular`].
fn read_source(source: &Path) -> Result<Vec<u8>, StaleReason> {
    let mut file = open_regular(source).map_err(|_| StaleReason::SourceUnreadable)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|_| StaleReason::SourceUnreadable)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn rules() -> PycRules {
        PycRules {
            version: (3, 12),
            magic: [7, 7, b'\r', b'\n'],
            cache_tag: Some("t".into()),
        }
    }

    #[test]
    fn file_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m.py");
        fs::write(&src, b"x = 1\n").unwrap();
        let r = rules();
        let v = |pyc: &Path| check(&src, pyc, &r, HashCheckMode::Default);
        assert_eq!(
            v(&dir.path().join("nope.pyc")),
            Verdict::Stale(StaleReason::Missing)
        );
        assert_eq!(
            v(&src.join("below-a-file.pyc")),
            Verdict::Stale(StaleReason::Missing)
        );
        assert_eq!(v(dir.path()), Verdict::Stale(StaleReason::NotRegularFile));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(v(&fifo), Verdict::Stale(StaleReason::NotRegularFile));
        assert_eq!(
            check(dir.path(), &src, &r, HashCheckMode::Default),
            Verdict::Stale(StaleReason::NotRegularFile)
        );
        assert_eq!(
            check(
                &dir.path().join("gone.py"),
                &src,
                &r,
                HashCheckMode::Default
            ),
            Verdict::Stale(StaleReason::SourceUnreadable)
        );
    }

    #[test]
    fn hash_modes() {
        use HashCheckMode::*;
        assert!(!hash_must_be_checked(true, Never));
        assert!(hash_must_be_checked(true, Default));
        assert!(!hash_must_be_checked(false, Default));
        assert!(hash_must_be_checked(false, Always));
    }
}
