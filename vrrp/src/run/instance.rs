//! The task of one instance: feeds its state machine with adverts, tracking changes and timers,
//! and carries out the actions it returns (send adverts, add and remove the VIPs, announce them,
//! run notify scripts, publish the state).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use ipnet::IpNet;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::VrrpEvent;
use super::binding::Bound;
use super::follower::Leader;
use super::status::{Counters, InstanceStatus, reason_name, state_name};
use super::template;
use crate::config::InstanceConfig;
use crate::fsm::{self, Action, Event, Fsm, State, Time};
use crate::net::{AdvertSocket, Announcer, Link, Netlink};
use crate::notify::Notifier;
use crate::packet::{self, Accepted, Advert, ChecksumMode, Family};

/// What the instance task listens to.
#[derive(Debug)]
pub(crate) struct Inputs {
    pub(crate) adverts: mpsc::Receiver<Accepted>,
    /// The effective priority from tracking, or `None` while tracking puts the instance in FAULT.
    pub(crate) tracking: watch::Receiver<Option<u8>>,
    /// The other members of the instance's sync group, if any.
    pub(crate) siblings: Vec<watch::Receiver<InstanceStatus>>,
    /// Whether a tracked script has no verdict yet, for an owner to wait on at start.
    pub(crate) scripts_pending: watch::Receiver<bool>,
    /// The instance's config after a reload changed it ([`super::Vrrp::adjust`]).
    pub(crate) retune: watch::Receiver<InstanceConfig>,
    /// Leave the election: a master says goodbye and removes its VIPs, `notify_stop` runs.
    pub(crate) shutdown: CancellationToken,
    /// End without leaving the election, handing what goes on to a rebuilt VRRP ([`Carried`]).
    pub(crate) hand_over: CancellationToken,
    /// Where the run a reload ended left the instance: it resumes there instead of starting.
    pub(crate) resume: Option<Resume>,
}

/// What an instance hands over to its successor when a reload rebuilds VRRP
/// ([`super::Vrrp::reload`]): where it is in the election, and what must outlive it.
#[derive(Debug)]
pub(crate) struct Carried {
    pub(crate) resume: Resume,
    /// The VIPs it had on the interface (as master), and where, to take off those the new
    /// config drops before any successor puts its own on ([`Carried::release`]).
    held: Vec<IpNet>,
    netlink: Arc<Netlink>,
    link: Link,
    /// Its followers (volumes) go on following the successor.
    pub(crate) leader: Leader,
    /// Scripts still queued run before the successor's, in order.
    pub(crate) notifier: Notifier,
}

impl Carried {
    /// Takes off the VIPs this instance held that `vips` (its successor's list) drops, but not
    /// the interface's own addresses. Done for every instance before any successor starts: a
    /// VIP moving to another instance is then off before the other puts it on, never taken
    /// off after (adding an address that is there already succeeds and changes nothing).
    pub(crate) async fn release(&self, vips: &[IpNet]) {
        let dropped: Vec<IpNet> = (self.held.iter())
            .filter(|vip| !vips.contains(vip))
            .copied()
            .collect();
        let resume = &self.resume;
        let instance = &resume.status.name;
        take_off(
            &self.netlink,
            &self.link,
            instance,
            &dropped,
            &resume.kept_vips,
        )
        .await;
    }
}

impl Resume {
    /// Shows `status` (a successor's, not yet running) where the predecessor was, so that
    /// readers never see it start over.
    pub(crate) fn publish(&self, status: &watch::Sender<InstanceStatus>) {
        let was = &self.status;
        status.send_modify(|s| {
            s.state = self.state;
            s.reason = was.reason;
            s.since = was.since;
            s.master = was.master;
            s.effective_priority = was.effective_priority;
            s.faulted = was.faulted;
            s.following = was.following;
        });
    }
}

/// Where an instance was when it handed over.
#[derive(Debug)]
pub(crate) struct Resume {
    pub(crate) state: State,
    /// What it published: why and since when it is in `state`, and the master it followed.
    pub(crate) status: InstanceStatus,
    /// Its config's VIPs, whatever its state: those the successor adds are looked up among the
    /// interface's own addresses.
    pub(crate) configured: Vec<IpNet>,
    /// v3: the interval of the master a backup follows, for its Master_Down_Timer.
    pub(crate) master_adver_interval: std::time::Duration,
    /// See [`Instance::kept_vips`].
    pub(crate) kept_vips: Vec<IpNet>,
}

/// One running instance.
#[derive(Debug)]
pub(crate) struct Instance {
    pub(crate) config: InstanceConfig,
    pub(crate) fsm: Fsm,
    /// The interface, and the socket adverts go out on: both from `binding`, whose latest the
    /// instance takes before it acts.
    pub(crate) link: Link,
    pub(crate) socket: Arc<AdvertSocket>,
    pub(crate) binding: watch::Receiver<Bound>,
    pub(crate) template: Advert,
    pub(crate) checksum: ChecksumMode,
    pub(crate) netlink: Arc<Netlink>,
    /// `None` when the link has no hardware address or the packet socket could not be opened
    /// (logged once): the VIPs still move, neighbours learn them when they next ask.
    pub(crate) announcer: Option<Announcer>,
    pub(crate) notifier: Notifier,
    /// Tells the instance's followers of each change, and queues the notify scripts around them.
    pub(crate) leader: Leader,
    /// The base priority the tracking task folds the tracked inputs into.
    pub(crate) base: watch::Sender<u8>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) status: watch::Sender<InstanceStatus>,
    pub(crate) events: broadcast::Sender<VrrpEvent>,
    /// The instant the state machine's clock counts from.
    pub(crate) epoch: Instant,
    /// keepalived's delayed second burst of gratuitous ARPs after becoming master.
    pub(crate) garp_second: Option<Instant>,
    /// The next periodic burst while master (`garp.refresh`).
    pub(crate) garp_refresh: Option<Instant>,
    /// VIPs the interface had as addresses of its own when the instance started (an address
    /// owner's): added (a no-op) but never removed, or the node would lose its own address.
    pub(crate) kept_vips: Vec<ipnet::IpNet>,
}

impl Instance {
    /// Runs until shut down (then `None`) or handed over (then what goes on).
    pub(crate) async fn run(mut self, mut inputs: Inputs) -> Option<Carried> {
        match inputs.resume.take() {
            // A predecessor still starting (an owner waiting for its scripts) starts again.
            Some(resume) if resume.state != State::Initialize => {
                self.resume(resume, &mut inputs).await;
            }
            _ => self.start(&mut inputs).await,
        }
        // Siblings that got ahead while this instance started (one already MASTER) are followed
        // at once, not only on their next change.
        let mut group = Group::new(inputs.siblings.len());
        for event in group.follow(&mut inputs.siblings) {
            self.handle(event).await;
        }
        loop {
            let wakeup = self.next_wakeup();
            tokio::select! {
                biased;
                () = inputs.shutdown.cancelled() => break,
                () = inputs.hand_over.cancelled() => return Some(self.carry()),
                Some(accepted) = inputs.adverts.recv() => self.received(accepted).await,
                Ok(()) = inputs.tracking.changed() => {
                    let tracked = *inputs.tracking.borrow_and_update();
                    self.apply_tracking(tracked).await;
                }
                Ok(()) = inputs.retune.changed() => {
                    let config = inputs.retune.borrow_and_update().clone();
                    self.retune(config).await;
                }
                () = changed_any(&mut inputs.siblings) => {
                    for event in group.follow(&mut inputs.siblings) {
                        self.handle(event).await;
                    }
                }
                () = sleep_until(wakeup) => self.timers().await,
            }
        }
        self.handle(Event::Shutdown).await;
        // notify_stop must have run before the process exits.
        self.notifier.drain().await;
        None
    }

    /// RFC 5798's Startup, once tracking has a first value.
    async fn start(&mut self, inputs: &mut Inputs) {
        let vips = self.config.virtual_ips.clone();
        self.find_kept_vips(&vips).await;
        if self.fsm.config().is_owner() {
            // An owner takes the VIPs the moment it starts: not before its scripts have said
            // whether it may, or it would take them and give them back. At most one
            // Master_Down_Interval, as keepalived's owner starts as a backup while its scripts
            // have not answered (`num_script_init`) and takes over when that timer fires.
            let limit = self.fsm.master_down_interval();
            tokio::select! {
                // Stopped or rebuilt meanwhile: not started, so the loop then leaves at once
                // without having taken the VIPs (a successor starts afresh).
                () = inputs.shutdown.cancelled() => return,
                () = inputs.hand_over.cancelled() => return,
                _ = tokio::time::timeout(limit, inputs.scripts_pending.wait_for(|p| !p)) => {}
            }
        }
        let tracked = *inputs.tracking.borrow_and_update();
        self.apply_tracking(tracked).await;
        self.handle(Event::Startup).await;
    }

    /// Takes up where the predecessor a reload ended left off ([`Fsm::resume`]): the same
    /// state (published as it was from the start, see [`Resume::publish`]), with no notify
    /// script and no event unless tracking now moves it. A master puts its new list on and
    /// announces it (the VIPs the list dropped are off already, see [`Carried::release`]).
    async fn resume(&mut self, resume: Resume, inputs: &mut Inputs) {
        // The predecessor took off what the new list drops ([`Carried::release`]).
        self.kept_vips = resume.kept_vips;
        self.kept_vips
            .retain(|vip| self.config.virtual_ips.contains(vip));
        let added: Vec<IpNet> = (self.config.virtual_ips.iter())
            .filter(|vip| !resume.configured.contains(vip))
            .copied()
            .collect();
        self.find_kept_vips(&added).await;
        // In Initialize the state machine only takes the priority and the fault in.
        let tracked = *inputs.tracking.borrow_and_update();
        self.apply_tracking(tracked).await;
        self.follow_binding().await;
        let now = self.clock(Instant::now());
        let actions = self
            .fsm
            .resume(now, resume.state, resume.master_adver_interval);
        self.execute(actions).await;
        self.publish_following();
        tracing::info!(
            instance = %self.config.name,
            state = state_name(self.fsm.state()),
            priority = self.fsm.priority(),
            "VRRP instance carried over a reload"
        );
    }

    /// What goes on in the successor (see [`Carried`]).
    fn carry(self) -> Carried {
        let state = self.fsm.state();
        let held = if state == State::Master {
            self.config.virtual_ips.clone()
        } else {
            Vec::new()
        };
        Carried {
            resume: Resume {
                state,
                status: self.status.borrow().clone(),
                configured: self.config.virtual_ips.clone(),
                master_adver_interval: self.fsm.master_adver_interval(),
                kept_vips: self.kept_vips,
            },
            held,
            netlink: self.netlink,
            link: self.link,
            leader: self.leader,
            notifier: self.notifier,
        }
    }

    async fn received(&mut self, accepted: Accepted) {
        Counters::bump(&self.counters.adverts_received);
        let advert = fsm::Advert {
            src: accepted.src,
            priority: accepted.advert.priority(),
            max_advert_interval: accepted.advert.interval().as_duration(),
        };
        self.handle(Event::Advert(advert)).await;
        if self.fsm.state() == State::Backup {
            // A backup hears only masters (and masters leaving with priority 0).
            let master = (advert.priority > 0).then_some(advert.src);
            self.status.send_modify(|s| s.master = master);
        }
    }

    /// A reload changed the config in what may change in place (see
    /// [`crate::config::needs_rebuild`]). The state stays. A master puts the VIPs added on the
    /// interface and announces them, and takes off those removed; a new base priority reaches
    /// the state machine through tracking, which adds the tracked weights to it, and a master
    /// advertises it at once.
    async fn retune(&mut self, config: InstanceConfig) {
        let template = match template::advert_template(&config) {
            Ok(template) => template,
            // `Vrrp::adjust` built every template before sending any config.
            Err(error) => {
                tracing::error!(instance = %config.name, %error, "reloaded VRRP instance not applied");
                return;
            }
        };
        let old = std::mem::replace(&mut self.config, config);
        self.template = template;
        if self.fsm.state() == State::Master && self.config.garp.refresh != old.garp.refresh {
            self.garp_refresh = self.config.garp.refresh.map(|r| Instant::now() + r);
        }
        self.fsm.reconfigure(self.config.fsm.clone());
        self.notifier.set_notify(self.config.notify.clone());
        let added: Vec<IpNet> = (self.config.virtual_ips.iter())
            .filter(|vip| !old.virtual_ips.contains(vip))
            .copied()
            .collect();
        let removed: Vec<IpNet> = (old.virtual_ips.iter())
            .filter(|vip| !self.config.virtual_ips.contains(vip))
            .copied()
            .collect();
        self.find_kept_vips(&added).await;
        if self.fsm.state() == State::Master {
            self.remove_these(&removed).await;
            if !added.is_empty() {
                self.execute(vec![Action::AddVips, Action::SendGratuitousArp])
                    .await;
            }
        }
        // After the removal, which leaves the interface's own addresses where they are.
        self.kept_vips.retain(|vip| !removed.contains(vip));
        let base = self.config.fsm.priority();
        self.base
            .send_if_modified(|b| std::mem::replace(b, base) != base);
        let vips = self
            .config
            .virtual_ips
            .iter()
            .map(ToString::to_string)
            .collect();
        self.status.send_modify(|s| {
            s.base_priority = base;
            s.virtual_ips = vips;
        });
        tracing::info!(
            instance = %self.config.name,
            priority = base,
            added = ?added,
            removed = ?removed,
            "VRRP instance reloaded in place"
        );
    }

    /// Tracking changed: the priority first, so that an instance leaving FAULT starts its
    /// Master_Down_Timer with the skew of its new priority.
    async fn apply_tracking(&mut self, tracked: Option<u8>) {
        match tracked {
            Some(priority) => {
                self.handle(Event::PriorityChanged(priority)).await;
                self.handle(Event::Fault(false)).await;
            }
            None => self.handle(Event::Fault(true)).await,
        }
        let (priority, faulted) = (self.fsm.priority(), self.fsm.is_faulted());
        self.status.send_modify(|s| {
            s.effective_priority = priority;
            s.faulted = faulted;
        });
    }

    async fn timers(&mut self) {
        self.follow_binding().await;
        let now = Instant::now();
        if self.garp_second.is_some_and(|t| t <= now) {
            self.garp_second = None;
            self.announce();
        }
        if self.garp_refresh.is_some_and(|t| t <= now) {
            // From the config as it is now: a reload may have turned the refresh off.
            self.garp_refresh = self.config.garp.refresh.map(|r| now + r);
            if self.garp_refresh.is_some() {
                self.announce();
            }
        }
        let actions = self.fsm.poll(self.clock(now));
        self.execute(actions).await;
        self.publish_following();
    }

    async fn handle(&mut self, event: Event) {
        self.follow_binding().await;
        let now = self.clock(Instant::now());
        let actions = self.fsm.handle(now, event);
        self.execute(actions).await;
        self.publish_following();
    }

    /// Takes the link and socket the binding opened last. A new link is the interface made
    /// again: the ARP socket is opened on it too, and a master puts its VIPs there, as those of
    /// the old one went with it. Usually the instance was in FAULT meanwhile and takes them as
    /// it becomes master again; but the watch channels between the kernel and here keep only
    /// the latest value, so an interface made again at once may show no FAULT at all.
    async fn follow_binding(&mut self) {
        if !self.binding.has_changed().unwrap_or(false) {
            return;
        }
        let bound = self.binding.borrow_and_update().clone();
        self.socket = bound.socket;
        if bound.link.index == self.link.index {
            return;
        }
        self.announcer = announcer(&bound.link, &self.config.name);
        self.link = bound.link;
        if self.fsm.state() == State::Master {
            self.execute(vec![Action::AddVips, Action::SendGratuitousArp])
                .await;
        }
    }

    /// Sync-group siblings hold back while this instance follows a master.
    fn publish_following(&self) {
        let following = self.fsm.follows_master();
        self.status
            .send_if_modified(|s| std::mem::replace(&mut s.following, following) != following);
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send_advert(priority).await,
                Action::AddVips => self.add_vips().await,
                Action::RemoveVips => self.remove_vips().await,
                Action::SendGratuitousArp => {
                    self.announce();
                    let now = Instant::now();
                    self.garp_second = self.config.garp.delay.map(|d| now + d);
                    self.garp_refresh = self.config.garp.refresh.map(|r| now + r);
                }
                Action::StateChanged { from, to, reason } => {
                    tracing::info!(
                        instance = %self.config.name,
                        from = state_name(from),
                        to = state_name(to),
                        reason = reason_name(reason),
                        priority = self.fsm.priority(),
                        "VRRP state changed"
                    );
                    if to == State::Master {
                        Counters::bump(&self.counters.became_master);
                    } else {
                        self.garp_second = None;
                        self.garp_refresh = None;
                    }
                    let master = match to {
                        State::Master => Some(self.fsm.local_addr()),
                        _ => None,
                    };
                    self.status.send_modify(|s| {
                        s.state = to;
                        s.reason = Some(reason);
                        s.since = SystemTime::now();
                        s.master = master;
                    });
                    // MASTER's scripts run once the followers (volumes) are promoted.
                    self.leader.changed(to, self.fsm.priority(), &self.notifier);
                    // Nobody listening is fine.
                    let _ = self.events.send(VrrpEvent {
                        instance: self.config.name.clone(),
                        group: self.config.group.clone(),
                        from,
                        to,
                        reason,
                        priority: self.fsm.priority(),
                        virtual_ips: (self.config.virtual_ips.iter())
                            .map(ToString::to_string)
                            .collect(),
                    });
                }
            }
        }
    }

    async fn send_advert(&mut self, priority: u8) {
        self.template.set_priority(priority);
        let local = self.fsm.local_addr();
        let multicast = match self.config.family {
            Family::Ipv4 => IpAddr::V4(packet::MULTICAST_V4),
            Family::Ipv6 => IpAddr::V6(packet::MULTICAST_V6),
        };
        let peers = if self.config.unicast_peers.is_empty() {
            std::slice::from_ref(&multicast)
        } else {
            self.config.unicast_peers.as_slice()
        };
        for &dst in peers {
            let message = packet::encode(&self.template, self.checksum, local, dst);
            match self.socket.send(&message, dst).await {
                Ok(()) => Counters::bump(&self.counters.adverts_sent),
                Err(error) => {
                    Counters::bump(&self.counters.send_errors);
                    tracing::warn!(instance = %self.config.name, %dst, %error, "VRRP advert not sent");
                }
            }
        }
    }

    async fn add_vips(&self) {
        let label = label(&self.config.interface, self.fsm.config().vrid());
        for vip in &self.config.virtual_ips {
            if let Err(error) = self.netlink.add_vip(&self.link, vip, &label).await {
                tracing::error!(instance = %self.config.name, %vip, %error, "virtual IP not added");
            }
        }
    }

    /// Finds which of `vips` the interface has as addresses of its own (see `kept_vips`):
    /// at start, before the removal of VIPs a crash may have left, and for VIPs a reload adds.
    async fn find_kept_vips(&mut self, vips: &[IpNet]) {
        if vips.is_empty() {
            return;
        }
        let label = label(&self.config.interface, self.fsm.config().vrid());
        let found: Vec<IpNet> = match self.netlink.own_addresses(&self.link, &label).await {
            Ok(own) => vips
                .iter()
                .filter(|vip| own.contains(vip))
                .copied()
                .collect(),
            Err(error) => {
                tracing::warn!(instance = %self.config.name, %error, "cannot list the interface's addresses; a VIP that is one of them would be removed with the others");
                Vec::new()
            }
        };
        for vip in &found {
            tracing::warn!(instance = %self.config.name, %vip, interface = %self.config.interface,
                "virtual IP is an address the interface already has: it is kept when this node leaves MASTER or stops");
        }
        self.kept_vips.extend(found);
    }

    async fn remove_vips(&self) {
        self.remove_these(&self.config.virtual_ips).await;
    }

    /// Takes `vips` off the interface, but not those that are its own addresses.
    async fn remove_these(&self, vips: &[IpNet]) {
        let instance = &self.config.name;
        take_off(&self.netlink, &self.link, instance, vips, &self.kept_vips).await;
    }

    /// One burst of `garp.repeat` gratuitous ARPs / unsolicited NAs for every VIP.
    fn announce(&mut self) {
        let Some(announcer) = self.announcer.as_mut() else {
            return;
        };
        let addresses: Vec<IpAddr> = self.config.virtual_ips.iter().map(|n| n.addr()).collect();
        // Every round is sent even when one fails (a transient ENOBUFS, say), as keepalived
        // does: the announcer has logged each address that failed.
        let failed = (0..self.config.garp.repeat)
            .filter(|_| announcer.announce(&addresses).is_err())
            .count();
        if failed > 0 {
            tracing::warn!(instance = %self.config.name, failed, rounds = self.config.garp.repeat, "gratuitous ARP rounds with a failure");
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let fsm = self.fsm.next_wakeup().map(|t| self.epoch + t.since_epoch());
        [fsm, self.garp_second, self.garp_refresh]
            .into_iter()
            .flatten()
            .min()
    }

    fn clock(&self, now: Instant) -> Time {
        Time::from(now.saturating_duration_since(self.epoch))
    }
}

/// Takes `vips` off `link`, but not those in `kept` (the interface's own addresses), logging
/// each that fails for `instance`.
async fn take_off(netlink: &Netlink, link: &Link, instance: &str, vips: &[IpNet], kept: &[IpNet]) {
    for vip in vips.iter().filter(|v| !kept.contains(v)) {
        if let Err(error) = netlink.remove_vip(link, vip).await {
            tracing::error!(%instance, %vip, %error, "virtual IP not removed");
        }
    }
}

/// The gratuitous ARP / unsolicited NA sender of `link`; `None` (logged) if it cannot be opened:
/// the VIPs still move, neighbours learn them when they next ask.
pub(super) fn announcer(link: &Link, instance: &str) -> Option<Announcer> {
    match Announcer::open(link) {
        Ok(announcer) => Some(announcer),
        Err(error) => {
            tracing::warn!(%instance, %error, "gratuitous ARP disabled");
            None
        }
    }
}

/// The address label of the VIPs (`ip addr` shows it): the interface name and the VRID, as
/// keepalived users write `dev eth0 label eth0:53`. The kernel keeps at most 15 bytes, and
/// iproute2 wants a label to start with the interface name, so a name too long for the suffix
/// gets the interface name alone, the kernel's own default label.
pub(crate) fn label(interface: &str, vrid: u8) -> String {
    let label = format!("{interface}:{vrid}");
    if label.len() <= 15 {
        label
    } else {
        interface.to_owned()
    }
}

/// What the instance last saw of its sync-group siblings, to turn their changes into
/// [`Event::GroupMaster`], [`Event::GroupBackup`] and [`Event::GroupHold`].
#[derive(Debug)]
struct Group {
    states: Vec<State>,
    hold: bool,
}

impl Group {
    /// `siblings` siblings, none seen yet: the first [`Self::follow`] acts on their states.
    fn new(siblings: usize) -> Self {
        Group {
            states: vec![State::Initialize; siblings],
            hold: false,
        }
    }

    /// The events the siblings' latest statuses call for: a sibling that became master takes
    /// this instance along, one that gave way to a better master takes it down too, and a
    /// sibling following a master holds this one back.
    fn follow(&mut self, siblings: &mut [watch::Receiver<InstanceStatus>]) -> Vec<Event> {
        let mut events = Vec::new();
        let mut hold = false;
        for (seen, sibling) in self.states.iter_mut().zip(siblings.iter_mut()) {
            let status = sibling.borrow_and_update();
            match (*seen, status.state) {
                (State::Master, State::Master) => {}
                (_, State::Master) => events.push(Event::GroupMaster),
                (State::Master, State::Backup) => events.push(Event::GroupBackup),
                _ => {}
            }
            *seen = status.state;
            hold |= status.following;
        }
        if hold != self.hold {
            self.hold = hold;
            events.insert(0, Event::GroupHold(hold));
        }
        events
    }
}

/// Resolves when any of `siblings` changed; never without siblings (or once they are gone).
async fn changed_any(siblings: &mut [watch::Receiver<InstanceStatus>]) {
    if siblings.is_empty() {
        return std::future::pending().await;
    }
    let changes = siblings.iter_mut().map(|s| Box::pin(s.changed()));
    let (result, _, _) = futures_util::future::select_all(changes).await;
    if result.is_err() {
        // A sibling's task ended (shutdown): nothing more to follow.
        std::future::pending::<()>().await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sibling_already_master_at_start_is_followed_at_once() {
        let status = |state| InstanceStatus {
            name: "VI_2".to_owned(),
            interface: "eth0".to_owned(),
            vrid: 2,
            version: 2,
            state,
            reason: None,
            since: std::time::SystemTime::now(),
            base_priority: 255,
            effective_priority: 255,
            local_addr: std::net::IpAddr::from([10, 0, 0, 1]),
            master: None,
            virtual_ips: Vec::new(),
            faulted: false,
            following: false,
            counters: Default::default(),
        };
        let (master, rx) = watch::channel(status(State::Master));
        let mut siblings = [rx];
        let mut group = Group::new(siblings.len());
        assert_eq!(group.follow(&mut siblings), [Event::GroupMaster]);
        // Seen once, it is not followed again until it changes.
        assert_eq!(group.follow(&mut siblings), []);
        master.send_replace(status(State::Backup));
        assert_eq!(group.follow(&mut siblings), [Event::GroupBackup]);
    }

    #[test]
    fn labels_fit_the_kernels_fifteen_bytes() {
        assert_eq!(label("eth0", 53), "eth0:53");
        // "enp0s31f6abc:255" would be 16 bytes.
        assert_eq!(label("enp0s31f6abc", 255), "enp0s31f6abc");
        assert_eq!(label("enp0s31f6ab", 255), "enp0s31f6ab:255");
    }
}
