//! HAProxy's `slowstart`: a server that comes back (from DOWN or MAINT) is not handed its whole
//! share at once, which a cold cache or a JIT still warming up might not bear, but a weight
//! growing with the time since, from 1 to its full weight at the end of `slow_start`.
//!
//! As HAProxy's `server_warmup`, the weight moves in steps of a twentieth of `slow_start` (at
//! least a second): a balancer's schedule changes at most twenty times over the ramp. Time is
//! the monotonic clock's, so a wall clock set back does not hold a server at weight 1.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// When a server came back, if it is ramping up. Cheap to read when it is not.
#[derive(Debug, Default)]
pub(crate) struct Ramp {
    /// Milliseconds from [`epoch`] to the start of the ramp, plus one; 0: no ramp.
    started: AtomicU64,
}

impl Ramp {
    /// The server came back from DOWN or MAINT: a ramp starts now.
    pub(crate) fn start(&self) {
        self.started.store(now_millis() + 1, Relaxed);
    }

    /// The server went DOWN or into MAINT: no ramp until it comes back.
    pub(crate) fn cancel(&self) {
        self.started.store(0, Relaxed);
    }

    /// `weight`, or less while a ramp of `slow_start` runs.
    pub(crate) fn weight(&self, weight: u32, slow_start: Duration) -> u32 {
        self.elapsed(slow_start)
            .map_or(weight, |elapsed| ramped(weight, elapsed, slow_start))
    }

    /// While a ramp runs, the share of `weight` the server gets, in percent, rounded up (HAProxy's
    /// `throttle` stats column).
    pub(crate) fn throttle(&self, weight: u32, slow_start: Duration) -> Option<u32> {
        let elapsed = self.elapsed(slow_start)?;
        let now = u64::from(ramped(weight, elapsed, slow_start));
        let percent = (100 * now).div_ceil(u64::from(weight.max(1)));
        Some(u32::try_from(percent).unwrap_or(100))
    }

    /// Time into a ramp still running; a finished one is forgotten.
    fn elapsed(&self, slow_start: Duration) -> Option<Duration> {
        let started = self.started.load(Relaxed);
        if started == 0 {
            return None;
        }
        let elapsed = Duration::from_millis((now_millis() + 1).saturating_sub(started));
        if elapsed >= slow_start {
            // Unless a new ramp began meanwhile.
            let _ = self.started.compare_exchange(started, 0, Relaxed, Relaxed);
            return None;
        }
        Some(elapsed)
    }
}

/// The weight of a server `elapsed` into a ramp of `slow_start` towards `weight`, in steps of
/// a twentieth of the ramp (at least a second): at least 1 (a server back takes some traffic
/// at once, as HAProxy's), rounded up, `weight` once the ramp is over. A weight of 0 stays 0.
pub(crate) fn ramped(weight: u32, elapsed: Duration, slow_start: Duration) -> u32 {
    if weight == 0 || elapsed >= slow_start {
        return weight;
    }
    let step = (slow_start.as_millis() / 20).max(1000);
    let stepped = elapsed.as_millis() / step * step;
    let share = (u128::from(weight) * stepped).div_ceil(slow_start.as_millis().max(1));
    u32::try_from(share).unwrap_or(weight).clamp(1, weight)
}

fn now_millis() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn the_weight_grows_in_twentieths_from_one_to_full() {
        assert_eq!(
            ramped(100, Duration::ZERO, MINUTE),
            1,
            "some traffic at once"
        );
        assert_eq!(
            ramped(100, Duration::from_millis(2999), MINUTE),
            1,
            "until the first step"
        );
        assert_eq!(ramped(100, Duration::from_secs(3), MINUTE), 5);
        assert_eq!(ramped(100, Duration::from_secs(31), MINUTE), 50);
        assert_eq!(ramped(3, Duration::from_secs(21), MINUTE), 2, "rounded up");
        assert_eq!(ramped(100, MINUTE, MINUTE), 100);
        assert_eq!(ramped(100, 2 * MINUTE, MINUTE), 100);
        assert_eq!(
            ramped(0, Duration::from_secs(30), MINUTE),
            0,
            "weight 0 takes none"
        );
        // A short ramp moves each second, not each 50 ms.
        let ten = Duration::from_secs(10);
        assert_eq!(ramped(10, Duration::from_millis(900), ten), 1);
        assert_eq!(ramped(10, Duration::from_millis(1000), ten), 1);
        assert_eq!(ramped(10, Duration::from_millis(2000), ten), 2);
    }

    #[test]
    fn a_ramp_runs_from_its_start_and_ends_forgotten() {
        let ramp = Ramp::default();
        assert_eq!(ramp.weight(100, MINUTE), 100, "no ramp");
        assert_eq!(ramp.throttle(100, MINUTE), None);
        ramp.start();
        assert_eq!(ramp.weight(100, MINUTE), 1);
        assert_eq!(ramp.throttle(100, MINUTE), Some(1));
        assert_eq!(
            ramp.throttle(3, MINUTE),
            Some(34),
            "weight 1 of 3 is 34 %, rounded up"
        );
        assert_eq!(ramp.weight(100, Duration::ZERO), 100, "over");
        assert_eq!(ramp.weight(100, MINUTE), 100, "forgotten once over");
        ramp.start();
        ramp.cancel();
        assert_eq!(ramp.weight(100, MINUTE), 100);
    }
}
