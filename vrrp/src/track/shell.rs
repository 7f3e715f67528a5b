//! One `sh -c` run with a deadline, shared by tracked scripts and notify scripts: stdio on
//! `/dev/null`, Fulcrum's environment, and the exit the only result. The shell gets a process
//! group of its own so that a timeout (or our losing interest) kills what it started too, as
//! keepalived does with `kill(-pid, ...)`; [`fulcrum_common::child`] runs it.

use std::time::Duration;

pub(crate) use fulcrum_common::child::Exit;
use fulcrum_common::child::{self, Io};
use tokio::process::Command;

/// Runs `sh -c SCRIPT sh ARGS...` for at most `timeout`. Dropping the future kills the run's
/// process group.
pub(crate) async fn run(script: &str, args: &[&str], timeout: Duration) -> Exit {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        // `$0` of the script, so `"$@"` is exactly `args`.
        .arg("sh")
        .args(args);
    child::run(command, timeout, Io::exit_only()).await
}

/// Exit 0; anything else is a failure.
pub(crate) fn success(exit: &Exit) -> bool {
    matches!(exit, Exit::Finished { status, .. } if status.success())
}
