//! Overlapping writes in flight, one at a time: a write's local I/O and its place in the
//! replication stream must happen in the same order on both nodes, or two overlapping writes
//! could land in one order here and the other on the peer. Writes that do not overlap run
//! concurrently.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// The byte ranges of writes in flight.
#[derive(Debug, Default)]
pub(crate) struct Overlaps {
    // A std mutex: held for a scan of a short list, never across an await, and the guard's
    // Drop must release synchronously.
    ranges: Mutex<Vec<(u64, u64, u64)>>,
    next_id: AtomicU64,
    released: Notify,
}

/// Holds `[start, end)` until dropped.
#[derive(Debug)]
pub(crate) struct OverlapGuard<'a> {
    owner: &'a Overlaps,
    id: u64,
}

impl Overlaps {
    /// Waits until no write in flight overlaps `[start, end)`, then holds it.
    pub(crate) async fn lock(&self, start: u64, end: u64) -> OverlapGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the check and the await wakes us.
            notified.as_mut().enable();
            {
                let mut ranges = self.ranges.lock().unwrap_or_else(|p| p.into_inner());
                if !ranges.iter().any(|&(s, e, _)| s < end && start < e) {
                    ranges.push((start, end, id));
                    return OverlapGuard { owner: self, id };
                }
            }
            notified.await;
        }
    }
}

impl Drop for OverlapGuard<'_> {
    fn drop(&mut self) {
        let mut ranges = self.owner.ranges.lock().unwrap_or_else(|p| p.into_inner());
        ranges.retain(|&(_, _, id)| id != self.id);
        drop(ranges);
        self.owner.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn overlapping_waits_disjoint_does_not() {
        let o = Overlaps::default();
        let a = o.lock(0, 4096).await;
        // Disjoint: immediate.
        let b = tokio::time::timeout(Duration::from_millis(50), o.lock(4096, 8192)).await;
        assert!(b.is_ok());
        // Overlapping: waits until `a` goes.
        let c = tokio::time::timeout(Duration::from_millis(50), o.lock(100, 200)).await;
        assert!(c.is_err());
        drop(a);
        let c = tokio::time::timeout(Duration::from_millis(50), o.lock(100, 200)).await;
        assert!(c.is_ok());
    }
}
