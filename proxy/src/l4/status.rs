//! A snapshot of the L4 tier with the numbers `ipvsadm -L -n` shows (`--stats` and `-c` too):
//! what `fulcrum status l4` prints, and what metrics and the stats page read.

use std::{net::SocketAddr, time::Instant};

use serde::{Deserialize, Serialize};

use super::service::Service;
use crate::{config::L4Protocol, state::counters};

/// One virtual service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// The address bound (the configured one, or the port picked for port 0).
    pub address: SocketAddr,
    pub scheduler: String,
    /// Persistence timeout in seconds; 0 when off.
    pub persistence_secs: u64,
    /// `persistence_netmask` in ipvsadm's words (`255.255.255.0`, `64`); none when each client
    /// address is its own.
    #[serde(default)]
    pub persistence_netmask: Option<String>,
    pub quiescent: bool,
    /// Clients with a live persistence template.
    pub persistent_clients: usize,
    /// Connections refused for want of any available real server.
    pub no_server: u64,
    /// UDP datagrams dropped because their new flow was over `[global] max_connections`.
    #[serde(default)]
    pub flows_refused: u64,
    pub real_servers: Vec<RealServerStatus>,
    pub fallback: Option<RealServerStatus>,
    /// Open connections (UDP: flows), oldest first.
    pub connections: Vec<ConnectionStatus>,
}

/// One real server of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealServerStatus {
    pub address: SocketAddr,
    /// UP, DOWN, MAINT or DRAIN.
    pub status: String,
    /// The weight set (config or operator).
    pub weight: u32,
    /// The weight the scheduler uses now: 0 while the server is not UP.
    pub effective_weight: u32,
    /// Whether the server is in the scheduler's list (a DOWN server is not, without quiescent).
    pub in_service: bool,
    /// Established connections (IPVS's ActiveConn).
    pub active: u32,
    /// Connections being opened (IPVS's InActConn).
    pub inactive: u32,
    /// Connections since start (`--stats` Conns).
    pub connections_total: u64,
    /// Bytes from clients to the server, and back (`--stats` InBytes, OutBytes).
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connect_errors: u64,
    pub last_check: Option<String>,
}

/// One open connection, as a line of `ipvsadm -L -n -c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    pub client: SocketAddr,
    pub virtual_address: SocketAddr,
    pub real_server: SocketAddr,
    /// `ESTABLISHED`, `SYN_SENT` (connecting to the real server) or `UDP`.
    pub state: String,
    pub age_secs: u64,
}

/// Snapshots `service`, bound at `address`.
pub(crate) fn snapshot(service: &Service, address: SocketAddr) -> ServiceStatus {
    let config = service.config();
    let members = service.members();
    let real_status = |real: &super::service::Real| {
        let s = &real.server;
        let totals = s.counters.totals.snapshot();
        let (active, inactive) = real.connections(config.protocol);
        RealServerStatus {
            address: real.addr(),
            status: s.status().to_string(),
            weight: s.weight(),
            effective_weight: real.effective_weight(),
            in_service: real.in_service(config.quiescent),
            active,
            inactive,
            connections_total: totals.sessions,
            bytes_in: totals.bytes_in,
            bytes_out: totals.bytes_out,
            connect_errors: totals.connect_errors,
            last_check: s.last_check().map(|c| c.description),
        }
    };
    let now = Instant::now();
    let udp = config.protocol == L4Protocol::Udp;
    let mut connections: Vec<_> = service
        .conns
        .iter()
        .map(|e| {
            let state = match (udp, e.established) {
                (true, _) => "UDP",
                (false, true) => "ESTABLISHED",
                (false, false) => "SYN_SENT",
            };
            ConnectionStatus {
                client: e.client,
                virtual_address: e.virtual_addr,
                real_server: e.real,
                state: state.to_owned(),
                age_secs: now.saturating_duration_since(e.since).as_secs(),
            }
        })
        .collect();
    connections.sort_by(|a, b| b.age_secs.cmp(&a.age_secs).then(a.client.cmp(&b.client)));
    ServiceStatus {
        name: service.name.clone(),
        protocol: if udp { "UDP" } else { "TCP" }.to_owned(),
        address,
        scheduler: config.scheduler.name().to_owned(),
        persistence_secs: config.persistence.as_secs(),
        persistence_netmask: config.persistence_granularity.as_written(),
        quiescent: config.quiescent,
        persistent_clients: service.persistent_clients(),
        no_server: counters::load(&service.no_server),
        flows_refused: counters::load(&service.flows_refused),
        real_servers: members
            .servers
            .iter()
            .map(|(r, _)| real_status(r))
            .collect(),
        fallback: members.fallback.as_deref().map(real_status),
        connections,
    }
}
