//! The start-up scan runs in the background: `SyncSet::start` returns before it, the status
//! shows its progress without waiting for it, the links begin after it, and a stop during it
//! deletes nothing the scan did not see.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/sync_nodes.rs"]
#[allow(dead_code, reason = "this test uses some of the sync helpers")]
mod support;

use std::fs;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use fulcrum_storage::sync::index::{Index, index_dir};
use fulcrum_storage::sync::{ScanHook, SyncOptions};
use support::{Node, SET, connected, converge, nodes, wait_for};

const PATIENCE: Duration = Duration::from_secs(30);

/// A hook that holds the scan until `release` is sent to, and says on `reached` that it does.
struct Hold {
    hook: ScanHook,
    reached: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

fn hold() -> Hold {
    let (reached_tx, reached) = mpsc::channel();
    let (release, held) = mpsc::channel::<()>();
    let (reached_tx, held) = (Mutex::new(reached_tx), Mutex::new(held));
    let hook = ScanHook(Arc::new(move || {
        let _ = reached_tx.lock().unwrap().send(());
        let _ = held.lock().unwrap().recv();
    }));
    Hold {
        hook,
        reached,
        release,
    }
}

fn held_options(hold: &Hold) -> SyncOptions {
    SyncOptions {
        before_scan: Some(hold.hook.clone()),
        ..SyncOptions::default()
    }
}

/// Waits until the hook holds the scan.
async fn until_reached(hold: &Hold) {
    let reached = wait_for(PATIENCE, || hold.reached.try_recv().is_ok()).await;
    assert!(reached.is_some(), "the scan never reached the hook");
}

// Input: A with 40 files of 64 KiB under two directories and no index; its scan held after
// the tree was measured. Output: `start` returned; the status, asked while the scan holds the
// index, answers at once with the scan's totals (44 paths, 2.5 MiB) and nothing hashed, and
// no peer is linked. Released: the status drops the scan, which hashed everything, A links
// to B, and B gets the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_returns_before_the_scan_and_the_status_shows_its_progress() {
    let mut n = nodes(&["a", "b"]);
    for i in 0..40 {
        n[0].write(&format!("d{}/e/f{i}", i % 2), &[i as u8; 64 * 1024]);
    }
    let hold = hold();
    let a = n[0].start_scanning(held_options(&hold)).await;
    until_reached(&hold).await;
    let b = n[1].start().await;

    let asked = Instant::now();
    let status = a.status();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    let scan = status
        .scan
        .expect("the status shows the scan while it runs");
    assert_eq!((scan.total_paths, scan.total_bytes), (44, 40 * 64 * 1024));
    assert_eq!((scan.examined, scan.hashed), (0, 0));
    assert!(status.peers.iter().all(|p| !p.connected), "{status:?}");

    hold.release.send(()).unwrap();
    connected(&a, PATIENCE).await;
    let status = a.status();
    assert_eq!(status.scan, None);
    converge(&n[0], &n[1], PATIENCE).await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// The entries of `node`'s index on disk: (live, deleted).
fn indexed(node: &Node) -> (usize, usize) {
    let index = Index::open(&index_dir(&node.state, SET), &node.name).unwrap();
    let deleted = index.entries().filter(|e| e.deleted).count();
    (index.len() - deleted, deleted)
}

// Input: A indexes three files and stops; they are deleted while it is down; it starts with
// its scan held, is stopped meanwhile, and the hold is released. Output: the stop returns,
// and the index still holds the three files as live: a scan that did not see everything
// deletes nothing. The next full start records the three deletions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_during_the_scan_deletes_nothing_unseen() {
    let mut n = nodes(&["a", "b"]);
    for name in ["one", "two", "three"] {
        n[0].write(name, name.as_bytes());
    }
    n[0].start().await.stop().await.unwrap();
    assert_eq!(indexed(&n[0]), (3, 0));
    for name in ["one", "two", "three"] {
        fs::remove_file(n[0].path(name)).unwrap();
    }

    let hold = hold();
    let a = n[0].start_scanning(held_options(&hold)).await;
    until_reached(&hold).await;
    // `stop` tells the scan at the call; the scan sees it once released.
    let stopping = tokio::spawn(a.stop());
    hold.release.send(()).unwrap();
    stopping.await.unwrap().unwrap();
    assert_eq!(indexed(&n[0]), (3, 0));

    n[0].start().await.stop().await.unwrap();
    assert_eq!(indexed(&n[0]), (0, 3));
}

// Input: A's first start-up scan cannot save its index (the scan hook puts a directory where
// the index file goes); the obstacle is removed once the status reports the failure. Output:
// the status says why the scan failed, the scan is tried again, and A then links to B, which
// gets A's file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_scan_is_reported_and_tried_again() {
    let mut n = nodes(&["a", "b"]);
    n[0].write("page.html", b"from A");
    let index_file = index_dir(&n[0].state, SET).join("index");
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hook = {
        let (index_file, first) = (index_file.clone(), Arc::clone(&first));
        ScanHook(Arc::new(move || {
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                let _ = fs::remove_file(&index_file);
                fs::create_dir_all(index_file.join("in-the-way")).unwrap();
            }
        }))
    };
    let a = n[0]
        .start_scanning(SyncOptions {
            before_scan: Some(hook),
            scan_retry: Duration::from_millis(200),
            ..SyncOptions::default()
        })
        .await;
    let b = n[1].start().await;
    let failed = wait_for(PATIENCE, || a.status().scan_failed.is_some()).await;
    assert!(failed.is_some(), "{:?}", a.status());
    assert!(a.status().counters.errors >= 1);
    fs::remove_dir_all(&index_file).unwrap();

    connected(&a, PATIENCE).await;
    assert_eq!(a.status().scan_failed, None);
    converge(&n[0], &n[1], PATIENCE).await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

// Input: a temporary file a transfer cut short left beside its target (as one on another
// filesystem mounted inside the root is written), made before the start but dated in the
// future (a transfer dates its file as the sender's), and another made while the start-up
// scan runs but dated an hour back. Output: the scan removes the leftover and keeps the newer
// one, which a transfer could be writing: their age is their inode's, not their mtime. Neither
// is indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_start_up_scan_removes_temporary_files_left_beside_their_targets() {
    let mut n = nodes(&["a", "b"]);
    n[0].write("uploads/kept.txt", b"a file");
    let now = std::time::SystemTime::now();
    let dated = |path: &std::path::Path, mtime| {
        fs::write(path, b"part of a transfer").unwrap();
        support::set_mtime(path, mtime);
    };
    let leftover = n[0].path("uploads/.fulcrum-tmp-00000000deadbeef-1");
    dated(&leftover, now + Duration::from_secs(3600));
    // Past the coarse clock's margin.
    std::thread::sleep(Duration::from_millis(300));
    let during = n[0].path("uploads/.fulcrum-tmp-00000000cafef00d-2");
    let made = during.clone();
    let options = SyncOptions {
        before_scan: Some(ScanHook(Arc::new(move || {
            dated(&made, now - Duration::from_secs(3600));
        }))),
        ..SyncOptions::default()
    };
    let a = n[0].start_with(options).await;
    assert!(!leftover.exists(), "the leftover is still there");
    assert!(
        during.exists(),
        "a temporary file newer than the start was removed"
    );
    let index = Index::open(&index_dir(&n[0].state, SET), "a").unwrap();
    assert!(
        index.entries().all(|e| !e.path.contains(".fulcrum-tmp-")),
        "a temporary file was indexed"
    );
    assert!(index.get("uploads/kept.txt").is_some());
    a.stop().await.unwrap();
}
