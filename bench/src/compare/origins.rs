//! The two origins every proxy is put in front of: `fulcrum-bench origin` processes named `s1` and
//! `s2` (the names are also the persistence cookie values), pinned to the load CPU so the proxy's
//! CPU does nothing but proxy. `tcp-bulk` puts the proxies in front of a `fulcrum-bench bulk
//! source` instead, pinned the same way.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

use super::process::{Launch, Spawned};

/// The origins' names, in server order.
pub(crate) const NAMES: [&str; 2] = ["s1", "s2"];

/// Starts the origins with `bench` pinned to `cpu`; returns them and `(name, address)` pairs.
pub(crate) async fn start_origins(
    bench: &Path,
    taskset: &Path,
    cpu: usize,
) -> anyhow::Result<(Vec<Spawned>, Vec<(String, SocketAddr)>)> {
    let mut origins = Vec::new();
    let mut servers = Vec::new();
    for name in NAMES {
        let launch = Launch {
            taskset,
            cpu,
            // Origins see only the proxies' pooled connections; the default limit would do, but
            // the `close` scenario may churn through some.
            nofile: 65_536,
            program: bench,
            args: vec![
                "origin".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--name".into(),
                name.into(),
            ],
        };
        let mut command = launch.command();
        // Their request logs would drown the progress lines on the shared stderr.
        command.env("RUST_LOG", "warn");
        let (origin, addr) = Spawned::origin(name, command)
            .await
            .with_context(|| format!("cannot start origin {name} with {}", bench.display()))?;
        origins.push(origin);
        servers.push((name.to_owned(), addr));
    }
    Ok((origins, servers))
}

/// The name of the bulk source in the proxies' configs.
pub(crate) const BULK_SOURCE: &str = "b1";

/// Starts `bench bulk source` pinned to `cpu`; returns it and its address.
pub(crate) async fn start_bulk_source(
    bench: &Path,
    taskset: &Path,
    cpu: usize,
) -> anyhow::Result<(Spawned, SocketAddr)> {
    let launch = Launch {
        taskset,
        cpu,
        nofile: 1024,
        program: bench,
        args: vec![
            "bulk".into(),
            "source".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ],
    };
    let mut command = launch.command();
    command.env("RUST_LOG", "warn");
    Spawned::origin(BULK_SOURCE, command)
        .await
        .with_context(|| format!("cannot start a bulk source with {}", bench.display()))
}
