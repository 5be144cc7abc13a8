//! CPython's pyc rules, each in one place: where a pyc lives
//! ([`cache_path`]), what its header must say ([`header`]), and how hash-based
//! pycs key their source hash ([`source_hash`]).

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
