//! A persistent per-file cache of scanner results, so an unchanged source is
//! never scanned twice.
//!
//! Entries are keyed by path and validated by `(size, mtime_ns)` of the file
//! at lookup time. A path the cache does not know (or whose entry no longer
//! matches) is looked up once more by the file's identity, `(dev, ino,
//! size, mtime_ns)`: installers that hard-link from their own cache (uv by
//! default, pip with a linking installer, `cp -al`) put the same inodes in
//! every venv, so a new venv's files are found under the first venv's
//! paths without being read. An identity names one file at a time, so a hit
//! is that very file, unchanged since it was scanned by the same rule as a
//! path hit; the file is still opened (the stat comes from its descriptor).
//! The cache lives in one binary file, `cache_subdir("imports")/imports-v3.bin`,
//! written atomically; a missing, foreign, truncated or corrupt file is
//! treated as empty.
//!
//! Its size: every launch of a new venv adds its paths, so each distinct
//! import list is stored once (the same package in ten venvs, hard-linked
//! or copied, scans to the same lists) and an entry is its path, its keys
//! and a list number, about 100 bytes. Each save counts a generation, and
//! the entries a run used carry it; past [`MAX_ENTRIES`] a save keeps the
//! most recently used. (Every cold launch loads the whole file: at version
//! 2, with a full import list per path, the bench's few venvs made 4 MB and
//! 20 ms of loading, and the old cap of 200,000 entries ~200 MB.)
//!
//! File layout (all integers little-endian):
//! ```text
//! "KOLIMP03" | u64 scanner fingerprint | u32 generation |
//! u32 list count | list*: u32 import count |
//!         import*: bytes module | u32 level | u32 line | u32 flags |
//!                  u32 name count | bytes name*
//! u64 entry count |
//! entry*: bytes path | u64 size | i64 mtime_ns | u64 dev | u64 ino |
//!         u32 list number | u32 generation last used
//! bytes = u32 length + raw bytes
//! ```
//!
//! The scanner fingerprint hashes the crate version and the source of the
//! scanner (every file of it: `scan.rs` and `scan/*.rs`) and of the flag
//! translation, so a kolosal build whose scanner differs never trusts
//! another build's results.

use crate::cache;
use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::scan::ImportFlags;
use crate::binfmt::{put_bytes, Reader};

const MAGIC: &[u8; 8] = b"KOLIMP03";

const FILE_NAME: &str = "imports-v3.bin";

/// The cache files of earlier layouts, removed by the first save.
const OLD_FILE_NAMES: [&str; 2] = ["imports-v1.bin", "imports-v2.bin"];
/// Identifies the scanner that produced cached results (see module docs).
fn scanner_fingerprint() -> u64 {
    static FINGERPRINT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *FINGERPRINT.get_or_init(hash_scanner_sources)
}

fn hash_scanner_sources() -> u64 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x6b6f6c6f, 0x73616c);
    for part in [
        env!("CARGO_PKG_VERSION"),
        include_str!("scan.rs"),
        include_str!("scan/lexer.rs"),
        include_str!("scan/imports.rs"),
        include_str!("scan/dynamic.rs"),
        include_str!("scan/keyword.rs"),
        include_str!("scan/lines.rs"),
        include_str!("graph.rs"),
        include_str!("import_cache.rs"),
    ] {
        h.write(part.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// A save keeps at most this many entries, the most recently used (about
/// 30 venvs of a 1,500-module closure; ~5 MB and a few ms to load).
const MAX_ENTRIES: usize = 50_000;

/// One import statement as the closure walk needs it (a copy of the
/// scanner's `ImportStmt`, kept here so the cache format is ours).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Import {
    /// The dotted module after the dots (`a.b` in `from ..a.b import c`);
    /// empty for `from . import x`.
    pub module: String,
    /// Names after `import` in `from M import n1, n2` (`*` for a star
    /// import); empty for `import M`.
    pub names: Vec<String>,
    /// Number of leading dots (0 = absolute).
    pub level: u32,
    /// 1-based source line.
    pub line: u32,
    /// The scanner's context flags (stored as a `u32` in the cache file).
    pub flags: ImportFlags,
}

#[derive(Debug, Clone)]
struct Entry {
    size: u64,
    mtime_ns: i64,
    dev: u64,
    ino: u64,
    imports: Arc<Vec<Import>>,
    /// The generation of the save after the last run that used it.
    generation: u32,
    used: bool,
}

impl Entry {
    fn identity(&self) -> Identity {
        (self.dev, self.ino, self.size, self.mtime_ns)
    }
}

/// `(dev, ino, size, mtime_ns)`: one file, unchanged.
type Identity = (u64, u64, u64, i64);

/// The identity of the file `m` describes.
fn identity(m: &std::fs::Metadata) -> Identity {
    let (size, mtime_ns) = meta_key(m);
    (m.dev(), m.ino(), size, mtime_ns)
}

/// The identity index of `entries`.
fn index(entries: &HashMap<OsString, Entry>) -> HashMap<Identity, Arc<Vec<Import>>> {
    entries
        .values()
        .map(|e| (e.identity(), e.imports.clone()))
        .collect()
}

/// What [`ImportCache::get_or_scan`] found for one file.
#[derive(Debug, Clone)]
pub struct Scanned {
    /// The file's import statements.
    pub imports: Arc<Vec<Import>>,
    /// They came from the cache (the file was not read).
    pub cached: bool,
    /// The file's metadata (`stat`, following symlinks) when it was looked
    /// up: callers that also judge the file's pyc need not stat it again.
    pub meta: std::fs::Metadata,
}

/// The cache: load once per run, share across threads, save at the end.
#[derive(Debug, Default)]
pub struct ImportCache {
    /// By path (kept as raw bytes: hashing a `Path` walks its components).
    entries: Mutex<HashMap<OsString, Entry>>,
    /// The same results by file identity (see the module docs).
    by_identity: Mutex<HashMap<Identity, Arc<Vec<Import>>>>,
    dirty: AtomicBool,
    location: Option<PathBuf>,
    /// The generation of the file loaded (0 for none).
    generation: u32,
}

/// `(size, mtime_ns)` of a file, the cache's validity key.
fn meta_key(m: &std::fs::Metadata) -> (u64, i64) {
    (
        m.size(),
        m.mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(m.mtime_nsec()),
    )
}

/// Files up to this size are read into a buffer each thread keeps.
const REUSED_BUFFER_MAX: usize = 8 << 20;

/// Calls `f` with the contents of `file` (whose metadata is `meta`). A
/// regular file is read up to its stat size, into a per-thread buffer when
/// small enough (no allocation and no page faults per file, no read for
/// the end of file: a file that changes while it is read is scanned as
/// read, under the key taken before);
/// anything else is read to its end.
fn with_contents<R>(
    file: &File,
    meta: &std::fs::Metadata,
    f: impl FnOnce(&[u8]) -> R,
) -> io::Result<R> {
    thread_local! {
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let size = usize::try_from(meta.size()).unwrap_or(usize::MAX);
    if !meta.is_file() || size > REUSED_BUFFER_MAX {
        let mut v = Vec::new();
        (&*file).read_to_end(&mut v)?;
        return Ok(f(&v));
    }
    BUF.with(|cell| {
        let Ok(mut buf) = cell.try_borrow_mut() else {
            let mut v = Vec::new();
            (&*file).read_to_end(&mut v)?;
            return Ok(f(&v));
        };
        if buf.len() < size {
            buf.resize(size, 0);
        }
        let mut n = 0;
        while n < size {
            match (&*file).read(&mut buf[n..size]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(f(&buf[..n]))
    })
}

impl ImportCache {
    /// An empty cache that is never saved.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Loads the cache from kolosal's cache directory; any problem (no cache
    /// dir, missing or corrupt file) gives an empty cache.
    pub fn load() -> Self {
        let location = cache::cache_subdir("imports")
            .ok()
            .map(|d| d.join(FILE_NAME));
        let decoded = location
            .as_ref()
            .and_then(|p| cache::read_private(p).ok())
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        Self::from_decoded(decoded, location)
    }

    /// A cache of the `(generation, entries)` a file decoded to, saved to
    /// `location` (if any).
    fn from_decoded(
        (generation, entries): (u32, HashMap<OsString, Entry>),
        location: Option<PathBuf>,
    ) -> Self {
        ImportCache {
            by_identity: Mutex::new(index(&entries)),
            entries: Mutex::new(entries),
            dirty: AtomicBool::new(false),
            location,
            generation,
        }
    }

    /// Parses the contents of a cache file, as [`ImportCache::load`] does;
    /// `None` when they are not a valid cache file of this kolosal build.
    /// The result is never saved.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_decoded(decode(bytes)?, None))
    }

    /// The cache file contents [`ImportCache::save`] would write (every entry).
    pub fn to_bytes(&self) -> Vec<u8> {
        let entries = lock(&self.entries);
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = encode_to(self.generation, entries.iter().collect(), &mut out);
        out
    }

    /// Number of cached files.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// True when no file is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The imports of `path`: from the cache when its size and mtime still
    /// match, else by reading it and calling `scan` (and caching the result).
    pub fn get_or_scan(
        &self,
        path: &Path,
        scan: impl FnOnce(&[u8]) -> Vec<Import>,
    ) -> io::Result<Scanned> {
        // Only a path the cache knows needs a stat before it is read.
        let known = lock(&self.entries)
            .get(path.as_os_str())
            .map(|e| (e.size, e.mtime_ns));
        if let Some(key) = known {
            let meta = std::fs::metadata(path)?;
            if meta_key(&meta) == key {
                if let Some(e) = lock(&self.entries).get_mut(path.as_os_str()) {
                    e.used = true;
                    return Ok(Scanned {
                        imports: e.imports.clone(),
                        cached: true,
                        meta,
                    });
                }
            }
        }
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let id = identity(&meta);
        // The same file under another path (a hard link): its scan.
        let linked = lock(&self.by_identity).get(&id).cloned();
        let cached = linked.is_some();
        // The key is taken before the read. A file that changes while it is
        // read gets a new mtime or size, so the next lookup misses and
        // rescans it; a second stat after the read would add nothing (an
        // edit keeping both size and mtime escapes either way).
        let imports = match linked {
            Some(imports) => imports,
            None => Arc::new(with_contents(&file, &meta, scan)?),
        };
        let entry = Entry {
            size: id.2,
            mtime_ns: id.3,
            dev: id.0,
            ino: id.1,
            imports: imports.clone(),
            generation: 0,
            used: true,
        };
        lock(&self.by_identity).insert(id, imports.clone());
        lock(&self.entries).insert(path.as_os_str().to_os_string(), entry);
        self.dirty.store(true, Ordering::Relaxed);
        Ok(Scanned {
            imports,
            cached,
            meta,
        })
    }

    /// Writes the cache back (atomically) when something new was scanned.
    /// A no-op for [`ImportCache::in_memory`].
    pub fn save(&self) -> io::Result<()> {
        let Some(location) = &self.location else {
            return Ok(());
        };
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let entries = lock(&self.entries);
        let generation = self.generation.wrapping_add(1);
        let kept = most_recent(&entries, MAX_ENTRIES);
        cache::write_atomic_with(location, |w| encode_to(generation, kept, w))?;
        // The files of earlier layouts are never read again.
        if let Some(dir) = location.parent() {
            for old in OLD_FILE_NAMES {
                let _ = std::fs::remove_file(dir.join(old));
            }
        }
        Ok(())
    }
}

/// At most `cap` of `entries`, the most recently used: this run's first,
/// then by the generation they were last used in (a wrapped counter only
/// misorders one save).
fn most_recent(entries: &HashMap<OsString, Entry>, cap: usize) -> Vec<(&OsString, &Entry)> {
    let mut kept: Vec<(&OsString, &Entry)> = entries.iter().collect();
    if kept.len() > cap {
        kept.sort_unstable_by_key(|(_, e)| std::cmp::Reverse((e.used, e.generation)));
        kept.truncate(cap);
    }
    kept
}

use crate::sync::lock;

/// Writes the cache file of `generation` for `entries` to `w`: each
/// distinct import list once, then the entries (those this run used marked
/// with `generation`).
fn encode_to(
    generation: u32,
    entries: Vec<(&OsString, &Entry)>,
    w: &mut dyn Write,
) -> io::Result<()> {
    let mut numbers: HashMap<&[Import], u32> = HashMap::default();
    let mut lists: Vec<&[Import]> = Vec::new();
    let numbered: Vec<u32> = entries
        .iter()
        .map(|(_, e)| {
            *numbers.entry(e.imports.as_slice()).or_insert_with(|| {
                lists.push(e.imports.as_slice());
                (lists.len() - 1) as u32
            })
        })
        .collect();
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&scanner_fingerprint().to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(lists.len() as u32).to_le_bytes());
    for list in &lists {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for i in list.iter() {
            put_bytes(&mut out, i.module.as_bytes());
            out.extend_from_slice(&i.level.to_le_bytes());
            out.extend_from_slice(&i.line.to_le_bytes());
            out.extend_from_slice(&u32::from(i.flags.bits()).to_le_bytes());
            out.extend_from_slice(&(i.names.len() as u32).to_le_bytes());
            for n in &i.names {
                put_bytes(&mut out, n.as_bytes());
            }
        }
        if out.len() >= 64 * 1024 {
            w.write_all(&out)?;
            out.clear();
        }
    }
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for ((path, e), number) in entries.iter().zip(numbered) {
        put_bytes(&mut out, path.as_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&e.mtime_ns.to_le_bytes());
        out.extend_from_slice(&e.dev.to_le_bytes());
        out.extend_from_slice(&e.ino.to_le_bytes());
        out.extend_from_slice(&number.to_le_bytes());
        let used = if e.used { generation } else { e.generation };
        out.extend_from_slice(&used.to_le_bytes());
        if out.len() >= 64 * 1024 {
            w.write_all(&out)?;
            out.clear();
        }
    }
    w.write_all(&out)
}

/// The cache file for `entries` (generation 1), in memory.
#[cfg(test)]
fn encode<'a>(entries: impl Iterator<Item = (&'a OsString, &'a Entry)>) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = encode_to(1, entries.collect(), &mut out);
    out
}

/// A UTF-8 byte string ([`Reader::bytes_field`]).
fn string(r: &mut Reader<'_>) -> Option<String> {
    String::from_utf8(r.bytes_field()?.to_vec()).ok()
}

/// One import list of the file.
fn import_list(r: &mut Reader<'_>) -> Option<Vec<Import>> {
    let n = r.u32()?;
    // Each import takes at least 20 bytes: reject absurd counts early.
    if n as usize > r.remaining() / 20 {
        return None;
    }
    let mut imports = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let module = string(r)?;
        let level = r.u32()?;
        let line = r.u32()?;
        let flags = ImportFlags(u8::try_from(r.u32()?).ok()?);
        let k = r.u32()?;
        if k as usize > r.remaining() / 4 {
            return None;
        }
        let mut names = Vec::with_capacity(k as usize);
        for _ in 0..k {
            names.push(string(r)?);
        }
        imports.push(Import {
            module,
            names,
            level,
            line,
            flags,
        });
    }
    Some(imports)
}

/// The generation and entries of a cache file.
fn decode(buf: &[u8]) -> Option<(u32, HashMap<OsString, Entry>)> {
    let mut r = Reader::new(buf);
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    if r.u64()? != scanner_fingerprint() {
        return None;
    }
    let generation = r.u32()?;
    let n_lists = r.u32()?;
    if n_lists as usize > r.remaining() / 4 {
        return None;
    }
    let mut lists = Vec::with_capacity(n_lists as usize);
    for _ in 0..n_lists {
        lists.push(Arc::new(import_list(&mut r)?));
    }
    let count = r.u64()?;
    // Each entry takes at least 44 bytes.
    if count > (r.remaining() / 44) as u64 {
        return None;
    }
    let mut out = HashMap::default();
    out.reserve(count as usize);
    for _ in 0..count {
        let path = OsString::from_vec(r.bytes_field()?.to_vec());
        let size = r.u64()?;
        let mtime_ns = r.u64()? as i64;
        let dev = r.u64()?;
        let ino = r.u64()?;
        let imports = lists.get(r.u32()? as usize)?.clone();
        let generation = r.u32()?;
        out.insert(
            path,
            Entry {
                size,
                mtime_ns,
                dev,
                ino,
                imports,
                generation,
                used: false,
            },
        );
    }
    if r.remaining() != 0 {
        return None;
    }
    Some((generation, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HashMap<OsString, Entry> {
        let mut m = HashMap::default();
        m.insert(
            OsString::from_vec(b"/x/\xffbad.py".to_vec()),
            Entry {
                size: 12,
                mtime_ns: -5,
                dev: 7,
                ino: 1 << 40,
                imports: Arc::new(vec![Import {
                    module: "a.b".into(),
                    names: vec!["c".into(), "*".into()],
                    level: 2,
                    line: 7,
                    flags: ImportFlags::TYPE_CHECKING | ImportFlags::IN_FUNCTION,
                }]),
                generation: 0,
                used: true,
            },
        );
        m
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = encode(m.iter());
        let (generation, back) = decode(&bytes).unwrap();
        assert_eq!(generation, 1);
        let (p, e) = back.iter().next().unwrap();
        assert_eq!(p, m.keys().next().unwrap());
        assert_eq!(e.size, 12);
        assert_eq!(e.mtime_ns, -5);
        assert_eq!(e.imports, m.values().next().unwrap().imports);
    }

    /// A scanner file missing from the fingerprint would let a build with a
    /// different scanner trust this one's results.
    #[test]
    fn fingerprint_covers_every_scanner_file() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/closure/scan");
        let this = include_str!("import_cache.rs");
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".rs") {
                seen += 1;
                let needle = format!("include_str!(\"scan/{name}\")");
                assert!(
                    this.contains(&needle),
                    "scan/{name} is not in the scanner fingerprint"
                );
            }
        }
        assert!(seen >= 2, "{}: no scanner files found", dir.display());
    }

    #[test]
    fn every_truncation_and_flip_is_rejected_or_harmless() {
        let bytes = encode(sample().iter());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "truncated at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = decode(&b); // must not panic
        }
    }

    #[test]
    fn rescans_only_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.py");
        std::fs::write(&f, "import os\n").unwrap();
        let cache = ImportCache::in_memory();
        let scan = |_: &[u8]| vec![];
        assert!(!cache.get_or_scan(&f, scan).unwrap().cached);
        assert!(cache.get_or_scan(&f, scan).unwrap().cached);
        std::fs::write(&f, "import os, sys\n").unwrap();
        assert!(!cache.get_or_scan(&f, scan).unwrap().cached);
        assert!(cache
            .get_or_scan(&dir.path().join("nope.py"), scan)
            .is_err());
    }

    /// A hard link of a scanned file (a second venv from a linking
    /// installer) is answered by identity, through a saved cache file too;
    /// a copy, or the same inode edited, is scanned.
    #[test]
    fn hard_links_are_found_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (v1, v2) = (dir.path().join("v1"), dir.path().join("v2"));
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::create_dir_all(&v2).unwrap();
        let real = crate::closure::graph::scan_imports;
        std::fs::write(v1.join("m.py"), "import os\nfrom . import sib\n").unwrap();
        let first = ImportCache::in_memory();
        let scanned = first.get_or_scan(&v1.join("m.py"), real).unwrap();
        assert!(!scanned.cached);
        assert_eq!(scanned.imports.len(), 2);
        // Through the file format, as a later launch loads it.
        let cache = ImportCache::from_bytes(&first.to_bytes()).expect("decodes");
        std::fs::hard_link(v1.join("m.py"), v2.join("m.py")).unwrap();
        std::fs::copy(v1.join("m.py"), v2.join("copy.py")).unwrap();
        let unread = |_: &[u8]| -> Vec<Import> { panic!("a hard link must not be read") };
        let linked = cache.get_or_scan(&v2.join("m.py"), unread).unwrap();
        assert!(linked.cached);
        assert_eq!(linked.imports, scanned.imports);
        let copied = cache.get_or_scan(&v2.join("copy.py"), real).unwrap();
        assert!(!copied.cached, "a copy is another inode: scanned");
        assert_eq!(copied.imports, scanned.imports);
        // An edit through one name changes the inode's size and mtime for
        // both: neither path nor identity may answer with the old scan.
        std::fs::write(v2.join("m.py"), "import sys\n").unwrap();
        let edited = cache.get_or_scan(&v1.join("m.py"), real).unwrap();
        assert!(!edited.cached);
        assert_eq!(edited.imports.len(), 1);
        assert_eq!(edited.imports[0].module, "sys");
    }

    /// The same import list under many paths (a package in several venvs)
    /// is stored once, and comes back shared.
    #[test]
    fn identical_lists_are_stored_once() {
        let one = sample();
        let (_, e) = one.iter().next().unwrap();
        let mut many = HashMap::default();
        for i in 0..50 {
            let mut copy = e.clone();
            copy.imports = Arc::new((*e.imports).clone());
            copy.ino = i;
            many.insert(OsString::from(format!("/venv{i}/lib/m.py")), copy);
        }
        let bytes = encode(many.iter());
        let list_bytes = encode(one.iter()).len();
        assert!(
            bytes.len() < list_bytes + 50 * 70,
            "{} bytes for 50 paths of one list",
            bytes.len()
        );
        let (_, back) = decode(&bytes).unwrap();
        let lists: Vec<&Arc<Vec<Import>>> = back.values().map(|e| &e.imports).collect();
        assert!(lists.iter().all(|l| Arc::ptr_eq(l, lists[0])));
        assert_eq!(*lists[0], e.imports);
    }

    /// Past the cap a save keeps this run's entries, then the most
    /// recently used; the generations survive the file.
    #[test]
    fn the_cap_keeps_the_most_recently_used() {
        let (_, e) = sample().into_iter().next().unwrap();
        let mut entries = HashMap::default();
        for (name, generation, used) in [
            ("old", 1, false),
            ("recent", 7, false),
            ("now", 0, true),
            ("mid", 4, false),
        ] {
            let mut x = e.clone();
            x.generation = generation;
            x.used = used;
            entries.insert(OsString::from(name), x);
        }
        let names = |v: Vec<(&OsString, &Entry)>| {
            let mut n: Vec<String> = v
                .iter()
                .map(|(p, _)| p.to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(most_recent(&entries, 2)), ["now", "recent"]);
        assert_eq!(names(most_recent(&entries, 3)), ["mid", "now", "recent"]);
        assert_eq!(most_recent(&entries, 10).len(), 4);
        let mut bytes = Vec::new();
        encode_to(9, most_recent(&entries, 10), &mut bytes).unwrap();
        let (generation, back) = decode(&bytes).unwrap();
        assert_eq!(generation, 9);
        let g = |n: &str| back[&OsString::from(n)].generation;
        assert_eq!((g("old"), g("mid"), g("recent"), g("now")), (1, 4, 7, 9));
    }
}
