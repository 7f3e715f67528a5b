//! Smoke test of `fulcrum-bench nbd`: one round on a 16 MiB volume without the latency, end to
//! end (qemu-nbd, a Fulcrum primary alone, a Fulcrum pair and its resync, the files), checking
//! that every run measured something. The numbers are not judged. A few seconds.
//!
//! Needs qemu-nbd, nbdcopy and the `fulcrum` binary (`FULCRUM_BIN`, or the one built beside
//! `fulcrum-bench`); skips without them.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fulcrum_bench::nbd::{NbdOptions, SCHEMA, Server, find_tools, run_nbd};

#[test]
fn one_small_round_measures_every_server_and_a_resync() {
    let Ok(tools) = find_tools(None) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs qemu-utils and libnbd-bin"
        );
        eprintln!("skipped: qemu-nbd or nbdcopy is not installed");
        return;
    };
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_fulcrum-bench"));
    let fulcrum = std::env::var_os("FULCRUM_BIN")
        .map_or_else(|| bench.with_file_name("fulcrum"), PathBuf::from);
    if !fulcrum.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI builds the fulcrum binary"
        );
        eprintln!("skipped: no fulcrum binary at {}", fulcrum.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let options = NbdOptions {
        fulcrum,
        tools,
        rounds: 1,
        size: 16 << 20,
        request_size: 1 << 20,
        connections: 1,
        latency_duration: Duration::ZERO,
        // The smallest the binary takes: the key reaches it.
        al_extents: Some(67),
        dir: dir.path().to_owned(),
        secondary_dir: dir.path().to_owned(),
        source_dir: dir.path().to_owned(),
        out: Some(out.path().to_owned()),
        command: "nbd_smoke".to_owned(),
        cancel: Arc::default(),
    };

    let report = run_nbd(&options).unwrap();
    assert_eq!(report.schema, SCHEMA);
    let servers: Vec<Server> = report.runs.iter().map(|r| r.server).collect();
    assert_eq!(servers, Server::ALL.to_vec());
    for run in &report.runs {
        assert_eq!(run.error, None, "{}", run.server);
        assert!(run.write.as_ref().unwrap().mib_per_s > 0.0);
        assert!(run.latency.is_none(), "--latency-duration 0 skips fio");
    }
    let resync = &report.resyncs[0];
    assert_eq!(resync.error, None);
    assert_eq!(resync.bytes, Some(16 << 20));
    assert_eq!(report.summary.goals.len(), 3);
    assert_eq!(report.files.len(), 4);
    let latest = std::fs::read_to_string(out.path().join("latest.md")).unwrap();
    assert!(latest.contains("| qemu-nbd |"), "{latest}");
    // Every temp dir is gone with the run: only the test's own files are left.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
