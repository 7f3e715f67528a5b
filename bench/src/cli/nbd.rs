//! `fulcrum-bench nbd`: Fulcrum's replicated volume over NBD against qemu-nbd, issue 7's goals.
//! Progress on stderr, the Markdown tables on stdout, the result files in `--out`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::parse_bytes;
use fulcrum_bench::compare::shell_command_line;
use fulcrum_bench::nbd::{NbdOptions, Tools, find_tools, render_markdown, run_nbd};

/// Options of `fulcrum-bench nbd`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The fulcrum binary [default: `fulcrum` next to this executable].
    #[arg(long)]
    fulcrum: Option<PathBuf>,
    /// The qemu-nbd binary [default: `qemu-nbd` in PATH].
    #[arg(long)]
    qemu_nbd: Option<PathBuf>,
    /// Rounds, each qemu-nbd, Fulcrum alone, then a Fulcrum pair.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Bytes of each sequential write, of the volume and of the resync (a multiple of 4KiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    size: u64,
    /// nbdcopy's request size.
    #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
    request_size: u64,
    /// nbdcopy's connections (qemu-nbd does not offer multi-conn on a writable export, so it
    /// only ever gets one; the same number goes to Fulcrum).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// How long fio writes 4 KiB blocks at queue depth 1 per run (after a 1 s ramp); 0s skips
    /// the latency.
    #[arg(long, default_value = "5s")]
    latency_duration: humantime::Duration,
    /// The volumes' `al_extents` [default: Fulcrum's, 1237 extents of 4 MiB]: one covering
    /// less than the volume makes fio's random writes evict extents, each after a flush.
    #[arg(long)]
    al_extents: Option<u64>,
    /// Directory for the backing files: a disk, not tmpfs.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Directory for the pair's secondary's backing file: tmpfs stands in for the peer's own
    /// disk; give --dir's to make both copies share one disk.
    #[arg(long, default_value = "/dev/shm")]
    secondary_dir: PathBuf,
    /// Directory for the random source file of the writes: tmpfs.
    #[arg(long, default_value = "/dev/shm")]
    source_dir: PathBuf,
    /// Directory for nbd-DATE.json, nbd-DATE.md, latest.json and latest.md.
    #[arg(long, default_value = "bench/results/nbd")]
    out: PathBuf,
    /// Print the tables only, write no files.
    #[arg(long)]
    no_files: bool,
}

impl Args {
    fn options(self, tools: Tools, cancel: Arc<AtomicBool>) -> anyhow::Result<NbdOptions> {
        let fulcrum = super::fulcrum_path(self.fulcrum)?;
        Ok(NbdOptions {
            fulcrum,
            tools,
            rounds: self.rounds,
            size: self.size,
            request_size: self.request_size,
            connections: self.connections,
            latency_duration: self.latency_duration.into(),
            al_extents: self.al_extents,
            dir: self.dir,
            secondary_dir: self.secondary_dir,
            source_dir: self.source_dir,
            out: (!self.no_files).then_some(self.out),
            command: shell_command_line(std::env::args()),
            cancel,
        })
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let tools = match find_tools(args.qemu_nbd.as_deref()) {
        Ok(tools) => tools,
        Err(missing) => {
            eprintln!("fulcrum-bench nbd: {missing}");
            std::process::exit(2);
        }
    };
    if tools.fio.is_none() {
        eprintln!("fio with its nbd engine not found: the 4 KiB latency is not measured");
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let options = args.options(tools, Arc::clone(&cancel))?;
    // The rounds block (they wait on processes); on a signal they stop after the current step,
    // and every server is killed as its handle drops.
    let report = super::run_rounds("nbd", cancel, move || run_nbd(&options)).await?;
    super::print_report(&render_markdown(&report), &report.files);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use fulcrum_bench::nbd::Tools;

    use super::Args;
    use crate::cli::parse_args;

    fn tools() -> Tools {
        Tools {
            qemu_nbd: PathBuf::from("/usr/bin/qemu-nbd"),
            nbdcopy: PathBuf::from("/usr/bin/nbdcopy"),
            fio: None,
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let options = parse_args::<Args>("nbd", &[])
            .unwrap()
            .options(tools(), Arc::default())
            .unwrap();
        assert_eq!(options.rounds, 3);
        assert_eq!(options.size, 1 << 30);
        assert_eq!(options.request_size, 1 << 20);
        assert_eq!(options.connections, 1);
        assert_eq!(options.latency_duration, Duration::from_secs(5));
        assert_eq!(options.dir, PathBuf::from("/var/tmp"));
        assert_eq!(options.out, Some(PathBuf::from("bench/results/nbd")));
        assert_eq!(options.fulcrum.file_name().unwrap(), "fulcrum");

        let options = parse_args::<Args>(
            "nbd",
            &["--size", "64MiB", "--latency-duration", "0s", "--no-files"],
        )
        .unwrap()
        .options(tools(), Arc::default())
        .unwrap();
        assert_eq!(options.size, 64 << 20);
        assert!(options.latency_duration.is_zero());
        assert_eq!(options.out, None);
        assert!(parse_args::<Args>("nbd", &["--size", "lots"]).is_err());
    }
}
