//! The side-by-side comparison of Fulcrum and HAProxy: same origins, equivalent configs, pinned
//! CPUs, rounds alternating A B A B, reported as medians and Fulcrum/HAProxy ratios. Both the L7
//! tier (HAProxy `mode http`) and the L4 tier (`mode tcp`, a Fulcrum `virtual_server`) are
//! measured, and so is what Fulcrum's metrics cost (`get-metrics`: Fulcrum with its admin server
//! scraped against Fulcrum without).
//!
//! [`compare`] (async) and [`run_compare`] (blocking) run it; `fulcrum-bench compare` is the
//! command line around them. The files it writes are described in `bench/results/README.md`.

mod admin;
mod bulk_rounds;
mod bulk_run;
mod cert;
mod chart;
mod fulcrum_config;
mod goal;
mod haproxy_config;
mod idle;
mod limits;
mod load_run;
mod machine;
mod markdown;
mod metrics_rounds;
mod options;
mod origins;
mod output;
mod port;
mod process;
mod procfs;
mod proxy;
mod report;
mod runner;
mod scenario;
mod scrape_run;
mod site;
mod stats;
mod summary;
mod tools;

use anyhow::{Context, bail};
use tracing::{info, warn};

pub use self::chart::{Series, latency_svg};
pub use self::goal::{Baseline, Bound, Goal, GoalCheck};
pub use self::markdown::render_markdown;
pub use self::options::{CompareOptions, Sizing, shell_command_line};
pub use self::proxy::Proxy;
pub use self::report::{
    BulkCpu, BulkRound, BulkRun, CompareReport, CpuUse, IdleMemory, Machine, Measured, Metric,
    MetricsRound, ProxyRound, RoundReport, SCHEMA, ScenarioReport, Settings, SummaryRow,
};
pub use self::scenario::{COOKIE_NAME, Scenario, parse_scenarios};
pub use self::tools::find_haproxy;

// `failover` reports medians and ratios as `compare` does, and describes the CPU the same way.
pub(crate) use self::machine::cpu_model;
pub(crate) use self::stats::{median, ratio};
// So do nbd and sync, and they pick their ports the same way.
pub(crate) use self::port::free_port;
pub(crate) use self::tools::{find_in_path, is_executable};

use self::bulk_run::BulkFetcher;
use self::chart::chart_of;
use self::load_run::LoadRunner;
use self::machine::describe_machine;
use self::origins::{BULK_SOURCE, start_bulk_source, start_origins};
use self::output::{OutputPaths, write_outputs};
use self::proxy::ProxyBinaries;
use self::runner::Bench;
use self::scrape_run::Scraper;
use self::tools::find_tools;
use fulcrum_common::UtcTime;

/// Runs a comparison on a runtime of its own and blocks until it is done. For callers without a
/// tokio runtime (a plain `#[test]`); inside one, use [`compare`].
pub fn run_compare(options: &CompareOptions) -> anyhow::Result<CompareReport> {
    if tokio::runtime::Handle::try_current().is_ok() {
        bail!("run_compare blocks; inside a tokio runtime, call `compare(...).await` instead");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?
        .block_on(compare(options))
}

/// Runs a comparison. Every process it starts is killed and its temp dir removed when it returns
/// or when its future is dropped (which is how the CLI handles Ctrl-C).
pub async fn compare(options: &CompareOptions) -> anyhow::Result<CompareReport> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    options.validate(cores)?;
    if options.proxy_cpu == options.load_cpu {
        warn!(
            cpu = options.proxy_cpu,
            "proxy and load share a CPU: the numbers measure both"
        );
    }
    let tls = options.scenarios.iter().any(|s| s.tls());
    let tools = find_tools(options.haproxy.as_deref(), tls)?;
    for (what, path) in [
        ("fulcrum", &options.fulcrum),
        ("fulcrum-bench", &options.bench),
        ("the load command", &options.load_cmd),
    ] {
        if !is_executable(path) {
            bail!(
                "{what}: no executable at {} (build it with `cargo build --release`)",
                path.display()
            );
        }
    }
    let started = UtcTime::now();
    let machine = describe_machine(&tools.haproxy, &options.fulcrum).await?;
    info!(cpu = %machine.cpu_model, haproxy = %machine.haproxy_version, fulcrum = %machine.fulcrum_version, "comparing");
    if options.idle_connections > 0 {
        limits::ensure_own_nofile(options.idle_connections as u64 + 1024).await?;
    }

    let dir = tempfile::Builder::new()
        .prefix("fulcrum-compare-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let cert = match &tools.openssl {
        Some(openssl) if tls => {
            let (openssl, cert_dir) = (openssl.clone(), dir.path().to_owned());
            let cert =
                tokio::task::spawn_blocking(move || cert::generate_cert(&openssl, &cert_dir))
                    .await
                    .context("the certificate task failed")??;
            Some(cert)
        }
        _ => None,
    };

    let (mut origins, servers) =
        start_origins(&options.bench, &tools.taskset, options.load_cpu).await?;
    let bulk_source = if options.scenarios.iter().any(|s| s.bulk()) {
        let (source, addr) =
            start_bulk_source(&options.bench, &tools.taskset, options.load_cpu).await?;
        origins.push(source);
        Some((BULK_SOURCE.to_owned(), addr))
    } else {
        None
    };

    let bench = Bench {
        options,
        binaries: ProxyBinaries {
            fulcrum: &options.fulcrum,
            haproxy: &tools.haproxy,
            taskset: &tools.taskset,
        },
        load: LoadRunner {
            program: &options.load_cmd,
            taskset: &tools.taskset,
            cpu: options.load_cpu,
        },
        fetcher: BulkFetcher {
            program: &options.bench,
            taskset: &tools.taskset,
            cpu: options.load_cpu,
        },
        scraper: Scraper {
            program: &options.bench,
            taskset: &tools.taskset,
            cpu: options.load_cpu,
        },
        dir: dir.path(),
        servers,
        bulk_source,
        cert,
        clock_ticks: machine.clock_ticks_per_second,
    };
    let scenarios = bench.all_scenarios().await;
    // Stopped and waited for whatever happened, so a caller finds nothing left running.
    let mut stopped = Ok(());
    for origin in origins {
        let result = origin.stop().await;
        stopped = stopped.and(result);
    }
    // The scenarios' error first: it is the one that says what went wrong.
    let scenarios = scenarios?;
    stopped?;

    let mut report = CompareReport {
        schema: SCHEMA.to_owned(),
        date: started.rfc3339(),
        command: options.command.clone(),
        machine,
        settings: Settings {
            scenarios: options.scenarios.clone(),
            rounds: options.rounds,
            duration_s: options.duration.as_secs_f64(),
            warmup_s: options.warmup.as_secs_f64(),
            connections: options.connections,
            idle_connections: options.idle_connections,
            bulk_size_bytes: options.bulk_size,
            proxy_cpu: options.proxy_cpu,
            load_cpu: options.load_cpu,
            quick: options.quick,
            fulcrum: options.fulcrum.clone(),
            haproxy: tools.haproxy.clone(),
            load_cmd: options.load_cmd.clone(),
        },
        scenarios,
        files: Vec::new(),
    };
    if let Some(out) = &options.out {
        let svg = chart_of(&report)?;
        let paths = OutputPaths::new(out, &started.date());
        report.files = paths.files(svg.is_some());
        let json = serde_json::to_string_pretty(&report).context("cannot serialise the report")?;
        write_outputs(&paths, &json, &render_markdown(&report), svg.as_deref())?;
        info!(dir = %out.display(), "results written");
    }
    Ok(report)
}
