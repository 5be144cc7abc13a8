//! A disk cache of probe results, so the launcher's cold path does not pay
//! for starting Python just to learn its facts.
//!
//! One JSON file per (interpreter identity, [`ProbeConfig`]) under
//! `cache::cache_subdir("probe")`. The file name is a hash of the key; the
//! full key is stored inside and compared on read, so a hash collision, a
//! foreign, corrupt or truncated file is simply re-probed and rewritten.
//!
//! The key holds: the unresolved path (CPython derives `sys.prefix` from
//! it), the resolved binary's canonical path, dev, ino, size and mtime_ns,
//! the same for `pyvenv.cfg` next to and above the unresolved path (or their
//! absence), the config's flags and `FACT_ENV_VARS` values, and the working
//! directory when `PYTHONPATH` holds a relative entry. The file also lists
//! the site-packages directories the facts came from with their mtimes: a
//! `pip install` that adds a `.pth` file changes `sys.path`, and must not be
//! served stale.
//!
//! Each probe also leaves a *guess* file, `<hash>.guess.json`, keyed by the
//! same key without the stats of `pyvenv.cfg` (the same binary, path, flags
//! and variables): the facts this path gave last time. A venv made again at the same path (an
//! image rebuild, a CI job, `uv venv` over the old one) misses the cache,
//! and the launcher computes its closure from the guess while the probe
//! runs ([`known_facts`]), keeping that closure only when the probe answers
//! exactly the guessed facts. A guess is never used in place of a probe.
//!
//! An interpreter kolosal does not support (2.7, 3.6) gets a *verdict* file
//! instead, `<hash>.unsupported`, keyed by the interpreter's identity alone
//! (its answer does not depend on flags): later launches read it and pass
//! through without starting anything.
//!
//! Every file is read back only when this user wrote it: opened without
//! following a symlink, a regular file owned by the effective uid and
//! writable by no one else. Anything else is treated as absent.

use super::facts::PythonFacts;
use super::probe::{run_probe, ProbeConfig, ProbeError, FACT_ENV_VARS, MIN_SUPPORTED};
use serde::{Deserialize, Serialize};
use std::hash::Hasher;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const FORMAT: &str = "kolosal-probe-v1";
const VERDICT_FORMAT: &str = "kolosal-unsupported-v1";
const GUESS_FORMAT: &str = "kolosal-probe-guess-v1";

/// Interpreters this process found unsupported, for when no verdict file
/// could be written.
static SEEN_UNSUPPORTED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// What happened to the cache on one [`facts_for_report`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache file; no interpreter was started.
    Hit,
    /// Probed, and the result written (`previous` says why the old file, if
    /// any, was not used).
    Written {
        /// `None` when there was no file; else why it was rejected.
        previous: Option<String>,
    },
    /// Probed, not cached (reason given: no cache dir, unwritable, ...).
    NotCached(String),
}

impl CacheStatus {
    /// Stable one-word name: `hit`, `written`, `not-cached`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Written { .. } => "written",
            CacheStatus::NotCached(_) => "not-cached",
        }
    }
}

/// Where the facts came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheReport {
    /// The cache file for this key (whether or not it could be used).
    pub file: Option<PathBuf>,
    /// What happened.
    pub status: CacheStatus,
}

/// The facts of `python` under `config`, from the cache when its key still
/// matches, else probed and cached. Cache problems are never fatal.
pub fn facts_for(python: &Path, config: &ProbeConfig) -> Result<PythonFacts, ProbeError> {
    facts_for_report(python, config).map(|(f, _)| f)
}

/// [`facts_for`], also saying whether the cache was used.
pub fn facts_for_report(
    python: &Path,
    config: &ProbeConfig,
) -> Result<(PythonFacts, CacheReport), ProbeError> {
    match crate::cache::cache_subdir("probe") {
        Ok(dir) => facts_in(Some(&dir), python, config),
        Err(e) => facts_in(None, python, config).map(|(f, mut r)| {
            r.status = CacheStatus::NotCached(e.to_string());
            (f, r)
        }),
    }
}

/// [`facts_for_report`] with an explicit cache directory (`None`: don't
/// cache). The directory must already exist to be used.
pub fn facts_in(
    dir: Option<&Path>,
    python: &Path,
    config: &ProbeConfig,
) -> Result<(PythonFacts, CacheReport), ProbeError> {
    let (dir, key) = match (dir, cache_key(python, config)) {
        (Some(d), Some(k)) => (d, k),
        (d, _) => {
            let facts = run_probe(python, config)
                .and_then(supported)
                .inspect_err(|e| {
                    if matches!(e, ProbeError::Unsupported(_)) {
                        remember_unsupported(python);
                    }
                })?;
            let why = if d.is_none() {
                "no cache directory"
            } else {
                "the interpreter's identity could not be read"
            };
            return Ok((
                facts,
                CacheReport {
                    file: None,
                    status: CacheStatus::NotCached(why.into()),
                },
            ));
        }
    };
    let ident = &key[..IDENTITY_PARTS];
    let verdict_file = verdict_path(dir, ident);
    if let Some(version) = read_verdict(&verdict_file, ident) {
        return Err(ProbeError::Unsupported(version));
    }
    let file = entry_path(dir, &key);
    let previous = match read_entry(&file, &key) {
        Ok(facts) => {
            let facts = supported(facts)?;
            return Ok((
                facts,
                CacheReport {
                    file: Some(file),
                    status: CacheStatus::Hit,
                },
            ));
        }
        // A missing file is no reason to report.
        Err(FileError::Missing) => None,
        Err(why) => Some(why.to_string()),
    };
    let facts = match run_probe(python, config).and_then(supported) {
        Err(ProbeError::Unsupported(version)) => {
            remember_unsupported(python);
            let verdict = Verdict {
                format: VERDICT_FORMAT.into(),
                key: ident.to_vec(),
                version,
            };
            if let Ok(bytes) = serde_json::to_vec(&verdict) {
                let _ = crate::cache::write_atomic(&verdict_file, &bytes);
            }
            return Err(ProbeError::Unsupported(version));
        }
        other => other?,
    };
    let entry = Entry {
        format: FORMAT.into(),
        key,
        watch: watch_list(&facts),
        facts,
    };
    let status = match serde_json::to_vec(&entry)
        .map_err(|e| e.to_string())
        .and_then(|bytes| crate::cache::write_atomic(&file, &bytes).map_err(|e| e.to_string()))
    {
        Ok(()) => CacheStatus::Written { previous },
        Err(e) => CacheStatus::NotCached(format!("could not write {}: {e}", file.display())),
    };
    if matches!(status, CacheStatus::Written { .. }) {
        store_guess(dir, &entry.key, &entry.facts);
    }
    Ok((
        entry.facts,
        CacheReport {
            file: Some(file),
            status,
        },
    ))
}

/// The key of a guess file: the cache key without the stats of the
/// `pyvenv.cfg` files (the probe script's hash, the path, the resolved
/// binary with its stat, flags and variables remain: a guess is only ever
/// about the very same interpreter binary, whose cache tag and magic
/// number it then has).
fn guess_key(key: &[String]) -> Vec<String> {
    key.iter()
        .filter(|p| !p.starts_with("cfg"))
        .cloned()
        .collect()
}

fn guess_path(dir: &Path, key: &[String]) -> PathBuf {
    dir.join(format!("{:016x}.guess.json", hash_key(key)))
}

/// Leaves the facts just probed as the next guess for this path.
fn store_guess(dir: &Path, key: &[String], facts: &PythonFacts) {
    let key = guess_key(key);
    let guess = Entry {
        format: GUESS_FORMAT.into(),
        watch: Vec::new(),
        facts: facts.clone(),
        key,
    };
    if let Ok(bytes) = serde_json::to_vec(&guess) {
        let _ = crate::cache::write_atomic(&guess_path(dir, &guess.key), &bytes);
    }
}

/// What the cache knows of an interpreter without starting it
/// ([`known_facts`]).
pub(crate) enum Known {
    /// Its facts under this configuration, as [`facts_for`] would serve them.
    Facts(PythonFacts),
    /// Not those, but the facts the same binary at the same path gave the
    /// last time it was probed: a guess, to be checked against the probe.
    Guess(PythonFacts),
    /// Neither (or an interpreter known unsupported: [`facts_for`] says so).
    Nothing,
}

/// One read of the cache for `python` under `config`: its facts on a hit,
/// else the guess left by its last probe (a venv made again at the same
/// path). Every file is read only if this user wrote it.
pub(crate) fn known_facts(python: &Path, config: &ProbeConfig) -> Known {
    let (Ok(dir), Some(key)) = (
        crate::cache::existing_subdir("probe"),
        cache_key(python, config),
    ) else {
        return Known::Nothing;
    };
    let ident = &key[..IDENTITY_PARTS];
    if read_verdict(&verdict_path(&dir, ident), ident).is_some() {
        return Known::Nothing;
    }
    if let Ok(facts) = read_entry(&entry_path(&dir, &key), &key) {
        return match supported(facts) {
            Ok(facts) => Known::Facts(facts),
            Err(_) => Known::Nothing,
        };
    }
    let guess_key = guess_key(&key);
    let guess = read_own_file(&guess_path(&dir, &guess_key))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).ok())
        .filter(|g| g.format == GUESS_FORMAT && g.key == guess_key);
    match guess {
        Some(g) => Known::Guess(g.facts),
        None => Known::Nothing,
    }
}

/// `<dir>/<hash>.json`: the cache entry for `key`.
fn entry_path(dir: &Path, key: &[String]) -> PathBuf {
    dir.join(format!("{:016x}.json", hash_key(key)))
}

#[derive(Serialize, Deserialize)]
struct Entry {
    format: String,
    key: Vec<String>,
    /// Directories whose mtime must be unchanged: (encoded path, mtime_ns or None).
    watch: Vec<(String, Option<i128>)>,
    facts: PythonFacts,
}

/// The launcher's cut-off: facts of a Python older than
/// [`MIN_SUPPORTED`] become [`ProbeError::Unsupported`].
fn supported(facts: PythonFacts) -> Result<PythonFacts, ProbeError> {
    if facts.minor_version() < MIN_SUPPORTED {
        return Err(ProbeError::Unsupported(facts.version));
    }
    Ok(facts)
}

#[derive(Serialize, Deserialize)]
struct Verdict {
    format: String,
    key: Vec<String>,
    version: [u32; 3],
}

/// Whether `python` is known to be an interpreter kolosal does not support
/// (2.7, 3.6): this process probed it, or a verdict file this user wrote
/// says so for the same binary. Creates nothing; one small read at most.
pub fn known_unsupported(python: &Path) -> bool {
    let abs = absolute(python);
    if SEEN_UNSUPPORTED
        .lock()
        .is_ok_and(|seen| abs.as_ref().is_some_and(|a| seen.contains(a)))
    {
        return true;
    }
    let (Some(root), Some(abs)) = (crate::cache::cache_root(), abs) else {
        return false;
    };
    let Some(ident) = identity_key(&abs) else {
        return false;
    };
    read_verdict(&verdict_path(&root.join("probe"), &ident), &ident).is_some()
}

fn remember_unsupported(python: &Path) {
    if let (Ok(mut seen), Some(abs)) = (SEEN_UNSUPPORTED.lock(), absolute(python)) {
        seen.push(abs);
    }
}

fn verdict_path(dir: &Path, ident: &[String]) -> PathBuf {
    dir.join(format!("{:016x}.unsupported", hash_key(ident)))
}

fn read_verdict(file: &Path, ident: &[String]) -> Option<[u32; 3]> {
    let bytes = read_own_file(file).ok()?;
    let v: Verdict = serde_json::from_slice(&bytes).ok()?;
    (v.format == VERDICT_FORMAT && v.key == ident).then_some(v.version)
}

/// Why a cache file (an entry or a verdict) is not used.
#[derive(Debug)]
enum FileError {
    /// There is no file.
    Missing,
    /// It could not be opened or read.
    Unreadable(std::io::Error),
    /// Not a regular file owned by this user and writable by nobody else.
    NotOwn { uid: u32, mode: u32 },
    /// Not JSON of the entry's shape.
    NotEntry(serde_json::Error),
    /// Written by another format version.
    ForeignFormat(String),
    /// Written for another interpreter or configuration.
    KeyMismatch,
    /// A watched directory changed since (its encoded path).
    Changed(String),
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Missing => f.write_str("no file"),
            FileError::Unreadable(e) => write!(f, "unreadable: {e}"),
            FileError::NotOwn { uid, mode } => {
                write!(f, "not written by this user (uid {uid}, mode {mode:o})")
            }
            FileError::NotEntry(e) => write!(f, "not a probe cache file: {e}"),
            FileError::ForeignFormat(format) => write!(f, "foreign format {format:?}"),
            FileError::KeyMismatch => f.write_str("key mismatch"),
            FileError::Changed(path) => write!(f, "{path} changed"),
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Unreadable(e) => Some(e),
            FileError::NotEntry(e) => Some(e),
            _ => None,
        }
    }
}

/// The bytes of `file`, only if this user wrote it: opened without
/// following a symlink, a regular file owned by the effective uid and not
/// writable by group or others.
fn read_own_file(file: &Path) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(file)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FileError::Missing),
        Err(e) => return Err(FileError::Unreadable(e)),
    };
    let m = f.metadata().map_err(FileError::Unreadable)?;
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    if !m.is_file() || m.uid() != euid || m.mode() & 0o022 != 0 {
        return Err(FileError::NotOwn {
            uid: m.uid(),
            mode: m.mode() & 0o7777,
        });
    }
    let mut bytes = Vec::with_capacity(m.len() as usize);
    f.read_to_end(&mut bytes).map_err(FileError::Unreadable)?;
    Ok(bytes)
}

/// The facts `file` holds for `key`, or why it cannot be used.
fn read_entry(file: &Path, key: &[String]) -> Result<PythonFacts, FileError> {
    let bytes = read_own_file(file)?;
    let entry: Entry = serde_json::from_slice(&bytes).map_err(FileError::NotEntry)?;
    if entry.format != FORMAT {
        return Err(FileError::ForeignFormat(entry.format));
    }
    if entry.key != key {
        return Err(FileError::KeyMismatch);
    }
    for (path, mtime) in entry.watch {
        if dir_mtime(Path::new(&decode_path(&path))) != mtime {
            return Err(FileError::Changed(path));
        }
    }
    Ok(entry.facts)
}

fn watch_list(facts: &PythonFacts) -> Vec<(String, Option<i128>)> {
    let mut dirs: Vec<&PathBuf> = facts.site_packages.iter().collect();
    dirs.extend(facts.user_site.iter());
    dirs.sort();
    dirs.dedup();
    dirs.into_iter()
        .map(|d| (encode_path(d), dir_mtime(d)))
        .collect()
}

fn dir_mtime(p: &Path) -> Option<i128> {
    std::fs::metadata(p)
        .ok()
        .map(|m| m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128)
}

/// A path as text: UTF-8 as is (prefixed `s:`), anything else as hex (`x:`).
fn encode_path(p: &Path) -> String {
    match p.to_str() {
        Some(s) => format!("s:{s}"),
        None => {
            let mut out = String::from("x:");
            for b in p.as_os_str().as_bytes() {
                out.push_str(&format!("{b:02x}"));
            }
            out
        }
    }
}

fn decode_path(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    if let Some(t) = s.strip_prefix("s:") {
        return PathBuf::from(t);
    }
    let hex = s.strip_prefix("x:").unwrap_or("");
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

fn stat_part(label: &str, p: &Path) -> String {
    match std::fs::metadata(p) {
        Ok(m) => format!(
            "{label}={} dev={} ino={} size={} mtime_ns={}",
            encode_path(p),
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
        ),
        Err(_) => format!("{label}={} absent", encode_path(p)),
    }
}

fn absolute(python: &Path) -> Option<PathBuf> {
    if python.is_absolute() {
        Some(python.to_path_buf())
    } else {
        Some(std::env::current_dir().ok()?.join(python))
    }
}

/// How many leading parts of the [`cache_key`] identify the interpreter
/// binary alone (the key of an unsupported verdict).
const IDENTITY_PARTS: usize = 3;

/// The probe scripts, the unresolved path and the resolved binary's stat.
fn identity_key(abs: &Path) -> Option<Vec<String>> {
    let resolved = abs.canonicalize().ok()?;
    Some(vec![
        // A new probe script asks new questions: never serve old answers.
        format!(
            "probe={:016x}",
            hash_key(&[
                super::probe::PROBE_PROLOGUE.to_string(),
                super::probe::PROBE_SCRIPT.to_string()
            ])
        ),
        format!("exe={}", encode_path(abs)),
        stat_part("resolved", &resolved),
    ])
}

/// The full cache key; `None` when the interpreter cannot be stat'ed.
fn cache_key(python: &Path, config: &ProbeConfig) -> Option<Vec<String>> {
    let abs = absolute(python)?;
    let mut key = identity_key(&abs)?;
    debug_assert_eq!(key.len(), IDENTITY_PARTS);
    // CPython looks for pyvenv.cfg next to the executable and one level up.
    if let Some(bin) = abs.parent() {
        key.push(stat_part("cfg", &bin.join("pyvenv.cfg")));
        if let Some(up) = bin.parent() {
            key.push(stat_part("cfg", &up.join("pyvenv.cfg")));
        }
    }
    key.push(format!("flags={}", config.python_flags().join(" ")));
    for (i, name) in FACT_ENV_VARS.iter().enumerate() {
        let v = config.env.get(i).cloned().flatten();
        key.push(match v {
            Some(v) => format!("{name}={}", encode_path(Path::new(&v))),
            None => format!("{name} unset"),
        });
    }
    // site.py makes PYTHONPATH entries absolute against the cwd.
    let pp_idx = FACT_ENV_VARS.iter().position(|n| *n == "PYTHONPATH");
    let relative_pp = pp_idx
        .and_then(|i| config.env.get(i).cloned().flatten())
        .is_some_and(|v| std::env::split_paths(&v).any(|p| !p.is_absolute()));
    if relative_pp && !config.isolated && !config.ignore_environment {
        let cwd = std::env::current_dir().ok()?;
        key.push(format!("cwd={}", encode_path(&cwd)));
    }
    Some(key)
}

fn hash_key(key: &[String]) -> u64 {
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x6b6f6c6f, 0x73616c);
    for part in key {
        h.write(part.as_bytes());
        h.write_u8(0);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;
    use std::os::unix::fs::PermissionsExt;

    const PY312: &str = "/root/.pyenv/versions/3.12.1/bin/python3";

    #[test]
    fn own_file_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        assert!(matches!(read_own_file(&missing), Err(FileError::Missing)));

        // A symlink is not followed: the open fails with ELOOP, kept as source.
        let target = dir.path().join("target.json");
        std::fs::write(&target, b"{}").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = read_own_file(&link).unwrap_err();
        let io = e
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .unwrap();
        assert_eq!(io.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(e.to_string(), format!("unreadable: {io}"));

        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = read_own_file(&target).unwrap_err();
        // SAFETY: geteuid cannot fail and touches no memory.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            e.to_string(),
            format!("not written by this user (uid {euid}, mode 664)")
        );

        let e = read_entry(&dir.path().join("missing.json"), &[]).unwrap_err();
        assert!(matches!(e, FileError::Missing));
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&target, b"[1]").unwrap();
        let e = read_entry(&target, &[]).unwrap_err();
        assert!(e.source().unwrap().is::<serde_json::Error>());
        assert!(e.to_string().starts_with("not a probe cache file: "), "{e}");
    }

    /// Why a cache file was rejected reaches the report as it always did,
    /// with a real interpreter probed behind it; a missing file is no reason.
    #[test]
    fn report_says_why_a_file_was_rejected() {
        let python = Path::new(PY312);
        if !python.exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = ProbeConfig::default();
        let (_, first) = facts_in(Some(dir.path()), python, &config).unwrap();
        assert_eq!(first.status, CacheStatus::Written { previous: None });
        let (_, second) = facts_in(Some(dir.path()), python, &config).unwrap();
        assert_eq!(second.status, CacheStatus::Hit);
        let file = second.file.unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (_, third) = facts_in(Some(dir.path()), python, &config).unwrap();
        // SAFETY: geteuid cannot fail and touches no memory.
        let euid = unsafe { libc::geteuid() };
        let why = format!("not written by this user (uid {euid}, mode 666)");
        assert_eq!(
            third.status,
            CacheStatus::Written {
                previous: Some(why)
            }
        );
    }
}
