//! `[volume.NAME]` end to end: two `fulcrum run` processes on loopback replicate a volume, the
//! primary serves it over NBD to Debian's `nbdcopy`, and `fulcrum status volume` / `fulcrum
//! volume` report and act as `/proc/drbd` and `drbdadm` do.
//!
//! Needs `nbdcopy` (libnbd-bin); skips with a message without it, and fails in CI (`CI` set),
//! where `.ci/run` installs it.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{path::Path, time::Duration};

use support::{
    Fulcrum, PATIENCE, free_addr, fulcrum_on, netns::wait_until, status_json, status_text,
};

/// One node's `[volume.data]` (256 MiB, `protocol`): its replication port, the peer's, and NBD
/// on port 0.
fn volume(
    listen: std::net::SocketAddr,
    peer: std::net::SocketAddr,
    role: &str,
    protocol: &str,
) -> String {
    format!(
        "[volume.data]\nbacking = \"data.img\"\nsize = \"256MiB\"\nlisten = \"{listen}\"\n\
         peer = \"{peer}\"\nshared_secret = \"s3cret\"\nrole = \"{role}\"\n\
         protocol = \"{protocol}\"\nnbd = {{ listen = \"127.0.0.1:0\", export = \"data\" }}\n"
    )
}

/// A connected pair, `a` primary.
fn pair(protocol: &str) -> (Fulcrum, Fulcrum) {
    let (pa, pb) = (free_addr(), free_addr());
    let a = Fulcrum::start(&volume(pa, pb, "primary", protocol));
    let b = Fulcrum::start(&volume(pb, pa, "secondary", protocol));
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || connected(&a)
            && connected(&b)),
        "never connected: {} / {}",
        status(&a),
        status(&b)
    );
    (a, b)
}

/// Copies 256 MiB of random data to `a`'s export with nbdcopy (`--flush` when `flush`), and
/// returns it.
fn nbdcopy_random(a: &Fulcrum, flush: bool) -> Vec<u8> {
    let nbd = status(a)["nbd"].as_str().unwrap().to_owned();
    let source = a.dir().join("source.bin");
    let data = random_file(&source, 256 << 20);
    let mut command = std::process::Command::new("nbdcopy");
    if flush {
        command.arg("--flush");
    }
    let out = command
        .arg(&source)
        .arg(format!("nbd://{nbd}/data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "nbdcopy: {out:?}");
    data
}

#[test]
fn protocol_a_writes_are_on_the_secondary_after_a_flush() {
    if !support::require_tool("nbdcopy") {
        return;
    }
    let (a, b) = pair("A");
    let data = nbdcopy_random(&a, true);
    assert!(
        backing(&b) == data,
        "the secondary's copy differs after the flush; {}",
        diagnosis(&a, &b)
    );
}

/// Both nodes' status and warnings, for a failure message: a copy that differs is the
/// link's or a disk's doing (a full disk on the test machine), which only these tell apart.
fn diagnosis(a: &Fulcrum, b: &Fulcrum) -> String {
    let warnings = |node: &Fulcrum| {
        node.logs()
            .into_iter()
            .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR")
            .collect::<Vec<_>>()
    };
    format!(
        "primary: {:#} {:#?}\nsecondary: {:#} {:#?}",
        status(a),
        warnings(a),
        status(b),
        warnings(b)
    )
}

/// `fulcrum status volume --json` of `node`.
fn status(node: &Fulcrum) -> serde_json::Value {
    status_json(node, "volume")
}

fn backing(node: &Fulcrum) -> Vec<u8> {
    std::fs::read(node.dir().join("data.img")).unwrap()
}

fn connected(node: &Fulcrum) -> bool {
    let s = status(node);
    s["connection"] == "Connected" && s["disk"] == "UpToDate" && s["peer_disk"] == "UpToDate"
}

/// Random bytes from /dev/urandom into `path`.
fn random_file(path: &Path, len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut data = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    std::fs::write(path, &data).unwrap();
    data
}

#[test]
fn protocol_c_writes_are_on_the_secondary_when_nbdcopy_returns() {
    if !support::require_tool("nbdcopy") {
        return;
    }
    let (a, b) = pair("C");
    let sa = status(&a);
    assert_eq!(sa["role"], "Primary");
    assert_eq!(sa["peer_role"], "Secondary");
    assert_eq!(sa["protocol"], "C");
    // A brand-new pair starts in sync: nothing to resync.
    assert_eq!(sa["out_of_sync_bytes"], 0);
    assert!(status(&b)["nbd"].is_null(), "a secondary serves no NBD");

    // 256 MiB of random data through NBD, no flush asked: with protocol C, acknowledged
    // means on both disks.
    let data = nbdcopy_random(&a, false);
    assert!(
        backing(&a) == data,
        "the primary's own copy differs; {}",
        diagnosis(&a, &b)
    );
    assert!(
        backing(&b) == data,
        "the secondary's copy differs; {}",
        diagnosis(&a, &b)
    );

    // The /proc/drbd view.
    let text = status_text(&a, "volume");
    assert!(
        text.contains(" data: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C"),
        "{text}"
    );

    // drbdadm's verbs: the primary cannot be promoted on the secondary while it is primary.
    let (ok, _, err) = fulcrum_on(&b, &["volume"], &["primary", "data"]);
    assert!(!ok, "two primaries were allowed");
    assert!(!err.is_empty());
    let (ok, out, err) = fulcrum_on(&a, &["volume"], &["secondary", "data"]);
    assert!(ok, "demote: {out} {err}");
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || status(&a)["nbd"]
            .is_null()),
        "NBD still served after demotion"
    );
    let (ok, out, err) = fulcrum_on(&b, &["volume"], &["primary", "data"]);
    assert!(ok, "promote the other side: {out} {err}");
    assert!(status(&b)["nbd"].is_string());
}

/// `/metrics` carries the volume's role, link and disk as one-hot gauges and its counters, so a
/// Prometheus rule can page on `fulcrum_volume_connection{state="Connected"} == 0`.
#[test]
fn the_volume_state_is_in_the_prometheus_metrics() {
    let (pa, pb) = (free_addr(), free_addr());
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let a = Fulcrum::start(&format!("{}{admin}", volume(pa, pb, "primary", "C")));
    let metrics = || a.metrics();
    let text = metrics();
    assert!(
        text.contains(r#"fulcrum_volume_connection{state="WFConnection",volume="data"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"fulcrum_volume_role{role="Primary",volume="data"} 1"#));

    let _b = Fulcrum::start(&volume(pb, pa, "secondary", "C"));
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || {
            metrics().contains(r#"fulcrum_volume_connection{state="Connected",volume="data"} 1"#)
        }),
        "the link never showed as Connected: {}",
        metrics()
    );
    assert!(metrics().contains(r#"fulcrum_volume_disk{state="UpToDate",volume="data"} 1"#));
}

// Input: a node whose backing file did not exist at start (so it was created), then a reload
// of the unchanged file. Output: the volume is neither restarted nor kept with a warning; the
// file names a backing that now exists, and that used to look like a change on every reload.
#[test]
fn a_reload_of_an_unchanged_volume_does_not_warn_of_a_change() {
    let node = Fulcrum::start(&volume(free_addr(), free_addr(), "secondary", "C"));
    assert!(node.dir().join("data.img").exists());
    let from = node.log_len();
    assert!(node.reload());
    // The warning would follow the `reloaded` line that `reload` waits for.
    std::thread::sleep(Duration::from_millis(300));
    let changed = node.logs()[from..].iter().any(|l| {
        let message = support::message(l);
        message.starts_with("[volume]") || message.contains("reloaded [volume]")
    });
    assert!(
        !changed,
        "an unchanged [volume] was taken for a changed one"
    );
}

/// Every volume `fulcrum status volume --json` lists, in name order.
fn all_volumes(node: &Fulcrum) -> Vec<serde_json::Value> {
    let (ok, out, err) = fulcrum_on(node, &["status", "volume", "--json"], &[]);
    assert!(ok, "fulcrum status volume: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Whether `nbdinfo` finds `export` at `nbd` (host:port).
fn nbd_answers(nbd: &str, export: &str) -> bool {
    std::process::Command::new("nbdinfo")
        .args(["--size", &format!("nbd://{nbd}/{export}")])
        .output()
        .unwrap()
        .status
        .success()
}

/// How many of `node`'s log lines say `message` of `volume`.
fn logged(node: &Fulcrum, message: &str, volume: &str) -> usize {
    node.logs()
        .iter()
        .filter(|l| support::message(l) == message && l["volume"] == volume)
        .count()
}

// Input: A primary and B secondary for `data`, connected, A alerting on volume events. A is
// reloaded with `data`'s export renamed while primary, then again once demoted; then with a
// second volume added, then removed. Output: as `drbdadm adjust`, the primary is left on its
// old section (warned, still serving the old export); once secondary it restarts on the new
// one, secondary as it was, reconnects (and that is alerted: the alerts follow the restarted
// volume), and serves the new export when promoted; the added volume runs beside `data`
// without restarting it, and the removed one stops and lets go of its port.
#[test]
fn a_reload_adds_restarts_and_removes_volumes_as_drbdadm_adjust() {
    const KEPT: &str = "[volume] changed or removed, but the volume is primary: it keeps running on its old settings; demote it (fulcrum volume secondary NAME, or move its VRRP instance to the peer), then reload";
    const STOPPING: &str = "[volume] section changed or removed: stopping the volume";
    const STARTED: &str = "volume started on the reloaded [volume] section";
    if !support::require_tool("nbdinfo") {
        return;
    }
    let (pa, pb) = (free_addr(), free_addr());
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("alerts.txt");
    let script = dir.path().join("alert.sh");
    std::fs::write(&script, format!("#!/bin/sh\ncat >> {}\n", texts.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let alert = format!(
        "[alert]\nevents = [\"volume\"]\ncommand = \"{}\"\nrate_limit = {{ max = 20, window = \"1m\" }}\n",
        script.display()
    );
    let a_config = format!("{}{alert}", volume(pa, pb, "primary", "C"));
    let a = Fulcrum::start(&a_config);
    let b = Fulcrum::start(&volume(pb, pa, "secondary", "C"));
    let connected = |n: &Fulcrum| status(n)["connection"] == "Connected";
    let links_up = || {
        std::fs::read_to_string(&texts)
            .unwrap_or_default()
            .matches("=> Volume replication link is up <=")
            .count()
    };
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || connected(&a)
            && links_up() == 1),
        "never connected, or not alerted: {}",
        status(&a)
    );
    let nbd = status(&a)["nbd"].as_str().unwrap().to_owned();
    assert!(nbd_answers(&nbd, "data"));

    // Primary: the renamed export waits.
    let renamed = a_config.replace("export = \"data\"", "export = \"renamed\"");
    assert_ne!(renamed, a_config);
    let from = a.log_len();
    a.write_config(&renamed);
    assert!(a.reload());
    a.wait_log_from(from, |l| {
        support::message(l) == KEPT && l["volume"] == "data"
    });
    assert_eq!(status(&a)["role"], "Primary");
    assert_eq!(logged(&a, STOPPING, "data"), 0);
    assert!(nbd_answers(&nbd, "data"), "the primary stopped serving");

    // Secondary: restarted on the new section, secondary still, and connected again.
    let (ok, out, err) = fulcrum_on(&a, &["volume"], &["secondary", "data"]);
    assert!(ok, "demote: {out} {err}");
    let from = a.log_len();
    assert!(a.reload());
    a.wait_log_from(from, |l| {
        support::message(l) == STARTED && l["volume"] == "data"
    });
    assert_eq!(logged(&a, STOPPING, "data"), 1);
    assert_eq!(status(&a)["role"], "Secondary", "the restart promoted it");
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || connected(&a)
            && links_up() == 2),
        "the restarted volume never reconnected, or its link was not alerted: {} / {:?}",
        status(&a),
        std::fs::read_to_string(&texts)
    );
    let (ok, out, err) = fulcrum_on(&a, &["volume"], &["primary", "data"]);
    assert!(ok, "promote: {out} {err}");
    let nbd = status(&a)["nbd"].as_str().unwrap().to_owned();
    assert!(nbd_answers(&nbd, "renamed"), "the new export is not served");
    assert!(!nbd_answers(&nbd, "data"), "the old export is still served");

    // A second volume added beside it (its peer never comes), then removed.
    let logs_port = free_addr();
    let logs = volume(logs_port, support::dead_addr(), "secondary", "C")
        .replace("[volume.data]", "[volume.logs]")
        .replace("data.img", "logs.img");
    a.write_config(&format!("{renamed}{logs}"));
    let from = a.log_len();
    assert!(a.reload());
    a.wait_log_from(from, |l| {
        support::message(l) == STARTED && l["volume"] == "logs"
    });
    let names: Vec<_> = all_volumes(&a).iter().map(|v| v["name"].clone()).collect();
    assert_eq!(names, ["data", "logs"]);
    assert_eq!(
        logged(&a, STOPPING, "data"),
        1,
        "adding a volume restarted another"
    );
    assert!(std::net::TcpStream::connect(logs_port).is_ok());

    let from = a.log_len();
    a.write_config(&renamed);
    assert!(a.reload());
    a.wait_log_from(from, |l| {
        support::message(l) == STOPPING && l["volume"] == "logs"
    });
    // Stopped cleanly: NBD drained, the metadata closed with its clean flag.
    a.wait_log_from(from, |l| {
        support::message(l) == "volume stopped" && l["volume"] == "logs"
    });
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || all_volumes(&a)
            .len()
            == 1),
        "the removed volume still runs: {:?}",
        all_volumes(&a)
    );
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || {
            std::net::TcpStream::connect(logs_port).is_err()
        }),
        "the removed volume still listens"
    );
    assert_eq!(status(&a)["role"], "Primary");
    drop(b);
}

// Input: a secondary volume whose peer never comes, and a reload that moves its `listen` to a
// port another process holds. Output: the new section cannot start, so the volume starts again
// on its previous one (logged), runs, and listens on its old port. (It was stopped and left
// down until the next reload: its instance's next MASTER had no volume to promote.)
#[test]
fn a_volume_whose_new_section_cannot_start_runs_on_its_previous_one() {
    let port = free_addr();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = volume(port, support::dead_addr(), "secondary", "C");
    let node = Fulcrum::start(&config);
    let moved = config.replace(&port.to_string(), &taken.local_addr().unwrap().to_string());
    assert_ne!(moved, config);
    node.write_config(&moved);
    let from = node.log_len();
    assert!(node.reload());
    let restored = node.wait_log_from(from, |l| {
        let m = support::message(l);
        m.contains("the volume `data`") && (m.contains("previous one") || m.contains("not running"))
    });
    assert!(
        support::message(&restored).ends_with("it keeps serving with the previous one"),
        "{restored:#}"
    );
    let names: Vec<_> = all_volumes(&node)
        .iter()
        .map(|v| v["name"].clone())
        .collect();
    assert_eq!(names, ["data"]);
    assert!(
        std::net::TcpStream::connect(port).is_ok(),
        "not listening on its old port"
    );
}

// Input: a running secondary volume whose backing file is grown to 512 MiB, and a reload whose
// section says so. Output: the volume keeps running on its old size, warned (its metadata
// holds the size, and a restart would refuse the difference), rather than stopped and left
// down by a restart that fails.
#[test]
fn a_reload_keeps_a_volume_whose_backing_grew_on_its_old_size() {
    let config = volume(free_addr(), free_addr(), "secondary", "C");
    let node = Fulcrum::start(&config);
    std::fs::File::options()
        .write(true)
        .open(node.dir().join("data.img"))
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    let grown = config.replace("size = \"256MiB\"", "size = \"512MiB\"");
    assert_ne!(grown, config);
    let from = node.log_len();
    node.write_config(&grown);
    assert!(node.reload());
    let kept = node.wait_log_from(from, |l| {
        support::message(l).starts_with("[volume] changed, but its backing's size differs")
    });
    assert_eq!(kept["new_size"], 512 << 20, "{kept}");
    assert_eq!(
        logged(
            &node,
            "[volume] section changed or removed: stopping the volume",
            "data"
        ),
        0
    );
    assert_eq!(all_volumes(&node).len(), 1);
    assert_eq!(status(&node)["disk"], "UpToDate");
}
