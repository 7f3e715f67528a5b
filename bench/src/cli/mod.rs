//! The subcommands of `fulcrum-bench`, one file each, and what they share.

pub(crate) mod bulk;
pub(crate) mod compare;
pub(crate) mod failover;
pub(crate) mod load;
pub(crate) mod nbd;
pub(crate) mod origin;
pub(crate) mod probe;
pub(crate) mod scrape;
pub(crate) mod sync;

use std::io;

use tokio::signal::unix::{SignalKind, signal};

/// Waits for SIGINT or SIGTERM, the two ways a script or a terminal asks a tool to stop.
pub(crate) async fn shutdown_signal() -> io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = terminate.recv() => Ok(()),
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
