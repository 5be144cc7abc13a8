//! The names the scanner's state machine reacts to, recognised in one
//! comparison for the short ones (a name of up to 7 bytes packed into a
//! `u64`).

/// Names the state machine cares about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kw {
    Other,
    Import,
    From,
    Raise,
    Lambda,
    Yield,
    DunderImport,
    ImportModule,
    Importlib,
    For,
    Async,
    As,
    If,
    Elif,
    Else,
    While,
    Try,
    Except,
    Finally,
    With,
    Def,
    Class,
    Match,
    TypeChecking,
    /// The soft keyword `lazy` (PEP 810) when it precedes `import`/`from`.
    Lazy,
    /// A name whose handler catches ImportError: the class itself or a base.
    CatchesImport,
}

/// A name of up to 7 bytes as one integer: the bytes little-endian, the
/// length in the top byte (so no two names share a value).
const fn pack7(b: &[u8]) -> u64 {
    let mut k = (b.len() as u64) << 56;
    let mut i = 0;
    while i < b.len() && i < 7 {
        k |= (b[i] as u64) << (8 * i);
        i += 1;
    }
    k
}

/// The [`Kw`] a name token spells.
#[inline]
pub(super) fn keyword(b: &[u8]) -> Kw {
    const IMPORT: u64 = pack7(b"import");
    const FROM: u64 = pack7(b"from");
    const RAISE: u64 = pack7(b"raise");
    const LAMBDA: u64 = pack7(b"lambda");
    const YIELD: u64 = pack7(b"yield");
    const FOR: u64 = pack7(b"for");
    const ASYNC: u64 = pack7(b"async");
    const AS: u64 = pack7(b"as");
    const IF: u64 = pack7(b"if");
    const ELIF: u64 = pack7(b"elif");
    const ELSE: u64 = pack7(b"else");
    const WHILE: u64 = pack7(b"while");
    const TRY: u64 = pack7(b"try");
    const EXCEPT: u64 = pack7(b"except");
    const FINALLY: u64 = pack7(b"finally");
    const WITH: u64 = pack7(b"with");
    const DEF: u64 = pack7(b"def");
    const CLASS: u64 = pack7(b"class");
    const MATCH: u64 = pack7(b"match");
    const LAZY: u64 = pack7(b"lazy");
    if b.len() <= 7 {
        return match pack7(b) {
            IMPORT => Kw::Import,
            FROM => Kw::From,
            RAISE => Kw::Raise,
            LAMBDA => Kw::Lambda,
            YIELD => Kw::Yield,
            FOR => Kw::For,
            ASYNC => Kw::Async,
            AS => Kw::As,
            IF => Kw::If,
            ELIF => Kw::Elif,
            ELSE => Kw::Else,
            WHILE => Kw::While,
            TRY => Kw::Try,
            EXCEPT => Kw::Except,
            FINALLY => Kw::Finally,
            WITH => Kw::With,
            DEF => Kw::Def,
            CLASS => Kw::Class,
            MATCH => Kw::Match,
            LAZY => Kw::Lazy,
            _ => Kw::Other,
        };
    }
    match b {
        b"__import__" => Kw::DunderImport,
        b"import_module" => Kw::ImportModule,
        b"importlib" => Kw::Importlib,
        b"TYPE_CHECKING" => Kw::TypeChecking,
        b"ImportError" | b"ModuleNotFoundError" | b"Exception" | b"BaseException" => {
            Kw::CatchesImport
        }
        _ => Kw::Other,
    }
}
