//! Counters per frontend, backend and server, named after the columns of HAProxy's stats page so
//! its users find them where they expect.
//!
//! Totals (sessions, requests, bytes, errors, responses by class, the response-time histogram)
//! are sharded: each frontend, backend and server keeps one block of counters per shard, a thread
//! adds to its own shard only, and a scrape folds the shards. So the request path never bounces a
//! cache line between cores to count something.
//!
//! Gauges that drive a decision stay single atomics ([`Gauge`]): leastconn, `max_connections`
//! and the queue need the exact number of sessions *now*, which a sharded gauge could only give
//! by folding every shard on every read, and a peak (`smax`) needs the one true current value.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use super::shard::Sharded;

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// Reads a counter.
pub(crate) fn load(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}

/// Raises `max` to `value` if it is larger.
pub(crate) fn raise(max: &AtomicU64, value: u64) {
    max.fetch_max(value, Relaxed);
}

/// A current-value gauge that also tracks its maximum: `scur` / `smax` in HAProxy's terms.
#[derive(Debug, Default)]
pub struct Gauge {
    pub cur: AtomicU64,
    pub max: AtomicU64,
}

impl Gauge {
    /// Adds one and returns the new value.
    pub fn up(&self) -> u64 {
        let now = self.cur.fetch_add(1, Relaxed) + 1;
        raise(&self.max, now);
        now
    }

    pub fn down(&self) {
        self.cur.fetch_sub(1, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.cur.load(Relaxed)
    }

    pub fn max(&self) -> u64 {
        self.max.load(Relaxed)
    }
}

/// Index into a `responses` array for `status`: 1xx, 2xx, 3xx, 4xx, 5xx, other.
pub(crate) fn status_class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

/// Response classes counted: 1xx to 5xx and other.
const CLASSES: usize = 6;

/// A frontend's totals. The responses' slots follow the last one: a new total goes last and
/// `FRONTEND_RESPONSES` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrontendTotal {
    /// Client connections accepted.
    Sessions,
    Requests,
    BytesIn,
    BytesOut,
    /// Requests refused as invalid (400, 408, 431, 501).
    RequestErrors,
    DeniedRequests,
}

/// Frontend slots: the totals, then responses by class.
const FRONTEND_RESPONSES: usize = FrontendTotal::DeniedRequests as usize + 1;
const FRONTEND_SLOTS: usize = FRONTEND_RESPONSES + CLASSES;

/// A frontend's counters.
#[derive(Debug, Default)]
pub struct FrontendCounters {
    /// Client connections open now and at most.
    pub sessions: Gauge,
    totals: Sharded<FRONTEND_SLOTS>,
}

impl FrontendCounters {
    pub(crate) fn inc(&self, total: FrontendTotal) {
        self.add(total, 1);
    }

    pub(crate) fn add(&self, total: FrontendTotal, n: u64) {
        self.totals.add(total as usize, n);
    }

    /// Counts a response sent with `status`.
    pub(crate) fn response(&self, status: u16) {
        self.totals
            .add(FRONTEND_RESPONSES + status_class(status), 1);
    }

    /// Every total now.
    pub fn snapshot(&self) -> FrontendSnapshot {
        let t = self.totals.fold();
        FrontendSnapshot {
            sessions: t[FrontendTotal::Sessions as usize],
            requests: t[FrontendTotal::Requests as usize],
            bytes_in: t[FrontendTotal::BytesIn as usize],
            bytes_out: t[FrontendTotal::BytesOut as usize],
            request_errors: t[FrontendTotal::RequestErrors as usize],
            denied_requests: t[FrontendTotal::DeniedRequests as usize],
            responses: std::array::from_fn(|i| t[FRONTEND_RESPONSES + i]),
        }
    }
}

/// A frontend's totals, folded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrontendSnapshot {
    pub sessions: u64,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub request_errors: u64,
    pub denied_requests: u64,
    /// 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub responses: [u64; 6],
}

/// A backend's or a server's totals. The responses' slots follow the last one: a new total goes
/// last and `RESPONSES` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Total {
    /// Requests routed to the backend, connections made to the server.
    Sessions,
    /// Times the balancer picked a server (of the backend).
    LoadBalanced,
    BytesIn,
    BytesOut,
    ConnectErrors,
    /// Bad, aborted or timed-out responses.
    ResponseErrors,
    Retries,
    Redispatches,
}

/// Upper bounds of the response-time histogram's buckets in microseconds (0.001 s to 10 s);
/// the last bucket, +Inf, takes the rest.
pub const RESPONSE_TIME_BOUNDS_MICROS: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];
const BUCKETS: usize = RESPONSE_TIME_BOUNDS_MICROS.len() + 1;

/// Slots of a backend's or server's block: the totals, responses by class, the last session's
/// time (folded by max), the histogram's buckets and its sum. The count is the buckets' sum, so
/// it always equals the +Inf bucket, even when a scrape races an observation.
const RESPONSES: usize = Total::Redispatches as usize + 1;
const LAST_SESSION: usize = RESPONSES + CLASSES;
const HISTOGRAM: usize = LAST_SESSION + 1;
const HISTOGRAM_SUM: usize = HISTOGRAM + BUCKETS;
const SLOTS: usize = HISTOGRAM_SUM + 1;

/// A backend's or a server's sharded totals.
#[derive(Debug, Default)]
pub struct Totals(Sharded<SLOTS>);

impl Totals {
    pub(crate) fn inc(&self, total: Total) {
        self.add(total, 1);
    }

    pub(crate) fn add(&self, total: Total, n: u64) {
        self.0.add(total as usize, n);
    }

    /// Counts a response with `status`.
    pub(crate) fn response(&self, status: u16) {
        self.0.add(RESPONSES + status_class(status), 1);
    }

    /// Counts a session starting at `now` (Unix milliseconds), which becomes `lastsess`.
    pub(crate) fn session_started(&self, now: u64) {
        self.inc(Total::Sessions);
        self.0.raise(LAST_SESSION, now);
    }

    /// Records one response time: from the request sent to the server to its response head.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = RESPONSE_TIME_BOUNDS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKETS - 1);
        self.0.add(HISTOGRAM + bucket, 1);
        self.0.add(HISTOGRAM_SUM, micros);
    }

    /// Every total now.
    pub fn snapshot(&self) -> TotalsSnapshot {
        let t = self.0.fold();
        let get = |total: Total| t[total as usize];
        TotalsSnapshot {
            sessions: get(Total::Sessions),
            load_balanced: get(Total::LoadBalanced),
            bytes_in: get(Total::BytesIn),
            bytes_out: get(Total::BytesOut),
            connect_errors: get(Total::ConnectErrors),
            response_errors: get(Total::ResponseErrors),
            retries: get(Total::Retries),
            redispatches: get(Total::Redispatches),
            responses: std::array::from_fn(|i| t[RESPONSES + i]),
            last_session: self.0.max(LAST_SESSION),
            response_time: Histogram {
                buckets: std::array::from_fn(|i| t[HISTOGRAM + i]),
                sum_micros: t[HISTOGRAM_SUM],
            },
        }
    }
}

/// A backend's or server's totals, folded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TotalsSnapshot {
    pub sessions: u64,
    pub load_balanced: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connect_errors: u64,
    pub response_errors: u64,
    pub retries: u64,
    pub redispatches: u64,
    /// 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub responses: [u64; 6],
    /// Unix milliseconds of the last session, 0 if none yet.
    pub last_session: u64,
    pub response_time: Histogram,
}

/// Response times in the buckets of [`RESPONSE_TIME_BOUNDS_MICROS`] (then +Inf).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket, not cumulative.
    pub buckets: [u64; BUCKETS],
    pub sum_micros: u64,
}

impl Histogram {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Observations at or below each bound, then the total, as Prometheus buckets count.
    pub fn cumulative(&self) -> [u64; BUCKETS] {
        let mut running = 0;
        self.buckets.map(|n| {
            running += n;
            running
        })
    }
}

/// A backend's counters.
#[derive(Debug, Default)]
pub struct BackendCounters {
    /// Requests being served by this backend now and at most.
    pub sessions: Gauge,
    /// Requests waiting for a slot on any of its servers (HAProxy's backend queue); those that
    /// wait for one server are in that server's.
    pub queue: Gauge,
    pub totals: Totals,
}

/// A server's counters.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Requests under way on this server now and at most.
    pub sessions: Gauge,
    /// Requests waiting for a slot on this server: sticky, hashed, or retried on it.
    pub queue: Gauge,
    pub totals: Totals,
    /// Failed health checks and UP to DOWN transitions: written by one health task or an admin
    /// action, never by the request path, so single atomics.
    pub failed_checks: AtomicU64,
    pub down_transitions: AtomicU64,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::unix_millis;

    #[test]
    fn threads_count_on_their_own_shard_and_a_fold_sees_every_count() {
        let counters = Arc::new(FrontendCounters::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&counters);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc(FrontendTotal::Requests);
                        c.add(FrontendTotal::BytesOut, 3);
                        c.response(503);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join()
                .unwrap_or_else(|_| panic!("counting thread panicked"));
        }
        let s = counters.snapshot();
        assert_eq!(s.requests, 8000);
        assert_eq!(s.bytes_out, 24_000);
        assert_eq!(s.responses, [0, 0, 0, 0, 8000, 0]);
        assert_eq!(s.sessions, 0);
    }

    #[test]
    fn response_times_land_in_prometheus_buckets() {
        let t = Totals::default();
        t.observe(Duration::from_micros(1_000)); // le 0.001, bounds are inclusive
        t.observe(Duration::from_micros(1_001)); // le 0.0025
        t.observe(Duration::from_millis(300)); // le 0.5
        t.observe(Duration::from_secs(11)); // +Inf
        let h = t.snapshot().response_time;
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_micros, 1_000 + 1_001 + 300_000 + 11_000_000);
        assert_eq!(h.cumulative(), [1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4]);
    }

    #[test]
    fn the_last_session_is_the_latest_over_the_shards() {
        let t = Arc::new(Totals::default());
        assert_eq!(t.snapshot().last_session, 0, "no session yet");
        t.session_started(unix_millis());
        let first = t.snapshot().last_session;
        assert!(first > 0);
        let other = Arc::clone(&t);
        std::thread::spawn(move || other.session_started(unix_millis()))
            .join()
            .unwrap_or_else(|_| panic!("thread panicked"));
        assert!(t.snapshot().last_session >= first);
    }
}
