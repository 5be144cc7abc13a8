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
//! | `KOLOSAL_BACKGROUND=0` | compile the whole closure before exec (default: modules only imported inside functions are compiled by a background run after exec) |

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
];

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
            }
        );
        let k = Knobs::from_lookup(&|n| match n {
            "KOLOSAL_AUTO_COMPILE" => Some("0".into()),
            "KOLOSAL_WORKERS" => Some("3".into()),
            "KOLOSAL_WRITE_BYTECODE" => Some("1".into()),
            "KOLOSAL_BACKGROUND" => Some("off".into()),
            _ => None,
        });
        assert_eq!(
            k,
            Knobs {
                auto_compile: false,
                workers: Some(3),
                write_bytecode: true,
                background: false,
            }
        );
        let k = Knobs::from_lookup(&|n| (n == "KOLOSAL_WORKERS").then(|| "zero".into()));
        assert_eq!(k.workers, None);
    }
}
