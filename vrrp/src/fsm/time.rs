//! The clock the state machine is driven by: a point in time given as the [`Duration`] since an
//! epoch the caller picks, so the I/O layer can feed it `tokio::time::Instant`s and tests can feed
//! it plain numbers.

use std::{ops::Add, time::Duration};

/// A point in time, as the [`Duration`] since an epoch chosen by the caller (for instance the
/// `tokio::time::Instant` at which the I/O layer started). Only differences between two `Time`s
/// mean anything; arithmetic saturates instead of panicking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(Duration);

impl Time {
    /// The epoch itself.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// The point `since_epoch` after the epoch.
    pub const fn from_since_epoch(since_epoch: Duration) -> Self {
        Time(since_epoch)
    }

    /// The point `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Time(Duration::from_millis(ms))
    }

    /// The point `us` microseconds after the epoch.
    pub const fn from_micros(us: u64) -> Self {
        Time(Duration::from_micros(us))
    }

    /// How long after the epoch this point is.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// How long after `earlier` this point is, zero if it is not after it.
    pub fn saturating_duration_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// `d` earlier, or the epoch.
    pub fn saturating_sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(d))
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    /// `d` later; saturates at the largest representable time, so a hostile interval from the
    /// network cannot make the state machine panic.
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d))
    }
}

impl From<Duration> for Time {
    fn from(since_epoch: Duration) -> Self {
        Time(since_epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_millis(1500);
        assert_eq!(t + Duration::from_micros(1), Time::from_micros(1_500_001));
        assert_eq!(t.saturating_sub(Duration::from_secs(2)), Time::ZERO);
        assert_eq!(
            Time::from_since_epoch(Duration::MAX) + Duration::from_secs(1),
            Time::from(Duration::MAX)
        );
        assert_eq!(
            t.saturating_duration_since(Time::from_millis(500)),
            Duration::from_secs(1)
        );
        assert_eq!(Time::ZERO.saturating_duration_since(t), Duration::ZERO);
    }
}
