//! Goals: a bound on one of a scenario's ratios ("CPU per request at most 0.7 × HAProxy's",
//! "metrics on cost at most 3% more CPU per request than metrics off"), and whether a run met
//! it, so a table says plainly what it shows.

use serde::{Deserialize, Serialize};

use super::report::{Metric, SummaryRow};

/// A bound on the ratio of Fulcrum's median to a baseline's (Fulcrum+metrics' to plain Fulcrum's
/// for [`Baseline::MetricsOff`]).
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
    /// Fulcrum without `[admin]` in the same round, against Fulcrum with it and scraped
    /// (`get-metrics` only).
    #[serde(rename = "metrics_off")]
    MetricsOff,
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
            Self::MetricsOff => "metrics off",
        }
    }

    /// What is divided by the baseline, when it is not plain Fulcrum.
    fn subject(self) -> Option<&'static str> {
        match self {
            Self::Haproxy | Self::Direct => None,
            Self::MetricsOff => Some("metrics on"),
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
                Baseline::MetricsOff => r.metrics_ratio,
            });
            GoalCheck {
                goal,
                ratio,
                met: ratio.map(|r| goal.bound.holds(r)),
            }
        })
        .collect()
}

/// One line for the Markdown summary: `CPU per request (µs) ≤ 0.70 × HAProxy: **met** (0.64)`,
/// or for a cost over metrics off, `metrics on costs ≤ 3% more CPU per request (µs) than metrics
/// off (ratio ≤ 1.03): **met** (1.012)`.
pub(crate) fn render_check(check: &GoalCheck) -> String {
    let (sign, limit) = match check.goal.bound {
        Bound::AtMost(limit) => ("≤", limit),
        Bound::AtLeast(limit) => ("≥", limit),
    };
    let baseline = check.goal.baseline;
    let shown = |ratio: f64| {
        // Two decimals, unless they would round a miss onto the bound (1.034 against 1.03), or
        // the goal is a cost of a few percent.
        let two = format!("{ratio:.2}");
        if baseline.subject().is_some() || (two == format!("{limit:.2}") && ratio != limit) {
            format!("{ratio:.3}")
        } else {
            two
        }
    };
    let verdict = match (check.met, check.ratio) {
        (Some(true), Some(ratio)) => format!("**met** ({})", shown(ratio)),
        (Some(false), Some(ratio)) => format!("**missed** ({})", shown(ratio)),
        _ => "not measured".to_owned(),
    };
    let label = check.goal.metric.label();
    match (baseline.subject(), check.goal.bound) {
        (Some(subject), Bound::AtMost(limit)) if limit >= 1.0 => format!(
            "Goal: {subject} costs {sign} {:.0}% more {label} than {} (ratio {sign} {limit:.2}): \
             {verdict}",
            (limit - 1.0) * 100.0,
            baseline.name()
        ),
        (Some(subject), _) => format!(
            "Goal: {label} {subject} {sign} {limit:.2} × {}: {verdict}",
            baseline.name()
        ),
        (None, _) => format!(
            "Goal: {label} {sign} {limit:.2} × {}: {verdict}",
            baseline.name()
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{Baseline, Bound, Goal, GoalCheck, check_goals, render_check};
    use crate::compare::report::{Metric, SummaryRow};

    fn row(metric: Metric, ratio: Option<f64>, direct_ratio: Option<f64>) -> SummaryRow {
        SummaryRow {
            fulcrum: Some(1.0),
            haproxy: Some(1.0),
            ratio,
            direct_ratio,
            ..SummaryRow::new(metric)
        }
    }

    /// A `get-metrics` row: Fulcrum with metrics `on` µs per request, without `off`.
    fn metrics_row(off: f64, on: f64) -> SummaryRow {
        SummaryRow {
            fulcrum: Some(off),
            metrics_on: Some(on),
            metrics_ratio: Some(on / off),
            ..SummaryRow::new(Metric::CpuUsPerRequest)
        }
    }

    const METRICS_COST: Goal = Goal {
        metric: Metric::CpuUsPerRequest,
        baseline: Baseline::MetricsOff,
        bound: Bound::AtMost(1.03),
    };

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

    #[test]
    fn metrics_cost_is_judged_on_over_off() {
        // 10.2 µs on, 10.0 off: 2% more, met; 10.4: 4% more, missed.
        let [cheap] = &check_goals(&[METRICS_COST], &[metrics_row(10.0, 10.2)])[..] else {
            panic!("one check");
        };
        assert_eq!(cheap.met, Some(true));
        assert!((cheap.ratio.unwrap() - 1.02).abs() < 1e-12);
        assert_eq!(
            render_check(cheap),
            "Goal: metrics on costs ≤ 3% more CPU per request (µs) than metrics off \
             (ratio ≤ 1.03): **met** (1.020)"
        );
        let dear = &check_goals(&[METRICS_COST], &[metrics_row(10.0, 10.4)])[0];
        assert_eq!(dear.met, Some(false));
        assert!(render_check(dear).ends_with("(ratio ≤ 1.03): **missed** (1.040)"));
        // A miss that two decimals would round onto the bound shows a third, whatever the goal.
        let close = GoalCheck {
            goal: CPU,
            ratio: Some(0.704),
            met: Some(false),
        };
        assert!(render_check(&close).ends_with("**missed** (0.704)"));
        // The HAProxy ratio of a row does not count for this goal, and none is no verdict.
        let unmeasured = check_goals(
            &[METRICS_COST],
            &[row(Metric::CpuUsPerRequest, Some(0.5), None)],
        );
        assert_eq!((unmeasured[0].ratio, unmeasured[0].met), (None, None));
        assert!(render_check(&unmeasured[0]).ends_with(": not measured"));
        assert_eq!(
            serde_json::to_value(cheap.goal).unwrap(),
            serde_json::json!({
                "metric": "cpu_us_per_request",
                "baseline": "metrics_off",
                "bound": { "at_most": 1.03 }
            })
        );
    }
}
