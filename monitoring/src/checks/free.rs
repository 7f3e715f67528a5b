//! Free-space thresholds as check_disk and check_swap write them: `20%` (percent free) or an
//! amount (`100`, `1.5GB`, `100MiB`) in binary units, as both plugins count (`MB` is MiB).

/// A free-space threshold: alert when less than this is free.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Free {
    Percent(f64),
    Bytes(u64),
}

/// A unit of size: how many bytes, and how check_disk prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub bytes: u64,
    pub name: &'static str,
}

pub const BYTES: Unit = Unit {
    bytes: 1,
    name: "B",
};
pub const MIB: Unit = Unit {
    bytes: 1 << 20,
    name: "MiB",
};

impl Unit {
    /// `bytes`, `B`, `kB`/`KiB`/`K`, `MB`/`MiB`/`M`, `GB`, `TB`, `PB`, any case.
    pub fn parse(text: &str) -> Option<Self> {
        let (bytes, name) = match text.to_ascii_lowercase().as_str() {
            "b" | "bytes" => (1, "B"),
            "k" | "kb" | "kib" => (1 << 10, "KiB"),
            "m" | "mb" | "mib" => (1 << 20, "MiB"),
            "g" | "gb" | "gib" => (1 << 30, "GiB"),
            "t" | "tb" | "tib" => (1 << 40, "TiB"),
            "p" | "pb" | "pib" => (1 << 50, "PiB"),
            _ => return None,
        };
        Some(Self { bytes, name })
    }
}

impl Free {
    /// Parses `20%`, or an amount in its own unit or else in `default`.
    pub fn parse(text: &str, default: Unit) -> Result<Self, String> {
        let split = text
            .find(|c: char| c.is_ascii_alphabetic() || c == '%')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value = match number.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => v,
            _ => {
                return Err(format!(
                    "`{text}` is not a free space (`20%`, `100`, `100MB`)"
                ));
            }
        };
        if unit == "%" {
            return if value <= 100.0 {
                Ok(Self::Percent(value))
            } else {
                Err(format!("`{text}`: a percentage is at most 100"))
            };
        }
        let unit = if unit.is_empty() {
            default
        } else {
            Unit::parse(unit).ok_or_else(|| format!("`{text}`: unknown unit `{unit}`"))?
        };
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a size; `as` saturates at u64::MAX and the value is not negative"
        )]
        let bytes = (value * unit.bytes as f64) as u64;
        Ok(Self::Bytes(bytes))
    }

    /// Whether `free` bytes out of `total` is below the threshold, when `free_percent` is the
    /// percentage the plugin shows.
    pub fn below(self, free: u64, free_percent: f64) -> bool {
        match self {
            Self::Percent(p) => free_percent < p,
            Self::Bytes(b) => free < b,
        }
    }

    /// The threshold in bytes of a space of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a share of a size, not negative"
            )]
            Self::Percent(p) => (total as f64 * p / 100.0) as u64,
            Self::Bytes(b) => b,
        }
    }
}

/// `part` of `total` in percent, rounded up as df and check_disk round it; 0 of nothing.
pub fn percent_ceil(part: u64, total: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    let scaled = u128::from(part) * 100;
    let total = u128::from(total);
    let pct = scaled.div_ceil(total);
    u64::try_from(pct).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_percentages() {
        assert_eq!(Free::parse("20%", MIB), Ok(Free::Percent(20.0)));
        assert_eq!(Free::parse("100", MIB), Ok(Free::Bytes(100 << 20)));
        assert_eq!(Free::parse("100", BYTES), Ok(Free::Bytes(100)));
        assert_eq!(Free::parse("2GB", BYTES), Ok(Free::Bytes(2 << 30)));
        assert_eq!(Free::parse("1.5k", BYTES), Ok(Free::Bytes(1536)));
        assert_eq!(Free::parse("3TiB", MIB), Ok(Free::Bytes(3 << 40)));
        for bad in ["", "%", "x", "-1", "101%", "10XB", "10%%", "1e999"] {
            assert!(Free::parse(bad, MIB).is_err(), "{bad}");
        }
    }

    #[test]
    fn below() {
        assert!(Free::Percent(20.0).below(0, 19.0));
        assert!(!Free::Percent(20.0).below(0, 20.0));
        assert!(Free::Bytes(10).below(9, 100.0));
        assert!(!Free::Bytes(10).below(10, 0.0));
        assert_eq!(Free::Percent(20.0).bytes(1000), 200);
    }

    #[test]
    fn percent_rounds_up() {
        assert_eq!(percent_ceil(0, 10), 0);
        assert_eq!(percent_ceil(1, 1000), 1);
        assert_eq!(percent_ceil(1000, 1000), 100);
        assert_eq!(percent_ceil(5, 0), 0);
        assert_eq!(percent_ceil(u64::MAX, u64::MAX), 100);
    }
}
