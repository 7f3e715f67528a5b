//! Persistence, as `ipvsadm -p TIMEOUT`: a client address keeps the real server it was given
//! while it has connections through the service, and for `timeout` after its last one closes.
//!
//! IPVS keeps this in "persistence templates": one per client address (or per client network,
//! with `ipvsadm -M`: [`Granularity`]), counting the client's connections, expiring `timeout`
//! after the count drops to zero. This is the same bookkeeping,
//! pure and with time passed in, so it is tested without sockets or sleeps. Whether the
//! remembered server may still be used (IPVS: it is still in the service; a quiescent server with
//! weight 0 keeps its persistent clients) is the caller's call.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

/// Which clients share a template (`ipvsadm -M`, keepalived's `persistence_granularity`): those
/// whose addresses agree on the first `v4` bits (IPv4) or `v6` bits (IPv6). By default each
/// address is its own, 32 and 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granularity {
    pub v4: u8,
    pub v6: u8,
}

impl Default for Granularity {
    fn default() -> Self {
        Self { v4: 32, v6: 128 }
    }
}

impl Granularity {
    /// The netmask as `ipvsadm -L` shows it: `255.255.255.0` for IPv4 clients, a prefix length
    /// for IPv6 ones, both for a dual-stack service; none by default.
    pub(crate) fn as_written(self) -> Option<String> {
        let defaults = Self::default();
        let v4 = (self.v4 != defaults.v4).then(|| Ipv4Addr::from(self.v4_mask()).to_string());
        let v6 = (self.v6 != defaults.v6).then(|| self.v6.to_string());
        match (v4, v6) {
            (Some(v4), Some(v6)) => Some(format!("{v4} {v6}")),
            (one, other) => one.or(other),
        }
    }

    /// The IPv4 prefix as a mask: `v4` one bits, then zeros.
    fn v4_mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.v4.min(32)))
            .unwrap_or(0)
    }

    /// The template key of `client`: its address with the bits past the prefix cleared, as
    /// IPVS masks the source address (`ip_vs_sched_persist`).
    pub(crate) fn key(self, client: IpAddr) -> IpAddr {
        match client {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & self.v4_mask())),
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.v6.min(128)))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

/// How often at most expired templates are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One client's template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Template {
    server: SocketAddr,
    /// Which template this is for the client: a connection counted by an earlier one (to the
    /// same server or not) is not this one's to uncount, as IPVS ties a connection to its
    /// template object, not to its address.
    generation: u64,
    /// The client's connections through the service now.
    connections: u32,
    /// When `connections` last dropped to zero (meaningless while it is above zero).
    idle_since: Duration,
    /// How long it outlives its last connection: the service's timeout when a connection last
    /// opened it. A reload's new timeout applies from the next connection on, so that raising
    /// it does not bring back templates already expired (and not yet swept), nor lowering it
    /// end the others at once.
    timeout: Duration,
}

impl Template {
    fn alive(&self, now: Duration) -> bool {
        self.connections > 0 || now < self.idle_since + self.timeout
    }
}

/// The templates of one virtual service.
#[derive(Debug)]
pub(crate) struct Persistence {
    timeout: Duration,
    templates: HashMap<IpAddr, Template>,
    last_sweep: Duration,
    /// The generation the next new template takes.
    next_generation: u64,
}

impl Persistence {
    /// Templates that outlive their client's last connection by `timeout`.
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            templates: HashMap::new(),
            last_sweep: Duration::ZERO,
            next_generation: 0,
        }
    }

    /// The timeout of templates from their next connection on (a reload).
    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The server `client` is bound to at `now`, if its template is still alive.
    pub(crate) fn lookup(&self, client: IpAddr, now: Duration) -> Option<SocketAddr> {
        self.templates
            .get(&client)
            .filter(|t| t.alive(now))
            .map(|t| t.server)
    }

    /// Counts a new connection of `client` to `server`, binding the client to it (replacing a
    /// template for another server, which the caller found unusable). Returns the template's
    /// generation, for [`close`](Self::close).
    pub(crate) fn open(&mut self, client: IpAddr, server: SocketAddr, now: Duration) -> u64 {
        self.sweep(now);
        let fresh = Template {
            server,
            generation: self.next_generation,
            connections: 0,
            idle_since: now,
            timeout: self.timeout,
        };
        let template = self.templates.entry(client).or_insert(fresh);
        if template.server != server || !template.alive(now) {
            // The old server's connections still close later; they no longer count here.
            *template = fresh;
        }
        template.timeout = self.timeout;
        if template.generation == self.next_generation {
            self.next_generation += 1;
        }
        template.connections += 1;
        template.generation
    }

    /// Counts a connection of `client`, counted by the template of `generation`, as closed at
    /// `now`.
    pub(crate) fn close(&mut self, client: IpAddr, generation: u64, now: Duration) {
        if let Some(t) = self.templates.get_mut(&client)
            && t.generation == generation
            && t.connections > 0
        {
            t.connections -= 1;
            if t.connections == 0 {
                t.idle_since = now;
            }
        }
    }

    /// Templates alive now (`ipvsadm -L -c` lists them as `NONE` entries).
    pub(crate) fn len(&self, now: Duration) -> usize {
        self.templates.values().filter(|t| t.alive(now)).count()
    }

    /// Drops expired templates, at most once per [`SWEEP_EVERY`], so memory follows the clients
    /// of the last `timeout` only.
    fn sweep(&mut self, now: Duration) {
        if now < self.last_sweep + SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        self.templates.retain(|_, t| t.alive(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 80);
    const B: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)), 80);
    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    // Input: a template idle past its 60 s timeout (not swept yet), then the service's timeout
    // raised to an hour by a reload; another idle for 30 s, then the timeout lowered to 10 s.
    // Output: the first stays expired, the second lasts its own 60 s; a connection opened
    // after the reload takes the new timeout. (The first came back for an hour, the second
    // ended at once: every template read the service's current timeout.)
    #[test]
    fn a_template_keeps_the_timeout_it_was_given_until_its_next_connection() {
        const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 8));
        let mut p = Persistence::new(secs(60));
        let g = p.open(CLIENT, A, secs(0));
        p.close(CLIENT, g, secs(1));
        p.set_timeout(secs(3600));
        assert_eq!(
            p.lookup(CLIENT, secs(200)),
            None,
            "an expired template came back"
        );

        let mut p = Persistence::new(secs(60));
        let g = p.open(CLIENT, A, secs(0));
        p.close(CLIENT, g, secs(0));
        p.set_timeout(secs(10));
        assert_eq!(
            p.lookup(CLIENT, secs(30)),
            Some(A),
            "ended by the new timeout"
        );
        assert_eq!(p.lookup(CLIENT, secs(61)), None);
        let g = p.open(OTHER, B, secs(61));
        p.close(OTHER, g, secs(61));
        assert_eq!(p.lookup(OTHER, secs(70)), Some(B));
        assert_eq!(p.lookup(OTHER, secs(72)), None, "the new timeout is 10 s");
    }

    #[test]
    fn a_client_keeps_its_server_while_connected_and_for_the_timeout_after() {
        let mut p = Persistence::new(secs(300));
        assert_eq!(p.lookup(CLIENT, secs(0)), None);
        let g = p.open(CLIENT, A, secs(0));
        assert_eq!(
            p.lookup(CLIENT, secs(10_000)),
            Some(A),
            "held while connected"
        );
        p.close(CLIENT, g, secs(10_000));
        assert_eq!(p.lookup(CLIENT, secs(10_299)), Some(A));
        assert_eq!(p.lookup(CLIENT, secs(10_300)), None, "expired");
    }

    #[test]
    fn the_timeout_runs_from_the_last_connection_closing() {
        let mut p = Persistence::new(secs(60));
        let first = p.open(CLIENT, A, secs(0));
        let second = p.open(CLIENT, A, secs(1));
        assert_eq!(first, second, "one template");
        p.close(CLIENT, first, secs(2));
        assert_eq!(p.lookup(CLIENT, secs(100)), Some(A), "one still open");
        p.close(CLIENT, second, secs(100));
        assert_eq!(p.lookup(CLIENT, secs(159)), Some(A));
        assert_eq!(p.lookup(CLIENT, secs(160)), None);
    }

    #[test]
    fn rebinding_moves_the_client_and_ignores_the_old_servers_closes() {
        let mut p = Persistence::new(secs(60));
        let on_a = p.open(CLIENT, A, secs(0));
        p.open(CLIENT, B, secs(1));
        p.close(CLIENT, on_a, secs(2));
        assert_eq!(
            p.lookup(CLIENT, secs(1_000)),
            Some(B),
            "B's connection is open"
        );
    }

    // Input: a connection to A; A taken out, so the next goes to B; B taken out, so the next
    // goes back to A; then the first connection closes. Output: the client stays on A while the
    // third connection is open. (The first connection's close, to A as well, uncounted the
    // third's template, which then expired under it.)
    #[test]
    fn a_close_from_an_older_template_of_the_same_server_is_not_counted() {
        let mut p = Persistence::new(secs(60));
        let first = p.open(CLIENT, A, secs(0));
        p.open(CLIENT, B, secs(1));
        let third = p.open(CLIENT, A, secs(2));
        assert_ne!(first, third);
        p.close(CLIENT, first, secs(3));
        assert_eq!(p.lookup(CLIENT, secs(1_000)), Some(A), "the third is open");
    }

    #[test]
    fn expired_templates_are_swept() {
        let mut p = Persistence::new(secs(5));
        for i in 0..100u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 0, i));
            let g = p.open(ip, A, secs(0));
            p.close(ip, g, secs(0));
        }
        assert_eq!(p.len(secs(1)), 100);
        p.open(CLIENT, B, secs(10));
        assert_eq!(p.templates.len(), 1, "only the live template is kept");
    }

    // Input: a /24 for IPv4 and a /64 for IPv6, and the default. Output: the addresses with the
    // host bits cleared; each address its own by default; /0 puts every client on one
    // template.
    #[test]
    fn granularity_clears_the_host_bits() {
        let net = Granularity { v4: 24, v6: 64 };
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(net.key(v4("192.0.2.77")), v4("192.0.2.0"));
        assert_eq!(net.key(v4("2001:db8:1:2:3:4:5:6")), v4("2001:db8:1:2::"));
        assert_eq!(
            Granularity::default().key(v4("192.0.2.77")),
            v4("192.0.2.77")
        );
        assert_eq!(
            Granularity::default().key(v4("2001:db8::7")),
            v4("2001:db8::7")
        );
        let all = Granularity { v4: 0, v6: 0 };
        assert_eq!(all.key(v4("192.0.2.77")), v4("0.0.0.0"));
        assert_eq!(net.as_written().as_deref(), Some("255.255.255.0 64"));
        assert_eq!(Granularity::default().as_written(), None);
    }
}
