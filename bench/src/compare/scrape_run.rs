//! Running `fulcrum-bench scrape` as a subprocess pinned to the load CPU next to a load run, so
//! the scraper's CPU is the load side's and only the admin server's work lands on the proxy; and
//! reading, then judging, the [`ScrapeReport`] it prints with `--json`.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use super::admin::{AdminSite, PASSWORD, USER};
use super::process::{Launch, parse_json_report};
use crate::scrape::{SCHEMA, ScrapeReport};

/// How often an aggressive Prometheus scrapes.
pub(crate) const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// Time the scraper may take beyond its duration: starting, a last slow scrape, the report.
const SCRAPE_SLACK: Duration = Duration::from_secs(60);

/// Where the scraper is and where it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scraper<'a> {
    /// The `fulcrum-bench` binary.
    pub(crate) program: &'a Path,
    pub(crate) taskset: &'a Path,
    pub(crate) cpu: usize,
}

impl Scraper<'_> {
    /// Scrapes `admin` every [`SCRAPE_INTERVAL`] for `duration`.
    pub(crate) async fn run(
        &self,
        admin: &AdminSite,
        duration: Duration,
    ) -> anyhow::Result<ScrapeReport> {
        let args = scrape_args(admin, duration);
        let launch = Launch {
            taskset: self.taskset,
            cpu: self.cpu,
            nofile: 1024,
            program: self.program,
            args: args.iter().map(Into::into).collect(),
        };
        launch
            .report(duration + SCRAPE_SLACK, "scrape", parse_scrape_report)
            .await
    }
}

/// The command line of a scraper, after the program name: `/metrics` as Prometheus text and the
/// stats page as JSON, both with the login.
pub(crate) fn scrape_args(admin: &AdminSite, duration: Duration) -> Vec<String> {
    vec![
        "scrape".to_owned(),
        "--url".to_owned(),
        admin.metrics_url(),
        "--json-url".to_owned(),
        admin.stats_url(),
        "--user".to_owned(),
        format!("{USER}:{PASSWORD}"),
        "--interval".to_owned(),
        format!("{}ms", SCRAPE_INTERVAL.as_millis()),
        "--duration".to_owned(),
        format!("{}ms", duration.as_millis()),
        "--json".to_owned(),
    ]
}

/// Reads the report printed on stdout.
pub(crate) fn parse_scrape_report(stdout: &str) -> anyhow::Result<ScrapeReport> {
    parse_json_report(stdout, "scrape", SCHEMA, |r: &ScrapeReport| &r.schema)
}

/// Fails unless every target was scraped and every scrape passed: a metrics page that answered
/// 401, 500 or nothing cost the proxy less than a real one, and must not pass for cheap.
pub(crate) fn check_scrapes(report: &ScrapeReport) -> anyhow::Result<()> {
    if report.targets.is_empty() {
        bail!("the scraper had no target");
    }
    for target in &report.targets {
        if target.attempts == 0 {
            bail!("{} was never scraped", target.url);
        }
        if target.ok < target.attempts {
            bail!(
                "{}: {} of {} scrapes failed, the first with: {}",
                target.url,
                target.attempts - target.ok,
                target.attempts,
                target.first_failure.as_deref().unwrap_or("no reason given")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::{check_scrapes, parse_scrape_report, scrape_args};
    use crate::compare::admin::AdminSite;
    use crate::scrape::ScrapeReport;

    /// A report as `fulcrum-bench scrape --json` prints it: 10 good scrapes of each target.
    pub(crate) const REPORT: &str = r#"{
        "schema": "fulcrum-bench/scrape/v1",
        "interval_s": 1.0,
        "duration_s": 10.0,
        "targets": [
            { "url": "http://127.0.0.1:9/metrics", "json": false, "attempts": 10, "ok": 10,
              "bytes": 81920, "max_latency_us": 900, "first_failure": null },
            { "url": "http://127.0.0.1:9/stats", "json": true, "attempts": 10, "ok": 10,
              "bytes": 40960, "max_latency_us": 700, "first_failure": null }
        ]
    }"#;

    #[test]
    fn command_line() {
        let admin = AdminSite {
            listen: "127.0.0.1:9".parse().unwrap(),
        };
        assert_eq!(
            scrape_args(&admin, Duration::from_millis(10_000)).join(" "),
            "scrape --url http://127.0.0.1:9/metrics --json-url http://127.0.0.1:9/stats \
             --user bench:bench-scraper --interval 1000ms --duration 10000ms --json"
        );
    }

    #[test]
    fn reads_and_judges_reports() {
        let report = parse_scrape_report(REPORT).unwrap();
        assert_eq!((report.attempts(), report.ok()), (20, 20));
        check_scrapes(&report).unwrap();
        let other = REPORT.replace("scrape/v1", "scrape/v9");
        assert!(format!("{:#}", parse_scrape_report(&other).unwrap_err()).contains("scrape/v9"));
        assert!(parse_scrape_report("20 scrapes").is_err());
    }

    #[test]
    fn a_failed_or_missing_scrape_fails_the_run() {
        let good = parse_scrape_report(REPORT).unwrap();
        let mut failed = good.clone();
        failed.targets[1].ok = 9;
        failed.targets[1].first_failure = Some("http://127.0.0.1:9/stats: status 401".to_owned());
        let error = check_scrapes(&failed).unwrap_err().to_string();
        assert!(
            error.contains("1 of 10 scrapes failed") && error.contains("status 401"),
            "{error}"
        );
        let mut never = good.clone();
        never.targets[0].attempts = 0;
        never.targets[0].ok = 0;
        assert!(check_scrapes(&never).is_err());
        let nothing = ScrapeReport {
            targets: Vec::new(),
            ..good
        };
        assert!(check_scrapes(&nothing).is_err());
    }
}
