//! Judging a peer's entry against ours by version vectors: take it, ignore it, merge histories,
//! or resolve a conflict newest-wins, keeping the loser as a conflict copy (Syncthing's rules,
//! with lsyncd's users' complaint in mind: nothing is lost silently).
//!
//! The index is not changed here: the caller makes the disk match the decision, then
//! [`Index::record`]s the entry the decision names, so that a crash between the two leaves an
//! index that still describes the disk.
//!
//! Who keeps the loser: always the node that made it, when it judges the winner's entry as a
//! [`Decision::Conflict`] it lost ([`Conflict::local_copy_name`]). That only works if the
//! loser does see a conflict: a winner that recorded the merged entry
//! ([`Conflict::resolved`]) before sending its own version would send an entry that
//! dominates the loser's, which the loser would take as a plain [`Decision::Accept`] and
//! overwrite its version without a copy (data loss). So a node whose version wins against a
//! peer's version that has content to keep records nothing ([`Conflict::to_record`] is
//! `None`): its own, unmerged, entry stays concurrent with the peer's, the peer sees the
//! conflict, keeps its copy, and records and sends back the merged entry, which this node then
//! accepts without moving anything (same content). The cost: if the winner changes the file
//! again before that merged entry comes back, the peer's merged version (the winner's older
//! content) is kept as one more conflict copy: an extra copy, never a lost one.

use std::time::SystemTime;

use fulcrum_common::UtcTime;

use super::{
    Index,
    entry::{Entry, Kind, PathError, check_path},
    version::Causality,
};
use crate::sync::owner::Owner;

/// What to do with a peer's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Our version is the peer's: nothing to do.
    UpToDate,
    /// Ours has seen the peer's and more: nothing to do here; the peer will take ours.
    Ignore,
    /// The peer's has seen ours and more: make the disk match it (fetch the content, create the
    /// directory or link, set mode and mtime, or delete the path for a tombstone), then record
    /// the entry. A node with `delete = false` neither deletes nor records a tombstone: its
    /// older entry is dominated, so its file is never sent back to the peers.
    Accept(Entry),
    /// Concurrent histories that reached the same content (e.g. the same file on both nodes
    /// before their first sync): record the entry, which has both histories; nothing moves.
    Merge(Entry),
    /// Both changed the path since their last common version, differently.
    Conflict(Box<Conflict>),
}

/// A conflict, decided newest-wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub local: Entry,
    pub remote: Entry,
    pub winner: Side,
    /// The winner with both histories merged: record it once the disk holds the winner (but
    /// see [`Conflict::to_record`]: not on the winning node while the loser has yet to keep
    /// its copy). Both nodes reach the same entry, so the path is then in sync.
    pub resolved: Entry,
}

/// Whose version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Local,
    Remote,
}

impl Conflict {
    /// The losing version.
    pub fn loser(&self) -> &Entry {
        match self.winner {
            Side::Local => &self.remote,
            Side::Remote => &self.local,
        }
    }

    /// Whether the losing version is the peer's and has something the peer must keep as a
    /// conflict copy (not a deletion, not a directory against a directory).
    pub fn remote_keeps_copy(&self) -> bool {
        self.winner == Side::Local
            && !self.remote.deleted
            && !(self.remote.kind == Kind::Dir && self.local.kind == Kind::Dir)
    }

    /// What to record once the disk holds the winner: [`Conflict::resolved`], except when our
    /// version won against a peer's version that the peer must keep as a copy
    /// ([`Conflict::remote_keeps_copy`]): then nothing, so that our entry stays concurrent
    /// with the peer's and the peer sees the conflict, keeps its copy and sends the merge back
    /// (see the module's docs).
    pub fn to_record(&self) -> Option<&Entry> {
        (!self.remote_keeps_copy()).then_some(&self.resolved)
    }

    /// Where to keep our losing version before the winner replaces it:
    /// [`conflict_name`] of its path, by the node that made it, at `now`. `None` when our
    /// version won (the peer keeps its own loser, which then syncs here as a new file), when it
    /// is a deletion (a deletion that loses to a modification keeps the file, and there is
    /// nothing else to keep), or when both are directories (their contents are separate paths).
    pub fn local_copy_name(&self, now: SystemTime) -> Option<String> {
        let loser = &self.local;
        let keep = self.winner == Side::Remote
            && !loser.deleted
            && !(loser.kind == Kind::Dir && self.remote.kind == Kind::Dir);
        keep.then(|| conflict_name(&loser.path, &loser.modified_by, now))
    }
}

impl Index {
    /// Decides what a peer's `remote` entry means here (see [`Decision`]). Refuses a path that
    /// is not a clean relative path (`../`, absolute, empty segments), which no peer should
    /// send.
    ///
    /// Concurrent versions go newest-wins: a modification beats a deletion whatever the times
    /// (a delete that loses to a modification keeps the file); otherwise the newer mtime wins,
    /// a tie going to the greater node name, then the greater hash, so that every node picks
    /// the same winner on its own.
    pub fn apply_remote(&self, remote: &Entry) -> Result<Decision, PathError> {
        check_path(&remote.path)?;
        if !remote.version.has_room_for(&self.node) {
            return Err(too_many_nodes(&remote.path));
        }
        let Some(local) = self.entries.get(&remote.path) else {
            if remote.deleted && remote.mtime_ns < self.forgotten_before {
                // A deletion so old that ours would have been forgotten: nothing to delete,
                // and nothing worth an entry.
                return Ok(Decision::UpToDate);
            }
            return Ok(Decision::Accept(remote.clone()));
        };
        let decision = match local.version.compare(&remote.version) {
            Causality::Equal => Decision::UpToDate,
            Causality::Dominates => Decision::Ignore,
            Causality::DominatedBy => Decision::Accept(remote.clone()),
            Causality::Concurrent => {
                let version = local.version.merge(&remote.version);
                if !version.has_room_for(&self.node) {
                    return Err(too_many_nodes(&remote.path));
                }
                if local.same_content(remote) {
                    // Both nodes keep the newer mtime of a file or link (a directory's is
                    // not synced).
                    let mtime_ns = if local.kind == Kind::Dir {
                        local.mtime_ns
                    } else {
                        local.mtime_ns.max(remote.mtime_ns)
                    };
                    Decision::Merge(Entry {
                        version,
                        mtime_ns,
                        owner: merged_owner(local, remote),
                        ..local.clone()
                    })
                } else {
                    let winner = newest_wins(local, remote);
                    let resolved = match winner {
                        Side::Local => local,
                        Side::Remote => remote,
                    };
                    Decision::Conflict(Box::new(Conflict {
                        local: local.clone(),
                        remote: remote.clone(),
                        winner,
                        resolved: Entry {
                            version,
                            ..resolved.clone()
                        },
                    }))
                }
            }
        };
        Ok(decision)
    }
}

/// The refusal of an entry whose version, taken or merged, would leave this node no room in
/// its vector (see [`MAX_VERSION_NODES`](super::MAX_VERSION_NODES)): no sound peer sends one.
fn too_many_nodes(path: &str) -> PathError {
    PathError::new(path, "its version vector has too many nodes")
}

/// The winner of two concurrent, different versions.
fn newest_wins(local: &Entry, remote: &Entry) -> Side {
    match (local.deleted, remote.deleted) {
        (true, false) => return Side::Remote,
        (false, true) => return Side::Local,
        _ => {}
    }
    // Not a directory's mtime: each node updates its own in place, without a new version,
    // so the two would judge by different ones and each could win on its side (as
    // `merged_owner` leaves it out for the same reason).
    let key = |e: &Entry| {
        let mtime = (e.kind != Kind::Dir).then_some(e.mtime_ns);
        (mtime, e.modified_by.clone(), e.hash, e.mode)
    };
    if key(remote) > key(local) {
        Side::Remote
    } else {
        Side::Local
    }
}

/// The owner that two nodes merging the same content both keep: the newer version's, in
/// [`newest_wins`]'s order but without a directory's mtime (each node updates its own in place,
/// without a version, so the two would judge by different ones), and the owner itself as the
/// last tie-break, so that every node picks alike. An entry without one (from a node that does
/// not sync owners) gives way to one with one.
fn merged_owner(local: &Entry, remote: &Entry) -> Option<Owner> {
    let (Some(ours), Some(theirs)) = (local.owner, remote.owner) else {
        return local.owner.or(remote.owner);
    };
    let key = |e: &Entry, owner: Owner| {
        let mtime = (e.kind != Kind::Dir).then_some(e.mtime_ns);
        (mtime, e.modified_by.clone(), owner.uid, owner.gid)
    };
    Some(if key(remote, theirs) > key(local, ours) {
        theirs
    } else {
        ours
    })
}

/// Where a losing version is kept, in Syncthing's shape: `dir/NAME.conflict-NODE-TIME.EXT`,
/// with TIME `YYYYMMDD-HHMMSS` in UTC, and the extension kept last so that the copy opens with
/// the same program (`a/report.pdf` -> `a/report.conflict-web2-20240131-235959.pdf`). A name
/// with no extension, or a dotfile, gets the suffix at its end. Characters of NODE that cannot
/// be in a name (`/`, NUL) become `_`.
pub fn conflict_name(path: &str, node: &str, time: SystemTime) -> String {
    let node: String = node
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    let t = UtcTime::from_system(time);
    let suffix = format!(
        ".conflict-{node}-{:04}{:02}{:02}-{:02}{:02}{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    with_suffix(path, &suffix)
}

/// `path` with `suffix` put before the extension of its last component, or at its end when it
/// has none or is a dotfile: `a/report.pdf` and `-2` give `a/report-2.pdf`.
pub fn with_suffix(path: &str, suffix: &str) -> String {
    let (dir, name) = match path.rfind('/') {
        Some(slash) => (&path[..=slash], &path[slash + 1..]),
        None => ("", path),
    };
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    format!("{dir}{stem}{suffix}{ext}")
}
