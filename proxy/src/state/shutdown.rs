//! `shutdown sessions server`: ending every connection a server is serving now, at an operator's
//! request. A session notes the epoch when it starts with the server and ends as soon as the
//! epoch moves on.
//!
//! Every session waits on this while it talks to the server, so the waiters are spread over one
//! `Notify` per shard: registering one locks a list only the tasks of the same thread share.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use tokio::sync::Notify;

use super::shard::{shard_count, thread_shard};

/// A server's session kill switch.
#[derive(Debug)]
pub(crate) struct SessionKill {
    epoch: AtomicU64,
    waiters: Box<[CachePadded<Notify>]>,
}

impl Default for SessionKill {
    fn default() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            waiters: (0..shard_count())
                .map(|_| CachePadded::new(Notify::new()))
                .collect(),
        }
    }
}

impl SessionKill {
    /// The epoch a session starting now belongs to.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Ends every session started before now.
    pub(crate) fn fire(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for waiters in &*self.waiters {
            waiters.notify_waiters();
        }
    }

    /// Resolves once the sessions of `epoch` are to end (at once if they already are).
    pub(crate) async fn fired(&self, epoch: u64) {
        let waiters = &self.waiters[thread_shard() & (self.waiters.len() - 1)];
        loop {
            let notified = waiters.notified();
            tokio::pin!(notified);
            // Registered before the epoch is read, so a fire in between is not missed.
            notified.as_mut().enable();
            if self.epoch() != epoch {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_fire_ends_every_session_of_the_epoch_and_none_started_after() {
        let kill = Arc::new(SessionKill::default());
        let epoch = kill.epoch();
        let waiting: Vec<_> = (0..16)
            .map(|_| {
                let kill = Arc::clone(&kill);
                tokio::spawn(async move { kill.fired(epoch).await })
            })
            .collect();
        tokio::task::yield_now().await;
        kill.fire();
        for w in waiting {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .unwrap_or_else(|_| panic!("a session was not ended"))
                .unwrap_or_else(|_| panic!("task failed"));
        }
        // A session that starts now is not ended by the past fire.
        let later = kill.epoch();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), kill.fired(later))
                .await
                .is_err()
        );
        // One that started before, and asks only now, ends at once.
        tokio::time::timeout(Duration::from_secs(1), kill.fired(epoch))
            .await
            .unwrap_or_else(|_| panic!("an old session must end at once"));
    }
}
