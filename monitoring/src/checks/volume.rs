//! `volume NAME`: a replicated volume. CRITICAL when it is not connected (StandAlone after a
//! split brain or a disconnect, WFConnection while the peer is away), when both nodes are
//! Primary, or when the local disk is not UpToDate; WARNING when the peer's disk is not;
//! `-w`/`-c` optionally bound the bytes out of sync.

use fulcrum_common::stats::Volume;

use super::options::{self, Spec, value};
use super::perfdata::{Perf, Uom};
use super::range::Thresholds;
use super::{Outcome, State};

const NAME: &str = "volume";
const SPECS: &[Spec] = &[value('w', "warning"), value('c', "critical")];

/// The check's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub volume: String,
    /// On the bytes out of sync.
    pub thresholds: Thresholds,
}

impl Options {
    /// Parses the options after the check's name: the volume's name, then `-w`/`-c`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let parsed = options::parse(NAME, SPECS, args)?;
        let volume = match parsed.operands.as_slice() {
            [one] => one.clone(),
            [] => return Err(format!("{NAME}: give the volume's name")),
            [_, extra, ..] => return Err(format!("{NAME}: unexpected argument `{extra}`")),
        };
        let thresholds = Thresholds::parse(parsed.last('w'), parsed.last('c'))
            .map_err(|why| format!("{NAME}: {why}"))?;
        Ok(Self { volume, thresholds })
    }
}

/// Judges the volume named in `opts` among `volumes`.
pub fn evaluate(volumes: &[Volume], opts: &Options) -> Outcome {
    let Some(v) = volumes.iter().find(|v| v.name == opts.volume) else {
        return Outcome::unknown("VOLUME", format!("no volume `{}`", opts.volume));
    };
    let mut state = State::Ok;
    let mut problems = Vec::new();
    let mut problem = |s: State, why: String| {
        state = state.worst(s);
        problems.push(why);
    };
    match v.connection.as_str() {
        "Connected" | "SyncSource" | "SyncTarget" => {}
        "StandAlone" => problem(
            State::Critical,
            "not connected (StandAlone: after a split brain or a disconnect)".to_owned(),
        ),
        "WFConnection" => problem(
            State::Critical,
            "not connected (waiting for the peer)".to_owned(),
        ),
        other => problem(State::Critical, format!("not connected ({other})")),
    }
    if v.role == "Primary" && v.peer_role.as_deref() == Some("Primary") {
        problem(
            State::Critical,
            "both nodes are Primary (split brain)".to_owned(),
        );
    }
    if v.disk != "UpToDate" {
        problem(State::Critical, format!("local disk {}", v.disk));
    }
    if let Some(peer) = v.peer_disk.as_deref().filter(|d| *d != "UpToDate") {
        problem(State::Warning, format!("peer disk {peer}"));
    }
    #[allow(clippy::cast_precision_loss, reason = "compared with a threshold")]
    let oos = v.out_of_sync_bytes as f64;
    let by_size = opts.thresholds.state(oos);
    if by_size != State::Ok {
        problem(
            by_size,
            format!("{} bytes out of sync", v.out_of_sync_bytes),
        );
    }
    let peer_disk = v.peer_disk.as_deref().unwrap_or("DUnknown");
    let mut text = format!(
        "VOLUME {state} - {}: {}, {}, {}/{peer_disk}, {} bytes out of sync",
        v.name, v.role, v.connection, v.disk, v.out_of_sync_bytes
    );
    if let Some(pct) = v.resync_percent {
        text.push_str(&format!(", resync {pct:.1}% done"));
    }
    if !problems.is_empty() {
        text.push_str(" - ");
        text.push_str(&problems.join(", "));
    }
    let mut perf = vec![
        Perf::new("out_of_sync", v.out_of_sync_bytes)
            .uom(Uom::Bytes)
            .thresholds(&opts.thresholds)
            .min(0),
    ];
    if let Some(pct) = v.resync_percent {
        perf.push(
            Perf::new("resync", format!("{pct:.1}"))
                .uom(Uom::Percent)
                .min(0)
                .max(100),
        );
    }
    Outcome::new(state, text, &perf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<Options, String> {
        Options::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn healthy() -> Volume {
        Volume {
            name: "nfs".to_owned(),
            role: "Primary".to_owned(),
            peer_role: Some("Secondary".to_owned()),
            connection: "Connected".to_owned(),
            disk: "UpToDate".to_owned(),
            peer_disk: Some("UpToDate".to_owned()),
            protocol: "C".to_owned(),
            ..Volume::default()
        }
    }

    #[test]
    fn options() {
        let o = opts(&["nfs", "-w", "1000"]).unwrap();
        assert_eq!(o.volume, "nfs");
        assert_eq!(opts(&[]).unwrap_err(), "volume: give the volume's name");
        assert_eq!(
            opts(&["a", "b"]).unwrap_err(),
            "volume: unexpected argument `b`"
        );
        assert!(opts(&["a", "-c", "x"]).is_err());
    }

    #[test]
    fn healthy_volume() {
        let out = evaluate(&[healthy()], &opts(&["nfs"]).unwrap());
        assert_eq!(out.state, State::Ok);
        assert_eq!(
            out.output,
            "VOLUME OK - nfs: Primary, Connected, UpToDate/UpToDate, 0 bytes out of sync|\
             out_of_sync=0B;;;0"
        );
        assert_eq!(
            evaluate(&[healthy()], &opts(&["www"]).unwrap()).output,
            "VOLUME UNKNOWN - no volume `www`"
        );
    }

    #[test]
    fn broken_volumes() {
        let o = opts(&["nfs"]).unwrap();
        let mut standalone = healthy();
        standalone.connection = "StandAlone".to_owned();
        standalone.peer_role = None;
        standalone.peer_disk = None;
        standalone.out_of_sync_bytes = 4096;
        let out = evaluate(&[standalone], &o);
        assert_eq!(out.state, State::Critical);
        assert_eq!(
            out.output,
            "VOLUME CRITICAL - nfs: Primary, StandAlone, UpToDate/DUnknown, 4096 bytes out of \
             sync - not connected (StandAlone: after a split brain or a disconnect)|\
             out_of_sync=4096B;;;0"
        );
        let mut waiting = healthy();
        waiting.connection = "WFConnection".to_owned();
        assert_eq!(evaluate(&[waiting], &o).state, State::Critical);
        let mut dual = healthy();
        dual.peer_role = Some("Primary".to_owned());
        assert_eq!(evaluate(&[dual], &o).state, State::Critical);
        // Receiving a resync: the local copy is not whole.
        let mut target = healthy();
        target.connection = "SyncTarget".to_owned();
        target.disk = "Inconsistent".to_owned();
        target.resync_percent = Some(45.0);
        let out = evaluate(&[target], &o);
        assert_eq!(out.state, State::Critical);
        assert!(
            out.output
                .contains(", resync 45.0% done - local disk Inconsistent|")
        );
        assert!(out.output.ends_with("resync=45.0%;;;0;100"));
        // Sending one: the peer's copy is not whole yet.
        let mut source = healthy();
        source.connection = "SyncSource".to_owned();
        source.peer_disk = Some("Inconsistent".to_owned());
        source.out_of_sync_bytes = 1 << 20;
        assert_eq!(evaluate(&[source.clone()], &o).state, State::Warning);
        let sized = opts(&["nfs", "-c", "1000"]).unwrap();
        assert_eq!(evaluate(&[source], &sized).state, State::Critical);
    }
}
