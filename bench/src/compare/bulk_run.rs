//! Running `fulcrum-bench bulk fetch` as a subprocess pinned to the load CPU, and reading the
//! [`BulkReport`] it prints with `--json`: the bulk counterpart of [`super::load_run`].

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::process::{Launch, parse_json_report};
use crate::bulk::{BulkReport, SCHEMA};

/// Time a stream may take beyond what it would at [`SLOWEST`]: starting, connecting, a slow
/// shutdown. Past it the fetch is killed and the comparison fails.
const FETCH_SLACK: Duration = Duration::from_secs(60);

/// The slowest stream worth waiting for, in bytes per second (a proxy under valgrind).
const SLOWEST: u64 = 10_000_000;

/// Where the fetching client is and where it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BulkFetcher<'a> {
    /// The `fulcrum-bench` binary.
    pub(crate) program: &'a Path,
    pub(crate) taskset: &'a Path,
    pub(crate) cpu: usize,
}

impl BulkFetcher<'_> {
    /// Fetches `size` bytes through `addr`.
    pub(crate) async fn run(&self, addr: SocketAddr, size: u64) -> anyhow::Result<BulkReport> {
        let args = fetch_args(addr, size);
        let launch = Launch {
            taskset: self.taskset,
            cpu: self.cpu,
            nofile: 1024,
            program: self.program,
            args: args.iter().map(Into::into).collect(),
        };
        let patience = FETCH_SLACK + Duration::from_secs(size / SLOWEST);
        launch.report(patience, "bulk", parse_bulk_report).await
    }
}

/// The command line of a fetch, after the program name.
pub(crate) fn fetch_args(addr: SocketAddr, size: u64) -> Vec<String> {
    vec![
        "bulk".to_owned(),
        "fetch".to_owned(),
        "--connect".to_owned(),
        addr.to_string(),
        "--size".to_owned(),
        size.to_string(),
        "--json".to_owned(),
    ]
}

/// Reads the report printed on stdout.
pub(crate) fn parse_bulk_report(stdout: &str) -> anyhow::Result<BulkReport> {
    parse_json_report(stdout, "bulk", SCHEMA, |r: &BulkReport| &r.schema)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{fetch_args, parse_bulk_report};

    #[test]
    fn command_line() {
        assert_eq!(
            fetch_args("127.0.0.1:9".parse().unwrap(), 1 << 30).join(" "),
            "bulk fetch --connect 127.0.0.1:9 --size 1073741824 --json"
        );
    }

    #[test]
    fn reads_a_report_and_refuses_others() {
        let json = r#"{ "schema": "fulcrum-bench/bulk/v1", "addr": "127.0.0.1:9",
                        "bytes": 1000, "seconds": 0.5, "megabytes_per_second": 0.002 }"#;
        let report = parse_bulk_report(json).unwrap();
        assert_eq!((report.bytes, report.seconds), (1000, 0.5));
        let other = json.replace("bulk/v1", "bulk/v9");
        assert!(format!("{:#}", parse_bulk_report(&other).unwrap_err()).contains("bulk/v9"));
        assert!(parse_bulk_report("1000 bytes").is_err());
    }
}
