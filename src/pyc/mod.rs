//! CPython's pyc rules, each in one place: where a pyc lives
//! (`cache_path`), what its header must say (`header`), how hash-based
//! pycs key their source hash ([`source_hash()`]), and how the source loader
//! puts them together to decide whether a pyc is used (`validate`).
//!
//! Every rule is a function of [`PycRules`], which holds the facts the target
//! interpreter reported about itself (version, magic number, cache tag):
//! nothing here hard-codes a magic number.

pub(crate) mod cache_path;
pub(crate) mod header;
mod reason;
pub(crate) mod source_hash;
pub(crate) mod validate;

pub use cache_path::{cache_from_source, legacy_pyc_path, source_from_cache};
pub use header::{mtime_field, mtime_seconds, parse_header, Header, PycKind};
pub use source_hash::source_hash;
pub use validate::{
    check, check_loadable, check_loadable_with_meta, check_with_meta, rewrite_mode, StaleReason,
    Verdict, MIN_BODY,
};

/// A source file and the pyc importlib reads for it: the pair every
/// freshness check, plan and compile job is about. [`crate::compile::CompileJob`]
/// and [`crate::compile::plan::Target`] hold one (and dereference to it);
/// [`crate::freshness`] checks slices of anything that is
/// `AsRef<PycTarget>`, so no caller copies paths into another shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PycTarget {
    /// The source file, as importlib names it.
    pub source: std::path::PathBuf,
    /// The exact pyc path.
    pub cfile: std::path::PathBuf,
}

impl AsRef<PycTarget> for PycTarget {
    fn as_ref(&self) -> &PycTarget {
        self
    }
}

/// The facts about one interpreter that decide its pyc rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PycRules {
    /// `sys.version_info[:2]`.
    pub version: (u32, u32),
    /// `importlib.util.MAGIC_NUMBER` (all 4 bytes, including the trailing `\r\n`).
    pub magic: [u8; 4],
    /// `sys.implementation.cache_tag`; `None` disables the `__pycache__` layout.
    pub cache_tag: Option<String>,
}

impl PycRules {
    /// The rules of the interpreter `f` describes; `None` when its reported
    /// magic number is not 4 hex-encoded bytes.
    pub fn from_facts(f: &crate::interpreter::PythonFacts) -> Option<Self> {
        Some(PycRules {
            version: f.minor_version(),
            magic: f.magic_bytes()?,
            cache_tag: f.cache_tag.clone(),
        })
    }

    /// Length of the pyc header: 16 bytes since 3.7 (PEP 552: magic, flags,
    /// 8 bytes of mtime+size or source hash), 12 on 3.6 (magic, mtime, size).
    pub fn header_len(&self) -> usize {
        if self.has_flags_field() {
            16
        } else {
            12
        }
    }

    /// Whether headers carry PEP 552's flags word (3.7+), and with it
    /// hash-based pycs and `--check-hash-based-pycs`.
    pub fn has_flags_field(&self) -> bool {
        self.version >= (3, 7)
    }

    /// Whether `sys.pycache_prefix` exists (3.8+); older interpreters ignore
    /// `-X pycache_prefix` and `PYTHONPYCACHEPREFIX`.
    pub fn supports_pycache_prefix(&self) -> bool {
        self.version >= (3, 8)
    }
}

/// How hash-based pycs are checked: `--check-hash-based-pycs`, mirrored from
/// `_imp.check_hash_based_pycs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashCheckMode {
    /// Check "checked" hash pycs, trust "unchecked" ones.
    #[default]
    Default,
    /// Check every hash-based pyc.
    Always,
    /// Check no hash-based pyc.
    Never,
}

impl HashCheckMode {
    /// Parses CPython's spelling (`default`, `always`, `never`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "default" => Some(Self::Default),
            "always" => Some(Self::Always),
            "never" => Some(Self::Never),
            _ => None,
        }
    }

    /// CPython's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Always => "always",
            Self::Never => "never",
        }
    }
}

/// How a pyc is tied to its source: `py_compile.PycInvalidationMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InvalidationMode {
    /// Source mtime and size in the header (flags = 0).
    #[default]
    Timestamp,
    /// Source hash, checked at import (flags = 0b11).
    CheckedHash,
    /// Source hash, not checked at import by default (flags = 0b01).
    UncheckedHash,
}

impl InvalidationMode {
    /// Parses `timestamp`, `checked-hash`, `unchecked-hash` (compileall's spelling).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "timestamp" => Some(Self::Timestamp),
            "checked-hash" | "checked_hash" => Some(Self::CheckedHash),
            "unchecked-hash" | "unchecked_hash" => Some(Self::UncheckedHash),
            _ => None,
        }
    }

    /// compileall's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timestamp => "timestamp",
            Self::CheckedHash => "checked-hash",
            Self::UncheckedHash => "unchecked-hash",
        }
    }

    /// `py_compile._get_default_invalidation_mode`: CHECKED_HASH when
    /// `SOURCE_DATE_EPOCH` is set (non-empty), else TIMESTAMP.
    pub fn py_compile_default() -> Self {
        match std::env::var_os("SOURCE_DATE_EPOCH") {
            Some(v) if !v.is_empty() => Self::CheckedHash,
            _ => Self::Timestamp,
        }
    }
}
