//! The warm path's manifest: what a launch found fresh, as file stamps.
//!
//! After a cold launch has made every pyc of a closure fresh, it records one
//! [`Manifest`] per launch key (interpreter, entry, flags, environment). It
//! holds a stamp for every closure source, every `__pycache__` directory the
//! closure's pycs live in, every directory the resolver listed, and every
//! path whose absence mattered (a `sys.path` entry that did not exist). The
//! next launch with the same key reads the manifest and re-stats those
//! paths; when every stamp still matches it execs at once, with no probe, no
//! scan and no process spawned.
//!
//! Why directories instead of each pyc: pycs are only ever replaced by
//! rename (importlib's `_write_atomic`, py_compile, our workers), which
//! changes the directory's mtime, so one stat per `__pycache__` covers all
//! its pycs. Sources are stamped one by one because editors rewrite files in
//! place. The stamp includes ctime, which no tool can set back, so a source
//! rewritten with its old mtime and size (rsync -t, `touch -d`) still counts
//! as changed.
//!
//! A wrong "still valid" can only cost speed, never correctness: the
//! interpreter validates every pyc against its source again as it imports.
//!
//! Besides the stamps, a manifest lists the closure's own modules
//! ([`ModuleRecord`]: source, pyc path, a digest of its import statements).
//! The warm check never reads that part; the launcher's repair path does,
//! to tell an edit that leaves the closure as it was (only pycs to
//! rewrite) from one that changes it.
//!
//! Two flags ride in the header, beside the key, because the warm path acts
//! on them: whether run-time learning is still going on for this launch key
//! ([`Manifest::learning`], see `launch::learn`), and whether the program
//! keeps Python's own pyc writing ([`Manifest::write_bytecode`]).
//!
//! The file format is a private binary layout (see [`Manifest::encode`]),
//! versioned by `FORMAT`; anything that does not decode is treated as no
//! manifest at all.

use crate::binfmt::{put_bytes, Reader};
// Entries from which the check splits the stats over two threads.
use crate::freshness::PARALLEL_THRESHOLD;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Magic and format version at the start of every manifest file.
const FORMAT: &[u8; 8] = b"KOLMAN03";

/// What is known about one path at record time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size` (0 for directories: their size is not compared).
    pub size: u64,
    /// `st_mtime` seconds.
    pub mtime_sec: i64,
    /// `st_mtime` nanoseconds.
    pub mtime_nsec: i64,
    /// `st_ctime` seconds (0 for directories: not compared).
    pub ctime_sec: i64,
    /// `st_ctime` nanoseconds (0 for directories).
    pub ctime_nsec: i64,
}

/// What a path must look like for the manifest to still hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A file with exactly this stamp (dev, ino, size, mtime, ctime).
    File(Stamp),
    /// A directory with this dev, ino and mtime (its listing is unchanged).
    Dir(Stamp),
    /// Nothing at this path.
    Absent,
    /// Never holds: a `__pycache__` whose pycs a background run has yet to
    /// write (see `launch::background`); the next launch must look at it.
    Pending,
}

const KIND_FILE: u8 = 1;
const KIND_DIR: u8 = 2;
const KIND_ABSENT: u8 = 3;
const KIND_PENDING: u8 = 4;

/// One recorded launch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// The full launch key the manifest belongs to (see `LaunchKey`).
    pub key: Vec<u8>,
    /// Environment variables the exec must set (e.g. a fallback
    /// `PYTHONPYCACHEPREFIX` chosen on the cold path).
    pub env: Vec<(OsString, OsString)>,
    /// Paths and what they must look like.
    pub entries: Vec<(PathBuf, Expect)>,
    /// The closure's modules whose sources are stamped file by file (the
    /// repair path's view; the warm check ignores it).
    pub modules: Vec<ModuleRecord>,
    /// Digests of directory listings (`closure::listing::digest`) for the
    /// stamped directories whose listing the closure depends on (the repair
    /// path's view; the warm check ignores it).
    pub listings: Vec<(PathBuf, u64)>,
    /// Run-time learning is not over: a warm launch starts a learner
    /// (`launch::learn`) until one finds nothing new.
    pub learning: bool,
    /// The program keeps Python's own pyc writing: the launch does not set
    /// `PYTHONDONTWRITEBYTECODE` (a loader with its own cache was seen).
    pub write_bytecode: bool,
    /// Learning runs in a row that found nothing new (0-3; learning stops
    /// at two, see `launch::learn`).
    pub quiet_runs: u8,
}

const FLAG_LEARNING: u8 = 1;
const FLAG_WRITE_BYTECODE: u8 = 2;
/// Bits 2-3 of the flags byte: [`Manifest::quiet_runs`].
const QUIET_SHIFT: u8 = 2;
const QUIET_MASK: u8 = 0b1100;

/// What a warm check that holds hands to the launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warm<'a> {
    /// The variables the exec must set.
    pub env: Vec<(&'a OsStr, &'a OsStr)>,
    /// [`Manifest::learning`].
    pub learning: bool,
    /// [`Manifest::write_bytecode`].
    pub write_bytecode: bool,
}

/// One closure module whose source is stamped in [`Manifest::entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRecord {
    /// The source file (a `File` entry of the manifest).
    pub source: PathBuf,
    /// Where the launch's interpreter reads its pyc; `None` for a script run
    /// as `__main__` (its pyc is never used).
    pub cfile: Option<PathBuf>,
    /// Digest of the source's import statements when it was recorded
    /// (`closure::graph::imports_digest`).
    pub imports: u64,
    /// Only imported from function bodies (`ClosureModule::lazy`): its pyc
    /// may be left to a background run.
    pub lazy: bool,
    /// Not in the static closure: a learner saw the program load it from
    /// source at run time (`launch::learn`), or it is statically imported
    /// by such a module.
    pub learned: bool,
}

const RECORD_HAS_CFILE: u8 = 1;
const RECORD_LAZY: u8 = 2;
const RECORD_LEARNED: u8 = 4;

/// Builds a launch key: the bytes that decide which manifest applies. Every
/// part is length-prefixed, so no two different part lists collide.
#[derive(Debug, Clone, Default)]
pub(crate) struct LaunchKey {
    bytes: Vec<u8>,
}

impl LaunchKey {
    /// An empty key.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends one part.
    pub(crate) fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(bytes);
        self
    }

    /// Appends an optional part (unset and empty differ).
    pub(crate) fn opt_part(&mut self, bytes: Option<&[u8]>) -> &mut Self {
        match bytes {
            Some(b) => {
                self.bytes.push(1);
                self.part(b)
            }
            None => {
                self.bytes.push(0);
                self
            }
        }
    }

    /// The key's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key as a short name: 16 hex digits of a SipHash of its bytes.
    pub(crate) fn digest(&self) -> String {
        use std::hash::Hasher;
        let mut h = siphasher::sip::SipHasher13::new_with_keys(
            0x6b6f_6c6f_7361_6c21,
            0x6d61_6e69_6665_7374,
        );
        h.write(&self.bytes);
        format!("{:016x}", h.finish())
    }
}

/// Stats `path` (following symlinks, as the interpreter's imports do)
/// without allocating: the path is copied into a stack buffer.
fn stat_path(path: &[u8]) -> Option<libc::stat> {
    let mut buf = [0u8; 4097];
    if path.len() >= buf.len() || path.contains(&0) {
        return None;
    }
    buf[..path.len()].copy_from_slice(path);
    // SAFETY: buf is NUL-terminated (zeroed past path.len()); st is written by stat.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::stat(buf.as_ptr().cast(), &mut st) == 0).then_some(st)
    }
}

fn stamp_of(st: &libc::stat) -> (bool, Stamp) {
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let stamp = Stamp {
        dev: st.st_dev,
        ino: st.st_ino,
        size: if is_dir { 0 } else { st.st_size as u64 },
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
        ctime_sec: if is_dir { 0 } else { st.st_ctime },
        ctime_nsec: if is_dir { 0 } else { st.st_ctime_nsec },
    };
    (is_dir, stamp)
}

/// What `path` looks like now, as an [`Expect`].
pub(crate) fn observe(path: &Path) -> Expect {
    match stat_path(path.as_os_str().as_bytes()) {
        None => Expect::Absent,
        Some(st) => match stamp_of(&st) {
            (true, s) => Expect::Dir(s),
            (false, s) => Expect::File(s),
        },
    }
}

/// Stats the entries of a manifest relative to an `O_PATH` descriptor of
/// their directory, reused while consecutive entries share it: the kernel
/// walks the directory's path once per run of entries instead of once per
/// entry (recorded manifests list entries grouped by directory, see
/// [`group_by_dir`]). `fstatat(dirfd, name, 0)` resolves exactly as
/// `stat(dir/name)` does: the directory is opened following symlinks, as
/// the walk of `dir/name` would, and the name is followed too. When the
/// directory cannot be opened (absent, not a directory, no permission, out
/// of descriptors) the full path is stat'ed instead, so every verdict is
/// the one `stat` would give.
struct DirCursor<'a> {
    dir: &'a [u8],
    /// `-1`: no descriptor for `dir` (stat full paths).
    fd: libc::c_int,
}

impl<'a> DirCursor<'a> {
    fn new() -> Self {
        DirCursor { dir: &[], fd: -1 }
    }

    fn stat(&mut self, path: &'a [u8]) -> Option<libc::stat> {
        let Some(slash) = path.iter().rposition(|&b| b == b'/') else {
            return stat_path(path);
        };
        let (dir, name) = (&path[..slash.max(1)], &path[slash + 1..]);
        if name.is_empty() || name.len() >= 256 || name.contains(&0) {
            return stat_path(path);
        }
        if dir != self.dir {
            self.close();
            self.dir = dir;
            self.fd = open_dir_path(dir);
        }
        if self.fd < 0 {
            return stat_path(path);
        }
        let mut buf = [0u8; 256];
        buf[..name.len()].copy_from_slice(name);
        // SAFETY: buf is NUL-terminated (zeroed past name.len()); fd is an
        // open descriptor of ours; st is written by fstatat.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            (libc::fstatat(self.fd, buf.as_ptr().cast(), &mut st, 0) == 0).then_some(st)
        }
    }

    fn close(&mut self) {
        if self.fd >= 0 {
            // SAFETY: a descriptor this cursor opened and nothing else holds.
            unsafe { libc::close(self.fd) };
            self.fd = -1;
        }
    }
}

impl Drop for DirCursor<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// An `O_PATH` descriptor of directory `dir` (symlinks followed, as a path
/// walk through it would), or `-1`.
fn open_dir_path(dir: &[u8]) -> libc::c_int {
    let mut buf = [0u8; 4097];
    if dir.len() >= buf.len() || dir.contains(&0) {
        return -1;
    }
    buf[..dir.len()].copy_from_slice(dir);
    // SAFETY: buf is NUL-terminated; O_PATH opens nothing for reading.
    unsafe {
        libc::open(
            buf.as_ptr().cast(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    }
}

fn holds(st: Option<libc::stat>, kind: u8, want: &Stamp) -> bool {
    match (st, kind) {
        (None, KIND_ABSENT) => true,
        (Some(st), KIND_FILE | KIND_DIR) => {
            let (is_dir, now) = stamp_of(&st);
            is_dir == (kind == KIND_DIR) && now == *want
        }
        _ => false,
    }
}

/// Orders manifest paths so that entries of one directory are adjacent
/// (by parent, then name), which lets the warm check stat a directory's
/// entries relative to one descriptor ([`DirCursor`]). Stable for equal
/// keys; the order carries no other meaning.
pub(crate) fn group_by_dir<T>(entries: &mut [(PathBuf, T)]) {
    fn split(p: &Path) -> (&[u8], &[u8]) {
        let b = p.as_os_str().as_bytes();
        match b.iter().rposition(|&c| c == b'/') {
            Some(i) => (&b[..i], &b[i..]),
            None => (&[], b),
        }
    }
    entries.sort_by(|(a, _), (b, _)| split(a).cmp(&split(b)));
}

impl Manifest {
    /// Serialises: `FORMAT`, key, flags u8 (1: learning, 2: write bytecode,
    /// bits 2-3: quiet runs),
    /// env pairs, then entries as
    /// `kind u8, path (u32 len + bytes), stamp (7 × 8 bytes, files and dirs only)`,
    /// then module records as `source (u32 len + bytes), flags u8 (1: has a
    /// cfile, 2: lazy, 4: learned), [cfile (u32 len + bytes)], imports u64`, then listings as
    /// `dir (u32 len + bytes), digest u64`; each list is preceded by its u32
    /// count. All integers little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.entries.len() * 120);
        out.extend_from_slice(FORMAT);
        put_bytes(&mut out, &self.key);
        let learning = if self.learning { FLAG_LEARNING } else { 0 };
        let write = if self.write_bytecode {
            FLAG_WRITE_BYTECODE
        } else {
            0
        };
        out.push(learning | write | ((self.quiet_runs.min(3) << QUIET_SHIFT) & QUIET_MASK));
        out.extend_from_slice(&(self.env.len() as u32).to_le_bytes());
        for (k, v) in &self.env {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v.as_bytes());
        }
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (path, expect) in &self.entries {
            let (kind, stamp) = match expect {
                Expect::File(s) => (KIND_FILE, Some(s)),
                Expect::Dir(s) => (KIND_DIR, Some(s)),
                Expect::Absent => (KIND_ABSENT, None),
                Expect::Pending => (KIND_PENDING, None),
            };
            out.push(kind);
            put_bytes(&mut out, path.as_os_str().as_bytes());
            if let Some(s) = stamp {
                for v in [s.dev, s.ino, s.size] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                for v in [s.mtime_sec, s.mtime_nsec, s.ctime_sec, s.ctime_nsec] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        out.extend_from_slice(&(self.modules.len() as u32).to_le_bytes());
        for m in &self.modules {
            put_bytes(&mut out, m.source.as_os_str().as_bytes());
            let lazy =
                if m.lazy { RECORD_LAZY } else { 0 } | if m.learned { RECORD_LEARNED } else { 0 };
            match &m.cfile {
                Some(c) => {
                    out.push(RECORD_HAS_CFILE | lazy);
                    put_bytes(&mut out, c.as_os_str().as_bytes());
                }
                None => out.push(lazy),
            }
            out.extend_from_slice(&m.imports.to_le_bytes());
        }
        out.extend_from_slice(&(self.listings.len() as u32).to_le_bytes());
        for (dir, digest) in &self.listings {
            put_bytes(&mut out, dir.as_os_str().as_bytes());
            out.extend_from_slice(&digest.to_le_bytes());
        }
        out
    }

    /// Parses what [`Manifest::encode`] wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Manifest> {
        let view = View::parse(bytes)?;
        let mut m = Manifest {
            key: view.key.to_vec(),
            learning: view.flags & FLAG_LEARNING != 0,
            write_bytecode: view.flags & FLAG_WRITE_BYTECODE != 0,
            quiet_runs: (view.flags & QUIET_MASK) >> QUIET_SHIFT,
            ..Default::default()
        };
        m.env = view
            .env_pairs()?
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut r = Reader::new(view.entries);
        for _ in 0..view.entry_count {
            let (kind, path, stamp) = entry(&mut r)?;
            let expect = match kind {
                KIND_FILE => Expect::File(stamp),
                KIND_DIR => Expect::Dir(stamp),
                KIND_PENDING => Expect::Pending,
                _ => Expect::Absent,
            };
            m.entries
                .push((PathBuf::from(OsStr::from_bytes(path)), expect));
        }
        let path = |b: &[u8]| PathBuf::from(OsStr::from_bytes(b));
        for _ in 0..r.u32()? {
            let source = path(r.bytes_field()?);
            let flags = r.u8()?;
            if flags & !(RECORD_HAS_CFILE | RECORD_LAZY | RECORD_LEARNED) != 0 {
                return None;
            }
            let cfile = match flags & RECORD_HAS_CFILE {
                0 => None,
                _ => Some(path(r.bytes_field()?)),
            };
            m.modules.push(ModuleRecord {
                source,
                cfile,
                imports: r.u64()?,
                lazy: flags & RECORD_LAZY != 0,
                learned: flags & RECORD_LEARNED != 0,
            });
        }
        for _ in 0..r.u32()? {
            let dir = path(r.bytes_field()?);
            m.listings.push((dir, r.u64()?));
        }
        (r.pos == view.entries.len()).then_some(m)
    }
}

/// Checks the encoded manifest `bytes` against the file system without
/// decoding it into owned data. Returns the environment pairs to set and the
/// header's flags when the manifest belongs to `key` and every entry still
/// holds, else `None`.
///
/// This is the launcher's warm path: one pass over the buffer, one `stat`
/// per entry, no allocation per entry; split over two threads when large.
pub fn check_encoded<'a>(bytes: &'a [u8], key: &[u8]) -> Option<Warm<'a>> {
    let view = View::parse(bytes)?;
    if view.key != key {
        return None;
    }
    let env = view.env_pairs()?;
    let n = view.entry_count as usize;
    // One usable CPU: a second thread would only take turns with this one.
    let all_hold = if n < PARALLEL_THRESHOLD || !several_cpus() {
        check_entries(view.entries, n)
    } else {
        // Find the byte offset of the middle entry, then check both halves at once.
        let half = n / 2;
        let mut r = Reader::new(view.entries);
        for _ in 0..half {
            entry(&mut r)?;
        }
        let (first, second) = view.entries.split_at(r.pos);
        std::thread::scope(|s| {
            let other = s.spawn(|| check_entries(second, n - half));
            let mine = check_entries(first, half);
            // Both must finish before the scope ends anyway; a panicked half is a miss.
            other.join().unwrap_or(false) && mine
        })
    };
    all_hold.then_some(Warm {
        env,
        learning: view.flags & FLAG_LEARNING != 0,
        write_bytecode: view.flags & FLAG_WRITE_BYTECODE != 0,
    })
}

/// Whether this process may run on more than one CPU (`sched_getaffinity`;
/// on failure, assumed so).
fn several_cpus() -> bool {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return true;
        }
        libc::CPU_COUNT(&set) > 1
    }
}

fn check_entries(bytes: &[u8], count: usize) -> bool {
    let mut r = Reader::new(bytes);
    let mut cursor = DirCursor::new();
    for _ in 0..count {
        match entry(&mut r) {
            Some((kind, path, stamp)) if holds(cursor.stat(path), kind, &stamp) => {}
            _ => return false,
        }
    }
    true
}

/// The sections of an encoded manifest, borrowed from its buffer.
struct View<'a> {
    key: &'a [u8],
    flags: u8,
    env_count: u32,
    env: &'a [u8],
    entry_count: u32,
    entries: &'a [u8],
}

impl<'a> View<'a> {
    /// The environment pairs, borrowed from the buffer.
    fn env_pairs(&self) -> Option<Vec<(&'a OsStr, &'a OsStr)>> {
        let mut r = Reader::new(self.env);
        let mut env = Vec::with_capacity(self.env_count as usize);
        for _ in 0..self.env_count {
            let k = r.bytes_field()?;
            let v = r.bytes_field()?;
            env.push((OsStr::from_bytes(k), OsStr::from_bytes(v)));
        }
        Some(env)
    }

    fn parse(bytes: &'a [u8]) -> Option<View<'a>> {
        let rest = bytes.strip_prefix(FORMAT)?;
        let mut r = Reader::new(rest);
        let key = r.bytes_field()?;
        let flags = r.u8()?;
        if flags & !(FLAG_LEARNING | FLAG_WRITE_BYTECODE | QUIET_MASK) != 0 {
            return None;
        }
        let env_count = r.u32()?;
        let env_start = r.pos;
        for _ in 0..env_count {
            r.bytes_field()?;
            r.bytes_field()?;
        }
        let env = &rest[env_start..r.pos];
        let entry_count = r.u32()?;
        let entries = &rest[r.pos..];
        Some(View {
            key,
            flags,
            env_count,
            env,
            entry_count,
            entries,
        })
    }
}

/// One manifest entry: kind, path, stamp.
fn entry<'a>(r: &mut Reader<'a>) -> Option<(u8, &'a [u8], Stamp)> {
    let kind = r.u8()?;
    let path = r.bytes_field()?;
    let stamp = match kind {
        KIND_FILE | KIND_DIR => Stamp {
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            mtime_sec: r.u64()? as i64,
            mtime_nsec: r.u64()? as i64,
            ctime_sec: r.u64()? as i64,
            ctime_nsec: r.u64()? as i64,
        },
        KIND_ABSENT | KIND_PENDING => Stamp {
            dev: 0,
            ino: 0,
            size: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            ctime_sec: 0,
            ctime_nsec: 0,
        },
        _ => return None,
    };
    Some((kind, path, stamp))
}

fn manifest_file_name(key: &LaunchKey) -> String {
    format!("{}.manifest", key.digest())
}

/// Where the manifest for `key` lives: `<cache>/manifests/<hash>.manifest`.
/// Creates the directory; `None` when there is no usable cache directory.
pub(crate) fn manifest_path(key: &LaunchKey) -> Option<PathBuf> {
    crate::cache::cache_subdir("manifests")
        .ok()
        .map(|d| d.join(manifest_file_name(key)))
}

/// Path of the manifest for `key` without creating the manifests
/// directory (warm path); `None` when the cache is missing or refused.
pub(crate) fn manifest_path_no_create(key: &LaunchKey) -> Option<PathBuf> {
    crate::cache::existing_subdir("manifests")
        .ok()
        .map(|d| d.join(manifest_file_name(key)))
}

/// The recorded manifest for `key`, read without following symlinks and
/// only when this user wrote it (see [`crate::cache::read_private`]).
pub(crate) fn read_recorded(key: &LaunchKey) -> Option<Vec<u8>> {
    crate::cache::read_private(&manifest_path_no_create(key)?).ok()
}

/// Records `manifest` for `key` atomically. Errors are returned for the
/// caller to log; a launch never fails because a manifest was not stored.
pub(crate) fn store(key: &LaunchKey, manifest: &Manifest) -> std::io::Result<()> {
    let path = manifest_path(key)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no cache directory"))?;
    crate::cache::write_atomic(&path, &manifest.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sample(dir: &Path) -> Manifest {
        let a = dir.join("a.py");
        fs::write(&a, "import os\n").unwrap();
        let cache = dir.join("__pycache__");
        fs::create_dir(&cache).unwrap();
        Manifest {
            key: b"key".to_vec(),
            env: vec![("PYTHONPYCACHEPREFIX".into(), "/tmp/x".into())],
            entries: vec![
                (a.clone(), observe(&a)),
                (cache.clone(), observe(&cache)),
                (dir.join("gone"), observe(&dir.join("gone"))),
            ],
            modules: vec![
                ModuleRecord {
                    source: a.clone(),
                    cfile: Some(cache.join("a.cpython-312.pyc")),
                    imports: 0x0123_4567_89ab_cdef,
                    lazy: true,
                    learned: false,
                },
                ModuleRecord {
                    source: dir.join("main.py"),
                    cfile: None,
                    imports: 7,
                    lazy: false,
                    learned: false,
                },
                ModuleRecord {
                    source: dir.join("plugin.py"),
                    cfile: Some(cache.join("plugin.cpython-312.pyc")),
                    imports: 9,
                    lazy: false,
                    learned: true,
                },
            ],
            listings: vec![(dir.to_path_buf(), 42)],
            learning: true,
            write_bytecode: false,
            quiet_runs: 1,
        }
    }

    #[test]
    fn round_trip_and_hold() {
        let t = tempfile::tempdir().unwrap();
        let m = sample(t.path());
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).as_ref(), Some(&m));
        let warm = check_encoded(&bytes, b"key").expect("fresh manifest holds");
        assert!(warm.learning && !warm.write_bytecode);
        let flipped = Manifest {
            learning: false,
            write_bytecode: true,
            ..m.clone()
        };
        let fb = flipped.encode();
        assert_eq!(Manifest::decode(&fb).as_ref(), Some(&flipped));
        let w = check_encoded(&fb, b"key").unwrap();
        assert!(!w.learning && w.write_bytecode);
        assert_eq!(
            warm.env,
            vec![(OsStr::new("PYTHONPYCACHEPREFIX"), OsStr::new("/tmp/x"))]
        );
        assert!(check_encoded(&bytes, b"other key").is_none());
    }

    #[test]
    fn any_change_breaks_it() {
        let t = tempfile::tempdir().unwrap();
        let m = sample(t.path());
        let bytes = m.encode();
        // A new file in a recorded directory.
        fs::write(t.path().join("__pycache__/new.pyc"), b"x").unwrap();
        assert!(check_encoded(&bytes, b"key").is_none());
        let m = Manifest {
            entries: m
                .entries
                .into_iter()
                .map(|(p, _)| {
                    let e = observe(&p);
                    (p, e)
                })
                .collect(),
            ..m
        };
        let bytes = m.encode();
        assert!(check_encoded(&bytes, b"key").is_some());
        // A path that had to be absent appears.
        fs::write(t.path().join("gone"), b"").unwrap();
        assert!(check_encoded(&bytes, b"key").is_none());
        fs::remove_file(t.path().join("gone")).unwrap();
        assert!(check_encoded(&bytes, b"key").is_some());
        // Same size, same mtime, rewritten in place: ctime still moves.
        let a = t.path().join("a.py");
        let before = fs::metadata(&a).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&a, "import re\n").unwrap();
        let f = fs::File::options().write(true).open(&a).unwrap();
        f.set_modified(before.modified().unwrap()).unwrap();
        assert!(check_encoded(&bytes, b"key").is_none());
    }

    #[test]
    fn large_manifests_split_and_still_detect() {
        let t = tempfile::tempdir().unwrap();
        let mut m = Manifest {
            key: b"k".to_vec(),
            ..Default::default()
        };
        for i in 0..(PARALLEL_THRESHOLD * 2) {
            let p = t.path().join(format!("m{i}.py"));
            fs::write(&p, "x = 1\n").unwrap();
            m.entries.push((p.clone(), observe(&p)));
        }
        let bytes = m.encode();
        assert!(check_encoded(&bytes, b"k").is_some());
        // Change one in the second half.
        let last = m.entries.last().unwrap().0.clone();
        fs::write(&last, "x = 22\n").unwrap();
        assert!(check_encoded(&bytes, b"k").is_none());
    }

    /// The descriptor-relative stats give `stat`'s verdict on awkward
    /// paths: through a symlinked directory, under a file, under a missing
    /// directory that appears later, `..`, a trailing slash, `/` itself;
    /// and a change behind each is still noticed.
    #[test]
    fn relative_stats_match_stat() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir(d.join("real")).unwrap();
        fs::write(d.join("real/a.py"), "a = 1\n").unwrap();
        fs::create_dir(d.join("real/sub")).unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        fs::write(d.join("file"), "").unwrap();
        let paths = [
            d.join("link/a.py"),
            d.join("real/a.py"),
            d.join("file/x.py"),
            d.join("missing/x.py"),
            d.join("real/../real/a.py"),
            d.join("real/sub/.."),
            PathBuf::from(format!("{}/real/", d.display())),
            PathBuf::from("/"),
            d.join("link"),
        ];
        let mut m = Manifest {
            key: b"k".to_vec(),
            entries: paths.iter().map(|p| (p.clone(), observe(p))).collect(),
            ..Default::default()
        };
        assert!(matches!(m.entries[2].1, Expect::Absent));
        assert!(matches!(m.entries[3].1, Expect::Absent));
        group_by_dir(&mut m.entries);
        let bytes = m.encode();
        assert!(check_encoded(&bytes, b"k").is_some());
        // The missing directory appears with the file: noticed.
        fs::create_dir(d.join("missing")).unwrap();
        fs::write(d.join("missing/x.py"), "").unwrap();
        assert!(check_encoded(&bytes, b"k").is_none());
        fs::remove_dir_all(d.join("missing")).unwrap();
        assert!(check_encoded(&bytes, b"k").is_some());
        // The symlink now names another directory with its own a.py.
        fs::create_dir(d.join("other")).unwrap();
        fs::write(d.join("other/a.py"), "a = 1\n").unwrap();
        fs::remove_file(d.join("link")).unwrap();
        std::os::unix::fs::symlink(d.join("other"), d.join("link")).unwrap();
        assert!(check_encoded(&bytes, b"k").is_none());
    }

    #[test]
    fn grouping_keeps_directories_together() {
        let mut e: Vec<(PathBuf, u8)> = [
            "/a/pkg/m1.py",
            "/a/pkg/sub/x.py",
            "/a/pkg/z.py",
            "/a/pkg/sub",
        ]
        .iter()
        .map(|p| (PathBuf::from(p), 0))
        .collect();
        group_by_dir(&mut e);
        let order: Vec<&str> = e.iter().map(|(p, _)| p.to_str().unwrap()).collect();
        assert_eq!(
            order,
            [
                "/a/pkg/m1.py",
                "/a/pkg/sub",
                "/a/pkg/z.py",
                "/a/pkg/sub/x.py"
            ]
        );
    }

    #[test]
    fn garbage_never_panics() {
        let t = tempfile::tempdir().unwrap();
        let bytes = sample(t.path()).encode();
        for cut in 0..bytes.len() {
            let _ = Manifest::decode(&bytes[..cut]);
            let _ = check_encoded(&bytes[..cut], b"key");
        }
        let mut flipped = bytes.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = Manifest::decode(&flipped);
            let _ = check_encoded(&flipped, b"key");
            flipped[i] ^= 0xff;
        }
        assert!(Manifest::decode(b"not a manifest").is_none());
    }
}
