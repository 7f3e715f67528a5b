//! Early writeback of the backing file: after every [`KICK_EVERY`] bytes of buffered writes,
//! the kernel is asked to start writing the file's dirty pages to the disk, without waiting
//! for them (`sync_file_range(2)` with `SYNC_FILE_RANGE_WRITE` over the whole file).
//!
//! Why: a buffered write otherwise stays dirty in the page cache until the client's FLUSH,
//! the kernel's background threshold (10 % of memory by default, gigabytes on a large node)
//! or its 30 s expiry. The FLUSH's `fdatasync` then writes all of it at once while the client
//! waits, and the disk was idle while the data came in. DRBD has no such pile: it hands each
//! write to its lower device as it arrives. With the kick the disk works alongside the network,
//! and a FLUSH waits only for the last few MiB. In `fulcrum-bench nbd` (1 GiB written by
//! nbdcopy, then FLUSH) it took the protocol C pair from 0.82 × to 0.92 × qemu-nbd's rate and
//! the lone primary from 1.07 × to 1.42 × (`bench/results/README.md`).
//!
//! The cost: a disk slower than the writes coming in makes the kick wait for room in the
//! device's queue, so a long burst goes at the disk's pace sooner than it would through the
//! page cache alone, as it would on DRBD. A block rewritten before its writeback ends is
//! written twice.
#![allow(
    unsafe_code,
    reason = "sync_file_range(2) has no safe wrapper in rustix or nix; one call, plain integers"
)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// Buffered bytes written between two kicks. Whole-file kicks cover scattered small writes
/// too; 8 MiB keeps a FLUSH's leftover small and the kicks rare (one per 2,048 4 KiB writes).
/// 32 MiB measured the same.
pub(crate) const KICK_EVERY: u64 = 8 << 20;

/// Counts buffered writes to one file and kicks its writeback every [`KICK_EVERY`] bytes.
/// Shared by every thread that writes the file.
#[derive(Debug, Default)]
pub(crate) struct Writeback {
    unkicked: AtomicU64,
}

impl Writeback {
    /// `len` more bytes were written to `file` without a sync.
    pub(crate) fn wrote(&self, file: &File, len: u64) {
        let unkicked = self.unkicked.fetch_add(len, Ordering::Relaxed) + len;
        // The swap makes one of two threads crossing the mark together kick, not both.
        if unkicked >= KICK_EVERY && self.unkicked.swap(0, Ordering::Relaxed) >= KICK_EVERY {
            start_writeback(file);
        }
    }
}

/// Starts the writeback of every dirty page of `file`, without waiting for it. A failure is
/// left to the next `fdatasync`, which reports the file's write errors: this call only moves
/// work earlier.
fn start_writeback(file: &File) {
    // SAFETY: sync_file_range takes a descriptor that `file` keeps open for the call and three
    // integers; it reads and writes no memory of ours.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// `file`'s pages in the page cache, and how many of them are dirty (not yet under writeback),
/// from `cachestat(2)` (Linux 6.5); `None` where the kernel has no cachestat.
#[cfg(test)]
pub(crate) fn cached_and_dirty_pages(file: &File) -> Option<(u64, u64)> {
    /// `__NR_cachestat`, the same on every architecture (from the generic syscall table).
    const SYS_CACHESTAT: libc::c_long = 451;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        cache: u64,
        dirty: u64,
        writeback: u64,
        evicted: u64,
        recently_evicted: u64,
    }
    // A zero length: to the end of the file.
    let range = Range { off: 0, len: 0 };
    let mut stat = Stat::default();
    // SAFETY: cachestat reads `range` and writes `stat`, both live `repr(C)` values laid out
    // as the kernel's `struct cachestat_range` and `struct cachestat`; flags must be 0.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &raw const range,
            &raw mut stat,
            0,
        )
    };
    (rc == 0).then_some((stat.cache, stat.dirty))
}
