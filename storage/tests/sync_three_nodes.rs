//! Three sync nodes, as the "two or three sync nodes" allows: a full mesh (each node the
//! other two's peer, as `peers` lists them), and a chain where the middle node passes changes on.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/sync_nodes.rs"]
#[allow(dead_code, reason = "this test uses some of the sync helpers")]
mod support;

use std::fs;
use std::time::{Duration, Instant};

use fulcrum_storage::sync::SyncSet;
use support::{Node, connected, converge, nodes, tree};

/// Generous, as the suite runs many tests at once on two cores; the time taken is printed.
const PATIENCE: Duration = Duration::from_secs(30);

/// Starts every node of `n` and waits until each is connected to all its peers.
async fn start_connected(n: &mut [Node]) -> Vec<SyncSet> {
    let mut sets = Vec::new();
    for node in n.iter_mut() {
        sets.push(node.start().await);
    }
    for set in &sets {
        connected(set, Duration::from_secs(10)).await;
    }
    sets
}

/// Waits until all of `n` hold the same tree at once, and prints how long it took. A pair that
/// agrees may still be missing a change the third has: A and B agree at once when neither has
/// C's new file yet.
async fn all_converge(n: &[Node], what: &str) {
    let start = Instant::now();
    loop {
        converge(&n[0], &n[1], PATIENCE).await;
        converge(&n[0], &n[2], PATIENCE).await;
        let a = tree(&n[0].root);
        if a == tree(&n[1].root) && a == tree(&n[2].root) {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "{what}: never all three alike");
    }
    println!("{what}: all three alike in {:?}", start.elapsed());
}

// Input: three nodes, each the peer of the other two. A creates a file, B modifies it, C
// deletes it; then A and C each write a different file at the same moment. Output: after each
// step all three trees match (content hashes, modes, mtimes), and both new files are on all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mesh_of_three_converges_on_every_change() {
    let mut n = nodes(&["a", "b", "c"]);
    let sets = start_connected(&mut n).await;

    n[0].write("page.html", b"from A");
    all_converge(&n, "create on A").await;
    assert_eq!(fs::read(n[2].path("page.html")).unwrap(), b"from A");

    n[1].write("page.html", b"edited on B");
    all_converge(&n, "modify on B").await;
    assert_eq!(fs::read(n[0].path("page.html")).unwrap(), b"edited on B");

    fs::remove_file(n[2].path("page.html")).unwrap();
    all_converge(&n, "delete on C").await;
    assert!(!n[0].path("page.html").exists());

    n[0].write("upload-a.jpg", &[1u8; 40_000]);
    n[2].write("upload-c.jpg", &[3u8; 50_000]);
    all_converge(&n, "simultaneous writes on A and C").await;
    assert_eq!(fs::read(n[1].path("upload-a.jpg")).unwrap(), [1u8; 40_000]);
    assert_eq!(fs::read(n[1].path("upload-c.jpg")).unwrap(), [3u8; 50_000]);

    for set in &sets {
        assert_eq!(set.status().counters.errors, 0, "{:?}", set.status());
    }
    for set in sets {
        set.stop().await.unwrap();
    }
}

// Input: A's only peer is B, B's are A and C, C's only peer is B. A writes a file, C edits it.
// Output: C gets A's file and A gets C's edit, each through B, which applied it and passed it
// on from its own index.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chain_passes_changes_through_the_middle_node() {
    let mut n = nodes(&["a", "b", "c"]);
    let (a, b, c) = (n[0].addr, n[1].addr, n[2].addr);
    n[0].config.peers = vec![b];
    n[1].config.peers = vec![a, c];
    n[2].config.peers = vec![b];
    let sets = start_connected(&mut n).await;

    n[0].write("docs/readme.txt", b"written on A");
    all_converge(&n, "create on A").await;
    assert_eq!(
        fs::read(n[2].path("docs/readme.txt")).unwrap(),
        b"written on A"
    );

    n[2].write("docs/readme.txt", b"edited on C");
    all_converge(&n, "modify on C").await;
    assert_eq!(
        fs::read(n[0].path("docs/readme.txt")).unwrap(),
        b"edited on C"
    );

    for set in sets {
        set.stop().await.unwrap();
    }
}

// Input: a mesh of three holding one file; C stopped; A edits the file (B gets the edit), then
// C edits it too, later, while down. Output: once C is back, all three hold C's edit and one
// conflict copy of A's edit, the same on each. B, which held A's version as well, lost the
// same conflict: its copy, if it made one, has the same name and content, so it merges with
// A's instead of adding a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflict_in_a_mesh_of_three_leaves_one_copy_on_each() {
    let mut n = nodes(&["a", "b", "c"]);
    let mut sets = start_connected(&mut n).await;
    n[0].write("report.txt", b"original");
    all_converge(&n, "create on A").await;

    sets.pop().unwrap().stop().await.unwrap();
    n[0].write("report.txt", b"changed on a");
    converge(&n[0], &n[1], PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    n[2].write("report.txt", b"changed on c, later");
    sets.push(n[2].start().await);
    connected(&sets[2], Duration::from_secs(10)).await;
    all_converge(&n, "C back with its edit").await;

    for node in &n {
        let files: Vec<String> = tree(&node.root).into_keys().collect();
        assert_eq!(files.len(), 2, "{}: {files:?}", node.name);
        assert_eq!(
            fs::read(node.path("report.txt")).unwrap(),
            b"changed on c, later"
        );
        assert!(
            files[0].starts_with("report.conflict-a-"),
            "{}: {files:?}",
            node.name
        );
        assert_eq!(fs::read(node.path(&files[0])).unwrap(), b"changed on a");
    }
    let conflicts: u64 = sets.iter().map(|set| set.status().conflicts).sum();
    assert!(conflicts >= 1, "no node counted the conflict");
    for set in sets {
        assert_eq!(set.status().counters.errors, 0, "{:?}", set.status());
        set.stop().await.unwrap();
    }
}
