//! One `sh -c` run with a deadline, shared by tracked scripts and notify scripts: the shell gets a
//! process group of its own so that a timeout (or our losing interest) kills what it started too,
//! as keepalived does with `kill(-pid, ...)`.

use std::{io, process::ExitStatus, process::Stdio, time::Duration};

use tokio::process::{Child, Command};
use tracing::debug;

/// How a run ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Exited(ExitStatus),
    /// Still running at the deadline; its process group was killed.
    TimedOut,
    /// `sh` could not be started, or waiting for it failed.
    Failed(io::Error),
}

impl Outcome {
    /// Exit 0; anything else is a failure.
    pub(crate) fn success(&self) -> bool {
        matches!(self, Outcome::Exited(status) if status.success())
    }
}

/// Runs `sh -c SCRIPT sh ARGS...` with the stdio null and the environment inherited, for at most
/// `timeout`. Dropping the future kills the run's process group.
pub(crate) async fn run(script: &str, args: &[&str], timeout: Duration) -> Outcome {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        // `$0` of the script, so `"$@"` is exactly `args`.
        .arg("sh")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A group led by the shell: a timeout kills `sh` and every process it forked.
        .process_group(0)
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return Outcome::Failed(error),
    };
    let mut group = Group::new(child);
    match tokio::time::timeout(timeout, group.child.wait()).await {
        Ok(Ok(status)) => {
            group.finished = true;
            Outcome::Exited(status)
        }
        Ok(Err(error)) => Outcome::Failed(error),
        Err(_elapsed) => {
            group.kill().await;
            Outcome::TimedOut
        }
    }
}

/// A running shell and its process group, killed on drop unless it was seen to exit.
struct Group {
    child: Child,
    /// The shell's pid, which is the group's id. It cannot be reused while the shell is unreaped,
    /// which holds until `finished`, so killing the group never hits a stranger.
    pgid: Option<u32>,
    finished: bool,
}

impl Group {
    fn new(child: Child) -> Self {
        let pgid = child.id();
        Group {
            child,
            pgid,
            finished: false,
        }
    }

    /// Kills the whole group and reaps the shell.
    async fn kill(&mut self) {
        if let Some(mut killer) = self.pgid.and_then(spawn_group_kill) {
            // The builtin `kill` returns at once; the bound only guards against a wedged shell.
            let _ = tokio::time::timeout(Duration::from_secs(1), killer.wait()).await;
        }
        if let Err(error) = self.child.kill().await {
            debug!(%error, "killing a timed-out script");
        }
        self.finished = true;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Dropped mid-run (the task was cancelled). `kill_on_drop` handles the shell; its
        // children need the group kill. The killer is left to tokio's orphan reaper.
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = self.pgid.and_then(spawn_group_kill);
        }
    }
}

/// `kill -s KILL -- -PGID` with the shell's builtin: the crate has no signal API of its own
/// (no libc, no `unsafe`), and `sh` is already what every script needs.
fn spawn_group_kill(pgid: u32) -> Option<Child> {
    Command::new("sh")
        .args(["-c", "kill -s KILL -- \"-$1\" 2>/dev/null", "sh"])
        .arg(pgid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| debug!(%error, pgid, "spawning kill"))
        .ok()
}
