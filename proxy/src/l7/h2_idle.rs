//! The idle and stall timeouts of an HTTP/2 client connection. hyper offers only PING-based
//! keep-alive, which a live but silent client answers for ever.
//!
//! - Idle, as HAProxy's H2 mux keeps it: while no stream is open, the connection may wait
//!   `timeout.http_request` for its first request and `timeout.keep_alive` between requests;
//!   past it, it is closed. A stream is open from its request's arrival until hyper drops its
//!   response body, that is after the last frame was sent or the stream was reset, or until
//!   it is cut (below).
//! - Stalled: with a stream hyper holds (open, or cut and not reset yet), no byte moved either
//!   way for the larger of `timeout.client` and `timeout.server`: the connection is closed.
//! - Stuck: one stream's response gave hyper no frame for that long while others, or PINGs,
//!   kept the connection busy. A waiting server is bounded by `timeout.server` (its 504 moves
//!   bytes), so this only catches a client that stopped reading a stream: its flow-control
//!   window stays shut, and hyper waits for it without a timer, never polling the body whose
//!   timers and server slot would end it. That stream alone is cut, as HAProxy ends one
//!   stream at its client timeout: its body is dropped, which frees the server connection and
//!   slot, and should hyper poll it again it fails, which resets the stream. The other streams
//!   go on.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, Weak,
        atomic::{
            AtomicBool, AtomicU64, AtomicUsize, Ordering::AcqRel, Ordering::Acquire,
            Ordering::Release,
        },
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};
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
    /// The streams hyper holds, for the watch that cuts stuck ones and for the stall.
    states: Mutex<Vec<Weak<StreamState>>>,
    epoch: Instant,
}

/// A response body as hyper takes it.
pub(crate) type ResponseBody = BoxBody<Bytes, io::Error>;

/// One stream, as its guard, its body and the connection's watch share it.
#[derive(Default)]
struct StreamState {
    /// When the stream last gave hyper its response head or a frame of its body, in
    /// milliseconds since `epoch`; [`NOT_ANSWERED`] before the head (a request waiting in a
    /// queue or for its server is bounded by their timeouts).
    moved: AtomicU64,
    /// The response body, until the stream is cut.
    body: Mutex<Option<ResponseBody>>,
    /// Whether the stream no longer counts as open: it ended, or it was cut.
    closed: AtomicBool,
    /// Whether it was cut (see [`CutMark`]).
    cut: AtomicBool,
}

/// Tells a stream's response body, as it is dropped, whether the stream was cut for being
/// stuck: its log then says the client timed out (`cD`), not that it went away (`CD`).
#[derive(Debug, Clone, Default)]
pub(crate) struct CutMark(Weak<StreamState>);

impl CutMark {
    pub(crate) fn is_cut(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|state| state.cut.load(Acquire))
    }
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            open: AtomicUsize::new(0),
            opened: AtomicU64::new(0),
            changed: Notify::new(),
            states: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        }
    }
}

/// A stream whose response head has not gone to hyper yet.
const NOT_ANSWERED: u64 = u64::MAX;

/// Holds a stream open; dropping it closes the stream.
pub(crate) struct StreamGuard {
    streams: Arc<Streams>,
    state: Arc<StreamState>,
}

impl std::fmt::Debug for StreamGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamGuard").finish_non_exhaustive()
    }
}

impl StreamGuard {
    /// The stream's response moved: its head, or a frame of its body, went to hyper.
    pub(crate) fn moved(&self) {
        self.state.moved.store(self.streams.now(), Release);
    }

    /// What the stream's response body asks, as it is dropped, to log how it ended.
    pub(crate) fn cut_mark(&self) -> CutMark {
        CutMark(Arc::downgrade(&self.state))
    }

    /// The body hyper sends for the stream, which the connection's watch can cut; the stream
    /// is open until hyper drops it, after its last frame, or until it is cut.
    pub(crate) fn body(self, body: ResponseBody) -> StreamBody {
        if let Ok(mut slot) = self.state.body.lock() {
            *slot = Some(body);
        }
        StreamBody { guard: self }
    }
}

/// A stream's response body: its frames mark the stream as moving, and once the stream is cut
/// it fails, which makes hyper reset the stream.
#[derive(Debug)]
pub(crate) struct StreamBody {
    guard: StreamGuard,
}

// A std Mutex per frame, uncontended: another task (the cut watch) must be able to drop the
// body, which hyper owns and polls only when the client's window opens.
impl Body for StreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let guard = &self.guard;
        let Ok(mut slot) = guard.state.body.lock() else {
            return Poll::Ready(Some(Err(io::Error::other("stream state poisoned"))));
        };
        let Some(body) = slot.as_mut() else {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of this stream for too long",
            ))));
        };
        let polled = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            guard.moved();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let slot = self.guard.state.body.lock();
        slot.is_ok_and(|slot| slot.as_ref().is_some_and(Body::is_end_stream))
    }

    fn size_hint(&self) -> SizeHint {
        let slot = self.guard.state.body.lock();
        match slot.as_deref() {
            Ok(Some(body)) => body.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

impl Streams {
    pub(crate) fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, AcqRel);
        self.opened.fetch_add(1, AcqRel);
        self.changed.notify_waiters();
        let state = Arc::new(StreamState {
            moved: AtomicU64::new(NOT_ANSWERED),
            ..StreamState::default()
        });
        if let Ok(mut all) = self.states.lock() {
            all.retain(|m| m.strong_count() > 0);
            all.push(Arc::downgrade(&state));
        }
        StreamGuard {
            streams: Arc::clone(self),
            state,
        }
    }

    /// Counts `state`'s stream as closed, once.
    fn close(&self, state: &StreamState) {
        if !state.closed.swap(true, AcqRel) {
            self.open.fetch_sub(1, AcqRel);
            self.changed.notify_waiters();
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The open streams whose response was answered and has not moved for `limit`.
    fn stuck(&self, limit: Duration) -> Vec<Arc<StreamState>> {
        let Ok(all) = self.states.lock() else {
            return Vec::new();
        };
        let now = self.now();
        all.iter()
            .filter_map(Weak::upgrade)
            .filter(|state| !state.closed.load(Acquire))
            .filter(|state| {
                let at = state.moved.load(Acquire);
                at != NOT_ANSWERED && Duration::from_millis(now.saturating_sub(at)) >= limit
            })
            .collect()
    }

    /// Cuts every stream whose response has not moved for `limit` (zero: never), for as long
    /// as the connection lasts (see the module documentation). Never returns. `client` names
    /// the connection in the log.
    pub(crate) async fn cut_stuck(&self, limit: Duration, client: std::net::SocketAddr) {
        if limit.is_zero() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(limit / 4).await;
            for state in self.stuck(limit) {
                // Dropped outside the lock: the body's drop frees its server connection, and
                // logs the request as timed out (the mark is set first).
                state.cut.store(true, Release);
                let body = state.body.lock().ok().and_then(|mut slot| slot.take());
                drop(body);
                self.close(&state);
                tracing::debug!(%client, ?limit, "h2 stream stuck: cut");
            }
        }
    }

    /// Marks every stream hyper holds as cut: the connection is closed for not moving.
    pub(crate) fn cut_all(&self) {
        let Ok(all) = self.states.lock() else {
            return;
        };
        for state in all.iter().filter_map(Weak::upgrade) {
            state.cut.store(true, Release);
        }
    }

    /// Whether hyper holds a stream: an open one, or one cut but not reset yet, which waits
    /// for a window that may never open.
    fn any_held(&self) -> bool {
        let all = self.states.lock();
        all.is_ok_and(|all| all.iter().any(|state| state.strong_count() > 0))
    }

    /// Returns once hyper holds a stream and no byte has moved either way for `limit` (zero: no
    /// limit), by `activity`.
    pub(crate) async fn stalled(&self, activity: &Activity, limit: Duration) {
        loop {
            activity.idle(limit).await;
            if self.any_held() {
                return;
            }
            // Quiet with no stream held is the idle timeout's business: look again later.
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
        self.streams.close(&self.state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: std::net::SocketAddr =
        std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

    /// A body that never yields and says when it is dropped, as a server connection would be.
    struct Held(Arc<AtomicBool>);

    impl Body for Held {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            Poll::Pending
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            self.0.store(true, Release);
        }
    }

    // Input: a connection kept busy (bytes every second, as PINGs or another stream would),
    // one stream answered whose body then gives hyper nothing (the client's window stays
    // shut), and one not answered yet. Output: after the limit the stuck stream is cut (its
    // body dropped, so its server connection goes; polled again, it fails) and no longer open;
    // the waiting stream and the connection go on. (The whole connection used to be closed,
    // with its other streams.)
    #[tokio::test(start_paused = true)]
    async fn a_stuck_stream_is_cut_and_the_busy_connection_goes_on() {
        let streams = Arc::new(Streams::default());
        let activity = Activity::new();
        let dropped = Arc::new(AtomicBool::new(false));
        let stuck = streams.open();
        stuck.moved();
        let mut body = stuck.body(BoxBody::new(Held(Arc::clone(&dropped))));
        let _waiting = streams.open();
        let started = Instant::now();
        let busy = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                activity.touch();
            }
        };
        let cut = async {
            while !dropped.load(Acquire) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let limit = Duration::from_secs(10);
        tokio::select! {
            () = cut => {}
            () = streams.cut_stuck(limit, CLIENT) => unreachable!(),
            () = streams.stalled(&activity, limit) => panic!("the busy connection stalled"),
            () = busy => unreachable!(),
            () = tokio::time::sleep(Duration::from_secs(60)) => panic!("never cut"),
        }
        let took = started.elapsed();
        assert!(took >= limit, "{took:?}");
        assert!(took < Duration::from_secs(14), "{took:?}");
        assert_eq!(
            streams.open.load(Acquire),
            1,
            "the cut stream still counts as open"
        );
        let polled = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(matches!(polled, Some(Err(_))), "{polled:?}");
        drop(body);
        assert_eq!(
            streams.open.load(Acquire),
            1,
            "the cut stream was closed twice"
        );
    }

    // Input: a stream cut while other traffic kept the connection busy, which hyper still
    // holds (its window never opened), then silence. Output: the connection is stalled a limit
    // after the last byte. (A cut stream no longer counted, and only the idle timeout, if any,
    // closed the connection.)
    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_holding_a_cut_stream_stalls() {
        let streams = Arc::new(Streams::default());
        let activity = Activity::new();
        let dropped = Arc::new(AtomicBool::new(false));
        let stuck = streams.open();
        stuck.moved();
        let _held = stuck.body(BoxBody::new(Held(Arc::clone(&dropped))));
        let limit = Duration::from_secs(10);
        let busy_until_cut = async {
            while !dropped.load(Acquire) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                activity.touch();
            }
        };
        tokio::select! {
            () = busy_until_cut => {}
            () = streams.cut_stuck(limit, CLIENT) => unreachable!(),
        }
        let quiet_from = Instant::now();
        let stalled = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::select! {
                () = streams.stalled(&activity, limit) => {}
                () = streams.cut_stuck(limit, CLIENT) => unreachable!(),
            }
        })
        .await;
        assert!(stalled.is_ok(), "the quiet connection never stalled");
        // The last byte moved within the second before `quiet_from`.
        let quiet = quiet_from.elapsed();
        assert!(
            quiet >= limit - Duration::from_secs(1) && quiet <= limit,
            "{quiet:?}"
        );
    }

    // Input: a busy connection whose one answered stream keeps moving. Output: neither a
    // stall nor a cut.
    #[tokio::test(start_paused = true)]
    async fn a_moving_stream_is_not_cut() {
        let streams = Arc::new(Streams::default());
        let activity = Activity::new();
        let dropped = Arc::new(AtomicBool::new(false));
        let stream = streams.open();
        stream.moved();
        let body = stream.body(BoxBody::new(Held(Arc::clone(&dropped))));
        let moving = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                body.guard.moved();
                activity.touch();
            }
        };
        let limit = Duration::from_secs(10);
        let ended = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::select! {
                () = streams.stalled(&activity, limit) => {}
                () = streams.cut_stuck(limit, CLIENT) => {}
                () = moving => {}
            }
        })
        .await;
        assert!(ended.is_err(), "a moving stream stalled the connection");
        assert!(!dropped.load(Acquire), "a moving stream was cut");
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
