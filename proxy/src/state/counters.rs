//! Counters per frontend, backend and server, named after the columns of HAProxy's stats page so
//! its users find them where they expect. Relaxed atomics: each is a statistic, not a lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
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
}

/// A frontend's counters.
#[derive(Debug, Default)]
pub struct FrontendCounters {
    /// Client connections open now and at most.
    pub sessions: Gauge,
    /// Client connections accepted since start.
    pub sessions_total: AtomicU64,
    pub requests_total: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Requests refused as invalid (400, 408, 431, 501).
    pub errors_req: AtomicU64,
    pub denied_req: AtomicU64,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub responses: [AtomicU64; 6],
}

/// A backend's counters.
#[derive(Debug, Default)]
pub struct BackendCounters {
    /// Requests being served by this backend now and at most.
    pub sessions: Gauge,
    pub sessions_total: AtomicU64,
    /// Requests waiting for a server slot.
    pub queue: Gauge,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub errors_conn: AtomicU64,
    pub errors_resp: AtomicU64,
    pub retries: AtomicU64,
    pub redispatches: AtomicU64,
    pub responses: [AtomicU64; 6],
    /// Milliseconds since the epoch of the last request routed here.
    pub last_session: AtomicU64,
}

/// A server's counters.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Requests under way on this server now and at most.
    pub sessions: Gauge,
    pub sessions_total: AtomicU64,
    /// Times the balancer picked this server.
    pub lb_total: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub errors_conn: AtomicU64,
    pub errors_resp: AtomicU64,
    pub retries: AtomicU64,
    pub redispatches: AtomicU64,
    pub responses: [AtomicU64; 6],
    pub failed_checks: AtomicU64,
    pub down_transitions: AtomicU64,
    pub last_session: AtomicU64,
}

/// Index into a `responses` array for `status`.
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
