//! Maglev hashing, `mh` (ip_vs_mh.c, after Eisenbud et al., NSDI '16 §3.4): every server walks
//! its own permutation of a prime-sized lookup table, and the servers take turns claiming their
//! next free slot until the table is full. A client address picks a slot. Removing one of N
//! servers only re-deals that server's slots (about 1/N of the clients) plus a little churn.
//!
//! The hashes are the kernel's: `hsiphash()` keyed with the constants of
//! `generate_hash_secret()`, in its 64-bit form (SipHash-1-3, truncated to 32 bits). For the same
//! server order, weights and table size the table equals the one a 64-bit little-endian kernel
//! builds (32-bit kernels use HalfSipHash and differ).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::{Dest, Options, addr_fold, is_available};

/// `generate_hash_secret()`: fixed keys, so every director builds the same table.
const HASH1: [u64; 2] = [2_654_435_761, 2_654_435_761];
const HASH2: [u64; 2] = [2_654_446_892, 2_654_446_892];

/// A free slot while the table is being filled.
const EMPTY: u32 = u32::MAX;

/// The lookup table and what it was built from.
pub(super) struct Mh {
    /// The prime table size `M`.
    size: u32,
    /// `IP_VS_MH_TAB_BITS`: how many bits of weight/gcd the turns keep (see [`Mh::update`]).
    weight_bits: u32,
    /// Slot -> server index, `EMPTY` when no server has a weight.
    table: Vec<u32>,
    /// Each server's latest non-zero weight (the kernel's `last_weight`), aligned with the
    /// servers at the last update.
    last_weights: Vec<u32>,
}

impl fmt::Debug for Mh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mh")
            .field("size", &self.size)
            .field("filled", &self.table.iter().any(|&s| s != EMPTY))
            .field("last_weights", &self.last_weights)
            .finish()
    }
}

/// One server's walk through the table (`struct ip_vs_mh_dest_setup`).
struct Setup {
    /// Its next candidate slot.
    perm: u32,
    skip: u32,
    /// Consecutive slots it claims per round: its weight reduced by the gcd and the shift.
    turns: u32,
}

impl Mh {
    /// An empty table of `size` slots; `size` is a prime checked by the caller.
    pub(super) fn new(size: u32) -> Self {
        // The kernel's table is `primes[CONFIG_IP_VS_MH_TAB_INDEX - 8]`, a prime just below
        // 2^index, and keeps `index / 2` bits of weight; the index is the size's bit length.
        let weight_bits = fls(size) / 2;
        Self {
            size,
            weight_bits,
            table: vec![EMPTY; size as usize],
            last_weights: Vec::new(),
        }
    }

    /// Remembers `previous`'s latest non-zero weights, which the next [`Mh::update`] reads.
    pub(super) fn carry_over(&mut self, previous: &Mh) {
        self.last_weights.clone_from(&previous.last_weights);
    }

    /// `ip_vs_mh_dest_changed`: recompute the gcd and shift, then rebuild the table.
    ///
    /// Servers claim slots by `last_weight`, the latest weight that was not 0 (a server added at
    /// weight 0 has 0): quiescing a server keeps its slots, so its clients come back to it, and
    /// lookups answer "unavailable" for them meanwhile (or fall back).
    pub(super) fn update(&mut self, old: &[SocketAddr], dests: &[Dest]) {
        let previous: HashMap<SocketAddr, u32> = old
            .iter()
            .copied()
            .zip(self.last_weights.iter().copied())
            .collect();
        self.last_weights = dests
            .iter()
            .map(|d| match previous.get(&d.addr) {
                Some(&last) if d.weight == 0 => last,
                _ => d.weight,
            })
            .collect();
        self.table.fill(EMPTY);

        let gcd = self
            .last_weights
            .iter()
            .copied()
            .filter(|&w| w > 0)
            .reduce(gcd)
            .unwrap_or(0);
        if gcd == 0 {
            return;
        }
        // `ip_vs_mh_shift_weight`: keep at most `weight_bits` bits of max(weight) / gcd, so a
        // server claims at most 2^weight_bits slots per round.
        let max = self.last_weights.iter().copied().max().unwrap_or(0) / gcd;
        let rshift = fls(max).saturating_sub(self.weight_bits);

        // `ip_vs_mh_permutate`.
        let mut setups: Vec<Setup> = dests
            .iter()
            .zip(&self.last_weights)
            .map(|(d, &last)| {
                let offset = hashkey(d.addr.ip(), d.addr.port(), &HASH1, 0) % self.size;
                let skip = hashkey(d.addr.ip(), d.addr.port(), &HASH2, 0) % (self.size - 1) + 1;
                let turns = match (last / gcd) >> rshift {
                    0 => u32::from(last != 0),
                    turns => turns,
                };
                Setup {
                    perm: offset,
                    skip,
                    turns,
                }
            })
            .collect();
        populate(&mut self.table, &mut setups, self.size);
    }

    /// `ip_vs_mh_schedule`: the client's slot if its server is available; with fallback,
    /// `ip_vs_mh_get_fallback`'s rehash with growing offsets until an available server.
    pub(super) fn schedule(
        &self,
        dests: &[Dest],
        client: SocketAddr,
        options: &Options,
    ) -> Option<usize> {
        let port = if options.port { client.port() } else { 0 };
        let hash = |offset: u32| hashkey(client.ip(), port, &HASH1, offset) % self.size;
        let server = |slot: u32| {
            self.table
                .get(slot as usize)
                .copied()
                .filter(|&s| s != EMPTY)
                .map(|s| s as usize)
        };
        let available = |i: usize| dests.get(i).is_some_and(is_available);

        let ihash = hash(0);
        let first = server(ihash)?;
        if available(first) {
            return Some(first);
        }
        if !options.fallback {
            return None;
        }
        for offset in 0..self.size {
            let roffset = (offset + ihash) % self.size;
            let i = server(hash(roffset))?;
            if available(i) {
                return Some(i);
            }
        }
        None
    }
}

/// `ip_vs_mh_populate`: rounds over the servers in list order; in each round a server claims
/// `turns` slots, each the next free one along its permutation, until every slot is taken.
/// (The kernel refuses to build for more servers than slots; here the surplus servers just get
/// no slot.)
fn populate(table: &mut [u32], setups: &mut [Setup], size: u32) {
    if setups.iter().all(|s| s.turns == 0) {
        return;
    }
    let mut filled: u32 = 0;
    loop {
        for (index, setup) in setups.iter_mut().enumerate() {
            // A server whose index does not fit below the `EMPTY` marker cannot be given a slot.
            let Some(index) = u32::try_from(index).ok().filter(|&i| i != EMPTY) else {
                break;
            };
            for _ in 0..setup.turns {
                // `skip` is in 1..size and `size` is prime, so the walk visits every slot and
                // finds a free one while `filled < size`.
                while table.get(setup.perm as usize).is_some_and(|&s| s != EMPTY) {
                    setup.perm += setup.skip;
                    if setup.perm >= size {
                        setup.perm -= size;
                    }
                }
                if let Some(slot) = table.get_mut(setup.perm as usize) {
                    *slot = index;
                }
                filled += 1;
                if filled >= size {
                    return;
                }
            }
        }
    }
}

/// `ip_vs_mh_hashkey`: `hsiphash` of `offset + port + folded address` (host order, 32 bits).
fn hashkey(ip: IpAddr, port: u16, key: &[u64; 2], offset: u32) -> u32 {
    let v = offset
        .wrapping_add(u32::from(port))
        .wrapping_add(addr_fold(ip));
    hsiphash_u32(v, key)
}

/// The kernel's `hsiphash()` of a 4-byte value on 64-bit: SipHash-1-3 (one compression round,
/// three finalization rounds) over `v`'s little-endian bytes, truncated to 32 bits.
pub(super) fn hsiphash_u32(v: u32, key: &[u64; 2]) -> u32 {
    let mut state = [
        0x736f_6d65_7073_6575 ^ key[0],
        0x646f_7261_6e64_6f6d ^ key[1],
        0x6c79_6765_6e65_7261 ^ key[0],
        0x7465_6462_7974_6573 ^ key[1],
    ];
    // A 4-byte message is all tail: the length in the top byte, the bytes in the low ones.
    let b = (4u64 << 56) | u64::from(v);
    state[3] ^= b;
    sipround(&mut state);
    state[0] ^= b;
    state[2] ^= 0xff;
    sipround(&mut state);
    sipround(&mut state);
    sipround(&mut state);
    (state[0] ^ state[1] ^ state[2] ^ state[3]) as u32
}

/// `SIPHASH_PERMUTATION`.
pub(super) fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// The kernel's `fls()`: the 1-based position of the highest set bit, 0 for 0.
fn fls(x: u32) -> u32 {
    u32::BITS - x.leading_zeros()
}

/// Euclid's gcd, for positive weights.
fn gcd(a: u32, b: u32) -> u32 {
    let (mut a, mut b) = (a, b);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
impl Mh {
    /// The server in `slot`, for tests.
    pub(super) fn slot(&self, slot: u32) -> Option<usize> {
        self.table
            .get(slot as usize)
            .copied()
            .filter(|&s| s != EMPTY)
            .map(|s| s as usize)
    }
}
