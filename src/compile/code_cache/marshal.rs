//! Just enough of CPython's marshal format to find, and replace, the
//! `co_filename` of every code object in a pyc body.
//!
//! A restored body must be byte-identical to what the target interpreter
//! would write for the new path, so `co_filename` is rewritten here rather
//! than left to `_imp._fix_co_filename` at load: a pyc run directly
//! (`python x.cpython-312.pyc`), a `SourcelessFileLoader` or a tool that
//! `marshal.load`s the file sees the same bytes a fresh compile gives.
//!
//! The walk mirrors `r_object` in Python/marshal.c (format version 4, the
//! one every CPython >= 3.4 writes): every object is one type byte (with
//! `FLAG_REF` = 0x80 when it may be referenced later), and a reference
//! (`r`, u32) names the n-th flagged object in pre-order. Replacing a
//! string's bytes never changes that numbering, so only the filename
//! strings themselves are touched. Anything the walk does not understand
//! (a type it does not know, a filename object shared with a constant, two
//! different filenames, trailing bytes) makes the body unusable: it is then
//! neither cached nor restored.

/// `FLAG_REF` in marshal.c.
const FLAG_REF: u8 = 0x80;

/// Where the filename strings of a body are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filenames {
    /// Byte ranges (type byte included) of every filename string written
    /// inline; references to them are left alone.
    spans: Vec<(usize, usize)>,
    /// Whether the string is interned (`t`, `A`, `Z`), which decides the
    /// type byte of its replacement.
    interned: bool,
    /// The filename's UTF-8 bytes.
    pub value: Vec<u8>,
}

/// The role an object plays in its parent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Filename,
    Other,
}

struct Walk<'a> {
    b: &'a [u8],
    pos: usize,
    /// The role of each flagged object so far, by reference index.
    refs: Vec<Role>,
    spans: Vec<(usize, usize)>,
    value: Option<Vec<u8>>,
    interned: Option<bool>,
    version: (u32, u32),
    depth: u32,
}

impl Walk<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn objects(&mut self, n: u32) -> Option<()> {
        for _ in 0..n {
            self.object(Role::Other)?;
        }
        Some(())
    }

    // mirrors r_object (Python/marshal.c), format version 4
    fn object(&mut self, role: Role) -> Option<()> {
        self.depth += 1;
        if self.depth > 2000 {
            return None;
        }
        let start = self.pos;
        let code = self.u8()?;
        let flagged = code & FLAG_REF != 0;
        let kind = code & !FLAG_REF;
        if flagged {
            self.refs.push(role);
        }
        let is_string = matches!(kind, b'u' | b't' | b'a' | b'A' | b'z' | b'Z');
        if role == Role::Filename && !is_string && kind != b'r' {
            return None;
        }
        match kind {
            b'0' | b'N' | b'F' | b'T' | b'S' | b'.' => {}
            b'i' => {
                self.take(4)?;
            }
            b'I' | b'g' => {
                self.take(8)?;
            }
            b'y' => {
                self.take(16)?;
            }
            b'l' => {
                let n = self.u32()? as i32;
                self.take((n.unsigned_abs() as usize).checked_mul(2)?)?;
            }
            b'f' => {
                let n = self.u8()? as usize;
                self.take(n)?;
            }
            b'x' => {
                for _ in 0..2 {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                }
            }
            b's' => {
                let n = self.u32()? as usize;
                self.take(n)?;
            }
            b'u' | b't' | b'a' | b'A' | b'z' | b'Z' => {
                let n = if matches!(kind, b'z' | b'Z') {
                    self.u8()? as usize
                } else {
                    self.u32()? as usize
                };
                let text = self.take(n)?;
                if role == Role::Filename {
                    let text = text.to_vec();
                    let interned = matches!(kind, b't' | b'A' | b'Z');
                    if self.value.get_or_insert_with(|| text.clone()) != &text
                        || *self.interned.get_or_insert(interned) != interned
                    {
                        return None;
                    }
                    self.spans.push((start, self.pos));
                }
            }
            b'(' | b'[' | b'<' | b'>' => {
                let n = self.u32()?;
                self.objects(n)?;
            }
            b')' => {
                let n = self.u8()?;
                self.objects(u32::from(n))?;
            }
            b'{' => loop {
                // Key/value pairs up to a NULL key.
                if self.b.get(self.pos) == Some(&b'0') {
                    self.pos += 1;
                    break;
                }
                self.objects(2)?;
            },
            // TYPE_SLICE (3.14+)
            b':' => self.objects(3)?,
            b'r' => {
                // A reference names an object already read (r_ref). A
                // filename object must be used only as a filename, and a
                // filename position may only name a filename string.
                let index = self.u32()? as usize;
                if *self.refs.get(index)? != role {
                    return None;
                }
            }
            b'c' => self.code()?,
            _ => return None,
        }
        self.depth -= 1;
        Some(())
    }

    // mirrors the TYPE_CODE branch of r_object for each version's layout
    fn code(&mut self) -> Option<()> {
        let v = self.version;
        let (ints, before_filename) = if v >= (3, 11) {
            // argcount, posonlyargcount, kwonlyargcount, stacksize, flags;
            // code, consts, names, localsplusnames, localspluskinds
            (5, 5)
        } else if v >= (3, 8) {
            // + nlocals; code, consts, names, varnames, freevars, cellvars
            (6, 6)
        } else {
            (5, 6)
        };
        self.take(4 * ints)?;
        self.objects(before_filename)?;
        self.object(Role::Filename)?;
        // name (+ qualname on 3.11+)
        self.objects(if v >= (3, 11) { 2 } else { 1 })?;
        // firstlineno
        self.take(4)?;
        // lnotab / linetable (+ exceptiontable on 3.11+)
        self.objects(if v >= (3, 11) { 2 } else { 1 })
    }
}

/// Finds the filename strings of the code body `body` written by CPython
/// `version` (3.7+). `None` when the body is not one the rewrite handles.
pub(crate) fn filenames(body: &[u8], version: (u32, u32)) -> Option<Filenames> {
    if version < (3, 7) {
        return None;
    }
    let mut w = Walk {
        b: body,
        pos: 0,
        refs: Vec::new(),
        spans: Vec::new(),
        value: None,
        interned: None,
        version,
        depth: 0,
    };
    if body.first().map(|c| c & !FLAG_REF) != Some(b'c') {
        return None;
    }
    w.object(Role::Other)?;
    if w.pos != body.len() {
        return None;
    }
    Some(Filenames {
        spans: w.spans,
        interned: w.interned?,
        value: w.value?,
    })
}

/// `body` with every filename string replaced by `new` (UTF-8), written as
/// CPython's `w_object` writes a str: short ASCII (`z`/`Z`) under 256
/// bytes, ASCII (`a`/`A`), else UTF-8 (`u`/`t`), interned as the original
/// was, `FLAG_REF` kept.
// mirrors w_object's PyUnicode branch (Python/marshal.c, version >= 4)
pub(crate) fn rewrite(body: &[u8], found: &Filenames, new: &[u8]) -> Option<Vec<u8>> {
    let new_len = u32::try_from(new.len()).ok()?;
    let ascii = new.is_ascii();
    let mut out = Vec::with_capacity(body.len() + found.spans.len() * new.len());
    let mut at = 0;
    for &(start, end) in &found.spans {
        out.extend_from_slice(body.get(at..start)?);
        let flag = body[start] & FLAG_REF;
        let i = found.interned;
        if ascii && new.len() < 256 {
            out.push(flag | if i { b'Z' } else { b'z' });
            out.push(new.len() as u8);
        } else {
            let kind = match (ascii, i) {
                (true, true) => b'A',
                (true, false) => b'a',
                (false, true) => b't',
                (false, false) => b'u',
            };
            out.push(flag | kind);
            out.extend_from_slice(&new_len.to_le_bytes());
        }
        out.extend_from_slice(new);
        at = end;
    }
    out.extend_from_slice(body.get(at..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_never_panics() {
        assert!(filenames(b"", (3, 12)).is_none());
        assert!(filenames(b"\xe3\x00", (3, 12)).is_none());
        assert!(filenames(b"N", (3, 12)).is_none());
        for n in 0..=255u8 {
            let _ = filenames(&[0xe3, n, n, n, n, 0xff, 0xff, 0xff, 0x7f], (3, 11));
        }
    }
}
