//! The proxy's configuration: the sections users write ([`section`]) and the validated
//! [`Config`] the data plane runs on ([`build`]). A `Config` that exists is a config that is
//! correct: references resolved, ACLs compiled, certificates loaded.

mod build;
pub mod l4_section;
pub mod section;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use fulcrum_common::net::binds_overlap;

pub use build::{Sections, build};
pub use l4_section::{L4Protocol, ProxyProtocolSection as ProxyProtocol};
pub use section::{CheckKind, CookieMode, Observe, OnError, OnMarkedDown, OnMarkedUp};

use crate::l7::{acl::Condition, balance::Algorithm};

/// A validated proxy configuration.
#[derive(Debug)]
pub struct Config {
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
    pub virtual_servers: Vec<VirtualServer>,
    /// Client connections the whole process accepts at once; 0 means no limit.
    pub max_connections: usize,
    /// Access log records as JSON fields rather than one `httplog` line.
    pub json_log: bool,
}

/// A validated `[frontend.NAME]`.
#[derive(Debug)]
pub struct Frontend {
    pub name: String,
    pub binds: Vec<SocketAddr>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Answers the proxy gives itself, tried before `rules`.
    pub returns: Vec<Return>,
    pub rules: Vec<Rule>,
    /// Index into [`Config::backends`].
    pub default_backend: Option<usize>,
    pub forward_for: bool,
    /// 0 means no limit beyond the global one.
    pub max_connections: usize,
    pub timeout_client: Duration,
    pub timeout_http_request: Duration,
    pub timeout_keep_alive: Duration,
}

/// One `use_backend` rule.
#[derive(Debug)]
pub struct Rule {
    /// Index into [`Config::backends`].
    pub backend: usize,
    pub condition: Condition,
    /// `unless` instead of `if`.
    pub negate: bool,
}

/// One `return` rule: a response the proxy sends itself when `condition` holds.
#[derive(Debug)]
pub struct Return {
    /// `None` answers every request.
    pub condition: Option<Condition>,
    pub negate: bool,
    pub status: http::StatusCode,
    pub content_type: http::HeaderValue,
    pub body: bytes::Bytes,
}

impl Return {
    /// Whether this rule answers `request`.
    pub fn applies(&self, request: &crate::l7::acl::RequestFacts<'_>) -> bool {
        self.condition
            .as_ref()
            .is_none_or(|c| c.matches(request) != self.negate)
    }
}

/// A validated `[backend.NAME]`.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub algorithm: Algorithm,
    pub cookie: Option<Cookie>,
    pub check: Option<Check>,
    pub agent: Option<AgentCheck>,
    pub timeout_connect: Duration,
    pub timeout_server: Duration,
    pub timeout_queue: Duration,
    /// `None`: the larger of the frontend's client and this server timeout.
    pub timeout_tunnel: Option<Duration>,
    pub retries: u32,
    pub redispatch: bool,
    pub pool_max_idle: usize,
    /// A server back UP (from DOWN or MAINT) takes its weight in steps over this long
    /// (HAProxy's `slowstart`); `None` too with a static algorithm, which ignores it.
    pub slow_start: Option<Duration>,
    pub servers: Vec<Server>,
}

/// A validated `[virtual_server.NAME]`.
#[derive(Debug)]
pub struct VirtualServer {
    pub name: String,
    pub listen: SocketAddr,
    pub protocol: L4Protocol,
    pub scheduler: crate::l4::sched::Kind,
    pub scheduler_options: crate::l4::sched::Options,
    /// Zero: no persistence.
    pub persistence: Duration,
    /// Which clients share a persistence template.
    pub persistence_granularity: crate::l4::persist::Granularity,
    pub quiescent: bool,
    pub proxy_protocol: ProxyProtocol,
    pub transparent: bool,
    pub check: Option<Check>,
    pub agent: Option<AgentCheck>,
    pub timeout_connect: Duration,
    pub timeout_idle: Duration,
    pub fallback: Option<SocketAddr>,
    pub real_servers: Vec<RealServer>,
}

/// One real server of a virtual service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    pub addr: SocketAddr,
    pub weight: u32,
    /// 0: no limit.
    pub upper_threshold: u32,
    /// The agent check's address, when not the server's.
    pub agent_addr: Option<IpAddr>,
}

/// Cookie persistence settings of a backend.
#[derive(Debug, Clone)]
pub struct Cookie {
    pub name: String,
    pub mode: CookieMode,
    pub nocache: bool,
    pub indirect: bool,
    pub httponly: bool,
    pub secure: bool,
    pub domain: Option<String>,
    pub max_age: Option<Duration>,
}

/// Health check settings of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    /// Inclusive range of passing status codes.
    pub expect_status: (u16, u16),
    pub expect_body: Option<String>,
    pub interval: Duration,
    /// The period while the server is on its way UP or DOWN (HAProxy's `fastinter`);
    /// `interval` unless set.
    pub fast_interval: Duration,
    /// The period while the server is fully DOWN (HAProxy's `downinter`); `interval` unless set.
    pub down_interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub port: Option<u16>,
    /// What a server marked DOWN by the check does to its sessions.
    pub on_marked_down: Option<OnMarkedDown>,
    /// What an active server marked UP by the check does to the backups' sessions.
    pub on_marked_up: Option<OnMarkedUp>,
    /// An `external` check's program and first arguments; empty for other kinds.
    pub command: Vec<String>,
    /// `[global] spread_checks`: each wait varies by up to this percent either way.
    pub spread_percent: u32,
    /// Passive health: what live traffic counts (HAProxy's `observe`), if anything.
    pub observe: Option<Observe>,
    /// Consecutive errors in live traffic that set `on_error` off.
    pub error_limit: u32,
    pub on_error: OnError,
}

#[cfg(test)]
impl Check {
    /// A check of `kind` with the config's defaults (`GET /`, 200-399, every 2 s, a 1 s
    /// timeout, rise 2, fall 3), for tests to change what they are about.
    pub(crate) fn of_kind(kind: CheckKind) -> Self {
        let every = Duration::from_secs(2);
        Check {
            kind,
            method: "GET".into(),
            path: "/".into(),
            host: None,
            expect_status: (200, 399),
            expect_body: None,
            interval: every,
            fast_interval: every,
            down_interval: every,
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            port: None,
            on_marked_down: None,
            on_marked_up: None,
            command: Vec::new(),
            spread_percent: 0,
            observe: None,
            error_limit: DEFAULT_ERROR_LIMIT,
            on_error: OnError::Fastinter,
        }
    }
}

/// HAProxy's default `error-limit`.
pub const DEFAULT_ERROR_LIMIT: u32 = 10;

/// Agent check settings of a backend (HAProxy's `agent-check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCheck {
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    /// Sent once connected; empty: nothing.
    pub send: String,
    /// `[global] spread_checks`, as for health checks.
    pub spread_percent: u32,
}

/// One server of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub cookie: String,
    /// 0 means no limit.
    pub max_connections: u32,
    pub backup: bool,
    pub check: bool,
    pub disabled: bool,
    /// The agent check's address, when not the server's.
    pub agent_addr: Option<IpAddr>,
}

impl Config {
    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// The frontend called `name`.
    pub fn frontend(&self, name: &str) -> Option<&Frontend> {
        self.frontends.iter().find(|f| f.name == name)
    }

    /// What binds TCP address `addr`, or an address whose port it overlaps (see
    /// [`binds_overlap`]), as ``frontend `NAME` `` or ``virtual_server `NAME` ``, so
    /// another listener of the appliance can refuse it.
    pub fn tcp_bind_owner(&self, addr: SocketAddr) -> Option<String> {
        let frontend = self
            .frontends
            .iter()
            .find(|fe| fe.binds.iter().any(|b| binds_overlap(*b, addr)))
            .map(|fe| format!("frontend `{}`", fe.name));
        frontend.or_else(|| {
            self.virtual_servers
                .iter()
                .find(|vs| binds_overlap(vs.listen, addr) && vs.protocol == L4Protocol::Tcp)
                .map(|vs| format!("virtual_server `{}`", vs.name))
        })
    }
}
