//! The site both proxies are configured to serve, described once so the Fulcrum and HAProxy
//! configs cannot drift apart: one listener, origins balanced round robin, either as HTTP (with
//! optional cookie persistence and TLS termination) or as an L4 relay of bytes.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::admin::AdminSite;
use super::scenario::Scenario;

/// One proxy configuration, in terms both proxies share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Site {
    pub(crate) mode: Mode,
    /// The frontend's address (`127.0.0.1:PORT`, a port picked free).
    pub(crate) listen: SocketAddr,
    /// The origins, by server name (`s1`, `s2`); the name is also the cookie value.
    pub(crate) servers: Vec<(String, SocketAddr)>,
    /// Cookie persistence (`SRV`, insert, indirect, nocache).
    pub(crate) cookie: bool,
    /// A PEM file holding the certificate and its key: TLS termination with ALPN h2, http/1.1.
    pub(crate) tls_cert: Option<PathBuf>,
    /// Client connections either proxy accepts at once: above the idle-connection count, so the
    /// memory measurement never waits in a backlog.
    pub(crate) max_connections: usize,
    /// Fulcrum's `[admin]`: only for "Fulcrum+metrics" in `get-metrics`, never for HAProxy.
    pub(crate) admin: Option<AdminSite>,
}

/// What the proxies do with a connection, in HAProxy's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `mode http`: a Fulcrum frontend and backend.
    Http,
    /// `mode tcp`: bytes relayed as they come, a Fulcrum `virtual_server`. Only `listen`,
    /// `servers` and `max_connections` apply.
    Tcp,
}

impl Site {
    /// The site of `scenario` on `listen`, in front of `servers`.
    pub(crate) fn for_scenario(
        scenario: Scenario,
        listen: SocketAddr,
        servers: &[(String, SocketAddr)],
        tls_cert: Option<PathBuf>,
        idle_connections: usize,
    ) -> Self {
        Self {
            mode: scenario.mode(),
            listen,
            servers: servers.to_vec(),
            cookie: scenario.cookie(),
            tls_cert: if scenario.tls() { tls_cert } else { None },
            max_connections: max_connections(idle_connections),
            admin: None,
        }
    }

    /// The URL the load generator is pointed at.
    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/", self.listen)
    }
}

/// Headroom over the idle connections for the load's own connections and the odd straggler.
pub(crate) fn max_connections(idle_connections: usize) -> usize {
    idle_connections.saturating_add(1024).max(10_000)
}

/// Timeouts both proxies get. Client-side ones are long so the idle connections of the memory
/// measurement stay open while RSS is read; none of them fires during a throughput run.
pub(crate) mod timeouts {
    /// Connecting to an origin.
    pub(crate) const CONNECT: &str = "5s";
    /// Origin inactivity.
    pub(crate) const SERVER: &str = "30s";
    /// Client inactivity during a request or response.
    pub(crate) const CLIENT: &str = "10m";
    /// Receiving a whole request head.
    pub(crate) const HTTP_REQUEST: &str = "10s";
    /// Idle time between two requests of a keep-alive connection.
    pub(crate) const KEEP_ALIVE: &str = "10m";
    /// An L4 relay with no traffic either way: Fulcrum's `idle`, HAProxy's `timeout client` and
    /// `timeout server` in `mode tcp`.
    pub(crate) const TCP_IDLE: &str = "10m";
}

/// The sites the config generators' tests render: the same two servers behind one listener.
#[cfg(test)]
pub(crate) mod fixtures {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::PathBuf;

    use super::{Mode, Site};

    /// An HTTP site, with cookie stickiness and TLS as asked.
    pub(crate) fn site(cookie: bool, tls: Option<PathBuf>) -> Site {
        Site {
            mode: Mode::Http,
            listen: "127.0.0.1:18080".parse().unwrap(),
            servers: vec![
                ("s1".to_owned(), "127.0.0.1:18081".parse().unwrap()),
                ("s2".to_owned(), "127.0.0.1:18082".parse().unwrap()),
            ],
            cookie,
            tls_cert: tls,
            max_connections: 11_024,
            admin: None,
        }
    }

    /// The same servers behind an L4 relay.
    pub(crate) fn tcp_site() -> Site {
        Site {
            mode: Mode::Tcp,
            ..site(false, None)
        }
    }
}
