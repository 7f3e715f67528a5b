//! rsync deltas with `fast_rsync`, streamed so that a file of any size up to [`DELTA_MAX`]
//! goes as a delta in bounded memory: the receiver signs its older copy a chunk at a time,
//! the sender reads the new content and diffs it against that signature one window at a time
//! (so a delta message stays under the frame limit), and the receiver applies each window's
//! delta reading the blocks it copies from its copy on disk. Neither side holds the file. MD4
//! block hashes alone are not trusted: the file rebuilt is checked afterwards against the
//! sender's SHA-256 of the whole file ([`WholeFileSha256`]), and against its content hash
//! (BLAKE3) as every received file is.

use std::{
    fs::File,
    io::{self, Read},
    os::unix::fs::FileExt,
};

use fast_rsync::{Signature, SignatureOptions};

use crate::sync::{
    index::Hash,
    proto::{MAX_DATA, MAX_SIGNATURE},
};

/// The SHA-256 of a whole file sent as deltas: the sender's as it reads the file to diff it,
/// the receiver's as it rebuilds it.
pub(super) struct WholeFileSha256(ring::digest::Context);

impl WholeFileSha256 {
    pub(super) fn new() -> Self {
        Self(ring::digest::Context::new(&ring::digest::SHA256))
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(super) fn finish(self) -> Hash {
        let mut hash = [0; 32];
        hash.copy_from_slice(self.0.finish().as_ref());
        hash
    }
}

/// Files smaller than this are sent whole: a signature round trip saves nothing.
pub(super) const DELTA_MIN: u64 = 256 * 1024;

/// Octets of MD4 per block in a signature.
const HASH_LEN: u32 = 8;

/// Octets of a serialized signature's header: magic, block size, hash length.
const HEADER: usize = 12;

/// Octets per block in a serialized signature: the rolling checksum, then the MD4 prefix.
const ENTRY: usize = 4 + HASH_LEN as usize;

/// The largest block size we sign with (and accept from a peer).
const MAX_BLOCK: u64 = 1024 * 1024;

/// The most blocks a signature under [`MAX_SIGNATURE`] describes.
const MAX_BLOCKS: u64 = ((MAX_SIGNATURE - HEADER) / ENTRY) as u64;

/// Files larger than this (about 170 GiB) are sent whole: their signature would not fit in a
/// frame even with the largest blocks.
pub(super) const DELTA_MAX: u64 = MAX_BLOCKS * MAX_BLOCK;

/// Octets of the base read per step while signing it.
const SIGN_CHUNK: usize = 4 * 1024 * 1024;

/// The block size for a file of `size` octets: about its square root (as rsync), a power of
/// two of at least 1 KiB, at most 64 KiB unless the signature needs larger blocks to stay
/// under [`MAX_SIGNATURE`].
fn block_size(size: u64) -> u32 {
    let root = ((size as f64).sqrt() as u64)
        .next_power_of_two()
        .clamp(1024, 64 * 1024);
    let fits = size.div_ceil(MAX_BLOCKS).next_power_of_two();
    root.max(fits).min(MAX_BLOCK) as u32
}

/// The signature of the first `size` octets of `base` (fewer if it ends sooner), serialized.
/// It is the signature of the whole as `fast_rsync` computes it: the chunks are whole blocks,
/// and a signature is its header followed by one entry per block.
pub(super) fn sign(base: &mut impl Read, size: u64) -> io::Result<Vec<u8>> {
    let block = block_size(size);
    let options = SignatureOptions {
        block_size: block,
        crypto_hash_size: HASH_LEN,
    };
    let blocks = usize::try_from(size.div_ceil(u64::from(block))).unwrap_or(0);
    let mut signature = Vec::with_capacity(HEADER + blocks * ENTRY);
    let mut chunk = vec![0; (SIGN_CHUNK / block as usize).max(1) * block as usize];
    let mut left = size;
    loop {
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let read = read_full(base, &mut chunk[..want])?;
        let part = Signature::calculate(&chunk[..read], options).into_serialized();
        let skip = if signature.is_empty() { 0 } else { HEADER };
        signature.extend_from_slice(&part[skip..]);
        left -= read as u64;
        if read < chunk.len() || left == 0 {
            return Ok(signature);
        }
    }
}

/// Reads into `buf` until it is full or the input ends; the octets read.
pub(super) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Why a peer's signature was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid rsync signature: {0}")]
pub(super) struct BadSignature(&'static str);

/// A peer's signature, checked before `fast_rsync` sees it (a zero block size would make it
/// divide by zero).
pub(super) fn parse_signature(bytes: Vec<u8>) -> Result<Signature, BadSignature> {
    if bytes.len() > MAX_SIGNATURE || bytes.len() < HEADER {
        return Err(BadSignature("length"));
    }
    let block = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let hash = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(512..=MAX_BLOCK).contains(&u64::from(block)) || !(1..=16).contains(&hash) {
        return Err(BadSignature("block or hash size"));
    }
    Signature::deserialize(bytes).map_err(|_| BadSignature("format"))
}

/// The window over the new content that each delta covers: whole blocks, at most
/// [`MAX_DATA`] octets.
pub(super) fn window(signature: &Signature) -> usize {
    let block = signature_block_size(signature);
    (MAX_DATA / block).max(1) * block
}

fn signature_block_size(signature: &Signature) -> usize {
    let bytes = signature.serialized();
    u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize
}

/// The delta of one window of new content against the indexed signature.
pub(super) fn diff(
    signature: &fast_rsync::IndexedSignature<'_>,
    data: &[u8],
) -> Result<Vec<u8>, fast_rsync::DiffError> {
    let mut out = Vec::with_capacity(data.len() / 16 + 64);
    fast_rsync::diff(signature, data, &mut out)?;
    Ok(out)
}

/// Why a delta did not apply.
#[derive(Debug, thiserror::Error)]
pub(super) enum BadDelta {
    #[error("delta does not apply: {0}")]
    Format(&'static str),
    #[error("delta does not apply: it makes more than the {0} octets the file has left")]
    TooLong(usize),
    #[error("delta does not apply: it copies from beyond our copy's end")]
    BeyondBase,
    #[error("reading our copy: {0}")]
    Io(io::Error),
}

/// The librsync delta format, as `fast_rsync` writes it: a magic number, then commands,
/// each a byte and big-endian operands whose widths the byte gives, until `END`.
mod op {
    pub(super) const MAGIC: u32 = 0x7273_0236;
    pub(super) const END: u8 = 0x00;
    /// `0x01..=0x40`: that many literal octets follow.
    pub(super) const LITERAL_64: u8 = 0x40;
    /// `0x41..=0x44`: a 1, 2, 4 or 8-octet length, then the literal octets.
    pub(super) const LITERAL_N1: u8 = 0x41;
    pub(super) const LITERAL_N8: u8 = 0x44;
    /// `0x45..=0x54`: an offset of 1, 2, 4 or 8 octets (`(cmd - 0x45) / 4`), then a length
    /// of 1, 2, 4 or 8 octets (`(cmd - 0x45) % 4`): copy that range of the base.
    pub(super) const COPY_N1_N1: u8 = 0x45;
    pub(super) const COPY_N8_N8: u8 = 0x54;
}

/// Applies one window's delta to the base file, appending at most `limit` octets to `out`.
/// Copies are read from `base` where they lie, so the base need not fit in memory.
pub(super) fn apply(
    base: &File,
    delta: &[u8],
    out: &mut Vec<u8>,
    mut limit: usize,
) -> Result<(), BadDelta> {
    let mut delta = Cursor(delta);
    if delta.int(4)? != u64::from(op::MAGIC) {
        return Err(BadDelta::Format("magic"));
    }
    loop {
        let cmd = delta.take(1)?[0];
        let len = match cmd {
            op::END if delta.0.is_empty() => return Ok(()),
            op::END => return Err(BadDelta::Format("data after the end")),
            1..=op::LITERAL_64 => usize::from(cmd),
            op::LITERAL_N1..=op::LITERAL_N8 => delta.length(1 << (cmd - op::LITERAL_N1))?,
            op::COPY_N1_N1..=op::COPY_N8_N8 => {
                let mode = cmd - op::COPY_N1_N1;
                let offset = delta.int(1 << (mode / 4))?;
                let len = delta.length(1 << (mode % 4))?;
                if len == 0 {
                    return Err(BadDelta::Format("empty copy"));
                }
                if len > limit {
                    return Err(BadDelta::TooLong(limit));
                }
                let start = out.len();
                out.resize(start + len, 0);
                base.read_exact_at(&mut out[start..], offset)
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::UnexpectedEof => BadDelta::BeyondBase,
                        _ => BadDelta::Io(e),
                    })?;
                limit -= len;
                continue;
            }
            _ => return Err(BadDelta::Format("unknown command")),
        };
        if len > limit {
            return Err(BadDelta::TooLong(limit));
        }
        out.extend_from_slice(delta.take(len)?);
        limit -= len;
    }
}

/// The unread rest of a delta.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BadDelta> {
        if self.0.len() < n {
            return Err(BadDelta::Format("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// A big-endian integer of `width` (1 to 8) octets.
    fn int(&mut self, width: usize) -> Result<u64, BadDelta> {
        let mut bytes = [0; 8];
        bytes[8 - width..].copy_from_slice(self.take(width)?);
        Ok(u64::from_be_bytes(bytes))
    }

    /// A length of `width` octets, which must fit in memory.
    fn length(&mut self, width: usize) -> Result<usize, BadDelta> {
        usize::try_from(self.int(width)?).map_err(|_| BadDelta::Format("length"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::Write;

    use super::*;

    /// Deterministic noise, so that blocks do not repeat.
    fn noise(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    fn file_holding(content: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        file
    }

    // Input: 9 MiB and a bit (three signing chunks, a short last block), signed a chunk at a
    // time from a reader. Output: exactly the signature `fast_rsync` computes over the whole.
    #[test]
    fn a_signature_signed_in_chunks_is_the_whole_files() {
        let content = noise(9 * 1024 * 1024 + 123, 1);
        let size = content.len() as u64;
        let streamed = sign(&mut content.as_slice(), size).unwrap();
        let options = SignatureOptions {
            block_size: block_size(size),
            crypto_hash_size: HASH_LEN,
        };
        let whole = Signature::calculate(&content, options).into_serialized();
        assert_eq!(streamed, whole);
    }

    // Input: sizes from the delta threshold to the largest delta. Output: the signature always
    // fits its frame; blocks stay at 64 KiB up to 4 GiB, as before, and grow beyond.
    #[test]
    fn signatures_fit_their_frame_up_to_the_largest_delta() {
        for size in [DELTA_MIN, 1 << 30, 1 << 32, 1 << 36, DELTA_MAX] {
            let block = u64::from(block_size(size));
            let len = HEADER as u64 + size.div_ceil(block) * ENTRY as u64;
            assert!(len <= MAX_SIGNATURE as u64, "{size}: {len}");
        }
        assert_eq!(block_size(1 << 32), 64 * 1024);
        assert_eq!(block_size(DELTA_MAX), MAX_BLOCK as u32);
    }

    // Input: a 3 MiB file with 10 octets changed, diffed window by window against the old
    // copy's signature; each window's delta applied reading the old copy from its file.
    // Output: the windows rebuild it exactly and are much smaller than it.
    #[test]
    fn windows_of_deltas_rebuild_the_file_from_the_base_on_disk() {
        let base = noise(3 * 1024 * 1024, 7);
        let mut new = base.clone();
        new[1_500_000..1_500_010].copy_from_slice(b"0123456789");
        let size = base.len() as u64;
        let signature = parse_signature(sign(&mut base.as_slice(), size).unwrap()).unwrap();
        let indexed = signature.index();
        let base_file = file_holding(&base);
        let mut rebuilt = Vec::new();
        let mut delta_len = 0;
        for chunk in new.chunks(window(&signature)) {
            let delta = diff(&indexed, chunk).unwrap();
            delta_len += delta.len();
            apply(&base_file, &delta, &mut rebuilt, chunk.len()).unwrap();
        }
        assert_eq!(rebuilt, new);
        assert!(delta_len < 20_000, "{delta_len}");
    }

    /// A delta of every command form: short and sized literals, copies with 1, 2, 4 and
    /// 8-octet offsets and lengths.
    fn every_command() -> Vec<u8> {
        let mut d = op::MAGIC.to_be_bytes().to_vec();
        d.push(3);
        d.extend_from_slice(b"abc");
        d.push(op::LITERAL_N1);
        d.push(100);
        d.extend_from_slice(&[b'x'; 100]);
        d.push(op::LITERAL_N1 + 1);
        d.extend_from_slice(&300u16.to_be_bytes());
        d.extend_from_slice(&[b'y'; 300]);
        d.push(op::LITERAL_N1 + 2);
        d.extend_from_slice(&5u32.to_be_bytes());
        d.extend_from_slice(b"hello");
        d.push(op::LITERAL_N8);
        d.extend_from_slice(&2u64.to_be_bytes());
        d.extend_from_slice(b"!!");
        let copies: [(usize, u64, usize); 5] = [
            (1, 200, 1),
            (1, 17, 2),
            (2, 4_464, 4),
            (4, 70_000, 8),
            (8, 99_000, 1),
        ];
        for (offset_width, offset, len_width) in copies {
            let mode = u8::try_from(offset_width.trailing_zeros() * 4 + len_width.trailing_zeros());
            d.push(op::COPY_N1_N1 + mode.unwrap());
            d.extend_from_slice(&u64::to_be_bytes(offset)[8 - offset_width..]);
            d.extend_from_slice(&150u64.to_be_bytes()[8 - len_width..]);
        }
        d.push(op::END);
        d
    }

    // Input: a delta of every command form. Output: the same as `fast_rsync`'s in-memory
    // apply of it.
    #[test]
    fn every_command_applies_as_fast_rsync_applies_it() {
        let base = noise(100_000, 3);
        let delta = every_command();
        let mut expected = Vec::new();
        fast_rsync::apply(&base, &delta, &mut expected).unwrap();
        let mut got = Vec::new();
        apply(&file_holding(&base), &delta, &mut got, usize::MAX).unwrap();
        assert_eq!(got, expected);
        assert_eq!(got.len(), 3 + 100 + 300 + 5 + 2 + 5 * 150);
    }

    // Input: bad deltas: wrong magic, truncated anywhere, data after the end, an unknown
    // command, an empty copy, a copy beyond the base, more output than the limit. Output:
    // each refused with its reason, and none panics.
    #[test]
    fn bad_deltas_are_refused() {
        let base = file_holding(&noise(100_000, 3));
        let good = every_command();
        let refused = |delta: &[u8], limit: usize| apply(&base, delta, &mut Vec::new(), limit);
        assert!(matches!(
            refused(b"RSYN\0", 10),
            Err(BadDelta::Format("magic"))
        ));
        for cut in 0..good.len() {
            assert!(refused(&good[..cut], usize::MAX).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            refused(&trailing, usize::MAX),
            Err(BadDelta::Format(_))
        ));
        let magic = op::MAGIC.to_be_bytes();
        let with = |body: &[u8]| [&magic[..], body].concat();
        assert!(matches!(
            refused(&with(&[0x60, 0]), 10),
            Err(BadDelta::Format(_))
        ));
        assert!(matches!(
            refused(&with(&[op::COPY_N1_N1, 0, 0, 0]), 10),
            Err(BadDelta::Format(_))
        ));
        let beyond = with(&[op::COPY_N1_N1 + 8, 0, 1, 0x86, 0x9f, 10, 0]); // 99_999 + 10
        assert!(matches!(refused(&beyond, 100), Err(BadDelta::BeyondBase)));
        assert!(matches!(refused(&good, 1000), Err(BadDelta::TooLong(_))));
        let huge = with(&[
            op::COPY_N1_N1 + 3,
            0,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0,
        ]);
        assert!(matches!(refused(&huge, 1 << 20), Err(BadDelta::TooLong(_))));
    }

    // Input: 20,000 deltas of random commands and operands. Output: ours and `fast_rsync`'s
    // apply agree on every one: the same output when both accept, and both refuse the rest.
    #[test]
    fn random_deltas_apply_as_fast_rsync_applies_them() {
        let base = noise(5_000, 9);
        let base_file = file_holding(&base);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut delta = op::MAGIC.to_be_bytes().to_vec();
            for _ in 0..next() % 6 {
                let cmd = match next() % 4 {
                    0 => (next() % 0x40 + 1) as u8,
                    1 => op::LITERAL_N1 + (next() % 2) as u8,
                    2 => op::COPY_N1_N1 + (next() % 6) as u8,
                    _ => (next() % 256) as u8,
                };
                delta.push(cmd);
                for _ in 0..next() % 12 {
                    // Small operands mostly, so that some copies land in the base.
                    delta.push(if next() % 3 == 0 {
                        (next() % 256) as u8
                    } else {
                        (next() % 20) as u8
                    });
                }
            }
            if next() % 4 != 0 {
                delta.push(op::END);
            }
            let limit = (next() % 8_000) as usize;
            let mut expected = Vec::new();
            let theirs = fast_rsync::apply_limited(&base, &delta, &mut expected, limit);
            let mut got = Vec::new();
            let ours = apply(&base_file, &delta, &mut got, limit);
            assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "{delta:?}: {ours:?} vs {theirs:?}"
            );
            if ours.is_ok() {
                assert_eq!(got, expected);
                accepted += 1;
            }
        }
        assert!(
            accepted > 100,
            "only {accepted} valid deltas: the test exercises little"
        );
    }

    #[test]
    fn bad_signatures_are_refused() {
        assert!(parse_signature(vec![0; 4]).is_err());
        let mut zero_block = sign(&mut [1u8, 2, 3].as_slice(), 3).unwrap();
        zero_block[4..8].copy_from_slice(&0u32.to_be_bytes());
        assert!(parse_signature(zero_block).is_err());
    }
}
