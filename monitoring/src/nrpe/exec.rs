//! Runs a plugin as NRPE's `my_system` does, without its shell: in a process group of its own,
//! stdin from `/dev/null`, in `/`, with `NRPE_MULTILINESUPPORT=1` and `NRPE_PROGRAMVERSION` set,
//! stdout captured (NRPE's `popen` reads stdout only; stderr is logged here instead of lost), and
//! the whole group killed when it outlives `command_timeout`.

use std::{io, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::Command,
};

use super::packet::MAX_TEXT;

/// The protocol version the plugin is told, as NRPE 4.1 tells it.
pub(super) const NRPE_VERSION: &str = "4.1.0";

/// How much of a plugin's stderr is kept for the log.
const MAX_STDERR: usize = 4096;

/// How a plugin ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// It exited with `code`, or was killed by a signal (`None`).
    Finished {
        code: Option<i32>,
        /// At most [`MAX_TEXT`] bytes; the rest was read and dropped so the plugin never blocks.
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// Still running (or its output still open) after the timeout; its group was killed.
    TimedOut,
    /// It could not be started.
    NotStarted(io::Error),
}

/// Runs `words` (the program, then its arguments; not empty) for at most `timeout`.
pub(crate) async fn run(words: &[String], timeout: Duration) -> Exit {
    let Some((program, args)) = words.split_first() else {
        return Exit::NotStarted(io::Error::new(io::ErrorKind::InvalidInput, "no program"));
    };
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir("/")
        .env("NRPE_MULTILINESUPPORT", "1")
        .env("NRPE_PROGRAMVERSION", NRPE_VERSION)
        // Its own group, so a timeout can kill whatever it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Exit::NotStarted(e),
    };
    // Kills the group if this future is dropped mid-run (the server stopping).
    let mut group = child.id().map(GroupGuard);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let finished = tokio::time::timeout(timeout, async {
        tokio::join!(
            read_capped(stdout, MAX_TEXT),
            read_capped(stderr, MAX_STDERR),
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
                    tracing::warn!(error = %e, "nrpe cannot wait for its command");
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

/// A plugin's process group (its id is the plugin's pid), killed with `SIGKILL` when dropped
/// armed. The pid cannot be reused while the plugin is unreaped, so the kill never hits a
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
            tracing::warn!(%error, group, "nrpe cannot kill a command's process group");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn words(line: &[&str]) -> Vec<String> {
        line.iter().map(|&w| w.to_owned()).collect()
    }

    #[tokio::test]
    async fn captures_stdout_and_the_exit_code() {
        let exit = run(
            &words(&[
                "/bin/sh",
                "-c",
                "echo out; echo err >&2; echo $NRPE_PROGRAMVERSION; pwd; exit 2",
            ]),
            Duration::from_secs(10),
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
        assert_eq!(stdout, b"out\n4.1.0\n/\n");
        assert_eq!(stderr, b"err\n");
    }

    #[tokio::test]
    async fn a_signal_gives_no_code() {
        let exit = run(
            &words(&["/bin/sh", "-c", "kill -9 $$"]),
            Duration::from_secs(10),
        )
        .await;
        assert!(
            matches!(exit, Exit::Finished { code: None, .. }),
            "{exit:?}"
        );
    }

    #[tokio::test]
    async fn keeps_at_most_max_text_and_reads_the_rest() {
        let exit = run(
            &words(&[
                "/bin/sh",
                "-c",
                "head -c 200000 /dev/zero | tr '\\0' x; exit 1",
            ]),
            Duration::from_secs(10),
        )
        .await;
        let Exit::Finished { code, stdout, .. } = exit else {
            panic!("{exit:?}")
        };
        assert_eq!(code, Some(1));
        assert_eq!(stdout.len(), MAX_TEXT);
    }

    #[tokio::test]
    async fn a_missing_program_is_not_started() {
        let exit = run(&words(&["/nonexistent/plugin"]), Duration::from_secs(10)).await;
        assert!(matches!(exit, Exit::NotStarted(_)), "{exit:?}");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("fulcrum-nrpe-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("grandchild.pid");
        // The grandchild keeps no pipe open, so only the group kill can reach it.
        let script = format!(
            "sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {}; sleep 300",
            pid_file.display()
        );
        let started = tokio::time::Instant::now();
        let exit = run(
            &words(&["/bin/sh", "-c", &script]),
            Duration::from_millis(500),
        )
        .await;
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
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(gone, "the grandchild {pid} outlived the timeout");
    }
}
