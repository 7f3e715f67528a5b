//! `fulcrum-bench scrape`: fetches URLs once per interval for a while, as a Prometheus scraper
//! would, checks each answer and counts the good ones; prints one line per URL or, with
//! `--json`, the [`ScrapeReport`] that `compare` reads. It exits 0 whatever the answers were:
//! the report says how many failed, and its reader judges them.
//!
//! [`ScrapeReport`]: fulcrum_bench::scrape::ScrapeReport

use std::time::Duration;

use anyhow::{Context, bail};
use fulcrum_bench::scrape::{ScrapeOptions, Target, scrape};

/// Options of `fulcrum-bench scrape`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A URL to scrape, `http://host:port/path`: it must answer 200 with a body. Repeatable.
    #[arg(long = "url", value_name = "URL", value_parser = plain_target)]
    urls: Vec<Target>,
    /// A URL asked for with `Accept: application/json`: it must answer 200 with a JSON body.
    /// Repeatable.
    #[arg(long = "json-url", value_name = "URL", value_parser = json_target)]
    json_urls: Vec<Target>,
    /// Credentials sent with HTTP basic auth on every request, `NAME:PASSWORD`.
    #[arg(long, value_name = "NAME:PASSWORD", value_parser = parse_user)]
    user: Option<(String, String)>,
    /// Time between two scrapes of a URL, and the longest one scrape may take.
    #[arg(long, default_value = "1s")]
    interval: humantime::Duration,
    /// How long to keep scraping: scrapes start at 0, INTERVAL, 2 × INTERVAL... before it ends.
    #[arg(long, short = 'd', default_value = "10s")]
    duration: humantime::Duration,
    /// Print only the JSON report on stdout.
    #[arg(long)]
    json: bool,
}

fn plain_target(url: &str) -> Result<Target, String> {
    Target::new(url, false)
}

fn json_target(url: &str) -> Result<Target, String> {
    Target::new(url, true)
}

fn parse_user(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok((name.to_owned(), password.to_owned())),
        _ => Err("expected NAME:PASSWORD".to_owned()),
    }
}

impl Args {
    fn options(self) -> anyhow::Result<ScrapeOptions> {
        let targets: Vec<Target> = self.urls.into_iter().chain(self.json_urls).collect();
        if targets.is_empty() {
            bail!("nothing to scrape: give --url or --json-url");
        }
        let interval = Duration::from(self.interval);
        if interval.is_zero() {
            bail!("--interval must be above zero");
        }
        Ok(ScrapeOptions {
            targets,
            interval,
            duration: self.duration.into(),
            basic_auth: self.user,
        })
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let json = args.json;
    let report = scrape(&args.options()?).await;
    if json {
        let json = serde_json::to_string_pretty(&report).context("cannot write the report")?;
        println!("{json}");
    } else {
        for target in &report.targets {
            let failure = target
                .first_failure
                .as_deref()
                .map_or(String::new(), |f| format!("; first failure: {f}"));
            println!(
                "{}: {} of {} scrapes good, {} bytes, slowest {} µs{failure}",
                target.url, target.ok, target.attempts, target.bytes, target.max_latency_us
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::Args;
    use crate::cli::parse_args;

    #[test]
    fn options() {
        let args = parse_args::<Args>(
            "scrape",
            &[
                "--url",
                "http://127.0.0.1:9/metrics",
                "--json-url",
                "http://127.0.0.1:9/stats",
                "--user",
                "bench:a:b",
                "--duration",
                "3s",
                "--json",
            ],
        )
        .unwrap();
        assert!(args.json);
        let options = args.options().unwrap();
        let urls: Vec<(String, bool)> = options
            .targets
            .iter()
            .map(|t| (t.url.to_string(), t.json))
            .collect();
        assert_eq!(
            urls,
            [
                ("http://127.0.0.1:9/metrics".to_owned(), false),
                ("http://127.0.0.1:9/stats".to_owned(), true)
            ]
        );
        assert_eq!(
            options.basic_auth,
            Some(("bench".to_owned(), "a:b".to_owned())),
            "the password may hold colons"
        );
        assert_eq!(options.interval, Duration::from_secs(1));
        assert_eq!(options.duration, Duration::from_secs(3));
    }

    #[test]
    fn refusals() {
        let no_url = parse_args::<Args>("scrape", &[]).unwrap();
        assert!(no_url.options().is_err());
        assert!(parse_args::<Args>("scrape", &["--url", "https://127.0.0.1:9/"]).is_err());
        assert!(parse_args::<Args>("scrape", &["--user", "nopassword"]).is_err());
        assert!(parse_args::<Args>("scrape", &["--user", ":x"]).is_err());
        let zero = parse_args::<Args>(
            "scrape",
            &["--url", "http://127.0.0.1:9/", "--interval", "0s"],
        )
        .unwrap();
        assert!(zero.options().is_err());
    }
}
