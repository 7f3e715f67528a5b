//! `fulcrum-bench failover`: the gap a client sees when the VRRP master fails, Fulcrum against
//! keepalived. Needs root; progress on stderr, the Markdown tables on stdout, the result files
//! in `--out`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use fulcrum_bench::compare::shell_command_line;
use fulcrum_bench::failover::{Case, FailoverOptions, parse_cases, render_markdown, run_failover};
use fulcrum_lab::keepalived::KEEPALIVED;

/// Options of `fulcrum-bench failover`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The fulcrum binary [default: `fulcrum` next to this executable].
    #[arg(long)]
    fulcrum: Option<PathBuf>,
    /// The keepalived binary.
    #[arg(long, default_value = KEEPALIVED)]
    keepalived: PathBuf,
    /// `all`, or a comma-separated list of sigterm (VRRPv2, 1 s adverts, clean stop) and sigkill
    /// (VRRPv3, 100 ms adverts, crash).
    #[arg(long, default_value = "all", value_parser = parse_cases)]
    cases: Cases,
    /// Rounds per case, each Fulcrum then keepalived on a fresh lab.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// How long the client probes in each round.
    #[arg(long, default_value = "8s")]
    duration: humantime::Duration,
    /// When, into the probe, node A fails.
    #[arg(long, default_value = "2s")]
    fail_after: humantime::Duration,
    /// Directory for failover-DATE.json, failover-DATE.md, latest.json and latest.md.
    #[arg(long, default_value = "bench/results/failover")]
    out: PathBuf,
    /// Print the tables only, write no files.
    #[arg(long)]
    no_files: bool,
}

/// A parsed `--cases` list (clap wants one value type per argument).
type Cases = Vec<Case>;

/// The probe's connect interval and per-attempt timeout: the client.
const INTERVAL: Duration = Duration::from_millis(10);
const TIMEOUT: Duration = Duration::from_millis(50);

impl Args {
    fn options(self, cancel: Arc<AtomicBool>) -> anyhow::Result<FailoverOptions> {
        let bench = std::env::current_exe().context("cannot find this executable's path")?;
        let fulcrum = super::fulcrum_path(self.fulcrum)?;
        Ok(FailoverOptions {
            bench,
            fulcrum,
            keepalived: self.keepalived,
            cases: self.cases,
            rounds: self.rounds,
            interval: INTERVAL,
            timeout: TIMEOUT,
            duration: self.duration.into(),
            fail_after: self.fail_after.into(),
            out: (!self.no_files).then_some(self.out),
            command: shell_command_line(std::env::args()),
            cancel,
        })
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if !super::is_root() {
        eprintln!(
            "fulcrum-bench failover needs root: it creates network namespaces and runs VRRP (try sudo)"
        );
        std::process::exit(2);
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let options = args.options(Arc::clone(&cancel))?;
    // The rounds block (the lab runs `ip` and waits on processes); on a signal they stop at the
    // next step and tear their lab down, so Ctrl-C leaves no namespace behind.
    let report = super::run_rounds("failover", cancel, move || run_failover(&options)).await?;
    super::print_report(&render_markdown(&report), &report.files);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use fulcrum_bench::failover::Case;

    use super::Args;
    use crate::cli::parse_args;

    #[test]
    fn defaults_and_overrides() {
        let options = parse_args::<Args>("failover", &[])
            .unwrap()
            .options(Arc::default())
            .unwrap();
        assert_eq!(options.cases, Case::ALL.to_vec());
        assert_eq!(options.rounds, 5);
        assert_eq!(options.duration, Duration::from_secs(8));
        assert_eq!(options.fail_after, Duration::from_secs(2));
        assert_eq!(options.interval, Duration::from_millis(10));
        assert_eq!(options.timeout, Duration::from_millis(50));
        assert_eq!(options.out, Some(PathBuf::from("bench/results/failover")));
        assert_eq!(options.fulcrum.file_name().unwrap(), "fulcrum");

        let options = parse_args::<Args>(
            "failover",
            &["--cases", "sigkill", "--rounds", "1", "--no-files"],
        )
        .unwrap()
        .options(Arc::default())
        .unwrap();
        assert_eq!(options.cases, vec![Case::Sigkill]);
        assert_eq!(options.rounds, 1);
        assert_eq!(options.out, None);
        assert!(parse_args::<Args>("failover", &["--cases", "sighup"]).is_err());
    }
}
