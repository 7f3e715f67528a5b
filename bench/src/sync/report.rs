//! What a sync run reports: every run of every round, the medians with Fulcrum's ratio to the
//! reference, and issue 8's goals checked. Serialised as the JSON file.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::compare::ratio;
pub use crate::harness::Goal;
use crate::harness::median_of;
pub(crate) use crate::harness::mib_per_s;

/// The `schema` of the JSON file.
pub const SCHEMA: &str = "fulcrum-bench/sync/v1";

/// Issue 8's bounds: p99 ≤ 50 ms + delay; initial sync ≤ 1.0 × rsync's time; bytes for a 1%
/// change ≤ 1.1 × rsync's.
const GOAL_LATENCY_MS: f64 = 50.0;
const GOAL_INITIAL: f64 = 1.0;
const GOAL_DELTA: f64 = 1.1;

/// Who moved the data in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// Two `fulcrum run` processes, one `[sync]` each.
    Fulcrum,
    /// lsyncd (latency) or `rsync -a` (initial, delta), to an rsync daemon.
    Reference,
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fulcrum => "Fulcrum",
            Self::Reference => "reference",
        })
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    pub schema: String,
    pub date: String,
    pub command: String,
    pub machine: SyncMachine,
    pub settings: SyncSettings,
    pub latency: Vec<LatencyRun>,
    pub initial: Vec<InitialRun>,
    pub delta: Vec<DeltaRun>,
    pub summary: SyncSummary,
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMachine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    /// The file system of the trees' directory, from `/proc/self/mounts`.
    pub filesystem: String,
    pub fulcrum_version: String,
    pub rsync_version: String,
    pub lsyncd_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncSettings {
    pub rounds: usize,
    /// `delay` of Fulcrum's nodes and of lsyncd.
    pub delay_ms: f64,
    pub changes: usize,
    pub change_bytes: usize,
    pub files: usize,
    pub tree_bytes: u64,
    pub delta_file_bytes: u64,
    pub delta_change_bytes: u64,
    pub delta_regions: u64,
    pub dir: PathBuf,
    pub fulcrum: PathBuf,
    pub rsync: PathBuf,
    pub lsyncd: PathBuf,
}

/// `changes` 4 KiB rewrites of one file on A, each timed until B holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRun {
    pub round: usize,
    pub tool: Tool,
    pub changes: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub error: Option<String>,
}

/// The tree copied to an empty B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitialRun {
    pub round: usize,
    pub tool: Tool,
    pub files: usize,
    pub bytes: u64,
    pub seconds: Option<f64>,
    pub mib_per_s: Option<f64>,
    pub error: Option<String>,
}

/// A 1% change to a file B already has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaRun {
    pub round: usize,
    pub tool: Tool,
    pub changed_bytes: u64,
    /// Fulcrum: A's `bytes_sent` (file data and deltas, without framing); rsync: its `--stats`
    /// "Total bytes sent" (everything on the wire from the client).
    pub bytes_sent: Option<u64>,
    /// Fulcrum: B's `bytes_received`; rsync: "Total bytes received" (the daemon's block
    /// checksums, mostly).
    pub bytes_received: Option<u64>,
    /// Fulcrum: B's `bytes_saved_by_delta`.
    pub bytes_saved_by_delta: Option<u64>,
    /// From the change until B held the new bytes.
    pub seconds: Option<f64>,
    pub error: Option<String>,
}

/// The medians over the rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncSummary {
    pub fulcrum_p50_ms: Option<f64>,
    pub fulcrum_p99_ms: Option<f64>,
    pub lsyncd_p50_ms: Option<f64>,
    pub lsyncd_p99_ms: Option<f64>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    pub fulcrum_initial_s: Option<f64>,
    pub rsync_initial_s: Option<f64>,
    pub initial_ratio: Option<f64>,
    pub fulcrum_delta_bytes: Option<f64>,
    pub rsync_delta_bytes: Option<f64>,
    pub delta_ratio: Option<f64>,
    pub goals: Vec<Goal>,
}

impl SyncSummary {
    pub fn new(
        latency: &[LatencyRun],
        initial: &[InitialRun],
        delta: &[DeltaRun],
        delay_ms: f64,
    ) -> Self {
        let lat = |tool: Tool, value: fn(&LatencyRun) -> Option<f64>| {
            median_of(latency, |r| if r.tool == tool { value(r) } else { None })
        };
        let (fulcrum_p50_ms, fulcrum_p99_ms) = (
            lat(Tool::Fulcrum, |r| r.p50_ms),
            lat(Tool::Fulcrum, |r| r.p99_ms),
        );
        let (lsyncd_p50_ms, lsyncd_p99_ms) = (
            lat(Tool::Reference, |r| r.p50_ms),
            lat(Tool::Reference, |r| r.p99_ms),
        );
        let init =
            |tool: Tool| median_of(initial, |r| if r.tool == tool { r.seconds } else { None });
        let (fulcrum_initial_s, rsync_initial_s) = (init(Tool::Fulcrum), init(Tool::Reference));
        let sent = |tool: Tool| {
            median_of(delta, |r| {
                if r.tool == tool {
                    r.bytes_sent.map(|b| b as f64)
                } else {
                    None
                }
            })
        };
        let (fulcrum_delta_bytes, rsync_delta_bytes) = (sent(Tool::Fulcrum), sent(Tool::Reference));
        let initial_ratio = ratio(fulcrum_initial_s, rsync_initial_s);
        let delta_ratio = ratio(fulcrum_delta_bytes, rsync_delta_bytes);
        let goals = vec![
            Goal::at_most(
                "latency-p99",
                format!("propagation p99 of a 4 KiB change: ms, ≤ 50 ms + delay ({delay_ms} ms)"),
                fulcrum_p99_ms,
                GOAL_LATENCY_MS + delay_ms,
            ),
            Goal::at_most(
                "initial-sync",
                "initial sync of the tree: Fulcrum's time / rsync -a's".to_owned(),
                initial_ratio,
                GOAL_INITIAL,
            ),
            Goal::at_most(
                "delta-bytes",
                "bytes sent for a 1% change: Fulcrum's / rsync's".to_owned(),
                delta_ratio,
                GOAL_DELTA,
            ),
        ];
        Self {
            fulcrum_p50_ms,
            fulcrum_p99_ms,
            lsyncd_p50_ms,
            lsyncd_p99_ms,
            p50_ratio: ratio(fulcrum_p50_ms, lsyncd_p50_ms),
            p99_ratio: ratio(fulcrum_p99_ms, lsyncd_p99_ms),
            fulcrum_initial_s,
            rsync_initial_s,
            initial_ratio,
            fulcrum_delta_bytes,
            rsync_delta_bytes,
            delta_ratio,
            goals,
        }
    }
}

/// The `p`th percentile (0 < p ≤ 100) of `samples` by nearest rank: the smallest sample with at
/// least p% of them at or below it. `None` without samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::{DeltaRun, InitialRun, LatencyRun, SyncSummary, Tool, percentile};

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(100.0));
        assert_eq!(percentile(&samples, 99.0), Some(198.0));
        assert_eq!(percentile(&samples, 100.0), Some(200.0));
        assert_eq!(percentile(&[5.0, 1.0, 3.0], 50.0), Some(3.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    fn latency(round: usize, tool: Tool, p99: Option<f64>) -> LatencyRun {
        LatencyRun {
            round,
            tool,
            changes: 200,
            p50_ms: p99.map(|p| p / 2.0),
            p99_ms: p99,
            mean_ms: p99,
            max_ms: p99,
            error: p99.is_none().then(|| "broken".to_owned()),
        }
    }

    #[test]
    fn medians_ratios_and_goals_skip_failed_runs() {
        // Input: Fulcrum's p99 at 20, 70 and 30 ms, lsyncd's at 100, 120 and a failure; initial
        // syncs of 4 s against rsync's 5 s; deltas of 1.2 MB against rsync's 1.0 MB.
        let latency = vec![
            latency(1, Tool::Fulcrum, Some(20.0)),
            latency(1, Tool::Reference, Some(100.0)),
            latency(2, Tool::Reference, None),
            latency(2, Tool::Fulcrum, Some(70.0)),
            latency(3, Tool::Fulcrum, Some(30.0)),
            latency(3, Tool::Reference, Some(120.0)),
        ];
        let initial: Vec<InitialRun> = [(Tool::Fulcrum, 4.0), (Tool::Reference, 5.0)]
            .into_iter()
            .map(|(tool, seconds)| InitialRun {
                round: 1,
                tool,
                files: 10,
                bytes: 1 << 30,
                seconds: Some(seconds),
                mib_per_s: None,
                error: None,
            })
            .collect();
        let delta: Vec<DeltaRun> = [(Tool::Fulcrum, 1_200_000), (Tool::Reference, 1_000_000)]
            .into_iter()
            .map(|(tool, sent)| DeltaRun {
                round: 1,
                tool,
                changed_bytes: 1 << 20,
                bytes_sent: Some(sent),
                bytes_received: None,
                bytes_saved_by_delta: None,
                seconds: None,
                error: None,
            })
            .collect();
        let summary = SyncSummary::new(&latency, &initial, &delta, 10.0);
        // Output: medians 30 and 110 ms; 0.8 and 1.2 ratios.
        assert_eq!(summary.fulcrum_p99_ms, Some(30.0));
        assert_eq!(summary.lsyncd_p99_ms, Some(110.0));
        assert_eq!(summary.initial_ratio, Some(0.8));
        assert_eq!(summary.delta_ratio, Some(1.2));
        let met: Vec<(&str, f64, Option<bool>)> = summary
            .goals
            .iter()
            .map(|g| (g.name.as_str(), g.bound, g.met))
            .collect();
        assert_eq!(
            met,
            vec![
                ("latency-p99", 60.0, Some(true)),
                ("initial-sync", 1.0, Some(true)),
                ("delta-bytes", 1.1, Some(false)),
            ]
        );
        let empty = SyncSummary::new(&[], &[], &[], 10.0);
        assert!(empty.goals.iter().all(|g| g.met.is_none()));
    }
}
