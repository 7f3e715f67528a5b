//! Round trips and crash simulations of the metadata directory: a crash is a `Meta` dropped
//! without `close`, or a file damaged on purpose.

use super::activity_log::EXTENT_SIZE;
use super::*;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 64 * MIB + 1000;

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("volume").join("data");
    (tmp, dir)
}

#[test]
fn create_close_open_round_trips_the_state_and_bitmap() {
    // Input: a new volume; a state change, an out-of-sync range, clean close.
    // Output: open sees the same state and bitmap and no recovery.
    let (_tmp, dir) = fresh();
    let mut meta = Meta::create(&dir, SIZE, DiskState::UpToDate).expect("create");
    assert_eq!(meta.state().ids, GenerationIds::just_created());
    meta.update(|s| {
        s.ids.new_current(0x1230, true);
        s.primary = true;
        s.peer_disk = Some(DiskState::Outdated);
    })
    .expect("update");
    meta.begin_write(MIB, 8192).expect("begin");
    meta.mark_out_of_sync(MIB, 8192).expect("mark");
    meta.end_write(MIB, 8192);
    let state = *meta.state();
    meta.close().expect("close");

    let meta = Meta::open(&dir).expect("open");
    assert_eq!(meta.recovery(), None);
    assert_eq!(*meta.state(), state);
    assert_eq!(meta.size(), SIZE);
    assert_eq!(
        meta.bitmap().dirty_ranges().collect::<Vec<_>>(),
        vec![MIB..MIB + 8192]
    );
}

#[test]
fn create_refuses_existing_metadata_and_open_refuses_none() {
    let (_tmp, dir) = fresh();
    assert!(matches!(Meta::open(&dir), Err(MetaError::Missing { .. })));
    Meta::create(&dir, SIZE, DiskState::Inconsistent)
        .expect("create")
        .close()
        .expect("close");
    let err = Meta::create(&dir, SIZE, DiskState::UpToDate).expect_err("exists");
    assert!(matches!(err, MetaError::Exists { .. }));
    assert!(err.to_string().contains("superblock"), "{err}");
    assert_eq!(
        Meta::open(&dir).expect("open").state().disk,
        DiskState::Inconsistent
    );
}

#[test]
fn crash_marks_the_activity_log_extents_out_of_sync() {
    // Input: a Primary with writes in flight in extents 1 and 3 (3 finished), then a crash (drop
    // without close). Output: open finds the unclean flag, marks extents 1 and 3 whole out of
    // sync, records the crashed primary and comes back Secondary.
    let (_tmp, dir) = fresh();
    let mut meta = Meta::create(&dir, SIZE, DiskState::UpToDate).expect("create");
    meta.update(|s| {
        s.ids.skip_initial_sync(0x5550);
        s.ids.set_role(true);
        s.primary = true;
    })
    .expect("promote");
    meta.begin_write(EXTENT_SIZE + 4096, 4096).expect("begin");
    meta.begin_write(3 * EXTENT_SIZE, 512).expect("begin");
    meta.end_write(3 * EXTENT_SIZE, 512);
    drop(meta);

    let meta = Meta::open(&dir).expect("open");
    let rec = meta.recovery().expect("unclean shutdown detected");
    assert_eq!(rec.extents, vec![1, 3]);
    assert_eq!(rec.out_of_sync_bytes, 2 * EXTENT_SIZE);
    assert_eq!(
        meta.bitmap().dirty_ranges().collect::<Vec<_>>(),
        vec![
            EXTENT_SIZE..2 * EXTENT_SIZE,
            3 * EXTENT_SIZE..4 * EXTENT_SIZE
        ],
    );
    let s = meta.state();
    assert!(s.crashed_primary && !s.primary);
    assert_eq!(s.ids.current, 0x5550, "role bit cleared");

    // A second crash right after recovery keeps the bits (they were persisted), and a clean
    // cycle afterwards reports nothing more.
    drop(meta);
    let meta = Meta::open(&dir).expect("open again");
    assert_eq!(meta.recovery().map(|r| r.extents.len()), Some(0));
    assert_eq!(meta.bitmap().out_of_sync_bytes(), 2 * EXTENT_SIZE);
    meta.close().expect("close");
    assert_eq!(Meta::open(&dir).expect("open").recovery(), None);
}

#[test]
fn the_last_partial_extent_is_clamped_to_the_volume() {
    // Input: a crash with a write in flight in the last, partial extent. Output: only the bytes
    // of the volume count as out of sync.
    let (_tmp, dir) = fresh();
    let mut meta = Meta::create(&dir, SIZE, DiskState::UpToDate).expect("create");
    meta.begin_write(SIZE - 10, 10).expect("begin");
    drop(meta);
    let meta = Meta::open(&dir).expect("open");
    assert_eq!(meta.bitmap().out_of_sync_bytes(), SIZE - 16 * EXTENT_SIZE);
}

#[test]
fn eviction_persists_the_bitmap_before_the_extent_leaves_the_log() {
    // Input: an AL of one extent; a write to extent 0 the peer did not get (bits set, bitmap file
    // not yet written), then a write to extent 2 evicting extent 0, then a crash.
    // Output: extent 0's bits were in the bitmap file before the eviction was logged, so after
    // recovery both the exact range in extent 0 and all of extent 2 are out of sync.
    let (_tmp, dir) = fresh();
    let mut meta = Meta::create_with(&dir, SIZE, DiskState::UpToDate, 1).expect("create");
    meta.begin_write(4096, 4096).expect("begin");
    meta.mark_out_of_sync(4096, 4096).expect("mark");
    meta.end_write(4096, 4096);
    let flush = meta.begin_flush();
    meta.end_flush(flush);
    let on_disk = read_bitmap(&dir.join(BITMAP), SIZE).expect("bitmap");
    assert_eq!(
        on_disk.out_of_sync_bytes(),
        0,
        "lagging while extent 0 is in the log"
    );
    meta.begin_write(2 * EXTENT_SIZE, 4096)
        .expect("begin evicts extent 0");
    let on_disk = read_bitmap(&dir.join(BITMAP), SIZE).expect("bitmap");
    assert_eq!(
        on_disk.out_of_sync_bytes(),
        4096,
        "persisted by the eviction"
    );
    drop(meta);

    let meta = Meta::open_with(&dir, 1).expect("open");
    assert_eq!(meta.recovery().map(|r| r.extents.clone()), Some(vec![2]));
    assert_eq!(
        meta.bitmap().dirty_ranges().collect::<Vec<_>>(),
        vec![4096..8192, 2 * EXTENT_SIZE..3 * EXTENT_SIZE],
    );
}

#[test]
fn out_of_sync_outside_the_log_is_persisted_at_once() {
    // Input: bits set for a range no write in flight covers, then a crash. Output: kept.
    let (_tmp, dir) = fresh();
    let mut meta = Meta::create(&dir, SIZE, DiskState::UpToDate).expect("create");
    meta.mark_out_of_sync(40 * MIB, MIB).expect("mark");
    drop(meta);
    let meta = Meta::open(&dir).expect("open");
    assert_eq!(
        meta.bitmap().dirty_ranges().collect::<Vec<_>>(),
        vec![40 * MIB..41 * MIB]
    );
}

#[test]
fn torn_temp_files_are_ignored_and_removed() {
    // Input: a crash in the middle of replacing the superblock and the bitmap: half-written
    // temp files beside the real ones. Output: open uses the real files and deletes the temps.
    let (_tmp, dir) = fresh();
    Meta::create(&dir, SIZE, DiskState::UpToDate)
        .expect("create")
        .close()
        .expect("close");
    fs::write(dir.join("superblock.tmp"), b"FLCRMETA\x01\0\0").expect("torn sb");
    fs::write(dir.join("bitmap.tmp"), b"garbage").expect("torn bitmap");
    let meta = Meta::open(&dir).expect("open");
    assert_eq!(meta.recovery(), None);
    assert!(!dir.join("superblock.tmp").exists() && !dir.join("bitmap.tmp").exists());
}

#[test]
fn a_corrupt_superblock_is_refused_naming_the_file() {
    // Input: one flipped byte, a truncation, a foreign file, a future version.
    // Output: a clear error each time, never a fresh superblock.
    let (_tmp, dir) = fresh();
    Meta::create(&dir, SIZE, DiskState::UpToDate)
        .expect("create")
        .close()
        .expect("close");
    let path = dir.join(SUPERBLOCK);
    let good = fs::read(&path).expect("read");

    let mut flipped = good.clone();
    flipped[45] ^= 0x10;
    fs::write(&path, &flipped).expect("write");
    let err = Meta::open(&dir).expect_err("flipped");
    assert!(matches!(err, MetaError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("superblock") && err.to_string().contains("checksum"),
        "{err}"
    );

    fs::write(&path, &good[..50]).expect("write");
    assert!(matches!(Meta::open(&dir), Err(MetaError::Corrupt { .. })));
    fs::write(&path, b"hello").expect("write");
    assert!(matches!(Meta::open(&dir), Err(MetaError::Corrupt { .. })));
    let mut future = good.clone();
    future[8] = 9;
    fs::write(&path, &future).expect("write");
    assert!(matches!(
        Meta::open(&dir),
        Err(MetaError::Version { version: 9, .. })
    ));

    // Untouched by the failed opens: the good superblock still opens.
    fs::write(&path, &good).expect("write");
    Meta::open(&dir).expect("open");
}

#[test]
fn a_corrupt_bitmap_is_refused_naming_the_file() {
    let (_tmp, dir) = fresh();
    Meta::create(&dir, SIZE, DiskState::UpToDate)
        .expect("create")
        .close()
        .expect("close");
    let path = dir.join(BITMAP);
    let mut bytes = fs::read(&path).expect("read");
    bytes[30] ^= 1;
    fs::write(&path, &bytes).expect("write");
    let err = Meta::open(&dir).expect_err("corrupt");
    assert!(
        matches!(err, MetaError::Corrupt { .. }) && err.to_string().contains("bitmap"),
        "{err}"
    );
}

#[test]
fn peer_bitmap_merge_and_full_sync_are_persisted() {
    // Input: a peer bitmap marking block 2, then a crash; a wrong-length peer bitmap.
    // Output: block 2 survives the crash; the bad bitmap is refused and changes nothing.
    let (_tmp, dir) = fresh();
    let mut meta = Meta::create(&dir, SIZE, DiskState::UpToDate).expect("create");
    let mut peer = Bitmap::new(SIZE);
    peer.set_range(2 * 4096, 1);
    meta.merge_peer_bitmap(&peer.to_bytes()).expect("merge");
    assert!(matches!(
        meta.merge_peer_bitmap(&[1, 2, 3]),
        Err(MetaError::PeerBitmap(_))
    ));
    drop(meta);
    let mut meta = Meta::open(&dir).expect("open");
    assert_eq!(
        meta.bitmap().dirty_ranges().collect::<Vec<_>>(),
        vec![8192..12288]
    );
    meta.set_all_out_of_sync().expect("full");
    drop(meta);
    assert_eq!(
        Meta::open(&dir).expect("open").bitmap().out_of_sync_bytes(),
        SIZE
    );
}

#[test]
fn close_with_writes_in_flight_is_refused_and_leaves_a_crash() {
    let (_tmp, dir) = fresh();
    let mut meta = Meta::create(&dir, SIZE, DiskState::UpToDate).expect("create");
    meta.begin_write(0, 4096).expect("begin");
    assert!(matches!(meta.close(), Err(MetaError::WritesInFlight(1))));
    let meta = Meta::open(&dir).expect("open");
    assert_eq!(meta.recovery().map(|r| r.extents.clone()), Some(vec![0]));
}

#[test]
fn resync_progress_and_checkpoint() {
    // Input: out-of-sync ranges, a resync clears one, a checkpoint, a crash.
    // Output: the cleared range stays clear.
    let (_tmp, dir) = fresh();
    let mut meta = Meta::create(&dir, SIZE, DiskState::UpToDate).expect("create");
    meta.mark_out_of_sync(0, 2 * MIB).expect("mark");
    meta.mark_in_sync(0, MIB);
    meta.checkpoint().expect("checkpoint");
    drop(meta);
    let meta = Meta::open(&dir).expect("open");
    assert_eq!(
        meta.bitmap().dirty_ranges().collect::<Vec<_>>(),
        vec![MIB..2 * MIB]
    );
}
