//! The replicated volume end to end: two [`Volume`]s of one pair in this process on
//! 127.0.0.1, each with its own state directory and backing file.
//!
//! Writes go through [`Volume::export`] (the NBD export's own code path) except in the `nbdcopy`
//! test, which uses libnbd's client over TCP; it is skipped with a message when `nbdcopy` is
//! missing, except in CI (`CI` set), where `.ci/run` installs libnbd-bin.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/volume_pair.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fulcrum_storage::nbd::{Export, NbdError};
use fulcrum_storage::volume::config::{IoErrorPolicy, SharedSecret, ZeroPrimariesPolicy};
use fulcrum_storage::volume::{
    ConnState, DiskState, Protocol, Role, VerifyReport, Volume, VolumeError, VolumeEvent,
};
use support::{assert_same_files, overwrite, pair, pattern, resync_end, wait_connected, wait_for};

const MIB: u64 = 1 << 20;
const BLOCK: u64 = 4096;

// Input: a brand-new pair, A configured primary. Output: both Connected and UpToDate, nothing
// resynced, A serving NBD and B not, B refusing writes.
#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_pair_connects_up_to_date_without_a_sync() {
    let (a, b) = pair(16 * MIB, Protocol::C, Role::Primary);
    let (va, vb) = start_connected(&a, &b).await;
    for (v, role) in [(&va, Role::Primary), (&vb, Role::Secondary)] {
        let s = v.status();
        assert_eq!(s.role, role);
        assert_eq!(s.disk, DiskState::UpToDate);
        assert_eq!(s.peer_disk, Some(DiskState::UpToDate));
        assert_eq!(s.out_of_sync_bytes, 0);
        assert_eq!(s.counters.resynced_bytes, 0, "{s:#?}");
    }
    assert!(va.nbd_addr().is_some());
    assert!(vb.nbd_addr().is_none());
    let refused = vb
        .export()
        .write(0, Bytes::from_static(&[1; 4096]), false)
        .await;
    assert_eq!(refused, Err(NbdError::Perm));
    va.stop().await;
    vb.stop().await;
}

// Input: the dialing node A started alone, its first dial refused, so that it sits out a
// 60 s connect interval; then B starts. Output: the pair connects well within that interval
// (B's start wakes A's dialer).
#[tokio::test(flavor = "multi_thread")]
async fn a_pair_started_one_node_after_the_other_connects_at_once() {
    let (mut a, b) = pair(4 * MIB, Protocol::C, Role::Secondary);
    a.config.connect_interval = Duration::from_secs(60);
    let va = a.start().await;
    // A dials as it starts; B is not listening yet, so the dial is refused at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_ne!(va.status().connection, ConnState::Connected);
    let vb = b.start().await;
    wait_connected(&va).await;
    wait_connected(&vb).await;
    va.stop().await;
    vb.stop().await;
}

// Input: B's backing file already holds data (adopted: Fulcrum did not create it), A's is new
// (zeros, UpToDate); both secondary. Output: B, Inconsistent, is resynced whole from A, and the
// two files end identical. (B's metadata started with an empty bitmap, the resync copied
// nothing, and B called itself UpToDate with its old data.)
#[tokio::test(flavor = "multi_thread")]
async fn an_adopted_backing_is_resynced_whole() {
    let (a, b) = pair(4 * MIB, Protocol::C, Role::Secondary);
    std::fs::write(b.backing(), pattern(9, 4 * MIB as usize)).unwrap();
    let (va, vb) = start_connected(&a, &b).await;
    wait_for(&vb, "UpToDate", |s| {
        s.disk == DiskState::UpToDate && s.resync.is_none()
    })
    .await;
    assert_same_files(&a.backing(), &b.backing());
    va.stop().await;
    vb.stop().await;
}

// Input: both backing files adopted (both Inconsistent), connected; A promoted with `force`.
// Output: B is resynced whole from A and the files end identical, as DRBD's forced promotion
// starts the initial sync. (The link stayed up with B Inconsistent, no resync started, and a
// failover to B was impossible until someone disconnected and connected again.)
#[tokio::test(flavor = "multi_thread")]
async fn a_forced_promotion_of_two_adopted_disks_resyncs_the_peer_whole() {
    let (a, b) = pair(4 * MIB, Protocol::C, Role::Secondary);
    std::fs::write(a.backing(), pattern(3, 4 * MIB as usize)).unwrap();
    std::fs::write(b.backing(), pattern(9, 4 * MIB as usize)).unwrap();
    let (va, vb) = start_connected(&a, &b).await;
    assert_eq!(vb.status().disk, DiskState::Inconsistent);
    va.promote(true).await.unwrap();
    wait_for(&vb, "UpToDate", |s| {
        s.disk == DiskState::UpToDate && s.resync.is_none()
    })
    .await;
    assert_same_files(&a.backing(), &b.backing());
    va.stop().await;
    vb.stop().await;
}

/// Writes `total` bytes of pattern data through A's export, 1 MiB at a time, 8 in flight.
async fn write_through(export: &fulcrum_storage::volume::VolumeExport, total: u64, seed: u64) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total / MIB {
        let export = export.clone();
        tasks.spawn(async move {
            let data = Bytes::from(pattern(seed + i, MIB as usize));
            export.write(i * MIB, data, false).await
        });
        if tasks.len() >= 8 {
            tasks.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
}

// Input: 32 MiB written with protocol C. Output: once every write returned, the secondary's
// backing file is byte-identical (no flush needed: C acks when on both sides).
#[tokio::test(flavor = "multi_thread")]
async fn protocol_c_writes_are_on_the_secondary_when_acknowledged() {
    let (a, b) = pair(32 * MIB, Protocol::C, Role::Primary);
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    write_through(&va.export(), 32 * MIB, 1).await;
    assert_same_files(&a.backing(), &b.backing());
    let s = va.status();
    assert_eq!(s.out_of_sync_bytes, 0);
    assert_eq!(s.counters.writes_acked, 32);
    assert!(s.counters.net_sent_bytes >= 32 * MIB, "{s:#?}");
    va.stop().await;
    vb.stop().await;
}

// Input: 16 MiB written with protocol A, then a flush. Output: identical after the flush.
#[tokio::test(flavor = "multi_thread")]
async fn protocol_a_writes_are_on_the_secondary_after_a_flush() {
    let (a, b) = pair(16 * MIB, Protocol::A, Role::Primary);
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    let export = va.export();
    write_through(&export, 16 * MIB, 7).await;
    export.flush().await.unwrap();
    assert_same_files(&a.backing(), &b.backing());
    va.stop().await;
    vb.stop().await;
}

// Input: for each protocol, a connected pair whose secondary's disk fails over one 4 KiB
// block; a write there through the primary, then a flush. Output: the client's write and flush
// succeed (the primary's copy is good), and the primary has the block marked out of sync, so
// the next connection resyncs it; with protocol A too, whose writes the peer never acks unless
// they fail.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_the_secondary_failed_is_out_of_sync_on_the_primary() {
    for protocol in [Protocol::A, Protocol::B, Protocol::C] {
        let (a, b) = pair(4 * MIB, protocol, Role::Primary);
        let (va, vb) = start_connected(&a, &b).await;
        vb.inject_local_io_errors(MIB, BLOCK);
        let export = va.export();
        export
            .write(MIB, Bytes::from(pattern(5, BLOCK as usize)), false)
            .await
            .unwrap();
        export.flush().await.unwrap();
        let s = va.status();
        assert_eq!(s.out_of_sync_bytes, BLOCK, "{protocol:?}: {s:#?}");
        assert_eq!(s.counters.writes_out_of_sync, 1, "{protocol:?}: {s:#?}");
        va.stop().await;
        vb.stop().await;
    }
}

/// Demotes `primary`, then asserts that `other`, its peer now secondary, may not be promoted
/// with its disk `disk`.
async fn demote_and_refuse_promotion(primary: &Volume, other: &Volume, disk: DiskState) {
    primary.demote().await.unwrap();
    wait_for(other, "the demotion", |s| {
        s.peer_role == Some(Role::Secondary)
    })
    .await;
    let refused = other.promote(false).await;
    assert!(
        matches!(refused, Err(VolumeError::NotUpToDate(d)) if d == disk),
        "{disk:?}: {refused:?}"
    );
}

/// A connected pair (protocol C) whose secondary, with `on_io_error = policy`, has just
/// failed a 4 KiB write through the primary: its disk fails over that block. The write
/// returned to the primary's client.
async fn a_write_failed_on_the_secondary(
    policy: IoErrorPolicy,
) -> (support::Node, support::Node, Volume, Volume) {
    let (a, mut b) = pair(4 * MIB, Protocol::C, Role::Primary);
    b.config.on_io_error = policy;
    let (va, vb) = start_connected(&a, &b).await;
    vb.inject_local_io_errors(MIB, BLOCK);
    va.export()
        .write(MIB, Bytes::from(pattern(5, BLOCK as usize)), false)
        .await
        .unwrap();
    (a, b, va, vb)
}

// Input: a connected pair, the secondary's disk failing over one block, with `on_io_error`
// detach then pass_on; a write there through the primary; then the primary demoted and the
// secondary asked to become primary. Output: the secondary goes Diskless (detach) or
// Inconsistent (pass_on), the primary sees that disk state, and the promotion is refused.
// (It stayed UpToDate and could be promoted: it served the block's old contents, and a later
// resync from it overwrote the primary's good copy.)
#[tokio::test(flavor = "multi_thread")]
async fn a_secondary_whose_disk_fails_a_write_is_no_longer_up_to_date() {
    for (policy, after) in [
        (IoErrorPolicy::Detach, DiskState::Diskless),
        (IoErrorPolicy::PassOn, DiskState::Inconsistent),
    ] {
        let (_a, _b, va, vb) = a_write_failed_on_the_secondary(policy).await;
        wait_for(&vb, "the failed write to take the disk down", |s| {
            s.disk == after
        })
        .await;
        wait_for(&va, "the primary to see it", |s| s.peer_disk == Some(after)).await;
        demote_and_refuse_promotion(&va, &vb, after).await;
        va.stop().await;
        vb.stop().await;
    }
}

// Input: a connected pair, the secondary's disk failing over one block, with `on_io_error`
// detach then pass_on; a write there through the primary, and the secondary stopped as soon as
// the write returns, then the primary; the secondary restarted alone. Output: it comes back
// Inconsistent and refuses to be promoted. (The disk state was recorded by a task `stop` did
// not wait for: a stop that won the race closed the metadata first, and the node came back
// UpToDate with the block's old contents.)
#[tokio::test(flavor = "multi_thread")]
async fn a_secondary_stopped_right_after_its_disk_failed_a_write_comes_back_inconsistent() {
    for policy in [IoErrorPolicy::Detach, IoErrorPolicy::PassOn] {
        let (_a, b, va, vb) = a_write_failed_on_the_secondary(policy).await;
        vb.stop().await;
        va.stop().await;
        let vb = b.start().await;
        assert_eq!(vb.status().disk, DiskState::Inconsistent, "{policy:?}");
        let refused = vb.promote(false).await;
        assert!(
            matches!(
                refused,
                Err(VolumeError::NotUpToDate(DiskState::Inconsistent))
            ),
            "{policy:?}: {refused:?}"
        );
        vb.stop().await;
    }
}

// Input: a pair whose secondary was stopped while the primary wrote 2 MiB; the secondary
// restarts with `resync_rate` 1 MiB/s, and while it is SyncTarget its disk fails over one block
// in the second MiB the resync brings and one past it, where the primary then writes. Output:
// the resync ends with the secondary Connected but Inconsistent, the failed resync write (its
// whole 1 MiB) and the failed block out of sync, promotion refused, and a ResyncIncomplete
// event for them. (The failed write: the resync ended UpToDate, the block holding its old
// data, so the node could be promoted with it. The failed resync write ended the link, and
// each connection after ran into it again.)
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_target_whose_disk_fails_a_write_does_not_end_up_to_date() {
    let (a, mut b) = pair(4 * MIB, Protocol::C, Role::Primary);
    b.config.on_io_error = IoErrorPolicy::PassOn;
    b.config.resync_rate = Some(MIB);
    let (va, vb) = start_connected(&a, &b).await;
    vb.stop().await;
    va.export()
        .write(0, Bytes::from(pattern(1, 2 * MIB as usize)), false)
        .await
        .unwrap();
    let vb = b.start().await;
    let mut events = vb.subscribe();
    wait_for(&vb, "SyncTarget", |s| s.connection == ConnState::SyncTarget).await;
    // The second 1 MiB of the resync, paced a second later, fails too.
    vb.inject_local_io_errors(MIB + BLOCK, BLOCK);
    vb.inject_local_io_errors(3 * MIB, BLOCK);
    va.export()
        .write(3 * MIB, Bytes::from(pattern(2, BLOCK as usize)), false)
        .await
        .unwrap();
    wait_for(&vb, "the resync over", |s| {
        s.connection == ConnState::Connected && s.counters.resyncs == 1
    })
    .await;
    let s = vb.status();
    assert_eq!(s.disk, DiskState::Inconsistent, "{s:#?}");
    assert_eq!(s.out_of_sync_bytes, MIB + BLOCK, "{s:#?}");
    assert_eq!(
        resync_end(&mut events).await,
        VolumeEvent::ResyncIncomplete(MIB + BLOCK)
    );
    demote_and_refuse_promotion(&va, &vb, DiskState::Inconsistent).await;
    va.stop().await;
    vb.stop().await;
}

// Input: a pair whose secondary was stopped while the primary wrote 2 MiB, then the primary's
// disk failing over one block of them; the secondary restarts, with `checksum_resync` off and
// then on. Output: the resync ends with both Connected, the secondary Inconsistent and the
// primary seeing it so, only that block out of sync on both, and every other block resynced;
// a `ResyncIncomplete` event for the block, not `ResyncDone`, whose alert says the copies are
// in sync. (The failed read ended the link; every new connection ran the resync into the same block
// again, and the two were never Connected.)
#[tokio::test(flavor = "multi_thread")]
async fn a_block_the_sync_source_cannot_read_leaves_the_target_connected_and_inconsistent() {
    for checksum in [false, true] {
        let (mut a, mut b) = pair(4 * MIB, Protocol::C, Role::Primary);
        a.config.checksum_resync = checksum;
        b.config.checksum_resync = checksum;
        let (va, vb) = start_connected(&a, &b).await;
        vb.stop().await;
        va.export()
            .write(0, Bytes::from(pattern(1, 2 * MIB as usize)), false)
            .await
            .unwrap();
        va.inject_local_io_errors(MIB, BLOCK);
        let vb = b.start().await;
        let mut events = vb.subscribe();
        wait_for(&vb, "the resync over", |s| {
            s.connection == ConnState::Connected && s.counters.resyncs == 1
        })
        .await;
        assert_eq!(
            resync_end(&mut events).await,
            VolumeEvent::ResyncIncomplete(BLOCK),
            "checksum {checksum}"
        );
        let s = vb.status();
        assert_eq!(
            s.disk,
            DiskState::Inconsistent,
            "checksum {checksum}: {s:#?}"
        );
        assert_eq!(s.out_of_sync_bytes, BLOCK, "checksum {checksum}");
        wait_for(&va, "the source's side over", |s| {
            s.connection == ConnState::Connected
                && s.peer_disk == Some(DiskState::Inconsistent)
                && s.out_of_sync_bytes == BLOCK
        })
        .await;
        let (x, y) = (
            std::fs::read(a.backing()).unwrap(),
            std::fs::read(b.backing()).unwrap(),
        );
        let failed = MIB as usize..(MIB + BLOCK) as usize;
        assert!(
            x[..failed.start] == y[..failed.start],
            "checksum {checksum}"
        );
        assert!(x[failed.end..] == y[failed.end..], "checksum {checksum}");
        assert_ne!(x[failed.clone()], y[failed], "checksum {checksum}");
        va.stop().await;
        vb.stop().await;
    }
}

// Input: a connected pair, with `on_io_error` detach then pass_on; 4 KiB written through the
// primary into extent 0, then every flush of its disk made to fail, and a client FLUSH.
// Output: the whole of extent 0 (4 MiB, what the activity log covers) is out of sync on the
// primary; with detach the FLUSH succeeds (the peer has the data), with pass_on it fails.
// (Nothing was marked: the kernel reports a lost writeback once, a later flush succeeded, and
// the extent left the log with the write lost and no bit to say so.)
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_local_flush_marks_the_activity_log_out_of_sync() {
    use fulcrum_storage::nbd::Export as _;
    for (policy, flush_ok) in [
        (IoErrorPolicy::Detach, true),
        (IoErrorPolicy::PassOn, false),
    ] {
        let (mut a, b) = pair(8 * MIB, Protocol::C, Role::Primary);
        a.config.on_io_error = policy;
        let (va, vb) = start_connected(&a, &b).await;
        let export = va.export();
        export
            .write(MIB, Bytes::from(pattern(3, BLOCK as usize)), false)
            .await
            .unwrap();
        va.inject_local_flush_errors();
        assert_eq!(export.flush().await.is_ok(), flush_ok, "{policy:?}");
        assert_eq!(va.status().out_of_sync_bytes, 4 * MIB, "{policy:?}");
        vb.stop().await;
        drop(va);
    }
}

// Input: 32 MiB of random data copied by libnbd's nbdcopy to the primary's NBD export
// (protocol C). Output: the secondary's backing file equals the source once nbdcopy returns.
#[tokio::test(flavor = "multi_thread")]
async fn nbdcopy_to_the_primary_is_on_the_secondary_when_it_returns() {
    if !require_tool("nbdcopy") {
        return;
    }
    let (a, b) = pair(32 * MIB, Protocol::C, Role::Primary);
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    let source = a.dir.path().join("source.img");
    std::fs::write(&source, pattern(99, (32 * MIB) as usize)).unwrap();
    let uri = format!("nbd://{}/{}", va.nbd_addr().unwrap(), support::NAME);
    let out = tokio::process::Command::new("nbdcopy")
        .arg(&source)
        .arg(&uri)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_files(&source, &b.backing());
    assert_same_files(&a.backing(), &b.backing());
    va.stop().await;
    vb.stop().await;
}

// Input: a protocol C pair with 8 MiB written through A; qemu-io (QEMU's NBD client) discards
// [1 MiB, 5 MiB + 4 KiB) on A's export. Output: when qemu-io returns, the range reads back as
// zeroes in both backing files, which stay identical, and both freed its space.
#[tokio::test(flavor = "multi_thread")]
async fn a_trim_frees_the_range_on_both_nodes_and_keeps_them_identical() {
    use std::os::unix::fs::MetadataExt;
    if !require_tool("qemu-io") {
        return;
    }
    let (a, b) = pair(16 * MIB, Protocol::C, Role::Primary);
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    wait_connected(&vb).await;
    write_through(&va.export(), 8 * MIB, 40).await;
    // In 512-byte units, as st_blocks counts.
    let allocated = |path: &std::path::Path| std::fs::metadata(path).unwrap().blocks();
    let before = [allocated(&a.backing()), allocated(&b.backing())];
    let (offset, len) = (MIB, 4 * MIB + BLOCK);
    let uri = format!("nbd://{}/{}", va.nbd_addr().unwrap(), support::NAME);
    let out = tokio::process::Command::new("qemu-io")
        .args(["-f", "raw", "-c"])
        .arg(format!("discard {offset} {len}"))
        .arg(&uri)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains(&format!("discard {len}/{len} bytes")),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_files(&a.backing(), &b.backing());
    let content = std::fs::read(a.backing()).unwrap();
    let range = offset as usize..(offset + len) as usize;
    assert!(
        content[range].iter().all(|&byte| byte == 0),
        "the trimmed range reads as zeroes"
    );
    assert_eq!(
        content[..offset as usize],
        pattern(40, MIB as usize)[..],
        "the bytes before it are untouched"
    );
    let after = [allocated(&a.backing()), allocated(&b.backing())];
    for (node, (before, after)) in ["A", "B"].iter().zip(before.iter().zip(after)) {
        assert!(
            before.saturating_sub(after) >= len / 512,
            "{node} freed {} of {} bytes trimmed",
            before.saturating_sub(after) * 512,
            len
        );
    }
    assert_eq!(va.status().counters.writes_out_of_sync, 0);
    va.stop().await;
    vb.stop().await;
}

// Input: a protocol C pair with 8 MiB written through A; B stopped; A trims [2 MiB, 3 MiB);
// B restarted. Output: the trim was marked out of sync and is resynced, so both files end
// identical with zeroes in the range.
#[tokio::test(flavor = "multi_thread")]
async fn a_trim_made_while_the_peer_is_away_is_resynced() {
    let (a, b) = pair(16 * MIB, Protocol::C, Role::Primary);
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    write_through(&va.export(), 8 * MIB, 50).await;
    // Flushed, so that the peer has the writes for good: those it has not flushed are resynced.
    va.export().flush().await.unwrap();
    vb.stop().await;
    wait_for(&va, "disconnect", |s| s.connection == ConnState::Connecting).await;
    va.export().trim(2 * MIB, MIB, false).await.unwrap();
    wait_for(&va, "the trim marked", |s| s.out_of_sync_bytes == MIB).await;
    let vb = b.start().await;
    wait_connected(&vb).await;
    wait_for(&va, "resynced", |s| s.out_of_sync_bytes == 0).await;
    wait_for(&vb, "the trimmed MiB resynced", |s| {
        s.counters.resynced_bytes == MIB
    })
    .await;
    assert_same_files(&a.backing(), &b.backing());
    let content = std::fs::read(b.backing()).unwrap();
    assert!(
        content[(2 * MIB) as usize..(3 * MIB) as usize]
            .iter()
            .all(|&byte| byte == 0)
    );
    va.stop().await;
    vb.stop().await;
}

// Input: B stopped; A writes 10 scattered blocks and one 1 MiB range; B restarted. Output:
// exactly those 10 × 4 KiB + 1 MiB are resynced (counted on both sides), the files end equal.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_changed_blocks_are_resynced_after_the_secondary_returns() {
    let (a, b) = pair(64 * MIB, Protocol::C, Role::Primary);
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    write_through(&va.export(), 8 * MIB, 3).await;
    // Flushed, so that the peer has the writes for good: those it has not flushed are resynced.
    va.export().flush().await.unwrap();
    vb.stop().await;
    wait_for(&va, "disconnect", |s| s.connection == ConnState::Connecting).await;

    let export = va.export();
    for i in 0..10u64 {
        let offset = 5 * MIB + i * 3 * MIB + BLOCK * i;
        let data = Bytes::from(pattern(1000 + i, BLOCK as usize));
        export.write(offset, data, false).await.unwrap();
    }
    export
        .write(40 * MIB, Bytes::from(pattern(77, MIB as usize)), true)
        .await
        .unwrap();
    let changed = 10 * BLOCK + MIB;
    assert_eq!(va.status().counters.writes_out_of_sync, 11);
    // The bitmap is marked by the metadata thread, a moment after the writes' acks.
    wait_for(&va, "the changed blocks marked", |s| {
        s.out_of_sync_bytes == changed
    })
    .await;

    let vb = b.start().await;
    wait_connected(&vb).await;
    wait_connected(&va).await;
    let (sa, sb) = (va.status(), vb.status());
    println!(
        "resynced: source {} bytes, target {} bytes",
        sa.counters.resynced_bytes, sb.counters.resynced_bytes
    );
    assert_eq!(sa.counters.resynced_bytes, changed, "{sa:#?}");
    assert_eq!(sb.counters.resynced_bytes, changed, "{sb:#?}");
    assert_eq!(sb.disk, DiskState::UpToDate);
    assert_eq!(sa.out_of_sync_bytes, 0);
    assert_eq!(sb.out_of_sync_bytes, 0);
    assert_same_files(&a.backing(), &b.backing());
    va.stop().await;
    vb.stop().await;
}

// Input: a connected pair disconnected, both promoted with force and written, both demoted,
// reconnected (after_split_brain all `disconnect`). Output: the split brain is detected and
// both stay StandAlone; `connect(discard_my_data = true)` on B (and `connect` on A, StandAlone
// too, as DRBD asks) makes B the target, and the files end identical with A's data.
#[tokio::test(flavor = "multi_thread")]
async fn a_split_brain_is_detected_and_resolved_by_discard_my_data() {
    let (a, b) = pair(16 * MIB, Protocol::C, Role::Secondary);
    let (va, vb) = start_connected(&a, &b).await;
    let mut events = vb.subscribe();
    split_brain(&va, &vb).await;
    // Both were StandAlone already: wait for the event, then for both to be StandAlone again.
    let saw = tokio::time::timeout(Duration::from_secs(8), async {
        while events.recv().await.unwrap() != VolumeEvent::SplitBrain {}
    })
    .await;
    assert!(saw.is_ok(), "no split brain: {:#?}", vb.status());
    wait_standalone(&va).await;
    wait_standalone(&vb).await;
    // Still apart after a while: never silently merged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(va.status().connection, ConnState::StandAlone);
    assert_eq!(vb.status().connection, ConnState::StandAlone);

    vb.connect(true).await.unwrap();
    va.connect(false).await.unwrap();
    wait_connected(&vb).await;
    wait_connected(&va).await;
    assert_eq!(vb.status().disk, DiskState::UpToDate);
    // Bitmap-based: A's 1 MiB and B's 8 KiB, nothing else.
    assert_eq!(vb.status().counters.resynced_bytes, MIB + 8192);
    assert_same_files(&a.backing(), &b.backing());
    va.stop().await;
    vb.stop().await;
}

// Input: the same split brain with zero_primaries = discard-least-changes. Output: resolved
// automatically, B (fewer changes) is the target.
#[tokio::test(flavor = "multi_thread")]
async fn discard_least_changes_resolves_a_split_brain_by_itself() {
    let (mut a, mut b) = pair(16 * MIB, Protocol::C, Role::Secondary);
    for n in [&mut a, &mut b] {
        n.config.after_split_brain.zero_primaries = ZeroPrimariesPolicy::DiscardLeastChanges;
    }
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    split_brain(&va, &vb).await;
    wait_connected(&vb).await;
    wait_connected(&va).await;
    assert_same_files(&a.backing(), &b.backing());
    let data = std::fs::read(b.backing()).unwrap();
    assert_eq!(&data[..MIB as usize], &pattern(1, MIB as usize)[..]);
    va.stop().await;
    vb.stop().await;
}

// Input: the two nodes with different secrets, connect_interval 200 ms, for 2 s. Output: never
// connected, both count refusals, the dialer tried at most 5 times (backoff 200, 400, 800 ms..),
// and not a byte of replication traffic crossed.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_refused_without_data_and_without_a_tight_loop() {
    let (mut a, mut b) = pair(4 * MIB, Protocol::C, Role::Primary);
    a.config.connect_interval = Duration::from_millis(200);
    b.config.connect_interval = Duration::from_millis(200);
    b.config.shared_secret = SharedSecret::new("not the same");
    let (va, vb) = (a.start().await, b.start().await);
    let mut events = vb.subscribe();
    va.export()
        .write(0, Bytes::from(pattern(5, 4096)), false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (sa, sb) = (va.status(), vb.status());
    assert_eq!(sa.connection, ConnState::Connecting);
    assert_eq!(sb.connection, ConnState::Connecting);
    // a listens on the lower port: it dials.
    let attempts = sa.counters.connect_attempts;
    assert!((2..=5).contains(&attempts), "{attempts} attempts in 2 s");
    assert!(sa.counters.auth_failures >= 1 && sb.counters.auth_failures >= 1);
    for s in [&sa, &sb] {
        assert_eq!(s.counters.net_sent_bytes, 0, "{s:#?}");
        assert_eq!(s.counters.net_received_bytes, 0, "{s:#?}");
        assert_eq!(s.counters.connections, 0);
    }
    assert_eq!(events.try_recv().ok(), Some(VolumeEvent::AuthRefused));
    assert!(std::fs::read(b.backing()).unwrap().iter().all(|&x| x == 0));
    va.stop().await;
    vb.stop().await;
}

// Input: protocol C, a stream of FUA writes from 4 clients, each recorded when acknowledged;
// the primary dropped abruptly mid-stream (its tasks aborted, no clean stop). Output: the
// secondary notices, is promoted, and holds every acknowledged write; the crashed node restarts,
// resyncs from it as SyncTarget, and the two end identical.
#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_the_loss_of_the_primary() {
    let (mut a, b) = pair(64 * MIB, Protocol::C, Role::Primary);
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let export = va.export();
        let acked = Arc::clone(&acked);
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let block = (w * 1000 + i) % 4096;
                let seed = w << 32 | i;
                let data = Bytes::from(pattern(seed, BLOCK as usize));
                if export.write(block * BLOCK, data, true).await.is_err() {
                    return;
                }
                acked.lock().unwrap().push((block, seed));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(va);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "only {} writes acknowledged", acked.len());
    wait_for(&vb, "primary lost", |s| {
        s.connection == ConnState::Connecting
    })
    .await;
    vb.promote(false).await.unwrap();
    // The last acknowledged write to each block is what it must hold.
    let mut last = std::collections::HashMap::new();
    for (block, seed) in &acked {
        last.insert(*block, *seed);
    }
    let export = vb.export();
    for (block, seed) in last {
        let got = export.read(block * BLOCK, BLOCK as usize).await.unwrap();
        assert_eq!(
            &got[..],
            &pattern(seed, BLOCK as usize)[..],
            "block {block}"
        );
    }
    println!("{} acknowledged writes, all on the secondary", acked.len());

    // The crashed node comes back (as secondary: started as primary while B is primary and
    // before it hears of B, it would promote itself and the two would refuse each other). Its
    // metadata was left unclean, so its activity-log extents are out of sync; it becomes
    // SyncTarget for B's new generation and ends identical.
    a.config.role = Role::Secondary;
    vb.export()
        .write(8 * MIB, Bytes::from(pattern(4242, 8192)), false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let va = a.start().await;
    wait_connected(&va).await;
    wait_connected(&vb).await;
    let s = va.status();
    assert_eq!(s.role, Role::Secondary);
    assert_eq!(s.disk, DiskState::UpToDate);
    // The hot region only: the writers' blocks lie in the first four 4 MiB extents.
    assert!(s.counters.resynced_bytes >= 8192, "{s:#?}");
    assert!(s.counters.resynced_bytes <= 16 * MIB, "{s:#?}");
    println!(
        "crashed primary resynced {} bytes",
        s.counters.resynced_bytes
    );
    assert_same_files(&a.backing(), &b.backing());
    va.stop().await;
    vb.stop().await;
}

// Input: a primary that demotes. Output: NBD stops (no address), writes get EPERM, the peer
// sees a secondary.
#[tokio::test(flavor = "multi_thread")]
async fn demotion_stops_nbd_and_refuses_writes() {
    let (a, b) = pair(4 * MIB, Protocol::C, Role::Primary);
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    wait_for(&vb, "peer primary", |s| s.peer_role == Some(Role::Primary)).await;
    assert!(vb.promote(false).await.is_err());
    va.demote().await.unwrap();
    assert_eq!(va.nbd_addr(), None);
    let refused = va
        .export()
        .write(0, Bytes::from_static(&[1; 512]), false)
        .await;
    assert_eq!(refused, Err(NbdError::Perm));
    wait_for(&vb, "peer secondary", |s| {
        s.peer_role == Some(Role::Secondary)
    })
    .await;
    vb.promote(false).await.unwrap();
    assert!(vb.nbd_addr().is_some());
    va.stop().await;
    vb.stop().await;
}

// Input: a connected pair with 8 MiB written; three 4 KiB blocks of the secondary's backing
// file overwritten behind its back (in written data and in never-written zeroes). Output: a
// verify before that (run on the secondary) finds nothing; afterwards, verify on the primary
// reports exactly those 12 KiB of the 16 MiB checked and marks them out of sync, a second
// verify started together is refused; while StandAlone verify is refused; after disconnect and
// connect exactly those blocks are resynced and the files are identical.
#[tokio::test(flavor = "multi_thread")]
async fn online_verify_finds_blocks_changed_behind_the_secondarys_back() {
    let (a, b) = pair(16 * MIB, Protocol::C, Role::Primary);
    let (va, vb) = start_connected(&a, &b).await;
    write_through(&va.export(), 8 * MIB, 11).await;
    let clean = vb.verify().await.unwrap();
    assert_eq!(
        clean,
        VerifyReport {
            checked_bytes: 16 * MIB,
            differing_bytes: 0
        }
    );

    let bad = [3 * BLOCK, 2 * MIB + 5 * BLOCK, 12 * MIB];
    overwrite_blocks(&b.backing(), &bad, 500);
    let (first, second) = tokio::join!(va.verify(), va.verify());
    let (report, refused) = match (first, second) {
        (Ok(report), Err(refused)) | (Err(refused), Ok(report)) => (report, refused),
        other => panic!("one verify at a time: {other:?}"),
    };
    assert!(matches!(refused, VolumeError::VerifyRunning), "{refused}");
    assert_eq!(
        report,
        VerifyReport {
            checked_bytes: 16 * MIB,
            differing_bytes: 3 * BLOCK
        }
    );
    assert_eq!(va.status().out_of_sync_bytes, 3 * BLOCK);

    let before = vb.status().counters;
    va.disconnect().await.unwrap();
    wait_standalone(&va).await;
    wait_for(&vb, "peer gone", |s| s.connection == ConnState::Connecting).await;
    let refused = va.verify().await;
    assert!(
        matches!(
            refused,
            Err(VolumeError::NotConnected(ConnState::StandAlone))
        ),
        "{refused:?}"
    );
    va.connect(false).await.unwrap();
    wait_resync_done(&vb, before.resyncs).await;
    wait_connected(&va).await;
    let after = vb.status().counters;
    assert_eq!(after.resynced_bytes - before.resynced_bytes, 3 * BLOCK);
    assert_eq!(va.status().out_of_sync_bytes, 0);
    assert_same_files(&a.backing(), &b.backing());
    va.stop().await;
    vb.stop().await;
}

// Input: a pair with 16 MiB written and in sync; B stopped, its metadata deleted (as after
// losing its state_dir) and four 4 KiB blocks of its backing changed; B restarted with
// checksum_resync. Output: B, Inconsistent and without history, gets a full resync of the 16 MiB,
// but only the four blocks' data crosses: resynced_bytes is 16 KiB and resync_skipped_bytes the
// rest, on both sides; A sends well under 1 MiB for it; the files end identical.
#[tokio::test(flavor = "multi_thread")]
async fn checksum_resync_sends_only_the_blocks_that_differ() {
    let (a, mut b) = pair(16 * MIB, Protocol::C, Role::Primary);
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    write_through(&va.export(), 16 * MIB, 21).await;
    vb.stop().await;
    wait_for(&va, "disconnect", |s| s.connection == ConnState::Connecting).await;

    std::fs::remove_dir_all(b.state_dir().join("volume").join(support::NAME)).unwrap();
    let bad = [
        0,
        5 * MIB + 3 * BLOCK,
        9 * MIB + 17 * BLOCK,
        16 * MIB - BLOCK,
    ];
    overwrite_blocks(&b.backing(), &bad, 700);
    b.config.checksum_resync = true;
    let before = va.status().counters;
    let vb = b.start().await;
    assert_eq!(vb.status().disk, DiskState::Inconsistent);
    wait_connected(&vb).await;
    wait_resync_done(&va, before.resyncs).await;
    let (sa, sb) = (va.status().counters, vb.status().counters);
    let differing = bad.len() as u64 * BLOCK;
    println!(
        "checksum resync: {} bytes sent, {} skipped, {} bytes on the wire from the source",
        sa.resynced_bytes - before.resynced_bytes,
        sa.resync_skipped_bytes - before.resync_skipped_bytes,
        sa.net_sent_bytes - before.net_sent_bytes
    );
    assert_eq!(sb.resynced_bytes, differing, "{sb:#?}");
    assert_eq!(sb.resync_skipped_bytes, 16 * MIB - differing, "{sb:#?}");
    assert_eq!(sa.resynced_bytes - before.resynced_bytes, differing);
    assert_eq!(
        sa.resync_skipped_bytes - before.resync_skipped_bytes,
        16 * MIB - differing
    );
    assert!(
        sa.net_sent_bytes - before.net_sent_bytes < 256 * 1024,
        "{sa:#?}"
    );
    assert_eq!(vb.status().disk, DiskState::UpToDate);
    assert_same_files(&a.backing(), &b.backing());
    va.stop().await;
    vb.stop().await;
}

// Input: a connected pair (on_io_error = detach) with 4 MiB written; A's disk made to fail
// over one 4 KiB block. Output: a read of that block through A still returns its data (from
// B); A is Diskless, and B sees it; writes then go to B only (A's file keeps zeroes there) and
// read back through A; a flush succeeds; A marks out of sync its activity log's extent (the
// first 4 MiB, which hold the failed block and writes that may not have reached the failing
// disk) and the new writes, and verify is refused (Diskless). A restarted (its disk healthy
// again) comes back Inconsistent, stays secondary, resyncs exactly those blocks from B, and
// the files end identical.
#[tokio::test(flavor = "multi_thread")]
async fn detach_serves_from_the_peer_after_a_local_io_error() {
    let (a, b) = pair(8 * MIB, Protocol::C, Role::Primary);
    assert_eq!(a.config.on_io_error, IoErrorPolicy::Detach);
    let (va, vb) = start_connected(&a, &b).await;
    let export = va.export();
    write_through(&export, 4 * MIB, 31).await;
    let mut events = va.subscribe();

    let failing = MIB + 2 * BLOCK;
    va.inject_local_io_errors(failing, BLOCK);
    let got = export.read(failing, BLOCK as usize).await.unwrap();
    let written = pattern(31 + 1, MIB as usize);
    assert_eq!(&got[..], &written[2 * BLOCK as usize..3 * BLOCK as usize]);
    let s = va.status();
    assert_eq!(s.disk, DiskState::Diskless);
    assert!(s.counters.peer_read_bytes >= BLOCK, "{s:#?}");
    wait_for(&vb, "peer Diskless", |s| {
        s.peer_disk == Some(DiskState::Diskless)
    })
    .await;
    let mut saw = Vec::new();
    while let Ok(event) = events.try_recv() {
        saw.push(event);
    }
    assert!(saw.contains(&VolumeEvent::Detached), "{saw:?}");

    // Writes go to B only; reads (even of healthy blocks) come from B.
    let new = Bytes::from(pattern(900, 64 * 1024));
    export.write(6 * MIB, new.clone(), false).await.unwrap();
    export.flush().await.unwrap();
    assert_eq!(export.read(6 * MIB, new.len()).await.unwrap(), new);
    let whole = export.read(0, 2 * MIB as usize).await.unwrap();
    assert_eq!(&whole[MIB as usize..], &written[..]);
    let on_b = std::fs::read(b.backing()).unwrap();
    assert_eq!(&on_b[6 * MIB as usize..][..new.len()], &new[..]);
    let on_a = std::fs::read(a.backing()).unwrap();
    assert!(
        on_a[6 * MIB as usize..][..new.len()]
            .iter()
            .all(|&x| x == 0)
    );
    assert_eq!(va.status().out_of_sync_bytes, 4 * MIB + 64 * 1024);
    assert!(va.status().counters.peer_read_bytes >= BLOCK + 64 * 1024 + 2 * MIB);
    assert!(matches!(
        va.verify().await,
        Err(VolumeError::NotUpToDate(DiskState::Diskless))
    ));
    assert!(matches!(
        vb.verify().await,
        Err(VolumeError::PeerNotUpToDate(Some(DiskState::Diskless)))
    ));

    va.stop().await;
    let va = a.start().await;
    let s = va.status();
    assert_eq!((s.role, s.disk), (Role::Secondary, DiskState::Inconsistent));
    wait_for(&va, "resynced", |s| {
        s.disk == DiskState::UpToDate && s.connection == ConnState::Connected && s.resync.is_none()
    })
    .await;
    assert_eq!(va.status().counters.resynced_bytes, 4 * MIB + 64 * 1024);
    assert_same_files(&a.backing(), &b.backing());
    va.stop().await;
    vb.stop().await;
}

// Input: protocol A, then B; the primary A detached after its disk failed a block, and B's disk
// (on_io_error = pass_on) failing over another. Through A, a write there and then a flush;
// on a second pair, a FUA write there. Output: the write returns (A and B acknowledge it before
// the peer's disk has it), but the flush fails: the write is on neither disk; the FUA write
// fails. (Both succeeded, and the client was told its data was safe.)
#[tokio::test(flavor = "multi_thread")]
async fn a_detached_primary_reports_a_write_its_peer_failed() {
    for protocol in [Protocol::A, Protocol::B] {
        for fua in [false, true] {
            let (a, mut b) = pair(4 * MIB, protocol, Role::Primary);
            b.config.on_io_error = IoErrorPolicy::PassOn;
            let (va, vb) = start_connected(&a, &b).await;
            let export = va.export();
            va.inject_local_io_errors(0, BLOCK);
            export.read(0, BLOCK as usize).await.unwrap();
            assert_eq!(va.status().disk, DiskState::Diskless, "{protocol:?}");
            vb.inject_local_io_errors(MIB, BLOCK);
            let data = Bytes::from(pattern(7, BLOCK as usize));
            let written = export.write(MIB, data, fua).await;
            let flushed = export.flush().await;
            let case = format!("{protocol:?}, fua {fua}");
            if fua {
                assert!(matches!(written, Err(NbdError::Io)), "{case}: {written:?}");
            } else {
                written.unwrap();
                assert!(matches!(flushed, Err(NbdError::Io)), "{case}: {flushed:?}");
            }
            va.stop().await;
            vb.stop().await;
        }
    }
}

// Input: as above with protocol A: the detached primary's write there, failed by the peer;
// then writes into as many new extents as the activity log holds, and one more, which makes
// the log flush for room. Output: those writes all succeed, and the client's FLUSH after them
// fails. (The log's own flush took the error: an unrelated write got EIO, and the client's
// FLUSH then said the lost write was safe.)
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_write_is_reported_to_the_clients_flush_not_to_the_logs() {
    use fulcrum_storage::volume::meta::activity_log::EXTENT_SIZE;
    const AL_EXTENTS: u64 = 67; // the smallest DRBD allows
    let (mut a, mut b) = pair((AL_EXTENTS + 2) * EXTENT_SIZE, Protocol::A, Role::Primary);
    a.config.al_extents = AL_EXTENTS as usize;
    b.config.on_io_error = IoErrorPolicy::PassOn;
    let (va, vb) = start_connected(&a, &b).await;
    let export = va.export();
    va.inject_local_io_errors(0, BLOCK);
    export.read(0, BLOCK as usize).await.unwrap();
    assert_eq!(va.status().disk, DiskState::Diskless);
    vb.inject_local_io_errors(MIB, BLOCK);
    let data = || Bytes::from(pattern(9, BLOCK as usize));
    export.write(MIB, data(), false).await.unwrap();
    for extent in 1..=AL_EXTENTS + 1 {
        let written = export.write(extent * EXTENT_SIZE, data(), false).await;
        assert!(written.is_ok(), "extent {extent}: {written:?}");
    }
    let flushed = export.flush().await;
    assert!(matches!(flushed, Err(NbdError::Io)), "{flushed:?}");
    va.stop().await;
    vb.stop().await;
}

// Input: on_io_error = pass_on, A's disk failing over one block; then a detach-configured
// primary alone (no peer to go on with). Output: in both, a read and a write there get EIO, the
// write's block is marked out of sync, the disk stays UpToDate and attached, and the other
// blocks still work.
#[tokio::test(flavor = "multi_thread")]
async fn pass_on_and_detach_without_a_peer_return_the_error() {
    let (mut a, b) = pair(4 * MIB, Protocol::C, Role::Primary);
    a.config.on_io_error = IoErrorPolicy::PassOn;
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    let (alone, _alone_peer) = pair(4 * MIB, Protocol::C, Role::Primary);
    let lone = alone.start().await;
    for v in [&va, &lone] {
        let export = v.export();
        v.inject_local_io_errors(MIB, BLOCK);
        assert_eq!(export.read(MIB, BLOCK as usize).await, Err(NbdError::Io));
        let data = Bytes::from(pattern(3, BLOCK as usize));
        assert_eq!(
            export.write(MIB, data.clone(), false).await,
            Err(NbdError::Io)
        );
        export.write(2 * MIB, data.clone(), false).await.unwrap();
        assert_eq!(export.read(2 * MIB, BLOCK as usize).await.unwrap(), data);
        let s = v.status();
        assert_eq!(s.disk, DiskState::UpToDate);
        assert_eq!(s.counters.peer_read_bytes, 0);
        assert!(s.out_of_sync_bytes >= BLOCK, "{s:#?}");
    }
    assert_eq!(va.status().out_of_sync_bytes, BLOCK);
    va.stop().await;
    vb.stop().await;
    lone.stop().await;
}

/// A started pair, both Connected and in sync.
async fn start_connected(a: &support::Node, b: &support::Node) -> (Volume, Volume) {
    let (va, vb) = (a.start().await, b.start().await);
    wait_connected(&va).await;
    wait_connected(&vb).await;
    (va, vb)
}

async fn wait_standalone(volume: &Volume) {
    wait_for(volume, "StandAlone", |s| {
        s.connection == ConnState::StandAlone
    })
    .await;
}

/// Waits until `volume` is Connected again with a resync counted after the `before` first ones.
async fn wait_resync_done(volume: &Volume, before: u64) {
    wait_for(volume, "resync done", |s| {
        s.counters.resyncs > before && s.connection == ConnState::Connected
    })
    .await;
}

/// A split brain of a connected pair: both disconnected, promoted with force and written (A
/// 1 MiB at 0, B 8 KiB at 2 MiB), demoted, and told to connect.
async fn split_brain(va: &Volume, vb: &Volume) {
    va.disconnect().await.unwrap();
    vb.disconnect().await.unwrap();
    for v in [va, vb] {
        wait_standalone(v).await;
        v.promote(true).await.unwrap();
    }
    va.export()
        .write(0, Bytes::from(pattern(1, MIB as usize)), false)
        .await
        .unwrap();
    vb.export()
        .write(2 * MIB, Bytes::from(pattern(2, 8192)), false)
        .await
        .unwrap();
    va.demote().await.unwrap();
    vb.demote().await.unwrap();
    va.connect(false).await.unwrap();
    vb.connect(false).await.unwrap();
}

/// Overwrites the 4 KiB blocks at `offsets` of `backing` behind its volume's back, each with
/// the pattern of `seed` plus its index.
fn overwrite_blocks(backing: &std::path::Path, offsets: &[u64], seed: u64) {
    for (i, &offset) in offsets.iter().enumerate() {
        overwrite(backing, offset, &pattern(seed + i as u64, BLOCK as usize));
    }
}

/// Whether `tool` is on PATH; without it the test is skipped (failed in CI).
fn require_tool(tool: &str) -> bool {
    let found = std::process::Command::new("which")
        .arg(tool)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} missing in CI");
        eprintln!("skipped: {tool} not installed (apt install libnbd-bin qemu-utils)");
    }
    found
}
