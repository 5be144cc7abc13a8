//! The dynamic import call recogniser: `importlib.import_module("x", ...)`,
//! `import_module("x")` and `__import__("x")` with a literal name (adjacent
//! plain string literals concatenated), fed one token at a time.

use super::keyword::Kw;
use super::lexer::{Kind, Token, STR_BACKSLASH, STR_BYTES, STR_RAW};
use super::{At, ImportFlags, ImportStmt, DYN};

/// Dynamic import call recogniser states.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dyn {
    Idle,
    Paren,
    Str,
    After,
}

/// The call in progress.
pub(super) struct DynamicCall {
    state: Dyn,
    /// The literal name so far.
    buf: String,
    /// Line and flags of the callee.
    line: u32,
    flags: u8,
}

impl DynamicCall {
    pub(super) fn new() -> Self {
        DynamicCall {
            state: Dyn::Idle,
            buf: String::new(),
            line: 0,
            flags: 0,
        }
    }

    /// Forgets a call in progress (at the end of a statement).
    #[inline]
    pub(super) fn reset(&mut self) {
        self.state = Dyn::Idle;
    }

    /// Recognises `importlib.import_module("lit"`, `import_module("lit"` and
    /// `__import__("lit"` followed by `,` or `)`.
    #[inline]
    pub(super) fn step(&mut self, t: &Token, kw: Kw, at: &mut At<'_, '_>) {
        let op = if t.kind == Kind::Op { t.op } else { 0 };
        let plain_str = t.kind == Kind::Str
            && t.str_flags & STR_BYTES == 0
            && (t.str_flags & STR_RAW != 0 || t.str_flags & STR_BACKSLASH == 0);
        match self.state {
            Dyn::Idle => {}
            Dyn::Paren => self.state = if op == b'(' { Dyn::Str } else { Dyn::Idle },
            Dyn::Str | Dyn::After => {
                if plain_str {
                    let body = &at.lines.src()[t.body.0..t.body.1.max(t.body.0)];
                    self.buf.push_str(&String::from_utf8_lossy(body));
                    self.state = Dyn::After;
                } else if self.state == Dyn::After && (op == b',' || op == b')') {
                    let s = std::mem::take(&mut self.buf);
                    let dots = s.bytes().take_while(|&b| b == b'.').count();
                    at.out.push(ImportStmt {
                        module: s[dots..].to_string(),
                        names: Vec::new(),
                        level: u32::try_from(dots).unwrap_or(u32::MAX),
                        line: self.line,
                        flags: ImportFlags(self.flags | DYN),
                    });
                    self.state = Dyn::Idle;
                } else {
                    self.state = Dyn::Idle;
                }
            }
        }
        if self.state != Dyn::Idle || !matches!(kw, Kw::DunderImport | Kw::ImportModule) {
            return;
        }
        let [p1, p2, p3] = *at.prev;
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
            self.buf.clear();
            self.line = at.lines.line_of(pos);
            self.flags = at.flags;
            self.state = Dyn::Paren;
        }
    }
}
