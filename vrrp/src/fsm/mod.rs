//! The state machine of one virtual router: RFC 3768 §6 (v2) and RFC 5798 §6 (v3), plus the FAULT
//! state and effective priority of keepalived 2.2, which Fulcrum must interoperate with. It is
//! pure and clock-injected: events and the current [`Time`] in, [`Action`]s out, no sockets, no
//! sleeps.
//!
//! The I/O layer owns one [`Fsm`] per instance. It calls [`Fsm::handle`] with every [`Event`] (a
//! decoded advert, a tracking change, startup, shutdown) and [`Fsm::poll`] once
//! [`Fsm::next_wakeup`] is reached, and carries out the returned actions in order.
//!
//! - `config`: the validated [`Config`] of an instance.
//! - `time`: the injected clock, [`Time`].
//! - `timers`: [`skew_time`] and [`master_down_interval`].
//! - `priority`: [`effective_priority`] and the (priority, address) ranking.
//! - `lifecycle`, `backup`, `master`: the rules, one file per state and one for startup,
//!   shutdown, fault and priority changes.

mod backup;
mod config;
mod lifecycle;
mod master;
mod priority;
mod time;
mod timers;

#[cfg(test)]
mod tests;

use std::{net::IpAddr, time::Duration};

pub use self::{
    config::{Config, ConfigError, InitialState},
    priority::effective_priority,
    time::Time,
    timers::{master_down_interval, skew_time},
};
pub use crate::packet::Version;

/// The states of RFC 5798 §6.4, plus keepalived's FAULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or shut down: no adverts, no timers.
    Initialize,
    /// Watching the master; takes over when Master_Down_Timer fires.
    Backup,
    /// Holding the virtual addresses and advertising every Advertisement_Interval.
    Master,
    /// A tracked interface is down or a tracked script with weight 0 fails: no adverts, no
    /// virtual addresses, adverts from others ignored, until the fault clears.
    Fault,
}

/// What the I/O layer tells the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The instance may run: RFC 5798 §6.4.1's Startup event.
    Startup,
    /// The instance stops (daemon exit, instance removed): a master says goodbye with priority 0.
    Shutdown,
    /// An advert for this VRID that passed the receive checks.
    Advert(Advert),
    /// The effective priority computed from tracking changed (see [`effective_priority`]).
    PriorityChanged(u8),
    /// Whether the instance is in fault now: the I/O layer ORs every reason (tracked interfaces
    /// down, weight-0 scripts failing) into this one flag.
    Fault(bool),
    /// Sync groups: a sibling became master, so a backup becomes master with it at once
    /// (keepalived's `vrrp_sync_master`).
    GroupMaster,
    /// Sync groups: a sibling gave way to a better master, so a master steps down with it
    /// (keepalived's `vrrp_sync_backup`), saying goodbye with priority 0 so that its peer takes
    /// over after Skew_Time. keepalived sends no advert there, and its peer waits for
    /// Master_Down_Interval.
    GroupBackup,
    /// Sync groups: whether a sibling follows a better master. While one does, a backup whose
    /// Master_Down_Timer fires does not take over (it would drag the sibling along, only for the
    /// sibling to give way again): the timer restarts instead (keepalived's
    /// `vrrp_sync_can_goto_master`). A master steps down as for [`Event::GroupBackup`].
    GroupHold(bool),
}

/// The fields of a received advert the state machine decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    /// The IP source of the packet: the sender's primary address, used to break priority ties.
    pub src: IpAddr,
    /// 0 means the master is leaving.
    pub priority: u8,
    /// v3's Max Adver Int. Ignored in v2, where RFC 3768 §7.1 makes the receive checks drop a
    /// packet whose interval differs from ours.
    pub max_advert_interval: Duration,
}

/// What the state machine asks the I/O layer to do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0 when a master leaves) and our own interval.
    SendAdvert { priority: u8 },
    /// Configure the virtual addresses.
    AddVips,
    /// Make sure the virtual addresses are not configured (also asked at startup, as keepalived
    /// does, in case a previous run died as master), so it must be idempotent.
    RemoveVips,
    /// Announce the virtual addresses: gratuitous ARP for IPv4, unsolicited NA for IPv6. Repeats
    /// and keepalived's delayed second batch (`garp_master_delay`) are the I/O layer's.
    SendGratuitousArp,
    /// The state changed; the other actions of the same call have already done what it implies.
    StateChanged {
        from: State,
        to: State,
        reason: Reason,
    },
}

/// Why a state changed: for logs, notify scripts and the status page (the last four variants of
/// becoming master are RFC 6527's `vrrpv3StatisticsNewMasterReason` in more detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Initialize -> Backup.
    Startup,
    /// Initialize -> Master: priority 255, the address owner.
    Owner,
    /// Backup -> Master: no advert for Master_Down_Interval.
    MasterNoResponse,
    /// Backup -> Master: the master sent priority 0 and we waited only Skew_Time.
    MasterReleased,
    /// Backup -> Master: we ignored a lower-priority master's adverts until the timer fired.
    Preempt,
    /// Master -> Backup: an advert with a higher priority.
    HigherPriority,
    /// Master -> Backup: an advert with our priority from a greater primary address.
    HigherAddress,
    /// -> Fault, from any state (at startup too).
    Fault,
    /// Fault -> Backup, or -> Master for an owner.
    FaultCleared,
    /// Backup -> Master or Master -> Backup with the rest of the sync group.
    SyncGroup,
    /// -> Initialize.
    Shutdown,
}

/// One virtual router's state machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct Fsm {
    config: Config,
    local_addr: IpAddr,
    state: State,
    /// Effective priority: the base, moved by tracking.
    priority: u8,
    faulted: bool,
    /// Master_Adver_Interval: our own interval, or in v3 the one the current master advertises.
    master_adver_interval: Duration,
    /// Adver_Timer in Master, Master_Down_Timer in Backup, nothing otherwise.
    deadline: Option<Time>,
    /// keepalived's `preempt_time`: while running, a backup still accepts a lower-priority
    /// master. `None` with a delay configured means "not started": the next lower-priority advert
    /// starts it.
    preempt_until: Option<Time>,
    /// What to report if Master_Down_Timer fires now.
    next_master_reason: Reason,
    /// In Backup: the last advert came from a live master we accept (so we will not take over
    /// while it keeps advertising). What [`Event::GroupHold`] is computed from.
    following: bool,
    /// See [`Event::GroupHold`].
    group_hold: bool,
}

impl Fsm {
    /// The state machine of a virtual router configured with `config` whose primary address on
    /// the link (the source of its adverts) is `local_addr`. It starts in Initialize; send
    /// [`Event::Startup`] to run it.
    pub fn new(config: Config, local_addr: IpAddr) -> Result<Self, ConfigError> {
        if config.version() == Version::V2 && local_addr.is_ipv6() {
            return Err(ConfigError::V2NeedsIpv4);
        }
        Ok(Fsm {
            priority: config.priority(),
            master_adver_interval: config.advert_interval(),
            config,
            local_addr,
            state: State::Initialize,
            faulted: false,
            deadline: None,
            preempt_until: None,
            next_master_reason: Reason::MasterNoResponse,
            following: false,
            group_hold: false,
        })
    }

    /// Processes `event` at `now`. A timer already due at `now` fires first, since it expired
    /// before the event arrived; one the event makes due fires right after it. Afterwards
    /// [`Fsm::next_wakeup`] is `None` or later than `now`.
    pub fn handle(&mut self, now: Time, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        // A sibling's hold counts before a timer that fell due while it was on its way: the
        // sibling follows a better master already, and taking over now would only drag it
        // along to give way again.
        if let Event::GroupHold(hold) = event {
            self.group_hold = hold;
        }
        self.fire_due_timer(now, &mut out);
        match event {
            Event::Startup => self.startup(now, &mut out),
            Event::Shutdown => self.shutdown(&mut out),
            Event::Advert(advert) => match self.state {
                State::Master => self.master_receive(now, &advert, &mut out),
                State::Backup => self.backup_receive(now, &advert),
                // keepalived drops adverts in FAULT and before startup.
                State::Initialize | State::Fault => {}
            },
            Event::PriorityChanged(priority) => self.priority_changed(now, priority, &mut out),
            Event::Fault(faulted) => self.fault_changed(now, faulted, &mut out),
            Event::GroupMaster => {
                if self.state == State::Backup {
                    self.become_master(now, Reason::SyncGroup, &mut out);
                }
            }
            // Level, not edge, for the hold: a master whose sibling follows a better master has
            // split the group, whether or not the sibling's passage through MASTER was seen
            // (keepalived's `vrrp_sync_backup` forces the whole group down).
            Event::GroupBackup | Event::GroupHold(true) => {
                if self.state == State::Master {
                    out.push(Action::SendAdvert { priority: 0 });
                    self.become_backup(now, Reason::SyncGroup, &mut out);
                }
            }
            Event::GroupHold(false) => {}
        }
        self.fire_due_timer(now, &mut out);
        out
    }

    /// Takes `config` in place of the running one, keeping the state and its timers: a reload
    /// that changed only what [`crate::config::needs_rebuild`] lets through (preemption, the
    /// initial-state hint, a base priority that the effective one then follows through
    /// [`Event::PriorityChanged`]). Version, VRID, interval and ownership are the running ones.
    /// A `preempt_delay` added to a backup counts from the next lower-priority advert, as one
    /// not yet started does; the initial state matters only at the next start.
    pub fn reconfigure(&mut self, config: Config) {
        debug_assert_eq!(
            (
                config.version(),
                config.vrid(),
                config.advert_interval(),
                config.is_owner()
            ),
            (
                self.config.version(),
                self.config.vrid(),
                self.config.advert_interval(),
                self.config.is_owner()
            ),
        );
        self.config = config;
    }

    /// Fires the timer if it is due at `now`: the next advert in Master, the takeover in Backup.
    pub fn poll(&mut self, now: Time) -> Vec<Action> {
        let mut out = Vec::new();
        self.fire_due_timer(now, &mut out);
        out
    }

    /// When [`Fsm::poll`] has something to do next, if ever.
    pub fn next_wakeup(&self) -> Option<Time> {
        self.deadline
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The effective priority, the one adverts carry.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn local_addr(&self) -> IpAddr {
        self.local_addr
    }

    /// Whether the last [`Event::Fault`] said the instance is in fault.
    pub fn is_faulted(&self) -> bool {
        self.faulted
    }

    /// Whether this is a backup following a live master it accepts: the siblings of a sync
    /// group hold back while one is (see [`Event::GroupHold`]).
    pub fn follows_master(&self) -> bool {
        self.state == State::Backup && self.following
    }

    /// Master_Adver_Interval: in v3 a backup uses the interval its master advertises.
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// Skew_Time for the current priority and Master_Adver_Interval.
    pub fn skew_time(&self) -> Duration {
        skew_time(
            self.config.version(),
            self.priority,
            self.master_adver_interval,
        )
    }

    /// Master_Down_Interval for the current priority and Master_Adver_Interval.
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(
            self.config.version(),
            self.priority,
            self.master_adver_interval,
        )
    }

    fn fire_due_timer(&mut self, now: Time, out: &mut Vec<Action>) {
        // Each firing re-arms the timer a positive interval after `now` (Config rejects a zero
        // interval and Skew_Time is never zero), so this runs at most twice.
        while let Some(deadline) = self.deadline
            && deadline <= now
        {
            match self.state {
                State::Master => self.send_advert(now, out),
                // No master heard for Master_Down_Interval: we follow nobody now, which the
                // holding sibling sees, so whichever of us fires next takes over for both.
                State::Backup if self.group_hold => {
                    self.following = false;
                    self.deadline = Some(now + self.master_down_interval());
                }
                State::Backup => self.become_master(now, self.next_master_reason, out),
                State::Initialize | State::Fault => self.deadline = None,
            }
        }
    }

    /// RFC 5798 §6.4.2 "Master_Down_Timer fires" and §6.4.1 for the owner: the advert goes
    /// first so that the old master drops the addresses before our gratuitous ARP (keepalived's
    /// `vrrp_state_master_tx` does the same).
    fn become_master(&mut self, now: Time, reason: Reason, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = State::Master;
        self.preempt_until = None;
        self.following = false;
        // The interval learnt from a former master is no one's now: a later step-down (a sync
        // group's, which hears no advert first) must time out on our own, as keepalived's
        // `vrrp_state_become_master` resets it.
        self.master_adver_interval = self.config.advert_interval();
        self.send_advert(now, out);
        out.push(Action::AddVips);
        out.push(Action::SendGratuitousArp);
        out.push(Action::StateChanged {
            from,
            to: State::Master,
            reason,
        });
    }

    /// Enters Backup with Master_Down_Timer set from `now` (RFC 5798 §6.4.1 and §6.4.3).
    fn become_backup(&mut self, now: Time, reason: Reason, out: &mut Vec<Action>) {
        let from = self.state;
        if matches!(from, State::Master | State::Initialize) {
            out.push(Action::RemoveVips);
        }
        self.state = State::Backup;
        self.deadline = Some(now + self.master_down_interval());
        self.next_master_reason = Reason::MasterNoResponse;
        self.following = false;
        out.push(Action::StateChanged {
            from,
            to: State::Backup,
            reason,
        });
    }

    /// Sends an advert with the current priority and restarts Adver_Timer.
    fn send_advert(&mut self, now: Time, out: &mut Vec<Action>) {
        out.push(Action::SendAdvert {
            priority: self.priority,
        });
        self.deadline = Some(now + self.config.advert_interval());
    }

    /// v3: "Set Master_Adver_Interval to Adver Interval contained in the ADVERTISEMENT". A zero
    /// interval (which no valid master sends) is ignored rather than letting it make the
    /// Master_Down_Interval all skew.
    fn adopt_interval(&mut self, advert: &Advert) {
        if self.config.version() == Version::V3 && !advert.max_advert_interval.is_zero() {
            self.master_adver_interval = advert.max_advert_interval;
        }
    }
}
