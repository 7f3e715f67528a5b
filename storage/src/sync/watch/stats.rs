//! What the watcher counts, for `fulcrum status sync` and the metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Batch;

/// A snapshot of a [`super::Watcher`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchStats {
    /// Filesystem events received (read-only opens and closes are not counted).
    pub events: u64,
    /// Batches handed to the consumer.
    pub batches: u64,
    /// Times events were lost and the whole tree had to be rescanned: the kernel's queue
    /// overflowed, the watcher's own queue or pending batch overflowed, or inotify failed.
    pub overflows: u64,
    /// Times a walk hit `fs.inotify.max_user_watches` and left subtrees unwatched (polled).
    pub watch_limit_errors: u64,
    /// Subtrees handed to the consumer to rescan, periodic polls of unwatched subtrees included.
    pub rescans: u64,
    /// Directories watched now.
    pub watched_dirs: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    events: AtomicU64,
    batches: AtomicU64,
    overflows: AtomicU64,
    watch_limit_errors: AtomicU64,
    rescans: AtomicU64,
    watched_dirs: AtomicU64,
}

impl Counters {
    pub(super) fn event(&self) {
        self.events.fetch_add(1, Relaxed);
    }

    pub(super) fn overflow(&self) {
        self.overflows.fetch_add(1, Relaxed);
    }

    pub(super) fn watch_limit_error(&self) {
        self.watch_limit_errors.fetch_add(1, Relaxed);
    }

    pub(super) fn set_watched(&self, dirs: usize) {
        self.watched_dirs
            .store(u64::try_from(dirs).unwrap_or(u64::MAX), Relaxed);
    }

    pub(super) fn delivered(&self, batch: &Batch) {
        self.batches.fetch_add(1, Relaxed);
        self.rescans.fetch_add(
            u64::try_from(batch.rescan.len()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    pub(super) fn snapshot(&self) -> WatchStats {
        WatchStats {
            events: self.events.load(Relaxed),
            batches: self.batches.load(Relaxed),
            overflows: self.overflows.load(Relaxed),
            watch_limit_errors: self.watch_limit_errors.load(Relaxed),
            rescans: self.rescans.load(Relaxed),
            watched_dirs: self.watched_dirs.load(Relaxed),
        }
    }
}
