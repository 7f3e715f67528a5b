//! `fulcrum-bench`: Fulcrum's test and benchmark tool. Each subcommand lives in `cli/`; this file
//! only parses the command line, sets up logging and dispatches.

mod cli;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "fulcrum-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an origin (real) server to put behind the proxy.
    Origin(cli::origin::Args),
    /// Generate HTTP load against a URL and report throughput and latency.
    Load(cli::load::Args),
    /// Send or time bulk TCP streams (`bulk source`, `bulk fetch`).
    Bulk(cli::bulk::Args),
    /// Fetch URLs once per interval, as a Prometheus scraper would, and count the good answers.
    Scrape(cli::scrape::Args),
    /// Compare Fulcrum with HAProxy side by side on the same machine.
    Compare(cli::compare::Args),
    /// Measure the gap a client sees when the VRRP master fails, Fulcrum against keepalived
    /// (needs root).
    Failover(cli::failover::Args),
    /// Measure Fulcrum's replicated volume over NBD against qemu-nbd: sequential writes alone
    /// and as a protocol C pair, 4 KiB write latency, and a resync.
    Nbd(cli::nbd::Args),
    /// Measure Fulcrum's two-way directory sync against lsyncd and rsync: 4 KiB change
    /// latency, the initial sync of a tree, and the bytes a 1% change sends.
    Sync(cli::sync::Args),
    /// Run seed 004's site under steady load for minutes with a fault every 30 s, and report
    /// failed requests, failovers, lost writes and memory growth (needs root).
    Soak(cli::soak::Args),
    /// Connect to an address every few ms and record which connects failed (`failover`'s
    /// client, run inside its client namespace).
    #[command(hide = true)]
    Probe(cli::probe::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs go to stderr: stdout carries the lines scripts read, such as the bound address.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Origin(args) => cli::origin::run(args).await,
        Command::Load(args) => cli::load::run(args).await,
        Command::Bulk(args) => cli::bulk::run(args).await,
        Command::Scrape(args) => cli::scrape::run(args).await,
        Command::Compare(args) => cli::compare::run(args).await,
        Command::Failover(args) => cli::failover::run(args).await,
        Command::Nbd(args) => cli::nbd::run(args).await,
        Command::Sync(args) => cli::sync::run(args).await,
        Command::Soak(args) => cli::soak::run(args).await,
        Command::Probe(args) => cli::probe::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
