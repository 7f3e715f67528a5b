//! `fulcrum-bench soak`: seed 004's site under steady load for minutes with a fault every
//! `--fault-every`, issue 10's soak. Needs root; progress on stderr, the Markdown tables on
//! stdout, the result files in `--out`. Exits with status 1 when a goal is not met.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use fulcrum_bench::compare::shell_command_line;
use fulcrum_bench::soak::{
    FaultKind, L7Node, SoakOptions, parse_faults, parse_node, render_markdown, run_soak,
};

/// Options of `fulcrum-bench soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The fulcrum binary [default: `fulcrum` next to this executable].
    #[arg(long)]
    fulcrum: Option<PathBuf>,
    /// How long the load runs.
    #[arg(long, default_value = "10m")]
    duration: humantime::Duration,
    /// Time between two faults (the first comes after one period of calm).
    #[arg(long, default_value = "30s")]
    fault_every: humantime::Duration,
    /// How long a fault lasts before it is undone (the director's kill: 2 s).
    #[arg(long, default_value = "10s")]
    hold: humantime::Duration,
    /// `all`, or a comma-separated list of crash, sigterm, link-cut, packet-loss, director and
    /// full-disk, injected in that rotation.
    #[arg(long, default_value = "all", value_parser = parse_faults)]
    faults: Faults,
    /// Aim every L7 fault at this node (A or B) instead of alternating, to watch the other
    /// one live through them all.
    #[arg(long, value_parser = parse_node)]
    node: Option<L7Node>,
    /// Longest a fault window may last before the site counts as not recovered.
    #[arg(long, default_value = "60s")]
    window_cap: humantime::Duration,
    /// How long after a process's first sample its memory counts as warmed up.
    #[arg(long, default_value = "60s")]
    warmup: humantime::Duration,
    /// Directory for soak-DATE.json, soak-DATE.md, soak-DATE.svg, latest.json and latest.md.
    #[arg(long, default_value = "bench/results/soak")]
    out: PathBuf,
    /// Print the tables only, write no files.
    #[arg(long)]
    no_files: bool,
}

/// A parsed `--faults` list (clap wants one value type per argument).
type Faults = Vec<FaultKind>;

impl Args {
    fn options(self, cancel: Arc<AtomicBool>) -> anyhow::Result<SoakOptions> {
        Ok(SoakOptions {
            fulcrum: super::fulcrum_path(self.fulcrum)?,
            duration: self.duration.into(),
            fault_every: self.fault_every.into(),
            hold: self.hold.into(),
            faults: self.faults,
            node: self.node,
            window_cap: self.window_cap.into(),
            warmup: self.warmup.into(),
            out: (!self.no_files).then_some(self.out),
            command: shell_command_line(std::env::args()),
            cancel,
        })
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if !super::is_root() {
        eprintln!(
            "fulcrum-bench soak needs root: it creates network namespaces, runs VRRP and mounts tmpfs (try sudo)"
        );
        std::process::exit(2);
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let options = args.options(Arc::clone(&cancel))?;
    // The run blocks; on a signal the load stops early, the last window is seen through, and
    // the report covers what ran.
    let report = super::run_rounds("soak", cancel, move || run_soak(&options)).await?;
    super::print_report(&render_markdown(&report), &report.files);
    let failed: Vec<String> = report
        .goals
        .iter()
        .filter(|g| g.met != Some(true))
        .map(|g| {
            let measured = g
                .measured
                .map_or_else(|| "nothing".to_owned(), |m| format!("{m:.2}"));
            format!("{}: measured {measured}, bound {}", g.description, g.bound)
        })
        .collect();
    if !failed.is_empty() {
        eprintln!("soak goals not met:");
        for line in &failed {
            eprintln!("  - {line}");
        }
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use fulcrum_bench::soak::{FaultKind, L7Node};

    use super::Args;
    use crate::cli::parse_args;

    #[test]
    fn defaults_and_overrides() {
        let options = parse_args::<Args>("soak", &[])
            .unwrap()
            .options(Arc::default())
            .unwrap();
        assert_eq!(options.duration, Duration::from_secs(600));
        assert_eq!(options.fault_every, Duration::from_secs(30));
        assert_eq!(options.hold, Duration::from_secs(10));
        assert_eq!(options.faults, FaultKind::ALL.to_vec());
        assert_eq!(options.node, None);
        assert_eq!(options.window_cap, Duration::from_secs(60));
        assert_eq!(options.out, Some(PathBuf::from("bench/results/soak")));
        assert_eq!(options.fulcrum.file_name().unwrap(), "fulcrum");

        let options = parse_args::<Args>(
            "soak",
            &[
                "--duration",
                "2m",
                "--fault-every",
                "20s",
                "--faults",
                "crash,full-disk",
                "--node",
                "b",
                "--no-files",
            ],
        )
        .unwrap()
        .options(Arc::default())
        .unwrap();
        assert_eq!(options.duration, Duration::from_secs(120));
        assert_eq!(options.faults, vec![FaultKind::Crash, FaultKind::FullDisk]);
        assert_eq!(options.node, Some(L7Node::B));
        assert_eq!(options.out, None);
        assert!(parse_args::<Args>("soak", &["--node", "C"]).is_err());
    }
}
