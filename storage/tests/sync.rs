//! Two-way directory sync between nodes in one process on loopback: the "Show" list.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/sync_nodes.rs"]
mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fulcrum_storage::sync::config::SharedSecret;
use fulcrum_storage::sync::index::{Entry, Kind, VersionVector};
use fulcrum_storage::sync::owner::can_chown;
use fulcrum_storage::sync::proto::{self, Message};
use fulcrum_storage::sync::watch::Options as WatchOptions;
use fulcrum_storage::sync::{SyncOptions, SyncSet};
use fulcrum_storage::volume::peer::Side;
use support::{
    Node, Reader, SET, Writer, authenticated, connected, converge, hello, mtime, next_within,
    node_for_raw_peer, nodes, owner, raw_peer, set_mtime, started_pair, started_pair_with,
    stop_both, tree, wait_for, wait_received,
};

const SECOND: Duration = Duration::from_secs(1);

/// How long a convergence may take before it is a failure: generous, as the suite runs many
/// tests at once on two cores; the time it took is printed, never asserted.
const PATIENCE: Duration = Duration::from_secs(30);

/// The scale, with `FULCRUM_SYNC_FULL=1` (a separate, slower run; see README.md):
/// 50,000 files in the burst and a 200 MiB upload, where the suite uses 5,000 and 64 MiB.
fn full_scale() -> bool {
    std::env::var_os("FULCRUM_SYNC_FULL").is_some()
}

/// Ops on one side, checked on the other within the 1 s (polled up to 3 s, the time
/// printed, so that a loaded CI machine does not flake while a slow sync still shows).
async fn ops_propagate(from: &Node, to: &Node, tag: &str) {
    if !can_chown() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("the chown steps are skipped: changing a file's owner needs root");
    }
    let check = async |what: &str| {
        let took = converge(from, to, 3 * SECOND).await;
        println!("{tag}: {what} propagated in {took:?}");
        assert!(!tree(&to.root).is_empty() || what == "delete all");
    };
    // Where `rel` is on `from`, under this direction's tag.
    let at = |rel: &str| from.path(&format!("{tag}-{rel}"));
    from.write(&format!("{tag}-f.txt"), b"hello");
    check("create").await;
    from.write(&format!("{tag}-f.txt"), b"hello, modified");
    fs::set_permissions(at("f.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    check("modify + chmod").await;
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(at("f.txt"))
            .unwrap();
        f.write_all(b" and appended").unwrap();
    }
    check("append").await;
    // A new mtime alone (`touch -d`).
    set_mtime(
        &at("f.txt"),
        std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000),
    );
    check("touch").await;
    if can_chown() {
        // A new owner and group (`chown`), then the set-user-ID bit, which a receiver that
        // changed the owner after the mode would lose.
        lchown(at("f.txt"), Some(4242), Some(4343)).unwrap();
        fs::set_permissions(at("f.txt"), fs::Permissions::from_mode(0o4750)).unwrap();
        check("chown + chmod u+s").await;
        let copy = fs::metadata(to.path(&format!("{tag}-f.txt"))).unwrap();
        assert_eq!(
            copy.permissions().mode() & 0o7777,
            0o4750,
            "the set-user-ID bit"
        );
        assert_eq!(owner(&to.path(&format!("{tag}-f.txt"))), (4242, 4343));
    } else {
        println!("{tag}: chown skipped: changing owners needs root");
    }
    fs::rename(at("f.txt"), at("g.txt")).unwrap();
    check("rename").await;
    for i in 0..20 {
        from.write(
            &format!("{tag}-tree/sub{}/file{i}.bin", i % 3),
            &vec![i as u8; 1000 + i],
        );
    }
    std::os::unix::fs::symlink("sub0/file0.bin", at("tree/link")).unwrap();
    check("tree + symlink").await;
    // A link's own mtime alone (`touch -h`).
    let status = std::process::Command::new("touch")
        .args(["-h", "-d", "2020-09-13 12:26:40"])
        .arg(at("tree/link"))
        .status()
        .unwrap();
    assert!(status.success());
    check("touch -h").await;
    if can_chown() {
        // A directory's owner, and a link's own (`chown -h`).
        lchown(at("tree/sub1"), Some(4242), Some(4343)).unwrap();
        lchown(at("tree/link"), Some(4244), Some(4345)).unwrap();
        check("chown of a directory + chown -h").await;
    }
    fs::rename(at("tree"), at("moved")).unwrap();
    check("directory rename").await;
    fs::remove_file(at("g.txt")).unwrap();
    fs::remove_dir_all(at("moved")).unwrap();
    check("delete all").await;
}

// Input: create, modify, chmod, append, chown (as root), rename, a tree with a symlink, a
// directory rename, deletes, first on A then on B. Output: the other side matches (hashes,
// modes, mtimes, owners) each time; the renames moved files locally instead of transferring them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_propagate_both_ways() {
    let (mut n, a, b) = started_pair().await;
    ops_propagate(&n[0], &n[1], "fromA").await;
    ops_propagate(&n[1], &n[0], "fromB").await;
    let (sa, sb) = (a.status(), b.status());
    println!("A: {sa:?}\nB: {sb:?}");
    assert!(
        sb.counters.renames >= 1,
        "the file rename was a local move on B"
    );
    assert!(
        sa.counters.renames >= 1,
        "the file rename was a local move on A"
    );
    assert_eq!(sa.counters.errors + sb.counters.errors, 0);
    assert!(sb.counters.deletes >= 1);
    stop_both(a, b).await;
    drop(n.pop());
}

// Input: a file synced, then its mtime alone changed on A (`touch`). Output: B's copy takes
// the mtime without a transfer: no file received, no content byte sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_touch_alone_is_sent_without_the_content() {
    let (n, a, b) = started_pair().await;
    n[0].write("photo.jpg", &pseudo_random(200_000, 7));
    converge(&n[0], &n[1], PATIENCE).await;
    let (sent, received) = (a.status().counters.bytes_sent, wait_received(&b, 1).await);
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&n[0].path("photo.jpg"), an_hour_ago);
    converge(&n[0], &n[1], PATIENCE).await;
    assert_eq!(mtime(&n[1].path("photo.jpg")), an_hour_ago);
    assert_eq!(
        a.status().counters.bytes_sent,
        sent,
        "content was sent again"
    );
    assert_eq!(b.status().counters.files_received, received);
    stop_both(a, b).await;
}

// Input: before their first link, A and B each hold the same file with the same content, B's
// copy an hour newer. Output: no conflict and no transfer; both end with B's mtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_file_on_both_sides_keeps_the_newer_mtime() {
    let mut n = nodes(&["a", "b"]);
    let content = pseudo_random(50_000, 3);
    n[0].write("logo.png", &content);
    n[1].write("logo.png", &content);
    let now = std::time::SystemTime::now();
    set_mtime(&n[0].path("logo.png"), now - Duration::from_secs(3600));
    set_mtime(&n[1].path("logo.png"), now);
    let a = n[0].start().await;
    let b = n[1].start().await;
    converge(&n[0], &n[1], PATIENCE).await;
    assert_eq!(mtime(&n[0].path("logo.png")), now);
    let (sa, sb) = (a.status(), b.status());
    assert_eq!(sa.conflicts + sb.conflicts, 0);
    assert_eq!(sa.counters.files_received + sb.counters.files_received, 0);
    stop_both(a, b).await;
}

// Input: A and B each write a different file at the same moment. Output: both on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_writes_of_different_files_meet() {
    let (n, a, b) = started_pair().await;
    n[0].write("upload-a.jpg", &[1u8; 50_000]);
    n[1].write("upload-b.jpg", &[2u8; 60_000]);
    converge(&n[0], &n[1], PATIENCE).await;
    assert_eq!(
        fs::read(n[1].path("upload-a.jpg")).unwrap(),
        vec![1u8; 50_000]
    );
    assert_eq!(
        fs::read(n[0].path("upload-b.jpg")).unwrap(),
        vec![2u8; 60_000]
    );
    stop_both(a, b).await;
}

/// Writes `rel` as `original` on A (`n[0]`, running as `a`) and waits until B has it, then
/// stops A and writes `edited` there, and lets 50 ms pass so that B's edit is the later one.
async fn edit_on_a_while_down(n: &[Node], a: SyncSet, rel: &str, original: &[u8], edited: &[u8]) {
    n[0].write(rel, original);
    converge(&n[0], &n[1], PATIENCE).await;
    a.stop().await.unwrap();
    n[0].write(rel, edited);
    tokio::time::sleep(Duration::from_millis(50)).await;
}

// Input: the link is down (A stopped); A and B change the same file, B later. Output: after A
// restarts both hold B's version and a conflict copy of A's; a conflict event on each side.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflict_keeps_the_newer_and_a_copy_of_the_other() {
    let (mut n, a, b) = started_pair().await;
    edit_on_a_while_down(&n, a, "report.txt", b"original", b"changed on a").await;
    n[1].write("report.txt", b"changed on b, later");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b_events = b.subscribe();
    let a = n[0].start().await;
    let mut a_events = a.subscribe();
    converge(&n[0], &n[1], PATIENCE).await;
    let files = tree(&n[0].root);
    assert_eq!(
        fs::read(n[0].path("report.txt")).unwrap(),
        b"changed on b, later"
    );
    let copies: Vec<_> = files
        .keys()
        .filter(|k| k.starts_with("report.conflict-a-"))
        .collect();
    assert_eq!(copies.len(), 1, "{files:?}");
    assert_eq!(fs::read(n[1].path(copies[0])).unwrap(), b"changed on a");
    let conflict = |rx: &mut tokio::sync::broadcast::Receiver<_>| {
        std::iter::from_fn(|| rx.try_recv().ok())
            .any(|e| matches!(e, fulcrum_storage::sync::SyncEvent::Conflict { .. }))
    };
    assert!(conflict(&mut a_events) || conflict(&mut b_events));
    assert!(a.status().conflicts + b.status().conflicts >= 1);
    stop_both(a, b).await;
}

// Input: 200 files synced; B stopped; A changes one 100 KB file. Output: B catches up after its
// restart with about that file's bytes sent, not the 200 files' again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_catches_up_with_the_changes_only() {
    let (mut n, a, b) = started_pair().await;
    for i in 0..200 {
        n[0].write(&format!("f{i:03}"), &vec![(i % 251) as u8; 10_000]);
    }
    converge(&n[0], &n[1], PATIENCE).await;
    let before = a.status().counters.bytes_sent;
    assert!(before >= 2_000_000, "{before}");
    b.stop().await.unwrap();
    n[0].write("f007", &vec![9u8; 100_000]);
    n[0].write("new", &vec![8u8; 1_000]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = a.status().peers[0].queue;
    assert!(
        queued >= 2,
        "the changes wait in A's index for B: queue {queued}"
    );
    let b = n[1].start().await;
    converge(&n[0], &n[1], PATIENCE).await;
    let sent = a.status().counters.bytes_sent - before;
    println!("bytes sent for the catch-up: {sent}");
    assert!((101_000..=150_000).contains(&sent), "{sent}");
    assert!(
        wait_for(2 * SECOND, || a.status().peers[0].queue == 0)
            .await
            .is_some()
    );
    stop_both(a, b).await;
}

// Input: 20 files synced; B stopped; A changes 2 files, then A restarts while B is still away.
// Output: A's queue for B is those 2 changes before and after its restart (not every entry of
// its index), and empties once B is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_for_a_peer_away_is_kept_across_a_restart() {
    let (mut n, a, b) = started_pair().await;
    for i in 0..20 {
        n[0].write(&format!("f{i:02}"), format!("file {i}").as_bytes());
    }
    converge(&n[0], &n[1], PATIENCE).await;
    b.stop().await.unwrap();
    n[0].write("f03", b"changed while B is away");
    n[0].write("new", b"made while B is away");
    let queue = |set: &fulcrum_storage::sync::SyncSet| set.status().peers[0].queue;
    assert!(
        wait_for(PATIENCE, || queue(&a) == 2).await.is_some(),
        "queue {} before the restart",
        queue(&a)
    );
    a.stop().await.unwrap();
    let a = n[0].start().await;
    assert_eq!(queue(&a), 2, "the queue for B after A's restart");
    let b = n[1].start().await;
    converge(&n[0], &n[1], PATIENCE).await;
    assert!(wait_for(2 * SECOND, || queue(&a) == 0).await.is_some());
    stop_both(a, b).await;
}

/// Every name under `dir`, temporary and staging files included, with its size.
fn everything(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for child in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let meta = child.metadata().unwrap();
            if meta.is_dir() {
                stack.push(child.path());
            }
            out.push((child.path().display().to_string(), meta.len()));
        }
    }
    out.sort();
    out
}

// Input: A's 64 MiB file on its way to B, where the connection is the one B accepted; B
// stopped in the middle. Output: once B's `stop` returns, nothing in B's tree changes any more
// (its fetcher has ended, not only been told to), as a reload that restarts the set needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_waits_for_the_transfers_of_the_connections_it_accepted() {
    let (n, a, b) = started_pair().await;
    // The lower `listen` dials: the other node accepts.
    let (sender, receiver, sending, receiving) = if n[0].addr < n[1].addr {
        (&n[0], &n[1], a, b)
    } else {
        (&n[1], &n[0], b, a)
    };
    sender.write("big.bin", &pseudo_random(64 << 20, 9));
    let started = wait_for(PATIENCE, || receiving.status().counters.bytes_received > 0).await;
    assert!(started.is_some(), "the transfer never started");
    receiving.stop().await.unwrap();
    let after_stop = everything(&receiver.root);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        everything(&receiver.root),
        after_stop,
        "the tree changed after the stop returned"
    );
    sending.stop().await.unwrap();
}

// Input: 5,000 files (50,000 at full scale) created in a burst on A, with a watcher that holds
// at most 500 pending paths. Output: the watcher overflowed (counted), rescanned, and B
// converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_small_files_converges_through_an_overflow() {
    let files = if full_scale() { 50_000 } else { 5_000 };
    let small = || SyncOptions {
        watch: Some(WatchOptions {
            delay: Duration::from_millis(50),
            poll_interval: Duration::from_secs(10),
            max_pending: 500,
        }),
        ..SyncOptions::default()
    };
    let (n, a, b) = started_pair_with(small).await;
    for i in 0..files {
        n[0].write(&format!("d{}/f{i}", i % 50), format!("file {i}").as_bytes());
    }
    let took = converge(&n[0], &n[1], 4 * PATIENCE).await;
    let status = a.status();
    println!(
        "{files} files converged in {took:?}; A: {:?}",
        status.counters
    );
    assert!(status.counters.overflows > 0, "{:?}", status.counters);
    assert!(status.counters.rescans > 0);
    wait_received(&b, files).await;
    stop_both(a, b).await;
}

// Input: B has another secret. Output: no link, nothing transferred, errors counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_is_refused() {
    let mut n = nodes(&["a", "b"]);
    n[1].config.shared_secret = SharedSecret::new("not the secret");
    n[0].write("private.txt", b"secret data");
    let a = n[0].start().await;
    let b = n[1].start().await;
    let refused = wait_for(3 * SECOND, || {
        a.status().counters.errors > 0 && b.status().counters.errors > 0
    })
    .await;
    assert!(refused.is_some(), "A {:?} B {:?}", a.status(), b.status());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!n[1].path("private.txt").exists());
    assert!(!a.status().peers[0].connected && !b.status().peers[0].connected);
    assert_eq!(b.status().counters.files_received, 0);
    stop_both(a, b).await;
}

fn file_entry(path: &str, content: &[u8]) -> Entry {
    let hash = fulcrum_storage::sync::index::content_hash(content);
    Entry {
        path: path.to_owned(),
        kind: Kind::File,
        size: content.len() as u64,
        mtime_ns: 1_700_000_000_000_000_000,
        mode: 0o644,
        owner: None,
        hash,
        version: [("evil", 1)].into_iter().collect::<VersionVector>(),
        modified_by: "evil".to_owned(),
        deleted: false,
        sequence: 1,
    }
}

/// Sends an Entries batch of `entries`, numbered up to `up_to`.
async fn send_entries(writer: &mut Writer, up_to: u64, entries: Vec<Entry>) {
    writer
        .send(&Message::Entries { up_to, entries })
        .await
        .unwrap();
}

// Input: a raw peer that takes A's changes says it has A's index (same id) up to a sequence
// far past A's own, as a peer would after A's state was restored from an older snapshot.
// Output: A sends its whole index, rather than nothing until its sequence passes that mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_ahead_of_our_sequence_gets_our_whole_index() {
    assert_eq!(
        sent_after_resume_from(1_000_000).await,
        ["one.txt", "two.txt"]
    );
}

// Input: A starts on a fresh index whose start-up scan records two files (sequences 1 and 2);
// a raw peer then says it has A's index up to 2, as a peer that saw an older history of it
// would after A's state was rolled back and the scan reused those sequences. Output: A sends
// both files: the mark is past the sequence the index was loaded at (0), whatever the scan
// added since. (It was compared with the sequence after the scan, and nothing was sent.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_mark_past_the_loaded_index_gets_everything_even_after_the_scan() {
    assert_eq!(sent_after_resume_from(2).await, ["one.txt", "two.txt"]);
}

/// Starts A on a fresh index with `one.txt` and `two.txt`, links a raw peer that says it has
/// A's index up to `mark`, and returns the paths A then sends it (waiting for two), sorted.
async fn sent_after_resume_from(mark: u64) -> Vec<String> {
    let mut a = node_for_raw_peer("a");
    a.write("one.txt", b"1");
    a.write("two.txt", b"2");
    let set = a.start().await;
    let stream = tokio::net::TcpStream::connect(a.addr).await.unwrap();
    let (mut reader, mut writer) = authenticated(stream, Side::Connecting).await;
    let Message::Hello(mut ours) = hello("evil", support::RAW_PEER_LISTEN.to_owned(), 7) else {
        unreachable!()
    };
    ours.flags = proto::FLAG_SENDS | proto::FLAG_RECEIVES;
    writer.send(&Message::Hello(ours)).await.unwrap();
    let Ok(Some(Message::Hello(theirs))) = reader.next().await else {
        panic!("no Hello from A");
    };
    writer
        .send(&Message::Resume {
            index_id: theirs.index_id,
            from: mark,
        })
        .await
        .unwrap();
    let mut sent = Vec::new();
    while sent.len() < 2 {
        match next_within(&mut reader, 3 * SECOND).await {
            Ok(Some(Message::Entries { entries, .. })) => {
                sent.extend(entries.into_iter().map(|e| e.path));
            }
            Ok(Some(_)) => {}
            other => panic!("A sent {sent:?}, then {other:?}"),
        }
    }
    sent.sort();
    set.stop().await.unwrap();
    sent
}

// Input: a raw peer whose Hello says it neither sends nor receives, so that A asks it for
// nothing, sends 2,000 answers (End) all the same. Output: A ends the link. (The answers went
// into a queue that nothing read: after four runs of them A's reader stopped for good, with
// the link still up.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_nothing_asked_for_end_the_link() {
    let mut a = node_for_raw_peer("a");
    let set = a.start().await;
    let stream = tokio::net::TcpStream::connect(a.addr).await.unwrap();
    let (mut reader, mut writer) = authenticated(stream, Side::Connecting).await;
    let Message::Hello(mut ours) = hello("evil", support::RAW_PEER_LISTEN.to_owned(), 7) else {
        unreachable!()
    };
    ours.flags = 0;
    writer.send(&Message::Hello(ours)).await.unwrap();
    assert!(matches!(reader.next().await, Ok(Some(Message::Hello(_)))));
    send_unasked_answers(&mut writer, 2_000).await;
    wait_link_ended(&mut reader, 5 * SECOND).await;
    set.stop().await.unwrap();
}

/// Sends `n` answers (End) that nothing asked for, until the link ends.
async fn send_unasked_answers(writer: &mut Writer, n: u32) {
    for id in 0..n {
        let end = Message::End {
            id,
            hash: [0; 32],
            sha256: None,
        };
        if writer.send(&end).await.is_err() {
            break;
        }
    }
}

/// Reads what comes until the link ends, which must be within `limit`.
async fn wait_link_ended(reader: &mut Reader, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, reader.next()).await {
            Err(_) => panic!("the link is still up"),
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None) | Err(_)) => break,
        }
    }
}

// Input: a raw peer that sends, so that A receives from it, sends 20,000 answers (End) that A
// never asked for, with `peer_timeout` 1 s. Output: A ends the link (within 4 s). (A's idle fetcher read
// none of them: the queues filled, and A's reader stopped for good, Acks and Pings with it,
// with the link up.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_an_idle_receiver_never_asked_for_end_the_link() {
    let mut a = node_for_raw_peer("a");
    let set = a
        .start_with(SyncOptions {
            peer_timeout: SECOND,
            ..SyncOptions::default()
        })
        .await;
    // A peer that sends, so A receives from it.
    let (mut reader, mut writer) = raw_peer(&a).await;
    let flood = tokio::spawn(async move {
        send_unasked_answers(&mut writer, 20_000).await;
        writer
    });
    wait_link_ended(&mut reader, 10 * SECOND).await;
    flood.abort();
    set.stop().await.unwrap();
}

// Input: a raw peer connects, then connects again (its first connection stalled, say), which
// replaces the first session. Output: the peer shows as connected, and no PeerLost follows
// the second PeerConnected: an alert would otherwise fire while the peer is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_connection_does_not_report_its_peer_lost() {
    use fulcrum_storage::sync::SyncEvent;
    let mut a = node_for_raw_peer("a");
    let set = a.start().await;
    let mut events = set.subscribe();
    let _first = raw_peer(&a).await;
    let _second = raw_peer(&a).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    let connected = seen
        .iter()
        .filter(|e| matches!(e, SyncEvent::PeerConnected { .. }))
        .count();
    assert_eq!(connected, 2, "{seen:?}");
    assert!(
        !seen.iter().any(|e| matches!(e, SyncEvent::PeerLost { .. })),
        "{seen:?}"
    );
    assert!(set.status().peers[0].connected);
    set.stop().await.unwrap();
}

// Input: a raw client with the right secret sends entries for `../x`, `/etc/x`, and a path
// through a symlinked directory, then asks for `../` files. Output: each refused and counted;
// nothing written outside the root; the batch is still acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_path_escaping_the_root_is_refused() {
    // The raw client poses as a peer whose listen sorts below A's, so A expects it to dial.
    let mut a = node_for_raw_peer("a");
    let outside = support::temp_dir();
    std::os::unix::fs::symlink(outside.path(), a.path("out")).unwrap();
    let set = a.start().await;
    let mut events = set.subscribe();

    let (mut reader, mut writer) = raw_peer(&a).await;
    assert!(matches!(
        reader.next().await,
        Ok(Some(Message::Resume { .. }))
    ));
    let bad = ["../x", "/etc/x", "out/evil", "a/../../x"];
    send_entries(
        &mut writer,
        1,
        bad.iter().map(|p| file_entry(p, b"pwned")).collect(),
    )
    .await;
    // Nothing is requested for them: the next message is the Ack.
    let ack = next_within(&mut reader, 3 * SECOND).await;
    assert!(
        matches!(ack, Ok(Some(Message::Ack { up_to: 1 }))),
        "{ack:?}"
    );
    // Asking A for files outside its root gets a refusal, never content.
    writer
        .send(&Message::Get(proto::Request {
            id: 1,
            path: "../state/sync/uploads/index".to_owned(),
            size: 0,
            mtime_ns: 0,
            hash: [0; 32],
        }))
        .await
        .unwrap();
    let answer = next_within(&mut reader, 3 * SECOND).await;
    assert!(
        matches!(answer, Ok(Some(Message::Failed { id: 1, .. }))),
        "{answer:?}"
    );

    assert!(
        fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing written through the link"
    );
    assert!(!a.root.parent().unwrap().join("x").exists());
    assert!(set.status().counters.errors >= bad.len() as u64);
    let refused = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| matches!(e, fulcrum_storage::sync::SyncEvent::TransferFailed { .. }))
        .count();
    assert!(refused >= bad.len(), "{refused}");
    set.stop().await.unwrap();
}

fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

// Input: a 32 MiB file synced, then 100 octets of it changed on A. Output: B receives a delta
// much smaller than the file, counted as saved; the content matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_change_to_a_large_file_is_sent_as_a_delta() {
    let (n, a, b) = started_pair().await;
    let mut content = pseudo_random(32 << 20, 42);
    n[0].write_atomic("big.bin", &content);
    converge(&n[0], &n[1], PATIENCE).await;
    let before = b.status().counters;
    assert!(before.bytes_received >= 32 << 20);
    content[10_000_000..10_000_100].copy_from_slice(&[0xAB; 100]);
    n[0].write_atomic("big.bin", &content);
    converge(&n[0], &n[1], PATIENCE).await;
    let after = b.status().counters;
    let received = after.bytes_received - before.bytes_received;
    let saved = after.bytes_saved_by_delta - before.bytes_saved_by_delta;
    println!("delta: received {received} octets, saved {saved}");
    assert!(received < 256 * 1024, "{received}");
    assert!(saved > 31 << 20, "{saved}");
    stop_both(a, b).await;
}

// Input: a reader polls B's copy while A replaces a 64 MiB file (at full scale: uploads a
// wholly new 200 MiB one). Output: every read is the old or the new content, never a mix or a
// partial file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_never_sees_a_partial_file() {
    let (n, a, b) = started_pair().await;
    let (old, new) = if full_scale() {
        (pseudo_random(200 << 20, 1), pseudo_random(200 << 20, 2))
    } else {
        // Changed in a few places: the transfer is a delta (fast_rsync's diff of wholly new
        // content is slow in an unoptimised test build), but B still writes all 64 MiB.
        let old = pseudo_random(64 << 20, 1);
        let mut new = old.clone();
        for at in [1usize << 20, 20 << 20, 63 << 20] {
            new[at..at + 4096].copy_from_slice(&pseudo_random(4096, at as u32));
        }
        (old, new)
    };
    let digest = |c: &[u8]| {
        ring::digest::digest(&ring::digest::SHA256, c)
            .as_ref()
            .to_vec()
    };
    let (old_hash, new_hash) = (digest(&old), digest(&new));
    n[0].write_atomic("upload.bin", &old);
    converge(&n[0], &n[1], PATIENCE).await;

    let path = n[1].path("upload.bin");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, old_hash, new_hash) = (stop.clone(), old_hash.clone(), new_hash.clone());
        std::thread::spawn(move || {
            let (mut reads, mut saw_new) = (0, false);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let content = fs::read(&path).expect("the file is always there");
                let hash = digest(&content);
                assert!(
                    hash == old_hash || hash == new_hash,
                    "a partial file: {} octets",
                    content.len()
                );
                saw_new |= hash == new_hash;
                reads += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (reads, saw_new)
        })
    };
    n[0].write_atomic("upload.bin", &new);
    converge(&n[0], &n[1], 4 * PATIENCE).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reads, saw_new) = reader.join().unwrap();
    println!("{reads} reads during the replacement");
    assert!(reads > 2 && saw_new);
    stop_both(a, b).await;
}

/// The files of `node` whose name starts with `prefix`.
fn named(node: &Node, prefix: &str) -> Vec<String> {
    tree(&node.root)
        .into_keys()
        .filter(|k| k.starts_with(prefix))
        .collect()
}

// The reviewer's repro: A stopped edits config.php; B creates 600 files (more than one Entries
// batch), then edits config.php later; A starts. B resolves the conflict (its version is newer)
// before it sends its own config.php. Output: both nodes hold B's version AND a conflict copy
// holding A's; before the fix B's merged entry dominated A's, A accepted it as a plain update
// and A's edit was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflict_resolved_by_the_winner_first_still_keeps_the_losers_copy() {
    let (mut n, a, b) = started_pair().await;
    edit_on_a_while_down(
        &n,
        a,
        "config.php",
        b"<?php // original",
        b"<?php // edited on a",
    )
    .await;
    for i in 0..600 {
        n[1].write(
            &format!("uploads/f{i:04}.txt"),
            format!("file {i}").as_bytes(),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    n[1].write("config.php", b"<?php // edited on b, later");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = n[0].start().await;
    converge(&n[0], &n[1], PATIENCE).await;
    for node in &n[..2] {
        assert_eq!(
            fs::read(node.path("config.php")).unwrap(),
            b"<?php // edited on b, later",
            "{}",
            node.name
        );
        let copies = named(node, "config.conflict-a-");
        assert_eq!(
            copies.len(),
            1,
            "{}: {:?}",
            node.name,
            named(node, "config")
        );
        assert_eq!(
            fs::read(node.path(&copies[0])).unwrap(),
            b"<?php // edited on a",
            "{}",
            node.name
        );
    }
    assert!(a.status().conflicts >= 1, "the loser saw no conflict");
    stop_both(a, b).await;
}

/// A fake peer on 127.0.0.2 (so that a node on 127.0.0.1 dials it): for each connection it
/// authenticates, reads the Hello, sends its own, then a Refuse if `refuse`, and otherwise
/// stays silent (reads nothing, answers no Ping) with the link open. Returns its address and
/// how many connections it took.
async fn fake_peer(refuse: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut reader, mut writer) = authenticated(stream, Side::Accepting).await;
                writer
                    .send(&hello("fake", addr.to_string(), 1))
                    .await
                    .unwrap();
                let _ = reader.next().await;
                if refuse {
                    let reason = "we dial you".to_owned();
                    let _ = writer.send(&Message::Refuse { reason }).await;
                }
                tokio::time::sleep(10 * SECOND).await;
                drop((reader, writer));
            });
        }
    });
    (addr, accepted)
}

// Input: a peer that answers each Hello with its own Hello, then a Refuse. Output: the dialer
// backs off (100 ms, 200 ms, 400 ms, 800 ms...): at most 6 connections in 2 s; before the
// fix the refused link counted as a success and the dialer re-dialed every ~100 ms (~16).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_hello_backs_off() {
    let (fake, accepted) = fake_peer(true).await;
    let mut a = Node::new("a");
    a.config.peers = vec![fake];
    let set = a.start().await;
    tokio::time::sleep(2 * SECOND).await;
    let n = accepted.load(Ordering::SeqCst);
    assert!((2..=6).contains(&n), "{n} connections in 2 s");
    set.stop().await.unwrap();
}

// Input: a peer that says Hello, then goes silent with the connection open (as a host that
// vanished). Output: with a 100 ms keepalive and a 500 ms timeout, the link is declared lost
// and the dialer dials again; before the fix the link stayed "connected" forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_peer_is_declared_lost_and_redialed() {
    let (fake, accepted) = fake_peer(false).await;
    let mut a = Node::new("a");
    a.config.peers = vec![fake];
    let set = a
        .start_with(SyncOptions {
            keepalive: Duration::from_millis(100),
            peer_timeout: Duration::from_millis(500),
            ..SyncOptions::default()
        })
        .await;
    let mut events = set.subscribe();
    connected(&set, 5 * SECOND).await;
    let redialed = wait_for(5 * SECOND, || accepted.load(Ordering::SeqCst) >= 2).await;
    assert!(redialed.is_some(), "not re-dialed: {:?}", set.status());
    let lost = std::iter::from_fn(|| events.try_recv().ok())
        .any(|e| matches!(e, fulcrum_storage::sync::SyncEvent::PeerLost { .. }));
    assert!(lost);
    set.stop().await.unwrap();
}

// Input: a set whose `listen` is taken. Output: the error names the set once (src/syncs.rs
// used to add "sync set NAME: " in front of it again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_up_error_names_the_set_once() {
    let a = Node::new("a");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = a.config.clone();
    config.listen = taken.local_addr().unwrap();
    let error = fulcrum_storage::sync::SyncSet::start(config, &a.state, "a")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.starts_with(&format!("sync set {SET}: cannot listen on")),
        "{error}"
    );
    assert_eq!(error.matches("sync set").count(), 1, "{error}");
}

// Input: a raw peer sends `bad.txt` and answers every request for it with Failed (an
// unreadable file on its side), then, once acked, a second batch with a directory. Output: A
// gives `bad.txt` up after 5 attempts, acknowledges the batch, applies the next one; the
// entry is not recorded and A's persisted mark of the peer stays before it, so that it is
// sent again after a reconnect. Before the fix A retried forever and never acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_failing_forever_does_not_stall_later_changes() {
    let mut a = node_for_raw_peer("a");
    let set = a.start().await;
    let mut events = set.subscribe();
    let (mut reader, mut writer) = raw_peer(&a).await;
    assert!(matches!(
        reader.next().await,
        Ok(Some(Message::Resume { from: 0, .. }))
    ));
    send_entries(
        &mut writer,
        1,
        vec![file_entry("bad.txt", b"never readable")],
    )
    .await;
    let mut gets = 0;
    loop {
        let msg = tokio::time::timeout(10 * SECOND, reader.next())
            .await
            .expect("no Ack: the batch is stalled")
            .unwrap()
            .unwrap();
        match msg {
            Message::Get(request) => {
                gets += 1;
                let reason = "Permission denied".to_owned();
                let id = request.id;
                writer.send(&Message::Failed { id, reason }).await.unwrap();
            }
            Message::Ack { up_to } => {
                assert_eq!(up_to, 1);
                break;
            }
            Message::Ping { .. } | Message::Pong { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(gets, 5);
    let mut later = file_entry("later", b"");
    later.kind = Kind::Dir;
    later.mode = 0o755;
    later.hash = [0; 32];
    later.size = 0;
    send_entries(&mut writer, 2, vec![later]).await;
    let ack = next_within(&mut reader, 5 * SECOND).await;
    assert!(
        matches!(ack, Ok(Some(Message::Ack { up_to: 2 }))),
        "{ack:?}"
    );
    assert!(a.path("later").is_dir());
    assert!(!a.path("bad.txt").exists());
    let given_up = std::iter::from_fn(|| events.try_recv().ok()).any(|e| {
        matches!(&e, fulcrum_storage::sync::SyncEvent::TransferFailed { path, error }
            if path == "bad.txt" && error.contains("gave up"))
    });
    assert!(given_up);
    assert!(set.status().counters.errors >= 5);
    drop((reader, writer));
    set.stop().await.unwrap();
    let dir = fulcrum_storage::sync::index::index_dir(&a.state, SET);
    let index = fulcrum_storage::sync::index::Index::open(&dir, "a").unwrap();
    assert!(index.get("bad.txt").is_none(), "given up, yet recorded");
    assert!(index.get("later").is_some());
    let mark = index.peer_mark("evil").map_or(0, |m| m.sequence);
    assert_eq!(mark, 0, "the mark moved past the entry given up");
}

// Input: a raw peer sends `bad.txt` and answers A's requests for it with Failed (a full disk
// on its side, say) until A sets it aside, then answers the next request with the content.
// Output: A tries it again by itself after `parked_retry` (no reconnect, no restart), stores
// it, and its persisted mark of the peer then moves past it. Before, the entry waited for the
// next connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_set_aside_is_tried_again_without_a_reconnect() {
    let mut a = node_for_raw_peer("a");
    let set = a
        .start_with(SyncOptions {
            parked_retry: Duration::from_millis(300),
            ..SyncOptions::default()
        })
        .await;
    let (mut reader, mut writer) = raw_peer(&a).await;
    assert!(matches!(
        reader.next().await,
        Ok(Some(Message::Resume { from: 0, .. }))
    ));
    let content = b"stored at last";
    send_entries(&mut writer, 1, vec![file_entry("bad.txt", content)]).await;
    let (mut gets, mut acked) = (0, false);
    while !a.path("bad.txt").exists() {
        let msg = next_within(&mut reader, 10 * SECOND)
            .await
            .expect("the link failed")
            .expect("the link closed");
        match msg {
            Message::Get(request) => {
                gets += 1;
                let id = request.id;
                if gets <= 5 {
                    let reason = "No space left on device".to_owned();
                    writer.send(&Message::Failed { id, reason }).await.unwrap();
                    continue;
                }
                assert!(acked, "tried a 6th time before the batch was acknowledged");
                let data = bytes::Bytes::from_static(content);
                writer.send(&Message::Data { id, data }).await.unwrap();
                let hash = file_entry("bad.txt", content).hash;
                writer
                    .send(&Message::End {
                        id,
                        hash,
                        sha256: None,
                    })
                    .await
                    .unwrap();
                // A stores it once the End is read: wait for that with the link open.
                let stored = wait_for(5 * SECOND, || a.path("bad.txt").exists()).await;
                assert!(stored.is_some(), "not stored after the retry");
            }
            Message::Ack { up_to } => {
                assert_eq!(up_to, 1);
                acked = true;
            }
            Message::Ping { .. } | Message::Pong { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(gets, 6);
    assert_eq!(std::fs::read(a.path("bad.txt")).unwrap(), content);
    let marked = wait_for(5 * SECOND, || {
        set.status().counters.errors >= 5 && {
            let dir = fulcrum_storage::sync::index::index_dir(&a.state, SET);
            fulcrum_storage::sync::index::Index::load(&dir.join("index"))
                .is_ok_and(|index| index.peer_mark("evil").is_some_and(|m| m.sequence == 1))
        }
    })
    .await;
    assert!(marked.is_some(), "the mark did not move past the entry");
    drop((reader, writer));
    set.stop().await.unwrap();
}

// Input: a directory of three files synced, then replaced on A by a file of the same name (its
// content removed first, as `rm -r d; echo > d` does). Output: B converges within seconds, with
// at most the one failed attempt made before the batch's deletions emptied the directory. (B
// retried the file before those deletions: five failed transfers, then 30 s set aside.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_directory_replaced_by_a_file_converges_at_once() {
    let (n, a, b) = started_pair().await;
    for name in ["d/one", "d/two", "d/three"] {
        n[0].write(name, name.as_bytes());
    }
    converge(&n[0], &n[1], PATIENCE).await;
    std::fs::remove_dir_all(n[0].path("d")).unwrap();
    n[0].write("d", b"now a file");
    converge(&n[0], &n[1], Duration::from_secs(10)).await;
    assert_eq!(std::fs::read(n[1].path("d")).unwrap(), b"now a file");
    assert!(b.status().counters.errors <= 1, "{:?}", b.status());
    stop_both(a, b).await;
}

// Input: a directory of two files synced, then replaced on A by a symlink of the same name.
// Output: B converges, and no temporary link is left in its tree. (The first attempt, made
// before the batch's deletions emptied the directory, failed and left its temporary link,
// pointing where the peer said, until the next start.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_directory_replaced_by_a_symlink_leaves_no_temporary_link() {
    let (n, a, b) = started_pair().await;
    for name in ["d/one", "d/two"] {
        n[0].write(name, name.as_bytes());
    }
    converge(&n[0], &n[1], PATIENCE).await;
    std::fs::remove_dir_all(n[0].path("d")).unwrap();
    std::os::unix::fs::symlink("elsewhere", n[0].path("d")).unwrap();
    converge(&n[0], &n[1], Duration::from_secs(10)).await;
    assert_eq!(
        std::fs::read_link(n[1].path("d")).unwrap(),
        std::path::Path::new("elsewhere")
    );
    assert_eq!(temp_files(&n[1]), Vec::<String>::new());
    stop_both(a, b).await;
}

// Input: a linked pair; B's tree moved away and an empty directory put in its place, as an
// unmount leaves its mount point; then a new file on A. Output: B writes nothing into the
// empty directory (it would land on the filesystem below the mount), and B's index keeps
// every entry live.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_received_into_a_root_that_lost_its_marker() {
    let (n, a, b) = started_pair().await;
    n[0].write("kept.txt", b"kept");
    converge(&n[0], &n[1], PATIENCE).await;
    let mounted = n[1].root.with_extension("mounted");
    std::fs::rename(&n[1].root, &mounted).unwrap();
    std::fs::create_dir(&n[1].root).unwrap();
    n[0].write("new.txt", b"new");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let landed: Vec<_> = std::fs::read_dir(&n[1].root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        landed.is_empty(),
        "received into the mount point: {landed:?}"
    );
    // Put back, for a clean stop.
    std::fs::remove_dir(&n[1].root).unwrap();
    std::fs::rename(&mounted, &n[1].root).unwrap();
    stop_both(a, b).await;
}

// Input: `src/f` synced; on B (whose watcher waits 10 s before it looks) `src` is swapped for
// a symlink to a directory outside the tree holding a file just like `f` (content, size, mode,
// mtime); then A moves `src/f` to `dst/f`. Output: B takes `dst/f` from A, and the outside
// file stays where it is. (B took the outside file, reached through the symlink, for the
// rename's source and moved it into its tree.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rename_never_moves_a_file_from_behind_a_symlink() {
    let mut n = nodes(&["a", "b"]);
    let a = n[0].start().await;
    let blind = SyncOptions {
        watch: Some(WatchOptions::new(Duration::from_secs(10))),
        ..SyncOptions::default()
    };
    let b = n[1].start_with(blind).await;
    connected(&a, Duration::from_secs(5)).await;
    let content = b"the same bytes on both sides".repeat(100);
    n[0].write("src/f", &content);
    converge(&n[0], &n[1], PATIENCE).await;

    // Beside B's root, on its filesystem, so that a rename could move it.
    let outside = n[1].path("").parent().unwrap().join("outside");
    fs::create_dir(&outside).unwrap();
    let lure = outside.join("f");
    fs::copy(n[1].path("src/f"), &lure).unwrap();
    set_mtime(&lure, mtime(&n[1].path("src/f")));
    fs::rename(n[1].path("src"), n[1].path("src.old")).unwrap();
    std::os::unix::fs::symlink(&outside, n[1].path("src")).unwrap();

    fs::create_dir(n[0].path("dst")).unwrap();
    fs::rename(n[0].path("src/f"), n[0].path("dst/f")).unwrap();
    let arrived = wait_for(PATIENCE, || {
        fs::read(n[1].path("dst/f")).is_ok_and(|got| got == content)
    })
    .await;
    assert!(arrived.is_some(), "dst/f never reached B");
    assert!(lure.exists(), "the file outside the tree was moved into it");
    stop_both(a, b).await;
}

/// The temporary files of transfers under `node`'s root and state directory.
fn temp_files(node: &Node) -> Vec<String> {
    [node.root.as_path(), node.state.as_path()]
        .into_iter()
        .flat_map(everything)
        .map(|(path, _)| path)
        .filter(|path| {
            std::path::Path::new(path)
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with(".fulcrum-tmp-"))
                && !fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
        })
        .collect()
}

// Input: a raw peer sends a 4 MiB file, answers A's request for it with its first 2 MiB, then
// drops the link. Output: A removes the partial temporary file. (It stayed until the next
// start: one partial copy per dropped link, on a flapping link, until the disk was full.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_cut_by_the_link_leaves_no_partial_file() {
    let mut a = node_for_raw_peer("a");
    let set = a.start().await;
    let (mut reader, mut writer) = raw_peer(&a).await;
    let content = vec![7u8; 4 << 20];
    send_entries(&mut writer, 1, vec![file_entry("big.bin", &content)]).await;
    loop {
        let msg = next_within(&mut reader, 10 * SECOND)
            .await
            .expect("the link failed")
            .expect("the link closed");
        if let Message::Get(request) = msg {
            let data = bytes::Bytes::copy_from_slice(&content[..2 << 20]);
            let id = request.id;
            writer.send(&Message::Data { id, data }).await.unwrap();
            break;
        }
    }
    let started = wait_for(5 * SECOND, || !temp_files(&a).is_empty()).await;
    assert!(started.is_some(), "no temporary file for the transfer");
    drop((reader, writer));
    let removed = wait_for(5 * SECOND, || temp_files(&a).is_empty()).await;
    assert!(removed.is_some(), "left behind: {:?}", temp_files(&a));
    set.stop().await.unwrap();
}

/// Answers the node's requests for `contents` (by path) until it acknowledges the batch
/// numbered `up_to`.
async fn serve_until_acked(
    reader: &mut support::Reader,
    writer: &mut Writer,
    up_to: u64,
    contents: &[(&str, &[u8])],
) {
    loop {
        let msg = next_within(reader, 10 * SECOND)
            .await
            .expect("the link failed")
            .expect("the link closed");
        match msg {
            Message::Get(request) => {
                let (_, content) = contents
                    .iter()
                    .find(|(path, _)| *path == request.path)
                    .unwrap_or_else(|| panic!("asked for {}", request.path));
                let (id, hash) = (request.id, file_entry(&request.path, content).hash);
                let data = bytes::Bytes::copy_from_slice(content);
                writer.send(&Message::Data { id, data }).await.unwrap();
                let end = Message::End {
                    id,
                    hash,
                    sha256: None,
                };
                writer.send(&end).await.unwrap();
            }
            Message::Ack { up_to: acked } if acked >= up_to => return,
            _ => {}
        }
    }
}

// Input: a raw peer gives A the directory `up` (mode 0750) holding `up/old.txt`, deletes both,
// then sends `up/new.jpg`, as when one node's `rm -rf up` crosses another's upload into it.
// Output: A recreates `up` for the new file with mode 0750, the mode it last recorded there.
// (It was made 0755 and owned by the process, and A's scan then took that for a change of its
// own, which the peers applied over their real directory: uploads there then failed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_directory_recreated_for_a_received_file_keeps_its_recorded_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut a = node_for_raw_peer("a");
    let set = a.start().await;
    let (mut reader, mut writer) = raw_peer(&a).await;
    assert!(matches!(
        reader.next().await,
        Ok(Some(Message::Resume { from: 0, .. }))
    ));
    let mut dir = file_entry("up", b"");
    (dir.kind, dir.mode, dir.hash) = (Kind::Dir, 0o750, [0; 32]);
    let old = file_entry("up/old.txt", b"old");
    send_entries(&mut writer, 1, vec![dir.clone(), old.clone()]).await;
    serve_until_acked(&mut reader, &mut writer, 1, &[("up/old.txt", b"old")]).await;
    assert_eq!(
        fs::metadata(a.path("up")).unwrap().permissions().mode() & 0o7777,
        0o750
    );

    let deleted = |mut entry: Entry| {
        entry.deleted = true;
        entry.version = [("evil", 2)].into_iter().collect();
        entry
    };
    send_entries(&mut writer, 2, vec![deleted(old), deleted(dir)]).await;
    serve_until_acked(&mut reader, &mut writer, 2, &[]).await;
    assert!(!a.path("up").exists(), "the directory was not deleted");

    let new = file_entry("up/new.jpg", b"new");
    send_entries(&mut writer, 3, vec![new]).await;
    serve_until_acked(&mut reader, &mut writer, 3, &[("up/new.jpg", b"new")]).await;
    assert_eq!(fs::read(a.path("up/new.jpg")).unwrap(), b"new");
    assert_eq!(
        fs::metadata(a.path("up")).unwrap().permissions().mode() & 0o7777,
        0o750,
        "the directory lost its mode"
    );
    drop((reader, writer));
    set.stop().await.unwrap();
}
