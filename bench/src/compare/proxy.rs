//! The proxies under test, and starting one on a [`Site`]: write its config into the run's temp
//! dir, run it pinned to the proxy CPU, wait until it accepts connections. Besides Fulcrum and
//! HAProxy, "Fulcrum+metrics" is Fulcrum with its admin server on, which `get-metrics` measures
//! against plain Fulcrum.

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::fulcrum_config::fulcrum_config;
use super::haproxy_config::haproxy_config;
use super::process::{Launch, Spawned};
use super::site::Site;

/// A proxy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proxy {
    /// No `[admin]`: the per-request counters are kept, nobody reads them.
    Fulcrum,
    Haproxy,
    /// Fulcrum with `[admin]` (the site's [`AdminSite`](super::admin::AdminSite)), scraped
    /// during every measured run.
    #[serde(rename = "fulcrum-metrics")]
    FulcrumMetrics,
}

impl Proxy {
    /// Both, Fulcrum first.
    pub const BOTH: [Self; 2] = [Self::Fulcrum, Self::Haproxy];

    /// Both, in the order round `round` (counted from 1) runs them: Fulcrum first in odd
    /// rounds, HAProxy first in even ones, so that neither always finds the machine as the
    /// other left it (its caches, its clock, a neighbour's burst on a shared host).
    pub fn order_in_round(round: usize) -> [Self; 2] {
        if round % 2 == 1 {
            Self::BOTH
        } else {
            [Self::Haproxy, Self::Fulcrum]
        }
    }

    /// The name in tables and charts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fulcrum => "Fulcrum",
            Self::Haproxy => "HAProxy",
            Self::FulcrumMetrics => "Fulcrum+metrics",
        }
    }

    /// The name in file names and logs.
    pub fn key(self) -> &'static str {
        match self {
            Self::Fulcrum => "fulcrum",
            Self::Haproxy => "haproxy",
            Self::FulcrumMetrics => "fulcrum-metrics",
        }
    }

    /// Runs the admin server, so its site needs an [`AdminSite`](super::admin::AdminSite).
    pub fn metrics(self) -> bool {
        self == Self::FulcrumMetrics
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the proxies and the pinning tool are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxyBinaries<'a> {
    pub(crate) fulcrum: &'a Path,
    pub(crate) haproxy: &'a Path,
    pub(crate) taskset: &'a Path,
}

/// Starts `proxy` on `site` pinned to `cpu`, with its config and log in `dir`.
pub(crate) async fn start_proxy(
    proxy: Proxy,
    site: &Site,
    binaries: ProxyBinaries<'_>,
    cpu: usize,
    dir: &Path,
) -> anyhow::Result<Spawned> {
    if proxy.metrics() != site.admin.is_some() {
        // A runner bug, and one that would measure metrics off as on or the reverse.
        bail!("{proxy} must have an [admin] exactly when it is Fulcrum+metrics");
    }
    let (config, text, program) = match proxy {
        Proxy::Fulcrum | Proxy::FulcrumMetrics => (
            dir.join(format!("{}.toml", proxy.key())),
            fulcrum_config(site),
            binaries.fulcrum,
        ),
        Proxy::Haproxy => (
            dir.join("haproxy.cfg"),
            haproxy_config(site),
            binaries.haproxy,
        ),
    };
    std::fs::write(&config, text).with_context(|| format!("cannot write {}", config.display()))?;
    let args = match proxy {
        Proxy::Fulcrum | Proxy::FulcrumMetrics => {
            vec!["run".into(), "-c".into(), config.clone().into()]
        }
        // `-db`: stay in the foreground as one process, so the child's PID is the one that works.
        Proxy::Haproxy => vec!["-db".into(), "-f".into(), config.clone().into()],
    };
    // A client connection and its server connection each take a descriptor.
    let nofile = (site.max_connections as u64).saturating_mul(2) + 1024;
    let launch = Launch {
        taskset: binaries.taskset,
        cpu,
        nofile,
        program,
        args,
    };
    let mut command = launch.command();
    if proxy != Proxy::Haproxy {
        // RUST_LOG would replace the config's `warn` level and log every request.
        command.env_remove("RUST_LOG").env("NO_COLOR", "1");
    }
    let log = dir.join(format!("{}.log", proxy.key()));
    let mut spawned = Spawned::server(proxy.name(), command, log, site.listen)
        .await
        .with_context(|| format!("cannot start {proxy} on {}", config.display()))?;
    if let Some(admin) = &site.admin {
        // The admin server starts after the traffic listener; the scraper must find it up.
        spawned
            .wait_listening(admin.listen)
            .await
            .with_context(|| format!("the admin server of {proxy} on {}", admin.listen))?;
    }
    Ok(spawned)
}
