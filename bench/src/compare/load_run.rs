//! Running `fulcrum-bench load` (or the `--load-cmd` stand-in) as a subprocess pinned to the load
//! CPU, and reading the [`Report`] it prints with `--json`.

use std::path::Path;
use std::time::Duration;

use super::process::{Launch, parse_json_report};
use crate::load::{Report, SCHEMA};

/// Time a load run may take beyond its duration and warm-up: connecting, the report, a slow
/// shutdown. Past it the run is killed and the comparison fails.
const LOAD_SLACK: Duration = Duration::from_secs(60);

/// One load run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadSpec {
    pub(crate) url: String,
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    /// The load generator's own warm-up, excluded from its report.
    pub(crate) warmup: Option<Duration>,
    /// Requests per second; closed loop when `None`.
    pub(crate) rate: Option<f64>,
    /// The scenario's flags (`--method POST ...`, `--close`, `--h2`, ...).
    pub(crate) flags: Vec<String>,
}

/// Where the load generator is and where it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadRunner<'a> {
    /// The `fulcrum-bench` binary, or a stand-in taking the same `load ...` arguments.
    pub(crate) program: &'a Path,
    pub(crate) taskset: &'a Path,
    pub(crate) cpu: usize,
}

impl LoadRunner<'_> {
    /// Runs `spec` and returns the report.
    pub(crate) async fn run(&self, spec: &LoadSpec) -> anyhow::Result<Report> {
        let args = load_args(spec);
        let launch = Launch {
            taskset: self.taskset,
            cpu: self.cpu,
            nofile: spec.connections as u64 + 1024,
            program: self.program,
            args: args.iter().map(Into::into).collect(),
        };
        let patience = spec.duration + spec.warmup.unwrap_or_default() + LOAD_SLACK;
        launch.report(patience, "load", parse_report).await
    }
}

/// The command line of a load run, after the program name.
pub(crate) fn load_args(spec: &LoadSpec) -> Vec<String> {
    let mut args = vec![
        "load".to_owned(),
        "--url".to_owned(),
        spec.url.clone(),
        "--connections".to_owned(),
        spec.connections.to_string(),
        "--duration".to_owned(),
        millis(spec.duration),
    ];
    if let Some(warmup) = spec.warmup {
        args.extend(["--warmup".to_owned(), millis(warmup)]);
    }
    if let Some(rate) = spec.rate {
        // At least one request per second: a rate of 0 would be a closed loop or an error.
        args.extend(["--rate".to_owned(), format!("{:.0}", rate.max(1.0))]);
    }
    args.extend(spec.flags.iter().cloned());
    args.push("--json".to_owned());
    args
}

/// Durations as whole milliseconds, which any humantime parser reads.
fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// Reads the report: the whole of stdout, or else its last line that is a JSON object, in case
/// the generator printed something before it.
pub(crate) fn parse_report(stdout: &str) -> anyhow::Result<Report> {
    parse_json_report(stdout, "load", SCHEMA, |r: &Report| &r.schema)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::{LoadSpec, load_args, parse_report};

    /// A report as `fulcrum-bench load --json` prints it.
    pub(crate) const REPORT: &str = r#"{
        "schema": "fulcrum-bench/load/v1",
        "url": "http://127.0.0.1:8080/",
        "mode": "closed",
        "protocol": "http1",
        "keep_alive": true,
        "connections": 64,
        "rate": null,
        "duration_s": 10.0,
        "requests": 500000,
        "errors": { "connect": 0, "read": 1, "write": 0, "timeout": 0, "protocol": 0 },
        "status": { "200": 499999 },
        "throughput_rps": 50000.0,
        "bytes_read": 123456789,
        "latency_us": { "min": 40, "mean": 1270.5, "stdev": 300.25, "p50": 1200, "p90": 1500,
                        "p99": 2500, "p999": 4000, "max": 9000 },
        "distribution": [[0.0, 40], [50.0, 1200], [90.0, 1500], [99.0, 2500], [99.9, 4000],
                         [100.0, 9000]]
    }"#;

    #[test]
    fn reads_a_report() {
        let report = parse_report(REPORT).unwrap();
        assert_eq!(report.requests, 500_000);
        assert_eq!(report.errors.read, 1);
        assert_eq!(report.status.get(&200), Some(&499_999));
        assert_eq!(report.latency_us.p999, 4000);
        assert_eq!(report.distribution.len(), 6);
    }

    #[test]
    fn reads_the_last_json_line_after_chatter() {
        let compact: serde_json::Value = serde_json::from_str(REPORT).unwrap();
        let stdout = format!("warming up\n{compact}\n");
        assert_eq!(parse_report(&stdout).unwrap().requests, 500_000);
    }

    #[test]
    fn refuses_other_schemas_and_garbage() {
        let other = REPORT.replace("fulcrum-bench/load/v1", "fulcrum-bench/load/v9");
        assert!(
            parse_report(&other)
                .unwrap_err()
                .to_string()
                .contains("load/v9")
        );
        assert!(parse_report("not json").is_err());
        assert!(parse_report("{\"schema\": \"fulcrum-bench/load/v1\"}").is_err());
    }

    #[test]
    fn command_line() {
        let spec = LoadSpec {
            url: "https://127.0.0.1:1/".to_owned(),
            connections: 16,
            duration: Duration::from_millis(1500),
            warmup: Some(Duration::from_millis(200)),
            rate: Some(1234.6),
            flags: vec!["--h2".to_owned(), "--insecure".to_owned()],
        };
        assert_eq!(
            load_args(&spec).join(" "),
            "load --url https://127.0.0.1:1/ --connections 16 --duration 1500ms --warmup 200ms \
             --rate 1235 --h2 --insecure --json"
        );
    }
}
