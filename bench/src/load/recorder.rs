//! What one thread measured: latency histograms, statuses, errors and bytes. Each thread's
//! senders share one recorder (they run on one single-threaded runtime, so no lock is involved),
//! and the threads' recorders are merged at the end.
//!
//! One recorder per thread rather than per connection keeps memory flat: an HDR histogram of
//! microseconds up to seconds takes ~100 KiB, which 30k connections could not each afford.

use std::fmt::Display;

use hdrhistogram::Histogram;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::report::Errors;
use super::schedule::Slot;
use super::stats;

/// Status codes are three digits, so an array indexed by code counts them without hashing.
const STATUS_CODES: usize = 1000;

/// The kinds of failure a report tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// TCP connect or TLS (or HTTP/2) handshake.
    Connect,
    Read,
    Write,
    /// No complete answer within the request timeout.
    Timeout,
    /// An answer that could not be parsed.
    Protocol,
}

impl ErrorKind {
    const ALL: [Self; 5] = [
        Self::Connect,
        Self::Read,
        Self::Write,
        Self::Timeout,
        Self::Protocol,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Read => "read",
            Self::Write => "write",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Recorder {
    /// From each request's due time (see [`Slot::latency_origin`]) to the end of its answer.
    pub(crate) latency: Histogram<u64>,
    /// From when each request was actually started to the end of its answer: what a naive
    /// client measures. Only kept when it differs from `latency`, in rate mode.
    pub(crate) service: Histogram<u64>,
    track_service: bool,
    status: Vec<u64>,
    pub(crate) errors: Errors,
    pub(crate) bytes_read: u64,
    /// Connections established during the measurement.
    pub(crate) connects: u64,
    /// Kinds of error already logged at `warn`, so a failing server logs once per kind, not once
    /// per request.
    logged: [bool; 5],
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            latency: stats::histogram(),
            service: stats::histogram(),
            track_service: true,
            status: vec![0; STATUS_CODES],
            errors: Errors::default(),
            bytes_read: 0,
            connects: 0,
            logged: [false; 5],
        }
    }
}

impl Recorder {
    /// A recorder that keeps the service time only if `rate` mode makes it differ from latency.
    pub(crate) fn new(rate: bool) -> Self {
        Self {
            track_service: rate,
            ..Self::default()
        }
    }

    /// A complete answer to the request in `slot`, ending at `done`.
    pub(crate) fn response(&mut self, slot: &Slot, done: Instant, status: u16, bytes: u64) {
        if !slot.measured {
            return;
        }
        let latency = micros(done.saturating_duration_since(slot.latency_origin()));
        record(&mut self.latency, latency);
        if self.track_service {
            let service = micros(done.saturating_duration_since(slot.started));
            record(&mut self.service, service);
        }
        if let Some(count) = self.status.get_mut(usize::from(status)) {
            *count += 1;
        }
        self.bytes_read += bytes;
    }

    pub(crate) fn connected(&mut self, measured: bool) {
        if measured {
            self.connects += 1;
        }
    }

    pub(crate) fn error(&mut self, kind: ErrorKind, measured: bool, error: &dyn Display) {
        let logged = &mut self.logged[kind as usize];
        if *logged {
            debug!(kind = kind.name(), %error, "request failed");
        } else {
            *logged = true;
            warn!(kind = kind.name(), %error, "request failed (further ones are logged at debug)");
        }
        if !measured {
            return;
        }
        let errors = &mut self.errors;
        let count = match kind {
            ErrorKind::Connect => &mut errors.connect,
            ErrorKind::Read => &mut errors.read,
            ErrorKind::Write => &mut errors.write,
            ErrorKind::Timeout => &mut errors.timeout,
            ErrorKind::Protocol => &mut errors.protocol,
        };
        *count += 1;
    }

    /// Completed requests, any status.
    pub(crate) fn requests(&self) -> u64 {
        self.latency.len()
    }

    /// `(status, count)` for every status seen.
    pub(crate) fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        (0u16..)
            .zip(&self.status)
            .filter(|(_, count)| **count > 0)
            .map(|(status, count)| (status, *count))
    }

    /// Adds what another thread recorded.
    pub(crate) fn merge(&mut self, other: &Self) -> Result<(), hdrhistogram::AdditionError> {
        self.latency.add(&other.latency)?;
        self.service.add(&other.service)?;
        for (mine, theirs) in self.status.iter_mut().zip(&other.status) {
            *mine += theirs;
        }
        let (errors, theirs) = (&mut self.errors, &other.errors);
        errors.connect += theirs.connect;
        errors.read += theirs.read;
        errors.write += theirs.write;
        errors.timeout += theirs.timeout;
        errors.protocol += theirs.protocol;
        self.bytes_read += other.bytes_read;
        self.connects += other.connects;
        for kind in ErrorKind::ALL {
            self.logged[kind as usize] |= other.logged[kind as usize];
        }
        Ok(())
    }
}

/// Records a value, growing the histogram as needed. `saturating_record` would not grow it: it
/// clamps to the current range, which starts tiny.
fn record(histogram: &mut Histogram<u64>, value: u64) {
    if histogram.record(value).is_err() {
        // Growing fails only past what the histogram can index; keep the value as its maximum.
        histogram.saturating_record(value);
    }
}

fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use tokio::time::Instant;

    use super::{ErrorKind, Recorder};
    use crate::load::schedule::Slot;

    fn slot(due: Instant, started: Instant, measured: bool) -> Slot {
        Slot {
            due,
            started,
            measured,
        }
    }

    #[test]
    fn latency_runs_from_the_due_time_and_service_from_the_start() {
        let due = Instant::now();
        let started = due + Duration::from_millis(40);
        let done = started + Duration::from_millis(10);
        let mut recorder = Recorder::default();
        recorder.response(&slot(due, started, true), done, 200, 100);
        recorder.response(&slot(due, started, false), done, 500, 100);
        assert_eq!(recorder.requests(), 1);
        assert_eq!(recorder.latency.max(), 50_015);
        assert!(recorder.latency.min() >= 49_975);
        assert!(recorder.service.max().abs_diff(10_000) <= 10);
        assert_eq!(recorder.statuses().collect::<Vec<_>>(), [(200, 1)]);
        assert_eq!(recorder.bytes_read, 100);
    }

    #[test]
    fn merge_adds_everything() {
        let now = Instant::now();
        let mut first = Recorder::default();
        first.response(
            &slot(now, now, true),
            now + Duration::from_micros(5),
            200,
            10,
        );
        first.error(ErrorKind::Read, true, &"reset");
        first.connected(true);
        let mut second = Recorder::default();
        second.response(&slot(now, now, true), now + Duration::from_secs(3), 503, 20);
        second.response(&slot(now, now, true), now, 200, 30);
        second.error(ErrorKind::Read, true, &"reset");
        second.error(ErrorKind::Timeout, true, &"slow");
        second.error(ErrorKind::Connect, false, &"warm-up, not counted");
        first.merge(&second).unwrap();

        assert_eq!(first.requests(), 3);
        assert_eq!(first.statuses().collect::<Vec<_>>(), [(200, 2), (503, 1)]);
        assert_eq!(first.errors.read, 2);
        assert_eq!(first.errors.timeout, 1);
        assert_eq!(first.errors.connect, 0);
        assert_eq!(first.bytes_read, 60);
        assert_eq!(first.connects, 1);
        assert!(first.latency.max() >= 3_000_000);
    }
}
