//! rsync deltas with `fast_rsync`: the receiver signs its older copy, the sender diffs the new
//! content against that signature one window at a time (so a delta message stays under the
//! frame limit), and the receiver applies each window's delta to its copy. The whole-file
//! content hash (BLAKE3) is checked afterwards: MD4 block hashes alone are not trusted.

use fast_rsync::{Signature, SignatureOptions};

use crate::sync::proto::{MAX_DATA, MAX_SIGNATURE};

/// Files smaller than this are sent whole: a signature round trip saves nothing.
pub(super) const DELTA_MIN: u64 = 256 * 1024;

/// Files larger than this are sent whole: a delta needs the receiver's copy in memory.
pub(super) const DELTA_MAX: u64 = 512 * 1024 * 1024;

/// Octets of MD4 per block in a signature.
const HASH_LEN: u32 = 8;

/// The block size for a file of `size` octets: about its square root (as rsync), a power of
/// two from 1 KiB to 64 KiB, so that the signature stays under [`MAX_SIGNATURE`].
fn block_size(size: u64) -> u32 {
    let root = (size as f64).sqrt() as u64;
    root.next_power_of_two().clamp(1024, 64 * 1024) as u32
}

/// The signature of `base`, serialized.
pub(super) fn sign(base: &[u8]) -> Vec<u8> {
    let options = SignatureOptions {
        block_size: block_size(base.len() as u64),
        crypto_hash_size: HASH_LEN,
    };
    Signature::calculate(base, options).into_serialized()
}

/// Why a peer's signature was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid rsync signature: {0}")]
pub(super) struct BadSignature(&'static str);

/// A peer's signature, checked before `fast_rsync` sees it (a zero block size would make it
/// divide by zero).
pub(super) fn parse_signature(bytes: Vec<u8>) -> Result<Signature, BadSignature> {
    if bytes.len() > MAX_SIGNATURE || bytes.len() < 12 {
        return Err(BadSignature("length"));
    }
    let block = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let hash = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(512..=1024 * 1024).contains(&block) || !(1..=16).contains(&hash) {
        return Err(BadSignature("block or hash size"));
    }
    Signature::deserialize(bytes).map_err(|_| BadSignature("format"))
}

/// The window over `data` that each delta covers: whole blocks, at most [`MAX_DATA`] octets.
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

/// Applies one window's delta to `base`, appending at most `limit` octets to `out`.
pub(super) fn apply(
    base: &[u8],
    delta: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), fast_rsync::ApplyError> {
    fast_rsync::apply_limited(base, delta, out, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: a 3 MiB file with 10 octets changed, diffed window by window. Output: the
    // windows' deltas rebuild it exactly and are much smaller than it.
    #[test]
    fn windows_of_deltas_rebuild_the_file() {
        let base: Vec<u8> = (0..3 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut new = base.clone();
        new[1_500_000..1_500_010].copy_from_slice(b"0123456789");
        let signature = parse_signature(sign(&base)).expect("own signature parses");
        let indexed = signature.index();
        let mut rebuilt = Vec::new();
        let mut delta_len = 0;
        for chunk in new.chunks(window(&signature)) {
            let delta = diff(&indexed, chunk).expect("diff");
            delta_len += delta.len();
            apply(&base, &delta, &mut rebuilt, chunk.len()).expect("apply");
        }
        assert_eq!(rebuilt, new);
        assert!(delta_len < 20_000, "{delta_len}");
    }

    #[test]
    fn bad_signatures_are_refused() {
        assert!(parse_signature(vec![0; 4]).is_err());
        let mut zero_block = sign(&[1, 2, 3]);
        zero_block[4..8].copy_from_slice(&0u32.to_be_bytes());
        assert!(parse_signature(zero_block).is_err());
    }
}
