//! What `fulcrum status vrrp`, the stats page and metrics show of each instance: a snapshot the
//! instance task publishes on every change, plus counters it bumps as packets come and go.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::fsm::{Reason, State};
use crate::packet::{DropCounters, DropKind};

/// One instance at one moment.
#[derive(Debug, Clone)]
pub struct InstanceStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    pub state: State,
    /// Why the state last changed.
    pub reason: Option<Reason>,
    /// When the state last changed.
    pub since: SystemTime,
    /// The configured priority.
    pub base_priority: u8,
    /// The priority adverts carry, after tracking.
    pub effective_priority: u8,
    /// Our primary address on the interface, the source of our adverts.
    pub local_addr: IpAddr,
    /// The current master as last heard (ourselves while master).
    pub master: Option<IpAddr>,
    pub virtual_ips: Vec<String>,
    /// Whether tracking (scripts, interfaces, the sync group) holds the instance in FAULT.
    pub faulted: bool,
    /// A backup following a live master it accepts: its sync-group siblings hold back.
    pub following: bool,
    pub counters: CounterSnapshot,
}

/// The counters of [`Counters`], read at one moment.
#[derive(Debug, Clone, Default)]
pub struct CounterSnapshot {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub became_master: u64,
    pub send_errors: u64,
    /// Packets the receive checks refused on the instance's interface and family, by reason:
    /// the socket is shared by the instances there, so are these.
    pub dropped: Vec<(DropKind, u64)>,
}

impl CounterSnapshot {
    /// Every dropped packet, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|(_, n)| n).sum()
    }
}

/// An instance's live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) adverts_sent: AtomicU64,
    pub(crate) adverts_received: AtomicU64,
    pub(crate) became_master: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    /// Shared with the socket reader of the interface.
    pub(crate) dropped: Arc<DropCounters>,
}

impl Counters {
    pub(crate) fn new(dropped: Arc<DropCounters>) -> Self {
        Counters {
            dropped,
            ..Counters::default()
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            adverts_sent: self.adverts_sent.load(Ordering::Relaxed),
            adverts_received: self.adverts_received.load(Ordering::Relaxed),
            became_master: self.became_master.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            dropped: self
                .dropped
                .snapshot()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

/// keepalived's names for the states, which notify scripts and users know.
pub fn state_name(state: State) -> &'static str {
    match state {
        State::Initialize => "INIT",
        State::Backup => "BACKUP",
        State::Master => "MASTER",
        State::Fault => "FAULT",
    }
}

/// How notify logs and the stats page name a [`Reason`].
pub fn reason_name(reason: Reason) -> &'static str {
    match reason {
        Reason::Startup => "startup",
        Reason::Owner => "owner",
        Reason::MasterNoResponse => "master-no-response",
        Reason::MasterReleased => "master-released",
        Reason::Preempt => "preempt",
        Reason::HigherPriority => "higher-priority",
        Reason::HigherAddress => "higher-address",
        Reason::Fault => "fault",
        Reason::FaultCleared => "fault-cleared",
        Reason::SyncGroup => "sync-group",
        Reason::Shutdown => "shutdown",
    }
}

impl InstanceStatus {
    /// The instance as the stats page, `fulcrum status vrrp` and metrics show it.
    pub fn to_stats(&self) -> fulcrum_common::stats::VrrpInstance {
        fulcrum_common::stats::VrrpInstance {
            name: self.name.clone(),
            interface: self.interface.clone(),
            vrid: self.vrid,
            version: self.version,
            state: state_name(self.state).to_owned(),
            reason: self.reason.map(|r| reason_name(r).to_owned()),
            priority: self.base_priority,
            effective_priority: self.effective_priority,
            master: self.master.map(|m| m.to_string()),
            vips: self.virtual_ips.clone(),
            lastchg: self.since.elapsed().map_or(0, |d| d.as_secs()),
            adverts_sent: self.counters.adverts_sent,
            adverts_received: self.counters.adverts_received,
            became_master: self.counters.became_master,
            dropped: self
                .counters
                .dropped
                .iter()
                .map(|(kind, n)| (kind.name().to_owned(), *n))
                .collect(),
        }
    }
}
