//! `fulcrum-bench probe` (hidden): the client of `failover`, run inside the lab's client
//! namespace. A TCP connect every interval, each with its own timeout; prints one summary line
//! or, with `--json`, the [`ProbeReport`] that `failover` reads.
//!
//! [`ProbeReport`]: fulcrum_bench::failover::ProbeReport

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use fulcrum_bench::failover::{client_gap, probe};

/// Options of `fulcrum-bench probe`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to connect, `IP:PORT`.
    #[arg(long)]
    addr: SocketAddr,
    /// Time between two connect attempts (they overlap when one hangs).
    #[arg(long, default_value = "10ms")]
    interval: humantime::Duration,
    /// How long one attempt may take before it counts as failed.
    #[arg(long, default_value = "50ms")]
    timeout: humantime::Duration,
    /// How long to keep probing.
    #[arg(long, short = 'd', default_value = "8s")]
    duration: humantime::Duration,
    /// Print only the JSON report on stdout.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let (interval, timeout) = (Duration::from(args.interval), Duration::from(args.timeout));
    if interval.is_zero() || timeout.is_zero() {
        bail!("--interval and --timeout must be above zero");
    }
    let report = probe(args.addr, interval, timeout, args.duration.into()).await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("cannot serialise the report")?
        );
        return Ok(());
    }
    let ok = report.attempts.iter().filter(|a| a.ok()).count();
    let gap = match client_gap(&report.attempts) {
        Ok(Some(gap)) => format!(
            "longest gap {:?} ({} failed connects, from {:?})",
            gap.length(),
            gap.failures,
            gap.from
        ),
        Ok(None) => "no gap".to_owned(),
        Err(error) => error.to_string(),
    };
    println!(
        "{}: {ok}/{} connects succeeded; {gap}",
        args.addr,
        report.attempts.len()
    );
    Ok(())
}
