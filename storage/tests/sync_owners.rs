//! Owners and groups, as `rsync -o -g` keeps them when run as root: a received file has its
//! owner from the moment it appears, a `chown` alone reaches the peer without the content, and
//! a node with `owners = false` neither applies its peers'
//! owners nor sends its own, while the node that syncs them keeps a file's owner when that
//! node replaces the content. Changing owners needs root: without it, each test says so and
//! returns (CI runs as root).

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/sync_nodes.rs"]
#[allow(dead_code, reason = "this test uses some of the sync helpers")]
mod support;

use std::fs;
use std::os::unix::fs::lchown;
use std::time::Duration;

use fulcrum_storage::sync::owner::can_chown;
use support::{
    Node, connected, converge, nodes, owner, started_pair, stop_both, wait_for, wait_received,
};

/// Generous, as the suite runs many tests at once on two cores.
const PATIENCE: Duration = Duration::from_secs(30);

/// Long enough for a change to cross loopback many times over (they take tens of ms).
const SETTLE: Duration = Duration::from_millis(500);

/// Whether `node`'s `rel` holds `content` now.
fn holds(node: &Node, rel: &str, content: &[u8]) -> bool {
    fs::read(node.path(rel)).is_ok_and(|c| c == content)
}

fn needs_root() -> bool {
    if can_chown() {
        return false;
    }
    assert!(std::env::var_os("CI").is_none(), "CI runs as root");
    eprintln!("skipped: changing a file's owner needs root");
    true
}

// Input: a 200 kB file synced, then `chown 4242:4343` on A. Output: B's copy gets the new
// owner and group, with no file received and no content byte sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chown_alone_is_sent_without_the_content() {
    if needs_root() {
        return;
    }
    let (n, a, b) = started_pair().await;
    n[0].write("photo.jpg", &vec![7u8; 200_000]);
    converge(&n[0], &n[1], PATIENCE).await;
    let (sent, received) = (a.status().counters.bytes_sent, wait_received(&b, 1).await);
    lchown(n[0].path("photo.jpg"), Some(4242), Some(4343)).unwrap();
    converge(&n[0], &n[1], PATIENCE).await;
    assert_eq!(owner(&n[1].path("photo.jpg")), (4242, 4343));
    assert_eq!(a.status().counters.bytes_sent, sent, "content sent again");
    assert_eq!(b.status().counters.files_received, received);
    stop_both(a, b).await;
}

// Input: an upload owned by 4242:4343 renamed into place on A; then a 300 kB file given that
// owner, synced, and rewritten on A (sent as a delta). Output: B's copies have that owner as
// soon as they appear, and after the rewrite nothing comes back to A: A's copies keep their
// owner, and A receives no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_received_file_has_its_owner_from_the_start() {
    if needs_root() {
        return;
    }
    let (n, a, b) = started_pair().await;
    let upload = n[0].state.join("upload.tmp");
    fs::create_dir_all(&n[0].state).unwrap();
    fs::write(&upload, b"an upload").unwrap();
    lchown(&upload, Some(4242), Some(4343)).unwrap();
    fs::rename(&upload, n[0].path("upload.jpg")).unwrap();
    let seen = wait_for(PATIENCE, || n[1].path("upload.jpg").exists()).await;
    assert!(seen.is_some(), "the upload never reached B");
    assert_eq!(owner(&n[1].path("upload.jpg")), (4242, 4343));

    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    n[0].write("big.bin", &big);
    lchown(n[0].path("big.bin"), Some(4242), Some(4343)).unwrap();
    converge(&n[0], &n[1], PATIENCE).await;
    let mut edited = big;
    edited[1000] ^= 0xff;
    fs::write(n[0].path("big.bin"), &edited).unwrap();
    converge(&n[0], &n[1], PATIENCE).await;
    assert_eq!(fs::read(n[1].path("big.bin")).unwrap(), edited);
    assert!(
        b.status().counters.bytes_saved_by_delta > 0,
        "sent as a delta"
    );
    tokio::time::sleep(SETTLE).await;
    for node in &n {
        assert_eq!(owner(&node.path("big.bin")), (4242, 4343), "{}", node.name);
        assert_eq!(
            owner(&node.path("upload.jpg")),
            (4242, 4343),
            "{}",
            node.name
        );
    }
    assert_eq!(a.status().counters.files_received, 0);
    stop_both(a, b).await;
}

// Input: A syncs owners, B has `owners = false`. A makes a file owned by 4242:4343; then B
// rewrites its content. Output: B's copy stays owned by B's user (root) and B's status counts
// no error; A takes B's content and keeps the file's owner rather than taking root.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_does_not_sync_owners_neither_applies_nor_sends_them() {
    if needs_root() {
        return;
    }
    let mut n = nodes(&["a", "b"]);
    n[1].config.owners = false;
    let a = n[0].start().await;
    let b = n[1].start().await;
    connected(&a, Duration::from_secs(5)).await;

    n[0].write("upload.bin", b"from A");
    lchown(n[0].path("upload.bin"), Some(4242), Some(4343)).unwrap();
    let arrived = wait_for(PATIENCE, || holds(&n[1], "upload.bin", b"from A")).await;
    assert!(arrived.is_some(), "A's file never reached B");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        owner(&n[1].path("upload.bin")),
        (0, 0),
        "B applied an owner"
    );

    n[1].write("upload.bin", b"rewritten on B");
    let arrived = wait_for(PATIENCE, || holds(&n[0], "upload.bin", b"rewritten on B")).await;
    assert!(arrived.is_some(), "B's edit never reached A");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        owner(&n[0].path("upload.bin")),
        (4242, 4343),
        "A's copy lost its owner"
    );
    assert_eq!(owner(&n[1].path("upload.bin")), (0, 0));
    let (sa, sb) = (a.status(), b.status());
    assert_eq!(sa.counters.errors + sb.counters.errors, 0);
    stop_both(a, b).await;
}
