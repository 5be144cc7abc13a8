//! Line numbers of byte positions, counted as the scanner moves forward.

use memchr::memchr_iter;

/// The source and the last position whose line was asked.
pub(super) struct Lines<'a> {
    src: &'a [u8],
    pos: usize,
    no: u32,
}

impl<'a> Lines<'a> {
    pub(super) fn new(src: &'a [u8]) -> Self {
        Lines { src, pos: 0, no: 1 }
    }

    /// The source the positions are in.
    pub(super) fn src(&self) -> &'a [u8] {
        self.src
    }

    /// 1-based line number of byte `pos` (positions are asked in increasing
    /// order, so the total counting work is linear).
    #[inline]
    pub(super) fn line_of(&mut self, pos: usize) -> u32 {
        let pos = pos.min(self.src.len());
        if pos < self.pos {
            self.pos = 0;
            self.no = 1;
        }
        let n = memchr_iter(b'\n', &self.src[self.pos..pos]).count();
        self.no = self.no.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        self.pos = pos;
        self.no
    }
}
