//! Runtime state that outlives a config reload: per-frontend, per-backend and per-server counters
//! (sharded atomics, so the stats page can read them while requests update them), server health
//! and admin state, and the idle connection pool of each server.
//!
//! A reload builds a new routing table but takes these from the [`Registry`] by name, so a server
//! that stays keeps its health, counters and pooled connections.

mod availability;
pub(crate) mod counters;
mod observe;
mod registry;
mod server;
mod shard;
mod shutdown;
mod slow_start;

pub use availability::Availability;
pub use counters::{
    BackendCounters, FrontendCounters, FrontendSnapshot, Gauge, Histogram,
    RESPONSE_TIME_BOUNDS_MICROS, ServerCounters, Totals, TotalsSnapshot,
};
pub use observe::Observer;
pub(crate) use observe::Seen;
pub(crate) use registry::BackendSession;
pub use registry::{BackendState, FrontendState, Registry};
pub use server::{AdminState, AgentResult, CheckResult, ServerState, ServerStatus};

/// Milliseconds since the Unix epoch, for "last change" times shown to operators.
pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whole seconds from Unix milliseconds `then` to `now` (0 if `then` is later).
pub(crate) fn seconds_since(then: u64, now: u64) -> u64 {
    now.saturating_sub(then) / 1000
}
