//! The RFC timer arithmetic: Skew_Time and Master_Down_Interval (RFC 3768 §6.1, RFC 5798 §6.1).
//!
//! Both are computed in whole microseconds, rounding down, exactly as keepalived's
//! `VRRP_TIMER_SKEW` does, so a Fulcrum backup and a keepalived backup of the same priority time
//! out at the same instant. The RFCs' own units (1/256 s in v2, centiseconds in v3) divide evenly
//! for the usual values: priority 100 gives 156/256 s = 0.609375 s in v2, and the same with a 1 s
//! (100 cs) interval in v3.

use std::time::Duration;

use super::Version;

/// Skew_Time: how much longer a backup of `priority` waits than the highest-priority one.
///
/// - v2: `(256 - priority) / 256` seconds, whatever the interval.
/// - v3: `(256 - priority) * Master_Adver_Interval / 256`, so it scales with the interval the
///   current master advertises.
pub fn skew_time(version: Version, priority: u8, master_adver_interval: Duration) -> Duration {
    let weight = 256 - u128::from(priority);
    let unit = match version {
        Version::V2 => 1_000_000,
        Version::V3 => master_adver_interval.as_micros(),
    };
    micros(weight * unit / 256)
}

/// Master_Down_Interval: `3 * Master_Adver_Interval + Skew_Time`, how long a backup waits for an
/// advert before taking over. In v2 Master_Adver_Interval is the local Advertisement_Interval.
pub fn master_down_interval(
    version: Version,
    priority: u8,
    master_adver_interval: Duration,
) -> Duration {
    master_adver_interval
        .saturating_mul(3)
        .saturating_add(skew_time(version, priority, master_adver_interval))
}

fn micros(us: u128) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn us(us: u64) -> Duration {
        Duration::from_micros(us)
    }

    #[test]
    fn v2_skew_is_a_256th_of_a_second_per_priority_step() {
        let s = Duration::from_secs(1);
        assert_eq!(skew_time(Version::V2, 100, s), us(609_375));
        assert_eq!(skew_time(Version::V2, 200, s), us(218_750));
        assert_eq!(skew_time(Version::V2, 254, s), us(7_812));
        // 1/256 s = 3906.25 µs, rounded down as keepalived does.
        assert_eq!(skew_time(Version::V2, 255, s), us(3_906));
        assert_eq!(skew_time(Version::V2, 1, s), us(996_093));
        // Independent of the interval in v2.
        assert_eq!(
            skew_time(Version::V2, 100, Duration::from_secs(5)),
            us(609_375)
        );
    }

    #[test]
    fn v2_master_down_interval() {
        assert_eq!(
            master_down_interval(Version::V2, 100, Duration::from_secs(1)),
            us(3_609_375)
        );
        assert_eq!(
            master_down_interval(Version::V2, 100, Duration::from_secs(3)),
            us(9_609_375)
        );
        assert_eq!(
            master_down_interval(Version::V2, 255, Duration::from_secs(1)),
            us(3_003_906)
        );
    }

    #[test]
    fn v3_skew_scales_with_the_master_interval_in_centiseconds() {
        let cs = |n: u64| Duration::from_millis(10 * n);
        assert_eq!(skew_time(Version::V3, 100, cs(100)), us(609_375));
        assert_eq!(skew_time(Version::V3, 200, cs(50)), us(109_375));
        assert_eq!(skew_time(Version::V3, 100, cs(50)), us(304_687)); // 304 687.5 rounded down
        assert_eq!(skew_time(Version::V3, 1, cs(1)), us(9_960)); // 9 960.9375
        assert_eq!(skew_time(Version::V3, 255, cs(1)), us(39)); // never zero
        assert_eq!(skew_time(Version::V3, 100, cs(4095)), us(24_953_906));
    }

    #[test]
    fn v3_master_down_interval() {
        let cs = |n: u64| Duration::from_millis(10 * n);
        assert_eq!(
            master_down_interval(Version::V3, 100, cs(100)),
            us(3_609_375)
        );
        assert_eq!(
            master_down_interval(Version::V3, 200, cs(50)),
            us(1_609_375)
        );
        assert_eq!(
            master_down_interval(Version::V3, 100, cs(200)),
            us(7_218_750)
        );
    }

    #[test]
    fn absurd_intervals_saturate_instead_of_panicking() {
        assert_eq!(
            master_down_interval(Version::V3, 1, Duration::MAX),
            Duration::MAX
        );
        assert_eq!(skew_time(Version::V3, 1, Duration::MAX), us(u64::MAX));
    }
}
