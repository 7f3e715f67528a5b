//! `[sync.NAME]` end to end: two `fulcrum run` processes on loopback keep one directory in
//! step both ways (the upload directory of seed 004, writable on either web server), and
//! `fulcrum status sync` reports them.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::Duration;

use support::{Fulcrum, PATIENCE, free_addr, message, netns::wait_until, status_json, status_text};

/// One node's `[sync.uploads]` on `dir/uploads`, created first (the path must exist).
fn node(dir: &std::path::Path, listen: std::net::SocketAddr, peer: std::net::SocketAddr) -> String {
    let uploads = dir.join("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    format!(
        "[sync.uploads]\npath = \"{}\"\nlisten = \"{listen}\"\npeers = [\"{peer}\"]\n\
         shared_secret = \"s3cret\"\ndelay = \"50ms\"\nexclude = [\"*.tmp\"]\n",
        uploads.display()
    )
}

fn status(node: &Fulcrum) -> serde_json::Value {
    status_json(node, "sync")
}

#[test]
fn an_upload_on_either_node_appears_on_the_other() {
    let (pa, pb) = (free_addr(), free_addr());
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = Fulcrum::start(&node(a_dir.path(), pa, pb));
    let b = Fulcrum::start(&node(b_dir.path(), pb, pa));
    let (ua, ub) = (a_dir.path().join("uploads"), b_dir.path().join("uploads"));
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || status(&a)["state"]
            == "connected"
            && status(&b)["state"] == "connected"),
        "never connected: {} / {}",
        status(&a),
        status(&b)
    );

    // An upload on A (the node the L7 tier sent the POST to) is on B within a second or so.
    std::fs::create_dir_all(ua.join("2026/11")).unwrap();
    std::fs::write(ua.join("2026/11/photo.jpg"), b"jpeg bytes").unwrap();
    assert!(
        wait_until(PATIENCE, Duration::from_millis(20), || {
            std::fs::read(ub.join("2026/11/photo.jpg")).is_ok_and(|d| d == b"jpeg bytes")
        }),
        "A's upload never reached B"
    );
    // And the other way: the seed's one-way rsync could not do this.
    std::fs::write(ub.join("avatar.png"), b"png bytes").unwrap();
    assert!(
        wait_until(PATIENCE, Duration::from_millis(20), || {
            std::fs::read(ua.join("avatar.png")).is_ok_and(|d| d == b"png bytes")
        }),
        "B's upload never reached A"
    );
    // Excluded files stay where they are.
    std::fs::write(ua.join("partial.tmp"), b"x").unwrap();
    std::fs::remove_file(ua.join("avatar.png")).unwrap();
    assert!(
        wait_until(PATIENCE, Duration::from_millis(20), || !ub
            .join("avatar.png")
            .exists()),
        "a delete did not propagate"
    );
    assert!(
        !ub.join("partial.tmp").exists(),
        "an excluded file was sent"
    );

    let sb = status(&b);
    assert!(sb["files_received"].as_u64().unwrap() >= 1, "{sb}");
    assert_eq!(sb["conflicts"], 0);
    let text = status_text(&b, "sync");
    assert!(text.contains("sync set uploads"), "{text}");
    assert!(text.contains(" up"), "{text}");
}

/// `/metrics` carries each set's peers, queue and counters.
#[test]
fn the_sync_state_is_in_the_prometheus_metrics() {
    let (pa, pb) = (free_addr(), free_addr());
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let a = Fulcrum::start(&format!("{}{admin}", node(a_dir.path(), pa, pb)));
    let metrics = || a.metrics();
    let text = metrics();
    assert!(
        text.contains(r#"fulcrum_sync_connected_peers{sync="uploads"} 0"#),
        "{text}"
    );
    let _b = Fulcrum::start(&node(b_dir.path(), pb, pa));
    std::fs::write(a_dir.path().join("uploads/a.txt"), b"hello").unwrap();
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || {
            let text = metrics();
            text.contains(r#"fulcrum_sync_connected_peers{sync="uploads"} 1"#)
                && text.contains(r#"fulcrum_sync_files_total{direction="sent",sync="uploads"} 1"#)
        }),
        "the peer and the sent file never showed: {}",
        metrics()
    );
    assert!(metrics().contains(r#"fulcrum_sync_peers{sync="uploads"} 1"#));
}

// Input: a set whose peer never comes, and a reload that moves its `listen` to a port another
// process holds. Output: the new section cannot start, so the set starts again on its previous
// one (logged), and listens on its old port. (It was stopped and left down until the next
// reload, and the directories drifted apart meanwhile.)
#[test]
fn a_set_whose_new_section_cannot_start_runs_on_its_previous_one() {
    let port = free_addr();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = node(dir.path(), port, support::dead_addr());
    let a = Fulcrum::start(&config);
    let moved = config.replace(&port.to_string(), &taken.local_addr().unwrap().to_string());
    assert_ne!(moved, config);
    a.write_config(&moved);
    let from = a.log_len();
    assert!(a.reload());
    let restored = a.wait_log_from(from, |l| {
        let m = message(l);
        m.contains("the sync set `uploads`")
            && (m.contains("previous one") || m.contains("not running"))
    });
    assert!(
        message(&restored).ends_with("it keeps serving with the previous one"),
        "{restored:#}"
    );
    assert_eq!(status(&a)["name"], "uploads");
    assert!(
        std::net::TcpStream::connect(port).is_ok(),
        "not listening on its old port"
    );
}

/// A reload that changes a set's section restarts that set on the new section (here an
/// `exclude` pattern added), as a restart of Fulcrum would, and the alerts follow the new set;
/// a reload that leaves the section as it is leaves the set running.
#[test]
fn a_reload_restarts_a_changed_set_on_its_new_section_and_the_alerts_follow_it() {
    let (pa, pb) = (free_addr(), free_addr());
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let (ua, ub) = (a_dir.path().join("uploads"), b_dir.path().join("uploads"));
    // A's alert command appends each alert's text to a file.
    let texts = a_dir.path().join("alerts.txt");
    let script = a_dir.path().join("alert.sh");
    std::fs::write(&script, format!("#!/bin/sh\ncat >> {}\n", texts.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The link up at start and again after the restart, then lost: room past the flap limit.
    let alert = format!(
        "[alert]\nevents = [\"sync\"]\ncommand = \"{}\"\nrate_limit = {{ max = 20, window = \"1m\" }}\n",
        script.display()
    );
    let a_config = format!("{}{alert}", node(a_dir.path(), pa, pb));
    let a = Fulcrum::start(&a_config);
    let mut b = Some(Fulcrum::start(&node(b_dir.path(), pb, pa)));
    let connected = |n: &Fulcrum| status(n)["state"] == "connected";
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || connected(&a)),
        "never connected: {}",
        status(&a)
    );
    let arrives = |name: &str| {
        wait_until(PATIENCE, Duration::from_millis(20), || {
            ub.join(name).exists()
        })
    };
    std::fs::write(ua.join("before.log"), b"1").unwrap();
    assert!(arrives("before.log"), "before.log never reached B");

    // The same file again: nothing to restart.
    assert!(a.reload(), "the unchanged reload applied");
    // `*.log` excluded from now on.
    let restarted = a.log_len();
    a.write_config(&a_config.replace("exclude = [\"*.tmp\"]", "exclude = [\"*.tmp\", \"*.log\"]"));
    assert!(a.reload(), "the changed reload applied");
    a.wait_log_from(restarted, |l| {
        message(l) == "sync set started on the reloaded [sync] section" && l["sync"] == "uploads"
    });
    let stops = a
        .logs()
        .iter()
        .filter(|l| message(l) == "[sync] section changed or removed: stopping the set")
        .count();
    assert_eq!(stops, 1, "only the changed section restarts its set");
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || connected(&a)),
        "the restarted set never reconnected: {}",
        status(&a)
    );
    std::fs::write(ua.join("after.log"), b"2").unwrap();
    // A batch later, so that after.log would have gone first had it not been excluded.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(ua.join("after.txt"), b"3").unwrap();
    assert!(arrives("after.txt"), "after.txt never reached B");
    assert!(
        !ub.join("after.log").exists(),
        "the restarted set still sent what its new section excludes"
    );

    // The alerts follow the new set: B going away is reported.
    let lost = || {
        std::fs::read_to_string(&texts)
            .unwrap_or_default()
            .matches("=> Sync peer unreachable <=")
            .count()
    };
    let before = lost();
    drop(b.take());
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || lost() > before),
        "no alert when the restarted set lost its peer: {}",
        std::fs::read_to_string(&texts).unwrap_or_default()
    );

    // A section removed stops its set, which lets go of its address.
    a.write_config(&alert);
    assert!(a.reload(), "the reload without [sync] applied");
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || status(&a).is_null()),
        "the set of the removed section still runs: {}",
        status(&a)
    );
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || {
            std::net::TcpStream::connect(pa).is_err()
        }),
        "the removed set still listens"
    );
}
