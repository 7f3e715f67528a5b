//! The admin server that "Fulcrum+metrics" runs in `get-metrics`: where it listens, the user the
//! scraper logs in as, and the URLs it scrapes. [`super::fulcrum_config`] writes it as `[admin]`.

use std::net::SocketAddr;

/// The `[admin]` of one Fulcrum+metrics process, on loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdminSite {
    /// `127.0.0.1:PORT`, a port picked free, never the site's own listener.
    pub(crate) listen: SocketAddr,
}

/// The admin server's paths: its defaults, written out so the config says what is scraped.
pub(crate) const STATS_PATH: &str = "/stats";
pub(crate) const METRICS_PATH: &str = "/metrics";

/// The one user, so the stats JSON is scraped through basic auth as an operator's tool would.
/// The server is on loopback for the length of one run, so the password guards nothing.
pub(crate) const USER: &str = "bench";
pub(crate) const PASSWORD: &str = "bench-scraper";

impl AdminSite {
    /// Prometheus text, which needs no login.
    pub(crate) fn metrics_url(&self) -> String {
        format!("http://{}{METRICS_PATH}", self.listen)
    }

    /// The stats page, answered as JSON to `Accept: application/json`, behind the login.
    pub(crate) fn stats_url(&self) -> String {
        format!("http://{}{STATS_PATH}", self.listen)
    }
}
