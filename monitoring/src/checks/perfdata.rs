//! Performance data as the Nagios plugin guidelines define it, the part of a plugin's output
//! after `|` that graphers read: `'label'=value[UOM];[warn];[crit];[min];[max]`.

use std::fmt;

use super::range::{Range, Thresholds};

/// The units of measure the guidelines allow; an enum so no check can print another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uom {
    /// A plain number (a count of things).
    None,
    Seconds,
    Millis,
    Micros,
    Percent,
    Bytes,
    Kilobytes,
    Megabytes,
    Terabytes,
    /// A continuous counter (bytes sent since start, ...), graphed as a rate.
    Counter,
}

impl Uom {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Seconds => "s",
            Self::Millis => "ms",
            Self::Micros => "us",
            Self::Percent => "%",
            Self::Bytes => "B",
            Self::Kilobytes => "KB",
            Self::Megabytes => "MB",
            Self::Terabytes => "TB",
            Self::Counter => "c",
        }
    }
}

/// One `label=value` item. Numbers are kept as text so each check prints them with the
/// precision its plugin uses (`load1=0.900`, `time=0.000148s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Perf {
    label: String,
    value: String,
    uom: Uom,
    warn: String,
    crit: String,
    min: String,
    max: String,
}

impl Perf {
    pub fn new(label: &str, value: impl fmt::Display) -> Self {
        Self {
            label: label.to_owned(),
            value: value.to_string(),
            uom: Uom::None,
            warn: String::new(),
            crit: String::new(),
            min: String::new(),
            max: String::new(),
        }
    }

    pub fn uom(mut self, uom: Uom) -> Self {
        self.uom = uom;
        self
    }

    pub fn warn(mut self, warn: impl fmt::Display) -> Self {
        self.warn = warn.to_string();
        self
    }

    pub fn crit(mut self, crit: impl fmt::Display) -> Self {
        self.crit = crit.to_string();
        self
    }

    pub fn min(mut self, min: impl fmt::Display) -> Self {
        self.min = min.to_string();
        self
    }

    pub fn max(mut self, max: impl fmt::Display) -> Self {
        self.max = max.to_string();
        self
    }

    /// Warn and crit from a check's ranges, in the guidelines' normal form.
    pub fn thresholds(self, thresholds: &Thresholds) -> Self {
        let shown = |r: &Option<Range>| r.as_ref().map(Range::to_string).unwrap_or_default();
        let (warn, crit) = (shown(&thresholds.warning), shown(&thresholds.critical));
        self.warn(warn).crit(crit)
    }
}

impl fmt::Display for Perf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The guidelines: quotes are needed around a label with spaces, and a quote inside
        // is written twice. `=` is quoted too, so a reader splitting at the first `=` outside
        // quotes still finds the value.
        let label = &self.label;
        if label.contains([' ', '=', '\'']) || label.is_empty() {
            write!(f, "'{}'", label.replace('\'', "''"))?;
        } else {
            f.write_str(label)?;
        }
        write!(f, "={}{}", self.value, self.uom.as_str())?;
        // Trailing unfilled fields may be dropped, the guidelines say.
        let fields = [&self.warn, &self.crit, &self.min, &self.max];
        let used = fields
            .iter()
            .rposition(|s| !s.is_empty())
            .map_or(0, |i| i + 1);
        for field in &fields[..used] {
            write!(f, ";{field}")?;
        }
        Ok(())
    }
}

/// Items separated by spaces, as they follow the `|`.
pub fn join(items: &[Perf]) -> String {
    items
        .iter()
        .map(Perf::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn fields_and_trailing_empties() {
        let p = Perf::new("load1", "0.900")
            .warn("15.000")
            .crit("30.000")
            .min(0);
        assert_eq!(p.to_string(), "load1=0.900;15.000;30.000;0");
        assert_eq!(Perf::new("users", 3).to_string(), "users=3");
        let p = Perf::new("time", "0.000148")
            .uom(Uom::Seconds)
            .min("0.000000")
            .max("10.000000");
        assert_eq!(p.to_string(), "time=0.000148s;;;0.000000;10.000000");
    }

    #[test]
    fn labels_are_quoted_when_needed() {
        assert_eq!(Perf::new("/", 1).uom(Uom::Bytes).to_string(), "/=1B");
        assert_eq!(Perf::new("my disk", 1).to_string(), "'my disk'=1");
        assert_eq!(Perf::new("it's", 1).to_string(), "'it''s'=1");
        assert_eq!(Perf::new("a=b", 1).to_string(), "'a=b'=1");
    }

    #[test]
    fn ranges_in_normal_form() {
        let t = Thresholds::parse(Some("0:5"), Some("@1:2")).unwrap();
        assert_eq!(Perf::new("x", 1).thresholds(&t).to_string(), "x=1;5;@1:2");
        let t = Thresholds::parse(None, Some("10")).unwrap();
        assert_eq!(Perf::new("x", 1).thresholds(&t).to_string(), "x=1;;10");
    }
}
