//! The L4 tier's life cycle: binding each virtual service's address, starting its accept loop or
//! datagram relay, applying a reload (a service keeps running, counters, scheduler state and
//! connections included, when its name and address stay), and its health checks.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use dashmap::DashMap;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::service::{Members, Real, Service};
use crate::{
    Error,
    closing::Closing,
    config::{L4Protocol, VirtualServer},
    health::{self, Supervisor, Target},
    runtime::Runtime,
};

/// A socket bound for a virtual service, not serving yet.
#[derive(Debug)]
pub(crate) enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Bound {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr(),
            Self::Udp(s) => s.local_addr(),
        }
    }
}

#[derive(Debug)]
struct Running {
    service: Arc<Service>,
    /// The configured address and protocol: a reload that changes either starts anew.
    listen: (SocketAddr, L4Protocol),
    bound: SocketAddr,
    stop: CancellationToken,
    /// The accept loop or datagram reader, which owns the socket.
    task: JoinHandle<()>,
}

/// Every virtual service running, by name.
#[derive(Debug, Default)]
pub(crate) struct Tier {
    running: Mutex<HashMap<String, Running>>,
    /// Real server state by service and address, kept across reloads.
    reals: DashMap<(String, SocketAddr), Arc<Real>>,
    health: Supervisor,
    /// The services reloads removed or moved, until their sockets are closed.
    pub(crate) closing: Closing,
}

impl Tier {
    /// Binds the addresses of the services in `wanted` that are new or moved; nothing is started,
    /// so a failure leaves the running tier as it was.
    pub(crate) fn bind_new(
        &self,
        wanted: &[Arc<VirtualServer>],
    ) -> Result<Vec<(String, Bound)>, Error> {
        let Ok(running) = self.running.lock() else {
            return Ok(Vec::new());
        };
        let mut bound = Vec::new();
        for vs in wanted {
            if running
                .get(&vs.name)
                .is_some_and(|r| r.listen == (vs.listen, vs.protocol))
            {
                continue;
            }
            let socket = match vs.protocol {
                L4Protocol::Tcp => crate::l7::listener::bind(vs.listen).map(Bound::Tcp),
                L4Protocol::Udp => super::udp::bind(vs.listen).map(Bound::Udp),
            };
            let socket = socket.map_err(|source| Error::BindVirtualServer {
                name: vs.name.clone(),
                addr: vs.listen,
                source,
            })?;
            bound.push((vs.name.clone(), socket));
        }
        Ok(bound)
    }

    /// Makes the running services `wanted`: updates the ones kept, starts the ones in `bound`,
    /// stops the rest (their established connections go on), and follows with health checks.
    pub(crate) fn apply(
        &self,
        rt: &Arc<Runtime>,
        wanted: Vec<Arc<VirtualServer>>,
        bound: Vec<(String, Bound)>,
    ) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        let mut bound: HashMap<String, Bound> = bound.into_iter().collect();
        let mut next = HashMap::new();
        for vs in &wanted {
            let members = self.members(vs);
            if let Some(socket) = bound.remove(&vs.name) {
                if let Some(old) = running.remove(&vs.name) {
                    tracing::info!(virtual_server = %vs.name, addr = %old.bound, "virtual service moved");
                    old.stop.cancel();
                    self.closing.add(old.task);
                }
                let service = Arc::new(Service::new(Arc::clone(vs), members));
                next.insert(vs.name.clone(), start(rt, service, vs, socket));
            } else if let Some(kept) = running.remove(&vs.name) {
                kept.service.apply(Arc::clone(vs), members);
                next.insert(vs.name.clone(), kept);
            }
        }
        for (name, old) in running.drain() {
            tracing::info!(virtual_server = %name, addr = %old.bound, "virtual service closed");
            old.stop.cancel();
            self.closing.add(old.task);
        }
        *running = next;
        // A real server still carrying connections keeps its state even when this reload
        // removed it: re-added by a later one, it must not come back counting none of them
        // (IPVS keeps such a dest in its trash, counters and all).
        self.reals.retain(|(name, addr), real| {
            Arc::strong_count(real) > 1
                || wanted.iter().any(|vs| vs.name == *name && uses(vs, *addr))
        });
        self.reconcile_health(rt, &wanted);
    }

    /// Stops accepting on every service and stops the health checks.
    pub(crate) fn stop(&self) {
        if let Ok(mut running) = self.running.lock() {
            for (_, r) in running.drain() {
                r.stop.cancel();
            }
        }
        self.health.stop();
    }

    /// The services running now, with the address each is bound to, sorted by name.
    pub(crate) fn services(&self) -> Vec<(Arc<Service>, SocketAddr)> {
        let Ok(running) = self.running.lock() else {
            return Vec::new();
        };
        let mut out: Vec<_> = running
            .values()
            .map(|r| (Arc::clone(&r.service), r.bound))
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }

    /// The runtime state of `vs`'s real servers (and fallback), reusing what a previous
    /// generation had for the same address.
    fn members(&self, vs: &VirtualServer) -> Members {
        let real = |addr: SocketAddr, weight: u32| {
            let entry = self
                .reals
                .entry((vs.name.clone(), addr))
                .or_insert_with(|| Arc::new(Real::new(&vs.name, addr, weight)));
            Arc::clone(&entry)
        };
        Members {
            servers: vs
                .real_servers
                .iter()
                .map(|rs| {
                    let r = real(rs.addr, rs.weight);
                    r.server.apply_config(rs.weight, false);
                    (r, rs.upper_threshold)
                })
                .collect(),
            // The weight a fallback always has, whatever the address had as a real server.
            fallback: vs.fallback.map(|addr| {
                let r = real(addr, 1);
                r.server.apply_config(1, false);
                r
            }),
        }
    }

    fn reconcile_health(&self, rt: &Arc<Runtime>, wanted: &[Arc<VirtualServer>]) {
        let mut targets = Vec::new();
        for vs in wanted {
            // A fallback is not checked: an address that was a real server, and DOWN, is
            // healthy again as the fallback (its check task goes with the targets below).
            if let Some(fallback) = vs.fallback
                && let Some(real) = self.reals.get(&(vs.name.clone(), fallback))
            {
                health::follow_config(rt, &real.server, None, None);
            }
            for rs in &vs.real_servers {
                let Some(real) = self
                    .reals
                    .get(&(vs.name.clone(), rs.addr))
                    .map(|r| Arc::clone(&r))
                else {
                    continue;
                };
                let (check, agent) = (vs.check.as_ref(), vs.agent.as_ref());
                if !health::follow_config(rt, &real.server, check, agent) {
                    continue;
                }
                targets.push(Target {
                    key: (format!("virtual_server {}", vs.name), rs.addr.to_string()),
                    addr: health::probed(rs.addr, check),
                    listener: Some(vs.listen),
                    agent_addr: rs.agent_addr,
                    check: vs.check.clone(),
                    agent: vs.agent.clone(),
                    state: Arc::clone(&real.server),
                    // A virtual service has no backups, only a fallback.
                    backups: Vec::new(),
                });
            }
        }
        self.health.reconcile_targets(rt, targets);
    }
}

/// Whether `addr` is one of `vs`'s real servers or its fallback.
fn uses(vs: &VirtualServer, addr: SocketAddr) -> bool {
    vs.fallback == Some(addr) || vs.real_servers.iter().any(|rs| rs.addr == addr)
}

fn start(rt: &Arc<Runtime>, service: Arc<Service>, vs: &VirtualServer, socket: Bound) -> Running {
    let bound = socket.local_addr().unwrap_or(vs.listen);
    let stop = CancellationToken::new();
    tracing::info!(virtual_server = %vs.name, protocol = vs.protocol.name(), addr = %bound, scheduler = vs.scheduler.name(), "listening");
    let task = match socket {
        Bound::Tcp(listener) => tokio::spawn(super::tcp::accept_loop(
            Arc::clone(rt),
            Arc::clone(&service),
            listener,
            stop.clone(),
        )),
        Bound::Udp(socket) => tokio::spawn(super::udp::serve(
            Arc::clone(rt),
            Arc::clone(&service),
            socket,
            stop.clone(),
        )),
    };
    Running {
        service,
        listen: (vs.listen, vs.protocol),
        bound,
        stop,
        task,
    }
}
