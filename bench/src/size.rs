//! Byte sizes as people write them on a command line or in a URL: `64`, `16k`, `1KiB`, `4MiB`.
//!
//! Every unit is binary (`k` = `kB` = `KiB` = 1024), as HAProxy reads sizes, so a size means the
//! same thing here as in the configuration being benchmarked. Units are case-insensitive and may be
//! separated from the number by spaces.

/// Parses `64`, `64B`, `16k`, `1KiB`, `4 MiB` or `1GiB` into a number of bytes.
pub fn parse_size(text: &str) -> Result<usize, ParseSizeError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseSizeError::Empty);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(ParseSizeError::NoNumber(text.to_owned()));
    }
    let multiplier = unit_multiplier(unit.trim_start())
        .ok_or_else(|| ParseSizeError::UnknownUnit(unit.trim_start().to_owned()))?;
    digits
        .parse::<usize>()
        .ok()
        .and_then(|number| number.checked_mul(multiplier))
        .ok_or_else(|| ParseSizeError::TooLarge(text.to_owned()))
}

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSizeError {
    /// Nothing but spaces was given.
    #[error("size is empty")]
    Empty,
    /// The text does not start with a decimal number.
    #[error("size {0:?} does not start with a number")]
    NoNumber(String),
    /// The number is followed by something other than a known unit.
    #[error("unknown size unit {0:?} (use B, KiB, MiB or GiB)")]
    UnknownUnit(String),
    /// The size does not fit in `usize`.
    #[error("size {0:?} is too large")]
    TooLarge(String),
}

fn unit_multiplier(unit: &str) -> Option<usize> {
    const UNITS: [(&[&str], usize); 4] = [
        (&["", "b"], 1),
        (&["k", "kb", "kib"], 1 << 10),
        (&["m", "mb", "mib"], 1 << 20),
        (&["g", "gb", "gib"], 1 << 30),
    ];
    UNITS.iter().find_map(|(names, multiplier)| {
        names
            .iter()
            .any(|name| name.eq_ignore_ascii_case(unit))
            .then_some(*multiplier)
    })
}

#[cfg(test)]
mod tests {
    use super::{ParseSizeError, parse_size};

    #[test]
    fn plain_numbers_are_bytes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size(" 64B "), Ok(64));
    }

    #[test]
    fn units_are_binary_and_case_insensitive() {
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("16k"), Ok(16 * 1024));
        assert_eq!(parse_size("2 kB"), Ok(2048));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
    }

    #[test]
    fn rejects_what_is_not_a_size() {
        assert_eq!(parse_size(""), Err(ParseSizeError::Empty));
        assert_eq!(
            parse_size("KiB"),
            Err(ParseSizeError::NoNumber("KiB".into()))
        );
        assert_eq!(parse_size("-1"), Err(ParseSizeError::NoNumber("-1".into())));
        assert_eq!(
            parse_size("1.5MiB"),
            Err(ParseSizeError::UnknownUnit(".5MiB".into()))
        );
        assert_eq!(
            parse_size("1TiB"),
            Err(ParseSizeError::UnknownUnit("TiB".into()))
        );
        assert!(matches!(
            parse_size("99999999999999999999999"),
            Err(ParseSizeError::TooLarge(_))
        ));
        assert!(matches!(
            parse_size(&format!("{}GiB", usize::MAX)),
            Err(ParseSizeError::TooLarge(_))
        ));
    }
}
