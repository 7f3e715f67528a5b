//! `delete_retention`: a node forgets old deletions (their tombstones leave its index), and a
//! path made again afterwards still reaches a peer that remembers the deletion.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/sync_nodes.rs"]
#[allow(dead_code, reason = "this test uses some of the sync helpers")]
mod support;

use std::fs;
use std::time::Duration;

use fulcrum_storage::sync::SyncOptions;
use fulcrum_storage::sync::index::{INDEX_FILE, Index, index_dir};
use support::{SET, connected, converge, nodes, wait_for};

const PATIENCE: Duration = Duration::from_secs(30);

// Input: A forgets deletions after 300 ms (looking every 50 ms), B keeps them for ever. A
// file made on A reaches B; A deletes it, and B deletes it too. Output: A's index on disk
// drops the deletion while B's keeps it. Then A makes the file again, two seconds later: B
// takes it, though it still remembers the deletion (A's new version is not older than it,
// see `VersionVector::bump`), and neither node counts an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forgotten_deletion_leaves_the_index_and_the_path_can_come_back() {
    let mut n = nodes(&["a", "b"]);
    n[0].config.delete_retention = Some(Duration::from_millis(300));
    let options = || SyncOptions {
        forget_interval: Duration::from_millis(50),
        ..SyncOptions::default()
    };
    let a = n[0].start_with(options()).await;
    let b = n[1].start_with(options()).await;
    connected(&a, Duration::from_secs(10)).await;

    n[0].write("uploads/photo.jpg", b"first");
    converge(&n[0], &n[1], PATIENCE).await;
    fs::remove_file(n[0].path("uploads/photo.jpg")).unwrap();
    converge(&n[0], &n[1], PATIENCE).await;

    // Read, not opened: `Index::open` clears the directory's temporary files, which would
    // remove a save of the running node's under way, and fail it.
    let on_disk = |node: usize| Index::load(&index_dir(&n[node].state, SET).join(INDEX_FILE));
    let forgotten = wait_for(PATIENCE, || {
        on_disk(0).is_ok_and(|index| index.get("uploads/photo.jpg").is_none())
    })
    .await;
    assert!(forgotten.is_some(), "A never forgot the deletion");
    let b_index = on_disk(1).unwrap();
    assert!(b_index.get("uploads/photo.jpg").is_some_and(|e| e.deleted));

    // A version counter is at least the clock's second, and one more than it was: the
    // deletion's counter is at most a second ahead of its clock, so two seconds on the new
    // version is certain to be past it. (In use, `delete_retention` is at least an hour.)
    tokio::time::sleep(Duration::from_millis(2100)).await;
    n[0].write("uploads/photo.jpg", b"second");
    converge(&n[0], &n[1], PATIENCE).await;
    assert_eq!(fs::read(n[1].path("uploads/photo.jpg")).unwrap(), b"second");

    for set in [&a, &b] {
        assert_eq!(set.status().counters.errors, 0, "{:?}", set.status());
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
