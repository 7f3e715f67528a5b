//! `fulcrum-bench bulk`: bulk TCP streams. `bulk source` sends whatever a client asks for until
//! SIGINT or SIGTERM; `bulk fetch` asks for a size, reads it to the end and prints how fast it
//! came, as one line or, with `--json`, as the [`BulkReport`] that `compare` reads.
//!
//! [`BulkReport`]: fulcrum_bench::bulk::BulkReport

use std::net::SocketAddr;

use anyhow::Context;
use fulcrum_bench::bulk::{self, start_source};
use fulcrum_bench::size::parse_size;
use tracing::info;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, clap::Subcommand)]
enum Role {
    /// Send as many bytes as each client asks for; prints `bulk source listening on ADDR`.
    Source {
        /// Address to listen on; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
    /// Ask a source (or a proxy in front of one) for SIZE bytes and time them to the end.
    Fetch {
        /// The source or the proxy, `IP:port`.
        #[arg(long)]
        connect: SocketAddr,
        /// Bytes to ask for: `1GiB`, `16MiB`.
        #[arg(long, value_parser = parse_size, default_value = "1GiB")]
        size: usize,
        /// Print only the JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.role {
        Role::Source { listen } => {
            let source = start_source(listen)
                .with_context(|| format!("cannot start a bulk source on {listen}"))?;
            println!("bulk source listening on {}", source.addr());
            super::shutdown_signal()
                .await
                .context("cannot wait for SIGINT or SIGTERM")?;
            info!(addr = %source.addr(), "bulk source stopping");
            Ok(())
        }
        Role::Fetch {
            connect,
            size,
            json,
        } => {
            let report = bulk::fetch(connect, size as u64)
                .await
                .with_context(|| format!("cannot fetch {size} bytes from {connect}"))?;
            if json {
                let json =
                    serde_json::to_string_pretty(&report).context("cannot write the report")?;
                println!("{json}");
            } else {
                println!(
                    "{} bytes from {} in {:.3} s: {:.0} MB/s",
                    report.bytes, report.addr, report.seconds, report.megabytes_per_second
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{Args, Role};
    use crate::cli::parse_args;

    #[test]
    fn fetch_options() {
        let args = parse_args::<Args>(
            "bulk",
            &[
                "fetch",
                "--connect",
                "127.0.0.1:9",
                "--size",
                "16MiB",
                "--json",
            ],
        )
        .unwrap();
        let Role::Fetch {
            connect,
            size,
            json,
        } = args.role
        else {
            panic!("not fetch: {args:?}");
        };
        assert_eq!(connect, "127.0.0.1:9".parse().unwrap());
        assert_eq!(size, 16 << 20);
        assert!(json);
        let args = parse_args::<Args>("bulk", &["fetch", "--connect", "127.0.0.1:9"]).unwrap();
        assert!(matches!(args.role, Role::Fetch { size, json: false, .. } if size == 1 << 30));
    }

    #[test]
    fn source_options() {
        let args = parse_args::<Args>("bulk", &["source", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(matches!(args.role, Role::Source { listen } if listen.port() == 0));
        assert!(
            parse_args::<Args>("bulk", &["fetch"]).is_err(),
            "--connect is required"
        );
        assert!(parse_args::<Args>("bulk", &["fetch", "--connect", "x"]).is_err());
    }
}
