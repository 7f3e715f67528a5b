//! Calendar dates in UTC without a date library (Howard Hinnant's `civil_from_days`): for log
//! lines, report files and anything else that shows a wall-clock date.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    /// Now, by the system clock. A clock before 1970 reads as the epoch.
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }

    /// The UTC time of `t`, to the second.
    pub fn from_system(t: SystemTime) -> Self {
        Self::from_unix(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    /// The UTC time `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: u64) -> Self {
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        let rest = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        // `rest` is below 86 400, so each part fits in u32.
        Self {
            year,
            month,
            day,
            hour: (rest / 3600) as u32,
            minute: (rest % 3600 / 60) as u32,
            second: (rest % 60) as u32,
        }
    }

    /// `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// RFC 3339, `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{}T{:02}:{:02}:{:02}Z",
            self.date(),
            self.hour,
            self.minute,
            self.second
        )
    }
}

/// `(year, month, day)` of the day `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::UtcTime;

    #[test]
    fn known_dates() {
        assert_eq!(UtcTime::from_unix(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            UtcTime::from_unix(951_782_400).rfc3339(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            UtcTime::from_unix(1_795_262_956).rfc3339(),
            "2026-11-21T12:09:16Z"
        );
        assert_eq!(UtcTime::from_unix(1_795_262_956).date(), "2026-11-21");
    }
}
