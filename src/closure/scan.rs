//! The import scanner: every import statement in a Python source file, found
//! at token level without parsing the file.
//!
//! [`scan`] tokenizes the source bytes (see the private `lexer` module:
//! strings of every prefix, PEP 701 f-/t-strings, comments, continuations,
//! brackets) and runs a small per-logical-line state machine over the tokens.
//! It reports `import` and `from ... import` statements anywhere in the file,
//! plus literal `importlib.import_module("x")` / `import_module("x")` /
//! `__import__("x")` calls, each with the context it sits in (function body,
//! `if TYPE_CHECKING:`, `try:` guarded by `except ImportError`, conditional).
//!
//! Context comes from indentation, the way CPython's tokenizer sees it
//! (`Parser/tokenizer.c`: tabs to multiples of 8, form feed resets the
//! column, blank and comment-only lines ignored), so a block lasts until the
//! first logical line indented no deeper than its header.
//!
//! The scanner never panics and runs in time linear in the input, whatever
//! the input: on malformed source it still returns its best reading.

mod lexer;

use aho_corasick::packed::Searcher;
use lexer::{
    First, Kind, Lexer, LineSummary, Skip, Token, WordHits, STR_BACKSLASH, STR_BYTES, STR_RAW,
};
use memchr::{memchr, memchr_iter, memmem};
use std::fmt;
use std::ops::{BitOr, BitOrAssign};
use std::sync::OnceLock;
use unicode_normalization::UnicodeNormalization;

/// Context bits of an `ImportStmt`: where in the file the import sits.
///
/// A bitflags-style newtype; combine with `|`, test with [`ImportFlags::contains`].
/// Each bit is lexical: an import nested in several contexts carries all of them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ImportFlags(pub u8);

impl ImportFlags {
    /// No context: a plain module-level import.
    pub const NONE: ImportFlags = ImportFlags(0);
    /// In the body of `if TYPE_CHECKING:` / `if <name>.TYPE_CHECKING:` (or
    /// such an `elif`), so never executed at run time.
    pub const TYPE_CHECKING: ImportFlags = ImportFlags(1);
    /// In the body of a `def` / `async def` or a `lambda` (runs on call only).
    pub const IN_FUNCTION: ImportFlags = ImportFlags(2);
    /// In the body of a `try:` one of whose handlers is bare or names
    /// `ImportError`, `ModuleNotFoundError`, `Exception` or `BaseException`,
    /// so its failure is tolerated.
    pub const TRY_IMPORT_ERROR: ImportFlags = ImportFlags(4);
    /// In the body or `else` of an `if`/`elif`/`while`, in an `elif` test, or
    /// in a `match` statement's cases.
    pub const CONDITIONAL: ImportFlags = ImportFlags(8);
    /// Not a statement: a call `importlib.import_module("lit")`,
    /// `import_module("lit", ...)` or `__import__("lit", ...)` with a literal
    /// string first argument.
    pub const DYNAMIC: ImportFlags = ImportFlags(16);
    /// A PEP 810 `lazy import m` / `lazy from m import x` (3.15+): the
    /// module is imported on first use of the name, not by the statement.
    pub const LAZY: ImportFlags = ImportFlags(32);

    const NAMES: [(ImportFlags, &'static str); 6] = [
        (Self::TYPE_CHECKING, "TYPE_CHECKING"),
        (Self::IN_FUNCTION, "IN_FUNCTION"),
        (Self::TRY_IMPORT_ERROR, "TRY_IMPORT_ERROR"),
        (Self::CONDITIONAL, "CONDITIONAL"),
        (Self::DYNAMIC, "DYNAMIC"),
        (Self::LAZY, "LAZY"),
    ];

    /// The raw bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// True when every bit of `other` is set in `self`.
    pub fn contains(self, other: ImportFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when no bit is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for ImportFlags {
    type Output = ImportFlags;
    fn bitor(self, rhs: ImportFlags) -> ImportFlags {
        ImportFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for ImportFlags {
    fn bitor_assign(&mut self, rhs: ImportFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for ImportFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(b, _)| self.contains(*b))
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("NONE")
        } else {
            f.write_str(&names.join("|"))
        }
    }
}

/// One imported module, as written in the source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImportStmt {
    /// Dotted module name, NFKC-normalised like CPython identifiers; `""` for
    /// `from . import x`.
    pub module: String,
    /// For `from m import a, b as c`: `["a", "b"]`; `["*"]` for a star
    /// import; empty for `import m` and for dynamic imports.
    pub names: Vec<String>,
    /// Leading dots of a relative import (0 for absolute).
    pub level: u32,
    /// 1-based line of the `import`/`from` keyword (of the callee for
    /// dynamic imports).
    pub line: u32,
    /// Where the import sits.
    pub flags: ImportFlags,
}

/// Every import in `source` (Python source bytes, any encoding CPython
/// accepts that is ASCII-compatible), in source order. `import a, b` yields
/// one `ImportStmt` per module. Never panics; linear time.
pub fn scan(source: &[u8]) -> Vec<ImportStmt> {
    // CPython reads source with universal newlines: "\r\n" and "\r" are "\n".
    let owned;
    let src: &[u8] = if memchr(b'\r', source).is_some() {
        owned = normalize_newlines(source);
        &owned
    } else {
        source
    };
    let mut sc = Scanner::new(src);
    let mut lx = Lexer::new(src);
    let mut hits = WordHits::new(src, words());
    let after_last_import = memmem::rfind(src, b"import").map_or(0, |i| i + b"import".len());
    loop {
        // Most logical lines hold no name the state machine reacts to:
        // those are skipped without tokens, keeping only what their first
        // name and header colon do to the block structure.
        let line_start = lx.pos();
        let mut kw = Kw::Other;
        let skip = lx.skip_line(&mut hits, |b| {
            kw = keyword(b);
            first_name(kw)
        });
        if let Skip::Line(line) = skip {
            if line_start >= after_last_import && line.indent == 0 && !continues_statement(kw) {
                // Every import statement and dynamic import call spells
                // `import`, and none is left. A new top-level statement
                // has begun, so no `except` can still flag the imports of
                // an enclosing `try`: nothing after this can change the
                // result.
                return sc.finish();
            }
            sc.skipped_line(&line, kw);
            continue;
        }
        loop {
            let t = lx.next_token();
            if t.kind == Kind::Eof {
                return sc.finish();
            }
            sc.step(&t);
            if t.kind == Kind::Newline {
                break;
            }
        }
    }
}

/// The searcher for the words whose name tokens the state machine reacts to
/// anywhere in a line: they start or continue an import statement
/// (`import`, `from`) or a dynamic import call (`__import__`,
/// `import_module`: both hold `import`), open a lambda, or make an `if`
/// test a TYPE_CHECKING test. A line without them only changes the block
/// structure, which [`Scanner::skipped_line`] replays.
fn words() -> Option<&'static Searcher> {
    static WORDS: OnceLock<Option<Searcher>> = OnceLock::new();
    WORDS
        .get_or_init(|| Searcher::new(["import", "from", "lambda", "TYPE_CHECKING"]))
        .as_ref()
}

/// How a line whose first token is a name (`kw`) is handled: the header
/// keywords whose test or second keyword matters (`except`, `async`, the
/// soft keyword `match`) and the names of [`words`] need tokens; the other
/// header keywords only need their colon.
fn first_name(kw: Kw) -> First {
    match kw {
        Kw::Import
        | Kw::From
        | Kw::Lambda
        | Kw::DunderImport
        | Kw::ImportModule
        | Kw::TypeChecking
        | Kw::Except
        | Kw::Async
        | Kw::Match => First::Tokens,
        Kw::If
        | Kw::Elif
        | Kw::Else
        | Kw::While
        | Kw::For
        | Kw::Try
        | Kw::Finally
        | Kw::With
        | Kw::Def
        | Kw::Class => First::Header,
        _ => First::Plain,
    }
}

/// A clause that continues the compound statement before it at the same
/// indentation (`except` and `finally` of a `try`, `else`/`elif`).
fn continues_statement(kw: Kw) -> bool {
    matches!(kw, Kw::Except | Kw::Finally | Kw::Else | Kw::Elif)
}

fn normalize_newlines(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        let b = src[i];
        if b == b'\r' {
            out.push(b'\n');
            if src.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
        } else {
            out.push(b);
        }
        i += 1;
    }
    out
}

const TC: u8 = ImportFlags::TYPE_CHECKING.0;
const FUNC: u8 = ImportFlags::IN_FUNCTION.0;
const TRY: u8 = ImportFlags::TRY_IMPORT_ERROR.0;
const COND: u8 = ImportFlags::CONDITIONAL.0;
const DYN: u8 = ImportFlags::DYNAMIC.0;
const LAZY: u8 = ImportFlags::LAZY.0;

/// Names the state machine cares about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kw {
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

#[inline]
fn keyword(b: &[u8]) -> Kw {
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

/// The compound statement that last ran at one indentation level (to know
/// what an `else`/`elif`/`except` belongs to).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Last {
    Other,
    If,
    While,
    For,
    Try,
}

/// One indentation level of statements.
#[derive(Clone, Copy, Debug)]
struct Level {
    indent: u32,
    last: Last,
    /// Output range of the last `try:` body at this level.
    try_start: usize,
    try_end: Option<usize>,
}

/// An open block: lines indented deeper than `header_indent` get `flags`.
#[derive(Clone, Copy, Debug)]
struct Frame {
    header_indent: u32,
    flags: u8,
}

/// An open `lambda` at bracket depth `depth`.
#[derive(Clone, Copy, Debug)]
struct Lambda {
    depth: u32,
    in_body: bool,
    pending_if: u32,
}

/// Which compound statement header a logical line starts with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Header {
    None,
    Async,
    If,
    Elif,
    Else,
    While,
    For,
    Try,
    Except,
    Finally,
    With,
    Def,
    Class,
}

/// State of the current logical line.
#[derive(Clone, Copy, Debug)]
struct Line {
    indent: u32,
    level: usize,
    base: u8,
    header: Header,
    header_open: bool,
    header_closed: bool,
    header_flags: u8,
    body_flags: u8,
    body_tokens: bool,
    /// TYPE_CHECKING test recogniser: 0 start, 1 NAME, 2 NAME., 3 NAME.NAME, 4 no.
    tc_state: u8,
    tc_last: bool,
    exc_qualifies: bool,
    exc_expr: bool,
    exc_as: bool,
    first_is_match: bool,
    last_colon0: bool,
}

impl Line {
    fn new(indent: u32, level: usize, base: u8) -> Line {
        Line {
            indent,
            level,
            base,
            header: Header::None,
            header_open: false,
            header_closed: false,
            header_flags: base,
            body_flags: base,
            body_tokens: false,
            tc_state: 0,
            tc_last: false,
            exc_qualifies: false,
            exc_expr: false,
            exc_as: false,
            first_is_match: false,
            last_colon0: false,
        }
    }

    fn flags(&self) -> u8 {
        if self.header_open {
            self.header_flags
        } else if self.header_closed {
            self.body_flags
        } else {
            self.base
        }
    }
}

/// Import statement parser states.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Imp {
    Idle,
    /// `import` seen, or `,` after a name: expect a dotted name.
    Name,
    /// After a (partial) dotted name.
    After,
    /// After a `.` in a dotted name.
    Dot,
    /// After `as`.
    Alias,
    /// After `as NAME`.
    AfterAlias,
    /// `from` and dots.
    FromDots,
    /// `from` module name.
    FromMod,
    /// `.` in the `from` module name.
    FromModDot,
    /// After `from M import` (and an optional `(`).
    FromNames,
    /// After an imported name (or its alias).
    FromNameAfter,
    /// After `as` in the name list.
    FromAlias,
    /// After `,` in the name list.
    FromNext,
}

/// Dynamic import call recogniser states.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dyn {
    Idle,
    Paren,
    Str,
    After,
}

#[derive(Clone, Copy, Debug)]
struct Prev {
    kind: Kind,
    op: u8,
    kw: Kw,
    start: usize,
}

const NO_PREV: Prev = Prev {
    kind: Kind::Newline,
    op: 0,
    kw: Kw::Other,
    start: 0,
};

struct Scanner<'a> {
    src: &'a [u8],
    out: Vec<ImportStmt>,
    frames: Vec<Frame>,
    levels: Vec<Level>,
    lambdas: Vec<Lambda>,
    lambda_bodies: u32,
    line: Line,
    line_pos: usize,
    line_no: u32,
    in_raise: bool,
    imp: Imp,
    paren: bool,
    module: String,
    names: Vec<String>,
    level: u32,
    imp_line: u32,
    imp_flags: u8,
    dynst: Dyn,
    dyn_buf: String,
    dyn_line: u32,
    dyn_flags: u8,
    prev: [Prev; 3],
    /// Indentation of the last line when it was a skipped line whose first
    /// name opens no header ([`First::Plain`]); `None` after anything else.
    plain_indent: Option<u32>,
}

/// Appends identifier `b`, NFKC-normalised when non-ASCII (mirrors CPython's
/// `Parser/pegen.c:_PyPegen_new_identifier`).
fn push_ident(s: &mut String, b: &[u8]) {
    if b.is_ascii() {
        s.push_str(std::str::from_utf8(b).unwrap_or_default());
    } else {
        s.extend(String::from_utf8_lossy(b).nfkc());
    }
}

impl<'a> Scanner<'a> {
    fn new(src: &'a [u8]) -> Self {
        Scanner {
            src,
            out: Vec::new(),
            frames: Vec::new(),
            levels: vec![Level {
                indent: 0,
                last: Last::Other,
                try_start: 0,
                try_end: None,
            }],
            lambdas: Vec::new(),
            lambda_bodies: 0,
            line: Line::new(0, 0, 0),
            line_pos: 0,
            line_no: 1,
            in_raise: false,
            imp: Imp::Idle,
            paren: false,
            module: String::new(),
            names: Vec::new(),
            level: 0,
            imp_line: 0,
            imp_flags: 0,
            dynst: Dyn::Idle,
            dyn_buf: String::new(),
            dyn_line: 0,
            dyn_flags: 0,
            prev: [NO_PREV; 3],
            plain_indent: None,
        }
    }

    /// Ends the statement and line in progress and returns every import found.
    fn finish(mut self) -> Vec<ImportStmt> {
        self.end_statement();
        self.end_line();
        self.out
    }

    /// 1-based line number of byte `pos` (positions are asked in increasing
    /// order, so the total counting work is linear).
    fn line_of(&mut self, pos: usize) -> u32 {
        let pos = pos.min(self.src.len());
        if pos < self.line_pos {
            self.line_pos = 0;
            self.line_no = 1;
        }
        let n = memchr_iter(b'\n', &self.src[self.line_pos..pos]).count();
        self.line_no = self
            .line_no
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        self.line_pos = pos;
        self.line_no
    }

    fn step(&mut self, t: &Token) {
        self.plain_indent = None;
        if t.kind == Kind::Newline {
            self.end_statement();
            self.end_line();
            // Tokens never look back across a NEWLINE (`yield` ending one
            // line does not make the next line's `from` a `yield from`).
            self.prev = [NO_PREV; 3];
            return;
        }
        let kw = if t.kind == Kind::Name {
            keyword(&self.src[t.start..t.end])
        } else {
            Kw::Other
        };
        // The keyword(s) that open a header are not part of its expression.
        let header_kw = t.first || self.line.header == Header::Async;
        if t.first {
            self.begin_line(t.indent, kw);
        } else if self.line.header == Header::Async {
            let h = match kw {
                Kw::Def => Header::Def,
                Kw::For => Header::For,
                Kw::With => Header::With,
                _ => Header::None,
            };
            self.setup_header(h);
        }

        let colon_consumed = self.lambda_step(t, kw);
        let is_colon = t.kind == Kind::Op && t.op == b':';

        if self.line.header_open && !header_kw {
            if is_colon && t.depth == 0 && !colon_consumed {
                self.close_header();
            } else {
                self.header_token(t, kw);
            }
        } else if self.line.header_closed {
            self.line.body_tokens = true;
        }
        self.line.last_colon0 = is_colon && t.depth == 0 && !colon_consumed;

        if t.kind == Kind::Op && t.op == b';' && t.depth == 0 {
            self.end_statement();
        } else {
            let flags = self.line.flags() | if self.lambda_bodies > 0 { FUNC } else { 0 };
            self.import_step(t, kw, flags);
            self.dynamic_step(t, kw, flags);
            if kw == Kw::Raise {
                self.in_raise = true;
            }
        }
        self.prev = [
            Prev {
                kind: t.kind,
                op: t.op,
                kw,
                start: t.start,
            },
            self.prev[0],
            self.prev[1],
        ];
    }

    /// A logical line the lexer skipped (see [`words`] and
    /// [`first_name`]): what its tokens would have done. Only a header
    /// keyword first and the colon closing the header matter; every other
    /// token is a no-op for the state machine.
    fn skipped_line(&mut self, l: &LineSummary, kw: Kw) {
        let plain = first_name(kw) == First::Plain;
        if plain && self.plain_indent == Some(l.indent) {
            // The same plain line again: every step below would redo
            // exactly what the previous line did.
            return;
        }
        self.plain_indent = plain.then_some(l.indent);
        self.begin_line(l.indent, kw);
        if self.line.header_open && l.colon {
            self.close_header();
            self.line.body_tokens = l.after_colon;
        }
        self.end_statement();
        self.end_line();
        self.prev = [NO_PREV; 3];
    }

    fn begin_line(&mut self, indent: u32, kw: Kw) {
        while self
            .frames
            .last()
            .is_some_and(|f| f.header_indent >= indent)
        {
            self.frames.pop();
        }
        while self.levels.last().is_some_and(|l| l.indent > indent) {
            self.levels.pop();
        }
        if self.levels.last().map_or(true, |l| l.indent != indent) {
            self.levels.push(Level {
                indent,
                last: Last::Other,
                try_start: 0,
                try_end: None,
            });
        }
        let base = self.frames.last().map_or(0, |f| f.flags);
        self.line = Line::new(indent, self.levels.len() - 1, base);
        let h = match kw {
            Kw::If => Header::If,
            Kw::Elif => Header::Elif,
            Kw::Else => Header::Else,
            Kw::While => Header::While,
            Kw::For => Header::For,
            Kw::Try => Header::Try,
            Kw::Except => Header::Except,
            Kw::Finally => Header::Finally,
            Kw::With => Header::With,
            Kw::Def => Header::Def,
            Kw::Class => Header::Class,
            Kw::Async => {
                self.line.header = Header::Async;
                return;
            }
            _ => Header::None,
        };
        self.line.first_is_match = kw == Kw::Match;
        self.setup_header(h);
    }

    /// Sets the flags of a header line and records it at its level.
    fn setup_header(&mut self, h: Header) {
        let base = self.line.base;
        let out_len = self.out.len();
        let Some(lvl) = self.levels.get_mut(self.line.level) else {
            return;
        };
        let (hf, bf) = match h {
            Header::None | Header::Async => {
                lvl.last = Last::Other;
                self.line.header = Header::None;
                return;
            }
            Header::If => {
                lvl.last = Last::If;
                (base, base | COND)
            }
            Header::Elif => (base | COND, base | COND),
            Header::Else => match lvl.last {
                Last::If | Last::While => (base | COND, base | COND),
                Last::Try => {
                    lvl.try_end.get_or_insert(out_len);
                    (base, base)
                }
                _ => (base, base),
            },
            Header::While => {
                lvl.last = Last::While;
                (base, base | COND)
            }
            Header::For => {
                lvl.last = Last::For;
                (base, base)
            }
            Header::Try => {
                lvl.last = Last::Try;
                (base, base)
            }
            Header::Except | Header::Finally => {
                if lvl.last == Last::Try {
                    lvl.try_end.get_or_insert(out_len);
                }
                (base, base)
            }
            Header::With | Header::Class => {
                lvl.last = Last::Other;
                (base, base)
            }
            Header::Def => {
                lvl.last = Last::Other;
                (base, base | FUNC)
            }
        };
        self.line.header = h;
        self.line.header_open = true;
        self.line.header_flags = hf;
        self.line.body_flags = bf;
    }

    /// A token of an open header (before its colon).
    fn header_token(&mut self, t: &Token, kw: Kw) {
        let l = &mut self.line;
        match l.header {
            Header::If | Header::Elif => {
                let is_op = |c: u8| t.kind == Kind::Op && t.op == c;
                l.tc_state = match (l.tc_state, t.kind) {
                    (0, _) if is_op(b'(') => 0,
                    (0 | 2, Kind::Name) => {
                        l.tc_last = kw == Kw::TypeChecking;
                        l.tc_state + 1
                    }
                    (1, _) if is_op(b'.') => 2,
                    (1 | 3, _) if is_op(b')') => l.tc_state,
                    _ => 4,
                };
            }
            Header::Except => {
                if kw == Kw::As && t.depth == 0 {
                    l.exc_as = true;
                }
                if !l.exc_as {
                    if kw == Kw::CatchesImport {
                        l.exc_qualifies = true;
                    }
                    if !(t.kind == Kind::Op && t.op == b'*') {
                        l.exc_expr = true;
                    }
                }
            }
            _ => {}
        }
    }

    /// The colon that ends a compound statement header.
    fn close_header(&mut self) {
        let l = &mut self.line;
        l.header_open = false;
        l.header_closed = true;
        match l.header {
            Header::If | Header::Elif if matches!(l.tc_state, 1 | 3) && l.tc_last => {
                l.body_flags |= TC
            }
            Header::Try => {
                if let Some(lvl) = self.levels.get_mut(l.level) {
                    lvl.try_start = self.out.len();
                    lvl.try_end = None;
                }
            }
            // A bare except, or one naming ImportError or a base class of it,
            // catches a failed import in the try body.
            Header::Except if l.exc_qualifies || !l.exc_expr => {
                if let Some(lvl) = self
                    .levels
                    .get(l.level)
                    .filter(|lvl| lvl.last == Last::Try)
                    .copied()
                {
                    let end = lvl.try_end.unwrap_or(self.out.len()).min(self.out.len());
                    let start = lvl.try_start.min(end);
                    for imp in &mut self.out[start..end] {
                        imp.flags.0 |= TRY;
                    }
                    // Flag each body once, however many handlers follow.
                    if let Some(lvl) = self.levels.get_mut(l.level) {
                        lvl.try_start = end;
                    }
                }
            }
            _ => {}
        }
    }

    fn end_line(&mut self) {
        let l = self.line;
        if l.header_closed && !l.body_tokens {
            self.frames.push(Frame {
                header_indent: l.indent,
                flags: l.body_flags,
            });
        } else if l.first_is_match && l.last_colon0 {
            self.frames.push(Frame {
                header_indent: l.indent,
                flags: l.base | COND,
            });
        }
        self.line.header_open = false;
        self.line.header_closed = false;
        self.line.first_is_match = false;
        self.lambdas.clear();
        self.lambda_bodies = 0;
    }

    /// Tracks lambda extents; returns true when `t` is a lambda's own colon.
    fn lambda_step(&mut self, t: &Token, kw: Kw) -> bool {
        let closing = t.kind == Kind::Op && matches!(t.op, b')' | b']' | b'}');
        while let Some(top) = self.lambdas.last_mut() {
            let d = top.depth;
            let ends = if t.depth < d || (closing && t.depth <= d) {
                true
            } else if !top.in_body || t.depth != d {
                false
            } else if t.kind == Kind::Op {
                matches!(t.op, b',' | b';' | b':')
            } else {
                match kw {
                    Kw::For | Kw::Async | Kw::As | Kw::From => true,
                    Kw::If => {
                        top.pending_if += 1;
                        false
                    }
                    Kw::Else if top.pending_if > 0 => {
                        top.pending_if -= 1;
                        false
                    }
                    Kw::Else => true,
                    _ => false,
                }
            };
            if !ends {
                break;
            }
            if top.in_body {
                self.lambda_bodies -= 1;
            }
            self.lambdas.pop();
        }
        if t.kind == Kind::Op && t.op == b':' {
            if let Some(top) = self.lambdas.last_mut() {
                if !top.in_body && top.depth == t.depth {
                    top.in_body = true;
                    self.lambda_bodies += 1;
                    return true;
                }
            }
        }
        if kw == Kw::Lambda {
            self.lambdas.push(Lambda {
                depth: t.depth,
                in_body: false,
                pending_if: 0,
            });
        }
        false
    }

    fn emit(&mut self, names: Vec<String>) {
        let module = std::mem::take(&mut self.module);
        self.out.push(ImportStmt {
            module,
            names,
            level: self.level,
            line: self.imp_line,
            flags: ImportFlags(self.imp_flags),
        });
    }

    /// Ends a simple statement (`;` or end of line): flushes a pending import.
    fn end_statement(&mut self) {
        match self.imp {
            Imp::After | Imp::AfterAlias => self.emit(Vec::new()),
            Imp::FromNameAfter | Imp::FromNext | Imp::FromAlias if !self.names.is_empty() => {
                let names = std::mem::take(&mut self.names);
                self.emit(names);
            }
            _ => {}
        }
        self.imp = Imp::Idle;
        self.names.clear();
        self.module.clear();
        self.in_raise = false;
        self.dynst = Dyn::Idle;
    }

    fn import_step(&mut self, t: &Token, kw: Kw, flags: u8) {
        let name = t.kind == Kind::Name && kw != Kw::Import;
        let op = if t.kind == Kind::Op { t.op } else { 0 };
        let ident = &self.src[t.start..t.end];
        let mut reprocess = false;
        match self.imp {
            Imp::Idle => reprocess = true,
            Imp::Name => {
                if name {
                    self.module.clear();
                    push_ident(&mut self.module, ident);
                    self.imp = Imp::After;
                } else {
                    self.imp = Imp::Idle;
                    reprocess = true;
                }
            }
            Imp::After => {
                if op == b'.' {
                    self.imp = Imp::Dot;
                } else if kw == Kw::As {
                    self.imp = Imp::Alias;
                } else {
                    self.emit(Vec::new());
                    if op == b',' {
                        self.imp = Imp::Name;
                    } else {
                        self.imp = Imp::Idle;
                        reprocess = true;
                    }
                }
            }
            Imp::Dot => {
                if name {
                    self.module.push('.');
                    push_ident(&mut self.module, ident);
                    self.imp = Imp::After;
                } else {
                    self.imp = Imp::Idle;
                    reprocess = true;
                }
            }
            Imp::Alias => {
                self.imp = if name { Imp::AfterAlias } else { Imp::Idle };
                if !name {
                    self.emit(Vec::new());
                    reprocess = true;
                }
            }
            Imp::AfterAlias => {
                self.emit(Vec::new());
                if op == b',' {
                    self.imp = Imp::Name;
                } else {
                    self.imp = Imp::Idle;
                    reprocess = true;
                }
            }
            Imp::FromDots => {
                if op == b'.' {
                    self.level = self.level.saturating_add(1);
                } else if kw == Kw::Import && self.level > 0 {
                    self.imp = Imp::FromNames;
                } else if name {
                    push_ident(&mut self.module, ident);
                    self.imp = Imp::FromMod;
                } else {
                    self.imp = Imp::Idle;
                    reprocess = true;
                }
            }
            Imp::FromMod => {
                if op == b'.' {
                    self.imp = Imp::FromModDot;
                } else if kw == Kw::Import {
                    self.imp = Imp::FromNames;
                } else {
                    self.imp = Imp::Idle;
                    reprocess = true;
                }
            }
            Imp::FromModDot => {
                if name {
                    self.module.push('.');
                    push_ident(&mut self.module, ident);
                    self.imp = Imp::FromMod;
                } else {
                    self.imp = Imp::Idle;
                    reprocess = true;
                }
            }
            Imp::FromNames => {
                if op == b'(' && !self.paren {
                    self.paren = true;
                } else if op == b'*' {
                    self.emit(vec!["*".to_string()]);
                    self.imp = Imp::Idle;
                } else if name {
                    let mut s = String::new();
                    push_ident(&mut s, ident);
                    self.names.push(s);
                    self.imp = Imp::FromNameAfter;
                } else {
                    self.imp = Imp::Idle;
                    reprocess = true;
                }
            }
            Imp::FromNameAfter | Imp::FromNext => {
                if self.imp == Imp::FromNameAfter && kw == Kw::As {
                    self.imp = Imp::FromAlias;
                } else if self.imp == Imp::FromNameAfter && op == b',' {
                    self.imp = Imp::FromNext;
                } else if self.imp == Imp::FromNext && name {
                    let mut s = String::new();
                    push_ident(&mut s, ident);
                    self.names.push(s);
                    self.imp = Imp::FromNameAfter;
                } else {
                    let names = std::mem::take(&mut self.names);
                    self.emit(names);
                    self.imp = Imp::Idle;
                    reprocess = !(op == b')' && self.paren);
                }
            }
            Imp::FromAlias => {
                if name {
                    self.imp = Imp::FromNameAfter;
                } else {
                    let names = std::mem::take(&mut self.names);
                    self.emit(names);
                    self.imp = Imp::Idle;
                    reprocess = true;
                }
            }
        }
        if !reprocess {
            return;
        }
        match kw {
            Kw::Import => {
                self.imp = Imp::Name;
                self.level = 0;
                self.module.clear();
                self.start_statement(t, flags);
            }
            Kw::From if !self.in_raise && self.prev[0].kw != Kw::Yield => {
                self.imp = Imp::FromDots;
                self.level = 0;
                self.paren = false;
                self.module.clear();
                self.names.clear();
                self.start_statement(t, flags);
            }
            _ => {}
        }
    }

    /// Records the line and flags of the import statement whose `import` /
    /// `from` keyword is `t`. A statement that starts with the soft keyword
    /// `lazy` (PEP 810's `import_stmt: ['lazy'] import_name | ['lazy']
    /// import_from`, 3.15+) gets [`LAZY`] and `lazy`'s line, as `ast`
    /// reports it. `lazy` starts a statement when it is first on its
    /// logical line or follows `;` or a header's `:`; anywhere else it is a
    /// name (and the line a syntax error).
    fn start_statement(&mut self, t: &Token, flags: u8) {
        let [lazy, before, _] = self.prev;
        let statement_start = before.kind == Kind::Newline
            || (before.kind == Kind::Op && matches!(before.op, b';' | b':'));
        if lazy.kw == Kw::Lazy && statement_start {
            self.imp_line = self.line_of(lazy.start);
            self.imp_flags = flags | LAZY;
        } else {
            self.imp_line = self.line_of(t.start);
            self.imp_flags = flags;
        }
    }

    /// Recognises `importlib.import_module("lit"`, `import_module("lit"` and
    /// `__import__("lit"` followed by `,` or `)`.
    fn dynamic_step(&mut self, t: &Token, kw: Kw, flags: u8) {
        let op = if t.kind == Kind::Op { t.op } else { 0 };
        let plain_str = t.kind == Kind::Str
            && t.str_flags & STR_BYTES == 0
            && (t.str_flags & STR_RAW != 0 || t.str_flags & STR_BACKSLASH == 0);
        match self.dynst {
            Dyn::Idle => {}
            Dyn::Paren => self.dynst = if op == b'(' { Dyn::Str } else { Dyn::Idle },
            Dyn::Str | Dyn::After => {
                if plain_str {
                    let body = &self.src[t.body.0..t.body.1.max(t.body.0)];
                    self.dyn_buf.push_str(&String::from_utf8_lossy(body));
                    self.dynst = Dyn::After;
                } else if self.dynst == Dyn::After && (op == b',' || op == b')') {
                    let s = std::mem::take(&mut self.dyn_buf);
                    let dots = s.bytes().take_while(|&b| b == b'.').count();
                    self.out.push(ImportStmt {
                        module: s[dots..].to_string(),
                        names: Vec::new(),
                        level: u32::try_from(dots).unwrap_or(u32::MAX),
                        line: self.dyn_line,
                        flags: ImportFlags(self.dyn_flags | DYN),
                    });
                    self.dynst = Dyn::Idle;
                } else {
                    self.dynst = Dyn::Idle;
                }
            }
        }
        if self.dynst != Dyn::Idle || !matches!(kw, Kw::DunderImport | Kw::ImportModule) {
            return;
        }
        let [p1, p2, p3] = self.prev;
        let callee = if p1.kind == Kind::Op && p1.op == b'.' {
            let attr_ok = kw == Kw::ImportModule
                && p2.kw == Kw::Importlib
                && !(p3.kind == Kind::Op && p3.op == b'.');
            attr_ok.then_some(p2.start)
        } else if matches!(p1.kw, Kw::Def | Kw::Class | Kw::Import) {
            None
        } else {
            Some(t.start)
        };
        if let Some(pos) = callee {
            self.dyn_buf.clear();
            self.dyn_line = self.line_of(pos);
            self.dyn_flags = flags;
            self.dynst = Dyn::Paren;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mods(src: &str) -> Vec<(String, Vec<String>, u32, u32, u8)> {
        scan(src.as_bytes())
            .into_iter()
            .map(|i| (i.module, i.names, i.level, i.line, i.flags.0))
            .collect()
    }

    fn m(
        module: &str,
        names: &[&str],
        level: u32,
        line: u32,
        flags: u8,
    ) -> (String, Vec<String>, u32, u32, u8) {
        (
            module.to_string(),
            names.iter().map(|s| s.to_string()).collect(),
            level,
            line,
            flags,
        )
    }

    #[test]
    fn basic_forms() {
        let src =
            "import a.b as c, d\nfrom .. import (x,\n  y as z,)\nfrom .m import *; import e\n";
        assert_eq!(
            mods(src),
            vec![
                m("a.b", &[], 0, 1, 0),
                m("d", &[], 0, 1, 0),
                m("", &["x", "y"], 2, 2, 0),
                m("m", &["*"], 1, 4, 0),
                m("e", &[], 0, 4, 0)
            ]
        );
    }

    #[test]
    fn contexts() {
        let src = "\
if TYPE_CHECKING:
    import t
try:
    import j
except ImportError:
    import k
def f():
    import g
    x = lambda: __import__('dyn')
";
        assert_eq!(
            mods(src),
            vec![
                m("t", &[], 0, 2, TC | COND),
                m("j", &[], 0, 4, TRY),
                m("k", &[], 0, 6, 0),
                m("g", &[], 0, 8, FUNC),
                m("dyn", &[], 0, 9, FUNC | DYN)
            ]
        );
    }

    #[test]
    fn yield_from_and_raise_from_are_not_imports() {
        assert!(mods("def g():\n    yield from x\n    raise A from B\n").is_empty());
    }

    #[test]
    fn template_strings_and_nested_fields() {
        // t-strings (3.14) lex like f-strings; nothing inside them is an import.
        let src =
            "x = t'{a:{b}}import no'; import a\ny = T\"\"\"{t'{c}'}\nimport no2\"\"\"\nimport b\n";
        assert_eq!(mods(src), vec![m("a", &[], 0, 1, 0), m("b", &[], 0, 4, 0)]);
        // A quote reused inside a replacement field (PEP 701) and a comment in
        // a multi-line field.
        let src = "s = f\"{d[\"k\"] # }\"\n}\"; import c\n";
        assert_eq!(mods(src), vec![m("c", &[], 0, 2, 0)]);
    }

    #[test]
    fn python2_leftovers_still_scan() {
        let src = "print >>sys.stderr, \"x\"\nexec \"import no\"\nprint `1`\nimport a\nur'x'\nfrom b import c\n";
        assert_eq!(
            mods(src),
            vec![m("a", &[], 0, 4, 0), m("b", &["c"], 0, 6, 0)]
        );
    }

    #[test]
    fn bom_cr_and_invalid_utf8() {
        let src = b"\xEF\xBB\xBFimport a\rif x:\r\n\timport b\r\xFF\xFE = 1\nimport c\n";
        let got: Vec<_> = scan(src)
            .into_iter()
            .map(|i| (i.module, i.line, i.flags.0))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), 1, 0),
                ("b".into(), 3, COND),
                ("c".into(), 5, 0)
            ]
        );
    }

    #[test]
    fn flags_debug_and_ops() {
        let f = ImportFlags::IN_FUNCTION | ImportFlags::DYNAMIC;
        assert!(f.contains(ImportFlags::DYNAMIC) && !f.contains(ImportFlags::CONDITIONAL));
        assert_eq!(format!("{f:?}"), "IN_FUNCTION|DYNAMIC");
        assert_eq!(format!("{:?}", ImportFlags::NONE), "NONE");
    }

    #[test]
    fn nfkc_identifiers() {
        assert_eq!(mods("import \u{FB01}le\n"), vec![m("file", &[], 0, 1, 0)]);
    }
}
