//! What a volume reports about itself: a [`VolumeStatus`] snapshot (the fields of DRBD's
//! `/proc/drbd`), the [`VolumeEvent`]s it broadcasts, and the live counters behind them.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::volume::config::{Protocol, Role};
use crate::volume::peer::DiskState;

/// A snapshot of one volume, like a line of DRBD's `/proc/drbd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeStatus {
    pub name: String,
    pub role: Role,
    /// `None` while not connected (DRBD's `Unknown`).
    pub peer_role: Option<Role>,
    pub connection: ConnState,
    pub disk: DiskState,
    /// `None` while not connected (DRBD's `DUnknown`).
    pub peer_disk: Option<DiskState>,
    pub protocol: Protocol,
    /// Bytes this node's bitmap marks as differing from the peer (DRBD's `oos`, in bytes).
    pub out_of_sync_bytes: u64,
    /// Set while a resync runs (this node is SyncSource or SyncTarget).
    pub resync: Option<ResyncProgress>,
    pub counters: VolumeCounters,
    /// Where NBD is served (only while primary).
    pub nbd: Option<SocketAddr>,
}

/// The replication link's state, with DRBD's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// Not trying to connect: after a split brain, unrelated data, or `disconnect`.
    StandAlone,
    /// Trying to reach the peer (DRBD 8.4 prints it `WFConnection`).
    Connecting,
    /// Connected and in sync: writes are replicated.
    Connected,
    /// Connected, sending the peer what differs.
    SyncSource,
    /// Connected, receiving what differs; the local disk is Inconsistent until it ends.
    SyncTarget,
}

impl ConnState {
    /// Connected in any way (writes reach the peer).
    pub fn is_connected(self) -> bool {
        matches!(self, Self::Connected | Self::SyncSource | Self::SyncTarget)
    }
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::StandAlone => "StandAlone",
            Self::Connecting => "WFConnection",
            Self::Connected => "Connected",
            Self::SyncSource => "SyncSource",
            Self::SyncTarget => "SyncTarget",
        })
    }
}

/// A running resync, seen from either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResyncProgress {
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Average since the resync started.
    pub bytes_per_sec: u64,
}

/// What the volume has done since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VolumeCounters {
    /// Bytes sent to the peer after authentication (DRBD's `ns`).
    pub net_sent_bytes: u64,
    /// Bytes received from the peer after authentication (DRBD's `nr`).
    pub net_received_bytes: u64,
    /// Bytes read from the local disk (DRBD's `dr`).
    pub disk_read_bytes: u64,
    /// Bytes written to the local disk (DRBD's `dw`).
    pub disk_written_bytes: u64,
    /// Writes acknowledged to the client.
    pub writes_acked: u64,
    /// Writes the peer did not get (no link, link lost, or failed there): marked out of sync.
    pub writes_out_of_sync: u64,
    /// Bytes resynced since start (sent as SyncSource or received as SyncTarget): data that
    /// crossed the link.
    pub resynced_bytes: u64,
    /// Bytes a checksum-based resync found already equal on both sides, so sent no data for
    /// (`checksum_resync`; counted by both sides).
    pub resync_skipped_bytes: u64,
    /// Resyncs completed.
    pub resyncs: u64,
    /// Connections dialed or accepted.
    pub connect_attempts: u64,
    /// Connections refused by authentication (either side's verdict).
    pub auth_failures: u64,
    /// Connections that passed the handshake.
    pub connections: u64,
    /// Bytes read from the peer's copy because the local disk is detached
    /// (`on_io_error = "detach"`).
    pub peer_read_bytes: u64,
}

/// What happened, broadcast to [`super::Volume::subscribe`]rs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeEvent {
    Connected,
    Disconnected,
    /// Both copies changed while apart; whether a policy resolved it follows as a resync or a
    /// StandAlone connection.
    SplitBrain,
    ResyncStarted,
    ResyncDone,
    /// The resync ended with this many bytes that could not be copied (unreadable on the
    /// source, or unwritable on the target): the SyncTarget stays Inconsistent.
    ResyncIncomplete(u64),
    RoleChanged(Role),
    /// The peer failed authentication (or refused ours).
    AuthRefused,
    IoError,
    /// The local disk failed and was detached (`on_io_error = "detach"`): I/O goes to the peer.
    Detached,
}

/// The result of an online verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// The whole volume, once the verify completes.
    pub checked_bytes: u64,
    /// Bytes (whole 4 KiB blocks) found different on the peer, now marked out of sync.
    pub differing_bytes: u64,
}

/// The live counters behind [`VolumeCounters`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) net_sent: AtomicU64,
    pub(crate) net_received: AtomicU64,
    pub(crate) disk_read: AtomicU64,
    pub(crate) disk_written: AtomicU64,
    pub(crate) writes_acked: AtomicU64,
    pub(crate) writes_out_of_sync: AtomicU64,
    pub(crate) resynced: AtomicU64,
    pub(crate) resync_skipped: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) connect_attempts: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) peer_read: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> VolumeCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        VolumeCounters {
            net_sent_bytes: get(&self.net_sent),
            net_received_bytes: get(&self.net_received),
            disk_read_bytes: get(&self.disk_read),
            disk_written_bytes: get(&self.disk_written),
            writes_acked: get(&self.writes_acked),
            writes_out_of_sync: get(&self.writes_out_of_sync),
            resynced_bytes: get(&self.resynced),
            resync_skipped_bytes: get(&self.resync_skipped),
            resyncs: get(&self.resyncs),
            connect_attempts: get(&self.connect_attempts),
            auth_failures: get(&self.auth_failures),
            connections: get(&self.connections),
            peer_read_bytes: get(&self.peer_read),
        }
    }
}
