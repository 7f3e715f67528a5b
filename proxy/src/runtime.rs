//! What every task of the proxy shares: the current routing table, the runtime state registry,
//! the event channel, connection accounting and the shutdown signal.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering::Relaxed},
};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, broadcast};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    Event,
    state::{Registry, ServerState, ServerStatus, counters::Gauge},
    table::Table,
};

/// Shared by listeners, connections and health checks.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) table: ArcSwap<Table>,
    pub(crate) registry: Registry,
    pub(crate) events: broadcast::Sender<Event>,
    /// Cancelled on shutdown: listeners stop, idle connections close.
    pub(crate) shutdown: CancellationToken,
    /// Every client connection task, so shutdown can wait for them.
    pub(crate) connections: TaskTracker,
    /// `[global] max_connections`.
    pub(crate) limit: Arc<ConnLimit>,
    /// The share of `limit` UDP flows may take (see [`udp_share`]).
    pub(crate) udp_flows: Arc<ConnLimit>,
    /// Client connections being served now (the limit also counts accept loops waiting for a
    /// client, so it cannot tell).
    pub(crate) active: Gauge,
}

impl Runtime {
    pub(crate) fn new(table: Table, registry: Registry, max_connections: usize) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Self {
            table: ArcSwap::from_pointee(table),
            registry,
            events,
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
            limit: Arc::new(ConnLimit::new(max_connections)),
            udp_flows: Arc::new(ConnLimit::new(udp_share(max_connections))),
            active: Gauge::default(),
        })
    }

    /// Applies a reloaded `[global] max_connections`, and the UDP flows' share of it.
    pub(crate) fn set_max_connections(&self, max_connections: usize) {
        self.limit.set_max(max_connections);
        self.udp_flows.set_max(udp_share(max_connections));
    }

    /// Publishes an event; nobody listening is fine.
    pub(crate) fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Publishes that `server` changed from `from`, for `reason`: in the order its changes were
    /// made, with the status it has then (see [`ServerState::report_in_order`]).
    pub(crate) fn emit_status(&self, server: &ServerState, from: ServerStatus, reason: String) {
        server.report_in_order(from, |now| {
            self.emit(Event::ServerStatus {
                backend: server.backend.clone(),
                server: server.name.clone(),
                from,
                to: now,
                reason,
            });
        });
    }
}

/// How many of `max_connections` UDP flows may hold: half (0, no limit, stays no limit). A UDP
/// source is easily spoofed, so a flood of datagrams from made-up addresses opens a flow each;
/// with the whole limit to take, it would leave TCP and HTTP clients no slot, and the node
/// would stop accepting connections. IPVS has no limit (its flows cost no descriptor).
pub(crate) fn udp_share(max_connections: usize) -> usize {
    if max_connections == 0 {
        0
    } else {
        (max_connections / 2).max(1)
    }
}

impl Default for ConnLimit {
    fn default() -> Self {
        Self::new(0)
    }
}

/// A connection count with a ceiling that can change on reload; accept loops wait at the ceiling,
/// leaving new clients in the kernel's backlog as HAProxy's `maxconn` does.
#[derive(Debug)]
pub(crate) struct ConnLimit {
    max: AtomicUsize,
    cur: AtomicUsize,
    freed: Notify,
}

impl ConnLimit {
    /// A limit of `max` connections; 0 means none.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: AtomicUsize::new(max),
            cur: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Relaxed);
        self.freed.notify_waiters();
    }

    /// Takes a connection if the limit has room, without waiting: for a datagram, which has no
    /// backlog to wait in.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<ConnPermit> {
        let max = self.max.load(Relaxed);
        self.cur
            .fetch_update(Relaxed, Relaxed, |c| (max == 0 || c < max).then_some(c + 1))
            .is_ok()
            .then(|| ConnPermit(Arc::clone(self)))
    }

    /// Waits until a connection may be taken, then takes it.
    pub(crate) async fn acquire(self: &Arc<Self>) -> ConnPermit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(permit) = self.try_acquire() {
                return permit;
            }
            freed.await;
        }
    }
}

/// One counted connection; the count drops with it.
#[derive(Debug)]
pub(crate) struct ConnPermit(Arc<ConnLimit>);

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.0.cur.fetch_sub(1, Relaxed);
        self.0.freed.notify_one();
    }
}
