//! glibc's allocator, set once at start-up so that large buffers are given back to the kernel
//! when they are freed, and a long-running node's memory does not creep up.
//!
//! By default glibc mmaps a block of 128 KiB or more, but each time such a block is freed it
//! raises that threshold to the block's size (up to 32 MiB) and its heap trim threshold to twice
//! that. After the first 2 MiB sync buffer or 1 MiB volume buffer is freed, later ones come from
//! the heaps of the threads' arenas and stay resident when freed: the soak (`fulcrum-bench soak`)
//! saw a node's RSS step up by 1.5 to 3.5 MiB each time its peer restarted, 10 to 18 % over
//! ten minutes, with the live heap flat (heaptrack). Fixing the threshold at its default turns
//! the adjustment off; the same soak then grew 3.3 % at most. jemalloc instead grew 10 % from a
//! higher start (`bench/results/soak/README.md`).

#![allow(
    unsafe_code,
    reason = "mallopt(3) has no safe wrapper; one call, at start-up"
)]

/// Blocks at least this large get a mapping of their own, unmapped when freed: glibc's
/// default, kept fixed.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Fixes glibc's mmap threshold (see the module doc). Call first thing in `main`, before any
/// thread starts. Returns false when the C library refused (or is not glibc).
pub(crate) fn fix_mmap_threshold() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's parameters, under the allocator's own
        // lock; it takes plain integers and touches no memory of ours.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::hint::black_box;

    const MIB: usize = 1024 * 1024;

    fn rss_kib() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A large buffer freed after a larger one was freed must still go back to the kernel.
    /// Without the fixed threshold, freeing the 16 MiB block raises glibc's mmap threshold to
    /// 16 MiB (and its trim threshold to 32 MiB), so the 8 MiB buffer comes from the heap and
    /// stays resident once freed. (nextest runs each test in a process of its own, so no other
    /// test allocates meanwhile.)
    #[test]
    fn a_freed_large_buffer_leaves_the_resident_set() {
        assert!(super::fix_mmap_threshold());
        drop(black_box(vec![1u8; 16 * MIB]));
        let buffer = black_box(vec![1u8; 8 * MIB]);
        let with = rss_kib();
        drop(buffer);
        let without = rss_kib();
        assert!(
            with.saturating_sub(without) >= 4 * 1024,
            "RSS went from {with} KiB to {without} KiB when an 8 MiB buffer was freed"
        );
    }
}
