//! The code cache: compiled code bodies shared by every tree, venv and
//! image that holds the same source bytes.
//!
//! A code body does not depend on where its source lives except through
//! `co_filename` (`SourceLoader.get_code` even fixes that up at load with
//! `_imp._fix_co_filename`). So a body compiled once is reused for any
//! copy of the same source, provided everything else that shapes it is
//! the same. An entry's key is SHA-256 over:
//!
//! * the interpreter's identity: magic number, `major.minor` and the full
//!   `sys.version` string (the exact build: 3.11.2 and 3.11.7 share a
//!   magic number, two builds of one version differ in date and compiler),
//!   as the worker reports it in its greeting;
//! * the optimisation level;
//! * the worker's flags (`PoolConfig::extra_flags`): `-X no_debug_ranges`
//!   and the launch's warning filters. Workers run under `-I`, so no
//!   environment variable reaches `compile()`;
//! * SHA-256 of the source bytes, as the worker read them.
//!
//! Rules:
//!
//! * **What enters**: the body of a pyc a worker wrote, returned by the
//!   worker itself with the hash of the bytes it compiled (never read back
//!   from the tree), and only when compiling showed no warning under the
//!   worker's filters. Since the filters are part of the key, a hit is a
//!   source that compiles cleanly under the launch's filters, so a module
//!   the launcher must leave to the interpreter (it warns) never comes
//!   from the cache. Warning filters that name a module (`-W
//!   a:m:C:module`) match on the file name, which the key does not cover:
//!   the cache is not used under them.
//! * **What comes out**: header for the target file (timestamp or hash
//!   mode, as the job asks: `src/pyc` rules) + the body with its
//!   `co_filename` rewritten to the new path (`marshal`), so the pyc is
//!   byte for byte what the interpreter would write there. A source that
//!   contains its own path as bytes is compiled (a string constant equal
//!   to the filename may share its object). Not for sourceless (`--legacy`)
//!   pycs, nor paths that are not UTF-8, nor interpreters before 3.7.
//! * **Safety**: entries live in `cache_subdir("code")` (refused, with one
//!   warning, when another user could write it), are written atomically
//!   (temp + rename: concurrent writers of one key write the same bytes),
//!   carry their key and a SHA-256 of the body, and are read without
//!   following symlinks. A torn, truncated or garbage entry is deleted and
//!   the source compiled. Pycs go into the tree through a temp file and
//!   `rename`, never through a symlink, with `_calc_mode`'s mode.
//! * **Size**: past `KOLOSAL_CODE_CACHE_SIZE` the least recently used
//!   entries go (a hit refreshes an entry's mtime at most once an hour).
//!
//! A hit starts no process; the interpreter identity is remembered per
//! binary (path, device, inode, size, mtime, ctime), learned from the
//! first worker's greeting.

pub(crate) mod marshal;

use super::{CompileJob, PoolConfig};
use crate::pyc::{self, InvalidationMode, PycRules};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// Starts every entry file.
const ENTRY_MAGIC: &[u8; 16] = b"KOLOSAL-CODE\x01\0\0\0";
/// Entry header: magic, key, SHA-256 of the body, u64 body length.
const ENTRY_HEADER: usize = 16 + 32 + 32 + 8;
/// A hit refreshes its entry's mtime (the LRU clock) when older than this.
const TOUCH_AFTER: Duration = Duration::from_secs(3600);
/// An automatic prune runs at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Pruning stops at this fraction of the cap, so it does not run on every
/// compile that adds an entry.
const PRUNE_TO_PERCENT: u64 = 90;

/// The interpreter build a body was compiled by, as the worker greets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// `importlib.util.MAGIC_NUMBER`.
    pub magic: [u8; 4],
    /// `sys.version_info[:2]`.
    pub version: (u32, u32),
    /// `sys.version`.
    pub build: String,
}

impl Identity {
    /// Parses what follows the hello prefix: `<magic hex> <major.minor>
    /// <hex of sys.version>`.
    pub(crate) fn from_hello(rest: &[u8]) -> Option<Identity> {
        let text = std::str::from_utf8(rest).ok()?;
        let mut parts = text.split(' ');
        let magic = unhex(parts.next()?)?;
        let (major, minor) = parts.next()?.split_once('.')?;
        let build = String::from_utf8(unhex(parts.next()?)?).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Identity {
            magic: magic.try_into().ok()?,
            version: (major.parse().ok()?, minor.parse().ok()?),
            build,
        })
    }

    fn to_hello(&self) -> String {
        format!(
            "{} {}.{} {}",
            hex(&self.magic),
            self.version.0,
            self.version.1,
            hex(self.build.as_bytes())
        )
    }

    /// The pyc rules the restored headers follow.
    pub(crate) fn rules(&self) -> PycRules {
        PycRules {
            version: self.version,
            magic: self.magic,
            cache_tag: None,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What [`CodeCache::restore`] did with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restore {
    /// The pyc was written from the cache.
    Written,
    /// Not from the cache: the job goes to a worker.
    Miss {
        /// The source's size when the restore got as far as reading it (so
        /// the pool need not stat it again to order the jobs).
        source_len: Option<u64>,
    },
}

/// Counters of one [`CodeCache`]'s use.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Pycs written from the cache.
    pub restored: AtomicUsize,
    /// Bodies added.
    pub stored: AtomicUsize,
    /// Entries found damaged (and removed).
    pub damaged: AtomicUsize,
    /// Bytes added.
    pub stored_bytes: AtomicU64,
}

/// The code cache as one compile run uses it.
#[derive(Debug)]
pub(crate) struct CodeCache {
    dir: PathBuf,
    cap: u64,
    /// Where this binary's identity is remembered.
    record: PathBuf,
    identity: OnceLock<Identity>,
    /// Digest of the worker flags.
    flags: [u8; 32],
    /// A worker greeted with another identity than the recorded one.
    mismatch: std::sync::atomic::AtomicBool,
    /// Use counters.
    pub counters: Counters,
}

/// The cache directory (`<kolosal cache>/code`), created if needed; `None`
/// when the cache is refused or cannot be created.
pub fn dir() -> Option<PathBuf> {
    crate::cache::cache_subdir("code").ok()
}

/// Whether a warning filter given as `-W` names a module (its fourth
/// field), which compile-time warnings match against the file name.
fn names_a_module(flags: &[OsString]) -> bool {
    flags.windows(2).any(|w| {
        w[0] == "-W"
            && w[1]
                .as_bytes()
                .split(|&b| b == b':')
                .nth(3)
                .is_some_and(|m| !m.iter().all(u8::is_ascii_whitespace))
    })
}

impl CodeCache {
    /// The cache for compiles with `config`, or `None` when it is off
    /// (`KOLOSAL_CODE_CACHE_SIZE=0`), refused, or unusable with these
    /// flags. Never with fault-injection hooks: they act in a worker.
    pub(crate) fn open(config: &PoolConfig) -> Option<CodeCache> {
        let cap = crate::knobs::Knobs::from_env().code_cache_size;
        if cap == 0 || config.test_hooks || names_a_module(&config.extra_flags) {
            return None;
        }
        let dir = dir()?;
        let mut h = Sha256::new();
        h.update(b"kolosal worker flags 1\0");
        for f in &config.extra_flags {
            h.update((f.len() as u64).to_le_bytes());
            h.update(f.as_bytes());
        }
        let flags = h.finalize().into();
        let record = dir.join("interp").join(binary_key(&config.python)?);
        let cache = CodeCache {
            dir,
            cap,
            record,
            identity: OnceLock::new(),
            flags,
            mismatch: Default::default(),
            counters: Counters::default(),
        };
        if let Some(id) = crate::cache::read_private(&cache.record)
            .ok()
            .and_then(|b| Identity::from_hello(&b))
        {
            let _ = cache.identity.set(id);
        }
        Some(cache)
    }

    /// The interpreter's identity, when known (from an earlier run's
    /// worker or this run's).
    pub(crate) fn identity(&self) -> Option<&Identity> {
        self.identity.get()
    }

    /// Records what a worker's greeting says. A binary that changed in
    /// place without its stamp changing (it cannot, short of a clock set
    /// back) would be corrected here too.
    pub(crate) fn learn(&self, id: Identity) {
        let fresh = match self.identity.get() {
            Some(known) if *known == id => return,
            // The record was wrong (it cannot be, short of a clock set
            // back): correct it, and add nothing more this run.
            Some(_) => {
                self.mismatch.store(true, Ordering::Relaxed);
                id
            }
            None => match self.identity.set(id.clone()) {
                Ok(()) => id,
                Err(_) => return self.learn(id),
            },
        };
        if let Some(parent) = self.record.parent() {
            let _ = crate::cache::ensure_private_dir(parent);
        }
        let _ = crate::cache::write_atomic(&self.record, fresh.to_hello().as_bytes());
    }

    fn key(&self, id: &Identity, optimize: u32, source_sha: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"kolosal code cache 1\0");
        h.update(id.to_hello().as_bytes());
        h.update(b"\0");
        h.update(self.flags);
        h.update(optimize.to_le_bytes());
        h.update(source_sha);
        h.finalize().into()
    }

    fn entry_path(&self, key: &[u8; 32]) -> PathBuf {
        let k = hex(key);
        self.dir.join(&k[..2]).join(&k[2..])
    }

    /// Writes `job`'s pyc from the cache. [`Restore::Written`] when it did;
    /// a miss sends the job to a worker (no entry, no identity yet, a
    /// damaged entry, or anything unusual about the paths, which the worker
    /// then reports exactly as it would have).
    pub(crate) fn restore(&self, job: &CompileJob) -> Restore {
        let mut source_len = None;
        let written = self.try_restore(job, &mut source_len).is_some();
        if written {
            self.counters.restored.fetch_add(1, Ordering::Relaxed);
            Restore::Written
        } else {
            Restore::Miss { source_len }
        }
    }

    fn try_restore(&self, job: &CompileJob, source_len: &mut Option<u64>) -> Option<()> {
        let id = self.identity.get()?;
        let path = usable_path(job, id)?;
        // mirrors SourceLoader.get_code: stat, then read, the source.
        let (meta, source) = read_source(&job.source).ok()?;
        *source_len = Some(meta.len());
        if memchr::memmem::find(&source, path).is_some() {
            return None;
        }
        let source_sha: [u8; 32] = Sha256::digest(&source).into();
        let key = self.key(id, job.optimize, &source_sha);
        let body = self.read_entry(&key)?;
        let found = marshal::filenames(&body, id.version)?;
        let body = if found.value == path {
            body
        } else {
            marshal::rewrite(&body, &found, path)?
        };
        let rules = id.rules();
        let mut data = Vec::with_capacity(16 + body.len());
        data.extend_from_slice(&pyc_header(&rules, job.invalidation, &meta, &source));
        data.extend_from_slice(&body);
        write_pyc(&job.cfile, &data, meta.mode()).ok()
    }

    /// Reads and checks the entry for `key`; a damaged one is removed.
    fn read_entry(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        let path = self.entry_path(key);
        let mut file = crate::cache::open_private(&path).ok()?;
        // One fstat for the size and the age (open_private made its own).
        let meta = file.metadata().ok()?;
        let read = read_all(&mut file, meta.len());
        let body = read.as_ref().ok().and_then(|b| check_entry(b, key));
        match (read, body) {
            (Ok(mut bytes), Some(range)) => {
                let fresh = meta
                    .modified()
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .map_or(true, |age| age < TOUCH_AFTER);
                if !fresh {
                    let _ = file.set_modified(SystemTime::now());
                }
                bytes.drain(..range);
                Some(bytes)
            }
            _ => {
                self.counters.damaged.fetch_add(1, Ordering::Relaxed);
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Adds the body a worker returned for `job` (the source's SHA-256 as
    /// the worker read it, then the body). Failures are silent: the cache
    /// only ever costs a compile.
    pub(crate) fn store(&self, job: &CompileJob, payload: &[u8]) {
        let Some(id) = self.identity.get() else {
            return;
        };
        if self.mismatch.load(Ordering::Relaxed) {
            return;
        }
        let (Some(sha), Some(body)) = (payload.get(..32), payload.get(32..)) else {
            return;
        };
        let Some(path) = usable_path(job, id) else {
            return;
        };
        // Only bodies whose filenames the rewrite understands, compiled
        // under the job's own path.
        if marshal::filenames(body, id.version).map_or(true, |f| f.value != path) {
            return;
        }
        let key = self.key(id, job.optimize, sha.try_into().unwrap_or(&[0; 32]));
        let entry = self.entry_path(&key);
        if fs::symlink_metadata(&entry).is_ok() {
            return;
        }
        let digest: [u8; 32] = Sha256::digest(body).into();
        let fill = |w: &mut dyn Write| {
            w.write_all(ENTRY_MAGIC)?;
            w.write_all(&key)?;
            w.write_all(&digest)?;
            w.write_all(&(body.len() as u64).to_le_bytes())?;
            w.write_all(body)
        };
        let mut written = crate::cache::write_atomic_with(&entry, fill);
        if written
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            if let Some(parent) = entry.parent() {
                let _ = crate::cache::ensure_private_dir(parent);
            }
            written = crate::cache::write_atomic_with(&entry, fill);
        }
        if written.is_ok() {
            self.counters.stored.fetch_add(1, Ordering::Relaxed);
            self.counters
                .stored_bytes
                .fetch_add((ENTRY_HEADER + body.len()) as u64, Ordering::Relaxed);
        }
    }

    /// After a run that added entries: prunes to the cap when the last
    /// prune is old enough or this run added a lot.
    pub(crate) fn finish(&self) {
        let added = self.counters.stored_bytes.load(Ordering::Relaxed);
        if added == 0 {
            return;
        }
        let stamp = self.dir.join("last-prune");
        let due = fs::symlink_metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map_or(true, |age| age > PRUNE_EVERY);
        if due || added > self.cap / 8 {
            let _ = crate::cache::write_atomic(&stamp, b"");
            let _ = prune(&self.dir, self.cap);
        }
    }
}

/// The source path as the bytes of the `co_filename` CPython would give
/// it, when the job can use the cache: not a sourceless pyc (loaded with
/// no `co_filename` fix-up; always compiled), a UTF-8 path (so `fsdecode`
/// is the identity), 3.7+.
fn usable_path<'a>(job: &'a CompileJob, id: &Identity) -> Option<&'a [u8]> {
    if id.version < (3, 7) || job.cfile == pyc::legacy_pyc_path(&job.source) {
        return None;
    }
    let path = job.source.as_os_str().as_bytes();
    std::str::from_utf8(path).ok().map(str::as_bytes)
}

/// The stamp that identifies an interpreter binary: its real path, device,
/// inode, size, mtime and ctime (hex SHA-256).
fn binary_key(python: &Path) -> Option<String> {
    let real = fs::canonicalize(python).ok()?;
    let m = fs::metadata(&real).ok()?;
    let mut h = Sha256::new();
    h.update(real.as_os_str().as_bytes());
    for v in [
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
        m.ctime() as u64,
        m.ctime_nsec() as u64,
    ] {
        h.update(v.to_le_bytes());
    }
    Some(hex(&h.finalize()))
}

/// The body's offset in an entry for `key`, when the entry is whole.
fn check_entry(bytes: &[u8], key: &[u8; 32]) -> Option<usize> {
    if bytes.len() < ENTRY_HEADER || &bytes[..16] != ENTRY_MAGIC || &bytes[16..48] != key {
        return None;
    }
    let len = u64::from_le_bytes(bytes[80..88].try_into().ok()?);
    let body = &bytes[ENTRY_HEADER..];
    if body.len() as u64 != len || Sha256::digest(body).as_slice() != &bytes[48..80] {
        return None;
    }
    Some(ENTRY_HEADER)
}

/// `fstat` and contents of a source, opened without blocking; only a
/// regular file.
fn read_source(path: &Path) -> io::Result<(fs::Metadata, Vec<u8>)> {
    let mut f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let bytes = read_all(&mut f, meta.len())?;
    Ok((meta, bytes))
}

/// The whole of `file`, expected to hold `hint` bytes (from an `fstat`
/// already made): reads until end of file with no further `fstat` or
/// `lseek` (`read_to_end` makes both), and copes with a file that grew or
/// shrank meanwhile.
fn read_all(file: &mut File, hint: u64) -> io::Result<Vec<u8>> {
    // One byte more than expected, so a file of the stat'ed size ends with
    // one short read.
    let mut buf = vec![0u8; usize::try_from(hint).unwrap_or(0).saturating_add(1)];
    let mut n = 0;
    loop {
        if n == buf.len() {
            buf.resize(n * 2, 0);
        }
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// The 16-byte header of a pyc for a source with metadata `meta` and
/// contents `source`, in `mode`.
// mirrors importlib._bootstrap_external._code_to_timestamp_pyc and
// _code_to_hash_pyc (3.7+)
fn pyc_header(
    rules: &PycRules,
    mode: InvalidationMode,
    meta: &fs::Metadata,
    source: &[u8],
) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&rules.magic);
    match mode {
        InvalidationMode::Timestamp => {
            h[8..12].copy_from_slice(&pyc::mtime_field(meta).to_le_bytes());
            h[12..].copy_from_slice(&pyc::header::size_field(meta.len()).to_le_bytes());
        }
        InvalidationMode::CheckedHash | InvalidationMode::UncheckedHash => {
            let checked = mode == InvalidationMode::CheckedHash;
            let flags = pyc::header::FLAG_HASH_BASED
                | if checked {
                    pyc::header::FLAG_CHECK_SOURCE
                } else {
                    0
                };
            h[4..8].copy_from_slice(&flags.to_le_bytes());
            h[8..].copy_from_slice(&pyc::source_hash(rules, source));
        }
    }
    h
}

/// Writes a pyc into a tree as `py_compile` does, with its mode
/// `(source mode | 0o200) & 0o666` under the umask, the cache directory
/// made if missing, never through a symlink, and never visible half
/// written.
///
/// The file is written unnamed (`O_TMPFILE`) and given its name only when
/// whole: linked straight to `cfile` (which fails rather than replace
/// anything), and only when something is already there, checked to be a
/// regular file, linked to a temp name `<cfile>.<n>` and renamed over it.
/// So a kolosal killed while writing leaves nothing in the tree (the
/// worker's temp files are cleaned by the pool; this process has nobody to
/// clean after it), and the usual case (no pyc yet) costs no `lstat`. File
/// systems without `O_TMPFILE` get an exclusive temp file + `rename`, as
/// `_write_atomic`.
// mirrors importlib._bootstrap_external._calc_mode and _write_atomic
fn write_pyc(cfile: &Path, data: &[u8], source_mode: u32) -> io::Result<()> {
    let mode = (source_mode | 0o200) & 0o666;
    let dir = match cfile.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // The directory is made only when the first try says it is missing.
    let unnamed = match open_unnamed(dir, mode) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            open_unnamed(dir, mode)
        }
        other => other,
    };
    match unnamed {
        Ok(mut f) => {
            f.write_all(data)?;
            let fd_path = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
            match link(&fd_path, cfile) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                other => return other,
            }
            replaceable(cfile)?;
            let tmp = temp_name(cfile);
            link(&fd_path, &tmp)?;
            let renamed = fs::rename(&tmp, cfile);
            if renamed.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            renamed
        }
        // No O_TMPFILE here (or no /proc): a named temp file.
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            match fs::symlink_metadata(cfile) {
                Ok(m) if !m.file_type().is_file() => {
                    return Err(io::ErrorKind::AlreadyExists.into())
                }
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            write_named(cfile, data, mode)
        }
        Err(e) => Err(e),
    }
}

/// Whether what is at `cfile` may be replaced: only a regular file.
// mirrors py_compile.compile: a symlink or non-regular target is refused
// (the job then goes to a worker, which reports it as py_compile would).
fn replaceable(cfile: &Path) -> io::Result<()> {
    if fs::symlink_metadata(cfile)?.file_type().is_file() {
        Ok(())
    } else {
        Err(io::ErrorKind::AlreadyExists.into())
    }
}

/// An unnamed regular file in `dir` (`O_TMPFILE`).
fn open_unnamed(dir: &Path, mode: u32) -> io::Result<File> {
    File::options()
        .write(true)
        .mode(mode)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir)
}

/// `linkat` of an `O_TMPFILE` file (through its `/proc/self/fd` link) to
/// `to`; fails with `AlreadyExists` rather than replace anything.
fn link(fd_path: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    let from = CString::new(fd_path.as_os_str().as_bytes())?;
    let to = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated strings for the call's duration.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `<cfile>.<n>`: the shape of `_write_atomic`'s temp names, which the pool
/// removes after a killed worker.
fn temp_name(cfile: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = (u64::from(std::process::id()) << 24) ^ N.fetch_add(1, Ordering::Relaxed);
    let mut tmp = cfile.as_os_str().to_owned();
    tmp.push(format!(".{n}"));
    PathBuf::from(tmp)
}

/// Exclusive temp file (never through a symlink) + `rename`.
fn write_named(cfile: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_name(cfile);
    let result = File::options()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data))
        .and_then(|()| fs::rename(&tmp, cfile));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// What the cache holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries.
    pub entries: u64,
    /// Their total size in bytes (file lengths).
    pub bytes: u64,
    /// Interpreter builds remembered.
    pub interpreters: u64,
}

/// Every entry file: (mtime, size, path).
fn entries(dir: &Path) -> Vec<(SystemTime, u64, PathBuf)> {
    let mut out = Vec::new();
    let Ok(top) = fs::read_dir(dir) else {
        return out;
    };
    for sub in top.flatten() {
        let name = sub.file_name();
        let is_shard = name.len() == 2 && name.as_bytes().iter().all(u8::is_ascii_hexdigit);
        if !is_shard || !sub.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = fs::read_dir(sub.path()) else {
            continue;
        };
        for f in files.flatten() {
            if let Ok(m) = f.metadata() {
                if m.is_file() {
                    out.push((
                        m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        m.len(),
                        f.path(),
                    ));
                }
            }
        }
    }
    out
}

/// Counts what `dir` (a code cache directory) holds.
pub fn stats(dir: &Path) -> Stats {
    let all = entries(dir);
    Stats {
        entries: all.len() as u64,
        bytes: all.iter().map(|e| e.1).sum(),
        interpreters: fs::read_dir(dir.join("interp")).map_or(0, |d| d.flatten().count() as u64),
    }
}

/// Removes least recently used entries until the total is at most
/// `PRUNE_TO_PERCENT` of `cap` (nothing when it is within `cap`; all
/// when `cap` is 0). Returns (entries removed, bytes freed).
pub fn prune(dir: &Path, cap: u64) -> (u64, u64) {
    let mut all = entries(dir);
    let mut total: u64 = all.iter().map(|e| e.1).sum();
    if total <= cap && cap > 0 {
        return (0, 0);
    }
    let target = cap / 100 * PRUNE_TO_PERCENT;
    all.sort_by_key(|e| e.0);
    let (mut removed, mut freed) = (0, 0);
    for (_, size, path) in all {
        if total <= target && cap > 0 {
            break;
        }
        if fs::remove_file(&path).is_ok() {
            removed += 1;
            freed += size;
            total -= size;
        }
    }
    (removed, freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trip() {
        let id = Identity {
            magic: [0xa7, 0x0d, 0x0d, 0x0a],
            version: (3, 11),
            build: "3.11.7 (main, Jan 1 2024) [GCC 12]".into(),
        };
        assert_eq!(Identity::from_hello(id.to_hello().as_bytes()), Some(id));
        assert_eq!(Identity::from_hello(b"a70d0d0a 3.11"), None);
        assert_eq!(Identity::from_hello(b"zz 3.11 00"), None);
    }

    #[test]
    fn module_filters_turn_the_cache_off() {
        let f = |v: &[&str]| names_a_module(&v.iter().map(OsString::from).collect::<Vec<_>>());
        assert!(!f(&["-W", "error::SyntaxWarning"]));
        assert!(!f(&["-W", "error:::"]));
        assert!(f(&["-W", "error::SyntaxWarning:pkg.mod"]));
        assert!(!f(&["-X", "a:b:c:d"]));
    }

    #[test]
    fn damaged_entries_are_refused() {
        let key = [7u8; 32];
        let body = b"\xe3body";
        let mut e = ENTRY_MAGIC.to_vec();
        e.extend_from_slice(&key);
        e.extend_from_slice(&Sha256::digest(body));
        e.extend_from_slice(&(body.len() as u64).to_le_bytes());
        e.extend_from_slice(body);
        assert_eq!(check_entry(&e, &key), Some(ENTRY_HEADER));
        assert_eq!(check_entry(&e, &[8u8; 32]), None);
        assert_eq!(check_entry(&e[..e.len() - 1], &key), None);
        let mut flipped = e.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(check_entry(&flipped, &key), None);
        assert_eq!(check_entry(b"", &key), None);
    }
}
