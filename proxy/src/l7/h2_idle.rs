//! The idle and stall timeouts of an HTTP/2 client connection. hyper offers only PING-based
//! keep-alive, which a live but silent client answers for ever.
//!
//! - Idle, as HAProxy's H2 mux keeps it: while no stream is open, the connection may wait
//!   `timeout.http_request` for its first request and `timeout.keep_alive` between requests;
//!   past it, it is closed. A stream is open from its request's arrival until hyper drops its
//!   response body, that is after the last frame was sent or the stream was reset.
//! - Stalled: with a stream open, no byte moved either way for the larger of `timeout.client`
//!   and `timeout.server`; or one stream's response gave hyper no frame for that long while
//!   others, or PINGs, kept the connection busy. A waiting server is bounded by
//!   `timeout.server` (its 504 moves bytes), so this only catches a client that stopped
//!   reading a stream (its flow-control window stays shut, and hyper waits for it without a
//!   timer, never polling the body whose timers and server slot would end it).

use std::{
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering::AcqRel, Ordering::Acquire, Ordering::Release},
    },
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use fulcrum_common::activity::Activity;

/// The streams of one connection.
#[derive(Debug)]
pub(crate) struct Streams {
    open: AtomicUsize,
    /// Streams opened since the connection started: tells a connection that stayed idle from
    /// one that served a request in between.
    opened: AtomicU64,
    changed: Notify,
    /// When each open stream last gave hyper its response head or a frame of its body, in
    /// milliseconds since `epoch`; [`NOT_ANSWERED`] before the head (a request waiting in a
    /// queue or for its server is bounded by their timeouts).
    moved: Mutex<Vec<Weak<AtomicU64>>>,
    epoch: Instant,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            open: AtomicUsize::new(0),
            opened: AtomicU64::new(0),
            changed: Notify::new(),
            moved: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        }
    }
}

/// A stream whose response head has not gone to hyper yet.
const NOT_ANSWERED: u64 = u64::MAX;

/// Holds a stream open; dropping it closes the stream.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    streams: Arc<Streams>,
    moved: Arc<AtomicU64>,
}

impl StreamGuard {
    /// The stream's response moved: its head, or a frame of its body, went to hyper.
    pub(crate) fn moved(&self) {
        self.moved.store(self.streams.now(), Release);
    }
}

impl Streams {
    pub(crate) fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, AcqRel);
        self.opened.fetch_add(1, AcqRel);
        self.changed.notify_waiters();
        let moved = Arc::new(AtomicU64::new(NOT_ANSWERED));
        if let Ok(mut all) = self.moved.lock() {
            all.retain(|m| m.strong_count() > 0);
            all.push(Arc::downgrade(&moved));
        }
        StreamGuard {
            streams: Arc::clone(self),
            moved,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Since when the open stream that moved least recently has not moved.
    fn oldest_move(&self) -> Option<Duration> {
        let all = self.moved.lock().ok()?;
        let oldest = all
            .iter()
            .filter_map(Weak::upgrade)
            .map(|m| m.load(Acquire))
            .filter(|&at| at != NOT_ANSWERED)
            .min()?;
        Some(Duration::from_millis(self.now().saturating_sub(oldest)))
    }

    /// Returns once an open stream's response has not moved for `limit` (zero: never).
    async fn stream_stuck(&self, limit: Duration) {
        if limit.is_zero() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(limit / 4).await;
            if self.oldest_move().is_some_and(|still| still >= limit) {
                return;
            }
        }
    }

    fn any_open(&self) -> bool {
        self.open.load(Acquire) > 0
    }

    /// Returns once a stream is open and no byte has moved either way for `limit` (zero: no
    /// limit), by `activity`, or one open stream's response has not moved for `limit`.
    pub(crate) async fn stalled(&self, activity: &Activity, limit: Duration) {
        let quiet = async {
            loop {
                activity.idle(limit).await;
                if self.any_open() {
                    return;
                }
                // Quiet with no stream open is the idle timeout's business: look again later.
                activity.touch();
            }
        };
        tokio::select! {
            () = quiet => {}
            () = self.stream_stuck(limit) => {}
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
        self.streams.open.fetch_sub(1, AcqRel);
        self.streams.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: a connection kept busy (bytes every second, as PINGs or another stream would),
    // one stream answered whose body then gives hyper nothing (the client's window stays
    // shut), and one not answered yet. Output: the connection is stalled after the limit.
    // (Only a quiet connection was: a stuck stream held its server slot and backend connection
    // for as long as the client kept sending PINGs.)
    #[tokio::test(start_paused = true)]
    async fn a_stuck_stream_stalls_a_busy_connection() {
        let streams = Arc::new(Streams::default());
        let activity = Activity::new();
        let stuck = streams.open();
        stuck.moved();
        let _waiting = streams.open();
        let started = Instant::now();
        let busy = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                activity.touch();
            }
        };
        let stalled = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::select! {
                () = streams.stalled(&activity, Duration::from_secs(10)) => {}
                () = busy => {}
            }
        })
        .await;
        assert!(stalled.is_ok(), "the busy connection never stalled");
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(10), "{took:?}");
        assert!(took < Duration::from_secs(14), "{took:?}");
    }

    // Input: a busy connection whose one answered stream keeps moving. Output: no stall.
    #[tokio::test(start_paused = true)]
    async fn a_moving_stream_does_not_stall() {
        let streams = Arc::new(Streams::default());
        let activity = Activity::new();
        let stream = streams.open();
        let moving = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                stream.moved();
                activity.touch();
            }
        };
        let stalled = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::select! {
                () = streams.stalled(&activity, Duration::from_secs(10)) => {}
                () = moving => {}
            }
        })
        .await;
        assert!(stalled.is_err(), "a moving stream stalled the connection");
    }

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
