//! The checker of one tracked script: runs it every interval and turns the results into a verdict
//! with keepalived's fall/rise hysteresis, so one flaky run does not move the VIPs.

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::shell::{self, Exit};
use crate::config::{BuiltinCheck, ScriptCheck, ScriptConfig};

/// A tracked script's verdict after fall/rise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptHealth {
    /// Not run to its end yet (keepalived's `INIT`): it neither faults nor weighs (see
    /// [`super::tracked_priority`]), and an address owner waits for it before it starts.
    Pending,
    Good,
    Bad,
}

/// Starts the checker of one `[vrrp.script.NAME]` on the current tokio runtime and returns its
/// verdict.
///
/// - Command: runs `sh -c COMMAND` every `interval` (stdio null), killed with its process group
///   and counted as a failure after `timeout`; exit 0 is a success, anything else (or a spawn
///   error) a failure.
/// - Builtin(Proxy): `builtin` receives "the local proxy is healthy"; each interval samples it
///   (no process). Missing or closed, it counts as a failure: no one says the proxy is up.
///
/// The receiver starts on Pending, and the first run's end decides the verdict, as keepalived's
/// start (`rise - 1`, "one success is enough", and a first failure fails at once). After that
/// it turns Bad after `fall` consecutive failures and Good again after `rise` consecutive
/// successes; the receiver sees only changes.
/// The task ends, killing a run in progress, once every receiver is dropped.
///
/// # Panics
///
/// Outside a tokio runtime, as [`tokio::spawn`].
pub fn spawn_script(
    config: ScriptConfig,
    builtin: Option<watch::Receiver<bool>>,
) -> watch::Receiver<ScriptHealth> {
    let (tx, rx) = watch::channel(ScriptHealth::Pending);
    tokio::spawn(async move {
        tokio::select! {
            () = tx.closed() => debug!(script = %config.name, "tracked script no longer watched"),
            () = check_forever(&config, builtin, &tx) => {}
        }
    });
    rx
}

/// Runs the check, then waits an interval, forever (keepalived schedules the next run an
/// interval after the previous one ends, so a slow script never overlaps itself).
async fn check_forever(
    config: &ScriptConfig,
    builtin: Option<watch::Receiver<bool>>,
    tx: &watch::Sender<ScriptHealth>,
) {
    let mut verdict = Verdict::new(config.fall, config.rise);
    loop {
        let ok = match &config.check {
            ScriptCheck::Command(command) => run_command(config, command).await,
            ScriptCheck::Builtin(BuiltinCheck::Proxy) => sample(config, builtin.as_ref()),
        };
        let was = verdict.health;
        if let Some(health) = verdict.record(ok) {
            if was == ScriptHealth::Pending {
                info!(script = %config.name, ?health, "tracked script's first verdict");
            } else {
                warn!(script = %config.name, ?health, "tracked script verdict changed");
            }
            tx.send_replace(health);
        }
        tokio::time::sleep(config.interval).await;
    }
}

async fn run_command(config: &ScriptConfig, command: &str) -> bool {
    let exit = shell::run(command, &[], config.timeout).await;
    match &exit {
        Exit::Finished { status, .. } if status.success() => {}
        Exit::Finished { status, .. } => {
            debug!(script = %config.name, %status, "tracked script failed");
        }
        Exit::TimedOut => {
            debug!(script = %config.name, timeout = ?config.timeout, "tracked script timed out");
        }
        Exit::Failed(error) => {
            debug!(script = %config.name, %error, "tracked script did not run");
        }
    }
    shell::success(&exit)
}

fn sample(config: &ScriptConfig, builtin: Option<&watch::Receiver<bool>>) -> bool {
    let healthy = builtin.is_some_and(|rx| rx.has_changed().is_ok() && *rx.borrow());
    if !healthy {
        debug!(script = %config.name, "local proxy not healthy");
    }
    healthy
}

/// keepalived's fall/rise: the streak of results against the current verdict.
#[derive(Debug)]
struct Verdict {
    /// Pending until the first result, which decides.
    health: ScriptHealth,
    /// Consecutive results disagreeing with `health`.
    streak: u32,
    fall: u32,
    rise: u32,
}

impl Verdict {
    fn new(fall: u32, rise: u32) -> Self {
        Verdict {
            health: ScriptHealth::Pending,
            streak: 0,
            fall,
            rise,
        }
    }

    /// Records one result; returns the new verdict if it changed.
    fn record(&mut self, ok: bool) -> Option<ScriptHealth> {
        let (agrees, needed, other) = match self.health {
            ScriptHealth::Pending => {
                self.health = if ok {
                    ScriptHealth::Good
                } else {
                    ScriptHealth::Bad
                };
                return Some(self.health);
            }
            ScriptHealth::Good => (ok, self.fall, ScriptHealth::Bad),
            ScriptHealth::Bad => (!ok, self.rise, ScriptHealth::Good),
        };
        if agrees {
            self.streak = 0;
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        if self.streak < needed {
            return None;
        }
        self.health = other;
        self.streak = 0;
        Some(other)
    }
}

#[cfg(test)]
mod tests;
