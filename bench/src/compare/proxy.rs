//! The two proxies under test, and starting one on a [`Site`]: write its config into the run's
//! temp dir, run it pinned to the proxy CPU, wait until it accepts connections.

use std::fmt;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::fulcrum_config::fulcrum_config;
use super::haproxy_config::haproxy_config;
use super::process::{Launch, Spawned};
use super::site::Site;

/// A proxy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proxy {
    Fulcrum,
    Haproxy,
}

impl Proxy {
    /// Both, in the order every round runs them.
    pub const BOTH: [Self; 2] = [Self::Fulcrum, Self::Haproxy];

    /// The name in tables and charts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fulcrum => "Fulcrum",
            Self::Haproxy => "HAProxy",
        }
    }

    /// The name in file names and logs.
    pub fn key(self) -> &'static str {
        match self {
            Self::Fulcrum => "fulcrum",
            Self::Haproxy => "haproxy",
        }
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
    let (config, text, program) = match proxy {
        Proxy::Fulcrum => (
            dir.join("fulcrum.toml"),
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
        Proxy::Fulcrum => vec!["run".into(), "-c".into(), config.clone().into()],
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
    if proxy == Proxy::Fulcrum {
        // RUST_LOG would replace the config's `warn` level and log every request.
        command.env_remove("RUST_LOG").env("NO_COLOR", "1");
    }
    let log = dir.join(format!("{}.log", proxy.key()));
    Spawned::server(proxy.name(), command, log, site.listen)
        .await
        .with_context(|| format!("cannot start {proxy} on {}", config.display()))
}
