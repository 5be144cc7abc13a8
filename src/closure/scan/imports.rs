//! The import statement parser: `import a.b as c, d` and
//! `from ..m import (x, y as z)`, fed one token at a time by the scanner,
//! which tells it where the statement starts and ends.

use super::keyword::Kw;
use super::lexer::{Kind, Token};
use super::{At, ImportFlags, ImportStmt, LAZY};
use unicode_normalization::UnicodeNormalization;

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

/// The import statement in progress.
pub(super) struct ImportParser {
    state: Imp,
    /// The `from` name list is in brackets.
    paren: bool,
    module: String,
    names: Vec<String>,
    /// Leading dots of a `from` module.
    level: u32,
    /// Line and flags of the statement (of `lazy` when it has one).
    line: u32,
    flags: u8,
}

impl ImportParser {
    pub(super) fn new() -> Self {
        ImportParser {
            state: Imp::Idle,
            paren: false,
            module: String::new(),
            names: Vec::new(),
            level: 0,
            line: 0,
            flags: 0,
        }
    }

    /// Reports the statement parsed so far, importing `names` from it.
    fn emit(&mut self, names: Vec<String>, out: &mut Vec<ImportStmt>) {
        let module = std::mem::take(&mut self.module);
        out.push(ImportStmt {
            module,
            names,
            level: self.level,
            line: self.line,
            flags: ImportFlags(self.flags),
        });
    }

    /// Ends a simple statement (`;` or end of line): flushes a pending import.
    #[inline]
    pub(super) fn end_statement(&mut self, out: &mut Vec<ImportStmt>) {
        match self.state {
            Imp::After | Imp::AfterAlias => self.emit(Vec::new(), out),
            Imp::FromNameAfter | Imp::FromNext | Imp::FromAlias if !self.names.is_empty() => {
                self.emit_names(out);
            }
            _ => {}
        }
        self.state = Imp::Idle;
        self.names.clear();
        self.module.clear();
    }

    /// Feeds token `t` (spelling `kw`) of the statement at `at`; `in_raise`:
    /// the statement is a `raise` (whose `from` is no import).
    #[inline]
    pub(super) fn step(&mut self, t: &Token, kw: Kw, in_raise: bool, at: &mut At<'_, '_>) {
        // Most tokens are outside any import statement: only a keyword
        // starting one matters for them.
        if self.state != Imp::Idle && !self.continue_statement(t, kw, at) {
            return;
        }
        match kw {
            Kw::Import => {
                self.state = Imp::Name;
                self.level = 0;
                self.module.clear();
                self.start(t, at);
            }
            Kw::From if !in_raise && at.prev[0].kw != Kw::Yield => {
                self.state = Imp::FromDots;
                self.level = 0;
                self.paren = false;
                self.module.clear();
                self.names.clear();
                self.start(t, at);
            }
            _ => {}
        }
    }

    /// Feeds `t` to the statement in progress; returns whether `t` ended it
    /// (or there was none), so that `t` may start the next one.
    fn continue_statement(&mut self, t: &Token, kw: Kw, at: &mut At<'_, '_>) -> bool {
        let name = t.kind == Kind::Name && kw != Kw::Import;
        let op = if t.kind == Kind::Op { t.op } else { 0 };
        let ident = &at.lines.src()[t.start..t.end];
        match self.state {
            Imp::Idle => true,
            Imp::Name if name => {
                self.module.clear();
                push_ident(&mut self.module, ident);
                self.go(Imp::After)
            }
            Imp::Dot if name => self.dotted(ident, Imp::After),
            Imp::FromModDot if name => self.dotted(ident, Imp::FromMod),
            Imp::Name | Imp::Dot | Imp::FromModDot => self.abandon(),
            Imp::After if op == b'.' => self.go(Imp::Dot),
            Imp::After if kw == Kw::As => self.go(Imp::Alias),
            Imp::Alias if name => self.go(Imp::AfterAlias),
            Imp::Alias => {
                self.emit(Vec::new(), at.out);
                self.abandon()
            }
            Imp::After | Imp::AfterAlias => {
                self.emit(Vec::new(), at.out);
                if op == b',' {
                    self.go(Imp::Name)
                } else {
                    self.abandon()
                }
            }
            Imp::FromDots if op == b'.' => {
                self.level = self.level.saturating_add(1);
                false
            }
            Imp::FromDots if kw == Kw::Import && self.level > 0 => self.go(Imp::FromNames),
            Imp::FromDots if name => {
                push_ident(&mut self.module, ident);
                self.go(Imp::FromMod)
            }
            Imp::FromMod if op == b'.' => self.go(Imp::FromModDot),
            Imp::FromMod if kw == Kw::Import => self.go(Imp::FromNames),
            Imp::FromDots | Imp::FromMod => self.abandon(),
            Imp::FromNames if op == b'(' && !self.paren => {
                self.paren = true;
                false
            }
            Imp::FromNames if op == b'*' => {
                self.emit(vec!["*".to_string()], at.out);
                self.go(Imp::Idle)
            }
            Imp::FromNames | Imp::FromNext if name => self.imported_name(ident),
            Imp::FromNames => self.abandon(),
            Imp::FromNameAfter if kw == Kw::As => self.go(Imp::FromAlias),
            Imp::FromNameAfter if op == b',' => self.go(Imp::FromNext),
            Imp::FromAlias if name => self.go(Imp::FromNameAfter),
            Imp::FromNameAfter | Imp::FromNext => {
                self.emit_names(at.out);
                self.go(Imp::Idle);
                !(op == b')' && self.paren)
            }
            Imp::FromAlias => {
                self.emit_names(at.out);
                self.abandon()
            }
        }
    }

    /// Moves to `state`; the token belonged to the statement.
    #[inline]
    fn go(&mut self, state: Imp) -> bool {
        self.state = state;
        false
    }

    /// The token does not continue the statement: the parser goes idle and
    /// the token is looked at again as the start of a new one.
    #[inline]
    fn abandon(&mut self) -> bool {
        self.state = Imp::Idle;
        true
    }

    /// `.NAME` continuing a dotted module name, then `next`.
    fn dotted(&mut self, ident: &[u8], next: Imp) -> bool {
        self.module.push('.');
        push_ident(&mut self.module, ident);
        self.go(next)
    }

    /// A name imported by `from M import`.
    fn imported_name(&mut self, ident: &[u8]) -> bool {
        let mut s = String::new();
        push_ident(&mut s, ident);
        self.names.push(s);
        self.go(Imp::FromNameAfter)
    }

    /// Reports `from M import` with the names collected.
    fn emit_names(&mut self, out: &mut Vec<ImportStmt>) {
        let names = std::mem::take(&mut self.names);
        self.emit(names, out);
    }

    /// Records the line and flags of the import statement whose `import` /
    /// `from` keyword is `t`. A statement that starts with the soft keyword
    /// `lazy` (PEP 810's `import_stmt: ['lazy'] import_name | ['lazy']
    /// import_from`, 3.15+) gets [`LAZY`] and `lazy`'s line, as `ast`
    /// reports it. `lazy` starts a statement when it is first on its
    /// logical line or follows `;` or a header's `:`; anywhere else it is a
    /// name (and the line a syntax error).
    fn start(&mut self, t: &Token, at: &mut At<'_, '_>) {
        let [lazy, before, _] = *at.prev;
        let statement_start = before.kind == Kind::Newline
            || (before.kind == Kind::Op && matches!(before.op, b';' | b':'));
        if lazy.kw == Kw::Lazy && statement_start {
            self.line = at.lines.line_of(lazy.start);
            self.flags = at.flags | LAZY;
        } else {
            self.line = at.lines.line_of(t.start);
            self.flags = at.flags;
        }
    }
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
