//! Owners in the index: a scan records them only where they are tracked, a `chown` is then a new
//! version, an index saved before owners were tracked takes the disk's in place, the file keeps
//! them, and two nodes that made the same content agree on one owner.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    fs,
    os::unix::fs::{lchown, symlink},
    path::Path,
};

use super::{
    tests::{ch, remote, scan},
    *,
};
use crate::sync::owner::{Owner, can_chown};
use ChangeKind::Modified;

/// A file, a directory and a symlink under `r`.
fn three_kinds(r: &Path) {
    fs::write(r.join("f"), b"content").unwrap();
    fs::create_dir(r.join("d")).unwrap();
    symlink("f", r.join("l")).unwrap();
}

fn disk_owner(path: &Path) -> Owner {
    Owner::of(&fs::symlink_metadata(path).unwrap())
}

fn owners(index: &Index) -> Vec<(String, Option<Owner>)> {
    index.entries().map(|e| (e.path.clone(), e.owner)).collect()
}

#[test]
fn without_tracking_no_entry_has_an_owner() {
    let root = tempfile::tempdir().unwrap();
    three_kinds(root.path());
    let mut index = Index::new("n1").unwrap();
    scan(&mut index, root.path());
    assert_eq!(index.len(), 3);
    assert!(index.entries().all(|e| e.owner.is_none()));

    // Nor is a peer's kept: this node does not apply it.
    let mut theirs = remote("g", "n2", &[("n2", 1)], b"g", 1);
    theirs.owner = Some(Owner { uid: 33, gid: 33 });
    index.record(theirs);
    assert_eq!(index.get("g").unwrap().owner, None);
}

#[test]
fn tracked_owners_are_recorded_and_a_chown_is_a_new_version() {
    if !can_chown() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("skipped: changing a file's owner needs root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    three_kinds(r);
    let mut index = Index::new("n1").unwrap();
    index.set_track_owners(true);
    scan(&mut index, r);
    for name in ["d", "f", "l"] {
        assert_eq!(
            index.get(name).unwrap().owner,
            Some(disk_owner(&r.join(name)))
        );
    }
    let before = index.get("f").unwrap().version.clone();

    for name in ["d", "f", "l"] {
        lchown(r.join(name), Some(4242), Some(4343)).unwrap();
    }
    assert_eq!(
        scan(&mut index, r),
        [ch("d", Modified), ch("f", Modified), ch("l", Modified)]
    );
    let given = Some(Owner {
        uid: 4242,
        gid: 4343,
    });
    for name in ["d", "f", "l"] {
        assert_eq!(index.get(name).unwrap().owner, given, "{name}");
    }
    assert_eq!(
        index.get("f").unwrap().version.compare(&before),
        Causality::Dominates
    );
    assert_eq!(scan(&mut index, r), [], "nothing changed since");
}

#[test]
fn an_index_saved_without_owners_takes_the_disks_in_place() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    three_kinds(r);
    let mut old = Index::new("n1").unwrap();
    scan(&mut old, r);
    // What the release before owners saved: format 3.
    fs::write(dir.join(INDEX_FILE), store::encode_as(&old, 3)).unwrap();

    let mut index = Index::open(dir, "n1").unwrap();
    assert!(index.entries().eq(old.entries()), "read as saved");
    index.set_track_owners(true);
    assert_eq!(scan(&mut index, r), [], "no new version: nothing to send");
    for name in ["d", "f", "l"] {
        let entry = index.get(name).unwrap();
        assert_eq!(entry.owner, Some(disk_owner(&r.join(name))), "{name}");
        assert_eq!(entry.version, old.get(name).unwrap().version, "{name}");
    }
    index.save(dir).unwrap();
    assert_eq!(
        fs::read(dir.join(INDEX_FILE)).unwrap()[8..12],
        FORMAT_VERSION.to_le_bytes()
    );
    let mut loaded = Index::open(dir, "n1").unwrap();
    assert_eq!(owners(&loaded), owners(&index), "the owners are saved");

    // Tracking turned off again: the owners are forgotten, and saved so.
    loaded.set_track_owners(false);
    assert!(loaded.is_dirty());
    assert!(loaded.entries().all(|e| e.owner.is_none()));
}

#[test]
fn a_merge_of_the_same_content_takes_the_newer_versions_owner_on_both_nodes() {
    let apache = Some(Owner { uid: 48, gid: 48 });
    let root = Some(Owner { uid: 0, gid: 0 });
    let mut ours = remote("f", "a", &[("a", 1)], b"same", 100);
    ours.owner = root;
    let mut theirs = remote("f", "b", &[("b", 1)], b"same", 200);
    theirs.owner = apache;

    let mut a = Index::new("a").unwrap();
    a.set_track_owners(true);
    a.record(ours.clone());
    let mut b = Index::new("b").unwrap();
    b.set_track_owners(true);
    b.record(theirs.clone());
    let (Decision::Merge(on_a), Decision::Merge(on_b)) = (
        a.apply_remote(&theirs).unwrap(),
        b.apply_remote(&ours).unwrap(),
    ) else {
        panic!("the same content is a merge");
    };
    assert_eq!(on_a.owner, apache, "the newer version's owner");
    assert_eq!(on_b.owner, apache, "picked alike on the other node");

    // Directories: each node updates its own mtime in place, so the two compare different
    // ones (A's copy of B's says 5, B's own says 15 now); they still pick alike.
    let dir = |by: &str, mtime: i64, owner| Entry {
        kind: Kind::Dir,
        hash: NO_HASH,
        size: 0,
        owner,
        ..remote("d", by, &[(by, 1)], b"", mtime)
    };
    let (a_dir, b_dir) = (dir("a", 10, root), dir("b", 5, apache));
    let (mut a, mut b) = (Index::new("a").unwrap(), Index::new("b").unwrap());
    a.set_track_owners(true);
    b.set_track_owners(true);
    a.record(a_dir.clone());
    b.record(Entry {
        mtime_ns: 15,
        ..b_dir.clone()
    });
    let (Decision::Merge(on_a), Decision::Merge(on_b)) = (
        a.apply_remote(&b_dir).unwrap(),
        b.apply_remote(&a_dir).unwrap(),
    ) else {
        panic!("two directories are a merge");
    };
    assert_eq!(on_a.owner, on_b.owner, "the same owner on both nodes");

    // A peer that does not sync owners sends none: ours stays.
    let mut a = Index::new("a").unwrap();
    a.set_track_owners(true);
    a.record(ours.clone());
    theirs.owner = None;
    let Decision::Merge(merged) = a.apply_remote(&theirs).unwrap() else {
        panic!("the same content is a merge");
    };
    assert_eq!(merged.owner, root);
}
