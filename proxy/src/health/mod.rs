//! Active health checks: one task per checked server probing it every `interval`, HAProxy's
//! rise/fall counter deciding UP and DOWN, and an event for every change.
//!
//! - [`counter`]: the rise/fall arithmetic, pure.
//! - [`probe`]: one TCP or HTTP probe, or [`external`]: one program run.
//! - [`agent`]: HAProxy's agent checks, run beside the health check of the same server.
//! - [`observed`]: what errors in live traffic (HAProxy's `observe`) do to the check.
//! - [`Supervisor`]: the tasks, started, kept or restarted as reloads change the config.

mod agent;
pub mod counter;
mod external;
// The TLS tests of `l7::h1::conn` shake hands as this check does.
pub(crate) mod https;
mod observed;
mod probe;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use tokio::{task::JoinHandle, time::Instant};

use self::{
    counter::{HealthCounter, Stage, Transition},
    external::Subject,
};
use crate::{
    config::{AgentCheck, Check, OnMarkedDown, OnMarkedUp},
    runtime::Runtime,
    state::{AdminState, CheckResult, ServerState, ServerStatus, counters},
    table::Table,
};

/// What a check task was started with; a reload that changes any of it restarts the task.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    check: Option<Check>,
    agent: Option<AgentCheck>,
    addr: SocketAddr,
    listener: Option<SocketAddr>,
    agent_addr: Option<IpAddr>,
    /// Identity of the server state: a server whose state was replaced needs a new task.
    state: usize,
    /// Identities of the backup servers' states, for `on_marked_up`.
    backups: Vec<usize>,
}

/// One server to check: its key (backend and server name, or virtual service and address), the
/// health check and the agent check (at least one), the address probed and the state the
/// verdicts go to.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) key: (String, String),
    pub(crate) check: Option<Check>,
    pub(crate) agent: Option<AgentCheck>,
    pub(crate) addr: SocketAddr,
    /// A virtual service's address, which an `external` check's program is given.
    pub(crate) listener: Option<SocketAddr>,
    /// Where the agent is asked, when not at the server's address (`agent_addr`).
    pub(crate) agent_addr: Option<IpAddr>,
    pub(crate) state: Arc<ServerState>,
    /// The servers whose sessions end when the check marks this one UP
    /// (`on_marked_up = "shutdown-backup-sessions"`): its backend's backups.
    pub(crate) backups: Vec<Arc<ServerState>>,
}

/// The running check tasks, by backend and server name.
#[derive(Debug, Default)]
pub(crate) struct Supervisor {
    tasks: Mutex<HashMap<(String, String), (Spec, AbortOnDrop)>>,
}

impl Supervisor {
    /// Makes the running checks match the L7 `table`: new servers get a task, changed ones a new
    /// task, removed ones lose theirs. Servers without checks are considered healthy.
    pub(crate) fn reconcile(&self, rt: &Arc<Runtime>, table: &Table) {
        let mut targets = Vec::new();
        for (bcfg, bentry) in table.config.backends.iter().zip(&table.backends) {
            let backups: Vec<_> = (bcfg.servers.iter().zip(&bentry.servers))
                .filter(|(scfg, _)| scfg.backup)
                .map(|(_, state)| Arc::clone(state))
                .collect();
            for (scfg, state) in bcfg.servers.iter().zip(&bentry.servers) {
                // `check = false` on a server turns off both.
                let (check, agent) = match scfg.check {
                    true => (bcfg.check.as_ref(), bcfg.agent.as_ref()),
                    false => (None, None),
                };
                if !follow_config(rt, state, check, agent) {
                    continue;
                }
                let backups = match check.and_then(|c| c.on_marked_up) {
                    Some(OnMarkedUp::ShutdownBackupSessions) if !scfg.backup => backups.clone(),
                    _ => Vec::new(),
                };
                targets.push(Target {
                    key: (bcfg.name.clone(), scfg.name.clone()),
                    addr: probed(scfg.addr, check),
                    listener: None,
                    agent_addr: scfg.agent_addr,
                    check: check.cloned(),
                    agent: agent.cloned(),
                    state: Arc::clone(state),
                    backups,
                });
            }
        }
        self.reconcile_targets(rt, targets);
    }

    /// Makes the running checks exactly `targets`: a target whose check, address and state are
    /// unchanged keeps its task (and its rise/fall progress).
    pub(crate) fn reconcile_targets(&self, rt: &Arc<Runtime>, targets: Vec<Target>) {
        let wanted: HashMap<_, _> = targets
            .into_iter()
            .map(|t| {
                let spec = Spec {
                    check: t.check.clone(),
                    agent: t.agent.clone(),
                    addr: t.addr,
                    listener: t.listener,
                    agent_addr: t.agent_addr,
                    state: Arc::as_ptr(&t.state) as usize,
                    backups: t.backups.iter().map(|b| Arc::as_ptr(b) as usize).collect(),
                };
                (t.key.clone(), (spec, t))
            })
            .collect();
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        tasks.retain(|key, (spec, _)| wanted.get(key).is_some_and(|(want, _)| want == spec));
        for (key, (spec, target)) in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            let handle = tokio::spawn(run(Arc::clone(rt), target));
            tasks.insert(key, (spec, AbortOnDrop(handle)));
        }
    }

    /// Stops every check.
    pub(crate) fn stop(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.clear();
        }
    }
}

/// Applies to `state` the checks the config gives it: a health check or none, its passive part,
/// an agent check or none. Whether a check task must run for it.
pub(crate) fn follow_config(
    rt: &Runtime,
    state: &ServerState,
    check: Option<&Check>,
    agent: Option<&AgentCheck>,
) -> bool {
    match check {
        Some(_) => state.set_check_configured(true),
        None => unchecked(rt, state),
    }
    state.observer.configure(check);
    match agent {
        Some(_) => state.set_agent_configured(),
        None => agent_removed(rt, state),
    }
    check.is_some() || agent.is_some()
}

/// The address a server at `server` is probed at: its own, or `check.port` on its IP.
pub(crate) fn probed(server: SocketAddr, check: Option<&Check>) -> SocketAddr {
    let port = check.and_then(|c| c.port).unwrap_or(server.port());
    SocketAddr::new(server.ip(), port)
}

/// A server the config no longer gives checks: healthy, with its check progress forgotten (so
/// that a reload giving it checks again starts from its status), and the change reported as a
/// check's verdict would be.
fn unchecked(rt: &Runtime, state: &ServerState) {
    state.set_check_configured(false);
    if let Ok(mut health) = state.health.lock() {
        *health = None;
    }
    let (from, to) = state.set_healthy(true);
    report_status(rt, state, from, to, "health check removed".to_owned());
}

/// `text` from a server (an agent's reply, a program's output) with its control characters
/// replaced: it goes into logs and the stats page.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A server the config no longer gives an agent check: whatever the agent held it to (DOWN, a
/// connection limit) is let go, reported as a check's verdict would be. Its weight and admin
/// state stay, as an operator's would: only an agent could revert them.
fn agent_removed(rt: &Runtime, state: &ServerState) {
    let (from, to) = state.forget_agent();
    report_status(rt, state, from, to, "agent check removed".to_owned());
}

/// What a server's change of status does to sessions, as HAProxy's `on-marked-down` and
/// `on-marked-up` ask, whether its health check or its agent made the change.
#[derive(Debug, Default)]
struct OnMarked {
    /// `on_marked_down = "shutdown-sessions"`: a server going DOWN ends its sessions.
    shutdown_sessions: bool,
    /// `on_marked_up = "shutdown-backup-sessions"`: the backups whose sessions end when this
    /// server comes back UP from DOWN; empty unless asked for.
    backups: Vec<Arc<ServerState>>,
}

impl OnMarked {
    fn status_changed(&self, state: &ServerState, from: ServerStatus, to: ServerStatus) {
        if self.shutdown_sessions && to == ServerStatus::Down && from != ServerStatus::Down {
            state.shutdown_sessions();
        }
        // Clients on a backup come back to this server. Not while it stays DOWN for its
        // agent, nor for a draining server, which takes no new clients.
        if from == ServerStatus::Down && to == ServerStatus::Up {
            self.backups.iter().for_each(|b| b.shutdown_sessions());
        }
    }
}

/// Logs a change of a server's status that a check, an agent or a reload made (`server is
/// DOWN`, at WARN; `server is UP`, ... at INFO) and tells the alerts; nothing if it did not
/// change.
fn report_status(
    rt: &Runtime,
    state: &ServerState,
    from: ServerStatus,
    to: ServerStatus,
    reason: String,
) {
    if from == to {
        return;
    }
    if to == ServerStatus::Down {
        tracing::warn!(backend = %state.backend, server = %state.name, %reason, "server is DOWN");
    } else {
        tracing::info!(backend = %state.backend, server = %state.name, %reason, "server is {to}");
    }
    rt.emit_status(state, from, reason);
}

/// The wait before the next check, as HAProxy's `srv_getinter`: `interval` while the server is
/// fully UP, `down_interval` while fully DOWN, `fast_interval` on its way between.
fn period(check: &Check, health: &HealthCounter) -> std::time::Duration {
    match health.stage() {
        Stage::Up => check.interval,
        Stage::Down => check.down_interval,
        Stage::Moving => check.fast_interval,
    }
}

/// A task handle that cancels its task when dropped, so no check outlives its config.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a server's health check and agent check, forever.
async fn run(rt: Arc<Runtime>, target: Target) {
    let marked = Arc::new(OnMarked {
        shutdown_sessions: (target.check.as_ref())
            .is_some_and(|c| c.on_marked_down == Some(OnMarkedDown::ShutdownSessions)),
        backups: target.backups.clone(),
    });
    let agent = target.agent.clone().map(|agent| {
        let ip = target.agent_addr.unwrap_or(target.state.addr.ip());
        let addr = SocketAddr::new(ip, agent.port);
        let (rt, state, marked) = (
            Arc::clone(&rt),
            Arc::clone(&target.state),
            Arc::clone(&marked),
        );
        agent::run(rt, state, agent, addr, marked)
    });
    let agent = async {
        if let Some(agent) = agent {
            agent.await;
        }
    };
    tokio::join!(agent, run_check(rt, target, &marked));
}

/// Checks one server forever, if it has a health check. While an operator has disabled its
/// checks, none is sent; once enabled again, the count starts afresh
/// ([`ServerState::enable_checks`]).
async fn run_check(rt: Arc<Runtime>, target: Target, marked: &OnMarked) {
    let Target {
        state,
        check,
        addr,
        listener,
        ..
    } = target;
    let Some(check) = check else {
        return;
    };
    let subject = Subject {
        state: &state,
        listener,
        addr,
    };
    let mut epoch = state.check_epoch();
    let mut health = {
        match state.health_counter() {
            // A reload that changed rise/fall keeps the verdict, not the arithmetic; so does a
            // counter that disagrees with the status (which then wins).
            Some(h)
                if h.rise() == check.rise
                    && h.fall() == check.fall
                    && h.is_up() == state.check_healthy() =>
            {
                h
            }
            Some(_) => HealthCounter::new(check.rise, check.fall, state.check_healthy()),
            None => HealthCounter::at_startup(check.rise, check.fall),
        }
    };
    let mut wait = probe::first_delay(period(&check, &health));
    loop {
        // `interval` runs from the end of one check to the start of the next, as HAProxy
        // schedules `inter`; leaving MAINT or `enable health` asks for a check at once.
        let mut next = Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => break,
                () = state.check_now.notified() => break,
                () = state.observer.wake.notified() => {
                    let Some((hits, why)) = state.observer.take() else {
                        continue;
                    };
                    follow_epoch(&state, &check, &mut epoch, &mut health);
                    if state.admin() != AdminState::Maint && !state.checks_disabled() {
                        for _ in 0..hits {
                            let fully_down = health.health() == 0;
                            let Some(transition) = observed::act(&check, &mut health) else {
                                break;
                            };
                            // A failed check, as HAProxy counts its `chkfail`.
                            if !fully_down {
                                counters::inc(&state.counters.failed_checks);
                            }
                            let result = observed::result(why.clone());
                            conclude(&rt, &state, marked, health, result, transition);
                        }
                    }
                    // Every `on_error` brings the next check forward, as HAProxy's do.
                    next = next.min(Instant::now() + check.fast_interval);
                }
            }
        }
        wait = probe::spread(check.interval, check.spread_percent);
        follow_epoch(&state, &check, &mut epoch, &mut health);
        if state.admin() != AdminState::Maint && !state.checks_disabled() {
            let result = probe::probe(&check, &subject).await;
            // Disabled, re-enabled, or put into MAINT while probing: the result no longer
            // counts (HAProxy pauses the checks of a server in maintenance).
            if state.checks_disabled()
                || state.check_epoch() != epoch
                || state.admin() == AdminState::Maint
            {
                continue;
            }
            // Counted while the server is not fully DOWN, as HAProxy's `chkfail`: a server
            // down for an hour does not add a failure per interval.
            if !result.ok && health.health() > 0 {
                counters::inc(&state.counters.failed_checks);
            }
            let transition = health.record(result.ok);
            if result.ok {
                state.observer.clear();
            }
            wait = probe::spread(period(&check, &health), check.spread_percent);
            conclude(&rt, &state, marked, health, result, transition);
        }
    }
}

/// Starts `health` afresh, as at start-up, once an operator restarted the checks (`enable
/// health`, leaving MAINT): their epoch moved on.
fn follow_epoch(state: &ServerState, check: &Check, epoch: &mut u64, health: &mut HealthCounter) {
    let current = state.check_epoch();
    if current != *epoch {
        *epoch = current;
        *health = HealthCounter::at_startup(check.rise, check.fall);
    }
}

/// Publishes a check's `result` and the counter it left, and reports the change of status it
/// made, if any.
fn conclude(
    rt: &Runtime,
    state: &ServerState,
    marked: &OnMarked,
    health: HealthCounter,
    result: CheckResult,
    transition: Transition,
) {
    if let Ok(mut slot) = state.health.lock() {
        *slot = Some(health);
    }
    let reason = result.description.clone();
    if let Ok(mut last) = state.last_check.lock() {
        *last = Some(result);
    }
    let healthy = match transition {
        Transition::WentUp => Some(true),
        Transition::WentDown => Some(false),
        Transition::None => None,
    };
    if let Some(healthy) = healthy {
        let (from, to) = state.set_healthy(healthy);
        marked.status_changed(state, from, to);
        report_status(rt, state, from, to, reason);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::CheckKind;

    #[test]
    fn the_period_follows_the_counter_as_haproxys_srv_getinter() {
        let check = Check {
            interval: Duration::from_secs(1),
            fast_interval: Duration::from_secs(2),
            down_interval: Duration::from_secs(3),
            ..Check::of_kind(CheckKind::Tcp)
        };
        let mut health = HealthCounter::at_startup(2, 3);
        assert_eq!(
            period(&check, &health),
            check.fast_interval,
            "not checked yet"
        );
        health.record(true);
        assert_eq!(period(&check, &health), check.interval, "fully UP");
        health.record(false);
        assert_eq!(
            period(&check, &health),
            check.fast_interval,
            "UP, going DOWN"
        );
        health.record(false);
        health.record(false);
        assert_eq!(period(&check, &health), check.down_interval, "fully DOWN");
        health.record(true);
        assert_eq!(
            period(&check, &health),
            check.fast_interval,
            "DOWN, going UP"
        );
        // With fall 1, a server not checked yet is at the top already, as in HAProxy.
        let fall_1 = HealthCounter::at_startup(2, 1);
        assert_eq!(period(&check, &fall_1), check.interval);
    }
}
