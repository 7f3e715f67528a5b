//! One virtual service at run time: its config, its real servers' state, its scheduler and
//! persistence templates, and the connections it carries; and the decision that picks a real
//! server for a new client, the way IPVS makes it.
//!
//! A decision: a live persistence template wins if its server is still in the service (a
//! quiescent server with weight 0 keeps its persistent clients, as in IPVS); otherwise the
//! scheduler picks among the servers in the service, with weight 0 for any that is not UP
//! (quiescent) or without the DOWN ones (`quiescent = false`); if it finds none, the fallback.
//! The scheduler and the templates sit behind one mutex per service: a decision is a few hundred
//! nanoseconds and only new connections take it.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use dashmap::DashMap;

use super::{
    persist::Persistence,
    sched::{Dest, Packet, Scheduler},
};
use crate::{
    config::{L4Protocol, VirtualServer},
    state::{
        Availability, BackendCounters, ServerState, ServerStatus,
        counters::{self, Total},
        unix_millis,
    },
};

/// A real server's state, kept across reloads by virtual service and address.
#[derive(Debug)]
pub(crate) struct Real {
    /// Health, admin state, weight and counters, as for L7 servers; `counters.sessions` is the
    /// number of connections relayed (UDP: flows), half-closed ones included.
    pub(crate) server: Arc<ServerState>,
    /// Connections being opened to it.
    pub(crate) connecting: AtomicU32,
    /// Relayed connections one side has closed (sent its FIN), which IPVS counts inactive.
    pub(crate) half_closed: Arc<AtomicU32>,
    /// Above its upper threshold, and not yet back below the lower one.
    overloaded: AtomicBool,
    /// The upper threshold the overload flag was last judged against.
    upper: AtomicU32,
}

impl Real {
    pub(crate) fn new(service: &str, addr: SocketAddr, weight: u32) -> Self {
        let name = addr.to_string();
        Self {
            server: Arc::new(
                ServerState::new(service, &name, addr, weight, 0).with_weight_max(65_535),
            ),
            connecting: AtomicU32::new(0),
            half_closed: Arc::default(),
            overloaded: AtomicBool::new(false),
            upper: AtomicU32::new(0),
        }
    }

    /// IPVS's overload flag with its hysteresis (`ip_vs_dest_totalconns` against `u_threshold`
    /// and `l_threshold`): set at `upper` connections, cleared only below three quarters of it,
    /// the kernel's lower threshold when none is set (`ip_vs_unbind_dest`: `conns * 4 <
    /// u_threshold * 3`, in 64 bits here so that no threshold overflows). So a server at its
    /// limit does not flip with every connection that opens or closes. A threshold raised or
    /// removed (a reload) clears the flag, as `__ip_vs_update_dest` does.
    fn overloaded(&self, connections: u32, upper: u32) -> bool {
        // Read, and written only when it changed: this runs for every server at every
        // decision, and a write each time would bounce the line between the cores.
        let previous = self.upper.load(Relaxed);
        if previous != upper {
            self.upper.store(upper, Relaxed);
            if upper == 0 || upper > previous {
                self.overloaded.store(false, Relaxed);
            }
        }
        if upper == 0 {
            return false;
        }
        let (conns, upper) = (u64::from(connections), u64::from(upper));
        let was = self.overloaded.load(Relaxed);
        let now = if was {
            conns * 4 >= upper * 3
        } else {
            conns >= upper
        };
        if now != was {
            self.overloaded.store(now, Relaxed);
        }
        now
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// IPVS's ActiveConn and InActConn, as the kernel's connection states make them
    /// (`tcp_state_active_table` in ip_vs_proto_tcp.c): a TCP connection is active from its
    /// first packet (SYN_RECV, SYN_SENT, ESTABLISHED) until either side sends its FIN, then
    /// inactive (FIN_WAIT, CLOSE_WAIT) until it closes. A UDP flow is inactive throughout: IPVS
    /// makes every entry inactive and its UDP states never change that. (IPVS also keeps a
    /// closed TCP connection inactive through TIME_WAIT, two minutes; Fulcrum forgets it.)
    pub(crate) fn connections(&self, protocol: L4Protocol) -> (u32, u32) {
        let relayed = self.server.active();
        match protocol {
            L4Protocol::Udp => (0, relayed),
            L4Protocol::Tcp => {
                let half_closed = self.half_closed.load(Relaxed).min(relayed);
                let active = relayed - half_closed + self.connecting.load(Relaxed);
                (active, half_closed)
            }
        }
    }

    /// The weight the scheduler sees: the set weight while UP, 0 otherwise (quiescent).
    pub(crate) fn effective_weight(&self) -> u32 {
        if self.server.status() == ServerStatus::Up {
            self.server.weight()
        } else {
            0
        }
    }

    /// Whether the server is in the service at all: with `quiescent = false` a DOWN server is
    /// taken out, as ldirectord removes it.
    pub(crate) fn in_service(&self, quiescent: bool) -> bool {
        quiescent || self.server.status() != ServerStatus::Down
    }
}

/// The real servers of one generation of the config, in config order.
#[derive(Debug)]
pub(crate) struct Members {
    pub(crate) servers: Vec<(Arc<Real>, u32)>,
    pub(crate) fallback: Option<Arc<Real>>,
}

impl Members {
    /// Every real server, the fallback last: `(real, fallback, upper threshold)`, the fallback's
    /// threshold 0 (none).
    pub(crate) fn reals(&self) -> impl Iterator<Item = (&Arc<Real>, bool, u32)> {
        self.servers
            .iter()
            .map(|(r, threshold)| (r, false, *threshold))
            .chain(self.fallback.iter().map(|r| (r, true, 0)))
    }

    /// Every real server's state, the fallback's last.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<ServerState>> {
        self.reals().map(|(r, _, _)| &r.server)
    }

    /// The real server (or fallback) at `addr`.
    pub(crate) fn find(&self, addr: SocketAddr) -> Option<&Arc<Real>> {
        self.reals().map(|(r, _, _)| r).find(|r| r.addr() == addr)
    }
}

/// What the scheduler saw last, so a change in servers or effective weights rebuilds its tables.
type Signature = Vec<(SocketAddr, u32)>;

#[derive(Debug)]
struct Decider {
    scheduler: Scheduler,
    signature: Signature,
    persistence: Persistence,
}

/// A connection's entry in the table `fulcrum status l4 --connections` lists.
#[derive(Debug, Clone)]
pub(crate) struct ConnEntry {
    pub(crate) client: SocketAddr,
    pub(crate) virtual_addr: SocketAddr,
    pub(crate) real: SocketAddr,
    pub(crate) established: bool,
    pub(crate) since: Instant,
}

/// A running virtual service.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) name: String,
    config: ArcSwap<VirtualServer>,
    members: ArcSwap<Members>,
    decider: Mutex<Decider>,
    /// Open connections (TCP) or flows (UDP), by id.
    pub(crate) conns: DashMap<u64, ConnEntry>,
    next_conn: AtomicU64,
    /// Connections refused because no real server (and no fallback) was available.
    pub(crate) no_server: AtomicU64,
    /// UDP datagrams dropped because the new flow they would open was over
    /// `[global] max_connections`.
    pub(crate) flows_refused: AtomicU64,
    /// The service's own counts, as a backend's: connections open and in all, bytes, errors.
    pub(crate) counters: BackendCounters,
    /// UP while any real server (or the fallback) takes new clients.
    pub(crate) availability: Arc<Availability>,
    /// Woken when a reload swaps the config in, for what depends on it while a connection
    /// lives (`quiescent`).
    pub(crate) reconfigured: tokio::sync::Notify,
    epoch: Instant,
}

/// The outcome of a decision: the real server, and what must be undone when the connection ends.
#[derive(Debug)]
pub(crate) struct Pick {
    pub(crate) real: Arc<Real>,
    /// The client's template key (its address, masked by `persistence_netmask`) and the
    /// template's generation, when persistence counted this connection.
    persistent: Option<(IpAddr, u64)>,
}

impl Service {
    pub(crate) fn new(config: Arc<VirtualServer>, members: Members) -> Self {
        let scheduler = new_scheduler(&config);
        let availability = Arc::new(Availability::default());
        availability.set_members(members.all());
        Self {
            name: config.name.clone(),
            decider: Mutex::new(Decider {
                scheduler,
                signature: Vec::new(),
                persistence: Persistence::new(config.persistence),
            }),
            config: ArcSwap::new(config),
            members: ArcSwap::from_pointee(members),
            conns: DashMap::new(),
            next_conn: AtomicU64::new(0),
            no_server: AtomicU64::new(0),
            flows_refused: AtomicU64::new(0),
            counters: BackendCounters::default(),
            availability,
            reconfigured: tokio::sync::Notify::new(),
            epoch: Instant::now(),
        }
    }

    pub(crate) fn config(&self) -> Arc<VirtualServer> {
        self.config.load_full()
    }

    pub(crate) fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    /// Swaps in a reloaded config: the scheduler is rebuilt only if its kind or options changed,
    /// so round-robin order, hash tables and locality caches survive an unrelated edit.
    pub(crate) fn apply(&self, config: Arc<VirtualServer>, members: Members) {
        if let Ok(mut d) = self.decider.lock() {
            if d.scheduler.kind() != config.scheduler
                || d.scheduler.options() != config.scheduler_options
            {
                let previous = std::mem::replace(&mut d.scheduler, new_scheduler(&config));
                d.scheduler.carry_over(&previous);
                d.signature.clear();
            }
            d.persistence.set_timeout(config.persistence);
        }
        self.availability.set_members(members.all());
        self.members.store(Arc::new(members));
        self.config.store(config);
        self.reconfigured.notify_waiters();
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Picks the real server for a new connection from `client` to `destination`; None when no
    /// server is available and there is no fallback (IPVS then drops the connection).
    pub(crate) fn pick(&self, client: SocketAddr, destination: SocketAddr) -> Option<Pick> {
        let config = self.config.load();
        let members = self.members.load();
        let now = self.now();
        let persistent = !config.persistence.is_zero();
        let key = config.persistence_granularity.key(client.ip());
        let Ok(mut decider) = self.decider.lock() else {
            return None;
        };
        if persistent
            && let Some(addr) = decider.persistence.lookup(key, now)
            && let Some((real, _)) = members.servers.iter().find(|(r, _)| r.addr() == addr)
            && real.in_service(config.quiescent)
            && real.server.status() != ServerStatus::Maint
        {
            let generation = decider.persistence.open(key, addr, now);
            return Some(self.picked(real, Some((key, generation))));
        }
        let mut in_service = smallvec::SmallVec::<[&Arc<Real>; 16]>::new();
        let mut dests = smallvec::SmallVec::<[Dest; 16]>::new();
        for (real, upper_threshold) in &members.servers {
            if !real.in_service(config.quiescent) {
                continue;
            }
            let (active, inactive) = real.connections(config.protocol);
            in_service.push(real);
            dests.push(Dest {
                addr: real.addr(),
                weight: real.effective_weight(),
                active,
                inactive,
                // An agent's `maxconn:N` stands in for the configured threshold.
                overloaded: real.overloaded(
                    active.saturating_add(inactive),
                    real.server.max_connections(*upper_threshold),
                ),
            });
        }
        let signature_changed = decider.signature.len() != dests.len()
            || decider
                .signature
                .iter()
                .zip(&dests)
                .any(|(s, d)| *s != (d.addr, d.weight));
        if signature_changed {
            decider.signature = dests.iter().map(|d| (d.addr, d.weight)).collect();
            decider.scheduler.update(&dests);
        }
        let packet = Packet {
            client,
            destination,
        };
        match decider.scheduler.schedule(&dests, &packet, now) {
            Some(i) => {
                let real = in_service[i];
                let counted = persistent.then(|| {
                    let generation = decider.persistence.open(key, real.addr(), now);
                    (key, generation)
                });
                real.server.counters.totals.inc(Total::LoadBalanced);
                self.counters.totals.inc(Total::LoadBalanced);
                Some(self.picked(real, counted))
            }
            None => {
                drop(decider);
                match &members.fallback {
                    Some(fallback) => Some(self.picked(fallback, None)),
                    None => {
                        counters::inc(&self.no_server);
                        None
                    }
                }
            }
        }
    }

    fn picked(&self, real: &Arc<Real>, persistent: Option<(IpAddr, u64)>) -> Pick {
        Pick {
            real: Arc::clone(real),
            persistent,
        }
    }

    /// Ends what [`Self::pick`] started for a connection now closed.
    pub(crate) fn release(&self, pick: &Pick) {
        if let Some((key, generation)) = pick.persistent
            && let Ok(mut d) = self.decider.lock()
        {
            let now = self.now();
            d.persistence.close(key, generation, now);
        }
    }

    /// Counts `n` of `total` for `real` and for the service as a whole.
    pub(crate) fn count(&self, real: &Real, total: Total, n: u64) {
        real.server.counters.totals.add(total, n);
        self.counters.totals.add(total, n);
    }

    /// Counts a connection (UDP: a flow) to `real` established now, for it and for the service.
    pub(crate) fn session_opened(&self, real: &Real) {
        let now = unix_millis();
        real.server.counters.sessions.up();
        real.server.counters.totals.session_started(now);
        self.counters.sessions.up();
        self.counters.totals.session_started(now);
    }

    /// Counts a connection (UDP: a flow) to `real` ended, for it and for the service.
    pub(crate) fn session_closed(&self, real: &Real) {
        real.server.counters.sessions.down();
        self.counters.sessions.down();
    }

    /// Persistence templates alive now.
    pub(crate) fn persistent_clients(&self) -> usize {
        let now = self.now();
        self.decider
            .lock()
            .map(|d| d.persistence.len(now))
            .unwrap_or(0)
    }

    /// Lists a new connection; it leaves the list when the returned guard drops.
    pub(crate) fn track(&self, entry: ConnEntry) -> ConnGuard<'_> {
        let id = self.next_conn.fetch_add(1, Relaxed);
        self.conns.insert(id, entry);
        ConnGuard { service: self, id }
    }
}

fn new_scheduler(config: &VirtualServer) -> Scheduler {
    // Only an `mh` table size that is not a prime in range fails, and the config builder
    // refuses those.
    Scheduler::new(config.scheduler, config.scheduler_options)
        .expect("the config builder validated the scheduler options")
}

/// Removes a connection from its service's list when dropped.
#[derive(Debug)]
pub(crate) struct ConnGuard<'a> {
    service: &'a Service,
    id: u64,
}

impl ConnGuard<'_> {
    pub(crate) fn established(&self) {
        if let Some(mut e) = self.service.conns.get_mut(&self.id) {
            e.established = true;
        }
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.service.conns.remove(&self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::config::{L4Protocol, ProxyProtocol};
    use crate::l4::sched::{Kind, Options};

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 80))
    }

    fn client(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 40_000))
    }

    fn config(kind: Kind, persistence: u64, quiescent: bool) -> Arc<VirtualServer> {
        Arc::new(VirtualServer {
            name: "vs".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 80)),
            protocol: L4Protocol::Tcp,
            scheduler: kind,
            scheduler_options: Options::default(),
            persistence: Duration::from_secs(persistence),
            persistence_granularity: Default::default(),
            quiescent,
            proxy_protocol: ProxyProtocol::None,
            transparent: false,
            check: None,
            agent: None,
            timeout_connect: Duration::from_secs(5),
            timeout_idle: Duration::from_secs(60),
            fallback: None,
            real_servers: Vec::new(),
        })
    }

    fn members(servers: &[u8], fallback: Option<u8>) -> Members {
        Members {
            servers: servers
                .iter()
                .map(|&i| (Arc::new(Real::new("vs", addr(i), 1)), 0))
                .collect(),
            fallback: fallback.map(|i| Arc::new(Real::new("vs", addr(i), 1))),
        }
    }

    fn pick(s: &Service, from: SocketAddr) -> Option<SocketAddr> {
        s.pick(from, SocketAddr::from(([127, 0, 0, 1], 80)))
            .map(|p| p.real.addr())
    }

    #[test]
    fn rr_alternates_and_skips_a_down_server_with_weight_zero() {
        let s = Service::new(config(Kind::Rr, 0, true), members(&[1, 2], None));
        let picks: Vec<_> = (0..4).map(|_| pick(&s, client(1)).unwrap()).collect();
        assert_eq!(picks, [addr(1), addr(2), addr(1), addr(2)]);
        s.members().servers[0].0.server.set_healthy(false);
        let picks: Vec<_> = (0..3).map(|_| pick(&s, client(1)).unwrap()).collect();
        assert_eq!(picks, [addr(2); 3], "a weight change reaches the scheduler");
    }

    #[test]
    fn persistence_keeps_a_client_on_a_quiescent_server_but_not_a_removed_one() {
        let s = Service::new(config(Kind::Rr, 300, true), members(&[1, 2], None));
        let first = pick(&s, client(7)).unwrap();
        for _ in 0..5 {
            assert_eq!(pick(&s, client(7)), Some(first), "rr alone would alternate");
        }
        let first_real = s
            .members()
            .servers
            .iter()
            .find(|(r, _)| r.addr() == first)
            .map(|(r, _)| Arc::clone(r))
            .unwrap();
        first_real.server.set_healthy(false);
        assert_eq!(
            pick(&s, client(7)),
            Some(first),
            "quiescent: the template holds"
        );
        assert_ne!(pick(&s, client(8)), Some(first), "new clients go elsewhere");

        let s = Service::new(config(Kind::Rr, 300, false), members(&[1, 2], None));
        let first = pick(&s, client(7)).unwrap();
        let real = s
            .members()
            .servers
            .iter()
            .find(|(r, _)| r.addr() == first)
            .map(|(r, _)| Arc::clone(r))
            .unwrap();
        real.server.set_healthy(false);
        assert_ne!(
            pick(&s, client(7)),
            Some(first),
            "not quiescent: removed, rescheduled"
        );
    }

    #[test]
    fn the_fallback_answers_only_while_no_server_is_available() {
        let s = Service::new(config(Kind::Wlc, 0, true), members(&[1, 2], Some(9)));
        assert_ne!(pick(&s, client(1)), Some(addr(9)));
        for (real, _) in &s.members().servers {
            real.server.set_healthy(false);
        }
        assert_eq!(pick(&s, client(1)), Some(addr(9)));
        s.members().servers[1].0.server.set_healthy(true);
        assert_eq!(pick(&s, client(1)), Some(addr(2)));

        let s = Service::new(config(Kind::Wlc, 0, true), members(&[1], None));
        s.members().servers[0].0.server.set_healthy(false);
        assert_eq!(pick(&s, client(1)), None);
        assert_eq!(s.no_server.load(Relaxed), 1);
    }

    // Input: a real server overloaded at its threshold of 100, then the threshold raised to
    // 120 (a reload) with the same 100 connections; then, overloaded at 120, the threshold
    // removed and set again. Output: not overloaded after the raise, nor after the removal,
    // as the kernel clears the flag on either. (It stayed overloaded until the connections
    // fell below 90, three quarters of the new threshold.)
    #[test]
    fn raising_or_removing_the_threshold_clears_the_overload() {
        let real = Real::new("vs", addr(1), 1);
        assert!(real.overloaded(100, 100));
        assert!(!real.overloaded(100, 120));
        assert!(real.overloaded(120, 120));
        assert!(!real.overloaded(120, 0));
        assert!(!real.overloaded(100, 120));
        // Lowered, it holds: the kernel leaves the flag as it is.
        assert!(real.overloaded(120, 120));
        assert!(real.overloaded(100, 110));
    }

    // Input: a TCP real server with one connection being opened, two relayed of which one is
    // half-closed; the same counts read as UDP. Output: TCP active 2 (opening and established),
    // inactive 1 (half-closed); UDP active 0, inactive 2, as IPVS counts them.
    #[test]
    fn connections_are_counted_as_ipvs_counts_them() {
        let real = Real::new("vs", addr(1), 1);
        real.connecting.fetch_add(1, Relaxed);
        real.server.counters.sessions.up();
        real.server.counters.sessions.up();
        real.half_closed.fetch_add(1, Relaxed);
        assert_eq!(real.connections(L4Protocol::Tcp), (2, 1));
        real.connecting.fetch_sub(1, Relaxed);
        assert_eq!(real.connections(L4Protocol::Udp), (0, 2));
    }

    #[test]
    fn overload_holds_until_connections_drop_below_three_quarters() {
        let real = Real::new("vs", addr(1), 1);
        let seq: Vec<bool> = [7, 8, 7, 6, 5, 8]
            .into_iter()
            .map(|c| real.overloaded(c, 8))
            .collect();
        assert_eq!(seq, [false, true, true, true, false, true]);
        assert!(!real.overloaded(1_000, 0), "no threshold, never overloaded");
        // At 10 the kernel clears at 7 (28 < 30), where flooring 3/4 of 10 to 7 held it.
        let real = Real::new("vs", addr(2), 1);
        let seq: Vec<bool> = [10, 8, 7]
            .into_iter()
            .map(|c| real.overloaded(c, 10))
            .collect();
        assert_eq!(seq, [true, true, false]);
        // A threshold whose three quarters overflow 32 bits.
        let real = Real::new("vs", addr(3), 1);
        assert!(real.overloaded(u32::MAX, u32::MAX));
        assert!(real.overloaded(u32::MAX - 1, u32::MAX));
    }

    #[test]
    fn releasing_the_last_connection_starts_the_persistence_timeout() {
        let s = Service::new(config(Kind::Rr, 300, true), members(&[1, 2], None));
        let p = s.pick(client(3), addr(200)).unwrap();
        assert_eq!(s.persistent_clients(), 1);
        s.release(&p);
        assert_eq!(s.persistent_clients(), 1, "kept for the timeout");
    }
}
