//! What a running sync set reports: a status snapshot for `fulcrum status sync`, and events
//! (conflicts, peers coming and going, failed transfers) for alerts.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::SystemTime,
};

use crate::sync::index::ScanCounts;

/// A snapshot of one sync set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStatus {
    pub name: String,
    pub path: PathBuf,
    /// In the order of the config's `peers`.
    pub peers: Vec<PeerStatus>,
    /// Conflicts resolved since the set started.
    pub conflicts: u64,
    pub counters: SyncCounters,
    /// While the start-up scan runs (the set has no links yet): how far it is.
    pub scan: Option<ScanCounts>,
    /// Why the start-up scan failed, while it waits to be tried again.
    pub scan_failed: Option<String>,
}

/// One configured peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its `listen`, as configured.
    pub addr: SocketAddr,
    /// Its node name, once it has said hello.
    pub node: Option<String>,
    pub connected: bool,
    /// When the peer last acknowledged everything we had to send it (or we caught up with it).
    pub last_sync: Option<SystemTime>,
    /// Entries of our index the peer has not acknowledged yet: changes made here waiting for it
    /// (counted from the last acknowledged sequence, which is not persisted: after a restart
    /// with the peer down it counts every entry until the peer reconnects).
    pub queue: u64,
    /// While the peer is being sent the backlog it lacked when it connected (a start-up full
    /// sync, a catch-up after a restart): how far along.
    pub catch_up: Option<CatchUp>,
}

/// A peer's catch-up: of the `total` changes it lacked when it connected (or lacks now, if
/// more), `done` are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    pub done: u64,
    pub total: u64,
}

impl CatchUp {
    /// `total` changes to send at the start, `queue` of them (or of later ones) still unsent.
    pub(super) fn of(total: u64, queue: u64) -> Option<Self> {
        (total > 0 && queue > 0).then(|| {
            let total = total.max(queue);
            Self {
                done: total - queue,
                total,
            }
        })
    }
}

/// Counters since the set started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounters {
    /// Files whose content (whole or as a delta) was sent to a peer.
    pub files_sent: u64,
    /// Files whose content was received from a peer.
    pub files_received: u64,
    /// Content octets sent (file data and deltas, not entries or framing).
    pub bytes_sent: u64,
    /// Content octets received.
    pub bytes_received: u64,
    /// File octets not transferred thanks to rsync deltas: size minus delta size.
    pub bytes_saved_by_delta: u64,
    /// Files whose content was found locally under another name (a rename or a copy) instead
    /// of being transferred.
    pub renames: u64,
    /// Paths deleted here because a peer deleted them.
    pub deletes: u64,
    /// Subtrees rescanned because the watcher lost events or hit the watch limit.
    pub rescans: u64,
    /// Times the watcher's queue overflowed.
    pub overflows: u64,
    /// Failures: refused entries and peers, failed transfers (each retry counts), I/O errors.
    pub errors: u64,
}

/// Something worth an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// Both sides changed `path`; newest-wins decided. `kept_as` is where this node kept its
    /// losing version, or `None` when this node's version won (the peer keeps the loser, which
    /// then syncs here) or the loser was a deletion.
    Conflict {
        path: String,
        kept_as: Option<String>,
    },
    PeerConnected {
        addr: SocketAddr,
        node: String,
    },
    PeerLost {
        addr: SocketAddr,
    },
    /// A transfer or an entry failed; a transfer is retried with backoff, and set aside after
    /// a few attempts (an event saying so), to be tried again every 30 s and after a
    /// reconnect or a restart.
    TransferFailed {
        path: String,
        error: String,
    },
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) files_sent: AtomicU64,
    pub(super) files_received: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) bytes_received: AtomicU64,
    pub(super) bytes_saved_by_delta: AtomicU64,
    pub(super) renames: AtomicU64,
    pub(super) deletes: AtomicU64,
    pub(super) rescans: AtomicU64,
    pub(super) overflows: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) conflicts: AtomicU64,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(super) fn snapshot(&self) -> SyncCounters {
        SyncCounters {
            files_sent: self.files_sent.load(Relaxed),
            files_received: self.files_received.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            bytes_saved_by_delta: self.bytes_saved_by_delta.load(Relaxed),
            renames: self.renames.load(Relaxed),
            deletes: self.deletes.load(Relaxed),
            rescans: self.rescans.load(Relaxed),
            overflows: self.overflows.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}
