//! At most `max_connections_per_source` admin connections from one client at a time, so that
//! one client (a scraper gone wrong, a script opening connections in a loop, a slowloris) cannot
//! take every one of the server's slots and lock the operators and Prometheus out. nginx's
//! `limit_conn` over `$binary_remote_addr` does the same, and HAProxy users write it as
//! `tcp-request connection reject if { src_conn_cur ge N }`.
//!
//! A client is its IPv4 address, or its IPv6 /64: one IPv6 host is given a whole /64 and may use
//! any address in it. A link-local or loopback IPv6 address counts alone: every host on a link
//! shares `fe80::/64`.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::{Arc, Mutex},
};

/// The connections held, by client.
#[derive(Debug)]
pub(super) struct PerSource {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's share of its client's count, given back when dropped.
#[derive(Debug)]
pub(super) struct SourceSlot {
    counts: Arc<PerSource>,
    client: IpAddr,
}

impl PerSource {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `peer`, or `None` when its client holds `max` already.
    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<SourceSlot> {
        let client = client_of(peer);
        // A poisoned lock only means a panic elsewhere mid-update; the counts are still usable.
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            counts: Arc::clone(self),
            client,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut held = (self.counts.held.lock()).unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                // Forgotten, so the map holds only the clients connected now.
                held.remove(&self.client);
            }
        }
    }
}

/// Who `peer` counts as: an IPv4 address (also when written IPv4-mapped, as a dual-stack
/// listener sees it), an IPv6 address's /64, or a link-local or loopback IPv6 address itself.
pub(super) fn client_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if v6.is_unicast_link_local() || v6.is_loopback() => peer,
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_client_gets_max_slots_and_one_more_once_one_is_given_back() {
        let counts = PerSource::new(2);
        let first = counts.admit(ip("192.0.2.1"));
        let second = counts.admit(ip("192.0.2.1"));
        assert!(first.is_some() && second.is_some());
        assert!(counts.admit(ip("192.0.2.1")).is_none());
        // Another client is not held back.
        assert!(counts.admit(ip("192.0.2.2")).is_some());
        drop(first);
        assert!(counts.admit(ip("192.0.2.1")).is_some());
    }

    #[test]
    fn a_client_is_forgotten_when_its_last_connection_ends() {
        let counts = PerSource::new(2);
        let slot = counts.admit(ip("192.0.2.1"));
        drop(slot);
        assert!(
            counts
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        );
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client_but_a_link_local_address_is_one_alone() {
        let counts = PerSource::new(1);
        let _held = counts.admit(ip("2001:db8:1:2::1"));
        assert!(counts.admit(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(counts.admit(ip("2001:db8:1:3::1")).is_some());
        let _v4 = counts.admit(ip("192.0.2.7"));
        assert!(counts.admit(ip("::ffff:192.0.2.7")).is_none());
        // Every host on a link shares fe80::/64: each link-local address is a client.
        let _one = counts.admit(ip("fe80::1"));
        assert!(counts.admit(ip("fe80::2")).is_some());
    }
}
