//! Sharding for counters the request path bumps from every worker thread: one copy per shard,
//! each on cache lines of its own, a thread writing only to its own shard, readers folding the
//! shards. Threads get their shard round-robin on first use, so the runtime's workers each have
//! one as long as there are no more workers than CPUs.

use std::{
    cell::Cell,
    sync::{
        OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
};

use crossbeam_utils::CachePadded;

/// The most shards a block has; past that many threads, threads share shards.
const MAX_SHARDS: usize = 64;

/// Shards per block: the next power of two at or above the CPUs this process may use, so a
/// thread's shard is its index masked.
pub(crate) fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .next_power_of_two()
            .min(MAX_SHARDS)
    })
}

/// This thread's shard number (before masking), handed out round-robin at its first count, so
/// the runtime's worker threads each get a shard of their own.
pub(crate) fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|shard| {
        let mut n = shard.get();
        if n == usize::MAX {
            n = NEXT.fetch_add(1, Relaxed) % MAX_SHARDS;
            shard.set(n);
        }
        n
    })
}

/// `N` counters, one copy per shard, each copy on cache lines of its own.
#[derive(Debug)]
pub(crate) struct Sharded<const N: usize> {
    shards: Box<[CachePadded<[AtomicU64; N]>]>,
}

impl<const N: usize> Default for Sharded<N> {
    fn default() -> Self {
        Self {
            shards: (0..shard_count())
                .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }
}

impl<const N: usize> Sharded<N> {
    /// The calling thread's copy. The shard count is a power of two, so the mask keeps the
    /// index in range.
    #[inline]
    fn mine(&self) -> &[AtomicU64; N] {
        &self.shards[thread_shard() & (self.shards.len() - 1)]
    }

    /// Adds `n` to counter `slot`.
    #[inline]
    pub(crate) fn add(&self, slot: usize, n: u64) {
        self.mine()[slot].fetch_add(n, Relaxed);
    }

    /// Raises counter `slot` of this thread's shard to `value`; read back with [`Self::max`].
    #[inline]
    pub(crate) fn raise(&self, slot: usize, value: u64) {
        self.mine()[slot].fetch_max(value, Relaxed);
    }

    /// Every counter summed over the shards.
    pub(crate) fn fold(&self) -> [u64; N] {
        let mut out = [0_u64; N];
        for shard in &*self.shards {
            for (sum, c) in out.iter_mut().zip(shard.iter()) {
                *sum = sum.wrapping_add(c.load(Relaxed));
            }
        }
        out
    }

    /// The largest value of counter `slot` over the shards.
    pub(crate) fn max(&self, slot: usize) -> u64 {
        self.shards
            .iter()
            .map(|s| s[slot].load(Relaxed))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_has_a_power_of_two_of_shards_on_their_own_cache_lines() {
        let block = Sharded::<4>::default();
        let n = block.shards.len();
        assert!(n.is_power_of_two() && n <= MAX_SHARDS);
        assert!(std::mem::align_of_val(&block.shards[0]) >= 64);
    }

    #[test]
    fn threads_get_shards_round_robin_and_keep_theirs() {
        let mine = thread_shard();
        assert_eq!(thread_shard(), mine, "a thread keeps its shard");
        let other = std::thread::spawn(thread_shard)
            .join()
            .unwrap_or_else(|_| panic!("thread panicked"));
        assert_ne!(other, mine, "another thread counts elsewhere");
    }
}
