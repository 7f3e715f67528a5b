//! The out-of-sync bitmap: one bit per 4 KiB block of the volume, set where the local copy and the
//! peer's may differ, walked in disk order by the resync.

use std::ops::Range;

/// Bytes covered by one bit (DRBD's `BM_BLOCK_SIZE`).
pub const BLOCK_SIZE: u64 = 4096;

/// A bitmap for a volume of a given size in bytes; the last block may be partial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    size: u64,
    blocks: u64,
    words: Vec<u64>,
    /// Set bits, kept up to date so the out-of-sync total is O(1) (it is reported often).
    set: u64,
}

/// A peer's bitmap that does not fit this volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bitmap of {got} bytes, expected {expected} for this volume")]
pub struct LengthMismatch {
    /// Bytes received.
    pub got: usize,
    /// Bytes this volume's bitmap has ([`Bitmap::encoded_len`]).
    pub expected: usize,
}

impl Bitmap {
    /// An all-clear bitmap for a volume of `size` bytes.
    pub fn new(size: u64) -> Self {
        let blocks = size.div_ceil(BLOCK_SIZE);
        let words = usize::try_from(blocks.div_ceil(64)).unwrap_or(usize::MAX);
        Self {
            size,
            blocks,
            words: vec![0; words],
            set: 0,
        }
    }

    /// The volume size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Marks `[offset, offset + len)` out of sync; a partly covered block counts as a whole (a
    /// 512-byte write changes its 4 KiB block). The part beyond the volume is ignored.
    pub fn set_range(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return;
        }
        self.apply(offset / BLOCK_SIZE, (end - 1) / BLOCK_SIZE + 1, true);
    }

    /// Marks `[offset, offset + len)` in sync; only blocks the range covers whole are cleared
    /// (half a block synced is not a block in sync), the volume's partial last block counting as
    /// covered when the range reaches the end of the volume.
    pub fn clear_range(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return;
        }
        let first = offset.div_ceil(BLOCK_SIZE);
        let last = if end == self.size {
            self.blocks
        } else {
            end / BLOCK_SIZE
        };
        if first < last {
            self.apply(first, last, false);
        }
    }

    /// Marks the whole volume out of sync (before a full sync).
    pub fn set_all(&mut self) {
        self.apply(0, self.blocks, true);
    }

    /// Marks the whole volume in sync.
    pub fn clear_all(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.set = 0;
    }

    /// Whether any block touching `[offset, offset + len)` is out of sync.
    pub fn any_in(&self, offset: u64, len: u64) -> bool {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return false;
        }
        let (first, last) = (offset / BLOCK_SIZE, (end - 1) / BLOCK_SIZE + 1);
        self.next_with(first, true) < last
    }

    /// Out-of-sync bytes (the partial last block counts for what it holds).
    pub fn out_of_sync_bytes(&self) -> u64 {
        let mut bytes = self.set * BLOCK_SIZE;
        let tail = self.size % BLOCK_SIZE;
        if tail != 0 && self.bit(self.blocks - 1) {
            bytes -= BLOCK_SIZE - tail;
        }
        bytes
    }

    /// The out-of-sync byte ranges in disk order, adjacent blocks merged: what a resync walks.
    pub fn dirty_ranges(&self) -> DirtyRanges<'_> {
        DirtyRanges {
            bitmap: self,
            block: 0,
        }
    }

    /// Adds the peer's out-of-sync blocks (received as [`Bitmap::to_bytes`]): a resync covers
    /// what either side changed. Bits past the end of the volume are ignored.
    pub fn union_bytes(&mut self, bytes: &[u8]) -> Result<(), LengthMismatch> {
        let expected = self.encoded_len();
        if bytes.len() != expected {
            return Err(LengthMismatch {
                got: bytes.len(),
                expected,
            });
        }
        for (word, chunk) in self.words.iter_mut().zip(bytes.chunks(8)) {
            let mut le = [0u8; 8];
            le[..chunk.len()].copy_from_slice(chunk);
            *word |= u64::from_le_bytes(le);
        }
        self.mask_tail();
        self.set = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(())
    }

    /// Length of [`Bitmap::to_bytes`]: one bit per block, rounded up to bytes.
    pub fn encoded_len(&self) -> usize {
        Self::encoded_len_of(self.size)
    }

    /// [`encoded_len`](Self::encoded_len) of a bitmap for a volume of `size` bytes, without
    /// making one (a 64 TiB volume's is 2 GiB).
    pub fn encoded_len_of(size: u64) -> usize {
        usize::try_from(size.div_ceil(BLOCK_SIZE).div_ceil(8)).unwrap_or(usize::MAX)
    }

    /// The bits, block 0 first, least significant bit first within a byte.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.truncate(self.encoded_len());
        out
    }

    /// A bitmap for a volume of `size` bytes from [`Bitmap::to_bytes`].
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Result<Self, LengthMismatch> {
        let mut bitmap = Self::new(size);
        bitmap.union_bytes(bytes)?;
        Ok(bitmap)
    }

    fn bit(&self, block: u64) -> bool {
        let (w, b) = split(block);
        self.words.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    /// Sets or clears blocks `[first, last)`, a word at a time, keeping the count.
    fn apply(&mut self, first: u64, last: u64, value: bool) {
        let mut block = first;
        while block < last {
            let (w, b) = split(block);
            let n = (64 - u64::from(b)).min(last - block);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << b
            };
            let Some(word) = self.words.get_mut(w) else {
                return;
            };
            let before = u64::from(word.count_ones());
            if value {
                *word |= mask;
            } else {
                *word &= !mask;
            }
            self.set = self.set - before + u64::from(word.count_ones());
            block += n;
        }
    }

    /// Clears bits past the last block, so a peer's padding cannot count as out of sync.
    fn mask_tail(&mut self) {
        let used = self.blocks % 64;
        if let (Some(last), true) = (self.words.last_mut(), used != 0) {
            *last &= (1u64 << used) - 1;
        }
    }

    /// The first block at or after `from` whose bit equals `value`, or `blocks` if none.
    fn next_with(&self, from: u64, value: bool) -> u64 {
        let mut block = from;
        while block < self.blocks {
            let (w, b) = split(block);
            let word = self.words.get(w).map_or(0, |&x| if value { x } else { !x }) >> b;
            if word != 0 {
                return (block + u64::from(word.trailing_zeros())).min(self.blocks);
            }
            block += 64 - u64::from(b);
        }
        self.blocks
    }
}

fn split(block: u64) -> (usize, u32) {
    // Word indexes fit in usize: the words vector was allocated with that many entries.
    (
        usize::try_from(block / 64).unwrap_or(usize::MAX),
        (block % 64) as u32,
    )
}

/// Iterator over a bitmap's out-of-sync byte ranges; see [`Bitmap::dirty_ranges`].
#[derive(Debug)]
pub struct DirtyRanges<'a> {
    bitmap: &'a Bitmap,
    block: u64,
}

impl Iterator for DirtyRanges<'_> {
    type Item = Range<u64>;

    fn next(&mut self) -> Option<Range<u64>> {
        let start = self.bitmap.next_with(self.block, true);
        if start >= self.bitmap.blocks {
            self.block = start;
            return None;
        }
        let end = self.bitmap.next_with(start, false);
        self.block = end;
        Some(start * BLOCK_SIZE..(end * BLOCK_SIZE).min(self.bitmap.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The naive model: one bool per block, same rounding rules.
    fn model_set(model: &mut [bool], size: u64, offset: u64, len: u64, value: bool) {
        let end = (offset + len).min(size);
        for (i, bit) in model.iter_mut().enumerate() {
            let (bs, be) = (
                i as u64 * BLOCK_SIZE,
                ((i as u64 + 1) * BLOCK_SIZE).min(size),
            );
            let touches = offset < end && bs < end && offset < be;
            let covers = offset <= bs && be <= end;
            if value && touches {
                *bit = true;
            }
            if !value && covers && offset < end {
                *bit = false;
            }
        }
    }

    fn model_ranges(model: &[bool], size: u64) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = Vec::new();
        for (i, &bit) in model.iter().enumerate() {
            if !bit {
                continue;
            }
            let r = i as u64 * BLOCK_SIZE..((i as u64 + 1) * BLOCK_SIZE).min(size);
            match out.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => out.push(r),
            }
        }
        out
    }

    #[test]
    fn partial_blocks_round_out_when_setting_and_in_when_clearing() {
        // Input: a 10-block volume ending in a 100-byte block. Output: a 1-byte write dirties
        // its block; clearing half a block leaves it dirty; the tail counts only 100 bytes.
        let size = 9 * BLOCK_SIZE + 100;
        let mut bm = Bitmap::new(size);
        bm.set_range(BLOCK_SIZE + 10, 1);
        assert_eq!(
            bm.dirty_ranges().collect::<Vec<_>>(),
            vec![BLOCK_SIZE..2 * BLOCK_SIZE]
        );
        bm.clear_range(BLOCK_SIZE, 2048);
        assert_eq!(bm.out_of_sync_bytes(), BLOCK_SIZE);
        bm.clear_range(BLOCK_SIZE, BLOCK_SIZE);
        assert_eq!(bm.out_of_sync_bytes(), 0);
        bm.set_range(size - 1, 1_000_000);
        assert_eq!(bm.out_of_sync_bytes(), 100);
        assert_eq!(
            bm.dirty_ranges().collect::<Vec<_>>(),
            vec![9 * BLOCK_SIZE..size]
        );
        bm.clear_range(9 * BLOCK_SIZE, 100);
        assert_eq!(bm.out_of_sync_bytes(), 0);
    }

    #[test]
    fn union_rejects_a_wrong_length_and_ignores_padding_bits() {
        let mut bm = Bitmap::new(3 * BLOCK_SIZE);
        assert_eq!(
            bm.union_bytes(&[0, 0]),
            Err(LengthMismatch {
                got: 2,
                expected: 1
            })
        );
        bm.union_bytes(&[0b1111_1010])
            .expect("one byte fits three blocks");
        assert_eq!(
            bm.dirty_ranges().collect::<Vec<_>>(),
            vec![BLOCK_SIZE..2 * BLOCK_SIZE]
        );
        assert_eq!(bm.out_of_sync_bytes(), BLOCK_SIZE);
    }

    #[test]
    fn empty_volume_has_an_empty_bitmap() {
        let mut bm = Bitmap::new(0);
        bm.set_all();
        bm.set_range(0, 10);
        assert_eq!(bm.out_of_sync_bytes(), 0);
        assert_eq!(bm.to_bytes(), Vec::<u8>::new());
        assert_eq!(bm.dirty_ranges().next(), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u64, u64),
        Clear(u64, u64),
        SetAll,
        Union(Vec<u8>),
    }

    fn ops(size: u64) -> impl Strategy<Value = Vec<Op>> {
        let r = (0..size + 2 * BLOCK_SIZE, 0..20 * BLOCK_SIZE);
        let len = Bitmap::new(size).encoded_len();
        proptest::collection::vec(
            prop_oneof![
                4 => r.clone().prop_map(|(o, l)| Op::Set(o, l)),
                4 => r.prop_map(|(o, l)| Op::Clear(o, l)),
                1 => Just(Op::SetAll),
                1 => proptest::collection::vec(any::<u8>(), len).prop_map(Op::Union),
            ],
            0..30,
        )
    }

    proptest! {
        #[test]
        fn bitmap_matches_a_naive_model(
            (size, ops) in (0u64..200 * BLOCK_SIZE).prop_flat_map(|s| (Just(s), ops(s))),
        ) {
            let mut bm = Bitmap::new(size);
            let mut model = vec![false; size.div_ceil(BLOCK_SIZE) as usize];
            for op in ops {
                match op {
                    Op::Set(o, l) => {
                        bm.set_range(o, l);
                        model_set(&mut model, size, o, l, true);
                    }
                    Op::Clear(o, l) => {
                        bm.clear_range(o, l);
                        model_set(&mut model, size, o, l, false);
                    }
                    Op::SetAll => {
                        bm.set_all();
                        model.iter_mut().for_each(|b| *b = true);
                    }
                    Op::Union(bytes) => {
                        bm.union_bytes(&bytes).expect("generated at the right length");
                        for (i, bit) in model.iter_mut().enumerate() {
                            *bit |= bytes[i / 8] & (1 << (i % 8)) != 0;
                        }
                    }
                }
                let ranges = model_ranges(&model, size);
                prop_assert_eq!(bm.dirty_ranges().collect::<Vec<_>>(), ranges.clone());
                let bytes: u64 = ranges.iter().map(|r| r.end - r.start).sum();
                prop_assert_eq!(bm.out_of_sync_bytes(), bytes);
            }
            let round = Bitmap::from_bytes(size, &bm.to_bytes()).expect("own encoding");
            prop_assert_eq!(round, bm);
        }

        #[test]
        fn any_in_matches_the_model(size in 1u64..100 * BLOCK_SIZE, o in 0u64..120 * BLOCK_SIZE,
                                    l in 0u64..10 * BLOCK_SIZE, p in 0u64..120 * BLOCK_SIZE) {
            let mut bm = Bitmap::new(size);
            bm.set_range(p, 1);
            let hit = bm.dirty_ranges().any(|r| r.start < (o + l).min(size) && o < r.end);
            prop_assert_eq!(bm.any_in(o, l), hit);
        }
    }
}
