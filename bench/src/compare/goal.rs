//! Goals: a bound on one of a scenario's ratios ("CPU per request at most 0.7 × HAProxy's"), and
//! whether a run met it, so a table says plainly what it shows.

use serde::{Deserialize, Serialize};

use super::report::{Metric, SummaryRow};

/// A bound on the ratio of Fulcrum's median to a baseline's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    pub metric: Metric,
    pub baseline: Baseline,
    pub bound: Bound,
}

/// What Fulcrum is divided by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// HAProxy in the same round.
    Haproxy,
    /// No proxy at all (`tcp-bulk` only).
    Direct,
}

/// `{"at_most": 0.7}` or `{"at_least": 0.9}` in the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

/// A goal and what the run made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoalCheck {
    #[serde(flatten)]
    pub goal: Goal,
    /// Fulcrum's median over the baseline's; `None` when either was not measured.
    pub ratio: Option<f64>,
    /// `None` when there is no ratio to judge.
    pub met: Option<bool>,
}

impl Bound {
    fn holds(self, ratio: f64) -> bool {
        match self {
            Self::AtMost(limit) => ratio <= limit,
            Self::AtLeast(limit) => ratio >= limit,
        }
    }
}

impl Baseline {
    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Haproxy => "HAProxy",
            Self::Direct => "direct",
        }
    }
}

/// Judges `goals` by the summary's ratios.
pub(crate) fn check_goals(goals: &[Goal], summary: &[SummaryRow]) -> Vec<GoalCheck> {
    goals
        .iter()
        .map(|&goal| {
            let row = summary.iter().find(|r| r.metric == goal.metric);
            let ratio = row.and_then(|r| match goal.baseline {
                Baseline::Haproxy => r.ratio,
                Baseline::Direct => r.direct_ratio,
            });
            GoalCheck {
                goal,
                ratio,
                met: ratio.map(|r| goal.bound.holds(r)),
            }
        })
        .collect()
}

/// One line for the Markdown summary: `CPU per request (µs) ≤ 0.70 × HAProxy: **met** (0.64)`.
pub(crate) fn render_check(check: &GoalCheck) -> String {
    let (sign, limit) = match check.goal.bound {
        Bound::AtMost(limit) => ("≤", limit),
        Bound::AtLeast(limit) => ("≥", limit),
    };
    let verdict = match (check.met, check.ratio) {
        (Some(true), Some(ratio)) => format!("**met** ({ratio:.2})"),
        (Some(false), Some(ratio)) => format!("**missed** ({ratio:.2})"),
        _ => "not measured".to_owned(),
    };
    format!(
        "Goal: {} {sign} {limit:.2} × {}: {verdict}",
        check.goal.metric.label(),
        check.goal.baseline.name()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{Baseline, Bound, Goal, GoalCheck, check_goals, render_check};
    use crate::compare::report::{Metric, SummaryRow};

    fn row(metric: Metric, ratio: Option<f64>, direct_ratio: Option<f64>) -> SummaryRow {
        SummaryRow {
            metric,
            direct: None,
            fulcrum: Some(1.0),
            haproxy: Some(1.0),
            ratio,
            direct_ratio,
        }
    }

    const CPU: Goal = Goal {
        metric: Metric::CpuUsPerRequest,
        baseline: Baseline::Haproxy,
        bound: Bound::AtMost(0.7),
    };
    const NEAR_DIRECT: Goal = Goal {
        metric: Metric::ThroughputMegabytesPerSecond,
        baseline: Baseline::Direct,
        bound: Bound::AtLeast(0.9),
    };

    #[test]
    fn met_missed_and_unmeasured() {
        let summary = [
            row(Metric::CpuUsPerRequest, Some(0.7), None),
            row(Metric::ThroughputMegabytesPerSecond, Some(1.2), Some(0.85)),
        ];
        let checks = check_goals(&[CPU, NEAR_DIRECT], &summary);
        assert_eq!(checks[0].met, Some(true), "the bound itself is met");
        assert_eq!((checks[1].ratio, checks[1].met), (Some(0.85), Some(false)));
        let unmeasured = check_goals(&[NEAR_DIRECT], &summary[..1]);
        assert_eq!((unmeasured[0].ratio, unmeasured[0].met), (None, None));
    }

    #[test]
    fn lines_and_json() {
        let check = GoalCheck {
            goal: CPU,
            ratio: Some(0.642),
            met: Some(true),
        };
        assert_eq!(
            render_check(&check),
            "Goal: CPU per request (µs) ≤ 0.70 × HAProxy: **met** (0.64)"
        );
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "metric": "cpu_us_per_request",
                "baseline": "haproxy",
                "bound": { "at_most": 0.7 },
                "ratio": 0.642,
                "met": true
            })
        );
        assert_eq!(serde_json::from_value::<GoalCheck>(json).unwrap(), check);
        let missed = GoalCheck {
            goal: NEAR_DIRECT,
            ratio: Some(0.5),
            met: Some(false),
        };
        assert!(render_check(&missed).ends_with("≥ 0.90 × direct: **missed** (0.50)"));
    }
}
