//! What a failover run reports: each round's gap, and per case the medians, the
//! Fulcrum/keepalived ratio and the goal check. Serialised as the JSON file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Case, Contender};
use crate::compare::{median, ratio};

/// The `schema` of the JSON file.
pub const SCHEMA: &str = "fulcrum-bench/failover/v1";

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// When it started, RFC 3339 in UTC.
    pub date: String,
    pub command: String,
    pub machine: FailoverMachine,
    pub settings: FailoverSettings,
    pub cases: Vec<CaseReport>,
    /// The files written, empty without `--out`.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverMachine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub fulcrum_version: String,
    pub keepalived_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverSettings {
    pub cases: Vec<Case>,
    pub rounds: usize,
    pub interval_ms: f64,
    pub timeout_ms: f64,
    pub duration_s: f64,
    pub fail_after_s: f64,
    pub fulcrum: PathBuf,
    pub keepalived: PathBuf,
}

/// One case: its rounds and what they add up to. Times in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseReport {
    pub case: Case,
    /// What the RFC timers give: B's skew time (sigterm), the master down interval (sigkill;
    /// counted from B's last advert, up to one advert interval before the signal).
    pub expected_ms: f64,
    /// The bound on Fulcrum's median gap.
    pub goal_ms: f64,
    pub rounds: Vec<FailoverRound>,
    /// Median gaps over the rounds that measured one.
    pub fulcrum_gap_ms: Option<f64>,
    pub keepalived_gap_ms: Option<f64>,
    /// Fulcrum's median gap over keepalived's.
    pub ratio: Option<f64>,
    /// Median time from the signal until B held the VIP.
    pub fulcrum_takeover_ms: Option<f64>,
    pub keepalived_takeover_ms: Option<f64>,
    /// Whether Fulcrum's median gap is within the goal; `None` without a median.
    pub goal_met: Option<bool>,
}

/// One round of one contender, on a fresh lab. Times in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverRound {
    pub round: usize,
    pub contender: Contender,
    /// The longest time the client could not connect, from the last success before the
    /// failures to the first after; 0 when no attempt failed; `None` when the round failed.
    pub gap_ms: Option<f64>,
    /// When the gap began, relative to the signal (negative: the last success came before
    /// it), give or take the few ms the probe takes to start.
    pub gap_from_ms: Option<f64>,
    /// Failed attempts in the gap, and by kind over the whole probe.
    pub failures: usize,
    pub refused: usize,
    pub timeouts: usize,
    pub errors: usize,
    /// From the signal until B held the VIP (polled with `ip addr` every 5 ms or so).
    pub takeover_ms: Option<f64>,
    /// Why the round measured nothing.
    pub error: Option<String>,
}

impl CaseReport {
    /// Sums up `rounds` of `case`.
    pub(crate) fn new(case: Case, rounds: Vec<FailoverRound>) -> Self {
        let medians = |contender: Contender, value: fn(&FailoverRound) -> Option<f64>| {
            let values: Vec<f64> = rounds
                .iter()
                .filter(|r| r.contender == contender)
                .filter_map(value)
                .collect();
            median(&values)
        };
        let fulcrum_gap_ms = medians(Contender::Fulcrum, |r| r.gap_ms);
        let keepalived_gap_ms = medians(Contender::Keepalived, |r| r.gap_ms);
        let goal_ms = ms(case.goal());
        Self {
            case,
            expected_ms: ms(case.expected()),
            goal_ms,
            fulcrum_gap_ms,
            keepalived_gap_ms,
            ratio: ratio(fulcrum_gap_ms, keepalived_gap_ms),
            fulcrum_takeover_ms: medians(Contender::Fulcrum, |r| r.takeover_ms),
            keepalived_takeover_ms: medians(Contender::Keepalived, |r| r.takeover_ms),
            goal_met: fulcrum_gap_ms.map(|gap| gap <= goal_ms),
            rounds,
        }
    }
}

/// A duration in milliseconds, as the report keeps times.
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::{CaseReport, FailoverRound};
    use crate::failover::{Case, Contender};

    fn round(contender: Contender, gap_ms: Option<f64>) -> FailoverRound {
        FailoverRound {
            round: 1,
            contender,
            gap_ms,
            gap_from_ms: None,
            failures: 0,
            refused: 0,
            timeouts: 0,
            errors: 0,
            takeover_ms: gap_ms.map(|g| g - 10.0),
            error: gap_ms.is_none().then(|| "broken".to_owned()),
        }
    }

    #[test]
    fn medians_ratio_and_goal_skip_failed_rounds() {
        let report = CaseReport::new(
            Case::Sigkill,
            vec![
                round(Contender::Fulcrum, Some(370.0)),
                round(Contender::Keepalived, Some(380.0)),
                round(Contender::Fulcrum, None),
                round(Contender::Keepalived, Some(400.0)),
                round(Contender::Fulcrum, Some(390.0)),
                round(Contender::Keepalived, Some(420.0)),
            ],
        );
        assert_eq!(report.fulcrum_gap_ms, Some(380.0));
        assert_eq!(report.keepalived_gap_ms, Some(400.0));
        assert_eq!(report.ratio, Some(0.95));
        assert_eq!(report.fulcrum_takeover_ms, Some(370.0));
        assert_eq!(report.goal_met, Some(true));
        assert_eq!(report.goal_ms, 400.0);

        let missed = CaseReport::new(Case::Sigkill, vec![round(Contender::Fulcrum, Some(450.0))]);
        assert_eq!(missed.goal_met, Some(false));
        assert_eq!(missed.ratio, None, "no keepalived round to divide by");
        let nothing = CaseReport::new(Case::Sigterm, vec![round(Contender::Fulcrum, None)]);
        assert_eq!(nothing.goal_met, None);
    }
}
