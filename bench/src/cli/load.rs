//! `fulcrum-bench load`: generates HTTP load against a URL and prints what it measured, as a
//! wrk-like summary or, with `--json`, as the [`Report`] that `compare` reads. Logs go to stderr.
//!
//! [`Report`]: fulcrum_bench::load::Report

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use fulcrum_bench::load::{self, LoadOptions, Protocol, Stop};
use fulcrum_bench::size::parse_size;

/// Options of `fulcrum-bench load`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// URL to load: `http://host:port/path` or `https://...`.
    #[arg(long)]
    url: String,
    /// Client connections.
    #[arg(long, short = 'c', default_value_t = LoadOptions::default().connections)]
    connections: usize,
    /// How long to measure, after the warm-up: `10s`, `1m`.
    #[arg(long, short = 'd', default_value = "10s", conflicts_with = "requests")]
    duration: humantime::Duration,
    /// Measure this many requests (after the warm-up) instead of a duration.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Load sent before measuring, excluded from the results: `1s`.
    #[arg(long, default_value = "0s")]
    warmup: humantime::Duration,
    /// Requests per second over all connections, each latency measured from the request's
    /// intended send time (corrected for coordinated omission). Without it, each connection
    /// sends as soon as its previous answer is in.
    #[arg(long)]
    rate: Option<f64>,
    /// Request method.
    #[arg(long, default_value_t = LoadOptions::default().method)]
    method: String,
    /// Paths requested in turn instead of the URL's: `/a,/b`, repeatable; `@FILE` reads one path
    /// per line (blank lines and `#` comments skipped).
    #[arg(long, value_name = "PATHS", value_delimiter = ',', num_args = 1..)]
    path_list: Vec<String>,
    /// Request body size: `0`, `16KiB`.
    #[arg(long, value_parser = parse_size, default_value_t = LoadOptions::default().body_size)]
    body_size: usize,
    /// Extra request header, `'Name: value'`; repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// HTTP/1.1: a new connection per request, sending `Connection: close`.
    #[arg(long)]
    close: bool,
    /// HTTP/2: ALPN h2 over https, prior knowledge (h2c) over http.
    #[arg(long)]
    h2: bool,
    /// HTTP/2: concurrent streams per connection.
    #[arg(long, default_value_t = LoadOptions::default().streams)]
    streams: usize,
    /// https: accept any server certificate.
    #[arg(long)]
    insecure: bool,
    /// https: trust the certificates in this PEM file.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    cacert: Option<PathBuf>,
    /// Longest a request may take, connecting included, before it counts as a timeout.
    #[arg(long, default_value = "5s")]
    timeout: humantime::Duration,
    /// Print only the JSON report on stdout.
    #[arg(long)]
    json: bool,
    /// Source address for client sockets; repeatable, used in turn by successive connections.
    #[arg(long = "bind-ip", value_name = "IP")]
    bind_ips: Vec<IpAddr>,
    /// Threads, each with its own single-threaded runtime and share of the connections.
    #[arg(long, short = 't', default_value_t = LoadOptions::default().threads)]
    threads: usize,
}

impl Args {
    fn options(&self) -> anyhow::Result<LoadOptions> {
        Ok(LoadOptions {
            url: self.url.clone(),
            connections: self.connections,
            stop: match self.requests {
                Some(requests) => Stop::Requests(requests),
                None => Stop::Duration(self.duration.into()),
            },
            warmup: self.warmup.into(),
            rate: self.rate,
            method: self.method.clone(),
            paths: read_paths(&self.path_list)?,
            body_size: self.body_size,
            headers: self.headers.clone(),
            keep_alive: !self.close,
            protocol: if self.h2 {
                Protocol::H2
            } else {
                Protocol::Http1
            },
            streams: self.streams,
            insecure: self.insecure,
            cacert: self.cacert.clone(),
            timeout: self.timeout.into(),
            threads: self.threads,
            bind_ips: self.bind_ips.clone(),
        })
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let report = load::run(&args.options()?).await?;
    if args.json {
        let json = serde_json::to_string_pretty(&report).context("cannot write the report")?;
        println!("{json}");
    } else {
        print!("{}", load::summary(&report));
    }
    Ok(())
}

/// `'Name: value'` as `(name, value)`; both are checked when the run starts.
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("header {text:?} is not 'Name: value'"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

/// The `--path-list` entries with each `@FILE` replaced by the paths it lists.
fn read_paths(entries: &[String]) -> anyhow::Result<Vec<String>> {
    let mut paths = Vec::new();
    for entry in entries {
        match entry.strip_prefix('@') {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read path list {file}"))?;
                paths.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|line| !line.is_empty() && !line.starts_with('#'))
                        .map(str::to_owned),
                );
            }
            None => paths.push(entry.clone()),
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::Write;
    use std::time::Duration;

    use fulcrum_bench::load::{LoadOptions, Protocol, Stop};

    use super::Args;
    use crate::cli::parse_args;

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        parse_args("load", argv)
    }

    fn options(argv: &[&str]) -> LoadOptions {
        parse(argv).unwrap().options().unwrap()
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let url = "http://127.0.0.1:8081/";
        let options = options(&["--url", url]);
        assert_eq!(options, LoadOptions::default());
        assert!(!parse(&["--url", url]).unwrap().json);
    }

    #[test]
    fn every_option_is_read() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"/c\n\n# comment\n/d?x=1\n").unwrap();
        let at_file = format!("@{}", file.path().display());
        let options = options(&[
            "--url",
            "https://example.test:8443/x",
            "--connections",
            "8",
            "--requests",
            "1000",
            "--warmup",
            "1s",
            "--rate",
            "2500.5",
            "--method",
            "POST",
            "--path-list",
            "/a,/b",
            "--path-list",
            &at_file,
            "--body-size",
            "16KiB",
            "--header",
            "X-One: 1",
            "-H",
            "X-Two:two:2",
            "--h2",
            "--streams",
            "4",
            "--insecure",
            "--timeout",
            "250ms",
            "--bind-ip",
            "127.0.0.2",
            "--bind-ip",
            "127.0.0.3",
            "--threads",
            "2",
        ]);
        assert_eq!(
            options,
            LoadOptions {
                url: "https://example.test:8443/x".into(),
                connections: 8,
                stop: Stop::Requests(1000),
                warmup: Duration::from_secs(1),
                rate: Some(2500.5),
                method: "POST".into(),
                paths: vec!["/a".into(), "/b".into(), "/c".into(), "/d?x=1".into()],
                body_size: 16 << 10,
                headers: vec![
                    ("X-One".into(), "1".into()),
                    ("X-Two".into(), "two:2".into())
                ],
                keep_alive: true,
                protocol: Protocol::H2,
                streams: 4,
                insecure: true,
                cacert: None,
                timeout: Duration::from_millis(250),
                threads: 2,
                bind_ips: vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()],
            }
        );
    }

    #[test]
    fn close_json_duration_and_cacert() {
        let args = parse(&[
            "--url",
            "https://h/",
            "--close",
            "--json",
            "--duration",
            "1500ms",
            "--cacert",
            "ca.pem",
        ])
        .unwrap();
        assert!(args.json);
        let options = args.options().unwrap();
        assert!(!options.keep_alive);
        assert_eq!(options.stop, Stop::Duration(Duration::from_millis(1500)));
        assert_eq!(options.cacert, Some("ca.pem".into()));
    }

    #[test]
    fn refuses_contradictions_and_bad_values() {
        for argv in [
            &["--connections", "8"][..],
            &["--url", "http://h/", "--duration", "1s", "--requests", "5"],
            &["--url", "https://h/", "--insecure", "--cacert", "ca.pem"],
            &["--url", "http://h/", "--header", "no colon"],
            &["--url", "http://h/", "--body-size", "lots"],
            &["--url", "http://h/", "--bind-ip", "not-an-ip"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?}");
        }
        let missing = parse(&["--url", "http://h/", "--path-list", "@/nonexistent/paths"]);
        assert!(missing.unwrap().options().is_err());
    }
}
