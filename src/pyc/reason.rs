//! Why the source loader would not use a pyc: one list of reasons, shared
//! by the header rules ([`super::header`]) and the loader's decision
//! ([`super::validate`]), which both depend on it and not on each other.

/// Declares [`StaleReason`] with each variant's stable name, so that
/// [`StaleReason::ALL`] and [`StaleReason::as_str`] come from one list and a
/// new variant cannot be left out of either.
macro_rules! stale_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why the loader would not use a pyc (and would compile the source instead).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum StaleReason {
            $($(#[$doc])* $variant,)*
        }

        impl StaleReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [StaleReason] = &[$(StaleReason::$variant),*];

            /// A stable short name, for `--json` output and logs.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

stale_reasons! {
    /// No pyc at that path.
    Missing => "missing",
    /// The pyc exists but cannot be opened or read.
    Unreadable => "unreadable",
    /// The file is shorter than a header (`EOFError` in importlib).
    ShortHeader => "short-header",
    /// The first 4 bytes are not this interpreter's magic number.
    BadMagic => "bad-magic",
    /// Flag bits other than "hash-based" and "check source" are set.
    BadFlags => "bad-flags",
    /// Timestamp pyc: the recorded mtime differs from the source's.
    Mtime => "mtime",
    /// Timestamp pyc: the recorded size differs from the source's.
    Size => "size",
    /// Hash pyc that must be checked: the recorded hash differs.
    Hash => "hash",
    /// The source cannot be stat'ed or (for a hash check) read.
    SourceUnreadable => "source-unreadable",
    /// The source or the pyc is not a regular file.
    NotRegularFile => "not-regular-file",
    /// The header is valid but the body cannot be a marshalled code object
    /// (too short, or another marshal type first). importlib would not
    /// recompile such a pyc: the import fails (`bad marshal data`,
    /// `Non-code object`). Only [`super::check_loadable`] reports it.
    CorruptBody => "corrupt-body",
}

impl std::fmt::Display for StaleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_are_distinct() {
        let all = StaleReason::ALL;
        let names: std::collections::HashSet<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), all.len());
        assert!(names.iter().all(|n| !n.is_empty() && !n.contains(' ')));
    }
}
