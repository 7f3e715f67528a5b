//! Round-robin family: `roundrobin` (a smooth weighted schedule, cached lock-free per backend)
//! and `static-rr` (a fixed interleaved weighted schedule computed from the cursor alone).

use std::fmt;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering, fence};

use super::Candidate;
use super::hash::fingerprint;

/// Longest cached `roundrobin` schedule. Larger weight sums are scaled down to fit (every server
/// keeps at least one slot); candidate lists longer than this bypass the cache and use the
/// `static-rr` schedule instead.
pub const MAX_SCHEDULE_LEN: usize = 4096;

// Slots store slice positions as u16; every position below MAX_SCHEDULE_LEN must fit.
const _: () = assert!(MAX_SCHEDULE_LEN <= u16::MAX as usize + 1);

/// One smooth schedule for the candidate list last seen, behind a sequence counter built purely
/// from atomics (a seqlock without the lock): readers never wait — when a rebuild is in flight
/// or their read was torn they fall back to the cache-free schedule for that one pick — and a
/// rebuilding thread that loses the race to publish just uses its private copy.
pub(crate) struct ScheduleCache {
    /// Even: stable; odd: a writer is storing a new schedule.
    seq: AtomicU64,
    /// Fingerprint of the candidate list (indices and weights, in order) the slots were built for.
    fingerprint: AtomicU64,
    /// Number of valid slots; 0 until the first schedule is published.
    len: AtomicUsize,
    /// Positions in the candidate slice, in pick order.
    slots: Box<[AtomicU16]>,
}

/// Outcome of reading the cache for one pick.
enum Read {
    /// The cache matched and yielded this server index.
    Hit(usize),
    /// The cache describes another candidate list (or nothing yet).
    Stale,
    /// A writer was active or the read was torn; don't wait for it.
    Busy,
}

impl ScheduleCache {
    pub(crate) fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            fingerprint: AtomicU64::new(0),
            len: AtomicUsize::new(0),
            slots: (0..MAX_SCHEDULE_LEN).map(|_| AtomicU16::new(0)).collect(),
        }
    }

    /// Next server of the smooth schedule for `candidates`, skipping full ones; `None` when
    /// nothing usable has room.
    pub(crate) fn pick(&self, candidates: &[Candidate], cursor: &AtomicUsize) -> Option<usize> {
        if !candidates.iter().any(Candidate::open) {
            return None;
        }
        let pos = cursor.fetch_add(1, Ordering::Relaxed);
        if candidates.len() > MAX_SCHEDULE_LEN {
            return static_at(candidates, pos);
        }
        let fp = fingerprint(candidates);
        match self.read(fp, candidates, pos) {
            Read::Hit(index) => Some(index),
            Read::Stale => {
                // The set or a weight changed: rebuild from scratch (no carried-over state, so
                // no server inherits credit and bursts) and keep the shared cursor running.
                let schedule = build_schedule(candidates);
                self.publish(fp, &schedule);
                scan(schedule.len(), pos, candidates, |i| {
                    schedule.get(i).copied()
                })
                .or_else(|| static_at(candidates, pos))
            }
            Read::Busy => static_at(candidates, pos),
        }
    }

    /// Builds and publishes the schedule for `candidates` unless it is already cached.
    pub(crate) fn prepare(&self, candidates: &[Candidate]) {
        if candidates.len() > MAX_SCHEDULE_LEN {
            return;
        }
        let fp = fingerprint(candidates);
        let s1 = self.seq.load(Ordering::Acquire);
        let current =
            self.len.load(Ordering::Relaxed) > 0 && self.fingerprint.load(Ordering::Relaxed) == fp;
        fence(Ordering::Acquire);
        if current && s1 & 1 == 0 && self.seq.load(Ordering::Relaxed) == s1 {
            return;
        }
        self.publish(fp, &build_schedule(candidates));
    }

    /// Length of the published schedule, 0 if none yet.
    #[cfg(test)]
    pub(crate) fn cached_len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn read(&self, fp: u64, candidates: &[Candidate], pos: usize) -> Read {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return Read::Busy;
        }
        let len = self.len.load(Ordering::Relaxed);
        let current =
            len > 0 && len <= self.slots.len() && self.fingerprint.load(Ordering::Relaxed) == fp;
        let found = if current {
            scan(len, pos, candidates, |i| {
                self.slots.get(i).map(|slot| slot.load(Ordering::Relaxed))
            })
        } else {
            None
        };
        // Seqlock validation: everything above is trusted only if no writer started meanwhile.
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != s1 {
            return Read::Busy;
        }
        match (current, found) {
            (false, _) => Read::Stale,
            (true, Some(index)) => Read::Hit(index),
            // Cannot happen with a consistent cache (every usable candidate has a slot and one
            // of them has room); treat it like a torn read.
            (true, None) => Read::Busy,
        }
    }

    /// Publishes `schedule` for the candidate list with fingerprint `fp`, unless another writer
    /// is busy (then its schedule wins and ours is dropped).
    fn publish(&self, fp: u64, schedule: &[u16]) {
        if schedule.is_empty() || schedule.len() > self.slots.len() {
            return;
        }
        let s = self.seq.load(Ordering::Relaxed);
        if s & 1 == 1
            || self
                .seq
                .compare_exchange(s, s.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // Orders the odd sequence number before the slot stores, for readers' validation.
        fence(Ordering::Release);
        for (slot, &position) in self.slots.iter().zip(schedule) {
            slot.store(position, Ordering::Relaxed);
        }
        self.len.store(schedule.len(), Ordering::Relaxed);
        self.fingerprint.store(fp, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

impl fmt::Debug for ScheduleCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScheduleCache")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Walks a schedule of `len` slots from slot `pos % len` and returns the first server with room.
/// `slot(i)` yields the slice position stored in slot `i`; bad positions are skipped, not trusted.
fn scan(
    len: usize,
    pos: usize,
    candidates: &[Candidate],
    slot: impl Fn(usize) -> Option<u16>,
) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let start = pos % len;
    (start..len)
        .chain(0..start)
        .filter_map(slot)
        .filter_map(|position| candidates.get(usize::from(position)))
        .find(|c| c.open())
        .map(|c| c.index)
}

/// The smooth weighted schedule for `candidates`, as slice positions: one cycle in which every
/// usable candidate appears exactly its (reduced, and if needed scaled) weight times.
///
/// It is nginx's smooth weighted round robin made exact: slots are filled earliest-deadline-first
/// (server `i`'s `c`-th pick is due by slot `ceil(c * total / w_i)` and not released before
/// `floor((c - 1) * total / w_i)`), with nginx's "largest current weight" rule breaking ties.
/// Plain nginx lets a server fall more than one pick behind its share when light and heavy
/// servers are mixed (about one such weight set in seven; 1.25 picks seen); the deadlines keep
/// every prefix of the schedule strictly within one pick of `weight * n / total` (uniprocessor
/// Pfair scheduling), while 2:1 still gives `s1 s2 s1`.
pub(crate) fn build_schedule(candidates: &[Candidate]) -> Vec<u16> {
    let (positions, mut weights): (Vec<u16>, Vec<u64>) = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.usable())
        .filter_map(|(p, c)| Some((u16::try_from(p).ok()?, u64::from(c.weight))))
        .unzip();
    if positions.is_empty() || positions.len() > MAX_SCHEDULE_LEN {
        return Vec::new();
    }
    fit_weights(&mut weights);
    if weights.iter().all(|&w| w == 1) {
        // Equal weights: plain rotation in slice order (what the general loop yields, in O(n)).
        return positions;
    }
    let total: u64 = weights.iter().sum();
    let mut taken = vec![0_u64; weights.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(MAX_SCHEDULE_LEN));
    for t in 0..total {
        // (slot of server, deadline, nginx current weight)
        let mut best: Option<(usize, u64, u64)> = None;
        for (i, (&w, &c)) in weights.iter().zip(&taken).enumerate() {
            if c >= w || c * total / w > t {
                continue; // done for this cycle, or its next pick is not released yet
            }
            let deadline = ((c + 1) * total).div_ceil(w);
            // Released implies c * total < (t + 1) * w, so this never saturates.
            let current = ((t + 1) * w).saturating_sub(total * c);
            let better = match best {
                None => true,
                Some((_, d, cw)) => deadline < d || (deadline == d && current > cw),
            };
            if better {
                best = Some((i, deadline, current));
            }
        }
        // EDF always has a released pick when weights sum to the cycle length; if arithmetic
        // ever said otherwise, end the cycle short rather than loop or panic.
        let Some((i, _, _)) = best else { break };
        if let (Some(c), Some(&position)) = (taken.get_mut(i), positions.get(i)) {
            *c += 1;
            schedule.push(position);
        }
    }
    schedule
}

/// Reduces weights by their common divisor (same order, shorter cycle), then scales them down
/// proportionally if the cycle would exceed [`MAX_SCHEDULE_LEN`]; every weight stays >= 1.
fn fit_weights(weights: &mut [u64]) {
    reduce(weights);
    let total: u64 = weights.iter().sum();
    let limit = MAX_SCHEDULE_LEN as u64;
    if total <= limit {
        return;
    }
    // Leave one guaranteed slot per server out of the budget so the rounded-up minimum of 1
    // cannot push the sum past the limit.
    let budget = limit.saturating_sub(weights.len() as u64);
    for w in weights.iter_mut() {
        let scaled = u128::from(*w) * u128::from(budget) / u128::from(total);
        *w = u64::try_from(scaled).unwrap_or(1).max(1);
    }
    reduce(weights);
}

fn reduce(weights: &mut [u64]) {
    let g = weights.iter().fold(0, |g, &w| gcd(g, w));
    if g > 1 {
        for w in weights.iter_mut() {
            *w /= g;
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `static-rr`: the next slot of a fixed weighted schedule, skipping full servers.
pub(crate) fn pick_static(candidates: &[Candidate], cursor: &AtomicUsize) -> Option<usize> {
    if !candidates.iter().any(Candidate::open) {
        return None;
    }
    static_at(candidates, cursor.fetch_add(1, Ordering::Relaxed))
}

/// Slot `pos` of the fixed schedule: the cycle is the usable candidates laid out by weight on
/// `0..total`, visited with a stride coprime to `total` close to `total / φ`. Each cycle thus
/// hits every point once (exact weight shares), consecutive picks land far apart (interleaved
/// servers), and no state or allocation is needed, whatever the number of servers or weights.
/// A full server hands its turn to the next candidate with room, in slice order.
fn static_at(candidates: &[Candidate], pos: usize) -> Option<usize> {
    let total: u64 = candidates
        .iter()
        .filter(|c| c.usable())
        .map(|c| u64::from(c.weight))
        .sum();
    if total == 0 {
        return None;
    }
    let k = pos as u64 % total;
    let point = u64::try_from(u128::from(k) * u128::from(coprime_step(total)) % u128::from(total))
        .unwrap_or(0);
    let mut below = 0_u64;
    let owner = candidates
        .iter()
        .position(|c| {
            if !c.usable() {
                return false;
            }
            below += u64::from(c.weight);
            point < below
        })
        .unwrap_or(0);
    candidates
        .iter()
        .cycle()
        .skip(owner)
        .take(candidates.len())
        .find(|c| c.open())
        .map(|c| c.index)
}

/// A stride coprime to `total`, near `total / φ` (golden-ratio spacing spreads each server's
/// points evenly over the cycle).
fn coprime_step(total: u64) -> u64 {
    if total <= 2 {
        return 1;
    }
    // total * 2^64/φ, rounded, over 2^64.
    let near = (u128::from(total) * 0x9E37_79B9_7F4A_7C15 + (1 << 63)) >> 64;
    let mut step = u64::try_from(near).unwrap_or(1).clamp(1, total - 1);
    // gcd(1, total) == 1, so this ends within `total` tries; in practice within a few.
    while gcd(step, total) != 1 {
        step = if step + 1 >= total { 1 } else { step + 1 };
    }
    step
}
