//! The running VRRP: one task per instance around its [`Fsm`](crate::fsm::Fsm), one raw socket
//! per interface and family shared by the instances there (opened again if the interface is
//! made again), one checker per tracked script and one watcher per tracked interface.
//!
//! Starting takes two steps. [`Vrrp::prepare`] resolves interfaces and addresses (an error names
//! the instance) and opens the sockets; [`Prepared::follower`] then lets another part of Fulcrum
//! act on an instance's changes in heartbeat's order around its notify scripts, and
//! [`Prepared::start`] starts the instances. Followers can only register in between, so none can
//! miss an instance's first MASTER (priority 255 is MASTER at once). [`Vrrp::start`] does both
//! steps for a caller without followers.
//!
//! [`Vrrp::stop`] shuts every instance down as RFC 5798 §6.4.3 says (a master sends priority 0
//! and removes its VIPs), runs the `notify_stop` scripts and waits for them. Dropping a `Vrrp`
//! without `stop` still asks the instances to shut down, but cannot wait for them.
//!
//! - `instance`: the instance task.
//! - `binding`: each interface's socket, opened again when the interface is made again.
//! - `follower`: followers of an instance, and the order they keep with its notify scripts.
//! - `rebuild`: a reload that builds VRRP again, the instances resuming their states.
//! - `receiver`: the task reading each socket and routing its adverts by VRID.
//! - `tracking`: tracking inputs folded into an effective priority or FAULT.
//! - `template`: the advert an instance sends.
//! - `status`: what the instances publish.

mod binding;
mod follower;
mod instance;
mod metrics;
mod mismatch;
mod rebuild;
mod receiver;
mod status;
mod template;
mod tracking;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use follower::{FOLLOWERS_TIMEOUT, Follower, Transition};
pub use rebuild::Reloaded;
pub use status::{CounterSnapshot, InstanceStatus, reason_name, state_name};

use self::binding::{Binding, Bound, Reopen};
use self::follower::{Leader, Roster};
use self::instance::{Carried, Inputs, Instance};
use self::rebuild::Stopping;
use self::receiver::Route;
use self::status::Counters;
use self::tracking::{Member, Source};
use crate::config::{InstanceConfig, ScriptCheck, ScriptConfig, VrrpConfig};
use crate::fsm::{Fsm, Reason, State};
use crate::net::{AdvertSocket, Netlink};
use crate::notify::Notifier;
use crate::packet::{ChecksumMode, DropCounters, Expected, Family};
use crate::track::{ScriptHealth, spawn_script};

/// What the rest of the appliance gives VRRP.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// "The local proxy is healthy", for scripts with `builtin = "proxy"`. Without it such a
    /// script fails: nothing says the proxy is healthy.
    pub proxy_health: Option<watch::Receiver<bool>>,
}

/// A state change, published to the rest of Fulcrum (volumes following an instance, alerts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpEvent {
    pub instance: String,
    /// The sync group of the instance, if any.
    pub group: Option<String>,
    pub from: State,
    pub to: State,
    pub reason: Reason,
    /// The effective priority at the change.
    pub priority: u8,
    /// The instance's virtual addresses (`10.0.0.100/32`), as its status lists them: carried
    /// here so a reader has them after the instance is gone.
    pub virtual_ips: Vec<String>,
}

/// Why VRRP could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("vrrp: cannot open a netlink socket: {0}")]
    Netlink(#[source] std::io::Error),
    #[error("vrrp.instance.{instance}: interface {interface:?}: {source}")]
    Interface {
        instance: String,
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "vrrp.instance.{instance}: interface {interface:?} has no {family} address to send adverts from"
    )]
    NoAddress {
        instance: String,
        interface: String,
        family: Family,
    },
    #[error("vrrp.instance.{instance}: {message}")]
    Instance { instance: String, message: String },
    #[error(
        "vrrp: cannot open the VRRP socket on {interface:?} (raw sockets need root or CAP_NET_RAW): {source}"
    )]
    Socket {
        interface: String,
        #[source]
        source: std::io::Error,
    },
}

/// The running instances. See the module documentation.
#[derive(Debug)]
pub struct Vrrp {
    /// In name order.
    slots: Vec<Slot>,
    /// Instances a rebuild removed that were still running their notify scripts after its
    /// wait: [`Vrrp::stop`] waits for them.
    stopping: Vec<Stopping>,
    readers: Vec<JoinHandle<()>>,
    /// What each socket's reader accepts, by interface and family.
    expectations: Vec<Expectations>,
    status: StatusHandle,
    events: broadcast::Sender<VrrpEvent>,
    /// Every instance's `stop` is a child of it.
    shutdown: CancellationToken,
    /// Ends every instance without leaving the election, for a rebuild ([`Vrrp::reload`]).
    hand_over: CancellationToken,
    /// What a rebuild reuses: the script checkers (their verdicts stand), each socket's drop
    /// counters, and the options VRRP was started with.
    scripts: Scripts,
    dropped: BTreeMap<(String, Family), Arc<DropCounters>>,
    options: Options,
}

/// One instance's handles, beside its task.
#[derive(Debug)]
struct Slot {
    name: String,
    /// What names the instance on the wire and in the kernel; see [`identity`].
    identity: Identity,
    /// Where a reload sends the instance its new config ([`Vrrp::adjust`]).
    retune: watch::Sender<InstanceConfig>,
    /// Shuts this instance alone down (a reload that removes it).
    stop: CancellationToken,
    counters: Arc<Counters>,
    /// Hands out followers, and says whether there are any.
    roster: Roster,
    /// `None` until started.
    task: Option<JoinHandle<Option<Carried>>>,
}

/// The interface, VRID and address family of an instance: an instance that keeps them through
/// a rebuild keeps its state, one that changes any of them leaves the election and starts
/// again.
type Identity = (String, u8, Family);

fn identity(instance: &InstanceConfig) -> Identity {
    (
        instance.interface.clone(),
        instance.fsm.vrid(),
        instance.family,
    )
}

/// The running script checkers by script name, with the config each runs.
type Scripts = BTreeMap<String, (ScriptConfig, watch::Receiver<ScriptHealth>)>;

/// What a rebuild hands the VRRP it prepares (nothing for a first start).
#[derive(Debug, Default)]
struct Previous {
    /// Checkers whose script is unchanged.
    scripts: Scripts,
    dropped: BTreeMap<(String, Family), Arc<DropCounters>>,
    /// The counters of the instances that keep their identity.
    counters: BTreeMap<String, Arc<Counters>>,
    events: Option<broadcast::Sender<VrrpEvent>>,
}

/// VRRP with its sockets open and its instances built but not yet running, from
/// [`Vrrp::prepare`]: the only time followers can register ([`Prepared::follower`]).
/// [`Prepared::start`] starts the instances; dropping it starts nothing.
#[derive(Debug)]
pub struct Prepared {
    /// Each instance's task and what it listens to, in name order.
    instances: Vec<(Instance, Inputs)>,
    slots: Vec<Slot>,
    sockets: Vec<Shared>,
    checksum: ChecksumMode,
    status: Published,
    events: broadcast::Sender<VrrpEvent>,
    shutdown: CancellationToken,
    hand_over: CancellationToken,
    scripts: Scripts,
    dropped: BTreeMap<(String, Family), Arc<DropCounters>>,
    options: Options,
}

/// A new follower of the instance of `slots` called `instance`, if there is one.
fn follower_of(slots: &[Slot], instance: &str) -> Option<Follower> {
    (slots.iter())
        .find(|slot| slot.name == instance)
        .map(|slot| slot.roster.follower())
}

impl Prepared {
    /// State changes from the start on: subscribed before [`Prepared::start`], a receiver
    /// misses none of the first ones (an address owner's MASTER at once).
    pub fn subscribe(&self) -> broadcast::Receiver<VrrpEvent> {
        self.events.subscribe()
    }
}

impl Vrrp {
    /// Starts every instance of `config` on the current tokio runtime: [`Vrrp::prepare`], then
    /// [`Prepared::start`] at once, for a caller with no followers to register.
    pub async fn start(config: &VrrpConfig, options: Options) -> Result<Vrrp, StartError> {
        Ok(Vrrp::prepare(config, options).await?.start())
    }

    /// Resolves every instance of `config` and opens its sockets, on the current tokio runtime,
    /// without starting any instance (the tracking checkers and watchers do start).
    pub async fn prepare(config: &VrrpConfig, options: Options) -> Result<Prepared, StartError> {
        Vrrp::prepare_with(config, options, Previous::default()).await
    }

    /// [`Vrrp::prepare`], reusing what `previous` hands over.
    async fn prepare_with(
        config: &VrrpConfig,
        options: Options,
        mut previous: Previous,
    ) -> Result<Prepared, StartError> {
        let netlink = Arc::new(Netlink::new().map_err(StartError::Netlink)?);
        let shutdown = CancellationToken::new();
        let hand_over = CancellationToken::new();
        let events = (previous.events.take()).unwrap_or_else(|| broadcast::channel(64).0);

        let mut resolved = Vec::with_capacity(config.instances.len());
        for instance in &config.instances {
            let link = netlink
                .link(&instance.interface)
                .await
                .map_err(|source| interface_error(instance, source))?;
            let local = netlink
                .primary_address(&link, instance.family)
                .await
                .map_err(|source| interface_error(instance, source))?
                .ok_or_else(|| StartError::NoAddress {
                    instance: instance.name.clone(),
                    interface: instance.interface.clone(),
                    family: instance.family,
                })?;
            let template =
                template::advert_template(instance).map_err(|e| StartError::Instance {
                    instance: instance.name.clone(),
                    message: e.to_string(),
                })?;
            resolved.push((instance, link, local, template));
        }

        // One socket per (interface, family), its reader routing adverts by VRID.
        let mut sockets: BTreeMap<(String, Family), Shared> = BTreeMap::new();
        let mut advert_queues = Vec::with_capacity(resolved.len());
        // Each instance's view of whether its socket reaches its interface.
        let mut usable: BTreeMap<&str, watch::Receiver<bool>> = BTreeMap::new();
        for (instance, link, local, template) in &resolved {
            let key = (instance.interface.clone(), instance.family);
            let dropped = (previous.dropped.get(&key).cloned())
                .unwrap_or_else(|| Arc::new(DropCounters::new()));
            let shared = match sockets.entry(key) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    // Multicast membership is needed as soon as one instance there uses it.
                    let unicast = resolved.iter().all(|(i, ..)| {
                        i.interface != instance.interface
                            || i.family != instance.family
                            || !i.unicast_peers.is_empty()
                    });
                    let socket = AdvertSocket::open(link, instance.family, *local, unicast)
                        .map_err(|source| StartError::Socket {
                            interface: instance.interface.clone(),
                            source,
                        })?;
                    let first = Bound {
                        link: link.clone(),
                        socket: Arc::new(socket),
                    };
                    let reopen = Reopen {
                        family: instance.family,
                        local: *local,
                        unicast,
                    };
                    e.insert(Shared {
                        binding: binding::spawn(Arc::clone(&netlink), first, reopen),
                        interface: instance.interface.clone(),
                        family: instance.family,
                        local: *local,
                        routes: Vec::new(),
                        expected: Vec::new(),
                        dropped,
                    })
                }
            };
            let (tx, rx) = mpsc::channel(64);
            shared.routes.push(Route {
                vrid: instance.fsm.vrid(),
                to: tx,
            });
            shared.expected.push(template::expected(instance, template));
            advert_queues.push((
                shared.binding.bound.clone(),
                Arc::clone(&shared.dropped),
                rx,
            ));
            usable.insert(instance.name.as_str(), shared.binding.usable.clone());
        }

        let mut scripts = std::mem::take(&mut previous.scripts);
        let members = tracking_members(config, &netlink, &options, &usable, &mut scripts).await;
        let epoch = Instant::now();
        let mut tasks = Vec::with_capacity(resolved.len());
        let mut statuses = Vec::with_capacity(resolved.len());
        let mut all_counters = Vec::with_capacity(resolved.len());
        let mut slots = Vec::with_capacity(resolved.len());
        for ((instance, link, local, template), (bound, dropped, adverts)) in
            resolved.into_iter().zip(advert_queues)
        {
            let fsm = Fsm::new(instance.fsm.clone(), local).map_err(|e| StartError::Instance {
                instance: instance.name.clone(),
                message: e.to_string(),
            })?;
            let siblings = siblings(config, instance, &members);
            let own = members
                .get(&instance.name)
                .cloned()
                .unwrap_or_else(|| Member {
                    base: instance.fsm.priority(),
                    sources: Vec::new(),
                });
            let (base, base_rx) = watch::channel(instance.fsm.priority());
            let tracking = tracking::spawn_tracking(own, siblings, base_rx);
            let (retune, retune_rx) = watch::channel(instance.clone());
            let announcer = instance::announcer(&link, &instance.name);
            let socket = Arc::clone(&bound.borrow().socket);
            let counters = (previous.counters.remove(&instance.name))
                .unwrap_or_else(|| Arc::new(Counters::new(dropped)));
            let (status, status_rx) = watch::channel(initial_status(instance, &fsm));
            let (leader, roster) = Leader::new(instance.name.clone(), follower::FOLLOWERS_TIMEOUT);
            let stop = shutdown.child_token();
            slots.push(Slot {
                name: instance.name.clone(),
                identity: identity(instance),
                retune,
                stop: stop.clone(),
                counters: Arc::clone(&counters),
                roster,
                task: None,
            });
            let task = Instance {
                config: instance.clone(),
                fsm,
                link,
                socket,
                binding: bound,
                template,
                checksum: config.checksum,
                netlink: Arc::clone(&netlink),
                announcer,
                notifier: Notifier::spawn(
                    "INSTANCE",
                    instance.name.clone(),
                    instance.notify.clone(),
                ),
                leader,
                base,
                counters: Arc::clone(&counters),
                status,
                events: events.clone(),
                epoch,
                garp_second: None,
                kept_vips: Vec::new(),
                garp_refresh: None,
            };
            let inputs = Inputs {
                adverts,
                tracking: tracking.priority,
                siblings: Vec::new(),
                scripts_pending: tracking.pending,
                retune: retune_rx,
                shutdown: stop,
                hand_over: hand_over.clone(),
                resume: None,
            };
            tasks.push((task, inputs));
            statuses.push(status_rx);
            all_counters.push(counters);
        }
        // Every status exists now: give each member of a sync group its siblings' to follow.
        for (task, inputs) in &mut tasks {
            inputs.siblings = config
                .instances
                .iter()
                .zip(&statuses)
                .filter(|(other, _)| same_group(&task.config, other))
                .map(|(_, status)| status.clone())
                .collect();
        }

        let dropped = (sockets.iter())
            .map(|(key, shared)| (key.clone(), Arc::clone(&shared.dropped)))
            .collect();
        Ok(Prepared {
            instances: tasks,
            slots,
            sockets: sockets.into_values().collect(),
            checksum: config.checksum,
            status: Published {
                statuses,
                counters: all_counters,
            },
            events,
            shutdown,
            hand_over,
            scripts,
            dropped,
            options,
        })
    }

    /// Every instance now, in name order.
    pub fn status(&self) -> Vec<InstanceStatus> {
        self.status.instances()
    }

    /// A cheap handle on the instances' status, for readers that outlive a borrow of `self`
    /// (the control socket, the stats page).
    pub fn status_handle(&self) -> StatusHandle {
        self.status.clone()
    }

    /// State changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<VrrpEvent> {
        self.events.subscribe()
    }

    /// Applies a reloaded `new` to the running instances in place, keeping their states, when it
    /// differs from `running` (what they run on) only in what
    /// [`needs_rebuild`](crate::config::needs_rebuild) lets through. Otherwise nothing changes,
    /// and the error is the key of the first change that needs a rebuild ([`Vrrp::reload`]).
    pub fn adjust(&self, running: &VrrpConfig, new: &VrrpConfig) -> Result<(), String> {
        if let Some(key) = crate::config::needs_rebuild(running, new) {
            return Err(key);
        }
        // Every advert first: nothing changes unless all of them can be built.
        let templates = (new.instances.iter())
            .map(|i| match template::advert_template(i) {
                Ok(template) => Ok((i, template)),
                Err(error) => Err(format!("vrrp.instance.{}: {error}", i.name)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The readers first, so that a peer already on the new addresses is heard at once.
        for socket in &self.expectations {
            let expected: Vec<Expected> = (templates.iter())
                .filter(|(i, _)| i.interface == socket.interface && i.family == socket.family)
                .map(|(i, template)| template::expected(i, template))
                .collect();
            socket
                .expected
                .send_if_modified(|old| replace_changed(old, expected));
        }
        for (slot, instance) in self.slots.iter().zip(&new.instances) {
            (slot.retune).send_if_modified(|old| replace_changed(old, instance.clone()));
        }
        Ok(())
    }

    /// The first instance a follower (a volume) follows, if any: what must not stop under it.
    pub fn followed(&self) -> Option<&str> {
        (self.slots.iter())
            .find(|slot| slot.roster.has_followers())
            .map(|slot| slot.name.as_str())
    }

    /// A new follower of the running `instance` (`None` if there is no such instance), for a
    /// part of Fulcrum a reload added: [`Follower::current`] is the state the instance is in
    /// now (MASTER included, whose scripts have run), and from its next change on the instance
    /// waits for it as for those registered before it started ([`Prepared::follower`]).
    pub fn follower(&self, instance: &str) -> Option<Follower> {
        follower_of(&self.slots, instance)
    }

    /// Shuts every instance down (priority 0 from masters, VIPs removed, `notify_stop` run) and
    /// waits for them.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let tasks = self.slots.iter_mut().filter_map(|slot| slot.task.take());
        let stopping = std::mem::take(&mut self.stopping).into_iter();
        let tasks: Vec<_> = tasks.chain(stopping.map(|s| s.task)).collect();
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "VRRP instance task failed");
            }
        }
        for reader in std::mem::take(&mut self.readers) {
            reader.abort();
        }
    }
}

impl Prepared {
    /// A new follower of `instance` (`None` if there is no such instance), for a part of Fulcrum
    /// that acts on its changes as heartbeat ran a resource group: entering MASTER, the
    /// instance's notify scripts wait until every follower has called [`Follower::done`]
    /// (at most [`FOLLOWERS_TIMEOUT`]); leaving it, a follower awaits the change's
    /// [`Transition::notified`] before it undoes what it did. The instance is not running yet,
    /// so every change it makes, its first MASTER included, waits for the follower.
    pub fn follower(&self, instance: &str) -> Option<Follower> {
        follower_of(&self.slots, instance)
    }

    /// Starts the socket readers and the instances, on the current tokio runtime.
    pub fn start(self) -> Vrrp {
        self.start_into(StatusHandle::default())
    }

    /// [`Prepared::start`], publishing the instances to `status`: a handle the appliance has
    /// held from before this VRRP existed (a `[vrrp]` a reload added), or the one a rebuild
    /// replaces the instances of, so that its readers follow.
    pub fn start_into(mut self, status: StatusHandle) -> Vrrp {
        status
            .published
            .store(Arc::new(std::mem::take(&mut self.status)));
        let mut expectations = Vec::with_capacity(self.sockets.len());
        let readers = self
            .sockets
            .into_iter()
            .map(|s| {
                let (expected, expected_rx) = watch::channel(s.expected);
                expectations.push(Expectations {
                    interface: s.interface,
                    family: s.family,
                    expected,
                });
                let bound = s.binding.bound;
                receiver::spawn_reader(
                    bound,
                    s.local,
                    self.checksum,
                    s.routes,
                    expected_rx,
                    s.dropped,
                )
            })
            .collect();
        for ((task, inputs), slot) in self.instances.into_iter().zip(&mut self.slots) {
            slot.task = Some(tokio::spawn(task.run(inputs)));
        }
        Vrrp {
            slots: self.slots,
            stopping: Vec::new(),
            readers,
            expectations,
            status,
            events: self.events,
            shutdown: self.shutdown,
            hand_over: self.hand_over,
            scripts: self.scripts,
            dropped: self.dropped,
            options: self.options,
        }
    }
}

impl Drop for Vrrp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// Reads the instances' status; see [`Vrrp::status_handle`]. A reload that rebuilds VRRP
/// ([`Vrrp::reload`]) publishes its instances to the same handle, so its readers (the control
/// socket, the stats page, the metrics) follow.
#[derive(Debug, Clone)]
pub struct StatusHandle {
    published: Arc<ArcSwap<Published>>,
}

/// One socket's drop counts: its interface, its family (`ipv4`, `ipv6`), and each reason's
/// count.
pub(crate) type SocketDrops = (String, &'static str, Vec<(&'static str, u64)>);

/// The instances a [`StatusHandle`] reads, in name order.
#[derive(Debug, Default)]
struct Published {
    statuses: Vec<watch::Receiver<InstanceStatus>>,
    counters: Vec<Arc<Counters>>,
}

/// No instance: the handle of an appliance without `[vrrp]`, which a `[vrrp]` added by a
/// reload then publishes to ([`Prepared::start_into`]).
impl Default for StatusHandle {
    fn default() -> Self {
        StatusHandle {
            published: Arc::new(ArcSwap::from_pointee(Published::default())),
        }
    }
}

impl StatusHandle {
    /// Registers the `fulcrum_vrrp_*` metrics of the instances published here, read at each
    /// scrape (none while there are none).
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(metrics::VrrpCollector::new(self.clone())?))
    }

    /// Publishes no instance: VRRP stopped by a reload that removed `[vrrp]`.
    pub fn clear(&self) {
        self.published.store(Arc::new(Published::default()));
    }

    /// Every instance now, in name order.
    pub fn instances(&self) -> Vec<InstanceStatus> {
        let published = self.published.load();
        (published.statuses.iter())
            .zip(&published.counters)
            .map(|(status, counters)| {
                let mut status = status.borrow().clone();
                status.counters = counters.snapshot();
                status
            })
            .collect()
    }

    /// The drop counters of each socket (one per interface and family), with the interface's
    /// name and the family (`ipv4`, `ipv6`): instances on one socket share them, so they are
    /// counted once here.
    pub(crate) fn dropped(&self) -> Vec<SocketDrops> {
        let published = self.published.load();
        let mut seen: Vec<&Arc<DropCounters>> = Vec::new();
        let mut out = Vec::new();
        for (status, counters) in published.statuses.iter().zip(&published.counters) {
            if seen.iter().any(|s| Arc::ptr_eq(s, &counters.dropped)) {
                continue;
            }
            seen.push(&counters.dropped);
            let reasons = counters
                .dropped
                .snapshot()
                .into_iter()
                .map(|(kind, n)| (kind.name(), n))
                .collect();
            let status = status.borrow();
            let family = if status.local_addr.is_ipv4() {
                "ipv4"
            } else {
                "ipv6"
            };
            out.push((status.interface.clone(), family, reasons));
        }
        out
    }
}

/// A socket and the instances it serves, while starting.
#[derive(Debug)]
struct Shared {
    binding: Binding,
    interface: String,
    family: Family,
    local: IpAddr,
    routes: Vec<Route>,
    /// What each of `routes` accepts, in the same order.
    expected: Vec<Expected>,
    dropped: Arc<DropCounters>,
}

/// What one socket's reader accepts, for [`Vrrp::adjust`] to change.
#[derive(Debug)]
struct Expectations {
    interface: String,
    family: Family,
    /// One per instance on the socket, in name order.
    expected: watch::Sender<Vec<Expected>>,
}

/// Puts `new` in `slot` if it differs, saying whether it did.
fn replace_changed<T: PartialEq>(slot: &mut T, new: T) -> bool {
    let changed = *slot != new;
    if changed {
        *slot = new;
    }
    changed
}

fn interface_error(instance: &InstanceConfig, source: std::io::Error) -> StartError {
    StartError::Interface {
        instance: instance.name.clone(),
        interface: instance.interface.clone(),
        source,
    }
}

/// Each instance's tracking, with one checker per script and one watcher per interface however
/// many instances track it. As keepalived does (unless `dont_track_primary`), an instance also
/// tracks its own interface: adverts cannot leave through a link that is down, nor reach one
/// made again under its name until its sockets are opened there again, nor go from a source
/// address removed from it (`usable`: each instance's view of that, from its [`Binding`]).
async fn tracking_members(
    config: &VrrpConfig,
    netlink: &Netlink,
    options: &Options,
    usable: &BTreeMap<&str, watch::Receiver<bool>>,
    scripts: &mut Scripts,
) -> BTreeMap<String, Member> {
    let mut links: BTreeMap<&str, watch::Receiver<bool>> = BTreeMap::new();
    // One wait for the first state per binding, however many instances share it.
    let mut seen: Vec<watch::Receiver<bool>> = Vec::new();
    let mut members = BTreeMap::new();
    for instance in &config.instances {
        let mut sources = Vec::new();
        for name in &instance.track_scripts {
            // The config resolved every name.
            let Some(script) = config.script(name) else {
                continue;
            };
            let (config, health) = scripts.entry(name.clone()).or_insert_with(|| {
                let builtin = match script.check {
                    ScriptCheck::Builtin(_) => options.proxy_health.clone(),
                    ScriptCheck::Command(_) => None,
                };
                (script.clone(), spawn_script(script.clone(), builtin))
            });
            // A checker kept by a rebuild runs the same check; its weight may be new.
            config.clone_from(script);
            let health = health.clone();
            sources.push(Source::Script {
                weight: script.weight,
                health,
            });
        }
        if let Some(usable) = usable.get(instance.name.as_str()) {
            let up = match seen.iter().find(|first| first.same_channel(usable)) {
                Some(first) => first.clone(),
                None => {
                    let up = first_link_state(usable.clone()).await;
                    seen.push(up.clone());
                    up
                }
            };
            sources.push(Source::Interface { up });
        }
        let others = (instance.track_interfaces.iter()).filter(|name| **name != instance.interface);
        for name in others {
            let up = match links.entry(name) {
                std::collections::btree_map::Entry::Occupied(e) => e.get().clone(),
                std::collections::btree_map::Entry::Vacant(e) => e
                    .insert(first_link_state(netlink.watch_link(name)).await)
                    .clone(),
            };
            sources.push(Source::Interface { up });
        }
        members.insert(
            instance.name.clone(),
            Member {
                base: instance.fsm.priority(),
                sources,
            },
        );
    }
    members
}

/// A link watcher once it has read the kernel's state: its initial `false` is a placeholder, and
/// starting on it would put every instance tracking the link in FAULT for a moment (running
/// `notify_fault`) at each start.
async fn first_link_state(mut up: watch::Receiver<bool>) -> watch::Receiver<bool> {
    // The first state arrives within milliseconds; past a second, go on with what there is.
    if tokio::time::timeout(std::time::Duration::from_secs(1), up.changed())
        .await
        .is_err()
    {
        tracing::warn!("no link state from the kernel yet; assuming down until it says");
    }
    up.borrow_and_update();
    up
}

/// The other members of `instance`'s sync group.
fn siblings(
    config: &VrrpConfig,
    instance: &InstanceConfig,
    members: &BTreeMap<String, Member>,
) -> Vec<Member> {
    config
        .instances
        .iter()
        .filter(|other| same_group(instance, other))
        .filter_map(|other| members.get(&other.name).cloned())
        .collect()
}

/// Whether `other` is another member of `instance`'s sync group.
fn same_group(instance: &InstanceConfig, other: &InstanceConfig) -> bool {
    other.name != instance.name && instance.group.is_some() && other.group == instance.group
}

fn initial_status(instance: &InstanceConfig, fsm: &Fsm) -> InstanceStatus {
    InstanceStatus {
        name: instance.name.clone(),
        interface: instance.interface.clone(),
        vrid: instance.fsm.vrid(),
        version: instance.fsm.version().number(),
        state: State::Initialize,
        reason: None,
        since: SystemTime::now(),
        base_priority: instance.fsm.priority(),
        effective_priority: fsm.priority(),
        local_addr: fsm.local_addr(),
        master: None,
        virtual_ips: instance.virtual_ips.iter().map(|n| n.to_string()).collect(),
        faulted: false,
        following: false,
        counters: CounterSnapshot::default(),
    }
}

#[cfg(test)]
#[path = "start_tests.rs"]
mod start_tests;

#[cfg(test)]
#[path = "adjust_tests.rs"]
mod adjust_tests;

#[cfg(test)]
#[path = "rebuild_tests.rs"]
mod rebuild_tests;
