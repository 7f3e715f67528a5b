//! A file's dirty pages in the kernel's page cache: starting their writeback without waiting
//! for it (`sync_file_range(2)`), which the volume does every few MiB and the directory sync
//! for each file it receives, and, for tests, counting them (`cachestat(2)`).
//!
//! Starting the writeback does nothing on tmpfs (nothing is written back) or on overlayfs (a
//! container's root), whose files keep their pages in the file below, out of this call's reach.
#![allow(
    unsafe_code,
    reason = "sync_file_range(2) and cachestat(2) have no safe wrapper in rustix or nix; plain integers and two repr(C) structs"
)]

use std::fs::File;
#[cfg(test)]
use std::io;
use std::os::fd::AsRawFd;

/// Starts the writeback of every dirty page of `file`. A failure is left to the next
/// `fsync`/`fdatasync`, which reports the file's write errors: this call only moves work
/// earlier.
pub(crate) fn start_writeback(file: &File) {
    // SAFETY: sync_file_range takes a descriptor that `file` keeps open for the call and three
    // integers; it reads and writes no memory of ours.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// `file`'s pages in the page cache, and how many of them are dirty (not yet under writeback),
/// from `cachestat(2)` (Linux 6.5).
#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn cached_and_dirty(file: &File) -> io::Result<(u64, u64)> {
    /// `__NR_cachestat` on x86_64 and on the generic table (arm64).
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
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((stat.cache, stat.dirty))
}
