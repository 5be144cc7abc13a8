//! A byte-level Python tokenizer, just precise enough for the import scanner:
//! it finds logical lines, their indentation, bracket depth, names and string
//! literals, and tokenizes inside f-/t-string replacement fields with PEP 701
//! rules (mirrors the mode stack of CPython 3.12's `Parser/lexer/lexer.c`).
//!
//! It never fails: malformed input produces some token stream, never a panic,
//! and every call advances through the input or returns `Eof`, so a whole scan
//! is linear in the input size. Newlines must already be `\n` only (the caller
//! translates `\r\n` and `\r`, as CPython's universal-newline reading does).

use aho_corasick::packed::Searcher;
use aho_corasick::Span;
use memchr::{memchr, memchr2, memchr3};

/// What a [`Token`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An identifier or keyword (may hold non-ASCII or invalid bytes).
    Name,
    /// A numeric literal.
    Number,
    /// A complete, non-f string literal; see [`Token::body`] and [`Token::str_flags`].
    Str,
    /// The start of an f- or t-string (its content follows as tokens).
    FStrStart,
    /// The end of an f- or t-string.
    FStrEnd,
    /// Any operator or delimiter; see [`Token::op`].
    Op,
    /// The end of a logical line.
    Newline,
    /// End of input (returned forever once reached).
    Eof,
}

/// `Token::op` for `:=`.
pub(crate) const OP_WALRUS: u8 = 1;
/// `Token::op` for the `:` that starts an f-string format spec.
pub(crate) const OP_SPEC: u8 = 2;

/// `Token::str_flags`: raw string (`r` prefix).
pub(crate) const STR_RAW: u8 = 1;
/// `Token::str_flags`: bytes literal (`b` prefix).
pub(crate) const STR_BYTES: u8 = 2;
/// `Token::str_flags`: the body holds a backslash.
pub(crate) const STR_BACKSLASH: u8 = 4;
const STR_FORMAT: u8 = 8;
const STR_U: u8 = 16;

/// One token. Plain data, no allocation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    pub kind: Kind,
    /// The operator byte for [`Kind::Op`] (or [`OP_WALRUS`], [`OP_SPEC`]).
    pub op: u8,
    /// Byte range in the source.
    pub start: usize,
    pub end: usize,
    /// For [`Kind::Str`]: the bytes between the quotes.
    pub body: (usize, usize),
    /// For [`Kind::Str`]: `STR_*` bits.
    pub str_flags: u8,
    /// True for the first token of a logical line.
    pub first: bool,
    /// Indentation column (tabs to multiples of 8, form feed resets) of the
    /// logical line this token is on.
    pub indent: u32,
    /// Bracket depth before this token (replacement fields count as brackets).
    pub depth: u32,
}

/// What [`Lexer::skip_line`] did with the logical line at the cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The line needs tokens (or the cursor is not at a line start, or at
    /// the end of input): nothing was consumed past its indentation, and
    /// [`Lexer::next_token`] goes on from there.
    Tokens,
    /// A whole logical line was consumed.
    Line(LineSummary),
}

/// The facts about a skipped logical line that the scanner's state machine
/// uses when none of its names is of interest (see [`Lexer::skip_line`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LineSummary {
    /// Indentation column, as [`Token::indent`].
    pub indent: u32,
    /// The first name opens a header and a `:` at bracket depth 0 followed.
    pub colon: bool,
    /// Some token followed that colon on the logical line.
    pub after_colon: bool,
}

/// What [`Lexer::skip_line`] should do with a line, judged by its first name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum First {
    /// The line needs tokens.
    Tokens,
    /// A header keyword: report its colon.
    Header,
    /// Any other name.
    Plain,
}

/// The next occurrence of any of a few words in a source, found with one
/// multi-word SIMD searcher (`aho_corasick::packed`, Teddy) and advanced
/// lazily as lines are skipped, so the whole search is linear in the
/// source. Code holding no occurrence holds no name token equal to one of
/// the words (words inside longer names are harmless false alarms;
/// [`Lexer::skip_line`] passes over those in strings and comments).
pub(crate) struct WordHits<'s> {
    /// `None` when no searcher could be built: every position is a hit.
    searcher: Option<&'s Searcher>,
    next: usize,
}

impl<'s> WordHits<'s> {
    /// Hits of `searcher`'s words in `src`.
    pub(crate) fn new(src: &[u8], searcher: Option<&'s Searcher>) -> Self {
        let mut hits = WordHits { searcher, next: 0 };
        hits.next = hits.search(src, 0);
        hits
    }

    fn search(&self, src: &[u8], from: usize) -> usize {
        let Some(searcher) = self.searcher else {
            return from;
        };
        if from >= src.len() {
            return usize::MAX;
        }
        searcher
            .find_in(src, Span::from(from..src.len()))
            .map_or(usize::MAX, |m| m.start())
    }

    /// The first position at or after `from` where some word occurs
    /// (`usize::MAX` for none). Calls come with increasing `from`.
    #[inline]
    fn next_from(&mut self, src: &[u8], from: usize) -> usize {
        if self.next < from {
            self.next = self.search(src, from);
        }
        self.next
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Literal part of an f-string; `depth` is the bracket depth outside it.
    FStr {
        quote: u8,
        triple: bool,
        raw: bool,
        depth: u32,
    },
    /// Expression part of a replacement field opened at `field_depth`.
    Expr { field_depth: u32 },
    /// Format spec of a replacement field (literal text with nested fields).
    Spec,
}

// Byte classes for the main dispatch.
const C_OTHER: u8 = 0;
const C_WS: u8 = 1;
const C_NL: u8 = 2;
const C_HASH: u8 = 3;
const C_BACKSLASH: u8 = 4;
const C_QUOTE: u8 = 5;
const C_IDSTART: u8 = 6;
const C_DIGIT: u8 = 7;
const C_DOT: u8 = 8;
const C_OPEN: u8 = 9;
const C_CLOSE: u8 = 10;
const C_COLON: u8 = 11;

static CLASS: [u8; 256] = {
    let mut t = [C_OTHER; 256];
    t[b' ' as usize] = C_WS;
    t[b'\t' as usize] = C_WS;
    t[0x0c] = C_WS;
    t[b'\n' as usize] = C_NL;
    t[b'#' as usize] = C_HASH;
    t[b'\\' as usize] = C_BACKSLASH;
    t[b'\'' as usize] = C_QUOTE;
    t[b'"' as usize] = C_QUOTE;
    t[b'.' as usize] = C_DOT;
    t[b'(' as usize] = C_OPEN;
    t[b'[' as usize] = C_OPEN;
    t[b'{' as usize] = C_OPEN;
    t[b')' as usize] = C_CLOSE;
    t[b']' as usize] = C_CLOSE;
    t[b'}' as usize] = C_CLOSE;
    t[b':' as usize] = C_COLON;
    t[b'_' as usize] = C_IDSTART;
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if c.is_ascii_alphabetic() || c >= 0x80 {
            t[i] = C_IDSTART;
        } else if c.is_ascii_digit() {
            t[i] = C_DIGIT;
        }
        i += 1;
    }
    t
};

/// Identifier continuation bytes: ASCII letters, digits, `_`, and every
/// non-ASCII byte (CPython validates those later; we only need extents).
static IDENT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
        i += 1;
    }
    t
};

/// Bytes that shape a logical line: [`Lexer::skip_line`] stops at these.
static SHAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    let set = b"\n#\\'\"()[]{}:";
    while i < set.len() {
        t[set[i] as usize] = true;
        i += 1;
    }
    t
};

/// Bytes that stop the literal-part scan of an f-string.
static FSTR_STOP: [bool; 256] = {
    let mut t = [false; 256];
    t[b'\\' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'\'' as usize] = true;
    t[b'"' as usize] = true;
    t[b'\n' as usize] = true;
    t
};

/// The tokenizer over one source buffer.
pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    depth: u32,
    modes: Vec<Mode>,
    need_indent: bool,
    first_pending: bool,
    indent: u32,
    line_has_tokens: bool,
    /// Lead bytes of a double-byte source encoding whose trail bytes can be
    /// ASCII (backslash, braces, ...): such a pair is skipped as one character.
    lead: Option<&'static [bool; 256]>,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src` (a UTF-8 BOM is skipped).
    pub(crate) fn new(src: &'a [u8]) -> Self {
        let pos = if src.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        Lexer {
            src,
            pos,
            depth: 0,
            modes: Vec::new(),
            need_indent: true,
            first_pending: false,
            indent: 0,
            line_has_tokens: false,
            lead: dbcs_lead_bytes(&src[pos..]),
        }
    }

    /// Skips one character at `p`: two bytes for a double-byte lead byte.
    #[inline]
    fn char_len(&self, p: usize) -> usize {
        match self.lead {
            Some(lead) if lead[self.src[p] as usize] => 2,
            _ => 1,
        }
    }

    /// The end of the comment starting at `p`: its newline (or the end).
    /// A comment is no token (`Parser/lexer/lexer.c`, `tok_get_normal_mode`
    /// "Skip comment").
    #[inline]
    fn comment_end(&self, p: usize) -> usize {
        memchr(b'\n', &self.src[p..]).map_or(self.src.len(), |i| p + i)
    }

    /// Past the backslash at `p`: with the newline after it, a line
    /// continuation (`tok_get_normal_mode` "Line continuation"); a stray
    /// backslash is dropped (CPython reports an error; we keep scanning).
    #[inline]
    fn backslash_end(&self, p: usize) -> usize {
        if self.at(p + 1) == b'\n' {
            p + 2
        } else {
            p + 1
        }
    }

    #[inline]
    fn at(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    #[inline]
    fn make(&mut self, kind: Kind, op: u8, start: usize, end: usize, depth: u32) -> Token {
        let first = self.first_pending;
        self.first_pending = false;
        self.line_has_tokens = true;
        Token {
            kind,
            op,
            start,
            end,
            body: (0, 0),
            str_flags: 0,
            first,
            indent: self.indent,
            depth,
        }
    }

    /// Measures the indentation of the next non-blank line (blank and
    /// comment-only lines produce no logical line, as in CPython).
    fn measure_indent(&mut self) {
        let src = self.src;
        loop {
            let mut col: u32 = 0;
            loop {
                // Spaces, eight at a time.
                while let Some(w) = src
                    .get(self.pos..self.pos + 8)
                    .and_then(|c| <[u8; 8]>::try_from(c).ok())
                {
                    let n = (u64::from_le_bytes(w) ^ 0x2020_2020_2020_2020).trailing_zeros() / 8;
                    col = col.saturating_add(n);
                    self.pos += n as usize;
                    if n < 8 {
                        break;
                    }
                }
                match src.get(self.pos) {
                    Some(b' ') => col = col.saturating_add(1),
                    Some(b'\t') => col = (col / 8).saturating_add(1).saturating_mul(8),
                    Some(0x0c) => col = 0,
                    _ => break,
                }
                self.pos += 1;
            }
            match src.get(self.pos) {
                None => return,
                Some(b'#') => {
                    self.pos = self.comment_end(self.pos);
                }
                Some(b'\n') => self.pos += 1,
                Some(_) => {
                    self.indent = col;
                    self.first_pending = true;
                    return;
                }
            }
        }
    }

    /// The innermost f-string mode: (index, quote, triple, raw, outer depth).
    fn innermost_fstr(&self) -> Option<(usize, u8, bool, bool, u32)> {
        self.modes
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, m)| match *m {
                Mode::FStr {
                    quote,
                    triple,
                    raw,
                    depth,
                } => Some((i, quote, triple, raw, depth)),
                _ => None,
            })
    }

    /// Ends the innermost f-string (normally or to recover from an error).
    fn close_fstr(&mut self, idx: usize, depth: u32, start: usize, end: usize) -> Token {
        self.modes.truncate(idx);
        self.depth = depth;
        self.make(Kind::FStrEnd, 0, start, end, depth)
    }

    /// Scans literal text of an f-string (or a format spec) up to the next
    /// token: a replacement field brace or the closing quote.
    fn fstring_literal(&mut self) -> Option<Token> {
        let (idx, quote, triple, raw, outer) = self.innermost_fstr()?;
        let in_spec = matches!(self.modes.last(), Some(Mode::Spec));
        let src = self.src;
        loop {
            while self.pos < src.len() && !FSTR_STOP[src[self.pos] as usize] {
                self.pos = (self.pos + self.char_len(self.pos)).min(src.len());
            }
            let p = self.pos;
            if p >= src.len() {
                return Some(self.close_fstr(idx, outer, p, p));
            }
            match src[p] {
                b'\\' => {
                    let n = self.at(p + 1);
                    if !raw && n == b'N' && self.at(p + 2) == b'{' {
                        // \N{NAME}: the braces belong to the escape.
                        let rest = &src[p + 3..];
                        self.pos = match memchr3(b'}', quote, b'\n', rest) {
                            Some(i) if rest[i] == b'}' => p + 3 + i + 1,
                            Some(i) => p + 3 + i,
                            None => src.len(),
                        };
                    } else if n == b'{' || n == b'}' {
                        self.pos = p + 1;
                    } else {
                        self.pos = (p + 2).min(src.len());
                    }
                }
                b'{' => {
                    if !in_spec && self.at(p + 1) == b'{' {
                        self.pos = p + 2;
                        continue;
                    }
                    self.pos = p + 1;
                    let d = self.depth;
                    self.depth = d.saturating_add(1);
                    self.modes.push(Mode::Expr {
                        field_depth: self.depth,
                    });
                    return Some(self.make(Kind::Op, b'{', p, p + 1, d));
                }
                b'}' => {
                    if in_spec {
                        // End of the replacement field that owns this spec.
                        self.modes.pop();
                        if matches!(self.modes.last(), Some(Mode::Expr { .. })) {
                            self.modes.pop();
                        }
                        let d = self.depth;
                        self.depth = d.saturating_sub(1).max(outer);
                        self.pos = p + 1;
                        return Some(self.make(Kind::Op, b'}', p, p + 1, d));
                    }
                    // `}}` is a literal brace; a lone `}` is an error: skip it.
                    self.pos = if self.at(p + 1) == b'}' { p + 2 } else { p + 1 };
                }
                b'\n' => {
                    if !triple {
                        // Unterminated single-quoted f-string: end it here.
                        return Some(self.close_fstr(idx, outer, p, p));
                    }
                    self.pos = p + 1;
                }
                q => {
                    if q == quote {
                        if !triple {
                            self.pos = p + 1;
                            return Some(self.close_fstr(idx, outer, p, p + 1));
                        }
                        if self.at(p + 1) == quote && self.at(p + 2) == quote {
                            self.pos = p + 3;
                            return Some(self.close_fstr(idx, outer, p, p + 3));
                        }
                    }
                    self.pos = p + 1;
                }
            }
        }
    }

    /// Lexes a string literal whose opening quote is at `q` and whose prefix
    /// (already validated) starts at `start`.
    fn string(&mut self, start: usize, q: usize, flags: u8) -> Token {
        let src = self.src;
        let quote = src[q];
        let triple = self.at(q + 1) == quote && self.at(q + 2) == quote;
        let depth = self.depth;
        if flags & STR_FORMAT != 0 {
            self.pos = if triple { q + 3 } else { q + 1 };
            self.modes.push(Mode::FStr {
                quote,
                triple,
                raw: flags & STR_RAW != 0,
                depth,
            });
            return self.make(Kind::FStrStart, 0, start, self.pos, depth);
        }
        let body_start = if triple { q + 3 } else { q + 1 };
        let (body_end, end, backslash) = self.string_extent(q);
        self.pos = end;
        let mut t = self.make(Kind::Str, 0, start, end, depth);
        t.body = (body_start, body_end);
        t.str_flags = flags & (STR_RAW | STR_BYTES) | if backslash { STR_BACKSLASH } else { 0 };
        t
    }

    /// The extent of a non-f string literal whose opening quote is at `q`:
    /// (end of body, end of literal, whether the body holds a backslash).
    /// The prefix does not matter: a backslash always escapes the next byte
    /// as far as finding the closing quote goes (`Parser/lexer/lexer.c`,
    /// `tok_get_normal_mode` string loop), raw or not.
    #[inline]
    fn string_extent(&self, q: usize) -> (usize, usize, bool) {
        let src = self.src;
        let quote = src[q];
        let triple = self.at(q + 1) == quote && self.at(q + 2) == quote;
        let mut backslash = false;
        let mut p = if triple { q + 3 } else { q + 1 };
        loop {
            let hit = if self.lead.is_some() {
                self.dbcs_find(p, quote, triple)
            } else if triple {
                memchr2(quote, b'\\', &src[p..])
            } else {
                memchr3(quote, b'\\', b'\n', &src[p..])
            };
            let Some(i) = hit else {
                return (src.len(), src.len(), backslash);
            };
            p += i;
            match src[p] {
                b'\\' => {
                    backslash = true;
                    p = (p + 2).min(src.len());
                }
                // Unterminated single-quoted string: stop at the newline.
                b'\n' => return (p, p, backslash),
                _ => {
                    if !triple {
                        return (p, p + 1, backslash);
                    }
                    if self.at(p + 1) == quote && self.at(p + 2) == quote {
                        return (p, p + 3, backslash);
                    }
                    p += 1;
                }
            }
        }
    }

    /// The offset from `p` of the next quote, backslash or (single-quoted)
    /// newline, stepping over double-byte characters.
    fn dbcs_find(&self, p: usize, quote: u8, triple: bool) -> Option<usize> {
        let src = self.src;
        let mut i = p;
        while i < src.len() {
            let c = src[i];
            if c == quote || c == b'\\' || (c == b'\n' && !triple) {
                return Some(i - p);
            }
            i += self.char_len(i);
        }
        None
    }

    /// Lexes a number starting at `self.pos` (a digit, or `.` then a digit).
    fn number(&mut self) -> Token {
        let start = self.pos;
        let p = self.number_end(start);
        self.pos = p;
        let d = self.depth;
        self.make(Kind::Number, 0, start, p, d)
    }

    /// The end of the number starting at `start` (a digit, or `.` then a
    /// digit).
    #[inline]
    fn number_end(&self, start: usize) -> usize {
        let src = self.src;
        let mut p = start;
        let digits = |p: &mut usize, hex: bool| {
            while *p < src.len()
                && (src[*p].is_ascii_digit()
                    || src[*p] == b'_'
                    || (hex && src[*p].is_ascii_hexdigit()))
            {
                *p += 1;
            }
        };
        if src[p] == b'0' && matches!(self.at(p + 1) | 0x20, b'x' | b'o' | b'b') {
            p += 2;
            digits(&mut p, true);
        } else {
            digits(&mut p, false);
            if self.at(p) == b'.' {
                p += 1;
                digits(&mut p, false);
            }
            if self.at(p) | 0x20 == b'e' {
                let n = self.at(p + 1);
                let skip = if n.is_ascii_digit() {
                    1
                } else if (n == b'+' || n == b'-') && self.at(p + 2).is_ascii_digit() {
                    2
                } else {
                    0
                };
                if skip > 0 {
                    p += skip;
                    digits(&mut p, false);
                }
            }
            if self.at(p) | 0x20 == b'j' {
                p += 1;
            }
        }
        p
    }

    /// The cursor: the next byte [`Lexer::skip_line`] or
    /// [`Lexer::next_token`] looks at.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Consumes the logical line at the cursor without building tokens,
    /// when none of `hits`' words occurs in its code, `first` does not ask for
    /// tokens, and it holds no f-/t-string; otherwise consumes nothing
    /// (beyond the line's indentation) and returns [`Skip::Tokens`]. Only at
    /// the start of a logical line outside any f-string, and never for
    /// double-byte source encodings.
    ///
    /// Only the bytes that shape a logical line are looked at (newlines,
    /// comments, continuations, brackets, strings, and colons after a header
    /// name), by the rules [`Lexer::next_token`] uses; the bytes between
    /// them are names, numbers, operators and blanks, whose tokens the
    /// caller has declared uninteresting. A line that turns out to need
    /// tokens costs one extra pass, so a scan stays linear.
    pub(crate) fn skip_line(
        &mut self,
        hits: &mut WordHits<'_>,
        first: impl FnOnce(&[u8]) -> First,
    ) -> Skip {
        if !self.need_indent || !self.modes.is_empty() || self.depth != 0 || self.lead.is_some() {
            return Skip::Tokens;
        }
        self.need_indent = false;
        self.measure_indent();
        let src = self.src;
        let start = self.pos;
        let Some(&b0) = src.get(start) else {
            return Skip::Tokens;
        };
        let mut p = start;
        let mut header = false;
        match CLASS[b0 as usize] {
            C_IDSTART => {
                let e = self.ident_end(p);
                let is_prefix = e - p <= 2
                    && matches!(self.at(e), b'\'' | b'"')
                    && prefix_flags(&src[p..e]).is_some();
                // A string prefix is left for the quote below.
                if !is_prefix {
                    match first(&src[p..e]) {
                        First::Tokens => return Skip::Tokens,
                        First::Header => header = true,
                        First::Plain => {}
                    }
                    p = e;
                }
            }
            // A continuation before the first token: rare, leave it.
            C_BACKSLASH => return Skip::Tokens,
            _ => {}
        }
        let mut depth: u32 = 0;
        let mut colon = false;
        let mut after_colon = false;
        // Where the next word occurs: in code (before the next stop below)
        // the line needs tokens; in a string or comment it is passed over.
        let mut hit = hits.next_from(src, start);
        let at_newline = loop {
            while p < src.len() && !SHAPE[src[p] as usize] {
                p += 1;
            }
            if hit < p {
                return Skip::Tokens;
            }
            let Some(&b) = src.get(p) else {
                break false;
            };
            match b {
                b'\n' => {
                    p += 1;
                    if depth == 0 {
                        break true;
                    }
                }
                b'#' => {
                    p = self.comment_end(p);
                    if hit < p {
                        hit = hits.next_from(src, p);
                    }
                }
                b'\\' => p = self.backslash_end(p),
                b'(' | b'[' | b'{' => {
                    depth = depth.saturating_add(1);
                    p += 1;
                }
                b')' | b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    p += 1;
                }
                b':' => {
                    if header && !colon && depth == 0 && self.at(p + 1) != b'=' {
                        colon = true;
                        after_colon = self.token_follows(p + 1);
                    }
                    p += 1;
                }
                _ => {
                    // A quote. The name run right before it is the string's
                    // prefix when next_token would take it as one; a run
                    // starting with a digit may be split by number lexing
                    // (`1f"..."`), so such a line is left to next_token.
                    let mut k = p;
                    while k > start && IDENT[src[k - 1] as usize] {
                        k -= 1;
                    }
                    if k < p {
                        if src[k].is_ascii_digit() {
                            return Skip::Tokens;
                        }
                        if p - k <= 2
                            && prefix_flags(&src[k..p]).is_some_and(|f| f & STR_FORMAT != 0)
                        {
                            return Skip::Tokens;
                        }
                    }
                    p = self.string_extent(p).1;
                    if hit < p {
                        hit = hits.next_from(src, p);
                    }
                }
            }
        };
        self.pos = p;
        self.depth = depth;
        self.need_indent = at_newline;
        self.first_pending = false;
        self.line_has_tokens = false;
        Skip::Line(LineSummary {
            indent: self.indent,
            colon,
            after_colon,
        })
    }

    /// The end of the name starting at `p`.
    #[inline]
    fn ident_end(&self, p: usize) -> usize {
        let src = self.src;
        let mut e = p + 1;
        while e < src.len() && IDENT[src[e] as usize] {
            e += 1;
        }
        e
    }

    /// True when a token starts at `p` or after blanks and continuations
    /// on the same logical line (not a comment, newline or the end).
    fn token_follows(&self, mut p: usize) -> bool {
        loop {
            match self.at(p) {
                b' ' | b'\t' | 0x0c => p += 1,
                b'\\' => p = self.backslash_end(p),
                b'#' | b'\n' => return false,
                0 if p >= self.src.len() => return false,
                _ => return true,
            }
        }
    }

    /// The next token. After the end of input, returns a final `Newline`
    /// (when the last line had tokens) and then `Eof` forever.
    pub(crate) fn next_token(&mut self) -> Token {
        let src = self.src;
        loop {
            if self.need_indent {
                self.need_indent = false;
                self.measure_indent();
            }
            if matches!(self.modes.last(), Some(Mode::FStr { .. } | Mode::Spec)) {
                if let Some(t) = self.fstring_literal() {
                    return t;
                }
                // Unreachable in practice (a Spec always sits above an FStr);
                // drop the stray mode so we make progress.
                self.modes.pop();
                continue;
            }
            let p = self.pos;
            if p >= src.len() {
                if self.line_has_tokens {
                    self.line_has_tokens = false;
                    self.first_pending = false;
                    return Token {
                        kind: Kind::Newline,
                        op: 0,
                        start: p,
                        end: p,
                        body: (0, 0),
                        str_flags: 0,
                        first: false,
                        indent: self.indent,
                        depth: 0,
                    };
                }
                return Token {
                    kind: Kind::Eof,
                    op: 0,
                    start: p,
                    end: p,
                    body: (0, 0),
                    str_flags: 0,
                    first: false,
                    indent: 0,
                    depth: 0,
                };
            }
            let b = src[p];
            match CLASS[b as usize] {
                C_WS => self.pos = p + 1,
                C_NL => {
                    self.pos = p + 1;
                    if self.depth == 0 {
                        self.need_indent = true;
                        if self.line_has_tokens {
                            self.line_has_tokens = false;
                            return Token {
                                kind: Kind::Newline,
                                op: 0,
                                start: p,
                                end: p + 1,
                                body: (0, 0),
                                str_flags: 0,
                                first: false,
                                indent: self.indent,
                                depth: 0,
                            };
                        }
                    }
                }
                C_HASH => self.pos = self.comment_end(p),
                C_BACKSLASH => self.pos = self.backslash_end(p),
                C_QUOTE => return self.string(p, p, 0),
                C_IDSTART => {
                    let e = if self.lead.is_some() {
                        let mut e = p;
                        while e < src.len() && IDENT[src[e] as usize] {
                            e = (e + self.char_len(e)).min(src.len());
                        }
                        e
                    } else {
                        self.ident_end(p)
                    };
                    if e - p <= 2 && matches!(self.at(e), b'\'' | b'"') {
                        if let Some(f) = prefix_flags(&src[p..e]) {
                            return self.string(p, e, f);
                        }
                    }
                    self.pos = e;
                    let d = self.depth;
                    return self.make(Kind::Name, 0, p, e, d);
                }
                C_DIGIT => return self.number(),
                C_DOT => {
                    if self.at(p + 1).is_ascii_digit() {
                        return self.number();
                    }
                    self.pos = p + 1;
                    let d = self.depth;
                    return self.make(Kind::Op, b'.', p, p + 1, d);
                }
                C_OPEN => {
                    self.pos = p + 1;
                    let d = self.depth;
                    self.depth = d.saturating_add(1);
                    return self.make(Kind::Op, b, p, p + 1, d);
                }
                C_CLOSE => {
                    self.pos = p + 1;
                    let d = self.depth;
                    if let Some(Mode::Expr { field_depth }) = self.modes.last().copied() {
                        if d == field_depth {
                            if b == b'}' {
                                // End of a replacement field.
                                self.modes.pop();
                                self.depth = d - 1;
                            }
                            // A mismatched `)`/`]` cannot close the field.
                            return self.make(Kind::Op, b, p, p + 1, d);
                        }
                    }
                    self.depth = d.saturating_sub(1);
                    return self.make(Kind::Op, b, p, p + 1, d);
                }
                C_COLON => {
                    let d = self.depth;
                    if let Some(Mode::Expr { field_depth }) = self.modes.last().copied() {
                        if d == field_depth {
                            self.pos = p + 1;
                            self.modes.push(Mode::Spec);
                            return self.make(Kind::Op, OP_SPEC, p, p + 1, d);
                        }
                    }
                    if self.at(p + 1) == b'=' {
                        self.pos = p + 2;
                        return self.make(Kind::Op, OP_WALRUS, p, p + 2, d);
                    }
                    self.pos = p + 1;
                    return self.make(Kind::Op, b':', p, p + 1, d);
                }
                _ => {
                    self.pos = p + 1;
                    let d = self.depth;
                    return self.make(Kind::Op, b, p, p + 1, d);
                }
            }
        }
    }
}

static SJIS_LEAD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x81;
    while i <= 0xFC {
        t[i] = i <= 0x9F || i >= 0xE0;
        i += 1;
    }
    t
};

static DBCS_LEAD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x81;
    while i <= 0xFE {
        t[i] = true;
        i += 1;
    }
    t
};

/// The lead-byte table when the source declares (PEP 263 cookie on line 1,
/// or on line 2 after a comment or blank line 1; mirrors
/// `Parser/tokenizer.c:check_coding_spec`) an encoding whose trail bytes
/// overlap ASCII: Shift JIS, Big5, GBK/GB18030, Johab.
fn dbcs_lead_bytes(src: &[u8]) -> Option<&'static [bool; 256]> {
    let mut rest = src;
    for lineno in 0..2 {
        let end = memchr(b'\n', rest).unwrap_or(rest.len());
        let body = rest[..end].trim_ascii_start();
        if body.first() == Some(&b'#') {
            if let Some(enc) = coding_name(body) {
                return match enc.as_str() {
                    "shift-jis" | "shift-jis-2004" | "shift-jisx0213" | "sjis" | "s-jis"
                    | "cp932" | "ms932" | "mskanji" | "ms-kanji" => Some(&SJIS_LEAD),
                    "big5" | "big5-tw" | "csbig5" | "big5hkscs" | "big5-hkscs" | "hkscs"
                    | "cp950" | "ms950" | "gbk" | "cp936" | "ms936" | "936" | "gb18030"
                    | "gb18030-2000" | "johab" | "cp1361" | "ms1361" => Some(&DBCS_LEAD),
                    _ => None,
                };
            }
        } else if lineno == 0 && !body.is_empty() {
            return None;
        }
        if end >= rest.len() {
            return None;
        }
        rest = &rest[end + 1..];
    }
    None
}

/// The encoding named by `coding[:=] NAME` in a comment line, lower-cased
/// with `_` as `-`.
fn coding_name(line: &[u8]) -> Option<String> {
    let mut rest = line;
    loop {
        let at = rest.windows(6).position(|w| w == b"coding")?;
        rest = &rest[at + 6..];
        if matches!(rest.first(), Some(b':' | b'=')) {
            break;
        }
    }
    let name: String = rest[1..]
        .iter()
        .skip_while(|&&c| c == b' ' || c == b'\t')
        .take_while(|&&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        .map(|&c| {
            if c == b'_' {
                '-'
            } else {
                c.to_ascii_lowercase() as char
            }
        })
        .collect();
    (!name.is_empty()).then_some(name)
}

/// `STR_*` flags for a string prefix, or `None` when `p` is not one of
/// CPython's valid prefixes (any case): r u f b t rb br rf fr rt tr.
fn prefix_flags(p: &[u8]) -> Option<u8> {
    let mut f = 0u8;
    for &c in p {
        let bit = match c | 0x20 {
            b'r' => STR_RAW,
            b'b' => STR_BYTES,
            b'f' | b't' => STR_FORMAT,
            b'u' => STR_U,
            _ => return None,
        };
        if f & bit != 0 {
            return None;
        }
        f |= bit;
    }
    let valid = p.len() == 1 || (f & STR_U == 0 && f != STR_BYTES | STR_FORMAT);
    valid.then_some(f & !STR_U)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, String)> {
        let mut lx = Lexer::new(src.as_bytes());
        let mut out = Vec::new();
        loop {
            let t = lx.next_token();
            if t.kind == Kind::Eof {
                return out;
            }
            out.push((t.kind, src[t.start..t.end].to_string()));
        }
    }

    #[test]
    fn prefixes() {
        for ok in ["r", "U", "f", "Rb", "bR", "fr", "RF", "t", "Tr", "rT"] {
            assert!(prefix_flags(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in ["ur", "bf", "fb", "rr", "x", "bu", "ft"] {
            assert!(prefix_flags(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn nested_fstring_pep701() {
        let toks = kinds("f\"{x[\"a\"]:{w}}\" + y\n");
        let names: Vec<&str> = toks
            .iter()
            .filter(|t| t.0 == Kind::Name)
            .map(|t| t.1.as_str())
            .collect();
        assert_eq!(names, ["x", "w", "y"]);
        assert_eq!(toks.iter().filter(|t| t.0 == Kind::Newline).count(), 1);
    }

    #[test]
    fn number_then_keyword() {
        let toks = kinds("1if x else 2\n");
        assert_eq!(toks[1], (Kind::Name, "if".to_string()));
    }

    /// The token stream of every seed-corpus file (`tests/corpus/scan`),
    /// one line per token, against `tests/it/snapshots/scan_tokens.txt`;
    /// `KOLOSAL_BLESS=1` rewrites it. The expectations are the lexer's own
    /// output, pinned: what the scanner builds from them is checked against
    /// CPython's `ast` by the `scan_vs_ast` and `scan_snapshot` suites.
    #[test]
    fn token_stream_matches_snapshot() {
        use std::fmt::Write as _;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<_> = std::fs::read_dir(root.join("tests/corpus/scan"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "py"))
            .collect();
        files.sort();
        let mut got = String::new();
        for f in &files {
            // As `scan` feeds it: universal newlines first.
            let src = crate::closure::scan::normalize_newlines(&std::fs::read(f).unwrap());
            let _ = writeln!(got, "== {}", f.file_name().unwrap().to_string_lossy());
            let mut lx = Lexer::new(&src);
            loop {
                let t = lx.next_token();
                if t.kind == Kind::Eof {
                    break;
                }
                let text = src[t.start..t.end.max(t.start)].escape_ascii().to_string();
                let text: String = text.chars().take(40).collect();
                let _ = writeln!(
                    got,
                    "  {:?} {}..{} op={} flags={} first={} indent={} depth={} {text}",
                    t.kind,
                    t.start,
                    t.end,
                    t.op,
                    t.str_flags,
                    u8::from(t.first),
                    t.indent,
                    t.depth
                );
            }
        }
        let snap = root.join("tests/it/snapshots/scan_tokens.txt");
        if std::env::var_os("KOLOSAL_BLESS").is_some() {
            std::fs::write(&snap, &got).unwrap();
        }
        let want = std::fs::read_to_string(&snap)
            .unwrap_or_else(|e| panic!("{}: {e} (KOLOSAL_BLESS=1 writes it)", snap.display()));
        if got != want {
            let first = got
                .lines()
                .zip(want.lines())
                .position(|(g, w)| g != w)
                .unwrap_or(got.lines().count().min(want.lines().count()));
            panic!(
                "the token stream differs from {} from line {} on: got {:?}, want {:?} (KOLOSAL_BLESS=1 rewrites it once the change is meant)",
                snap.display(),
                first + 1,
                got.lines().nth(first),
                want.lines().nth(first)
            );
        }
    }
}
