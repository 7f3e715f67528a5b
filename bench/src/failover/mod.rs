//! `fulcrum-bench failover`: the gap a client sees when the master fails, Fulcrum's embedded
//! VRRP against keepalived, in a lab of network namespaces. A client connects to the VIP every
//! 10 ms while node A gets SIGTERM or SIGKILL; the gap is the longest time no connect
//! succeeded, until node B took the VIP and answered.
//!
//! [`run_failover`] runs it (blocking, it needs root); the files it writes are described in
//! `bench/results/README.md`.

mod lab;
mod markdown;
mod probe;
mod report;
mod runner;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::markdown::render_markdown;
pub use self::probe::{Attempt, Gap, GapError, Outcome, ProbeReport, client_gap, probe};
pub use self::report::{
    CaseReport, FailoverMachine, FailoverReport, FailoverRound, FailoverSettings, SCHEMA,
};
pub use self::runner::run_failover;

/// How node A fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    /// A clean stop with VRRPv2 and 1 s adverts: A resigns (priority 0), B takes over after its
    /// skew time.
    Sigterm,
    /// A crash with VRRPv3 and 100 ms adverts: B takes over after the master down interval.
    Sigkill,
}

/// Who speaks VRRP on the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Contender {
    /// Fulcrum's `[vrrp]`, in the proxy's process.
    Fulcrum,
    /// keepalived beside a Fulcrum without `[vrrp]`, as keepalived beside HAProxy.
    Keepalived,
}

impl Case {
    pub const ALL: [Self; 2] = [Self::Sigterm, Self::Sigkill];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sigterm => "sigterm",
            Self::Sigkill => "sigkill",
        }
    }

    fn signal(self) -> &'static str {
        match self {
            Self::Sigterm => "TERM",
            Self::Sigkill => "KILL",
        }
    }

    fn vrrp_version(self) -> u8 {
        match self {
            Self::Sigterm => 2,
            Self::Sigkill => 3,
        }
    }

    fn advert_interval(self) -> Duration {
        match self {
            Self::Sigterm => Duration::from_secs(1),
            Self::Sigkill => Duration::from_millis(100),
        }
    }

    fn fulcrum_advert_interval(self) -> &'static str {
        match self {
            Self::Sigterm => "1s",
            Self::Sigkill => "100ms",
        }
    }

    fn keepalived_advert_int(self) -> &'static str {
        match self {
            Self::Sigterm => "1",
            Self::Sigkill => "0.1",
        }
    }

    /// B's Skew_Time (RFC 3768/5798 §6.1): `(256 - priority) / 256` s in v2, times the advert
    /// interval in v3.
    pub fn skew(self) -> Duration {
        let unit = match self {
            Self::Sigterm => Duration::from_secs(1),
            Self::Sigkill => self.advert_interval(),
        };
        unit * (256 - u32::from(lab::PRIORITY_B)) / 256
    }

    /// What theory says B needs: the skew time after a resignation, the master down interval
    /// (3 adverts and the skew) after a crash.
    pub fn expected(self) -> Duration {
        match self {
            Self::Sigterm => self.skew(),
            Self::Sigkill => 3 * self.advert_interval() + self.skew(),
        }
    }

    /// The goal for Fulcrum's gap: skew + 50 ms after SIGTERM, 400 ms after SIGKILL.
    pub fn goal(self) -> Duration {
        match self {
            Self::Sigterm => self.skew() + Duration::from_millis(50),
            Self::Sigkill => Duration::from_millis(400),
        }
    }

    /// How the case is set up and what A gets, for the tables.
    pub fn description(self) -> &'static str {
        match self {
            Self::Sigterm => "VRRPv2, 1 s adverts; A's VRRP speaker gets SIGTERM (it resigns)",
            Self::Sigkill => "VRRPv3, 100 ms adverts; A's VRRP speaker gets SIGKILL (a crash)",
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Contender {
    pub const ALL: [Self; 2] = [Self::Fulcrum, Self::Keepalived];
}

impl fmt::Display for Contender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fulcrum => "Fulcrum",
            Self::Keepalived => "keepalived",
        })
    }
}

/// Parses `--cases`: `all`, or a comma-separated list of `sigterm` and `sigkill`, in the
/// canonical order without repeats.
pub fn parse_cases(text: &str) -> Result<Vec<Case>, String> {
    if text == "all" {
        return Ok(Case::ALL.to_vec());
    }
    let mut wanted = Vec::new();
    for name in text.split(',').map(str::trim) {
        match Case::ALL.iter().find(|c| c.name() == name) {
            Some(case) => wanted.push(*case),
            None => return Err(format!("unknown case `{name}` (sigterm, sigkill or all)")),
        }
    }
    Ok(Case::ALL
        .into_iter()
        .filter(|c| wanted.contains(c))
        .collect())
}

/// What a run does and where its programs are.
#[derive(Debug, Clone)]
pub struct FailoverOptions {
    /// This executable, run as the probe inside the client's namespace.
    pub bench: PathBuf,
    pub fulcrum: PathBuf,
    pub keepalived: PathBuf,
    pub cases: Vec<Case>,
    /// Rounds per case, each Fulcrum then keepalived, each on a fresh lab.
    pub rounds: usize,
    /// The probe's connect interval and per-attempt timeout.
    pub interval: Duration,
    pub timeout: Duration,
    /// How long each probe runs, and when into it A fails.
    pub duration: Duration,
    pub fail_after: Duration,
    /// Where the files go; none written without.
    pub out: Option<PathBuf>,
    /// The command line, for the report.
    pub command: String,
    /// Set to stop between steps (Ctrl-C); the run then ends with an error, labs torn down.
    pub cancel: Arc<AtomicBool>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Case, parse_cases};

    #[test]
    fn expectations_follow_the_rfc_timers() {
        // Priority 100: Skew_Time = 156/256 s (v2), 156/256 × 100 ms (v3).
        assert_eq!(Case::Sigterm.skew(), Duration::from_secs_f64(0.609_375));
        assert_eq!(Case::Sigkill.skew(), Duration::from_secs_f64(0.060_937_5));
        assert_eq!(Case::Sigterm.expected(), Case::Sigterm.skew());
        assert_eq!(
            Case::Sigkill.expected(),
            Duration::from_secs_f64(0.360_937_5)
        );
        assert_eq!(Case::Sigterm.goal(), Duration::from_secs_f64(0.659_375));
        assert_eq!(Case::Sigkill.goal(), Duration::from_millis(400));
    }

    #[test]
    fn cases_parse_in_canonical_order() {
        assert_eq!(parse_cases("all").unwrap_or_default(), Case::ALL.to_vec());
        assert_eq!(
            parse_cases("sigkill,sigterm,sigkill").unwrap_or_default(),
            Case::ALL.to_vec()
        );
        assert_eq!(
            parse_cases("sigkill").unwrap_or_default(),
            vec![Case::Sigkill]
        );
        assert!(parse_cases("sighup").is_err());
    }
}
