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

use super::facts::PythonFacts;
use super::probe::{run_probe, ProbeConfig, ProbeError, FACT_ENV_VARS};
use serde::{Deserialize, Serialize};
use std::hash::Hasher;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const FORMAT: &str = "kolosal-probe-v1";

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
            let facts = run_probe(python, config)?;
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
    let file = dir.join(format!("{:016x}.json", hash_key(&key)));
    let previous = match read_entry(&file, &key) {
        Ok(facts) => {
            return Ok((
                facts,
                CacheReport {
                    file: Some(file),
                    status: CacheStatus::Hit,
                },
            ))
        }
        Err(why) => why,
    };
    let facts = run_probe(python, config)?;
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
    Ok((
        entry.facts,
        CacheReport {
            file: Some(file),
            status,
        },
    ))
}

#[derive(Serialize, Deserialize)]
struct Entry {
    format: String,
    key: Vec<String>,
    /// Directories whose mtime must be unchanged: (encoded path, mtime_ns or None).
    watch: Vec<(String, Option<i128>)>,
    facts: PythonFacts,
}

/// Why the file cannot be used (`None`: there is no file).
fn read_entry(file: &Path, key: &[String]) -> Result<PythonFacts, Option<String>> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(format!("unreadable: {e}"))),
    };
    let entry: Entry =
        serde_json::from_slice(&bytes).map_err(|e| Some(format!("not a probe cache file: {e}")))?;
    if entry.format != FORMAT {
        return Err(Some(format!("foreign format {:?}", entry.format)));
    }
    if entry.key != key {
        return Err(Some("key mismatch".into()));
    }
    for (path, mtime) in &entry.watch {
        if dir_mtime(Path::new(&decode_path(path))) != *mtime {
            return Err(Some(format!("{path} changed")));
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

/// The full cache key; `None` when the interpreter cannot be stat'ed.
fn cache_key(python: &Path, config: &ProbeConfig) -> Option<Vec<String>> {
    let abs = if python.is_absolute() {
        python.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(python)
    };
    let resolved = abs.canonicalize().ok()?;
    let mut key = vec![
        // A new probe script asks new questions: never serve old answers.
        format!(
            "probe={:016x}",
            hash_key(&[
                super::probe::PROBE_PROLOGUE.to_string(),
                super::probe::PROBE_SCRIPT.to_string()
            ])
        ),
        format!("exe={}", encode_path(&abs)),
        stat_part("resolved", &resolved),
    ];
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
