//! `fulcrum-bench origin`: runs an origin server until SIGINT or SIGTERM.
//!
//! Once bound it prints `origin NAME listening on ADDR` on stdout, so a script that passed port 0
//! can read the port it got.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use fulcrum_bench::origin::{self, OriginOptions};
use fulcrum_bench::size::parse_size;
use tracing::info;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Name sent in `X-Server` and at the start of every body.
    #[arg(long, default_value_t = OriginOptions::default().name)]
    name: String,
    /// Size of the default body: `64`, `1KiB`, `4MiB`.
    #[arg(long, value_parser = parse_size, default_value_t = OriginOptions::default().body_size)]
    body_size: usize,
    /// Answer with the request body.
    #[arg(long)]
    echo: bool,
    /// Wait before every answer: `10ms`, `1s`.
    #[arg(long, default_value_t = OriginOptions::default().delay.into())]
    delay: humantime::Duration,
    /// Close the connection after every answer.
    #[arg(long)]
    no_keepalive: bool,
    /// Status of every answer (200 to 599).
    #[arg(long, default_value_t = OriginOptions::default().status)]
    status: u16,
    /// Store `POST`/`PUT /files/NAME` bodies in this directory and serve them to `GET`.
    #[arg(long, value_name = "DIR")]
    files: Option<PathBuf>,
}

impl Args {
    fn options(&self) -> OriginOptions {
        OriginOptions {
            name: self.name.clone(),
            body_size: self.body_size,
            echo: self.echo,
            delay: self.delay.into(),
            keep_alive: !self.no_keepalive,
            status: self.status,
            files: self.files.clone(),
        }
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let origin = origin::start(args.listen, args.options())
        .await
        .with_context(|| format!("cannot start origin on {}", args.listen))?;
    println!("origin {} listening on {}", origin.name(), origin.addr());
    super::shutdown_signal()
        .await
        .context("cannot wait for SIGINT or SIGTERM")?;
    info!(name = origin.name(), "origin stopping");
    origin.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use fulcrum_bench::origin::OriginOptions;

    use super::Args;
    use crate::cli::parse_args;

    fn options(argv: &[&str]) -> OriginOptions {
        parse_args::<Args>("origin", argv).unwrap().options()
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        assert_eq!(options(&[]), OriginOptions::default());
    }

    #[test]
    fn every_option_is_read() {
        let options = options(&[
            "--listen",
            "127.0.0.1:0",
            "--name",
            "s1",
            "--body-size",
            "1KiB",
            "--echo",
            "--delay",
            "10ms",
            "--no-keepalive",
            "--status",
            "503",
            "--files",
            "/srv/uploads",
        ]);
        assert_eq!(
            options,
            OriginOptions {
                name: "s1".to_owned(),
                body_size: 1024,
                echo: true,
                delay: Duration::from_millis(10),
                keep_alive: false,
                status: 503,
                files: Some("/srv/uploads".into()),
            }
        );
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(parse_args::<Args>("origin", &["--body-size", "lots"]).is_err());
    }
}
