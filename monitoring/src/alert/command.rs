//! The command sink: runs the configured program (no shell) with the alert's text on standard
//! input (subject, blank line, body) and its facts in the environment, within a timeout; a
//! non-zero exit is a failure. [`fulcrum_common::child`] runs it in a process group of its own,
//! killed at the timeout.
//!
//! Environment: `FULCRUM_ALERT_NODE`, `FULCRUM_ALERT_CATEGORY` (vrrp, server, volume, sync),
//! `FULCRUM_ALERT_OBJECT` (`VI_1`, `www/web1`, ...), `FULCRUM_ALERT_STATE` (`MASTER`, `DOWN`,
//! `SplitBrain`, ...), `FULCRUM_ALERT_FIRING` (`1` for a problem, else `0`) and
//! `FULCRUM_ALERT_SUBJECT`.

use fulcrum_common::child::{self, Caps, Exit, Io, Until};
use tokio::process::Command as Process;

use super::{config::CommandConfig, error::DeliveryError, event::Alert, sink::Deliver, text};

/// The most of the program's standard error kept for the log.
const STDERR_KEPT: usize = 512;

/// The command sink.
pub(super) struct Command {
    config: CommandConfig,
}

/// What the program gets.
pub(super) struct Input {
    stdin: String,
    env: Vec<(&'static str, String)>,
}

impl Command {
    pub(super) fn new(config: CommandConfig) -> Self {
        Self { config }
    }

    fn program(&self) -> String {
        self.config.argv.first().cloned().unwrap_or_default()
    }
}

impl Deliver for Command {
    type Payload = Input;

    fn prepare(&mut self, alert: &Alert) -> Result<Input, DeliveryError> {
        let text = text::render(alert);
        let event = &alert.event;
        Ok(Input {
            stdin: text.to_message(),
            env: vec![
                ("FULCRUM_ALERT_NODE", alert.node.clone()),
                ("FULCRUM_ALERT_CATEGORY", event.category().name().to_owned()),
                ("FULCRUM_ALERT_OBJECT", event.object()),
                ("FULCRUM_ALERT_STATE", event.state().to_owned()),
                (
                    "FULCRUM_ALERT_FIRING",
                    if event.is_problem() { "1" } else { "0" }.to_owned(),
                ),
                ("FULCRUM_ALERT_SUBJECT", text.subject),
            ],
        })
    }

    async fn deliver(&self, input: &Input) -> Result<(), DeliveryError> {
        let program = self.program();
        let mut command = Process::new(&program);
        command
            .args(self.config.argv.iter().skip(1))
            .envs(input.env.iter().map(|(k, v)| (k, v)));
        // Its exit is the verdict: a background process it left (a `curl`) may hold stderr
        // open for long, and is not waited for beyond a moment.
        let io = Io {
            stdin: Some(input.stdin.as_bytes()),
            caps: Caps {
                stdout: 0,
                stderr: STDERR_KEPT,
            },
            until: Until::Exit,
        };
        match child::run(command, self.config.timeout, io).await {
            Exit::Finished { status, .. } if status.success() => Ok(()),
            Exit::Finished { status, stderr, .. } => Err(DeliveryError::Exit {
                program,
                status: status.to_string(),
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            }),
            Exit::TimedOut => Err(DeliveryError::Timeout(self.config.timeout)),
            Exit::Failed(source) => Err(DeliveryError::Spawn { program, source }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::alert::Event;

    fn command(argv: &[&str], timeout: Duration) -> Command {
        Command::new(CommandConfig {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            timeout,
        })
    }

    fn input(c: &mut Command) -> Input {
        c.prepare(&Alert {
            event: Event::Server {
                proxy: "www".into(),
                server: "web1".into(),
                addr: None,
                state: "DOWN".into(),
                reason: None,
            },
            node: "lb1".into(),
            time: SystemTime::UNIX_EPOCH,
            suppressed: 0,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn failures_say_why() {
        let mut c = command(
            &["sh", "-c", "echo nope >&2; exit 3"],
            Duration::from_secs(5),
        );
        let i = input(&mut c);
        let e = c.deliver(&i).await.unwrap_err().to_string();
        assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");

        let mut c = command(&["/nonexistent/fulcrum-alert"], Duration::from_secs(5));
        let i = input(&mut c);
        assert!(matches!(
            c.deliver(&i).await,
            Err(DeliveryError::Spawn { .. })
        ));

        let mut c = command(&["sleep", "5"], Duration::from_millis(100));
        let i = input(&mut c);
        assert!(matches!(
            c.deliver(&i).await,
            Err(DeliveryError::Timeout(_))
        ));

        let mut c = command(
            &[
                "sh",
                "-c",
                "test \"$FULCRUM_ALERT_FIRING$FULCRUM_ALERT_OBJECT\" = 1www/web1",
            ],
            Duration::from_secs(5),
        );
        let i = input(&mut c);
        c.deliver(&i).await.unwrap();
    }

    #[tokio::test]
    async fn a_program_that_leaves_a_background_process_is_judged_by_its_exit() {
        // The background `sleep` keeps stderr open long after the program exited with 0.
        let mut c = command(
            &["sh", "-c", "echo sent >&2; sleep 30 & exit 0"],
            Duration::from_secs(5),
        );
        let i = input(&mut c);
        let started = std::time::Instant::now();
        c.deliver(&i).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));

        let mut c = command(
            &["sh", "-c", "echo failed >&2; sleep 30 & exit 4"],
            Duration::from_secs(5),
        );
        let i = input(&mut c);
        let e = c.deliver(&i).await.unwrap_err().to_string();
        assert!(e.contains("exit status: 4") && e.contains("failed"), "{e}");
    }
}
