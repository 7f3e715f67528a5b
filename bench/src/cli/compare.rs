//! `fulcrum-bench compare`: Fulcrum and HAProxy side by side on this machine. Progress goes to
//! stderr, the Markdown tables to stdout, and the result files into `--out`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use fulcrum_bench::compare::{
    self, CompareOptions, Scenario, Sizing, parse_scenarios, render_markdown,
};
use fulcrum_bench::size::parse_size;

/// Options of `fulcrum-bench compare`. Those without a default here take the full-run value, or
/// the smoke-test one with `--quick`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The fulcrum binary [default: `fulcrum` next to this executable].
    #[arg(long)]
    fulcrum: Option<PathBuf>,
    /// The haproxy binary [default: `haproxy` in PATH, /usr/sbin or /usr/local/sbin].
    #[arg(long)]
    haproxy: Option<PathBuf>,
    /// `all`, or a comma-separated list of get, post, close, cookie, tls, h2, tcp-close, tcp-bulk,
    /// get-metrics (Fulcrum with metrics on against off) [default: all; get,cookie,tcp-close,
    /// tcp-bulk with --quick].
    #[arg(long, value_parser = parse_scenarios)]
    scenarios: Option<Scenarios>,
    /// Rounds per scenario, each measuring Fulcrum and HAProxy, Fulcrum first in odd rounds and
    /// HAProxy first in even ones (get-metrics: Fulcrum, then Fulcrum with metrics on)
    /// [default: 3; 1 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// Length of each measured run [default: 10s; 1s with --quick].
    #[arg(long)]
    duration: Option<humantime::Duration>,
    /// Warm-up before each saturation run [default: 2s; 200ms with --quick].
    #[arg(long)]
    warmup: Option<humantime::Duration>,
    /// Load generator connections [default: 64; 16 with --quick].
    #[arg(long)]
    connections: Option<usize>,
    /// Idle keep-alive connections for the memory measurement; 0 skips it. Past ~25 000 they
    /// come from 127.0.0.2 to 127.0.0.9 [default: 10000; 500 with --quick].
    #[arg(long)]
    idle_connections: Option<usize>,
    /// Bytes of each tcp-bulk stream: `1GiB`, `256MiB` [default: 1GiB; 16MiB with --quick].
    #[arg(long, value_parser = parse_size)]
    bulk_size: Option<usize>,
    /// The CPU the proxies run on.
    #[arg(long, default_value_t = 0)]
    proxy_cpu: usize,
    /// The CPU the origins and the load generator run on.
    #[arg(long, default_value_t = 1)]
    load_cpu: usize,
    /// Directory for compare-DATE.json, compare-DATE.md, latency-DATE.svg and latest.md
    /// [default: bench/results; none with --quick, so a smoke test never replaces real results].
    #[arg(long)]
    out: Option<PathBuf>,
    /// A tiny run for a smoke test: the numbers mean nothing, the flow is exercised.
    #[arg(long)]
    quick: bool,
    /// Program run as `PROGRAM load ... --json` instead of this executable's `load`.
    #[arg(long)]
    load_cmd: Option<PathBuf>,
}

/// Where a full run writes its files, relative to the workspace root it is normally run from.
const DEFAULT_OUT: &str = "bench/results";

/// A parsed `--scenarios` list (clap wants one value type per argument).
type Scenarios = Vec<Scenario>;

impl Args {
    fn options(self) -> anyhow::Result<CompareOptions> {
        let bench = std::env::current_exe().context("cannot find this executable's path")?;
        let fulcrum = match self.fulcrum {
            Some(path) => path,
            None => match bench.parent() {
                Some(dir) => dir.join("fulcrum"),
                None => bail!("cannot find the directory of {}", bench.display()),
            },
        };
        let mut options = if self.quick {
            CompareOptions::quick(bench, fulcrum)
        } else {
            CompareOptions::new(bench, fulcrum)
        };
        let sizing = if self.quick {
            Sizing::QUICK
        } else {
            Sizing::FULL
        };
        options.haproxy = self.haproxy;
        if let Some(load_cmd) = self.load_cmd {
            options.load_cmd = load_cmd;
        }
        if let Some(scenarios) = self.scenarios {
            options.scenarios = scenarios;
        }
        options.rounds = self.rounds.unwrap_or(sizing.rounds);
        options.duration = self.duration.map_or(sizing.duration, Duration::from);
        options.warmup = self.warmup.map_or(sizing.warmup, Duration::from);
        options.connections = self.connections.unwrap_or(sizing.connections);
        options.idle_connections = self.idle_connections.unwrap_or(sizing.idle_connections);
        options.bulk_size = self.bulk_size.map_or(sizing.bulk_size, |size| size as u64);
        options.proxy_cpu = self.proxy_cpu;
        options.load_cpu = self.load_cpu;
        options.out = match self.out {
            Some(out) => Some(out),
            None if self.quick => None,
            None => Some(PathBuf::from(DEFAULT_OUT)),
        };
        Ok(options)
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let options = args.options()?;
    // Dropping the comparison's future on a signal kills every process it started and removes
    // its temp dir, so a Ctrl-C leaves nothing behind.
    let report = tokio::select! {
        report = compare::compare(&options) => report?,
        signal = super::shutdown_signal() => {
            signal.context("cannot wait for SIGINT or SIGTERM")?;
            bail!("interrupted: every process started was stopped, nothing was written");
        }
    };
    print!("{}", render_markdown(&report));
    if report.files.is_empty() {
        eprintln!("no files written (--quick without --out)");
    }
    for file in &report.files {
        eprintln!("wrote {}", file.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::PathBuf;
    use std::time::Duration;

    use fulcrum_bench::compare::{CompareOptions, Scenario};

    use super::Args;
    use crate::cli::parse_args;

    fn options(argv: &[&str]) -> CompareOptions {
        parse_args::<Args>("compare", argv)
            .unwrap()
            .options()
            .unwrap()
    }

    #[test]
    fn full_defaults() {
        let options = options(&[]);
        assert_eq!(options.scenarios, Scenario::ALL.to_vec());
        assert_eq!(options.rounds, 3);
        assert_eq!(options.duration, Duration::from_secs(10));
        assert_eq!(options.warmup, Duration::from_secs(2));
        assert_eq!(options.connections, 64);
        assert_eq!(options.idle_connections, 10_000);
        assert_eq!(options.bulk_size, 1 << 30);
        assert_eq!((options.proxy_cpu, options.load_cpu), (0, 1));
        assert_eq!(options.out, Some(PathBuf::from("bench/results")));
        assert_eq!(options.fulcrum.file_name().unwrap(), "fulcrum");
        assert_eq!(options.load_cmd, options.bench);
        assert!(!options.quick);
    }

    #[test]
    fn quick_defaults_and_overrides() {
        let options = options(&["--quick", "--rounds", "2", "--load-cmd", "/bin/fake"]);
        assert_eq!(
            options.scenarios,
            vec![
                Scenario::Get,
                Scenario::Cookie,
                Scenario::TcpClose,
                Scenario::TcpBulk
            ]
        );
        assert_eq!(options.rounds, 2);
        assert_eq!(options.duration, Duration::from_secs(1));
        assert_eq!(options.warmup, Duration::from_millis(200));
        assert_eq!(options.connections, 16);
        assert_eq!(options.idle_connections, 500);
        assert_eq!(options.bulk_size, 16 << 20);
        assert_eq!(options.load_cmd, PathBuf::from("/bin/fake"));
        assert_eq!(
            options.out, None,
            "a smoke test must not replace real results"
        );
        assert!(options.quick);
    }

    #[test]
    fn every_option_is_read() {
        let options = options(&[
            "--fulcrum",
            "/opt/fulcrum",
            "--haproxy",
            "/opt/haproxy",
            "--scenarios",
            "h2,tls",
            "--duration",
            "3s",
            "--warmup",
            "0s",
            "--connections",
            "8",
            "--idle-connections",
            "100000",
            "--bulk-size",
            "256MiB",
            "--proxy-cpu",
            "2",
            "--load-cpu",
            "3",
            "--out",
            "/tmp/results",
        ]);
        assert_eq!(options.fulcrum, PathBuf::from("/opt/fulcrum"));
        assert_eq!(options.haproxy, Some(PathBuf::from("/opt/haproxy")));
        assert_eq!(options.scenarios, vec![Scenario::Tls, Scenario::H2]);
        assert_eq!(options.duration, Duration::from_secs(3));
        assert_eq!(options.warmup, Duration::ZERO);
        assert_eq!(options.connections, 8);
        assert_eq!(options.idle_connections, 100_000);
        assert_eq!(options.bulk_size, 256 << 20);
        assert_eq!((options.proxy_cpu, options.load_cpu), (2, 3));
        assert_eq!(options.out, Some(PathBuf::from("/tmp/results")));
    }

    #[test]
    fn unknown_scenarios_are_refused() {
        assert!(parse_args::<Args>("compare", &["--scenarios", "get,ftp"]).is_err());
    }

    #[test]
    fn l4_scenarios_and_bulk_size() {
        let options = options(&["--scenarios", "tcp-bulk,tcp-close", "--bulk-size", "1MiB"]);
        assert_eq!(
            options.scenarios,
            vec![Scenario::TcpClose, Scenario::TcpBulk]
        );
        assert_eq!(options.bulk_size, 1 << 20);
        assert!(parse_args::<Args>("compare", &["--bulk-size", "lots"]).is_err());
    }
}
