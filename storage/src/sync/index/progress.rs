//! How far a scan of the whole tree is, read by other threads while it runs (the status, the
//! start-up's log lines), and the flag that stops it early.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Shared between a scan ([`super::Index::scan_with`], [`super::Index::measure`]) and its
/// onlookers.
#[derive(Debug, Default)]
pub struct ScanProgress {
    examined: AtomicU64,
    hashed: AtomicU64,
    total_paths: AtomicU64,
    total_bytes: AtomicU64,
    stop: AtomicBool,
}

/// A scan's progress at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanCounts {
    /// Paths compared to the index so far.
    pub examined: u64,
    /// File octets hashed so far.
    pub hashed: u64,
    /// The paths under the root: measured first on a first start (which hashes everything),
    /// else the live entries the index held, an estimate; 0 when neither was done.
    pub total_paths: u64,
    /// The file octets under the root, when the tree was measured first; else 0.
    pub total_bytes: u64,
}

impl ScanProgress {
    pub fn counts(&self) -> ScanCounts {
        ScanCounts {
            examined: self.examined.load(Relaxed),
            hashed: self.hashed.load(Relaxed),
            total_paths: self.total_paths.load(Relaxed),
            total_bytes: self.total_bytes.load(Relaxed),
        }
    }

    /// Asks the scan to stop at the next path (or within the file it is hashing): it then
    /// records no deletions, since it has not seen everything.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    /// Zeroes the counts for another scan (after a failed one); a stop stays.
    pub fn restart(&self) {
        for count in [
            &self.examined,
            &self.hashed,
            &self.total_paths,
            &self.total_bytes,
        ] {
            count.store(0, Relaxed);
        }
    }

    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    pub(super) fn examined(&self) {
        self.examined.fetch_add(1, Relaxed);
    }

    pub(super) fn hashed(&self, octets: u64) {
        self.hashed.fetch_add(octets, Relaxed);
    }

    /// Takes `paths` as the estimate of the paths to examine (a restart's: the index's live
    /// entries).
    pub fn expect_paths(&self, paths: u64) {
        self.total_paths.store(paths, Relaxed);
    }

    /// Counts a path of the tree being measured, with its octets if it is a file.
    pub(super) fn measured(&self, octets: u64) {
        self.total_paths.fetch_add(1, Relaxed);
        self.total_bytes.fetch_add(octets, Relaxed);
    }
}

impl ScanCounts {
    /// How far along, as (done, total) in the unit that tracks the scan's time best: octets
    /// hashed of the tree's octets when it was measured, else paths examined of the paths
    /// expected; `None` without a total.
    pub fn fraction(&self) -> Option<(u64, u64)> {
        if self.total_bytes > 0 {
            Some((self.hashed, self.total_bytes))
        } else if self.total_paths > 0 {
            Some((self.examined, self.total_paths))
        } else {
            None
        }
    }
}
