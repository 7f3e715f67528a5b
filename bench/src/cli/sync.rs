//! `fulcrum-bench sync`: Fulcrum's directory sync against lsyncd and rsync, issue 8's goals.
//! Progress on stderr, the Markdown tables on stdout, the result files in `--out`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::parse_bytes;
use fulcrum_bench::compare::shell_command_line;
use fulcrum_bench::sync::{SyncOptions, Tools, find_tools, render_markdown, run_sync};

/// Options of `fulcrum-bench sync`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The fulcrum binary [default: `fulcrum` next to this executable].
    #[arg(long)]
    fulcrum: Option<PathBuf>,
    /// The rsync binary [default: `rsync` in PATH].
    #[arg(long)]
    rsync: Option<PathBuf>,
    /// The lsyncd binary [default: `lsyncd` in PATH].
    #[arg(long)]
    lsyncd: Option<PathBuf>,
    /// Rounds, each measuring every scenario for both, the order alternating.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// `delay` of Fulcrum's sync set and of lsyncd.
    #[arg(long, default_value = "10ms")]
    delay: humantime::Duration,
    /// 4 KiB changes per latency run.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Files of the initial sync's tree.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Bytes of the initial sync's tree.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    tree_size: u64,
    /// Size of the delta's file.
    #[arg(long, default_value = "100MiB", value_parser = parse_bytes)]
    delta_file_size: u64,
    /// Bytes changed in it (in 8 regions).
    #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
    delta_change: u64,
    /// Directory for the trees: tmpfs.
    #[arg(long, default_value = "/dev/shm")]
    dir: PathBuf,
    /// Directory for sync-DATE.json, sync-DATE.md, latest.json and latest.md.
    #[arg(long, default_value = "bench/results/sync")]
    out: PathBuf,
    /// Print the tables only, write no files.
    #[arg(long)]
    no_files: bool,
}

impl Args {
    fn options(self, tools: Tools, cancel: Arc<AtomicBool>) -> anyhow::Result<SyncOptions> {
        let fulcrum = super::fulcrum_path(self.fulcrum)?;
        Ok(SyncOptions {
            fulcrum,
            tools,
            rounds: self.rounds,
            delay: self.delay.into(),
            changes: self.changes,
            files: self.files,
            tree_bytes: self.tree_size,
            delta_file_bytes: self.delta_file_size,
            delta_change_bytes: self.delta_change,
            dir: self.dir,
            out: (!self.no_files).then_some(self.out),
            command: shell_command_line(std::env::args()),
            cancel,
        })
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let tools = match find_tools(args.rsync.as_deref(), args.lsyncd.as_deref()) {
        Ok(tools) => tools,
        Err(missing) => {
            eprintln!("fulcrum-bench sync: {missing}");
            std::process::exit(2);
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let options = args.options(tools, Arc::clone(&cancel))?;
    // The rounds block; on a signal they stop after the current step, and every process is
    // killed as its handle drops (the temp dir on tmpfs goes with it).
    let report = super::run_rounds("sync", cancel, move || run_sync(&options)).await?;
    super::print_report(&render_markdown(&report), &report.files);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use fulcrum_bench::sync::Tools;

    use super::Args;
    use crate::cli::parse_args;

    fn tools() -> Tools {
        Tools {
            rsync: PathBuf::from("/usr/bin/rsync"),
            lsyncd: PathBuf::from("/usr/bin/lsyncd"),
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let options = parse_args::<Args>("sync", &[])
            .unwrap()
            .options(tools(), Arc::default())
            .unwrap();
        assert_eq!(options.rounds, 3);
        assert_eq!(options.delay, Duration::from_millis(10));
        assert_eq!(options.changes, 200);
        assert_eq!(options.files, 10_000);
        assert_eq!(options.tree_bytes, 1 << 30);
        assert_eq!(options.delta_file_bytes, 100 << 20);
        assert_eq!(options.delta_change_bytes, 1 << 20);
        assert_eq!(options.out, Some(PathBuf::from("bench/results/sync")));
        assert_eq!(options.fulcrum.file_name().unwrap(), "fulcrum");
        let options = parse_args::<Args>("sync", &["--delay", "50ms", "--no-files"])
            .unwrap()
            .options(tools(), Arc::default())
            .unwrap();
        assert_eq!(options.delay, Duration::from_millis(50));
        assert_eq!(options.out, None);
    }
}
