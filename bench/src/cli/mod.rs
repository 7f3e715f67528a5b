//! The subcommands of `fulcrum-bench`, one file each, and what they share.

pub(crate) mod bulk;
pub(crate) mod compare;
pub(crate) mod failover;
pub(crate) mod load;
pub(crate) mod nbd;
pub(crate) mod origin;
pub(crate) mod probe;
pub(crate) mod scrape;
pub(crate) mod soak;
pub(crate) mod sync;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use anyhow::{Context, bail};
use fulcrum_bench::size::parse_size;
use tokio::signal::unix::{SignalKind, signal};

/// Waits for SIGINT or SIGTERM, the two ways a script or a terminal asks a tool to stop.
pub(crate) async fn shutdown_signal() -> io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = terminate.recv() => Ok(()),
    }
}

/// `--fulcrum`, or else `fulcrum` next to this executable.
pub(crate) fn fulcrum_path(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path);
    }
    let bench = std::env::current_exe().context("cannot find this executable's path")?;
    match bench.parent() {
        Some(dir) => Ok(dir.join("fulcrum")),
        None => bail!("cannot find the directory of {}", bench.display()),
    }
}

/// Whether this process runs as root: the owner of its own `/proc/self`, since the workspace
/// forbids the unsafe `geteuid` needs.
pub(crate) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A byte size (`1GiB`, `64MiB`) for clap.
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    parse_size(text)
        .map(|n| n as u64)
        .map_err(|error| error.to_string())
}

/// Runs the blocking `rounds` of benchmark `what` (`nbd`) to their report. On SIGINT or SIGTERM
/// it sets `cancel`, so they stop after the current step (every child process is killed as its
/// handle drops), and still waits for the report.
pub(crate) async fn run_rounds<R: Send + 'static>(
    what: &str,
    cancel: Arc<AtomicBool>,
    rounds: impl FnOnce() -> anyhow::Result<R> + Send + 'static,
) -> anyhow::Result<R> {
    let mut rounds = tokio::task::spawn_blocking(rounds);
    let report = tokio::select! {
        report = &mut rounds => report.with_context(|| format!("the {what} run panicked"))??,
        signal = shutdown_signal() => {
            signal.context("cannot wait for SIGINT or SIGTERM")?;
            cancel.store(true, Relaxed);
            eprintln!("interrupted: stopping after the current step");
            rounds.await.with_context(|| format!("the {what} run panicked"))??
        }
    };
    Ok(report)
}

/// The tables on stdout, the files written on stderr.
pub(crate) fn print_report(markdown: &str, files: &[impl AsRef<Path>]) {
    print!("{markdown}");
    for file in files {
        eprintln!("wrote {}", file.as_ref().display());
    }
}

/// Parses `argv` (without the subcommand's name) as the arguments of subcommand `name`, for the
/// subcommands' tests.
#[cfg(test)]
pub(crate) fn parse_args<A: clap::Args + clap::FromArgMatches>(
    name: &'static str,
    argv: &[&str],
) -> Result<A, clap::Error> {
    let matches = A::augment_args(clap::Command::new(name))
        .try_get_matches_from(std::iter::once(name).chain(argv.iter().copied()))?;
    A::from_arg_matches(&matches)
}
