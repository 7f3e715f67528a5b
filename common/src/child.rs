//! A program run with a deadline, as NRPE runs its plugins, HAProxy its external checks,
//! keepalived its tracked and notify scripts: in a process group of its own, stdin from
//! `/dev/null` or fed a message, stdout and stderr discarded or captured up to a cap (the rest
//! read and dropped, so the program never blocks on a full pipe), and the whole group killed when
//! it outlives its time or the caller loses interest.
//!
//! The caller builds the [`Command`] (program, arguments, environment, directory); [`run`] owns
//! its stdio and its process group, and [`Io`] says what goes in and out.

use std::{
    io,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    process::Command,
};

/// How a run ended.
#[derive(Debug)]
pub enum Exit {
    /// It exited, or was killed by a signal: `status` says which (and shows as `exit status:
    /// 2` or `signal: 9 (SIGKILL)`).
    Finished {
        status: ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// Still running (or, with [`Until::OutputClosed`], its output still open) at the deadline;
    /// its group was killed.
    TimedOut,
    /// It could not be started, or not waited for.
    Failed(io::Error),
}

/// The most of each output stream kept; 0 sends that stream to `/dev/null`.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub stdout: usize,
    pub stderr: usize,
}

/// What a run is given and what ends it.
#[derive(Debug, Clone, Copy)]
pub struct Io<'a> {
    /// Written to its stdin, which is then closed; `None` gives it `/dev/null`.
    pub stdin: Option<&'a [u8]>,
    pub caps: Caps,
    pub until: Until,
}

impl Io<'_> {
    /// Stdin from `/dev/null`, output kept up to `caps`, the run over when its output closes:
    /// how NRPE reads a plugin.
    pub fn output(caps: Caps) -> Self {
        Io {
            stdin: None,
            caps,
            until: Until::OutputClosed,
        }
    }

    /// All three streams on `/dev/null`, the exit the only result: how keepalived runs its
    /// scripts.
    pub fn exit_only() -> Self {
        Io {
            stdin: None,
            caps: Caps {
                stdout: 0,
                stderr: 0,
            },
            until: Until::Exit,
        }
    }
}

/// What ends a run before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Its exit and the end of its output: a process it left in the background with its
    /// stdout open keeps the run going to the deadline, as NRPE reads until end of file.
    OutputClosed,
    /// Its exit. Output still open then (a background process holds it) is read for
    /// [`OUTPUT_GRACE`] more: what the program itself wrote is in the pipe by then.
    Exit,
}

/// How long [`Until::Exit`] reads output after the exit.
pub const OUTPUT_GRACE: Duration = Duration::from_millis(100);

/// Runs `command` for at most `timeout`, fed and read as `io` says. Dropping the future kills
/// the run's process group.
pub async fn run(mut command: Command, timeout: Duration, io: Io<'_>) -> Exit {
    let spawned = command
        .stdin(piped_if(io.stdin.is_some()))
        .stdout(piped_if(io.caps.stdout > 0))
        .stderr(piped_if(io.caps.stderr > 0))
        // Its own group, so a timeout can kill whatever it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Exit::Failed(e),
    };
    // Kills the group if this future is dropped mid-run.
    let mut group = child.id().map(GroupGuard);
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (mut kept_out, mut kept_err) = (Vec::new(), Vec::new());
    let finished = tokio::time::timeout(timeout, async {
        let write = async {
            if let (Some(mut pipe), Some(bytes)) = (stdin, io.stdin) {
                // A program may exit without reading it all; its exit status tells. The pipe
                // closes when dropped here.
                let _ = pipe.write_all(bytes).await;
            }
        };
        let exited = async { tokio::join!(write, child.wait()).1 };
        let reading = async {
            tokio::join!(
                read_capped(stdout, io.caps.stdout, &mut kept_out),
                read_capped(stderr, io.caps.stderr, &mut kept_err),
            )
        };
        match io.until {
            Until::OutputClosed => tokio::join!(exited, reading).0,
            Until::Exit => {
                tokio::pin!(exited, reading);
                tokio::select! {
                    status = &mut exited => {
                        // Reaped: its group id may go to a stranger once its members are
                        // gone, and what it left behind is not ours to kill.
                        if let Some(group) = group.as_mut() {
                            group.disarm();
                        }
                        let _ = tokio::time::timeout(OUTPUT_GRACE, &mut reading).await;
                        status
                    }
                    _ = &mut reading => exited.await,
                }
            }
        }
    })
    .await;
    match finished {
        Ok(status) => {
            // It ended on its own: whatever it left running in the background is not ours to
            // kill (NRPE and keepalived do not either).
            if let Some(group) = group.as_mut() {
                group.disarm();
            }
            match status {
                Ok(status) => Exit::Finished {
                    status,
                    stdout: kept_out,
                    stderr: kept_err,
                },
                Err(e) => Exit::Failed(e),
            }
        }
        Err(_) => {
            // Exited just before the deadline, which ran out while its output was read for
            // `OUTPUT_GRACE`: finished, not timed out (the guard is already disarmed).
            if io.until == Until::Exit
                && let Ok(Some(status)) = child.try_wait()
            {
                return Exit::Finished {
                    status,
                    stdout: kept_out,
                    stderr: kept_err,
                };
            }
            if let Some(group) = group.take() {
                group.kill();
            }
            // Not waited for: a process stuck in the kernel (a hung disk) dies only when it
            // leaves it, and the caller must have its verdict now. tokio reaps it then.
            let _ = child.start_kill();
            Exit::TimedOut
        }
    }
}

fn piped_if(piped: bool) -> Stdio {
    if piped { Stdio::piped() } else { Stdio::null() }
}

/// Reads `reader` to its end, keeping its first `max` bytes in `kept`.
async fn read_capped(reader: Option<impl AsyncRead + Unpin>, max: usize, kept: &mut Vec<u8>) {
    let Some(mut reader) = reader else {
        return;
    };
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
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

    /// The exit code and outputs of a run that finished.
    fn finished(exit: Exit) -> (Option<i32>, Vec<u8>, Vec<u8>) {
        let Exit::Finished {
            status,
            stdout,
            stderr,
        } = exit
        else {
            panic!("{exit:?}")
        };
        (status.code(), stdout, stderr)
    }

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
            Io::output(CAPS),
        )
        .await;
        let (code, stdout, stderr) = finished(exit);
        assert_eq!(code, Some(2));
        assert_eq!(stdout, b"out\n");
        assert_eq!(stderr, b"err\n");
    }

    #[tokio::test]
    async fn a_signal_gives_no_code_and_says_which() {
        let exit = run(sh("kill -9 $$"), Duration::from_secs(10), Io::output(CAPS)).await;
        assert!(
            matches!(&exit, Exit::Finished { status, .. } if status.code().is_none() && status.to_string() == "signal: 9 (SIGKILL)"),
            "{exit:?}"
        );
    }

    #[tokio::test]
    async fn keeps_at_most_the_cap_and_reads_the_rest() {
        let exit = run(
            sh("head -c 200000 /dev/zero | tr '\\0' x; exit 1"),
            Duration::from_secs(10),
            Io::output(CAPS),
        )
        .await;
        let (code, stdout, _) = finished(exit);
        assert_eq!(code, Some(1));
        assert_eq!(stdout.len(), CAPS.stdout);
    }

    #[tokio::test]
    async fn a_missing_program_fails() {
        let exit = run(
            Command::new("/nonexistent/plugin"),
            Duration::from_secs(10),
            Io::output(CAPS),
        )
        .await;
        assert!(matches!(exit, Exit::Failed(_)), "{exit:?}");
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
        let exit = run(sh(&script), Duration::from_millis(500), Io::output(CAPS)).await;
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

    #[tokio::test]
    async fn stdin_is_fed_and_closed() {
        let io = Io {
            stdin: Some(b"subject\n\nbody\n"),
            ..Io::output(CAPS)
        };
        // `cat` ends only when its stdin closes.
        let exit = run(Command::new("cat"), Duration::from_secs(10), io).await;
        assert!(
            matches!(&exit, Exit::Finished { status, stdout, .. } if status.success() && stdout == b"subject\n\nbody\n"),
            "{exit:?}"
        );
    }

    /// A program that writes, exits 3 and leaves a `sleep` holding its stdout and stderr.
    const LEAVES_OUTPUT_OPEN: &str = "echo said; echo why >&2; sleep 30 & exit 3";

    #[tokio::test]
    async fn until_exit_is_over_at_the_exit_with_what_was_written() {
        let io = Io {
            until: Until::Exit,
            ..Io::output(CAPS)
        };
        let started = tokio::time::Instant::now();
        let exit = run(sh(LEAVES_OUTPUT_OPEN), Duration::from_secs(20), io).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        let (code, stdout, stderr) = finished(exit);
        assert_eq!(
            (code, &stdout[..], &stderr[..]),
            (Some(3), &b"said\n"[..], &b"why\n"[..])
        );
    }

    // Input: a program that exits at once, leaving its output open, with a deadline shorter
    // than the `OUTPUT_GRACE` that follows its exit. Output: finished with its exit code, not
    // timed out (the deadline ran out while its output was read, after it had exited).
    #[tokio::test]
    async fn an_exit_whose_output_grace_outlasts_the_deadline_is_finished() {
        let io = Io {
            until: Until::Exit,
            ..Io::output(CAPS)
        };
        let deadline = OUTPUT_GRACE * 9 / 10;
        // The shell must exit within the deadline, which a loaded machine may miss once: a
        // few tries. Without the check of the exit at the deadline, none finishes.
        let mut last = None;
        for _ in 0..10 {
            let exit = run(sh("echo said; sleep 2 & exit 3"), deadline, io).await;
            if let Exit::Finished { status, stdout, .. } = &exit {
                assert_eq!((status.code(), &stdout[..]), (Some(3), &b"said\n"[..]));
                return;
            }
            last = Some(exit);
        }
        panic!("never finished within {deadline:?}: {last:?}");
    }

    #[tokio::test]
    async fn until_output_closed_waits_for_the_background_holder() {
        let exit = run(
            sh(LEAVES_OUTPUT_OPEN),
            Duration::from_millis(500),
            Io::output(CAPS),
        )
        .await;
        assert!(matches!(exit, Exit::TimedOut), "{exit:?}");
    }

    #[tokio::test]
    async fn exit_only_discards_the_output() {
        let exit = run(
            sh("head -c 200000 /dev/zero; exit 1"),
            Duration::from_secs(10),
            Io::exit_only(),
        )
        .await;
        assert!(
            matches!(&exit, Exit::Finished { status, stdout, stderr } if status.code() == Some(1) && stdout.is_empty() && stderr.is_empty()),
            "{exit:?}"
        );
    }
}
