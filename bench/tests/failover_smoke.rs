//! Smoke test of `fulcrum-bench failover`: one short `sigkill` round per contender, end to end
//! (lab, Fulcrum and keepalived, the probe in the client's namespace, the files), checking that
//! each round measured a takeover and a gap and that nothing is left behind. The numbers are
//! not judged: a loaded test machine may miss the goal.
//!
//! Needs root, iproute2, keepalived and the `fulcrum` binary (`FULCRUM_BIN`, or the one built
//! beside `fulcrum-bench`); skips without them, except in CI (`CI` set), where they are all there.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fulcrum_bench::failover::{
    Case, Contender, FailoverOptions, FailoverReport, SCHEMA, run_failover,
};
use fulcrum_lab::keepalived::{KEEPALIVED, require_keepalived};
use fulcrum_lab::netns::can_use_netns;

#[test]
fn one_sigkill_round_per_contender_measures_a_takeover() {
    if !can_use_netns() || !require_keepalived() {
        return;
    }
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_fulcrum-bench"));
    let fulcrum = std::env::var_os("FULCRUM_BIN")
        .map_or_else(|| bench.with_file_name("fulcrum"), PathBuf::from);
    if !fulcrum.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing, and CI builds it",
            fulcrum.display()
        );
        eprintln!("skipped: no fulcrum binary at {}", fulcrum.display());
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let options = FailoverOptions {
        bench,
        fulcrum,
        keepalived: PathBuf::from(KEEPALIVED),
        cases: vec![Case::Sigkill],
        rounds: 1,
        interval: Duration::from_millis(10),
        timeout: Duration::from_millis(50),
        // The shortest the run accepts: 1.2 s of steady connects, 2 s after the kill.
        duration: Duration::from_millis(3200),
        fail_after: Duration::from_millis(1200),
        out: Some(out.path().to_owned()),
        command: "failover_smoke".to_owned(),
        cancel: Arc::default(),
    };

    let report = run_failover(&options).unwrap();
    assert_eq!(report.schema, SCHEMA);
    assert_eq!(report.cases.len(), 1);
    let case = &report.cases[0];
    let contenders: Vec<Contender> = case.rounds.iter().map(|r| r.contender).collect();
    assert_eq!(contenders, Contender::ALL.to_vec());
    for round in &case.rounds {
        assert_eq!(round.error, None, "{round:?}");
        let takeover = round.takeover_ms.unwrap();
        // B waits a master down interval (361 ms) from A's last advert: at least 261 ms after
        // the kill.
        assert!(takeover > 200.0, "{round:?}");
        assert!(round.gap_ms.is_some(), "{round:?}");
    }
    // Fulcrum's proxy died with A: the client was refused until B's gratuitous ARP.
    let fulcrum = &case.rounds[0];
    assert!(fulcrum.gap_ms.unwrap() > 100.0, "{fulcrum:?}");
    assert!(fulcrum.refused > 0, "{fulcrum:?}");

    assert_eq!(report.files.len(), 4, "{:?}", report.files);
    let json = out.path().join("latest.json");
    let read: FailoverReport =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(read.cases.len(), 1);
    assert_eq!(read.machine, report.machine);
    let markdown = std::fs::read_to_string(out.path().join("latest.md")).unwrap();
    assert!(markdown.contains("| sigkill |"), "{markdown}");
}
