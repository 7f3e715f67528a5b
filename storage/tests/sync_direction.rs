//! `direction = "push"` and `"pull"`, as seed 004 runs the pair one way: the upload node pushes,
//! the web node pulls. Changes flow from the pushing node only.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/sync_nodes.rs"]
#[allow(dead_code, reason = "this test uses some of the sync helpers")]
mod support;

use std::fs;
use std::time::Duration;

use fulcrum_storage::sync::config::Direction;
use support::{connected, converge, nodes, wait_for};

/// Generous, as the suite runs many tests at once on two cores.
const PATIENCE: Duration = Duration::from_secs(30);

/// Long enough for a change to cross loopback many times over (they take tens of ms), so a
/// change that has not crossed by then is not going to.
const SETTLE: Duration = Duration::from_millis(500);

// Input: A pushes, B pulls. A writes, modifies and deletes files; then B writes a file of its
// own. Output: B follows every change of A; B's own file stays on B, and A's tree is untouched
// by it (A neither receives it nor lists it as a conflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_node_feeds_a_pull_node_and_nothing_flows_back() {
    let mut n = nodes(&["upload", "web"]);
    n[0].config.direction = Direction::Push;
    n[1].config.direction = Direction::Pull;
    let a = n[0].start().await;
    let b = n[1].start().await;
    connected(&a, Duration::from_secs(10)).await;

    n[0].write("images/one.jpg", &[1u8; 30_000]);
    n[0].write("index.html", b"v1");
    converge(&n[0], &n[1], PATIENCE).await;
    n[0].write("index.html", b"v2, from the upload node");
    fs::remove_file(n[0].path("images/one.jpg")).unwrap();
    converge(&n[0], &n[1], PATIENCE).await;
    assert_eq!(
        fs::read(n[1].path("index.html")).unwrap(),
        b"v2, from the upload node"
    );
    assert!(!n[1].path("images/one.jpg").exists());

    n[1].write("local-only.txt", b"written on the pull node");
    let crossed = wait_for(SETTLE, || n[0].path("local-only.txt").exists()).await;
    assert!(
        crossed.is_none(),
        "a pull node's change reached the push node"
    );
    let on_a: Vec<String> = fs::read_dir(&n[0].root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        on_a.iter().all(|name| !name.contains("local-only")),
        "nothing of B's file on A: {on_a:?}"
    );
    assert!(n[1].path("local-only.txt").exists());

    // A's later changes still reach B, beside B's own file.
    n[0].write("index.html", b"v3");
    let arrived = wait_for(PATIENCE, || {
        fs::read(n[1].path("index.html")).is_ok_and(|c| c == b"v3")
    })
    .await;
    assert!(arrived.is_some(), "A's change after B's own write");
    assert_eq!(a.status().counters.errors + b.status().counters.errors, 0);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

// Input: A syncs both ways with B, which only pushes. A writes files, which B never applies;
// then B goes away and A restarts. Output: A counts nothing waiting for B, linked or not,
// before and after its restart, since B would never take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_waits_for_a_peer_that_only_pushes() {
    let mut n = nodes(&["web", "upload"]);
    n[1].config.direction = Direction::Push;
    let a = n[0].start().await;
    let b = n[1].start().await;
    connected(&a, Duration::from_secs(10)).await;
    n[1].write("from-b.txt", b"pushed");
    let arrived = wait_for(PATIENCE, || n[0].path("from-b.txt").exists()).await;
    assert!(arrived.is_some(), "B's push never reached A");
    n[0].write("a-only.txt", b"B does not take this");
    tokio::time::sleep(SETTLE).await;
    let queue = |set: &fulcrum_storage::sync::SyncSet| set.status().peers[0].queue;
    assert_eq!(queue(&a), 0, "nothing waits for a push-only peer");
    b.stop().await.unwrap();
    a.stop().await.unwrap();
    let a = n[0].start().await;
    n[0].write("after-restart.txt", b"nor this");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(queue(&a), 0, "after A's restart, with B away");
    a.stop().await.unwrap();
}
