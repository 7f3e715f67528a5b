//! A program run with a deadline, as NRPE runs its plugins and HAProxy its external checks: in a
//! process group of its own, stdin from `/dev/null`, stdout and stderr captured up to a cap (the
//! rest read and dropped, so the program never blocks on a full pipe), and the whole group
//! killed when it outlives its time or the caller loses interest.
//!
//! The caller builds the [`Command`] (program, arguments, environment, directory); [`run`] owns
//! its stdio and its process group.

use std::{io, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::Command,
};

/// How a run ended.
#[derive(Debug)]
pub enum Exit {
    /// It exited with `code`, or was killed by a signal (`None`).
    Finished {
        code: Option<i32>,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// Still running (or its output still open) at the deadline; its group was killed.
    TimedOut,
    /// It could not be started.
    NotStarted(io::Error),
}

/// The most of each output stream kept.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub stdout: usize,
    pub stderr: usize,
}

/// Runs `command` for at most `timeout`, keeping at most `caps` of its output. Dropping the
/// future kills the run's process group.
pub async fn run(mut command: Command, timeout: Duration, caps: Caps) -> Exit {
    let spawned = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout can kill whatever it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Exit::NotStarted(e),
    };
    // Kills the group if this future is dropped mid-run.
    let mut group = child.id().map(GroupGuard);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let finished = tokio::time::timeout(timeout, async {
        tokio::join!(
            read_capped(stdout, caps.stdout),
            read_capped(stderr, caps.stderr),
            child.wait()
        )
    })
    .await;
    match finished {
        Ok((stdout, stderr, status)) => {
            // It ended on its own: whatever it left running in the background is not ours to
            // kill (NRPE does not either).
            if let Some(group) = group.as_mut() {
                group.disarm();
            }
            let code = match status {
                Ok(status) => status.code(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for a command");
                    None
                }
            };
            Exit::Finished {
                code,
                stdout,
                stderr,
            }
        }
        Err(_) => {
            if let Some(group) = group.take() {
                group.kill();
            }
            // Reaped, now that the group is gone.
            let _ = child.kill().await;
            Exit::TimedOut
        }
    }
}

/// Reads `reader` to its end, keeping the first `max` bytes.
async fn read_capped(reader: Option<impl AsyncRead + Unpin>, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut reader) = reader else {
        return kept;
    };
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// A program's process group (its id is the program's pid), killed with `SIGKILL` when dropped
/// armed. The pid cannot be reused while the program is unreaped, so the kill never hits a
/// stranger.
#[derive(Debug)]
struct GroupGuard(u32);

impl GroupGuard {
    fn disarm(&mut self) {
        self.0 = 0;
    }

    fn kill(mut self) {
        kill_group(std::mem::take(&mut self.0));
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// `kill(-GROUP, SIGKILL)`; nothing for a disarmed guard (0).
fn kill_group(group: u32) {
    let Some(pid) = i32::try_from(group)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if let Err(error) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
        // ESRCH: everyone in it has already gone.
        if error != rustix::io::Errno::SRCH {
            tracing::warn!(%error, group, "cannot kill a command's process group");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const CAPS: Caps = Caps {
        stdout: 1024,
        stderr: 1024,
    };

    fn sh(script: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", script]);
        command
    }

    #[tokio::test]
    async fn captures_both_outputs_and_the_exit_code() {
        let exit = run(
            sh("echo out; echo err >&2; exit 2"),
            Duration::from_secs(10),
            CAPS,
        )
        .await;
        let Exit::Finished {
            code,
            stdout,
            stderr,
        } = exit
        else {
            panic!("{exit:?}")
        };
        assert_eq!(code, Some(2));
        assert_eq!(stdout, b"out\n");
        assert_eq!(stderr, b"err\n");
    }

    #[tokio::test]
    async fn a_signal_gives_no_code() {
        let exit = run(sh("kill -9 $$"), Duration::from_secs(10), CAPS).await;
        assert!(
            matches!(exit, Exit::Finished { code: None, .. }),
            "{exit:?}"
        );
    }

    #[tokio::test]
    async fn keeps_at_most_the_cap_and_reads_the_rest() {
        let exit = run(
            sh("head -c 200000 /dev/zero | tr '\\0' x; exit 1"),
            Duration::from_secs(10),
            CAPS,
        )
        .await;
        let Exit::Finished { code, stdout, .. } = exit else {
            panic!("{exit:?}")
        };
        assert_eq!(code, Some(1));
        assert_eq!(stdout.len(), CAPS.stdout);
    }

    #[tokio::test]
    async fn a_missing_program_is_not_started() {
        let exit = run(
            Command::new("/nonexistent/plugin"),
            Duration::from_secs(10),
            CAPS,
        )
        .await;
        assert!(matches!(exit, Exit::NotStarted(_)), "{exit:?}");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        // The grandchild keeps no pipe open, so only the group kill can reach it.
        let script = format!(
            "sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {}; sleep 300",
            pid_file.display()
        );
        let started = tokio::time::Instant::now();
        let exit = run(sh(&script), Duration::from_millis(500), CAPS).await;
        assert!(matches!(exit, Exit::TimedOut), "{exit:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let proc_dir = format!("/proc/{}", pid.trim());
        // Killed, and reaped by init once its parent went: gone within a moment.
        let mut gone = false;
        for _ in 0..100 {
            let state = std::fs::read_to_string(format!("{proc_dir}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z ") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "the grandchild {pid} outlived the timeout");
    }
}
