//! Thresholds in monitoring-plugins' range syntax (the Nagios plugin guidelines' "threshold
//! format"), so `-w`/`-c` mean here what they mean to every plugin an operator already runs.
//!
//! `[@]start:end`: `start` defaults to 0 and may be `~` (negative infinity), an empty `end` is
//! infinity, a lone number is `0:number`. The check alerts when the value is outside
//! `start..=end`, or inside it with `@`:
//!
//! | range     | alert when          |
//! |-----------|---------------------|
//! | `10`      | < 0 or > 10         |
//! | `10:`     | < 10                |
//! | `~:10`    | > 10                |
//! | `10:20`   | < 10 or > 20        |
//! | `@10:20`  | >= 10 and <= 20     |

use std::fmt;

use super::State;

/// One range, e.g. `10:20` or `@10:20`.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// `None` is negative infinity (`~`).
    start: Option<f64>,
    /// `None` is infinity (nothing after the `:`).
    end: Option<f64>,
    /// `@`: alert inside the range rather than outside.
    inside: bool,
}

/// Why a range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("`{0}` is not a range (empty)")]
    Empty(String),
    #[error("`{text}` is not a range: `{part}` is not a number")]
    NotANumber { text: String, part: String },
    #[error("`{0}` is not a range: its start is greater than its end")]
    Reversed(String),
}

impl Range {
    /// Parses the guidelines' syntax. Unlike C's `strtod`, trailing garbage is an error, so a
    /// typo in a threshold is reported rather than read as a different number.
    pub fn parse(text: &str) -> Result<Self, RangeError> {
        let (inside, body) = match text.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if body.is_empty() {
            return Err(RangeError::Empty(text.to_owned()));
        }
        let number = |part: &str| -> Result<f64, RangeError> {
            match part.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(RangeError::NotANumber {
                    text: text.to_owned(),
                    part: part.to_owned(),
                }),
            }
        };
        let (start, end) = match body.split_once(':') {
            Some((start, end)) => {
                let start = match start {
                    "~" => None,
                    "" => Some(0.0),
                    s => Some(number(s)?),
                };
                let end = match end {
                    "" => None,
                    e => Some(number(e)?),
                };
                (start, end)
            }
            None => (Some(0.0), Some(number(body)?)),
        };
        if let (Some(s), Some(e)) = (start, end)
            && s > e
        {
            return Err(RangeError::Reversed(text.to_owned()));
        }
        Ok(Self { start, end, inside })
    }

    /// `value > limit`: the range `limit` for a value that cannot be negative (a count, a
    /// time), as the plugins whose thresholds are plain numbers compare.
    pub fn above(limit: f64) -> Self {
        Self {
            start: Some(0.0),
            end: Some(limit),
            inside: false,
        }
    }

    /// Whether `value` raises the alert.
    pub fn alerts(&self, value: f64) -> bool {
        let above_start = self.start.is_none_or(|s| s <= value);
        let below_end = self.end.is_none_or(|e| value <= e);
        let within = above_start && below_end;
        within == self.inside
    }
}

/// The guidelines' normal form, for perfdata's warn and crit fields: `0:10` prints as `10`.
impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inside {
            f.write_str("@")?;
        }
        match (self.start, self.end) {
            (None, _) => f.write_str("~:")?,
            (Some(s), None) => write!(f, "{s}:")?,
            (Some(s), Some(_)) if s != 0.0 => write!(f, "{s}:")?,
            (Some(_), Some(_)) => {}
        }
        if let Some(e) = self.end {
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A check's `-w` and `-c`: CRITICAL when the critical range alerts, else WARNING when the
/// warning range does (`get_status` in monitoring-plugins' `utils_base.c`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub warning: Option<Range>,
    pub critical: Option<Range>,
}

impl Thresholds {
    /// Parses both ranges; the error names the option (`-w`, `-c`) whose range is bad.
    pub fn parse(warning: Option<&str>, critical: Option<&str>) -> Result<Self, String> {
        Self::parse_as(("-w", warning), ("-c", critical))
    }

    /// As [`Thresholds::parse`], for a pair of options with other names (`-W`, `-C`).
    pub fn parse_as(
        (warning_flag, warning): (&str, Option<&str>),
        (critical_flag, critical): (&str, Option<&str>),
    ) -> Result<Self, String> {
        let one = |flag: &str, text: Option<&str>| {
            text.map(Range::parse)
                .transpose()
                .map_err(|e| format!("{flag}: {e}"))
        };
        Ok(Self {
            warning: one(warning_flag, warning)?,
            critical: one(critical_flag, critical)?,
        })
    }

    /// The state `value` is in.
    pub fn state(&self, value: f64) -> State {
        if self.critical.as_ref().is_some_and(|r| r.alerts(value)) {
            State::Critical
        } else if self.warning.as_ref().is_some_and(|r| r.alerts(value)) {
            State::Warning
        } else {
            State::Ok
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn alerts(range: &str, value: f64) -> bool {
        Range::parse(range).unwrap().alerts(value)
    }

    // The guidelines' table, row by row.
    #[test]
    fn guideline_examples() {
        // `10`: < 0 or > 10.
        assert!(alerts("10", -0.5));
        assert!(!alerts("10", 0.0));
        assert!(!alerts("10", 10.0));
        assert!(alerts("10", 10.1));
        // `10:`: < 10.
        assert!(alerts("10:", 9.9));
        assert!(!alerts("10:", 10.0));
        assert!(!alerts("10:", 1e12));
        // `~:10`: > 10.
        assert!(!alerts("~:10", -1e12));
        assert!(!alerts("~:10", 10.0));
        assert!(alerts("~:10", 10.01));
        // `10:20`: < 10 or > 20.
        assert!(alerts("10:20", 9.0));
        assert!(!alerts("10:20", 10.0));
        assert!(!alerts("10:20", 20.0));
        assert!(alerts("10:20", 21.0));
        // `@10:20`: >= 10 and <= 20.
        assert!(!alerts("@10:20", 9.0));
        assert!(alerts("@10:20", 10.0));
        assert!(alerts("@10:20", 20.0));
        assert!(!alerts("@10:20", 21.0));
    }

    #[test]
    fn bad_ranges_are_errors() {
        assert!(matches!(Range::parse("10:5"), Err(RangeError::Reversed(_))));
        assert!(matches!(
            Range::parse("abc"),
            Err(RangeError::NotANumber { .. })
        ));
        for bad in [
            "", "@", "1:2:3", "10x", "~", "x:10", "10:y", "inf", "nan:", " 10", "@@1",
        ] {
            assert!(Range::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Range::parse("10:5").unwrap_err().to_string(),
            "`10:5` is not a range: its start is greater than its end"
        );
    }

    #[test]
    fn normal_form() {
        for (text, shown) in [
            ("10", "10"),
            ("0:10", "10"),
            ("10:", "10:"),
            ("~:10", "~:10"),
            ("@10:20", "@10:20"),
            ("1.5:2.25", "1.5:2.25"),
            (":", "0:"),
            ("~:", "~:"),
            ("-5:-1", "-5:-1"),
        ] {
            assert_eq!(Range::parse(text).unwrap().to_string(), shown, "{text}");
        }
    }

    #[test]
    fn critical_wins_over_warning() {
        let t = Thresholds::parse(Some("10"), Some("20")).unwrap();
        assert_eq!(t.state(5.0), State::Ok);
        assert_eq!(t.state(15.0), State::Warning);
        assert_eq!(t.state(25.0), State::Critical);
        assert_eq!(Thresholds::default().state(1e9), State::Ok);
        assert_eq!(
            Thresholds::parse(Some("x"), None).unwrap_err(),
            "-w: `x` is not a range: `x` is not a number"
        );
    }

    /// A number as a user writes it; small integers and halves so that endpoints are hit.
    fn number() -> impl Strategy<Value = f64> {
        (-40i32..40).prop_map(|n| f64::from(n) / 2.0)
    }

    proptest! {
        // The definition read straight from the guidelines: a range is `[@][start:]end`, start
        // 0 when left out, `~` for negative infinity, an empty end for infinity; the alert is
        // raised when the value is outside start..end (endpoints included in the range), or
        // inside it when the range begins with `@`.
        #[test]
        fn alerts_as_the_guidelines_define(
            start in proptest::option::of(proptest::option::of(number())),
            end in proptest::option::of(number()),
            inside in any::<bool>(),
            value in number(),
        ) {
            // start: None = not written, Some(None) = `~`, Some(Some(n)) = n.
            let mut text = String::new();
            if inside {
                text.push('@');
            }
            match start {
                None => {}
                Some(None) => text.push_str("~:"),
                Some(Some(s)) => text.push_str(&format!("{s}:")),
            }
            if let Some(e) = end {
                text.push_str(&format!("{e}"));
            }
            let low = match start {
                None => Some(0.0),
                Some(s) => s,
            };
            // A lone `start` with no colon is not a form; neither is nothing at all.
            let well_formed = end.is_some() || start.is_some();
            let ordered = match (low, end) {
                (Some(l), Some(e)) => l <= e,
                _ => true,
            };
            let parsed = Range::parse(&text);
            if !well_formed || !ordered {
                prop_assert!(parsed.is_err(), "{text} parsed");
            } else {
                let range = parsed.unwrap();
                let outside = low.is_some_and(|l| value < l) || end.is_some_and(|e| value > e);
                let expected = if inside { !outside } else { outside };
                prop_assert_eq!(range.alerts(value), expected, "{} at {}", text, value);
                // The normal form means the same.
                let again = Range::parse(&range.to_string()).unwrap();
                prop_assert_eq!(again.alerts(value), expected);
            }
        }
    }
}
