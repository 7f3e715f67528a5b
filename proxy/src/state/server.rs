//! One server's runtime state: health, admin state, weight, counters and idle connections, and
//! the switches operators pull at run time (health checks off and on, sessions shut down).

use std::{
    net::SocketAddr,
    sync::{
        Mutex, MutexGuard, PoisonError, Weak,
        atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::sync::Notify;

use super::{
    Availability, Observer, ServerCounters, shutdown::SessionKill, slow_start, unix_millis,
};
use crate::{health::counter::HealthCounter, l7::pool::Pool};

pub use fulcrum_common::action::AdminState;

/// The admin state stored as `AdminState as u8`; anything else reads as `Ready`.
fn admin_from_u8(v: u8) -> AdminState {
    match v {
        1 => AdminState::Drain,
        2 => AdminState::Maint,
        _ => AdminState::Ready,
    }
}

/// The state operators see: UP, DOWN, MAINT or DRAIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerStatus {
    Up,
    Down,
    Maint,
    Drain,
}

impl std::fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Up => "UP",
            Self::Down => "DOWN",
            Self::Maint => "MAINT",
            Self::Drain => "DRAIN",
        })
    }
}

/// The outcome of the last health check, for the stats page and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub ok: bool,
    /// HAProxy-style short description: `L4OK`, `L4CON`, `L4TOUT`, `L7OK`, `L7STS 500`, ...
    pub description: String,
    pub duration: Duration,
}

/// `agent_max_connections` when the agent gave no `maxconn:N`.
const NO_AGENT_LIMIT: u64 = u64::MAX;

/// The outcome of the last agent check, for the stats page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentResult {
    /// HAProxy's short status: `L7OK` (a reply), `L7STS` (a reply saying `down`, `fail` or
    /// `stopped`), `L4CON`, `L4TOUT` or `L7TOUT` (none).
    pub status: String,
    /// The agent's reply line, or why there was none (HAProxy's `last_agt`).
    pub text: String,
    pub duration: Duration,
}

/// A server's runtime state, shared by the routing tables of successive reloads.
#[derive(Debug)]
pub struct ServerState {
    pub backend: String,
    pub name: String,
    pub addr: SocketAddr,
    pub counters: ServerCounters,
    pub pool: Pool,
    healthy: AtomicBool,
    admin: AtomicU8,
    weight: AtomicU32,
    /// The largest weight [`Self::set_weight`] accepts: 256 as HAProxy for L7 servers, 65535 as
    /// IPVS for L4 real servers.
    weight_max: u32,
    /// What the config said last, so a reload changes runtime values only where the file did.
    config_weight: AtomicU32,
    config_disabled: AtomicBool,
    pub(crate) health: Mutex<Option<HealthCounter>>,
    pub(crate) last_check: Mutex<Option<CheckResult>>,
    /// The agent's verdict (HAProxy's `agent-check`): DOWN once it said `down`, `fail` or
    /// `stopped`, until it says `up`. Separate from the health check's, and both must be UP
    /// for the server to be.
    agent_down: AtomicBool,
    /// The `maxconn:N` the agent last gave, replacing the config's `max_connections` (0: no
    /// limit); [`NO_AGENT_LIMIT`]: none given.
    agent_max_connections: AtomicU64,
    /// Whether the config gives this server an agent check.
    agent_configured: AtomicBool,
    /// An operator's `disable agent`: no agent check runs, and a DOWN it held is let go.
    agent_disabled: AtomicBool,
    /// Bumped when a reload removes the agent check; held while an agent's reply is applied,
    /// so a task the reload aborted mid-reply cannot put back what the removal let go.
    agent_epoch: Mutex<u64>,
    /// The agent's last reply, or why there was none.
    pub(crate) last_agent: Mutex<Option<AgentResult>>,
    /// Whether the config gives this server a health check.
    check_configured: AtomicBool,
    /// An operator's `disable health`: no check runs and the server counts as healthy.
    checks_disabled: AtomicBool,
    /// Bumped by `enable health` and by leaving MAINT, so the check task starts its rise/fall
    /// count afresh.
    check_epoch: AtomicU64,
    /// Wakes the check task for a check now rather than at its next interval.
    pub(crate) check_now: Notify,
    /// What live traffic says of it (HAProxy's `observe`).
    pub(crate) observer: Observer,
    /// Ends the sessions under way at an operator's `shutdown sessions`.
    kill: SessionKill,
    /// The backend or virtual service whose availability depends on this server's.
    group: Mutex<Weak<Availability>>,
    /// Serialises the status changes (see [`Self::one_change_at_a_time`]).
    status_change: Mutex<()>,
    /// Unix milliseconds of the last status change.
    pub last_change: AtomicU64,
    /// Since the server last came back from DOWN or MAINT, for `slow_start`.
    ramp: slow_start::Ramp,
    /// Milliseconds spent DOWN before the current state.
    pub downtime: AtomicU64,
    /// Woken when a slot frees on this server, for requests queued on it.
    pub(crate) slot_freed: Notify,
    /// Woken (all waiters) whenever [`Self::status`] changes, e.g. for L4 connections that must
    /// be reset when their real server goes DOWN.
    pub(crate) status_changed: Notify,
}

impl ServerState {
    pub(crate) fn new(
        backend: &str,
        name: &str,
        addr: SocketAddr,
        weight: u32,
        pool_max_idle: usize,
    ) -> Self {
        Self {
            backend: backend.to_owned(),
            name: name.to_owned(),
            addr,
            counters: ServerCounters::default(),
            pool: Pool::new(pool_max_idle),
            healthy: AtomicBool::new(true),
            admin: AtomicU8::new(AdminState::Ready as u8),
            weight: AtomicU32::new(weight),
            weight_max: 256,
            config_weight: AtomicU32::new(weight),
            config_disabled: AtomicBool::new(false),
            health: Mutex::new(None),
            last_check: Mutex::new(None),
            agent_down: AtomicBool::new(false),
            agent_max_connections: AtomicU64::new(NO_AGENT_LIMIT),
            agent_configured: AtomicBool::new(false),
            agent_disabled: AtomicBool::new(false),
            agent_epoch: Mutex::new(0),
            last_agent: Mutex::new(None),
            check_configured: AtomicBool::new(false),
            checks_disabled: AtomicBool::new(false),
            check_epoch: AtomicU64::new(0),
            check_now: Notify::new(),
            observer: Observer::default(),
            kill: SessionKill::default(),
            group: Mutex::new(Weak::new()),
            status_change: Mutex::new(()),
            last_change: AtomicU64::new(unix_millis()),
            ramp: slow_start::Ramp::default(),
            downtime: AtomicU64::new(0),
            slot_freed: Notify::new(),
            status_changed: Notify::new(),
        }
    }

    /// Lets weights go up to `max` instead of HAProxy's 256 (IPVS takes 0..=65535).
    pub(crate) fn with_weight_max(mut self, max: u32) -> Self {
        self.weight_max = max;
        self.weight = AtomicU32::new(self.weight.into_inner().min(max));
        self
    }

    /// Applies the config's `weight` and `disabled` to the runtime state where the config changed
    /// them since it was last applied, so a reload does not undo an operator's runtime change
    /// the file did not touch.
    pub(crate) fn apply_config(&self, weight: u32, disabled: bool) {
        if self.config_weight.swap(weight, Relaxed) != weight {
            self.set_weight(weight);
        }
        if self.config_disabled.swap(disabled, Relaxed) != disabled {
            self.set_admin(if disabled {
                AdminState::Maint
            } else {
                AdminState::Ready
            });
        }
    }

    /// UP / DOWN / MAINT / DRAIN as an operator sees it.
    pub fn status(&self) -> ServerStatus {
        match self.admin() {
            AdminState::Maint => ServerStatus::Maint,
            _ if !self.is_healthy() => ServerStatus::Down,
            AdminState::Drain => ServerStatus::Drain,
            AdminState::Ready => ServerStatus::Up,
        }
    }

    /// Whether the server may take new, non-sticky clients.
    pub fn takes_new_clients(&self) -> bool {
        self.status() == ServerStatus::Up && self.weight() > 0
    }

    /// Whether a client already bound to this server (by cookie) may keep using it.
    pub fn takes_sticky_clients(&self) -> bool {
        matches!(self.status(), ServerStatus::Up | ServerStatus::Drain)
    }

    /// Whether both the health check and the agent (where there are any) let it be UP.
    pub fn is_healthy(&self) -> bool {
        self.check_healthy() && !self.agent_down()
    }

    /// The health check's verdict alone.
    pub fn check_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Whether the agent holds the server DOWN.
    pub fn agent_down(&self) -> bool {
        self.agent_down.load(Relaxed)
    }

    /// Records the agent's verdict; returns the status before and after.
    pub(crate) fn set_agent_down(&self, down: bool) -> (ServerStatus, ServerStatus) {
        let _one = self.one_change_at_a_time();
        let before = self.status();
        self.agent_down.store(down, Relaxed);
        let after = self.status();
        self.note_change(before, after);
        if down {
            self.pool.clear();
        }
        (before, after)
    }

    /// The connection limit: the agent's `maxconn:N` if it gave one, else `configured` (0 = no
    /// limit).
    pub fn max_connections(&self, configured: u32) -> u32 {
        match self.agent_max_connections.load(Relaxed) {
            NO_AGENT_LIMIT => configured,
            agent => agent as u32,
        }
    }

    /// The limit new requests are held to now: [`Self::max_connections`], ramped over
    /// `slow_start` as the weight is, since HAProxy's warmup ramps both.
    pub fn max_connections_now(&self, configured: u32, slow_start: Option<Duration>) -> u32 {
        let max = self.max_connections(configured);
        match slow_start {
            Some(slow_start) => self.ramp.weight(max, slow_start),
            None => max,
        }
    }

    /// The agent's `maxconn:N` (0: no limit).
    pub(crate) fn set_agent_max_connections(&self, max: u32) {
        self.agent_max_connections.store(u64::from(max), Relaxed);
        self.slot_freed.notify_waiters();
    }

    /// Whether the config gives this server an agent check.
    pub fn agent_configured(&self) -> bool {
        self.agent_configured.load(Relaxed)
    }

    pub(crate) fn set_agent_configured(&self) {
        self.agent_configured.store(true, Relaxed);
    }

    /// Whether an operator stopped the agent check.
    pub fn agent_disabled(&self) -> bool {
        self.agent_disabled.load(Relaxed)
    }

    /// HAProxy's `disable agent`: the agent is no longer asked, and a DOWN it held no longer
    /// counts (its weight, limit and admin state stay, as an operator's would). Returns the
    /// status before and after; `None` if the server has no agent check.
    pub(crate) fn disable_agent(&self) -> Option<(ServerStatus, ServerStatus)> {
        // Under the epoch's lock, so that a reply being applied finishes first, and a reload
        // removing the agent check cannot come between the look and the change.
        let _epoch = self
            .agent_epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.agent_configured() {
            return None;
        }
        self.agent_disabled.store(true, Relaxed);
        Some(self.set_agent_down(false))
    }

    /// HAProxy's `enable agent`: the agent is asked again, and its next reply applies.
    pub(crate) fn enable_agent(&self) {
        self.agent_disabled.store(false, Relaxed);
    }

    /// The current agent epoch, for [`Self::if_agent_current`].
    pub(crate) fn agent_epoch(&self) -> u64 {
        *self
            .agent_epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` unless the agent check was removed since `epoch`, and keeps it from being
    /// removed meanwhile.
    pub(crate) fn if_agent_current<R>(&self, epoch: u64, f: impl FnOnce() -> R) -> Option<R> {
        let current = self
            .agent_epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (*current == epoch).then(f)
    }

    /// The config no longer gives an agent check: what the agent held the server to (DOWN, a
    /// connection limit) is let go, and its last result forgotten. Returns the status before
    /// and after.
    pub(crate) fn forget_agent(&self) -> (ServerStatus, ServerStatus) {
        let mut epoch = self
            .agent_epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *epoch += 1;
        self.agent_configured.store(false, Relaxed);
        self.agent_disabled.store(false, Relaxed);
        if self.agent_max_connections.swap(NO_AGENT_LIMIT, Relaxed) != NO_AGENT_LIMIT {
            self.slot_freed.notify_waiters();
        }
        if let Ok(mut last) = self.last_agent.lock() {
            *last = None;
        }
        self.set_agent_down(false)
    }

    /// The last agent check's outcome.
    pub fn last_agent(&self) -> Option<AgentResult> {
        self.last_agent.lock().ok().and_then(|g| g.clone())
    }

    pub fn admin(&self) -> AdminState {
        admin_from_u8(self.admin.load(Relaxed))
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }

    /// Sets the weight an operator asked for (0..=256, or 0..=65535 for L4 real servers).
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight.min(self.weight_max), Relaxed);
        self.tell_group();
    }

    /// The weight new clients are balanced by with a dynamic algorithm: [`Self::weight`],
    /// ramped over `slow_start` after the server came back UP.
    pub fn weight_now(&self, slow_start: Option<Duration>) -> u32 {
        let weight = self.weight();
        match slow_start {
            Some(slow_start) => self.ramp.weight(weight, slow_start),
            None => weight,
        }
    }

    /// The share of its weight the server gets while `slow_start` ramps it up, in percent.
    pub fn throttle(&self, slow_start: Option<Duration>) -> Option<u32> {
        self.ramp.throttle(self.weight(), slow_start?)
    }

    /// The largest weight [`Self::set_weight`] takes.
    pub fn weight_max(&self) -> u32 {
        self.weight_max
    }

    /// The weight the config gave.
    pub fn config_weight(&self) -> u32 {
        self.config_weight.load(Relaxed)
    }

    /// Sets the admin state; returns the status before and after, for the caller to report.
    ///
    /// Leaving MAINT with checks running is HAProxy's "start OK but check immediately": the
    /// server is UP at once, its count starts afresh (DOWN at the first failure), and it is
    /// checked now. The verdict from before the maintenance is stale.
    pub fn set_admin(&self, admin: AdminState) -> (ServerStatus, ServerStatus) {
        let _one = self.one_change_at_a_time();
        let before = self.status();
        let previous = admin_from_u8(self.admin.swap(admin as u8, Relaxed));
        if previous == AdminState::Maint && admin != AdminState::Maint && self.checks_enabled() {
            self.restart_checks();
            self.healthy.store(true, Relaxed);
        }
        let after = self.status();
        self.note_change(before, after);
        if admin == AdminState::Maint {
            self.pool.clear();
        }
        (before, after)
    }

    /// Records a health verdict; returns the status before and after.
    pub(crate) fn set_healthy(&self, healthy: bool) -> (ServerStatus, ServerStatus) {
        let _one = self.one_change_at_a_time();
        let before = self.status();
        self.healthy.store(healthy, Relaxed);
        let after = self.status();
        self.note_change(before, after);
        if !healthy {
            self.pool.clear();
        }
        (before, after)
    }

    /// Runs `emit` with the server's status now, the report of a change from `from`, under the
    /// lock changes take, unless the server is back at `from`. Two changes at once (a check
    /// and an operator) are then reported in the order they were made, each with the status
    /// the server has when it goes out: the alerts' last word on a server is its status, even
    /// when a later change (a reload's `disabled`) is not reported itself.
    pub(crate) fn report_in_order(&self, from: ServerStatus, emit: impl FnOnce(ServerStatus)) {
        let _one = self.one_change_at_a_time();
        let now = self.status();
        if now != from {
            emit(now);
        }
    }

    /// Held while a status changes: the health check, the agent and an operator may change it
    /// at once, and each must see the status the other left, or both would report (and count,
    /// and act on) the same UP -> DOWN.
    fn one_change_at_a_time(&self) -> MutexGuard<'_, ()> {
        self.status_change
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn note_change(&self, before: ServerStatus, after: ServerStatus) {
        if before == after {
            return;
        }
        self.status_changed.notify_waiters();
        self.tell_group();
        let now = unix_millis();
        let previous = self.last_change.swap(now, Relaxed);
        // As HAProxy's warmup: begun by leaving DOWN or MAINT (for UP or DRAIN), ended only by
        // going back to either.
        let out = |s| matches!(s, ServerStatus::Down | ServerStatus::Maint);
        if out(after) {
            self.ramp.cancel();
        } else if out(before) {
            self.ramp.start();
        }
        if before == ServerStatus::Down {
            self.downtime
                .fetch_add(now.saturating_sub(previous), Relaxed);
        }
        // HAProxy's `chkdown`: a serving server that went DOWN, not one leaving MAINT.
        if after == ServerStatus::Down && matches!(before, ServerStatus::Up | ServerStatus::Drain) {
            self.counters.down_transitions.fetch_add(1, Relaxed);
        }
    }

    /// Makes `group` the availability this server's changes are reported to.
    pub(crate) fn join(&self, group: Weak<Availability>) {
        if let Ok(mut g) = self.group.lock() {
            *g = group;
        }
    }

    fn tell_group(&self) {
        let group = self.group.lock().ok().and_then(|g| g.upgrade());
        if let Some(group) = group {
            group.refresh();
        }
    }

    /// Milliseconds DOWN in all, up to `now` (Unix milliseconds): the current DOWN period counts.
    pub fn downtime(&self, now: u64) -> u64 {
        let down = self.status() == ServerStatus::Down;
        let last_change = self.last_change.load(Relaxed);
        let downtime = self.downtime.load(Relaxed);
        if down {
            downtime + now.saturating_sub(last_change)
        } else {
            downtime
        }
    }

    /// The last health check's outcome.
    pub fn last_check(&self) -> Option<CheckResult> {
        self.last_check.lock().ok().and_then(|g| g.clone())
    }

    /// The rise/fall counter of the checks, once a check task runs.
    pub fn health_counter(&self) -> Option<HealthCounter> {
        self.health.lock().ok().and_then(|g| *g)
    }

    /// Whether the config gives this server a health check.
    pub fn check_configured(&self) -> bool {
        self.check_configured.load(Relaxed)
    }

    pub(crate) fn set_check_configured(&self, configured: bool) {
        self.check_configured.store(configured, Relaxed);
    }

    /// Whether health checks run: configured and not disabled by an operator.
    pub fn checks_enabled(&self) -> bool {
        self.check_configured() && !self.checks_disabled()
    }

    pub fn checks_disabled(&self) -> bool {
        self.checks_disabled.load(Relaxed)
    }

    pub(crate) fn check_epoch(&self) -> u64 {
        self.check_epoch.load(Relaxed)
    }

    /// HAProxy's `disable health`: checks stop and their last verdict no longer counts, so the
    /// server is healthy. Returns the status before and after.
    pub(crate) fn disable_checks(&self) -> (ServerStatus, ServerStatus) {
        self.checks_disabled.store(true, Relaxed);
        self.set_healthy(true)
    }

    /// HAProxy's `enable health`: checks run again, counting from HAProxy's start-up state
    /// ([`HealthCounter::at_startup`]: UP, DOWN at the first failure), since the verdict from
    /// before they were disabled is stale and the server has been serving as UP since.
    pub(crate) fn enable_checks(&self) {
        if self.checks_disabled.swap(false, Relaxed) {
            self.restart_checks();
        }
    }

    /// Starts the check count afresh from HAProxy's start-up state, and checks now.
    fn restart_checks(&self) {
        self.check_epoch.fetch_add(1, Relaxed);
        if let Ok(mut slot) = self.health.lock()
            && let Some(h) = slot.as_mut()
        {
            *h = HealthCounter::at_startup(h.rise(), h.fall());
        }
        self.check_now.notify_one();
    }

    /// The epoch a session starting on this server now belongs to, for
    /// [`Self::sessions_shut`].
    pub(crate) fn sessions_epoch(&self) -> u64 {
        self.kill.epoch()
    }

    /// Resolves once the sessions of `epoch` are to end.
    pub(crate) async fn sessions_shut(&self, epoch: u64) {
        self.kill.fired(epoch).await;
    }

    /// HAProxy's `shutdown sessions server`: every session under way ends, and idle pooled
    /// connections are closed.
    pub(crate) fn shutdown_sessions(&self) {
        self.kill.fire();
        self.pool.clear();
    }

    /// Takes a connection slot if the server has room under `max` (0 = unlimited).
    pub(crate) fn try_take_slot(&self, max: u32) -> bool {
        let cur = &self.counters.sessions.cur;
        let taken = if max == 0 {
            cur.fetch_add(1, Relaxed);
            true
        } else {
            cur.fetch_update(Relaxed, Relaxed, |c| (c < u64::from(max)).then_some(c + 1))
                .is_ok()
        };
        if taken {
            super::counters::raise(&self.counters.sessions.max, cur.load(Relaxed));
        }
        taken
    }

    /// Gives back a slot taken with [`Self::try_take_slot`].
    pub(crate) fn release_slot(&self) {
        self.counters.sessions.down();
        self.slot_freed.notify_one();
    }

    /// Requests under way on this server.
    pub fn active(&self) -> u32 {
        self.counters.sessions.get() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_combines_health_and_admin_state() {
        let s = ServerState::new("b", "s", SocketAddr::from(([127, 0, 0, 1], 1)), 1, 0);
        assert_eq!(s.status(), ServerStatus::Up);
        s.set_admin(AdminState::Drain);
        assert_eq!(s.status(), ServerStatus::Drain);
        assert!(!s.takes_new_clients() && s.takes_sticky_clients());
        s.set_healthy(false);
        assert_eq!(s.status(), ServerStatus::Down);
        s.set_admin(AdminState::Maint);
        assert_eq!(s.status(), ServerStatus::Maint);
        s.set_admin(AdminState::Ready);
        s.set_healthy(true);
        assert_eq!(s.status(), ServerStatus::Up);
        assert_eq!(s.counters.down_transitions.load(Relaxed), 1);
        s.set_weight(0);
        assert!(!s.takes_new_clients(), "weight 0 gets no new clients");
    }

    // Input: a check takes the server DOWN, then an operator (or a reload) puts it in MAINT
    // before the check's report goes out; then a check takes another server DOWN and it comes
    // back UP before the report. Output: every report that goes out says MAINT, the status the
    // server has; the second server's says nothing. (The check's report said DOWN, and could go
    // out last: the alerts then said DOWN of a server in MAINT.)
    #[test]
    fn a_report_says_the_status_the_server_has_when_it_goes_out() {
        let s = ServerState::new("b", "s", SocketAddr::from(([127, 0, 0, 1], 1)), 1, 0);
        let (from_check, _) = s.set_healthy(false);
        let (from_operator, _) = s.set_admin(AdminState::Maint);
        let mut sent = Vec::new();
        s.report_in_order(from_operator, |now| sent.push(now));
        s.report_in_order(from_check, |now| sent.push(now));
        assert_eq!(sent, [ServerStatus::Maint, ServerStatus::Maint]);
        let t = ServerState::new("b", "t", SocketAddr::from(([127, 0, 0, 1], 2)), 1, 0);
        let (from, _) = t.set_healthy(false);
        t.set_healthy(true);
        t.report_in_order(from, |now| panic!("reported {now} for a server back UP"));
    }

    // Input: 10,000 rounds of an UP server taken DOWN by its health check and its agent at the
    // same moment, from two threads. Output: each round, exactly one of them reports the
    // UP -> DOWN, and `chkdown` counts one per round. (Both could read UP before either
    // wrote, and both reported and counted it.)
    #[test]
    fn a_status_change_is_reported_once_when_check_and_agent_race() {
        use std::sync::{Arc, Barrier, atomic::AtomicUsize};
        let s = Arc::new(ServerState::new(
            "b",
            "s",
            SocketAddr::from(([127, 0, 0, 1], 1)),
            1,
            0,
        ));
        let rounds = 10_000;
        // Start and end of each round: the two racers and this thread, which resets between.
        let (start, end) = (Arc::new(Barrier::new(3)), Arc::new(Barrier::new(3)));
        let reported = Arc::new(AtomicUsize::new(0));
        let racer = |agent: bool| {
            let (s, start, end, reported) = (
                Arc::clone(&s),
                Arc::clone(&start),
                Arc::clone(&end),
                Arc::clone(&reported),
            );
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    start.wait();
                    let (from, to) = if agent {
                        s.set_agent_down(true)
                    } else {
                        s.set_healthy(false)
                    };
                    reported.fetch_add(usize::from(from != to), Relaxed);
                    end.wait();
                }
            })
        };
        let racers = [racer(false), racer(true)];
        let mut twice = 0;
        for _ in 0..rounds {
            start.wait();
            end.wait();
            twice += usize::from(reported.swap(0, Relaxed) != 1);
            s.set_agent_down(false);
            s.set_healthy(true);
        }
        racers.into_iter().for_each(|r| r.join().unwrap_or(()));
        assert_eq!(
            twice, 0,
            "rounds where the UP -> DOWN was not reported once"
        );
        assert_eq!(s.counters.down_transitions.load(Relaxed), rounds as u64);
    }

    #[test]
    fn a_ramp_starts_on_leaving_down_or_maint_and_drain_does_not_end_it() {
        let minute = Some(Duration::from_secs(60));
        let s = ServerState::new("b", "s", SocketAddr::from(([127, 0, 0, 1], 1)), 100, 0);
        assert_eq!(s.weight_now(minute), 100, "not ramped at start-up");
        s.set_admin(AdminState::Maint);
        s.set_admin(AdminState::Drain);
        s.set_admin(AdminState::Ready);
        assert_eq!(s.weight_now(minute), 1, "MAINT -> DRAIN -> UP ramps");
        assert_eq!(s.weight_now(None), 100, "without slow_start");
        s.set_healthy(false);
        s.set_healthy(true);
        assert_eq!(s.weight_now(minute), 1, "DOWN -> UP ramps");
        assert_eq!(s.throttle(minute), Some(1));
        s.set_healthy(false);
        assert_eq!(s.throttle(minute), None, "no ramp while DOWN");
    }

    #[test]
    fn disabled_checks_make_a_down_server_healthy_and_enabling_restarts_the_count() {
        let s = ServerState::new("b", "s", SocketAddr::from(([127, 0, 0, 1], 1)), 1, 0);
        s.set_check_configured(true);
        *s.health.lock().unwrap_or_else(|e| e.into_inner()) = Some(HealthCounter::new(2, 3, false));
        s.set_healthy(false);
        assert!(s.checks_enabled());
        assert_eq!(s.disable_checks(), (ServerStatus::Down, ServerStatus::Up));
        assert!(!s.checks_enabled() && s.is_healthy());
        let epoch = s.check_epoch();
        s.enable_checks();
        assert!(s.checks_enabled());
        assert_ne!(s.check_epoch(), epoch, "the check task starts afresh");
        assert_eq!(s.health_counter(), Some(HealthCounter::at_startup(2, 3)));
        s.enable_checks();
        assert_eq!(
            s.check_epoch(),
            epoch + 1,
            "enabling enabled checks changes nothing"
        );
    }
}
