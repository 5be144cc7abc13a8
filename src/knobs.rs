//! The `KOLOSAL_*` environment knobs, read in one place.
//!
//! | variable | effect |
//! |---|---|
//! | `KOLOSAL_PYTHON` | the interpreter to run (path, or a name looked up on PATH) |
//! | `KOLOSAL_AUTO_COMPILE=0` | pure pass-through: find the interpreter and exec it, nothing else |
//! | `KOLOSAL_WORKERS=N` | compile workers for the launcher (default: CPU count, capped by work) |
//! | `KOLOSAL_LOG=off\|error\|warn\|info\|debug` | stderr diagnostics (default `warn`; `debug` prints a timeline) |
//! | `KOLOSAL_CACHE_DIR=DIR` | kolosal's cache (probe results, import scans, manifests, fallback pycache) |
//! | `KOLOSAL_WRITE_BYTECODE=1` | do not set `PYTHONDONTWRITEBYTECODE=1` for the program |
//! | `KOLOSAL_CODE_CACHE_SIZE=SIZE` | cap of the shared code cache (`kolosal cache`), e.g. `500M`, `2G`, bytes without a suffix; least recently used bodies are pruned past it; `0` turns the cache off (default `1G`) |
//! | `KOLOSAL_BACKGROUND=0` | compile the whole closure before exec (default: modules only imported inside functions are compiled by a background run after exec) |
//! | `KOLOSAL_LEARN=0` | no run-time learning (default: a detached learner records the modules the program loaded from source, see `launch::learn`) |
//! | `KOLOSAL_LEARN_MAX=N` | at most N learned modules per manifest (default 4000) |
//! | `KOLOSAL_LEARN_WATCHES=N` | at most N directories watched by one learner (default 8192; the kernel's `max_user_watches` also caps it) |

use std::ffi::OsString;

/// Every knob's name, for `kolosal info`.
pub const NAMES: &[&str] = &[
    "KOLOSAL_PYTHON",
    "KOLOSAL_AUTO_COMPILE",
    "KOLOSAL_WORKERS",
    "KOLOSAL_LOG",
    "KOLOSAL_CACHE_DIR",
    "KOLOSAL_WRITE_BYTECODE",
    "KOLOSAL_BACKGROUND",
    "KOLOSAL_LEARN",
    "KOLOSAL_LEARN_MAX",
    "KOLOSAL_LEARN_WATCHES",
    "KOLOSAL_CODE_CACHE_SIZE",
];

/// Default of [`Knobs::learn_max`].
pub const DEFAULT_LEARN_MAX: usize = 4000;
/// Default of [`Knobs::learn_watches`].
pub const DEFAULT_LEARN_WATCHES: usize = 8192;

/// Default cap of the code cache: 1 GiB (about 100,000 modules' bodies).
pub const DEFAULT_CODE_CACHE_SIZE: u64 = 1 << 30;

/// Parses a size: a number of bytes, optionally followed by `K`, `M`, `G`
/// or `T` (powers of 1024, an optional `B`/`iB` after it, any case).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let unit = s[digits..].trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// The knobs in force for one launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knobs {
    /// `KOLOSAL_AUTO_COMPILE` is not `0`/`false`/`off`/`no`.
    pub auto_compile: bool,
    /// `KOLOSAL_WORKERS`, when a positive integer.
    pub workers: Option<usize>,
    /// `KOLOSAL_WRITE_BYTECODE=1`.
    pub write_bytecode: bool,
    /// `KOLOSAL_BACKGROUND` is not `0`/`false`/`off`/`no`: lazy modules are
    /// compiled after exec (see `launch::background`).
    pub background: bool,
    /// `KOLOSAL_LEARN` is not `0`/`false`/`off`/`no`: a learner records the
    /// modules the program loads from source (see `launch::learn`).
    pub learn: bool,
    /// `KOLOSAL_LEARN_MAX`: learned modules kept per manifest.
    pub learn_max: usize,
    /// `KOLOSAL_LEARN_WATCHES`: directories one learner watches at most.
    pub learn_watches: usize,
    /// `KOLOSAL_CODE_CACHE_SIZE` in bytes (default
    /// [`DEFAULT_CODE_CACHE_SIZE`]; 0: no code cache).
    pub code_cache_size: u64,
}

fn falsy(v: &OsString) -> bool {
    matches!(
        v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref(),
        Some("0" | "false" | "off" | "no")
    )
}

fn truthy(v: &OsString) -> bool {
    matches!(
        v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref(),
        Some("1" | "true" | "on" | "yes")
    )
}

/// A non-negative integer knob.
fn count(v: Option<OsString>) -> Option<usize> {
    v?.to_str()?.trim().parse().ok()
}

impl Knobs {
    /// Reads the knobs from a variable lookup.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<OsString>) -> Knobs {
        Knobs {
            auto_compile: !get("KOLOSAL_AUTO_COMPILE").is_some_and(|v| falsy(&v)),
            workers: get("KOLOSAL_WORKERS")
                .and_then(|v| v.to_str()?.trim().parse().ok())
                .filter(|&n: &usize| n > 0),
            write_bytecode: get("KOLOSAL_WRITE_BYTECODE").is_some_and(|v| truthy(&v)),
            background: !get("KOLOSAL_BACKGROUND").is_some_and(|v| falsy(&v)),
            learn: !get("KOLOSAL_LEARN").is_some_and(|v| falsy(&v)),
            learn_max: count(get("KOLOSAL_LEARN_MAX")).unwrap_or(DEFAULT_LEARN_MAX),
            learn_watches: count(get("KOLOSAL_LEARN_WATCHES")).unwrap_or(DEFAULT_LEARN_WATCHES),
            code_cache_size: get("KOLOSAL_CODE_CACHE_SIZE")
                .and_then(|v| parse_size(v.to_str()?))
                .unwrap_or(DEFAULT_CODE_CACHE_SIZE),
        }
    }

    /// Reads the knobs from this process's environment.
    pub fn from_env() -> Knobs {
        Self::from_lookup(&|k| std::env::var_os(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        let k = Knobs::from_lookup(&|_| None);
        assert_eq!(
            k,
            Knobs {
                auto_compile: true,
                workers: None,
                write_bytecode: false,
                background: true,
                learn: true,
                learn_max: DEFAULT_LEARN_MAX,
                learn_watches: DEFAULT_LEARN_WATCHES,
                code_cache_size: DEFAULT_CODE_CACHE_SIZE,
            }
        );
        let k = Knobs::from_lookup(&|n| match n {
            "KOLOSAL_AUTO_COMPILE" => Some("0".into()),
            "KOLOSAL_WORKERS" => Some("3".into()),
            "KOLOSAL_WRITE_BYTECODE" => Some("1".into()),
            "KOLOSAL_BACKGROUND" => Some("off".into()),
            "KOLOSAL_LEARN" => Some("0".into()),
            "KOLOSAL_LEARN_MAX" => Some("12".into()),
            "KOLOSAL_LEARN_WATCHES" => Some("3".into()),
            "KOLOSAL_CODE_CACHE_SIZE" => Some("0".into()),
            _ => None,
        });
        assert_eq!(
            k,
            Knobs {
                auto_compile: false,
                workers: Some(3),
                write_bytecode: true,
                background: false,
                learn: false,
                learn_max: 12,
                learn_watches: 3,
                code_cache_size: 0,
            }
        );
        for (text, want) in [
            ("500M", Some(500 << 20)),
            ("2g", Some(2 << 30)),
            ("64KiB", Some(64 << 10)),
            ("12345", Some(12345)),
            ("1.5G", None),
            ("lots", None),
        ] {
            assert_eq!(parse_size(text), want, "{text}");
        }
        let k = Knobs::from_lookup(&|n| (n == "KOLOSAL_WORKERS").then(|| "zero".into()));
        assert_eq!(k.workers, None);
    }
}
