//! A node's persistent index of one synced directory: per relative path its kind, size, mtime,
//! mode, owner, content hash (BLAKE3) and version vector, and tombstones for deletions. A
//! restart compares the disk to it ([`Index::scan`]) to find what changed while the node was
//! down, and a peer's entry is judged against it ([`Index::apply_remote`]) so that conflicts are detected, not guessed.
//!
//! How the protocol (next to come) is meant to use it:
//! - Each change to the index takes the next [`Index::sequence`]; a peer that has received this
//!   index up to sequence N is sent [`Index::changed_since`]`(N)`, and what each peer sent us is
//!   remembered with [`Index::set_peer_mark`] (with the peer index's [`Index::id`], so that a
//!   peer that lost its index is asked for everything). Changes made while a peer is down thus
//!   wait in the index on disk, not in memory.
//! - Each received entry goes to [`Index::apply_remote`]: the [`Decision`] says whether to fetch
//!   content, record a merge, resolve a conflict (newest-wins, the loser kept under
//!   [`conflict_name`]) or do nothing; once the disk matches, [`Index::record`] stores it.
//! - A renamed file is a tombstone plus a new entry here; the protocol spots the rename by
//!   finding the new entry's hash ([`Index::find_by_hash`]) and moves instead of transferring.
//!
//! Mtime granularity: a file rewritten with the same size within the same mtime tick is not
//! seen by a normal scan, which hashes only files whose size, mtime or mode changed; a rescan
//! with [`Rehash::Always`] hashes everything and sees it.

mod content_hash;
mod entry;
mod error;
#[cfg(test)]
mod owner_tests;
mod progress;
mod remote;
mod scan;
mod store;
#[cfg(test)]
mod tests;
pub mod version;

use std::collections::{BTreeMap, BTreeSet};

pub use content_hash::{ContentHasher, content_hash};
pub use entry::{Entry, Hash, Kind, MAX_PATH, NO_HASH, PathError, check_path, unix_ns};
pub use error::IndexError;
pub use progress::{ScanCounts, ScanProgress};
pub use remote::{Conflict, Decision, Side, conflict_name, with_suffix};
pub(crate) use scan::no_wait_options;
pub use scan::{Change, ChangeKind, ROOT_MARKER, Rehash, ScanReport};
pub use store::{FORMAT_VERSION, INDEX_FILE, index_dir};
pub use version::{Causality, MAX_VERSION_NODES, VersionVector};

/// The `by_sequence` keys after `sequence`.
fn after(sequence: u64) -> std::ops::RangeFrom<(u64, String)> {
    (sequence.saturating_add(1), String::new())..
}

/// How far below the clock (seconds) this node's counter in a tombstone must be for the
/// tombstone to be forgotten (see [`Index::forget_deletions_before`]): room for the clock
/// being stepped back a little afterwards.
pub const CLOCK_MARGIN_SECS: u64 = 3600;

/// How far this node has received a peer's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerMark {
    /// The peer index's [`Index::id`]: a different one means the peer started a new index, and
    /// its sequences start over.
    pub index_id: u64,
    /// The peer's sequence received up to.
    pub sequence: u64,
}

/// How far a peer has acknowledged this node's index, as last known. It only feeds the status
/// (the changes waiting for that peer), so that a restart while the peer is away still counts
/// them; the peer's own mark, sent when it is back, is what sending resumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckedMark {
    /// This index's sequence the peer acknowledged up to.
    pub sequence: u64,
    /// Whether the peer applies this node's changes at all: a `push` peer does not, so
    /// nothing waits for it.
    pub applies: bool,
}

/// One node's index of one synced directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// This node's name in version vectors.
    node: String,
    /// Random, chosen when the index is created.
    id: u64,
    /// The last sequence given to an entry.
    sequence: u64,
    /// The sequence as of the last save that reached the disk: only entries up to it may be
    /// sent to peers. A peer that acknowledged an entry this node then lost in a crash would
    /// skip the entry that reuses its sequence (or its version) after the restart.
    published: u64,
    entries: BTreeMap<String, Entry>,
    /// The entries' (sequence, path), so that what changed after a sequence is found without
    /// a pass over every entry: senders ask for it per batch, the status on every poll.
    by_sequence: BTreeSet<(u64, String)>,
    peers: BTreeMap<String, PeerMark>,
    /// By peer `listen` address, as the config writes it.
    acked: BTreeMap<String, AckedMark>,
    /// Entries changed since loaded or saved.
    dirty: bool,
    /// Peer marks changed since loaded or saved (see [`Index::only_marks_dirty`]).
    marks_dirty: bool,
    /// The file hashes are SHA-256, read from a format 1 index: the next scan of the whole
    /// tree hashes every file again, in place (see [`store`]).
    legacy_hashes: bool,
    /// The root held the [`ROOT_MARKER`] directory when this index was saved (see
    /// [`scan`]): a full scan of a root without it fails instead of deleting everything.
    root_marked: bool,
    /// Owners are synced ([`Index::set_track_owners`]). Not saved: the config says it at
    /// every start.
    track_owners: bool,
    /// Deletions found before this (nanoseconds since the Unix epoch) are forgotten (see
    /// [`Index::forget_deletions_before`]); `i64::MIN` until the first collection.
    forgotten_before: i64,
}

impl Index {
    /// An empty index for node `node`, with a random id.
    pub fn new(node: impl Into<String>) -> Result<Self, IndexError> {
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).map_err(IndexError::Random)?;
        Ok(Self::with_id(node.into(), u64::from_le_bytes(id)))
    }

    fn with_id(node: String, id: u64) -> Self {
        Self {
            node,
            id,
            sequence: 0,
            published: 0,
            entries: BTreeMap::new(),
            by_sequence: BTreeSet::new(),
            peers: BTreeMap::new(),
            acked: BTreeMap::new(),
            dirty: true,
            marks_dirty: false,
            legacy_hashes: false,
            root_marked: false,
            track_owners: false,
            forgotten_before: i64::MIN,
        }
    }

    /// This node's name in version vectors.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The index's random id (see [`PeerMark`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The last sequence given to a change.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The last sequence saved: what peers may be sent (see [`Index::publish`]).
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Records that the index up to `sequence` is on disk (a snapshot taken at that sequence
    /// was written), so that its entries may be sent.
    pub fn publish(&mut self, sequence: u64) {
        self.published = self.published.max(sequence.min(self.sequence));
    }

    /// The entry of `path`, live or a tombstone.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Every entry, tombstones included, in path order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// How many entries, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries changed after `sequence`, in sequence order: what a peer that has seen this index
    /// up to `sequence` lacks.
    pub fn changed_since(&self, sequence: u64) -> Vec<&Entry> {
        self.iter_changed_since(sequence).collect()
    }

    /// The first `limit` of [`Index::changed_since`] (a sender's batch).
    pub fn first_changed_since(&self, sequence: u64, limit: usize) -> Vec<&Entry> {
        self.iter_changed_since(sequence).take(limit).collect()
    }

    /// How many entries [`Index::changed_since`] would return, without collecting them.
    pub fn count_changed_since(&self, sequence: u64) -> usize {
        self.by_sequence.range(after(sequence)).count()
    }

    fn iter_changed_since(&self, sequence: u64) -> impl Iterator<Item = &Entry> {
        self.by_sequence
            .range(after(sequence))
            .filter_map(|(_, path)| self.entries.get(path))
    }

    /// Entries (live files and tombstones) whose content hash is `hash`: where a new path's
    /// content can be found locally, e.g. the old name of a renamed file. A linear pass.
    pub fn find_by_hash<'a>(&'a self, hash: &'a Hash) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .values()
            .filter(move |e| e.kind == Kind::File && e.hash == *hash)
    }

    /// Whether this node syncs owners: its scans then record each path's owner, and a new
    /// owner is a new version. Off (the default), entries have no owner: the disk's owners,
    /// which a node that cannot `chown` does not control, are never sent, and what a peer sent
    /// is not kept, so that turning it on later does not take a difference for a change.
    /// Turning it off forgets the owners held.
    pub fn set_track_owners(&mut self, on: bool) {
        self.track_owners = on;
        if !on {
            for entry in self.entries.values_mut().filter(|e| e.owner.is_some()) {
                entry.owner = None;
                self.dirty = true;
            }
        }
    }

    /// See [`Index::set_track_owners`].
    pub fn tracks_owners(&self) -> bool {
        self.track_owners
    }

    /// Stores `entry` as the path's current state (after the disk was made to match a peer's
    /// version, see [`Decision`]), with the next sequence. Without [`Index::tracks_owners`],
    /// its owner is dropped.
    pub fn record(&mut self, mut entry: Entry) {
        if !self.track_owners {
            entry.owner = None;
        }
        self.sequence += 1;
        entry.sequence = self.sequence;
        self.by_sequence
            .insert((entry.sequence, entry.path.clone()));
        if let Some(old) = self.entries.insert(entry.path.clone(), entry) {
            self.by_sequence.remove(&(old.sequence, old.path));
        }
        self.dirty = true;
    }

    /// Removes a path's entry without a tombstone, so that its deletion is not propagated (an
    /// excluded path). Returns the entry.
    pub fn forget(&mut self, path: &str) -> Option<Entry> {
        let removed = self.entries.remove(path);
        if let Some(old) = &removed {
            self.by_sequence.remove(&(old.sequence, old.path.clone()));
            self.dirty = true;
        }
        removed
    }

    /// Forgets the tombstones of deletions this node recorded before `before_ns` (nanoseconds
    /// since the Unix epoch; a tombstone's `mtime_ns` is when this node found the deletion or
    /// received it), as Syncthing forgets old deletions, so that deleted paths do not cost an
    /// entry for ever; returns how many. From then on a peer's tombstone that old, of a path
    /// this index does not hold, is taken as applied ([`Index::apply_remote`]), so that a peer
    /// that keeps its own longer does not bring it back. The cost: a peer that was away since
    /// before `before_ns` and never saw a deletion keeps its copy of the file.
    ///
    /// A path made again after its tombstone is forgotten must get a version that no peer's
    /// copy of the tombstone dominates: its counter for this node is the clock's second
    /// ([`VersionVector::bump`]), so a tombstone whose counter for this node is not below
    /// `counters_below` (the clock's second less a margin, [`CLOCK_MARGIN_SECS`] in use) is
    /// kept until the clock has passed it: a clock that was once fast, or a path changed
    /// faster than once a second, left a counter ahead of the clock. So is a tombstone not yet
    /// saved ([`Index::published`]).
    pub fn forget_deletions_before(&mut self, before_ns: i64, counters_below: u64) -> usize {
        self.forgotten_before = self.forgotten_before.max(before_ns);
        let node = &self.node;
        let published = self.published;
        let old: Vec<String> = self
            .entries
            .values()
            .filter(|e| {
                e.deleted
                    && e.mtime_ns < before_ns
                    && e.sequence <= published
                    && e.version.get(node) < counters_below
            })
            .map(|e| e.path.clone())
            .collect();
        for path in &old {
            self.forget(path);
        }
        old.len()
    }

    /// How far this node has received `peer`'s index.
    pub fn peer_mark(&self, peer: &str) -> Option<PeerMark> {
        self.peers.get(peer).copied()
    }

    pub fn set_peer_mark(&mut self, peer: &str, mark: PeerMark) {
        if self.peers.get(peer) != Some(&mark) {
            self.peers.insert(peer.to_owned(), mark);
            self.marks_dirty = true;
        }
    }

    /// How far the peer at `addr` has acknowledged this index, as last known.
    pub fn acked_by(&self, addr: &str) -> Option<AckedMark> {
        self.acked.get(addr).copied()
    }

    /// Records how far the peer at `addr` acknowledged this index. The sequence comes from the
    /// peer (its Resume): never past ours, whatever it says.
    pub fn set_acked_by(&mut self, addr: &str, mut mark: AckedMark) {
        mark.sequence = mark.sequence.min(self.sequence);
        if self.acked.get(addr) != Some(&mark) {
            self.acked.insert(addr.to_owned(), mark);
            self.marks_dirty = true;
        }
    }

    /// Forgets the acknowledged marks of the peers not in `peers` (taken out of the config).
    pub fn keep_acked_of(&mut self, peers: &[String]) {
        let before = self.acked.len();
        self.acked.retain(|addr, _| peers.contains(addr));
        self.marks_dirty |= self.acked.len() != before;
    }

    /// Whether the index changed since it was loaded or last saved.
    pub fn is_dirty(&self) -> bool {
        self.dirty || self.marks_dirty
    }

    /// Whether the only change since loaded or saved is to peer marks. Such a save may wait:
    /// a mark that is lost in a crash costs only the peer sending again entries we have
    /// (judged up to date), while a lost entry would be taken for a local change.
    pub fn only_marks_dirty(&self) -> bool {
        self.marks_dirty && !self.dirty
    }
}
