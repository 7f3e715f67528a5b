//! The serde types of `[virtual_server.NAME]`: an LVS-style virtual service, as users write it
//! (see docs/config.md). `build` turns them into a validated [`crate::config::VirtualServer`].

use std::net::{IpAddr, SocketAddr};

use fulcrum_common::{Duration, Spanned};
use serde::Deserialize;

use super::section::{AgentCheckSection, HealthCheckSection};

/// `[virtual_server.NAME]`: `ipvsadm -A` plus its `-a` real servers and ldirectord's checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerSection {
    /// The virtual address (a VIP the node may not hold yet: bound with IP_FREEBIND).
    pub listen: Spanned<SocketAddr>,
    #[serde(default)]
    pub protocol: L4Protocol,
    /// `rr wrr lc wlc lblc lblcr dh sh sed nq mh`; `wlc` by default, as ipvsadm.
    pub scheduler: Option<Spanned<String>>,
    /// Scheduler flags (`ipvsadm -b`): `sh`/`mh` fallback and port hashing, `mh` table size.
    #[serde(default)]
    pub scheduler_options: SchedulerOptionsSection,
    /// Like `ipvsadm -p`: a client keeps its real server this long after its last connection.
    #[serde(default)]
    pub persistence: Duration,
    /// Clients sharing a persistence template (`ipvsadm -M`): a dotted IPv4 netmask, or an
    /// IPv6 prefix length.
    pub persistence_netmask: Option<Spanned<String>>,
    /// A failed real server gets weight 0 and keeps its connections (ldirectord `quiescent=yes`);
    /// `false` removes it and resets its connections.
    #[serde(default = "default_true")]
    pub quiescent: bool,
    /// Tell real servers the client's address with HAProxy's PROXY protocol.
    #[serde(default = "no_proxy_protocol")]
    pub proxy_protocol: Spanned<ProxyProtocolSection>,
    /// Connect to real servers from the client's own address (IP_TRANSPARENT; needs root and
    /// policy routing, see docs/config.md).
    #[serde(default)]
    pub transparent: bool,
    pub health_check: Option<HealthCheckSection>,
    /// HAProxy's agent check, asked on each real server's address.
    pub agent_check: Option<AgentCheckSection>,
    #[serde(default)]
    pub timeout: L4TimeoutSection,
    /// Used while no real server is up (ldirectord's `fallback`).
    pub fallback: Option<Spanned<SocketAddr>>,
    pub real_servers: Vec<RealServerSection>,
}

fn default_true() -> bool {
    true
}

/// `tcp` or `udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Protocol {
    #[default]
    Tcp,
    Udp,
}

impl L4Protocol {
    /// `tcp` or `udp`, as written in the config.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

fn no_proxy_protocol() -> Spanned<ProxyProtocolSection> {
    Spanned::new(0..0, ProxyProtocolSection::None)
}

/// `proxy_protocol = "none" | "v1" | "v2"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocolSection {
    #[default]
    None,
    V1,
    V2,
}

/// `scheduler_options = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerOptionsSection {
    /// `sh`/`mh`: pick another server when the hashed one is unavailable.
    pub fallback: bool,
    /// `sh`/`mh`: hash the client's port too.
    pub port: bool,
    /// `mh`: lookup table size, a prime (the kernel's default when unset).
    pub mh_table_size: Spanned<u32>,
}

impl Default for SchedulerOptionsSection {
    fn default() -> Self {
        Self {
            fallback: false,
            port: false,
            mh_table_size: Spanned::new(0..0, crate::l4::sched::MH_TABLE_SIZE_DEFAULT),
        }
    }
}

/// `timeout = { ... }` of a virtual server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L4TimeoutSection {
    pub connect: Duration,
    /// A connection (or UDP flow) with no traffic either way this long is closed; unset, 15 min
    /// for TCP and 5 min for UDP, IPVS's defaults (`ipvsadm --set 900 120 300`).
    pub idle: Option<Duration>,
}

impl Default for L4TimeoutSection {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            idle: None,
        }
    }
}

/// One entry of `real_servers = [...]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServerSection {
    pub address: Spanned<SocketAddr>,
    /// 0..=65535 as in IPVS; 0 gets no new connections.
    #[serde(default = "default_weight")]
    pub weight: Spanned<u32>,
    /// Connections above which the server counts as overloaded (`ipvsadm -x`); 0: no limit.
    #[serde(default)]
    pub upper_threshold: u32,
    /// Where the service's agent check asks this server's agent, when not on its `address`
    /// (HAProxy's `agent-addr`).
    pub agent_addr: Option<Spanned<IpAddr>>,
}

fn default_weight() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
