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
//!
//! Its parts, one concern each: `lexer` (tokens, and whole lines skipped
//! without tokens), `keyword` (the names the state machine reacts to),
//! `lines` (line numbers of byte positions), `imports` (the `import` /
//! `from ... import` statement parser), `dynamic` (the dynamic-call
//! recogniser); this file holds the block structure and context (indent
//! levels, open headers, `try` bodies, lambdas) and feeds every token to
//! the last two.

mod dynamic;
mod imports;
mod keyword;
mod lexer;
mod lines;

use aho_corasick::packed::Searcher;
use dynamic::DynamicCall;
use imports::ImportParser;
use keyword::{keyword, Kw};
use lexer::{First, Kind, Lexer, LineSummary, Skip, Token, WordHits};
use lines::Lines;
use memchr::{memchr, memmem};
use std::fmt;
use std::ops::{BitOr, BitOrAssign};
use std::sync::OnceLock;

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

/// What the import and dynamic-call recognisers need besides the token:
/// where it sits and where to report.
struct At<'s, 'a> {
    lines: &'s mut Lines<'a>,
    /// The three tokens before it on its logical line, nearest first.
    prev: &'s [Prev; 3],
    /// The context flags of its position.
    flags: u8,
    out: &'s mut Vec<ImportStmt>,
}

/// The per-logical-line state machine: block structure and context (the
/// indentation levels, open headers, lambdas), feeding each token to the
/// [`ImportParser`] and the [`DynamicCall`] recogniser.
struct Scanner<'a> {
    src: &'a [u8],
    out: Vec<ImportStmt>,
    frames: Vec<Frame>,
    levels: Vec<Level>,
    lambdas: Vec<Lambda>,
    lambda_bodies: u32,
    line: Line,
    lines: Lines<'a>,
    in_raise: bool,
    imports: ImportParser,
    dynamic: DynamicCall,
    prev: [Prev; 3],
    /// Indentation of the last line when it was a skipped line whose first
    /// name opens no header ([`First::Plain`]); `None` after anything else.
    plain_indent: Option<u32>,
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
            lines: Lines::new(src),
            in_raise: false,
            imports: ImportParser::new(),
            dynamic: DynamicCall::new(),
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
            let mut at = At {
                lines: &mut self.lines,
                prev: &self.prev,
                flags,
                out: &mut self.out,
            };
            self.imports.step(t, kw, self.in_raise, &mut at);
            self.dynamic.step(t, kw, &mut at);
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

    /// Ends a simple statement (`;` or end of line): flushes a pending import.
    fn end_statement(&mut self) {
        self.imports.end_statement(&mut self.out);
        self.in_raise = false;
        self.dynamic.reset();
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
