//! Running a load: check the options into a plan, start one thread per `threads` with its own
//! single-threaded runtime and its share of the connections, then merge what the threads
//! recorded into the report.

use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::{JoinSet, LocalSet};
use tokio::time::Instant;
use tracing::info;

use super::connect::{Connect, TcpConnector, TlsConnector};
use super::h2::H2;
use super::http1::Http1;
use super::options::{LoadOptions, Protocol, Stop};
use super::recorder::Recorder;
use super::report::{Report, SCHEMA};
use super::request::RequestSpec;
use super::schedule::{Pacing, Window};
use super::target::Target;
use super::worker::Worker;
use super::{stats, tls};

/// Runs a load on threads of its own and returns once it is over. Blocks: call it from a thread
/// that may block, or use [`run`] from async code.
pub fn run_blocking(options: &LoadOptions) -> anyhow::Result<Report> {
    let plan = Arc::new(Plan::new(options)?);
    info!(
        url = %options.url,
        addr = %plan.target.addr,
        connections = options.connections,
        threads = plan.threads,
        protocol = options.protocol.name(),
        rate = ?options.rate,
        "load starting"
    );
    let window = Arc::new(Window::new(Instant::now(), options.warmup, options.stop));
    let threads = (0..plan.threads)
        .map(|thread| {
            let plan = plan.clone();
            let window = window.clone();
            thread::Builder::new()
                .name(format!("load-{thread}"))
                .spawn(move || run_thread(&plan, window, thread))
                .context("cannot start a load thread")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut total = Recorder::default();
    for thread in threads {
        let recorder = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        total
            .merge(&recorder)
            .context("cannot merge latency histograms")?;
    }
    let elapsed = Instant::now().saturating_duration_since(window.measure_from());
    let report = report(options, &total, elapsed);
    info!(
        requests = report.requests,
        rps = report.throughput_rps.round(),
        "load done"
    );
    Ok(report)
}

/// [`run_blocking`] on a blocking thread of the current runtime.
pub async fn run(options: &LoadOptions) -> anyhow::Result<Report> {
    let options = options.clone();
    tokio::task::spawn_blocking(move || run_blocking(&options))
        .await
        .context("the load run panicked")?
}

/// The options, checked and turned into what the threads need.
#[derive(Debug)]
struct Plan {
    target: Target,
    protocol: Protocol,
    http1: Arc<Http1>,
    h2: Arc<H2>,
    tcp: TcpConnector,
    tls: Option<TlsConnector>,
    connections: usize,
    threads: usize,
    pacing: Pacing,
    timeout: Duration,
}

impl Plan {
    fn new(options: &LoadOptions) -> anyhow::Result<Self> {
        if options.connections == 0 {
            bail!("connections must be at least 1");
        }
        if options.threads == 0 {
            bail!("threads must be at least 1");
        }
        if options.streams == 0 {
            bail!("streams must be at least 1");
        }
        if options.timeout.is_zero() {
            bail!("timeout must be positive");
        }
        match options.stop {
            Stop::Duration(duration) if duration.is_zero() => bail!("duration must be positive"),
            Stop::Requests(0) => bail!("requests must be at least 1"),
            _ => {}
        }
        if options.protocol == Protocol::H2 && !options.keep_alive {
            bail!("--close is for HTTP/1.1; HTTP/2 always keeps its connections");
        }
        let target = Target::resolve(&options.url, &options.bind_ips)?;
        let spec = RequestSpec::new(options, &target)?;
        let senders = match options.protocol {
            Protocol::Http1 => options.connections,
            Protocol::H2 => options.connections * options.streams,
        };
        let pacing = match options.rate {
            None => Pacing::Closed,
            Some(rate) if rate.is_finite() && rate > 0.0 => Pacing::Rate {
                rate,
                slots: senders,
            },
            Some(rate) => bail!("rate must be a positive number, not {rate}"),
        };
        let tcp = TcpConnector::new(target.addr, &options.bind_ips);
        let tls = if target.tls {
            let alpn: &[u8] = match options.protocol {
                Protocol::Http1 => b"http/1.1",
                Protocol::H2 => b"h2",
            };
            let config = tls::client_config(options.insecure, options.cacert.as_deref(), alpn)?;
            Some(TlsConnector::new(
                tcp.clone(),
                config,
                tls::server_name(&target.host)?,
            ))
        } else {
            None
        };
        Ok(Self {
            protocol: options.protocol,
            http1: Arc::new(Http1::new(&spec, options.keep_alive)),
            h2: Arc::new(H2::new(&spec, target.tls, options.streams)?),
            target,
            tcp,
            tls,
            connections: options.connections,
            // A thread without connections would only cost a runtime.
            threads: options.threads.min(options.connections),
            pacing,
            timeout: options.timeout,
        })
    }
}

/// One thread: its runtime, its connections (`thread`, `thread + threads`, ...) and its recorder.
fn run_thread(plan: &Plan, window: Arc<Window>, thread: usize) -> anyhow::Result<Recorder> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let worker = Rc::new(Worker::new(window, plan.pacing, plan.timeout));
    let indexes = (thread..plan.connections).step_by(plan.threads);
    let local = LocalSet::new();
    local.block_on(&runtime, async {
        match &plan.tls {
            Some(tls) => send_all(plan, &worker, tls.clone(), indexes).await,
            None => send_all(plan, &worker, plan.tcp.clone(), indexes).await,
        }
    });
    Ok(worker.finish())
}

/// Runs the connections `indexes` to the end of their schedules.
async fn send_all<C: Connect + 'static>(
    plan: &Plan,
    worker: &Rc<Worker>,
    connector: C,
    indexes: impl Iterator<Item = usize>,
) {
    let connector = Rc::new(connector);
    let mut connections = JoinSet::new();
    for index in indexes {
        match plan.protocol {
            Protocol::Http1 => connections.spawn_local(super::http1::send(
                worker.clone(),
                connector.clone(),
                plan.http1.clone(),
                index,
            )),
            Protocol::H2 => connections.spawn_local(super::h2::send(
                worker.clone(),
                connector.clone(),
                plan.h2.clone(),
                index,
            )),
        };
    }
    while connections.join_next().await.is_some() {}
}

/// The report of a run that recorded `total` over `elapsed` (warm-up excluded).
fn report(options: &LoadOptions, total: &Recorder, elapsed: Duration) -> Report {
    let duration_s = elapsed.as_secs_f64();
    let requests = total.requests();
    Report {
        schema: SCHEMA.to_owned(),
        url: options.url.clone(),
        mode: if options.rate.is_some() {
            "rate"
        } else {
            "closed"
        }
        .to_owned(),
        protocol: options.protocol.name().to_owned(),
        keep_alive: options.keep_alive,
        connections: options.connections,
        rate: options.rate,
        duration_s,
        requests,
        errors: total.errors.clone(),
        status: total.statuses().collect(),
        throughput_rps: if duration_s > 0.0 {
            requests as f64 / duration_s
        } else {
            0.0
        },
        bytes_read: total.bytes_read,
        latency_us: stats::summary(&total.latency),
        distribution: stats::distribution(&total.latency),
        // Service time is latency unless requests have due times of their own.
        service_us: stats::summary(if options.rate.is_some() {
            &total.service
        } else {
            &total.latency
        }),
        connects: total.connects,
        threads: options.threads.min(options.connections),
        streams: (options.protocol == Protocol::H2).then_some(options.streams),
    }
}
