//! Hash-based algorithms (`source`, `uri`, `hdr(NAME)`) with HAProxy's default map-based mapping,
//! plus the deterministic 64-bit hash they and the schedule cache's fingerprint use.

use std::net::IpAddr;

use super::{Algorithm, Candidate, PickKey};

/// The hash of what `algorithm` hashes in `key`, or `None` when that part of the key is absent
/// (the caller then falls back to round robin, like HAProxy).
pub(crate) fn key_hash(algorithm: &Algorithm, key: &PickKey<'_>) -> Option<u64> {
    match algorithm {
        Algorithm::Source => key.src.map(|ip| match ip.to_canonical() {
            // An IPv4 client seen through an IPv4-mapped IPv6 socket hashes like plain IPv4.
            IpAddr::V4(v4) => hash_bytes(&v4.octets()),
            IpAddr::V6(v6) => hash_bytes(&v6.octets()),
        }),
        Algorithm::Uri => key.uri_path.map(|uri| {
            // HAProxy's `balance uri` hashes the part left of the question mark.
            let path = uri.split_once('?').map_or(uri, |(path, _)| path);
            hash_bytes(path.as_bytes())
        }),
        Algorithm::Hdr(_) => key.header.map(hash_bytes),
        Algorithm::RoundRobin
        | Algorithm::StaticRr
        | Algorithm::LeastConn
        | Algorithm::First
        | Algorithm::Random => None,
    }
}

/// Map-based choice: `hash % total_weight` lands in one usable candidate's weight range, the
/// ranges laid out in server-index order so the slice order does not matter. The server is
/// returned even when full (the request queues on it); `None` only if nothing is usable.
pub(crate) fn pick(candidates: &[Candidate], hash: u64) -> Option<usize> {
    let total: u64 = candidates
        .iter()
        .filter(|c| c.usable())
        .map(|c| u64::from(c.weight))
        .sum();
    if total == 0 {
        return None;
    }
    let point = hash % total;
    if candidates.is_sorted_by_key(|c| c.index) {
        walk(candidates.iter(), point)
    } else {
        // Unusual caller order: sort a copy rather than make the mapping depend on it.
        let mut sorted = candidates.to_vec();
        sorted.sort_by_key(|c| c.index);
        walk(sorted.iter(), point)
    }
}

fn walk<'a>(candidates: impl Iterator<Item = &'a Candidate>, point: u64) -> Option<usize> {
    let mut below = 0_u64;
    candidates
        .filter(|c| c.usable())
        .find(|c| {
            below += u64::from(c.weight);
            point < below
        })
        .map(|c| c.index)
}

/// Identifies a candidate list by its indices and weights, in order; the schedule cache is keyed
/// by it. Activity and limits are left out: they change on every request, the schedule doesn't.
/// A sum of independently mixed entries rather than a chained hash, so the CPU can overlap the
/// work: this runs on every round-robin pick. A collision (odds ~2^-64) would only skew shares.
pub(crate) fn fingerprint(candidates: &[Candidate]) -> u64 {
    candidates
        .iter()
        .zip(0_u64..)
        .fold(fmix64(candidates.len() as u64), |acc, (c, position)| {
            let entry = (c.index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ u64::from(c.weight).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
                ^ position.wrapping_mul(0x1656_67b1_9e37_79f9);
            acc.wrapping_add(fmix64(entry))
        })
}

/// FNV-1a over `bytes`, finished with a 64-bit avalanche so the low bits (which `% total` keeps)
/// depend on every input byte. Deterministic across runs, builds and platforms.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(bytes);
    h.finish()
}

struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
    }

    /// FNV-1a alone mixes its last bytes poorly into the low bits.
    fn finish(&self) -> u64 {
        fmix64(self.0)
    }
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}
