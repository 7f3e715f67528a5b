//! Durations and sizes with units, as users write them in the config: `"250ms"`, `"2s"`, `"5m"`,
//! `"512KiB"`, `"10GiB"`.
//!
//! A bare number is refused: `timeout = 5` could mean seconds or milliseconds, and a load balancer
//! guessing wrong is an outage.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, de};

/// A span of time read from a string with a unit (humantime's grammar: `250ms`, `2s`, `1m 30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The longest duration a config may give: 100 years, of humantime's 365.25 days (so that
    /// `"100y"` itself is accepted).
    pub const MAX: Self = Self::from_secs(100 * 31_557_600);

    /// `secs` seconds, for defaults.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// `ms` milliseconds, for defaults.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// The std duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// True for `"0s"`, which several keys read as "off".
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "duration `{s}` has no unit: write e.g. \"{trimmed}s\" or \"{trimmed}ms\""
            ));
        }
        let parsed = humantime::parse_duration(trimmed).map_err(|e| {
            format!("invalid duration `{s}` ({e}): expected a number with a unit, e.g. \"250ms\", \"2s\", \"5m\"")
        })?;
        if parsed > Self::MAX.0 {
            // A clock reading plus billions of years overflows, and panics, where the
            // timeout is armed.
            return Err(format!(
                "duration `{s}` is longer than 100 years, the longest accepted"
            ));
        }
        Ok(Self(parsed))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UnitVisitor::<Self>::new(
            "a duration string with a unit, e.g. \"2s\"",
        ))
    }
}

/// A number of bytes read from a string with a unit: `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000),
/// `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(pub u64);

impl Size {
    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let bad = || {
            format!(
                "invalid size `{s}`: expected a number with a unit, e.g. \"512KiB\", \"10GiB\", \"64B\""
            )
        };
        if digits.is_empty() {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let multiplier: u64 = match unit.trim() {
            "" => {
                return Err(format!(
                    "size `{s}` has no unit: write e.g. \"{digits}B\" or \"{digits}KiB\""
                ));
            }
            "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return Err(bad()),
        };
        n.checked_mul(multiplier)
            .map(Self)
            .ok_or_else(|| format!("size `{s}` is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (scale, unit) in UNITS {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UnitVisitor::<Self>::new(
            "a size string with a unit, e.g. \"512KiB\"",
        ))
    }
}

/// Reads a unit value from a string and explains why a bare number is refused.
struct UnitVisitor<T> {
    expecting: &'static str,
    marker: std::marker::PhantomData<T>,
}

impl<T> UnitVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        Self {
            expecting,
            marker: std::marker::PhantomData,
        }
    }
}

impl<T: FromStr<Err = String>> de::Visitor<'_> for UnitVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Err(E::custom(format!(
            "{v} has no unit: write it as a string with a unit, e.g. \"{v}s\" or \"{v}KiB\""
        )))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_i64(v as i64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!("250ms".parse::<Duration>().unwrap().get().as_millis(), 250);
        assert_eq!("2s".parse::<Duration>().unwrap(), Duration::from_secs(2));
        assert_eq!("5m".parse::<Duration>().unwrap(), Duration::from_secs(300));
        assert_eq!(
            "1m 30s".parse::<Duration>().unwrap(),
            Duration::from_secs(90)
        );
        assert!("5".parse::<Duration>().unwrap_err().contains("no unit"));
        assert!(
            "5x".parse::<Duration>()
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!("".parse::<Duration>().is_err());
    }

    // Input: a timeout of 300 billion years, which overflowed `Instant + d` (a panic) where it
    // was armed; then exactly 100 years, and 101. Output: only 100 years is accepted.
    #[test]
    fn durations_longer_than_a_century_are_refused() {
        let error = "300000000000y".parse::<Duration>().unwrap_err();
        assert!(error.contains("longer than 100 years"), "{error}");
        assert_eq!("100y".parse::<Duration>().unwrap(), Duration::MAX);
        assert!("101y".parse::<Duration>().is_err());
        let now = std::time::Instant::now();
        assert!(now.checked_add(Duration::MAX.get()).is_some());
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!("512KiB".parse::<Size>().unwrap().bytes(), 512 * 1024);
        assert_eq!("10GiB".parse::<Size>().unwrap().bytes(), 10 << 30);
        assert_eq!("3MB".parse::<Size>().unwrap().bytes(), 3_000_000);
        assert_eq!("64B".parse::<Size>().unwrap().bytes(), 64);
        assert!("64".parse::<Size>().unwrap_err().contains("no unit"));
        assert!("12 parsecs".parse::<Size>().is_err());
        assert!(
            "99999999999TiB"
                .parse::<Size>()
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(Size(512 * 1024).to_string(), "512KiB");
    }

    #[derive(Debug, Deserialize)]
    struct Holder {
        #[allow(dead_code, reason = "only its parse result is tested")]
        d: Duration,
    }

    #[test]
    fn serde_refuses_bare_numbers_with_a_hint() {
        let err = toml::from_str::<Holder>("d = 5").unwrap_err().to_string();
        assert!(err.contains("no unit"), "{err}");
        let err = toml::from_str::<Holder>("d = \"5 fortnights\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid duration"), "{err}");
    }
}
