//! `fulcrum-bench soak`: seed 004's whole site (the lab's `seed004` topology) under steady load
//! for minutes, with a fault every `fault_every`, the kinds in rotation, and a report of what the
//! clients saw: failed requests inside and outside the fault windows, the failovers and how long
//! each window lasted, whether every acknowledged write (an upload answered 201, an NBD write
//! whose flush returned) survived, and how each Fulcrum process's memory grew.
//!
//! [`run_soak`] runs it (blocking, it needs root); how it runs and the files it writes are
//! described in `bench/results/soak/README.md`.

mod chart;
mod clients;
mod faults;
mod http;
mod markdown;
mod nbd;
mod report;
mod rss;
mod runner;
mod site;
mod uploads;
mod verify;
mod window;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::markdown::render_markdown;
pub use self::report::{SCHEMA, SoakReport};
pub use self::runner::run_soak;

/// A fault the run injects, in this order of rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL of an L7 node's Fulcrum and its VIPs gone (a machine crash), restarted after
    /// the hold.
    Crash,
    /// SIGTERM of an L7 node's Fulcrum (a clean stop), restarted after the hold.
    Sigterm,
    /// An L7 node's link unplugged (carrier down), plugged back after the hold.
    LinkCut,
    /// 10 % of the packets lost each way on an L7 node's link, for the hold.
    PacketLoss,
    /// SIGKILL of the director's Fulcrum, restarted after [`DIRECTOR_RESTART`]: there is no
    /// standby director in seed 004, so this is an outage until the restart, not a failover.
    Director,
    /// B's upload disk full for the hold, then freed; B is restarted if its sync gave up a
    /// transfer meanwhile (it retries those only on a new session).
    FullDisk,
}

impl FaultKind {
    pub const ALL: [Self; 6] = [
        Self::Crash,
        Self::Sigterm,
        Self::LinkCut,
        Self::PacketLoss,
        Self::Director,
        Self::FullDisk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::Sigterm => "sigterm",
            Self::LinkCut => "link-cut",
            Self::PacketLoss => "packet-loss",
            Self::Director => "director",
            Self::FullDisk => "full-disk",
        }
    }

    /// What it does, for the tables.
    pub fn description(self) -> &'static str {
        match self {
            Self::Crash => {
                "kill -9 of an L7 node's Fulcrum, its VIPs gone with it; restarted after the hold"
            }
            Self::Sigterm => "SIGTERM of an L7 node's Fulcrum; restarted after the hold",
            Self::LinkCut => {
                "an L7 node's bridge port down (carrier lost); up again after the hold"
            }
            Self::PacketLoss => {
                "10 % of the packets dropped each way on an L7 node's link, for the hold"
            }
            Self::Director => {
                "kill -9 of the director's Fulcrum (no standby: an outage); restarted after 2 s"
            }
            Self::FullDisk => {
                "B's upload tmpfs filled for the hold, then freed (no restart: B's sync retries by itself)"
            }
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `--faults`: `all`, or a comma-separated list of kinds, kept in the given order (the
/// rotation's).
pub fn parse_faults(text: &str) -> Result<Vec<FaultKind>, String> {
    if text == "all" {
        return Ok(FaultKind::ALL.to_vec());
    }
    let mut kinds = Vec::new();
    for name in text.split(',').map(str::trim) {
        match FaultKind::ALL.iter().find(|k| k.name() == name) {
            Some(kind) if !kinds.contains(kind) => kinds.push(*kind),
            Some(_) => {}
            None => {
                let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                return Err(format!(
                    "unknown fault `{name}` ({} or all)",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(kinds)
}

/// One of seed 004's two L7 nodes, for `--node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L7Node {
    A,
    B,
}

impl L7Node {
    pub fn name(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
        }
    }
}

/// Parses `--node`: `A` or `B`, in either case.
pub fn parse_node(text: &str) -> Result<L7Node, String> {
    match text {
        "A" | "a" => Ok(L7Node::A),
        "B" | "b" => Ok(L7Node::B),
        _ => Err(format!("unknown L7 node `{text}` (A or B)")),
    }
}

/// How long the director stays dead: a supervisor's restart delay. Seed 004 has one director,
/// so every request through the front fails until it is back.
pub const DIRECTOR_RESTART: Duration = Duration::from_secs(2);

/// What a run does and where its programs are.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub fulcrum: PathBuf,
    /// How long the load runs.
    pub duration: Duration,
    /// Time between two fault injections; the first comes after one period of calm.
    pub fault_every: Duration,
    /// How long a fault lasts before it is undone (restart, heal, clear, free).
    pub hold: Duration,
    /// The kinds, in rotation.
    pub faults: Vec<FaultKind>,
    /// The L7 node every L7 fault goes to; without, they alternate between A and B.
    pub node: Option<L7Node>,
    /// How long a fault window may last before the site counts as not recovered.
    pub window_cap: Duration,
    /// How long after a process starts its memory counts as warmed up.
    pub warmup: Duration,
    /// Where the files go; none written without.
    pub out: Option<PathBuf>,
    /// The command line, for the report.
    pub command: String,
    /// Set to stop early (Ctrl-C): the load stops, the site is checked and torn down, and the
    /// report covers what ran.
    pub cancel: Arc<AtomicBool>,
}

#[cfg(test)]
mod tests {
    use super::{FaultKind, parse_faults};

    #[test]
    fn faults_parse_in_the_given_order() {
        assert_eq!(parse_faults("all").unwrap_or_default(), FaultKind::ALL);
        assert_eq!(
            parse_faults("full-disk, crash,crash").unwrap_or_default(),
            vec![FaultKind::FullDisk, FaultKind::Crash]
        );
        assert!(parse_faults("meteor").is_err());
    }
}
