//! What a soak run reports, serialised as the JSON file: each fault with its window, failover
//! and failed requests; the requests inside and outside the windows; the writes checked at the
//! end; the memory series; a per-second timeline for the chart; and the goals.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::FaultKind;
use super::clients::{Kind, Request};
use super::rss::RssSeries;
use super::verify::WriteCheck;
use super::window::{VipMove, Window, takeovers};
use crate::harness::Goal;

/// The `schema` of the JSON file.
pub const SCHEMA: &str = "fulcrum-bench/soak/v1";

/// Failed requests outside the windows listed one by one, at most (all are counted).
const LISTED: usize = 50;

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// When it started, RFC 3339 in UTC.
    pub date: String,
    pub command: String,
    pub machine: SoakMachine,
    pub settings: SoakSettings,
    /// Seconds the load ran (less than `settings.duration_s` when interrupted).
    pub ran_s: f64,
    pub faults: Vec<FaultReport>,
    pub requests: RequestTotals,
    pub failed_outside: Vec<FailedRequest>,
    pub uploads: WriteCheck,
    pub nbd_writes: WriteCheck,
    pub memory: Vec<RssSeries>,
    pub max_growth_pct: Option<f64>,
    pub timeline: Vec<Second>,
    pub goals: Vec<Goal>,
    /// Where the site's logs were kept when a goal failed.
    pub kept_logs: Option<PathBuf>,
    /// The files written, empty without `--out`.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoakMachine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub fulcrum_version: String,
    /// `git describe --always --dirty` where the run was started, when it is a checkout.
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakSettings {
    pub duration_s: f64,
    pub fault_every_s: f64,
    pub hold_s: f64,
    pub window_cap_s: f64,
    pub warmup_s: f64,
    pub faults: Vec<FaultKind>,
    /// `--node`: the L7 node every L7 fault went to; absent when they alternated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub fulcrum: PathBuf,
}

/// One fault and its window. Times in seconds; `*_at_s` from the start of the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultReport {
    pub n: usize,
    pub kind: FaultKind,
    /// `A`, `B` or `lvs`.
    pub node: String,
    pub injected_at_s: f64,
    /// When it was undone (restart, heal, clear, free), after the injection.
    pub undone_after_s: Option<f64>,
    /// From the injection until the site was healthy again (or the cap).
    pub window_s: f64,
    /// False when the cap passed first.
    pub recovered: bool,
    /// What was still not healthy at the cap.
    pub unhealthy: Option<String>,
    /// Each VIP that moved: to which node, how long after the injection.
    pub takeovers: Vec<Takeover>,
    pub vip_moves: Vec<VipMove>,
    /// Requests under way at some point of the window, and those of them that failed.
    pub requests: usize,
    pub failed: usize,
    pub failed_by_kind: BTreeMap<String, usize>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Takeover {
    pub vip: String,
    pub to: String,
    pub after_s: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestTotals {
    pub total: usize,
    pub failed: usize,
    pub failed_inside: usize,
    pub failed_outside: usize,
    /// Sticky answers from another web server than the cookie named, outside the windows.
    pub sticky_broken_outside: usize,
    pub by_kind: Vec<KindTotals>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindTotals {
    pub kind: Kind,
    pub total: usize,
    pub failed_inside: usize,
    pub failed_outside: usize,
}

/// A request that failed outside every window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRequest {
    pub at_s: f64,
    pub kind: Kind,
    pub worker: usize,
    pub took_ms: f64,
    pub error: String,
}

/// One second of the run: requests that ended in it, by outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub t: u64,
    pub ok: usize,
    pub failed: usize,
}

/// The requests' side of the report, worked out against the windows.
#[derive(Debug)]
pub(crate) struct Classified {
    pub(crate) faults: Vec<FaultReport>,
    pub(crate) totals: RequestTotals,
    pub(crate) failed_outside: Vec<FailedRequest>,
    pub(crate) timeline: Vec<Second>,
}

/// Sorts every request into the windows it overlaps (or none), and sums up.
pub(crate) fn classify(t0: Instant, requests: &[Request], windows: &[Window]) -> Classified {
    let at = |i: Instant| i.saturating_duration_since(t0).as_secs_f64();
    let spans: Vec<(Instant, Instant)> = windows.iter().map(Window::span).collect();
    let inside = |r: &Request| spans.iter().any(|&(from, to)| r.overlaps(from, to));

    let faults = windows
        .iter()
        .zip(&spans)
        .map(|(w, &(from, to))| {
            let mine: Vec<&Request> = requests.iter().filter(|r| r.overlaps(from, to)).collect();
            let mut failed_by_kind = BTreeMap::new();
            for r in mine.iter().filter(|r| !r.ok) {
                *failed_by_kind.entry(r.kind.name().to_owned()).or_default() += 1;
            }
            FaultReport {
                n: w.n,
                kind: w.fault.kind,
                node: w.fault.node.to_owned(),
                injected_at_s: at(w.injected),
                undone_after_s: w.undone.map(|u| (u - w.injected).as_secs_f64()),
                window_s: w.seconds(),
                recovered: w.recovered,
                unhealthy: w.unhealthy.clone(),
                takeovers: takeovers(&w.moves)
                    .into_iter()
                    .map(|(vip, to, after_s)| Takeover { vip, to, after_s })
                    .collect(),
                vip_moves: w.moves.clone(),
                requests: mine.len(),
                failed: mine.iter().filter(|r| !r.ok).count(),
                failed_by_kind,
                notes: w.notes.clone(),
            }
        })
        .collect();

    let mut totals = RequestTotals {
        total: requests.len(),
        ..RequestTotals::default()
    };
    let mut failed_outside = Vec::new();
    let mut by_kind: BTreeMap<Kind, KindTotals> = BTreeMap::new();
    for r in requests {
        let kind = by_kind.entry(r.kind).or_insert(KindTotals {
            kind: r.kind,
            total: 0,
            failed_inside: 0,
            failed_outside: 0,
        });
        kind.total += 1;
        let within = inside(r);
        if !within && r.sticky_broken {
            totals.sticky_broken_outside += 1;
        }
        if r.ok {
            continue;
        }
        totals.failed += 1;
        if within {
            totals.failed_inside += 1;
            kind.failed_inside += 1;
        } else {
            totals.failed_outside += 1;
            kind.failed_outside += 1;
            if failed_outside.len() < LISTED {
                failed_outside.push(FailedRequest {
                    at_s: at(r.started),
                    kind: r.kind,
                    worker: r.worker,
                    took_ms: (r.ended - r.started).as_secs_f64() * 1000.0,
                    error: r.error.clone(),
                });
            }
        }
    }
    totals.by_kind = by_kind.into_values().collect();

    let seconds = requests
        .iter()
        .map(|r| at(r.ended) as u64)
        .max()
        .map_or(0, |last| last + 1);
    let mut timeline: Vec<Second> = (0..seconds)
        .map(|t| Second {
            t,
            ok: 0,
            failed: 0,
        })
        .collect();
    for r in requests {
        let second = &mut timeline[at(r.ended) as usize];
        if r.ok {
            second.ok += 1;
        } else {
            second.failed += 1;
        }
    }
    Classified {
        faults,
        totals,
        failed_outside,
        timeline,
    }
}

/// The run's goals (issue 10's soak): no acknowledged write lost, no request failed outside the
/// fault windows, memory growth after the warm-up under 5 %, and (so that the windows mean
/// something) every fault recovered from within the cap.
pub(crate) fn goals(
    totals: &RequestTotals,
    uploads: &WriteCheck,
    nbd: &WriteCheck,
    max_growth_pct: Option<f64>,
    faults: &[FaultReport],
) -> Vec<Goal> {
    let lost = (uploads.lost + nbd.lost) as f64;
    vec![
        Goal {
            name: "lost-writes".to_owned(),
            description: "acknowledged writes lost (uploads + NBD writes)".to_owned(),
            measured: Some(lost),
            bound: 0.0,
            met: Some(lost == 0.0),
        },
        Goal {
            name: "failed-outside-windows".to_owned(),
            description: "requests failed outside the fault windows".to_owned(),
            measured: Some(totals.failed_outside as f64),
            bound: 0.0,
            met: Some(totals.failed_outside == 0),
        },
        Goal {
            name: "rss-growth".to_owned(),
            description: "largest RSS growth of a Fulcrum process after its warm-up (%), must be below the bound".to_owned(),
            measured: max_growth_pct,
            bound: 5.0,
            met: max_growth_pct.map(|g| g < 5.0),
        },
        Goal {
            name: "unrecovered-faults".to_owned(),
            description: "faults the site did not recover from within the cap".to_owned(),
            measured: Some(faults.iter().filter(|f| !f.recovered).count() as f64),
            bound: 0.0,
            met: Some(faults.iter().all(|f| f.recovered)),
        },
    ]
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::classify;
    use crate::soak::clients::{Kind, Request};

    fn request(t0: Instant, from_ms: u64, to_ms: u64, ok: bool) -> Request {
        Request {
            kind: Kind::Get,
            worker: 0,
            started: t0 + Duration::from_millis(from_ms),
            ended: t0 + Duration::from_millis(to_ms),
            ok,
            error: String::new(),
            sticky_broken: false,
        }
    }

    #[test]
    fn without_windows_every_failure_is_outside_and_seconds_are_counted() {
        let t0 = Instant::now();
        let requests = [
            request(t0, 0, 100, true),
            request(t0, 900, 1_200, false),
            request(t0, 1_300, 1_400, true),
        ];
        let c = classify(t0, &requests, &[]);
        assert_eq!((c.totals.total, c.totals.failed_outside), (3, 1));
        assert_eq!(c.failed_outside[0].took_ms, 300.0);
        assert_eq!(c.timeline.len(), 2);
        assert_eq!((c.timeline[1].ok, c.timeline[1].failed), (1, 1));
    }
}
