//! When to try the peer again after a failed connect or handshake: exponential from the
//! connect interval, capped, with jitter, and reset only by a successful authentication, so
//! that a wrong secret or a peer that drops us at once is never retried in a tight loop.
//!
//! ```text
//!   failure n (from 0):  nominal(n) = min(max, connect_interval * 2^n)
//!                        delay(n)   = nominal(n) + uniform[0, nominal(n) / 4]
//! ```
//!
//! Every delay is at least the connect interval. Jitter only lengthens delays, so two nodes
//! that fail together drift apart without either retrying early.

use std::time::Duration;

/// The shortest connect interval honoured: a zero interval from a config would otherwise
/// retry in a tight loop.
pub const MIN_CONNECT_INTERVAL: Duration = Duration::from_millis(100);

/// Past this many failures the nominal delay is `max` anyway; bounding the exponent keeps the
/// arithmetic small.
const MAX_DOUBLINGS: u32 = 31;

/// The retry schedule of one peer link.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A schedule starting at `connect_interval` (at least [`MIN_CONNECT_INTERVAL`]) and
    /// doubling up to `max` (at least the start).
    pub fn new(connect_interval: Duration, max: Duration) -> Self {
        let base = connect_interval.max(MIN_CONNECT_INTERVAL);
        Self {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// How long to wait after a failed attempt (connect, handshake, or a link lost before
    /// it authenticated) before the next one.
    pub fn next_delay(&mut self) -> Duration {
        let mut random = [0; 4];
        // Without randomness, no jitter: the schedule stays correct, only less spread.
        let random = match getrandom::getrandom(&mut random) {
            Ok(()) => u32::from_ne_bytes(random),
            Err(_) => 0,
        };
        self.delay_with(random)
    }

    /// The peer authenticated: the next failure starts the schedule again. (The replication
    /// layer may wait until the Hellos are accepted before calling this, so that a peer that
    /// authenticates and then drops us still backs off.)
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// The wait that [`next_delay`](Self::next_delay) gave was cut short by a wake-up: it does
    /// not count, and the next failure waits as long as that one would have.
    pub fn woken(&mut self) {
        self.failures = self.failures.saturating_sub(1);
    }

    /// Failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// [`next_delay`](Self::next_delay) with the jitter drawn from `random` (0 = none,
    /// `u32::MAX` = a quarter more).
    fn delay_with(&mut self, random: u32) -> Duration {
        let doublings = self.failures.min(MAX_DOUBLINGS);
        self.failures = self.failures.saturating_add(1);
        let nominal = self.base.saturating_mul(1 << doublings).min(self.max);
        let jitter = nominal.as_nanos() / 4 * u128::from(random) / u128::from(u32::MAX);
        let jitter = Duration::from_nanos(u64::try_from(jitter).unwrap_or(u64::MAX));
        nominal.saturating_add(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    // Input: failures with no jitter, base 10 s, max 60 s. Output: 10, 20, 40, 60, 60 s.
    #[test]
    fn doubles_from_the_connect_interval_up_to_the_cap() {
        let mut backoff = Backoff::new(10 * SECOND, 60 * SECOND);
        let delays: Vec<_> = (0..5).map(|_| backoff.delay_with(0)).collect();
        assert_eq!(delays, [10, 20, 40, 60, 60].map(|s| s * SECOND).to_vec());
        assert_eq!(backoff.failures(), 5);
    }

    // Input: the largest jitter. Output: a quarter more than nominal, never less.
    #[test]
    fn jitter_adds_at_most_a_quarter() {
        let mut backoff = Backoff::new(8 * SECOND, 64 * SECOND);
        let delays: Vec<_> = (0..5).map(|_| backoff.delay_with(u32::MAX)).collect();
        assert_eq!(delays, [10, 20, 40, 80, 80].map(|s| s * SECOND).to_vec());
    }

    #[test]
    fn random_delays_stay_within_the_schedule() {
        let mut backoff = Backoff::new(SECOND, 30 * SECOND);
        for n in 0..50u32 {
            let nominal = SECOND.saturating_mul(1 << n.min(31)).min(30 * SECOND);
            let delay = backoff.next_delay();
            assert!(
                delay >= nominal && delay <= nominal + nominal / 4,
                "{n}: {delay:?}"
            );
        }
    }

    #[test]
    fn a_success_starts_the_schedule_again() {
        let mut backoff = Backoff::new(SECOND, 60 * SECOND);
        for _ in 0..4 {
            backoff.delay_with(0);
        }
        assert_eq!(backoff.delay_with(0), 16 * SECOND);
        backoff.succeeded();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.delay_with(0), SECOND);
    }

    // Input: a wait cut short by a wake-up, then a failure. Output: the next wait is the one
    // the woken wait would have been, not the one after.
    #[test]
    fn a_woken_wait_does_not_count() {
        let mut backoff = Backoff::new(SECOND, 60 * SECOND);
        assert_eq!(backoff.delay_with(0), SECOND);
        backoff.woken();
        assert_eq!(backoff.delay_with(0), SECOND);
        assert_eq!(backoff.delay_with(0), 2 * SECOND);
    }

    // Input: a zero interval and a cap below it. Output: never faster than the floor.
    #[test]
    fn never_a_tight_loop() {
        let mut backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
        for _ in 0..10 {
            assert!(backoff.next_delay() >= MIN_CONNECT_INTERVAL);
        }
        let mut backoff = Backoff::new(10 * SECOND, SECOND);
        assert_eq!(backoff.delay_with(0), 10 * SECOND);
        assert_eq!(backoff.delay_with(0), 10 * SECOND);
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::MAX, Duration::MAX);
        for _ in 0..100 {
            assert!(backoff.delay_with(u32::MAX) >= Duration::MAX / 2);
        }
        let mut backoff = Backoff::new(SECOND, 60 * SECOND);
        backoff.failures = u32::MAX;
        assert_eq!(backoff.delay_with(0), 60 * SECOND);
        assert_eq!(backoff.failures(), u32::MAX);
    }
}
