//! The index against real directories: a scan finds creations, modifications, deletions and
//! renames; peers' entries are judged by version vectors; conflicts are named as Syncthing
//! names them; the file survives a round trip and refuses corruption; 50,000 entries are fast.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use super::*;
use crate::sync::config::Pattern;

pub(super) fn scan(index: &mut Index, root: &Path) -> Vec<(String, ChangeKind)> {
    changes(index.scan(root, &[], Rehash::IfChanged).unwrap())
}

fn changes(report: ScanReport) -> Vec<(String, ChangeKind)> {
    report
        .changes
        .into_iter()
        .map(|c| (c.path, c.kind))
        .collect()
}

pub(super) fn ch(path: &str, kind: ChangeKind) -> (String, ChangeKind) {
    (path.to_owned(), kind)
}

/// Sets `path`'s mtime to `secs` after the epoch, so a test controls what a scan compares.
fn set_mtime(path: &Path, secs: u64) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

use ChangeKind::{Created, Deleted, Modified};

#[test]
fn scan_finds_creations_modifications_and_deletions() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("a/b")).unwrap();
    fs::write(r.join("a/b/one.txt"), b"one").unwrap();
    fs::write(r.join("top"), b"top").unwrap();
    symlink("a/b/one.txt", r.join("link")).unwrap();
    let mut index = Index::new("n1").unwrap();

    assert_eq!(
        scan(&mut index, r),
        [
            ch("a", Created),
            ch("a/b", Created),
            ch("a/b/one.txt", Created),
            ch("link", Created),
            ch("top", Created),
        ]
    );
    let one = index.get("a/b/one.txt").unwrap();
    assert_eq!(one.kind, Kind::File);
    assert_eq!(one.size, 3);
    // One change by n1 (a counter at the clock's seconds, see `VersionVector::bump`).
    assert_eq!(one.version.len(), 1);
    assert!(one.version.get("n1") > 0);
    assert_eq!(one.modified_by, "n1");
    let created = index.get("top").unwrap().version.get("n1");
    assert_eq!(one.hash, super::content_hash(b"one"));
    assert_eq!(
        index.get("link").unwrap().kind,
        Kind::Symlink("a/b/one.txt".to_owned())
    );
    assert_eq!(index.get("a").unwrap().kind, Kind::Dir);
    // Nothing changed: nothing found.
    assert_eq!(scan(&mut index, r), []);
    let sequence = index.sequence();

    // Content, mode, link target.
    fs::write(r.join("top"), b"top, longer").unwrap();
    fs::set_permissions(r.join("a/b/one.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(r.join("link")).unwrap();
    symlink("top", r.join("link")).unwrap();
    assert_eq!(
        scan(&mut index, r),
        [
            ch("a/b/one.txt", Modified),
            ch("link", Modified),
            ch("top", Modified)
        ]
    );
    let modified = index.get("top").unwrap().version.get("n1");
    assert!(modified > created, "{modified} after {created}");
    let one_modified = index.get("a/b/one.txt").unwrap().version.get("n1");
    assert_eq!(index.get("a/b/one.txt").unwrap().mode, 0o600);
    assert_eq!(index.changed_since(sequence).len(), 3);

    // `touch` alone is a new version of a file, for the peers to take its mtime; not of a
    // directory, whose mtime follows the names made and removed in it.
    set_mtime(&r.join("top"), 1_000_000);
    let dir_version = index.get("a").unwrap().version.clone();
    fs::File::open(r.join("a"))
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000))
        .unwrap();
    assert_eq!(scan(&mut index, r), [ch("top", Modified)]);
    assert_eq!(index.get("top").unwrap().mtime_ns, 1_000_000_000_000_000);
    assert!(index.get("top").unwrap().version.get("n1") > modified);
    assert_eq!(index.get("a").unwrap().mtime_ns, 2_000_000_000_000_000);
    assert_eq!(index.get("a").unwrap().version, dir_version);

    // A deleted tree: a tombstone each, with a bumped counter.
    fs::remove_dir_all(r.join("a")).unwrap();
    assert_eq!(
        scan(&mut index, r),
        [
            ch("a", Deleted),
            ch("a/b", Deleted),
            ch("a/b/one.txt", Deleted)
        ]
    );
    let gone = index.get("a/b/one.txt").unwrap();
    assert!(gone.deleted);
    assert!(gone.version.get("n1") > one_modified);
    assert_eq!(scan(&mut index, r), [], "a tombstone is not deleted twice");

    // Back after a deletion: a version that dominates the tombstone.
    let tombstone = index.get("a").unwrap().version.clone();
    fs::create_dir(r.join("a")).unwrap();
    let created = scan(&mut index, r);
    assert_eq!(created, [ch("a", Created)]);
    let back = index.get("a").unwrap();
    assert!(!back.deleted);
    assert_eq!(back.version.compare(&tombstone), Causality::Dominates);
}

#[test]
fn a_same_size_rewrite_within_one_mtime_is_seen_only_when_rehashing() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("f");
    fs::write(&file, b"aaaa").unwrap();
    set_mtime(&file, 1_700_000_000);
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, root.path());
    fs::write(&file, b"bbbb").unwrap();
    set_mtime(&file, 1_700_000_000);
    assert_eq!(scan(&mut index, root.path()), []);
    let report = index.scan(root.path(), &[], Rehash::Always).unwrap();
    assert_eq!(changes(report), [ch("f", Modified)]);
}

#[test]
fn a_rename_is_a_deletion_and_a_creation_found_by_hash() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::write(r.join("old.jpg"), b"picture").unwrap();
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, r);
    fs::rename(r.join("old.jpg"), r.join("new.jpg")).unwrap();
    assert_eq!(
        scan(&mut index, r),
        [ch("new.jpg", Created), ch("old.jpg", Deleted)]
    );
    let hash = index.get("new.jpg").unwrap().hash;
    let mut same: Vec<(&str, bool)> = index
        .find_by_hash(&hash)
        .map(|e| (e.path.as_str(), e.deleted))
        .collect();
    same.sort();
    assert_eq!(same, [("new.jpg", false), ("old.jpg", true)]);
}

#[test]
fn excludes_are_not_indexed_and_newly_excluded_paths_are_forgotten_not_deleted() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("cache/x")).unwrap();
    fs::write(r.join("cache/x/big"), b"1").unwrap();
    fs::write(r.join("upload.tmp"), b"2").unwrap();
    fs::write(r.join("keep.txt"), b"3").unwrap();
    let temp = format!("{}00000000000000ab-3", crate::sync::watch::TEMP_PREFIX);
    fs::write(r.join(&temp), b"receiving").unwrap();
    let exclude = [
        Pattern::new("*.tmp").unwrap(),
        Pattern::new("cache/").unwrap(),
    ];
    let mut index = Index::new("n1").unwrap();
    let report = index.scan(r, &exclude, Rehash::IfChanged).unwrap();
    assert_eq!(changes(report), [ch("keep.txt", Created)]);

    // Indexed before the exclude was added: dropped without tombstones.
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, r);
    assert_eq!(index.len(), 5);
    let report = index.scan(r, &exclude, Rehash::IfChanged).unwrap();
    assert_eq!(report.forgotten, 4);
    assert_eq!(report.changes, []);
    assert_eq!(index.len(), 1);
}

// Input: a tree with a receiver's file in the making (`.fulcrum-tmp-` + 16 hex digits + a
// count) and a user's file that merely starts like one (`.fulcrum-tmp-notes.txt`). Output: the
// first is reported as a leftover and not indexed; the user's file is indexed like any other,
// and is no leftover. (Every name with the prefix was taken for the sync's own: the user's file
// was never synced, and was deleted at the next start as a leftover.)
#[test]
fn a_users_file_named_like_a_temporary_one_is_synced_not_removed() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let prefix = crate::sync::watch::TEMP_PREFIX;
    let ours = r.join(format!("{prefix}0123456789abcdef-7"));
    fs::write(&ours, b"half a transfer").unwrap();
    fs::write(r.join(format!("{prefix}notes.txt")), b"mine").unwrap();
    let mut index = Index::new("n1").unwrap();
    let report = index.scan(r, &[], Rehash::IfChanged).unwrap();
    assert_eq!(report.temporary, [ours]);
    assert_eq!(
        changes(report),
        [ch(&format!("{prefix}notes.txt"), Created)]
    );
}

#[test]
fn a_subtree_scan_touches_only_its_subtree() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("a")).unwrap();
    fs::create_dir_all(r.join("a-b")).unwrap();
    fs::write(r.join("a/x"), b"x").unwrap();
    fs::write(r.join("a-b/y"), b"y").unwrap();
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, r);
    fs::remove_file(r.join("a-b/y")).unwrap();
    fs::write(r.join("a/x"), b"xx").unwrap();
    fs::write(r.join("a/z"), b"z").unwrap();
    let report = index.scan_under(r, &[], "a", Rehash::IfChanged).unwrap();
    assert_eq!(changes(report), [ch("a/x", Modified), ch("a/z", Created)]);
    assert!(!index.get("a-b/y").unwrap().deleted, "outside the subtree");
    fs::remove_dir_all(r.join("a")).unwrap();
    let report = index.scan_under(r, &[], "a", Rehash::IfChanged).unwrap();
    assert_eq!(
        changes(report),
        [ch("a", Deleted), ch("a/x", Deleted), ch("a/z", Deleted)]
    );
    assert!(
        index
            .scan_under(r, &[], "../etc", Rehash::IfChanged)
            .is_err()
    );
}

#[test]
fn an_unreadable_directory_is_not_taken_for_deleted() {
    if crate::sync::owner::can_chown() {
        // Root reads through permissions; the case cannot be produced.
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir(r.join("locked")).unwrap();
    fs::write(r.join("locked/f"), b"f").unwrap();
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, r);
    fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    let report = index.scan(r, &[], Rehash::IfChanged).unwrap();
    fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(report.unreadable, 1);
    assert!(!index.get("locked/f").unwrap().deleted);
}

#[test]
fn non_utf8_names_are_skipped_and_counted() {
    use std::os::unix::ffi::OsStrExt;
    let root = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"bad-\xff");
    fs::write(root.path().join(name), b"x").unwrap();
    fs::write(root.path().join("good"), b"x").unwrap();
    let mut index = Index::new("n1").unwrap();
    let report = index.scan(root.path(), &[], Rehash::IfChanged).unwrap();
    assert_eq!(report.non_utf8, 1);
    assert_eq!(changes(report), [ch("good", Created)]);
}

#[test]
fn a_missing_root_fails_instead_of_deleting_everything() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("f"), b"x").unwrap();
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, root.path());
    let gone = root.path().join("nope");
    assert!(matches!(
        index.scan(&gone, &[], Rehash::IfChanged),
        Err(IndexError::Io { .. })
    ));
    assert!(!index.get("f").unwrap().deleted);
}

/// An entry as a peer would send it.
pub(super) fn remote(
    path: &str,
    by: &str,
    version: &[(&str, u64)],
    content: &[u8],
    mtime: i64,
) -> Entry {
    let hash = super::content_hash(content);
    Entry {
        path: path.to_owned(),
        kind: Kind::File,
        size: content.len() as u64,
        mtime_ns: mtime,
        mode: 0o644,
        owner: None,
        hash,
        version: version.iter().copied().collect(),
        modified_by: by.to_owned(),
        deleted: false,
        sequence: 99,
    }
}

fn tombstone(mut entry: Entry) -> Entry {
    entry.deleted = true;
    entry
}

#[test]
fn remote_entries_are_judged_by_version_vectors() {
    let mut index = Index::new("a").unwrap();
    let ours = remote("f", "a", &[("a", 2), ("b", 1)], b"ours", 100);
    index.record(ours.clone());

    // (remote, expected decision)
    let equal = remote("f", "a", &[("a", 2), ("b", 1)], b"ours", 100);
    assert_eq!(index.apply_remote(&equal).unwrap(), Decision::UpToDate);
    let older = remote("f", "b", &[("a", 1), ("b", 1)], b"old", 50);
    assert_eq!(index.apply_remote(&older).unwrap(), Decision::Ignore);
    let newer = remote("f", "b", &[("a", 2), ("b", 2)], b"new", 50);
    assert_eq!(
        index.apply_remote(&newer).unwrap(),
        Decision::Accept(newer.clone())
    );
    let unknown = remote("g", "b", &[("b", 1)], b"g", 1);
    assert_eq!(
        index.apply_remote(&unknown).unwrap(),
        Decision::Accept(unknown.clone())
    );
    let deleted = tombstone(remote("f", "b", &[("a", 2), ("b", 2)], b"ours", 100));
    assert_eq!(
        index.apply_remote(&deleted).unwrap(),
        Decision::Accept(deleted.clone())
    );

    // Concurrent with the same content: merged histories, nothing moves.
    let same = remote("f", "b", &[("a", 1), ("b", 2)], b"ours", 300);
    let Decision::Merge(merged) = index.apply_remote(&same).unwrap() else {
        panic!("not a merge");
    };
    assert_eq!(merged.version, [("a", 2), ("b", 2)].into_iter().collect());
    assert_eq!(merged.hash, ours.hash);
    // With the newer of the two mtimes, which both nodes then keep; whichever side has it.
    assert_eq!(merged.mtime_ns, 300);
    let older_same = remote("f", "b", &[("a", 1), ("b", 2)], b"ours", 10);
    let Decision::Merge(merged) = index.apply_remote(&older_same).unwrap() else {
        panic!("not a merge");
    };
    assert_eq!(merged.mtime_ns, ours.mtime_ns);
}

#[test]
fn concurrent_changes_go_newest_wins_and_a_modification_beats_a_deletion() {
    let mut index = Index::new("a").unwrap();
    let ours = remote("d/report.pdf", "a", &[("a", 2), ("b", 1)], b"ours", 200);
    index.record(ours.clone());
    let merged: VersionVector = [("a", 2), ("b", 2)].into_iter().collect();

    // Theirs is newer: it wins, ours is kept under a conflict name.
    let theirs = remote("d/report.pdf", "b", &[("a", 1), ("b", 2)], b"theirs", 300);
    let Decision::Conflict(conflict) = index.apply_remote(&theirs).unwrap() else {
        panic!("not a conflict");
    };
    assert_eq!(conflict.winner, Side::Remote);
    assert_eq!(conflict.loser().hash, ours.hash);
    assert_eq!(conflict.resolved.hash, theirs.hash);
    assert_eq!(conflict.resolved.version, merged);
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_706_745_599);
    assert_eq!(
        conflict.local_copy_name(at).as_deref(),
        Some("d/report.conflict-a-20240131-235959.pdf")
    );

    // Theirs is older: ours wins; the peer keeps its own loser.
    let older = remote("d/report.pdf", "b", &[("a", 1), ("b", 2)], b"theirs", 100);
    let Decision::Conflict(conflict) = index.apply_remote(&older).unwrap() else {
        panic!("not a conflict");
    };
    assert_eq!(conflict.winner, Side::Local);
    assert_eq!(conflict.resolved.hash, ours.hash);
    assert_eq!(conflict.resolved.version, merged);
    assert_eq!(conflict.local_copy_name(at), None);
    // The peer must keep its loser: the merge, which would dominate the peer's version and
    // make it overwrite its file without a copy, is not recorded here.
    assert!(conflict.remote_keeps_copy());
    assert_eq!(conflict.to_record(), None);

    // Same mtime: the greater node name wins, on both nodes alike.
    let tie = remote("d/report.pdf", "b", &[("a", 1), ("b", 2)], b"theirs", 200);
    let Decision::Conflict(conflict) = index.apply_remote(&tie).unwrap() else {
        panic!("not a conflict");
    };
    assert_eq!(conflict.winner, Side::Remote);
    let mut mirror = Index::new("b").unwrap();
    mirror.record(tie.clone());
    let Decision::Conflict(mirrored) = mirror.apply_remote(&ours).unwrap() else {
        panic!("not a conflict");
    };
    assert_eq!(mirrored.winner, Side::Local);
    assert_eq!(
        mirrored.resolved,
        Entry {
            sequence: mirrored.resolved.sequence,
            ..conflict.resolved.clone()
        }
    );

    // A newer deletion loses to a modification: the file stays.
    let deleted = tombstone(remote(
        "d/report.pdf",
        "b",
        &[("a", 1), ("b", 2)],
        b"ours",
        900,
    ));
    let Decision::Conflict(conflict) = index.apply_remote(&deleted).unwrap() else {
        panic!("not a conflict");
    };
    assert_eq!(conflict.winner, Side::Local);
    assert!(!conflict.resolved.deleted);
    // A losing deletion has nothing to keep: the merge is recorded at once.
    assert!(!conflict.remote_keeps_copy());
    assert_eq!(conflict.to_record(), Some(&conflict.resolved));
    // And the other way round: our deletion loses, nothing to keep.
    let mut deleter = Index::new("a").unwrap();
    deleter.record(tombstone(ours.clone()));
    let Decision::Conflict(conflict) = deleter.apply_remote(&theirs).unwrap() else {
        panic!("not a conflict");
    };
    assert_eq!(conflict.winner, Side::Remote);
    assert_eq!(conflict.local_copy_name(at), None);
}

#[test]
fn paths_escaping_the_root_are_refused() {
    let index = Index::new("a").unwrap();
    for path in ["../etc/passwd", "/etc/passwd", "a/../../b", "a//b", ""] {
        let entry = remote(path, "b", &[("b", 1)], b"x", 1);
        assert!(index.apply_remote(&entry).is_err(), "{path:?}");
    }
}

// Input: our file `f` (a: 5), then a peer's tombstones of `f`, each concurrent with ours and
// naming 1,000 made-up nodes; a new path whose vector names 1,024 nodes. Output: the first
// merge is taken (1,001 nodes and room for us); the next, which would make 2,001, is refused,
// and so is the new path, which would leave us no room: vectors stay within what the wire
// format and the saved index carry, and our own changes always fit.
#[test]
fn a_version_vector_never_grows_past_its_bound() {
    let mut index = Index::new("a").unwrap();
    index.record(remote("f", "a", &[("a", 5)], b"ours", 100));
    let made_up = |from: usize| -> Vec<(String, u64)> {
        (from..from + 1000).map(|i| (format!("x{i}"), 1)).collect()
    };
    let tomb = |nodes: &[(String, u64)]| {
        let version: Vec<(&str, u64)> = nodes.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        tombstone(remote("f", "b", &version, b"", 50))
    };

    let Decision::Conflict(first) = index.apply_remote(&tomb(&made_up(0))).unwrap() else {
        panic!("not a conflict");
    };
    assert_eq!(first.resolved.version.len(), 1001);
    index.record(first.resolved.clone());
    let refused = index.apply_remote(&tomb(&made_up(1000)));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("too many nodes")),
        "a merge to 2,001 nodes was not refused"
    );

    let full: Vec<(String, u64)> = (0..MAX_VERSION_NODES)
        .map(|i| (format!("y{i}"), 1))
        .collect();
    let full: Vec<(&str, u64)> = full.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    assert!(
        index
            .apply_remote(&remote("g", "b", &full, b"g", 1))
            .is_err()
    );
    assert!(
        index
            .apply_remote(&remote("g", "b", &full[1..], b"g", 1))
            .is_ok(),
        "1,023 nodes leave room for ours"
    );
}

#[test]
fn conflict_names_have_syncthings_shape() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14 22:13:20
    for (path, node, expected) in [
        ("a.txt", "web1", "a.conflict-web1-20231114-221320.txt"),
        (
            "d/e/archive.tar.gz",
            "web1",
            "d/e/archive.tar.conflict-web1-20231114-221320.gz",
        ),
        ("README", "web1", "README.conflict-web1-20231114-221320"),
        (
            ".htaccess",
            "web1",
            ".htaccess.conflict-web1-20231114-221320",
        ),
        (
            "d.x/noext",
            "web1",
            "d.x/noext.conflict-web1-20231114-221320",
        ),
        ("f.jpg", "a/b", "f.conflict-a_b-20231114-221320.jpg"),
    ] {
        assert_eq!(conflict_name(path, node, t), expected);
        assert_eq!(check_path(&conflict_name(path, node, t)), Ok(()));
    }
}

#[test]
fn persistence_round_trips_and_marks_peers() {
    let state = tempfile::tempdir().unwrap();
    let dir = index_dir(state.path(), "web");
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("d")).unwrap();
    fs::write(root.path().join("d/f"), b"content").unwrap();
    symlink("d/f", root.path().join("l")).unwrap();
    let mut index = Index::open(&dir, "n1").unwrap();
    scan(&mut index, root.path());
    fs::remove_file(root.path().join("l")).unwrap();
    scan(&mut index, root.path());
    index.record(remote("x", "n2", &[("n1", 1), ("n2", 4)], b"x", -5));
    index.set_peer_mark(
        "n2",
        PeerMark {
            index_id: 7,
            sequence: 42,
        },
    );
    let acked = |sequence, applies| AckedMark { sequence, applies };
    index.set_acked_by("10.0.0.2:8730", acked(index.sequence() - 1, true));
    index.set_acked_by("10.0.0.3:8730", acked(0, false));
    assert!(index.is_dirty());
    index.save(&dir).unwrap();
    assert!(!index.is_dirty());
    assert!(dir.join(INDEX_FILE).is_file());

    let loaded = Index::open(&dir, "n1").unwrap();
    assert_eq!(loaded, index);
    assert_eq!(
        loaded.peer_mark("n2"),
        Some(PeerMark {
            index_id: 7,
            sequence: 42
        })
    );
    assert!(loaded.get("l").unwrap().deleted);
    assert_eq!(
        loaded.acked_by("10.0.0.2:8730"),
        Some(acked(index.sequence() - 1, true))
    );
    assert_eq!(loaded.acked_by("10.0.0.3:8730"), Some(acked(0, false)));
    assert_eq!(loaded.acked_by("10.0.0.4:8730"), None);
    // A peer's word past our sequence is taken as all of it: the index still loads.
    let mut index = loaded;
    index.set_acked_by("10.0.0.4:8730", acked(u64::MAX, true));
    assert_eq!(
        index.acked_by("10.0.0.4:8730"),
        Some(acked(index.sequence(), true))
    );
    index.save(&dir).unwrap();
    assert_eq!(Index::open(&dir, "n1").unwrap(), index);
    // A peer taken out of the config leaves its mark behind.
    index.keep_acked_of(&["10.0.0.2:8730".to_owned()]);
    assert!(index.is_dirty());
    assert_eq!(index.acked_by("10.0.0.4:8730"), None);
    assert!(index.acked_by("10.0.0.2:8730").is_some());

    // A leftover temp file from a crash is cleared; a renamed node keeps its entries.
    fs::write(dir.join("index.tmp"), b"half").unwrap();
    let renamed = Index::open(&dir, "n1-new").unwrap();
    assert!(!dir.join("index.tmp").exists());
    assert_eq!(renamed.node(), "n1-new");
    assert_eq!(renamed.len(), index.len());
}

/// A format 1 index (SHA-256 hashes), as an upgrade finds it, is read; the start-up scan
/// redoes each unchanged file's hash in place, with no new version and so nothing for the
/// peers to fetch, while a file changed meanwhile is a change as usual; the index is then
/// saved in the current format.
#[test]
fn a_format_1_index_gets_content_hashes_without_new_versions() {
    let state = tempfile::tempdir().unwrap();
    let dir = index_dir(state.path(), "web");
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::write(r.join("same"), b"same content").unwrap();
    fs::write(r.join("edited"), b"before").unwrap();
    fs::write(r.join("gone"), b"deleted before the upgrade").unwrap();
    let mut old = Index::open(&dir, "n1").unwrap();
    scan(&mut old, r);
    fs::remove_file(r.join("gone")).unwrap();
    scan(&mut old, r);
    // What the previous release saved: the same entries with SHA-256 hashes, format 1.
    let sha256 = |content: &[u8]| {
        let mut hash = NO_HASH;
        hash.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, content).as_ref());
        hash
    };
    for (path, content) in [
        ("same", &b"same content"[..]),
        ("edited", b"before"),
        ("gone", b"deleted before the upgrade"),
    ] {
        old.entries.get_mut(path).unwrap().hash = sha256(content);
    }
    old.legacy_hashes = true;
    old.dirty = true;
    old.save(&dir).unwrap();
    assert_eq!(
        fs::read(dir.join(INDEX_FILE)).unwrap()[8..12],
        1u32.to_le_bytes()
    );

    fs::write(r.join("edited"), b"after the upgrade").unwrap();
    let mut index = Index::open(&dir, "n1").unwrap();
    assert_eq!(index.get("same").unwrap().hash, sha256(b"same content"));
    assert_eq!(
        index.get("gone").unwrap().hash,
        NO_HASH,
        "a tombstone's legacy hash could only mislead rename detection"
    );
    assert_eq!(scan(&mut index, r), vec![ch("edited", Modified)]);
    let same = index.get("same").unwrap();
    assert_eq!(same.hash, content_hash(b"same content"));
    assert_eq!(
        same.version,
        old.get("same").unwrap().version,
        "no new version"
    );
    assert_eq!(
        index.get("edited").unwrap().hash,
        content_hash(b"after the upgrade")
    );
    index.save(&dir).unwrap();
    assert_eq!(
        fs::read(dir.join(INDEX_FILE)).unwrap()[8..12],
        FORMAT_VERSION.to_le_bytes()
    );
    assert_eq!(Index::open(&dir, "n1").unwrap(), index);
}

/// An index of node `n1` with one entry, saved in `dir`.
fn one_entry_saved_in(dir: &Path) -> Index {
    let mut index = Index::new("n1").unwrap();
    index.record(remote("f", "n1", &[("n1", 1)], b"x", 1));
    index.save(dir).unwrap();
    index
}

/// A format 2 index (before the peers' acknowledged marks were kept) is read, with none, and
/// saved in the current format.
#[test]
fn a_format_2_index_is_read_without_acknowledged_marks() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let index = one_entry_saved_in(dir);
    // The same index as format 2 wrote it: no `acked` list, no owners.
    let file = dir.join(INDEX_FILE);
    fs::write(&file, super::store::encode_as(&index, 2)).unwrap();

    let mut loaded = Index::open(dir, "n1").unwrap();
    assert_eq!(loaded, index);
    assert_eq!(loaded.acked_by("10.0.0.2:8730"), None);
    loaded.set_acked_by(
        "10.0.0.2:8730",
        AckedMark {
            sequence: 1,
            applies: true,
        },
    );
    loaded.save(dir).unwrap();
    assert_eq!(
        fs::read(&file).unwrap()[8..12],
        FORMAT_VERSION.to_le_bytes()
    );
    assert_eq!(Index::open(dir, "n1").unwrap(), loaded);
}

#[test]
fn corruption_is_refused_naming_the_file() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    one_entry_saved_in(dir);
    let file = dir.join(INDEX_FILE);
    let good = fs::read(&file).unwrap();

    let mut flipped = good.clone();
    flipped[40] ^= 1;
    let mut future = good.clone();
    future[8] = 9;
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    for (bytes, needle) in [
        (flipped, "checksum mismatch"),
        (good[..good.len() - 1].to_vec(), "truncated"),
        (Vec::new(), "shorter than a header"),
        (bad_magic, "bad magic"),
        (future, "format version 9"),
    ] {
        fs::write(&file, &bytes).unwrap();
        let err = Index::open(dir, "n1").unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
        assert!(err.contains(&file.display().to_string()), "{err}");
    }
}

#[test]
fn fifty_thousand_entries_save_and_load_quickly() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let mut index = Index::new("web1").unwrap();
    for i in 0..50_000u32 {
        let path = format!("uploads/{:03}/{:02}/attachment-{i}.jpg", i % 1000, i % 97);
        let mut entry = remote(
            &path,
            "web2",
            &[("web1", 3), ("web2", u64::from(i))],
            &i.to_le_bytes(),
            1_700_000_000_000_000_000,
        );
        entry.deleted = i % 50 == 0;
        index.record(entry);
    }
    let started = Instant::now();
    index.save(dir).unwrap();
    let saved = started.elapsed();
    let started = Instant::now();
    let loaded = Index::open(dir, "web1").unwrap();
    let load = started.elapsed();
    let size = fs::metadata(dir.join(INDEX_FILE)).unwrap().len();
    println!("50,000 entries: save {saved:?}, load {load:?}, {size} bytes");
    assert_eq!(loaded, index);
}

// Input: our tombstones of deletions recorded at t=100 and t=300, a live file, and two more
// old tombstones: one whose counter for us is ahead of the clock, one not yet saved;
// deletions before t=200 forgotten, counters below 1000. Output: only the first old tombstone
// goes, and the index is dirty; the one ahead of the clock waits for it, the unsaved one for
// its save. Then a peer's tombstone from before t=200 of a path we no longer hold is up to
// date (not taken back), one from after is taken, and an old one of a path we hold is judged
// as always.
#[test]
fn old_deletions_are_forgotten_and_not_taken_back_from_peers() {
    let mut index = Index::new("a").unwrap();
    index.record(tombstone(remote("old", "a", &[("a", 2)], b"x", 100)));
    index.record(tombstone(remote("recent", "a", &[("a", 2)], b"x", 300)));
    index.record(remote("live", "a", &[("a", 1)], b"x", 50));
    index.record(tombstone(remote("ahead", "a", &[("a", 5_000)], b"x", 100)));
    index.publish(index.sequence());
    index.record(tombstone(remote("unsaved", "a", &[("a", 2)], b"x", 100)));
    let _ = index.take_snapshot();
    assert_eq!(index.forget_deletions_before(200, 1000), 1);
    assert!(index.is_dirty());
    assert!(index.get("old").is_none());
    assert!(index.get("recent").is_some_and(|e| e.deleted));
    assert!(index.get("live").is_some_and(|e| !e.deleted));
    assert!(index.get("ahead").is_some_and(|e| e.deleted));
    assert!(index.get("unsaved").is_some_and(|e| e.deleted));
    assert_eq!(index.forget_deletions_before(200, 1000), 0);
    assert_eq!(
        index.forget_deletions_before(200, 5_001),
        1,
        "the clock passed it"
    );
    index.publish(index.sequence());
    assert_eq!(index.forget_deletions_before(200, 5_001), 1, "saved");

    let theirs_old = tombstone(remote("old", "b", &[("a", 2), ("b", 1)], b"x", 150));
    assert_eq!(index.apply_remote(&theirs_old).unwrap(), Decision::UpToDate);
    let theirs_new = tombstone(remote("other", "b", &[("b", 1)], b"x", 250));
    assert!(matches!(
        index.apply_remote(&theirs_new).unwrap(),
        Decision::Accept(_)
    ));
    let live_deleted_long_ago = tombstone(remote("live", "b", &[("a", 1), ("b", 1)], b"x", 150));
    assert!(matches!(
        index.apply_remote(&live_deleted_long_ago).unwrap(),
        Decision::Accept(e) if e.deleted
    ));
}

// Input: A deleted a file that B had changed, B keeps the tombstone (counters of A and B), A
// forgets it and then makes the path again. Output: B finds A's new version concurrent with
// its tombstone, and the modification wins: B takes the file. Without the clock in A's
// counter the new version (a:1) would be older than the tombstone, and B would ignore it.
#[test]
fn a_path_made_again_after_its_deletion_was_forgotten_reaches_a_peer_that_remembers() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Index::new("a").unwrap();
    a.record(tombstone(remote(
        "f",
        "a",
        &[("a", 3), ("b", 2)],
        b"old",
        100,
    )));
    let mut b = Index::new("b").unwrap();
    b.record(a.get("f").unwrap().clone());

    a.publish(a.sequence());
    assert_eq!(a.forget_deletions_before(200, u64::MAX), 1);
    fs::write(root.path().join("f"), b"new").unwrap();
    assert_eq!(scan(&mut a, root.path()), [ch("f", Created)]);
    let made_again = a.get("f").unwrap().clone();
    match b.apply_remote(&made_again).unwrap() {
        Decision::Conflict(conflict) => {
            assert_eq!(conflict.winner, Side::Remote, "{conflict:?}");
            assert!(conflict.local.deleted);
        }
        other => panic!("B must take the new file, decided {other:?}"),
    }
}

// Input: a tree of two directories and three files of 10, 20 and 30 octets; measured, then
// scanned with the same progress. Output: measuring counts 5 paths and 60 octets and records
// nothing; the scan examines the 5 paths and hashes the 60 octets.
#[test]
fn a_measured_scan_counts_its_progress_against_the_totals() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("a/b")).unwrap();
    fs::write(r.join("a/ten"), [1; 10]).unwrap();
    fs::write(r.join("a/b/twenty"), [2; 20]).unwrap();
    fs::write(r.join("thirty"), [3; 30]).unwrap();
    let mut index = Index::new("n1").unwrap();
    let progress = ScanProgress::default();
    index.measure(r, &[], &progress).unwrap();
    assert!(index.is_empty());
    let measured = progress.counts();
    assert_eq!((measured.total_paths, measured.total_bytes), (5, 60));
    assert_eq!((measured.examined, measured.hashed), (0, 0));
    assert_eq!(measured.fraction(), Some((0, 60)));

    let report = index
        .scan_with(r, &[], Rehash::IfChanged, &progress)
        .unwrap();
    assert_eq!(report.changes.len(), 5);
    let scanned = progress.counts();
    assert_eq!((scanned.examined, scanned.hashed), (5, 60));
    assert_eq!(scanned.fraction(), Some((60, 60)));
}

// Input: an index of two files, both since deleted from disk; a scan whose progress was
// stopped first, then one that was not. Output: the stopped scan says so and deletes
// nothing, since it did not see everything; the full scan tombstones both.
#[test]
fn a_stopped_scan_deletes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::write(r.join("one"), b"1").unwrap();
    fs::write(r.join("two"), b"2").unwrap();
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, r);
    fs::remove_file(r.join("one")).unwrap();
    fs::remove_file(r.join("two")).unwrap();

    let stopped = ScanProgress::default();
    stopped.stop();
    let report = index
        .scan_with(r, &[], Rehash::IfChanged, &stopped)
        .unwrap();
    assert!(report.stopped);
    assert!(report.changes.is_empty(), "{report:?}");
    assert!(index.entries().all(|e| !e.deleted));

    assert_eq!(
        scan(&mut index, r),
        [ch("one", Deleted), ch("two", Deleted)]
    );
}

// Input: a tree scanned once (which marks its root), then the same index scanning an empty
// directory in its place, as an unmounted filesystem leaves its mount point. Output: the scan
// fails naming the marker, and no entry becomes a tombstone (the peers would delete them all).
#[test]
fn an_unmounted_root_is_refused_not_taken_for_every_file_deleted() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("data"), b"precious").unwrap();
    let mut index = Index::new("n1").unwrap();
    assert_eq!(scan(&mut index, root.path()), [ch("data", Created)]);
    assert!(root.path().join(ROOT_MARKER).is_dir());

    let mount_point = tempfile::tempdir().unwrap();
    let error = index
        .scan(mount_point.path(), &[], Rehash::IfChanged)
        .unwrap_err();
    assert!(matches!(error, IndexError::RootUnmarked { .. }), "{error}");
    assert!(error.to_string().contains("not mounted"), "{error}");
    assert!(index.entries().all(|e| !e.deleted));
    assert!(!mount_point.path().join(ROOT_MARKER).exists());
}

// Input: a marked tree whose files are all deleted, then its index saved and loaded, and a
// scan of an unmarked empty directory. Output: the emptied tree is a deletion like any other
// (the marker says it is the same directory), and the loaded index still knows the root was
// marked, so the unmarked directory is refused.
#[test]
fn an_emptied_root_is_a_deletion_and_the_mark_survives_a_restart() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("data"), b"old").unwrap();
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, root.path());
    fs::remove_file(root.path().join("data")).unwrap();
    assert_eq!(scan(&mut index, root.path()), [ch("data", Deleted)]);

    let state = tempfile::tempdir().unwrap();
    index.save(state.path()).unwrap();
    let mut loaded = Index::open(state.path(), "n1").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    assert!(matches!(
        loaded.scan(elsewhere.path(), &[], Rehash::IfChanged),
        Err(IndexError::RootUnmarked { .. })
    ));
}

// Input: an index with entries saved by the release before markers (format 4), and its tree.
// Output: the scan marks the root instead of refusing it, so an upgrade starts.
#[test]
fn an_index_from_before_markers_marks_its_root() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("data"), b"x").unwrap();
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, root.path());
    fs::remove_dir(root.path().join(ROOT_MARKER)).unwrap();
    let state = tempfile::tempdir().unwrap();
    fs::write(
        state.path().join(INDEX_FILE),
        super::store::encode_as(&index, 4),
    )
    .unwrap();
    let mut old = Index::open(state.path(), "n1").unwrap();
    assert_eq!(scan(&mut old, root.path()), []);
    assert!(root.path().join(ROOT_MARKER).is_dir());
}

// Input: a directory with files and a subdirectory, scanned, then removed whole. Output: every
// tombstone of its content has a lower sequence than the directory's own, so a peer applying
// them in sequence order empties the directory before it removes it.
#[test]
fn a_removed_directory_is_tombstoned_after_its_content() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path().join("d");
    fs::create_dir_all(d.join("sub")).unwrap();
    for name in ["a", "b", "sub/c"] {
        fs::write(d.join(name), name).unwrap();
    }
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, root.path());
    fs::remove_dir_all(&d).unwrap();
    let deleted = scan(&mut index, root.path());
    assert_eq!(deleted.len(), 5, "{deleted:?}");
    let seq = |path: &str| index.get(path).unwrap().sequence;
    for inside in ["d/a", "d/b", "d/sub", "d/sub/c"] {
        assert!(seq(inside) < seq("d"), "{inside} after d");
    }
    assert!(seq("d/sub/c") < seq("d/sub"));
}

// Input: one directory changed concurrently on two nodes (mode 0755 on `a`, 0700 on `b`),
// each node's own entry with the mtime it has now (its directory changes in place, without a
// new version) and the peer's with the older one it was sent. Output: both nodes pick the
// same side. (Compared by those mtimes, each picked its own mode, for good.)
#[test]
fn both_nodes_pick_the_same_winner_between_two_directory_versions() {
    let dir = |by: &str, version: &[(&str, u64)], mode: u32, mtime: i64| Entry {
        kind: Kind::Dir,
        size: 0,
        hash: NO_HASH,
        mode,
        ..remote("d", by, version, b"", mtime)
    };
    let on_a = dir("a", &[("a", 2), ("b", 1)], 0o755, 500);
    let on_b = dir("b", &[("a", 1), ("b", 2)], 0o700, 600);
    let (sent_by_a, sent_by_b) = (
        Entry {
            mtime_ns: 200,
            ..on_a.clone()
        },
        Entry {
            mtime_ns: 100,
            ..on_b.clone()
        },
    );
    let mut a = Index::new("a").unwrap();
    a.record(on_a);
    let mut b = Index::new("b").unwrap();
    b.record(on_b);
    let mode_kept = |index: &Index, remote: &Entry| match index.apply_remote(remote).unwrap() {
        Decision::Conflict(conflict) => conflict.resolved.mode,
        other => panic!("not a conflict: {other:?}"),
    };
    assert_eq!(mode_kept(&a, &sent_by_b), mode_kept(&b, &sent_by_a));
}

// Input: a marked tree with a directory, then the same index scanning only that directory
// under an unmarked root (the filesystem gone while the set runs, and a watch event on the
// directory). Output: refused as a whole-tree scan is; nothing becomes a tombstone.
#[test]
fn a_subtree_scan_of_an_unmounted_root_is_refused_too() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("uploads")).unwrap();
    fs::write(root.path().join("uploads/a"), b"a").unwrap();
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, root.path());
    let mount_point = tempfile::tempdir().unwrap();
    let refused = index.scan_under(mount_point.path(), &[], "uploads", Rehash::IfChanged);
    assert!(
        matches!(refused, Err(IndexError::RootUnmarked { .. })),
        "{refused:?}"
    );
    assert!(index.entries().all(|e| !e.deleted));
}
