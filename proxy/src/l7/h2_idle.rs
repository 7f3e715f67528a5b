//! The idle and stall timeouts of an HTTP/2 client connection. hyper offers only PING-based
//! keep-alive, which a live but silent client answers for ever.
//!
//! - Idle, as HAProxy's H2 mux keeps it: while no stream is open, the connection may wait
//!   `timeout.http_request` for its first request and `timeout.keep_alive` between requests;
//!   past it, it is closed. A stream is open from its request's arrival until hyper drops its
//!   response body, that is after the last frame was sent or the stream was reset.
//! - Stalled: with a stream open, no byte moved either way for the larger of `timeout.client`
//!   and `timeout.server`. A waiting server is bounded by `timeout.server` (its 504 moves
//!   bytes), so this only catches a client that stopped reading (its flow-control window
//!   stays shut, and hyper waits for it without a timer) and sends nothing either.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering::AcqRel, Ordering::Acquire},
    },
    time::Duration,
};

use tokio::sync::Notify;

use fulcrum_common::activity::Activity;

/// The streams of one connection.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    open: AtomicUsize,
    /// Streams opened since the connection started: tells a connection that stayed idle from
    /// one that served a request in between.
    opened: AtomicU64,
    changed: Notify,
}

/// Holds a stream open; dropping it closes the stream.
#[derive(Debug)]
pub(crate) struct StreamGuard(Arc<Streams>);

impl Streams {
    pub(crate) fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, AcqRel);
        self.opened.fetch_add(1, AcqRel);
        self.changed.notify_waiters();
        StreamGuard(Arc::clone(self))
    }

    fn any_open(&self) -> bool {
        self.open.load(Acquire) > 0
    }

    /// Returns once a stream is open and no byte has moved either way for `limit` (zero: no
    /// limit), by `activity`.
    pub(crate) async fn stalled(&self, activity: &Activity, limit: Duration) {
        loop {
            activity.idle(limit).await;
            if self.any_open() {
                return;
            }
            // Quiet with no stream open is the idle timeout's business: look again later.
            activity.touch();
        }
    }

    /// Returns once no stream has been open for the idle time allowed: `first` before any
    /// request, `between` after one. A zero duration allows any idle time (never returns).
    pub(crate) async fn idle(&self, first: Duration, between: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.open.load(Acquire) > 0 {
                changed.await;
                continue;
            }
            let seen = self.opened.load(Acquire);
            let allowed = if seen == 0 { first } else { between };
            if allowed.is_zero() {
                changed.await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(allowed) => {
                    if self.open.load(Acquire) == 0 && self.opened.load(Acquire) == seen {
                        return;
                    }
                }
                () = changed => {}
            }
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, AcqRel);
        self.0.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_ends_after_the_first_request_timeout() {
        let streams = Arc::new(Streams::default());
        let started = tokio::time::Instant::now();
        streams
            .idle(Duration::from_secs(10), Duration::from_secs(5))
            .await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_stream_holds_the_connection_and_keep_alive_counts_from_its_end() {
        let streams = Arc::new(Streams::default());
        let guard = streams.open();
        let started = tokio::time::Instant::now();
        let closer = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(guard);
        };
        tokio::join!(
            closer,
            streams.idle(Duration::from_secs(10), Duration::from_secs(5))
        );
        assert_eq!(started.elapsed(), Duration::from_secs(65));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_during_the_wait_restarts_it() {
        let streams = Arc::new(Streams::default());
        let started = tokio::time::Instant::now();
        let request = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(streams.open());
        };
        tokio::join!(
            request,
            streams.idle(Duration::from_secs(10), Duration::from_secs(5))
        );
        assert_eq!(started.elapsed(), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_allows_any_idle_time() {
        let streams = Arc::new(Streams::default());
        let waited = tokio::time::timeout(
            Duration::from_secs(3600),
            streams.idle(Duration::ZERO, Duration::ZERO),
        )
        .await;
        assert!(waited.is_err());
    }
}
