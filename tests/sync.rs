//! `[sync.NAME]` end to end: two `fulcrum run` processes on loopback keep one directory in
//! step both ways (the upload directory of seed 004, writable on either web server), and
//! `fulcrum status sync` reports them.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::Duration;

use support::{Fulcrum, PATIENCE, free_port, netns::wait_until, status_json, status_text};

/// One node's `[sync.uploads]` on `dir/uploads`, created first (the path must exist).
fn node(dir: &std::path::Path, listen: u16, peer: u16) -> String {
    let uploads = dir.join("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    format!(
        "[sync.uploads]\npath = \"{}\"\nlisten = \"127.0.0.1:{listen}\"\npeers = [\"127.0.0.1:{peer}\"]\n\
         shared_secret = \"s3cret\"\ndelay = \"50ms\"\nexclude = [\"*.tmp\"]\n",
        uploads.display()
    )
}

fn status(node: &Fulcrum) -> serde_json::Value {
    status_json(node, "sync")
}

#[test]
fn an_upload_on_either_node_appears_on_the_other() {
    let (pa, pb) = (free_port(), free_port());
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
    let (pa, pb) = (free_port(), free_port());
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
