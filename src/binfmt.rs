//! The little binary layout kolosal's own cache files share (manifests,
//! the import cache): little-endian `u32`/`u64`, and byte strings as a
//! `u32` length then the bytes. One reader, one writer; every read is
//! bounds-checked and returns `None` past the end, so a truncated or
//! foreign file decodes to nothing instead of panicking.

/// A cursor over a buffer.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    /// Offset of the next byte to read.
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A byte string written by [`put_bytes`].
    pub(crate) fn bytes_field(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

/// Appends `b` as a `u32` length and the bytes ([`Reader::bytes_field`]).
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut out = Vec::new();
        out.extend_from_slice(&7u32.to_le_bytes());
        put_bytes(&mut out, b"abc");
        out.extend_from_slice(&9u64.to_le_bytes());
        let mut r = Reader::new(&out);
        assert_eq!(r.u32(), Some(7));
        assert_eq!(r.bytes_field(), Some(&b"abc"[..]));
        assert_eq!(r.u64(), Some(9));
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.u8(), None);
        for cut in 0..out.len() {
            let mut r = Reader::new(&out[..cut]);
            let whole = r.u32().and_then(|_| r.bytes_field()).and_then(|_| r.u64());
            assert_eq!(whole, None, "cut at {cut}");
        }
    }
}
