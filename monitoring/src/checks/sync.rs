//! `sync NAME`: a directory sync set. CRITICAL when no peer is connected, WARNING when only
//! some are; `-w`/`-c` bound the changes waiting for a peer (`pending`), and
//! `-W`/`--age-warning` and `-C`/`--age-critical` how long ago a peer last had everything
//! while changes wait.

use fulcrum_common::stats::SyncSet;

use super::options::{self, Spec, value};
use super::perfdata::{Perf, Uom};
use super::range::Thresholds;
use super::{Outcome, State};

const NAME: &str = "sync";
const SPECS: &[Spec] = &[
    value('w', "warning"),
    value('c', "critical"),
    value('W', "age-warning"),
    value('C', "age-critical"),
];

/// The check's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub set: String,
    /// On `pending`.
    pub pending: Thresholds,
    /// On the seconds since a peer last had everything.
    pub age: Thresholds,
}

impl Options {
    /// Parses the options after the check's name: the set's name, then the thresholds.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let parsed = options::parse(NAME, SPECS, args)?;
        let set = match parsed.operands.as_slice() {
            [one] => one.clone(),
            [] => return Err(format!("{NAME}: give the sync set's name")),
            [_, extra, ..] => return Err(format!("{NAME}: unexpected argument `{extra}`")),
        };
        let pending = Thresholds::parse(parsed.last('w'), parsed.last('c'))
            .map_err(|why| format!("{NAME}: {why}"))?;
        let age = Thresholds::parse_as(("-W", parsed.last('W')), ("-C", parsed.last('C')))
            .map_err(|why| format!("{NAME}: {why}"))?;
        Ok(Self { set, pending, age })
    }
}

/// Judges the set named in `opts` among `sets`.
pub fn evaluate(sets: &[SyncSet], opts: &Options) -> Outcome {
    let Some(s) = sets.iter().find(|s| s.name == opts.set) else {
        return Outcome::unknown("SYNC", format!("no sync set `{}`", opts.set));
    };
    let mut state = match s.state.as_str() {
        "connected" => State::Ok,
        "partly connected" => State::Warning,
        "connecting" => State::Critical,
        _ => State::Unknown,
    };
    #[allow(clippy::cast_precision_loss, reason = "compared with a threshold")]
    let pending = s.pending as f64;
    state = state.worst(opts.pending.state(pending));
    // The engine stamps "in sync" when a peer catches up, not while all stays quiet, so the
    // age only means staleness while changes wait; never in sync is as old as can be.
    if s.pending > 0 {
        #[allow(clippy::cast_precision_loss, reason = "compared with a threshold")]
        let age = s.last_sync_secs.map_or(f64::INFINITY, |a| a as f64);
        state = state.worst(opts.age.state(age));
    }
    let last = match s.last_sync_secs {
        Some(secs) => format!("last in sync {secs} s ago"),
        None => "never in sync".to_owned(),
    };
    let text = format!(
        "SYNC {state} - {}: {}, {} pending, {last}",
        s.name, s.state, s.pending
    );
    let mut perf = vec![
        Perf::new("pending", s.pending)
            .thresholds(&opts.pending)
            .min(0),
    ];
    if let Some(secs) = s.last_sync_secs {
        perf.push(
            Perf::new("age", secs)
                .uom(Uom::Seconds)
                .thresholds(&opts.age)
                .min(0),
        );
    }
    perf.push(Perf::new("conflicts", s.conflicts).uom(Uom::Counter));
    perf.push(Perf::new("errors", s.errors).uom(Uom::Counter));
    Outcome::new(state, text, &perf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<Options, String> {
        Options::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn set(state: &str, pending: u64, last: Option<u64>) -> SyncSet {
        SyncSet {
            name: "www".to_owned(),
            path: "/srv/www".to_owned(),
            state: state.to_owned(),
            pending,
            last_sync_secs: last,
            ..SyncSet::default()
        }
    }

    #[test]
    fn options() {
        let o = opts(&[
            "www",
            "-w",
            "10",
            "-c",
            "100",
            "--age-warning=60",
            "-C",
            "600",
        ])
        .unwrap();
        assert_eq!(o.set, "www");
        assert_eq!(o.age, Thresholds::parse(Some("60"), Some("600")).unwrap());
        assert_eq!(opts(&[]).unwrap_err(), "sync: give the sync set's name");
        assert!(opts(&["a", "b"]).is_err());
        assert_eq!(
            opts(&["a", "-C", "x"]).unwrap_err(),
            "sync: -C: `x` is not a range: `x` is not a number"
        );
    }

    #[test]
    fn connection_and_queue() {
        let o = opts(&["www", "-w", "10", "-c", "100"]).unwrap();
        let out = evaluate(&[set("connected", 0, Some(3))], &o);
        assert_eq!(out.state, State::Ok);
        assert_eq!(
            out.output,
            "SYNC OK - www: connected, 0 pending, last in sync 3 s ago|pending=0;10;100;0 \
             age=3s;;;0 conflicts=0c errors=0c"
        );
        assert_eq!(
            evaluate(&[set("connected", 11, Some(3))], &o).state,
            State::Warning
        );
        assert_eq!(
            evaluate(&[set("connected", 101, Some(3))], &o).state,
            State::Critical
        );
        assert_eq!(
            evaluate(&[set("partly connected", 0, None)], &o).state,
            State::Warning
        );
        let out = evaluate(&[set("connecting", 0, None)], &o);
        assert_eq!(out.state, State::Critical);
        assert!(
            out.output
                .starts_with("SYNC CRITICAL - www: connecting, 0 pending, never in sync|")
        );
        assert_eq!(evaluate(&[], &o).output, "SYNC UNKNOWN - no sync set `www`");
    }

    #[test]
    fn age_counts_while_changes_wait() {
        let o = opts(&["www", "-W", "60", "-C", "600"]).unwrap();
        // Quiet and in sync: the age is only when the peer last caught up.
        assert_eq!(
            evaluate(&[set("connected", 0, Some(5000))], &o).state,
            State::Ok
        );
        assert_eq!(
            evaluate(&[set("connected", 1, Some(30))], &o).state,
            State::Ok
        );
        assert_eq!(
            evaluate(&[set("connected", 1, Some(61))], &o).state,
            State::Warning
        );
        assert_eq!(
            evaluate(&[set("connected", 1, Some(601))], &o).state,
            State::Critical
        );
        assert_eq!(
            evaluate(&[set("connected", 1, None)], &o).state,
            State::Critical
        );
    }
}
