//! The state one volume's tasks share: its config, disk and metadata, what the status shows,
//! and the gate through which writes reach the replication session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, RwLock, broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::disk::LocalDisk;
use super::link::Request;
use super::meta_thread::MetaHandle;
use super::overlap::Overlaps;
use super::status::{ConnState, Counters, ResyncProgress, VolumeEvent, VolumeStatus};
use crate::nbd::NbdServer;
use crate::volume::config::{Role, VolumeConfig};
use crate::volume::meta;
use crate::volume::peer::{self, DiskState};

/// Everything a volume's tasks share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: VolumeConfig,
    pub(crate) node: String,
    pub(crate) disk: LocalDisk,
    pub(crate) meta: MetaHandle,
    pub(crate) counters: Counters,
    pub(crate) overlaps: Overlaps,
    /// The session writes are replicated through; `None` while disconnected. A write holds the
    /// read side from "is there a peer" until it is queued or marked out of sync, so a session
    /// attaching (write side) knows that every earlier write is already in the bitmap.
    pub(crate) gate: RwLock<Option<mpsc::Sender<Request>>>,
    /// Whether writes are accepted (read on every request).
    pub(crate) primary: AtomicBool,
    /// The local disk failed and is no longer used (`on_io_error = "detach"`): reads and
    /// writes go to the peer only. Set once, until the volume restarts.
    pub(crate) detached: AtomicBool,
    /// Detached, a write acknowledged before the peer had it on disk (protocol A or B) that
    /// the peer then failed: it is on neither node, and the next flush fails to say so.
    pub(crate) lost_acked_write: AtomicBool,
    /// An online verify is running (one at a time).
    pub(crate) verifying: AtomicBool,
    // A std mutex: status fields only, changed on state transitions and read by `status()`,
    // never held across an await.
    control: Mutex<Control>,
    pub(crate) events: broadcast::Sender<VolumeEvent>,
    /// Operator requests for the connection (StandAlone or not).
    pub(crate) admin: watch::Sender<Admin>,
    /// Cuts the dialer's backoff pause short: a promotion wants to hear from the peer now
    /// (see `reach`).
    pub(crate) redial: Notify,
    /// The attempts to reach the peer, sent again unchanged on every connection state change,
    /// so that a promotion waiting for the peer learns at once that it connected or that the
    /// attempt it asked for failed.
    pub(crate) link_news: watch::Sender<Attempts>,
    /// Serializes role changes (and the handshake, which reports the role); holds the NBD
    /// server while primary.
    pub(crate) role_lock: tokio::sync::Mutex<Option<NbdServer>>,
    /// One flush at a time for writes that need room in the activity log: the writers waiting
    /// behind it try again first, and most find the room it made.
    pub(crate) evicting: tokio::sync::Mutex<()>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

/// What `connect` / `disconnect` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Admin {
    /// Do not connect (after `disconnect`, a split brain, or unrelated data).
    pub(crate) standalone: bool,
    /// The next handshake resolves a split brain by discarding our changes.
    pub(crate) discard_my_data: bool,
    /// Raised to end the link and make it again, for a new handshake: a forced promotion whose
    /// peer must now be resynced from this node (see `roles::promote`).
    pub(crate) renegotiate: u64,
}

/// The connection manager's attempts to reach the peer, numbered from 1.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Attempts {
    /// Attempts begun: dials, or connections accepted.
    pub(crate) begun: u64,
    /// The number of the last attempt that failed before a session started (dial,
    /// authentication or handshake); 0 for none.
    pub(crate) last_failed: u64,
}

/// The status fields that change on transitions.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    pub(crate) role: Role,
    pub(crate) peer_role: Option<Role>,
    pub(crate) conn: ConnState,
    pub(crate) disk: DiskState,
    pub(crate) peer_disk: Option<DiskState>,
    pub(crate) resync: Option<ResyncState>,
    pub(crate) nbd: Option<SocketAddr>,
}

/// A running resync's progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResyncState {
    pub(crate) total: u64,
    pub(crate) done: u64,
    pub(crate) started: Instant,
}

impl Inner {
    pub(crate) fn new(
        config: VolumeConfig,
        node: String,
        disk: LocalDisk,
        meta: MetaHandle,
        state: &meta::State,
    ) -> Arc<Inner> {
        let (events, _) = broadcast::channel(256);
        let (admin, _) = watch::channel(Admin::default());
        let (link_news, _) = watch::channel(Attempts::default());
        Arc::new(Inner {
            config,
            node,
            disk,
            meta,
            counters: Counters::default(),
            overlaps: Overlaps::default(),
            gate: RwLock::new(None),
            primary: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            lost_acked_write: AtomicBool::new(false),
            verifying: AtomicBool::new(false),
            control: Mutex::new(Control {
                role: Role::Secondary,
                peer_role: None,
                conn: ConnState::Connecting,
                disk: to_wire_disk(state.disk),
                peer_disk: None,
                resync: None,
                nbd: None,
            }),
            events,
            admin,
            redial: Notify::new(),
            link_news,
            role_lock: tokio::sync::Mutex::new(None),
            evicting: tokio::sync::Mutex::new(()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    pub(crate) fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_primary(&self) -> bool {
        self.primary.load(Ordering::Acquire)
    }

    pub(crate) fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Acquire)
    }

    pub(crate) fn emit(&self, event: VolumeEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    pub(crate) fn set_conn(&self, conn: ConnState) {
        {
            let mut c = self.control();
            if c.conn == conn {
                return;
            }
            tracing::info!(volume = %self.config.name, from = %c.conn, to = %conn, "connection state");
            c.conn = conn;
        }
        self.link_news.send_modify(|_| {});
    }

    /// The connection manager begins an attempt to reach the peer; returns its number.
    pub(crate) fn attempt_begun(&self) -> u64 {
        let mut number = 0;
        self.link_news.send_modify(|a| {
            a.begun += 1;
            number = a.begun;
        });
        number
    }

    /// Attempt `attempt` failed before a session started. The accepting node runs several
    /// handshakes side by side: one failing says nothing of those begun after it.
    pub(crate) fn attempt_failed(&self, attempt: u64) {
        self.link_news
            .send_modify(|a| a.last_failed = a.last_failed.max(attempt));
    }

    pub(crate) fn status(&self) -> VolumeStatus {
        let c = self.control().clone();
        VolumeStatus {
            name: self.config.name.clone(),
            role: c.role,
            peer_role: c.peer_role,
            connection: c.conn,
            disk: c.disk,
            peer_disk: c.peer_disk,
            protocol: self.config.protocol,
            out_of_sync_bytes: self.meta.out_of_sync_bytes(),
            resync: c.resync.map(|r| {
                let secs = r.started.elapsed().as_secs_f64();
                let rate = if secs > 0.0 {
                    (r.done as f64 / secs) as u64
                } else {
                    0
                };
                ResyncProgress {
                    done_bytes: r.done,
                    total_bytes: r.total,
                    bytes_per_sec: rate,
                }
            }),
            counters: self.counters.snapshot(),
            nbd: c.nbd,
        }
    }
}

pub(crate) fn to_wire_disk(disk: meta::DiskState) -> DiskState {
    match disk {
        meta::DiskState::Inconsistent => DiskState::Inconsistent,
        meta::DiskState::Outdated => DiskState::Outdated,
        meta::DiskState::UpToDate => DiskState::UpToDate,
    }
}

pub(crate) fn from_wire_disk(disk: DiskState) -> meta::DiskState {
    match disk {
        DiskState::Diskless | DiskState::Inconsistent => meta::DiskState::Inconsistent,
        DiskState::Outdated => meta::DiskState::Outdated,
        DiskState::UpToDate => meta::DiskState::UpToDate,
    }
}

pub(crate) fn to_wire_role(role: Role) -> peer::Role {
    match role {
        Role::Primary => peer::Role::Primary,
        Role::Secondary => peer::Role::Secondary,
    }
}

pub(crate) fn from_wire_role(role: peer::Role) -> Role {
    match role {
        peer::Role::Primary => Role::Primary,
        peer::Role::Secondary => Role::Secondary,
    }
}

pub(crate) fn to_wire_protocol(p: crate::volume::config::Protocol) -> peer::Protocol {
    use crate::volume::config::Protocol as P;
    match p {
        P::A => peer::Protocol::A,
        P::B => peer::Protocol::B,
        P::C => peer::Protocol::C,
    }
}
