//! HAProxy's `slowstart`: a server that comes back UP (from DOWN or MAINT) is not handed its
//! whole share at once, which a cold cache or a JIT still warming up might not bear, but a
//! weight growing with the time since, from 1 to its full weight at the end of `slow_start`.
//!
//! HAProxy computes the step each second (`server_recalc_eweight`); here the weight is worked
//! out at each pick, in milliseconds. It is an integer, so a balancer's schedule changes at most
//! `weight` times over the ramp.

use std::time::Duration;

/// The weight of a server `elapsed` into a ramp of `slow_start` towards `weight`: at least 1
/// (a server back UP takes some traffic at once, as HAProxy's), rounded up, `weight` once the
/// ramp is over. A weight of 0 stays 0.
pub(crate) fn ramped(weight: u32, elapsed: Duration, slow_start: Duration) -> u32 {
    if weight == 0 || elapsed >= slow_start {
        return weight;
    }
    let share = (u128::from(weight) * elapsed.as_millis()).div_ceil(slow_start.as_millis().max(1));
    u32::try_from(share).unwrap_or(weight).clamp(1, weight)
}

/// The part of its weight a server `elapsed` into the ramp gets, in percent (HAProxy's
/// `throttle` stats column); `None` once the ramp is over.
pub(crate) fn throttle(elapsed: Duration, slow_start: Duration) -> Option<u32> {
    (elapsed < slow_start).then(|| {
        let percent = elapsed.as_millis() * 100 / slow_start.as_millis().max(1);
        u32::try_from(percent).unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn the_weight_grows_from_one_to_full_over_the_ramp() {
        assert_eq!(
            ramped(100, Duration::ZERO, MINUTE),
            1,
            "some traffic at once"
        );
        assert_eq!(ramped(100, Duration::from_secs(15), MINUTE), 25);
        assert_eq!(ramped(100, Duration::from_secs(30), MINUTE), 50);
        assert_eq!(
            ramped(3, Duration::from_secs(1), MINUTE),
            1,
            "rounded up, at least 1"
        );
        assert_eq!(ramped(3, Duration::from_secs(21), MINUTE), 2);
        assert_eq!(ramped(100, MINUTE, MINUTE), 100);
        assert_eq!(ramped(100, 2 * MINUTE, MINUTE), 100);
        assert_eq!(
            ramped(0, Duration::from_secs(30), MINUTE),
            0,
            "weight 0 takes none"
        );
    }

    #[test]
    fn throttle_is_the_share_while_ramping() {
        assert_eq!(throttle(Duration::ZERO, MINUTE), Some(0));
        assert_eq!(throttle(Duration::from_secs(45), MINUTE), Some(75));
        assert_eq!(throttle(MINUTE, MINUTE), None);
    }
}
