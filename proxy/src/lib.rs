//! Fulcrum's data plane: the L4 tier (virtual services, IPVS schedulers, persistence) and the L7
//! tier (frontends, ACLs, backends, balancing, cookie persistence, health checks, TLS, HTTP/1.1
//! and HTTP/2), and their hot reload.
//!
//! The binary hands [`Proxy::start`] a validated [`Config`] (built from the `[frontend.*]`,
//! `[backend.*]` and `[virtual_server.*]` sections by [`config::build`]); [`Proxy::reload`] swaps
//! in a new one without dropping a request or a connection; [`Proxy::subscribe`] streams server
//! state changes; [`Proxy::l4_status`] is the `ipvsadm -L -n` view. For operators,
//! [`Proxy::stats`] gives HAProxy's stats rows, [`Proxy::server_action`] carries out their
//! actions on servers, and [`Proxy::register_metrics`] exports the same numbers to Prometheus.

mod action;
mod closing;
pub mod config;
pub mod health;
pub mod l4;
pub mod l7;
mod metrics;
mod net;
mod runtime;
pub mod state;
mod stats;
mod table;
mod tls;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

pub use action::ActionError;
pub use config::Config;
use fulcrum_common::{
    action::{ServerAction, ServerRef},
    stats::ProxyStats,
};
use tokio::{net::TcpListener, sync::broadcast, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    health::Supervisor,
    runtime::Runtime,
    state::{Registry, ServerStatus},
    table::Table,
};

/// Something the proxy reports to the rest of the appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A server's status changed (health check verdict or admin action).
    ServerStatus {
        backend: String,
        server: String,
        from: ServerStatus,
        to: ServerStatus,
        reason: String,
    },
    /// A reload swapped a new config in: backends and servers may have come or gone without a
    /// status change of their own.
    Reloaded,
}

/// A listener the proxy runs: the frontend, the address configured and the address bound (they
/// differ when the configured port is 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub frontend: String,
    pub configured: SocketAddr,
    pub bound: SocketAddr,
}

/// Errors starting or reloading the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("frontend `{frontend}`: cannot listen on {addr}: {source}")]
    Bind {
        frontend: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("virtual_server `{name}`: cannot listen on {addr}: {source}")]
    BindVirtualServer {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The running proxy.
#[derive(Debug)]
pub struct Proxy {
    rt: Arc<Runtime>,
    health: Supervisor,
    listeners: Mutex<HashMap<ListenKey, RunningListener>>,
    /// The listeners reloads removed, until their sockets are closed.
    closing: closing::Closing,
    /// Shared with the metrics collector, which a Prometheus registry owns.
    l4: Arc<l4::tier::Tier>,
    /// The events from the start on, subscribed before the first health check, until
    /// [`Proxy::events_since_start`] takes them.
    first_events: Mutex<Option<broadcast::Receiver<Event>>>,
}

/// What identifies a listener across reloads: its address, so a reload that moves an address to
/// another frontend keeps the socket (no bind race, no refused client); port-0 binds are
/// ephemeral and belong to their frontend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ListenKey {
    Addr(SocketAddr),
    Ephemeral(String, SocketAddr),
}

impl ListenKey {
    fn new(frontend: &str, addr: SocketAddr) -> Self {
        if addr.port() == 0 {
            Self::Ephemeral(frontend.to_owned(), addr)
        } else {
            Self::Addr(addr)
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Self::Addr(a) | Self::Ephemeral(_, a) => *a,
        }
    }
}

#[derive(Debug)]
struct RunningListener {
    bound: SocketAddr,
    /// The frontend this listener serves; a reload may hand the address to another one.
    frontend: l7::listener::FrontendName,
    stop: CancellationToken,
    /// The accept loop, which owns the socket.
    task: JoinHandle<()>,
}

impl Proxy {
    /// Binds every frontend's addresses and starts serving and health checking. Must be called
    /// inside a tokio runtime.
    pub fn start(mut config: Config) -> Result<Self, Error> {
        let virtual_servers = take_virtual_servers(&mut config);
        let registry = Registry::default();
        let max_connections = config.max_connections;
        let bound_frontends = bind_new::<()>(&HashMap::new(), &config.frontends)?;
        let table = Table::build(config, &registry);
        let rt = Runtime::new(table, registry, max_connections);
        let first_events = Mutex::new(Some(rt.events.subscribe()));
        let proxy = Self {
            rt,
            health: Supervisor::default(),
            listeners: Mutex::new(HashMap::new()),
            closing: closing::Closing::default(),
            l4: Arc::default(),
            first_events,
        };
        let table = proxy.rt.table.load_full();
        proxy.apply_limits(&table);
        let l4_bound = proxy.l4.bind_new(&virtual_servers)?;
        proxy.start_listeners(bound_frontends);
        proxy.l4.apply(&proxy.rt, virtual_servers, l4_bound);
        proxy.health.reconcile(&proxy.rt, &table);
        Ok(proxy)
    }

    /// Swaps in `config`: new listeners are bound first (on failure nothing changes, the
    /// servers' runtime state included), then the table is built against the running state and
    /// swapped, removed listeners stop accepting, and health checks follow the change. Requests
    /// in flight finish on the table they started with.
    pub fn reload(&self, mut config: Config) -> Result<(), Error> {
        let virtual_servers = take_virtual_servers(&mut config);
        let max_connections = config.max_connections;
        let bound = match self.listeners.lock() {
            Ok(running) => bind_new(&running, &config.frontends)?,
            Err(_) => Vec::new(),
        };
        let l4_bound = self.l4.bind_new(&virtual_servers)?;
        // Only now: building the table applies the file's weights and MAINT states to the
        // running servers and replaces those whose address changed.
        let table = Arc::new(Table::build(config, &self.rt.registry));
        // Listeners are handed to their new frontends before the table that has them is
        // stored, so a request that sees the new table sees the new name (see
        // `l7::frontend_name`).
        self.hand_over(&table);
        self.rt.table.store(Arc::clone(&table));
        self.rt.set_max_connections(max_connections);
        self.apply_limits(&table);
        self.start_listeners(bound);
        self.stop_removed(&table);
        self.health.reconcile(&self.rt, &table);
        self.l4.apply(&self.rt, virtual_servers, l4_bound);
        let cfg = &table.config;
        self.rt.registry.retain(
            |b, s| {
                cfg.backend(b)
                    .is_some_and(|b| b.servers.iter().any(|x| x.name == s))
            },
            |b| cfg.backend(b).is_some(),
            |f| cfg.frontend(f).is_some(),
        );
        let _ = self.rt.events.send(Event::Reloaded);
        Ok(())
    }

    /// Receives every [`Event`] from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.rt.events.subscribe()
    }

    /// Receives every [`Event`] since the proxy started, its first health verdicts included,
    /// for the first caller (the alerts, which start after the rest of the appliance); from
    /// now on for any later one.
    pub fn events_since_start(&self) -> broadcast::Receiver<Event> {
        let first = self.first_events.lock().ok().and_then(|mut f| f.take());
        first.unwrap_or_else(|| self.subscribe())
    }

    /// The listeners running now.
    pub fn listeners(&self) -> Vec<Listener> {
        let Ok(listeners) = self.listeners.lock() else {
            return Vec::new();
        };
        let mut out: Vec<_> = listeners
            .iter()
            .map(|(key, l)| Listener {
                frontend: l.frontend.current().to_string(),
                configured: key.addr(),
                bound: l.bound,
            })
            .collect();
        out.sort_by(|a, b| (&a.frontend, a.configured).cmp(&(&b.frontend, b.configured)));
        out
    }

    /// The L4 tier now: every virtual service with its real servers and connections.
    pub fn l4_status(&self) -> Vec<l4::status::ServiceStatus> {
        self.l4
            .services()
            .iter()
            .map(|(service, bound)| l4::status::snapshot(service, *bound))
            .collect()
    }

    /// HAProxy's stats now: every frontend (one `FRONTEND` row), every backend in config order
    /// (a row per server, then its `BACKEND` row), then every L4 virtual service (a row per real
    /// server, named by its address, then its `BACKEND` row). Counters are folded from their
    /// per-thread shards; `rate` and `rate_max` are left at 0 for the caller to sample.
    pub fn stats(&self) -> Vec<ProxyStats> {
        stats::collect(&self.rt, &self.l4)
            .into_iter()
            .map(|p| p.stats)
            .collect()
    }

    /// Carries out an operator's `action` on `server`, an L7 backend's server by name or an L4
    /// virtual service's real server by address: admin state (`ready`/`drain`/`maint`, with an
    /// [`Event::ServerStatus`] when the status changes), weight, health checks off and on
    /// (HAProxy's `disable health`: no checks and the server counts as UP, `no check`; `enable
    /// health` starts the rise/fall count from HAProxy's start-up state), or shutting every
    /// session it serves down. Returns what changed, as `web/s1: UP -> DRAIN`.
    pub fn server_action(
        &self,
        server: &ServerRef,
        action: ServerAction,
    ) -> Result<String, ActionError> {
        action::apply(&self.rt, &self.l4, server, action)
    }

    /// Registers a collector that builds the `fulcrum_*` metric families at every scrape from
    /// the same numbers as [`Self::stats`]. Once per registry: a second time is an error.
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        let collector = metrics::ProxyCollector::new(Arc::clone(&self.rt), Arc::clone(&self.l4))?;
        registry.register(Box::new(collector))
    }

    /// Client connections open now.
    pub fn connections(&self) -> usize {
        self.rt.active.get() as usize
    }

    /// Says the stop's grace period is over: what is still open is closed now, by Fulcrum,
    /// and an HTTP/2 request cut so is logged as killed (`K`).
    pub fn hard_stop(&self) {
        l7::log::hard_stop();
    }

    /// Stops accepting, lets requests in flight finish for up to `grace`, closes idle keep-alive
    /// connections at once. Returns whether every connection finished in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        if let Ok(mut listeners) = self.listeners.lock() {
            for (_, l) in listeners.drain() {
                l.stop.cancel();
            }
        }
        self.health.stop();
        self.l4.stop();
        self.rt.shutdown.cancel();
        self.rt.connections.close();
        tokio::time::timeout(grace, self.rt.connections.wait())
            .await
            .is_ok()
    }

    fn apply_limits(&self, table: &Table) {
        for (fe, entry) in table.config.frontends.iter().zip(&table.frontends) {
            entry.state.limit.set_max(fe.max_connections);
        }
    }

    /// Starts serving the addresses [`bind_new`] bound for the new config (those the running
    /// listeners lack).
    fn start_listeners(&self, bound: Vec<(ListenKey, String, TcpListener)>) {
        let Ok(mut listeners) = self.listeners.lock() else {
            return;
        };
        for (key, frontend, listener) in bound {
            let local = listener.local_addr().unwrap_or(key.addr());
            tracing::info!(%frontend, addr = %local, "listening");
            let stop = CancellationToken::new();
            let frontend = Arc::new(l7::listener::ListenerFrontend::new(frontend));
            let task = tokio::spawn(l7::listener::accept_loop(
                Arc::clone(&self.rt),
                Arc::clone(&frontend),
                listener,
                stop.clone(),
            ));
            listeners.insert(
                key,
                RunningListener {
                    bound: local,
                    frontend,
                    stop,
                    task,
                },
            );
        }
    }

    /// Points the running listeners at the frontend of `table` that binds their address, where
    /// that is another frontend now.
    fn hand_over(&self, table: &Table) {
        let wanted = bound_frontends(table);
        let Ok(listeners) = self.listeners.lock() else {
            return;
        };
        for (key, l) in listeners.iter() {
            if let Some(frontend) = wanted.get(key)
                && l.frontend.current().as_str() != *frontend
            {
                tracing::info!(from = %l.frontend.current(), to = %frontend, addr = %l.bound, "listener handed to another frontend");
                l.frontend.hand_to(frontend);
            }
        }
    }

    /// Stops listeners no frontend of `table` binds any more.
    fn stop_removed(&self, table: &Table) {
        let wanted = bound_frontends(table);
        let Ok(mut listeners) = self.listeners.lock() else {
            return;
        };
        for (_, l) in listeners.extract_if(|key, _| !wanted.contains_key(key)) {
            tracing::info!(frontend = %l.frontend.current(), addr = %l.bound, "listener closed");
            l.stop.cancel();
            self.closing.add(l.task);
        }
    }

    /// Waits until the sockets of the listeners and virtual services that reloads removed are
    /// closed: a reload's [`reload`](Self::reload) returns once they are told to stop, and
    /// their addresses are free a moment later. Whatever binds one next waits for this first.
    pub async fn released(&self) {
        self.closing.wait().await;
        self.l4.closing.wait().await;
    }
}

/// Each address `table`'s frontends bind, with the frontend that binds it.
fn bound_frontends(table: &Table) -> HashMap<ListenKey, &str> {
    table
        .config
        .frontends
        .iter()
        .flat_map(|fe| {
            fe.binds
                .iter()
                .map(|a| (ListenKey::new(&fe.name, *a), fe.name.as_str()))
        })
        .collect()
}

/// Moves the virtual services out of `config`: the L4 tier keeps them, the L7 table the rest.
fn take_virtual_servers(config: &mut Config) -> Vec<Arc<config::VirtualServer>> {
    std::mem::take(&mut config.virtual_servers)
        .into_iter()
        .map(Arc::new)
        .collect()
}

/// Binds the addresses of `frontends` that are not among the `running` listeners.
fn bind_new<V>(
    running: &HashMap<ListenKey, V>,
    frontends: &[config::Frontend],
) -> Result<Vec<(ListenKey, String, TcpListener)>, Error> {
    let mut bound = Vec::new();
    for fe in frontends {
        for addr in &fe.binds {
            let key = ListenKey::new(&fe.name, *addr);
            if running.contains_key(&key) {
                continue;
            }
            let listener = l7::listener::bind(*addr).map_err(|source| Error::Bind {
                frontend: fe.name.clone(),
                addr: *addr,
                source,
            })?;
            bound.push((key, fe.name.clone(), listener));
        }
    }
    Ok(bound)
}
