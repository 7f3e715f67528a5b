//! The replicated volumes of `[volume.NAME]` in this process. Each one with `follow_vrrp` is
//! primary while its instance is MASTER ([`follow_vrrp`]); for that, the volumes are planned
//! ([`Volumes::plan`], their followers registered) before VRRP's instances start, and started
//! after, so that even a first MASTER waits for its promotion. They stop after VRRP, so the peer
//! holds the VIP by the time this node lets the data go.
//!
//! A reload applies a changed `[volume]` as `drbdadm adjust` does a changed resource, in two
//! steps around VRRP's: [`Volumes::stop_changed`] first stops each volume whose section changed
//! or is gone (letting go of its instance, which the VRRP reload may then remove), and
//! [`Volumes::start_new`] then starts the new sections (following instances the VRRP reload may
//! have added). A primary volume is never stopped by a reload: its NBD clients would lose the
//! device.

mod follow_vrrp;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use fulcrum_common::stats;
use fulcrum_storage::volume::{
    Volume, VolumeError, VolumeEvent, VolumeStatus,
    config::{BackingKind, Role, VolumeConfig},
};
use fulcrum_vrrp::run::{Follower, Prepared, Vrrp};
use tokio::{sync::broadcast, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};

use follow_vrrp::follow_vrrp;

/// How often a running resync's progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How long stopping waits for the followers' last demotion (VRRP has stopped by then, its
/// `notify_stop` scripts run) before the volumes stop anyway.
const LAST_DEMOTION: Duration = Duration::from_secs(10);

/// The running volumes, in name order. A std mutex is enough: it is taken to read a status or
/// find a volume, and at a reload or the stop, never held across an await.
#[derive(Debug)]
pub(crate) struct Volumes {
    running: Mutex<Vec<Running>>,
    /// Every volume started in this process, running or not: `role` applies to a volume's
    /// first start only.
    started_before: Mutex<BTreeSet<String>>,
    /// `[global]`'s, read at start: a reload does not move the metadata or rename the node.
    state_dir: PathBuf,
    node: String,
}

/// A volume, the section it runs on and its tasks.
#[derive(Debug)]
struct Running {
    /// As a reload compares it ([`as_running`]).
    config: VolumeConfig,
    volume: Volume,
    /// Following the instance of `follow_vrrp`, until it stops or `leave`.
    follower: Option<JoinHandle<Option<Follower>>>,
    leave: CancellationToken,
    /// Logging a resync's progress, for as long as the volume runs.
    _progress: AbortOnDropHandle<()>,
}

/// The volumes to start, each with `follow_vrrp` holding its follower of the instance: from
/// [`Volumes::plan`], to [`Volumes::start`].
#[derive(Debug)]
pub(crate) struct Planned {
    volumes: Vec<(VolumeConfig, Option<Follower>)>,
}

/// What [`Volumes::stop_changed`] hands to [`Volumes::start_new`]: the followers of the
/// volumes it stopped that follow the same instance on their new section. Held in between, so
/// that a MASTER change meanwhile waits for the restarted volume's promotion before its
/// `notify_master`, as it would have for the volume that left. And the sections the stopped
/// volumes ran on, to start one again on if its new section cannot start.
#[derive(Debug, Default)]
pub(crate) struct Handover {
    followers: BTreeMap<String, Follower>,
    previous: BTreeMap<String, VolumeConfig>,
}

impl Volumes {
    /// Registers the follower of every volume with `follow_vrrp`, with VRRP prepared and its
    /// instances not yet started: every change of the instance, its first MASTER included
    /// (priority 255 is MASTER at once), then holds `notify_master` until the volume, started
    /// later, is promoted.
    pub(crate) fn plan(configs: Vec<VolumeConfig>, vrrp: Option<&Prepared>) -> Planned {
        let volumes = configs
            .into_iter()
            .map(|config| {
                let follower = follower(&config, |instance| vrrp?.follower(instance));
                (config, follower)
            })
            .collect();
        Planned { volumes }
    }

    /// Starts every planned volume; on an error, the ones already started are stopped again
    /// (and their followers dropped, which counts as done).
    pub(crate) async fn start(
        planned: Planned,
        state_dir: &Path,
        node: &str,
    ) -> Result<Volumes, String> {
        let volumes = Volumes {
            running: Mutex::default(),
            started_before: Mutex::default(),
            state_dir: state_dir.to_owned(),
            node: node.to_owned(),
        };
        for (config, follower) in planned.volumes {
            let name = config.name.clone();
            match Volume::start(config.clone(), state_dir, node).await {
                Ok(volume) => volumes.add(config, volume, follower),
                Err(error) => {
                    let running = std::mem::take(&mut *volumes.running());
                    stop_all(running).await;
                    return Err(format!("volume {name}: {error}"));
                }
            }
        }
        Ok(volumes)
    }

    /// Every volume now, as the stats page and `fulcrum status volume` show it.
    pub(crate) fn stats(&self) -> Vec<stats::Volume> {
        self.running()
            .iter()
            .map(|r| to_stats(&r.volume.status()))
            .collect()
    }

    /// The volume called `name`, or an error listing the defined ones.
    pub(crate) fn find(&self, name: &str) -> Result<Volume, String> {
        let running = self.running();
        if let Some(found) = running.iter().find(|r| r.config.name == name) {
            return Ok(found.volume.clone());
        }
        let names: Vec<&str> = running.iter().map(|r| r.config.name.as_str()).collect();
        Err(format!(
            "no volume `{name}` (defined: {})",
            fulcrum_common::list_or_none(&names)
        ))
    }

    /// The events from now on (link lost and back, split brain, disk detached) of every
    /// volume, with the volume's name, for the alerts.
    pub(crate) fn subscribe(&self) -> Vec<(String, broadcast::Receiver<VolumeEvent>)> {
        self.running()
            .iter()
            .map(|r| (r.config.name.clone(), r.volume.subscribe()))
            .collect()
    }

    /// The first step of a reload, before VRRP follows it: stops each volume whose section
    /// changed or is gone, cleanly, as `drbdadm down` does (its peer sees the link drop, and
    /// resyncs what changed meanwhile when it comes back). A volume that is primary keeps
    /// running on its old section, with a warning: stopping it would pull the device from
    /// under its NBD clients. So does one whose backing's size changed, which a restart would
    /// refuse. [`Volumes::start_new`] starts the changed ones again.
    pub(crate) async fn stop_changed(&self, configs: &[VolumeConfig]) -> Handover {
        let configs: Vec<_> = configs.iter().cloned().map(as_running).collect();
        let new_section = |name: &str| configs.iter().find(|c| c.name == name);
        let leaving = {
            let mut running = self.running();
            let (stay, leaving): (Vec<_>, Vec<_>) =
                std::mem::take(&mut *running).into_iter().partition(|r| {
                    let new = new_section(&r.config.name);
                    new == Some(&r.config) || r.kept_as_primary() || r.kept_at_its_size(new)
                });
            *running = stay;
            leaving
        };
        let mut handover = Handover::default();
        let mut stopping = Vec::new();
        for mut leaving in leaving {
            let follower = leaving.leave().await;
            if leaving.kept_as_primary() {
                // Promoted meanwhile by its instance's MASTER, or left before the demotion
                // that follows a MASTER: it follows on with the same follower, which demotes
                // it in turn where due.
                leaving.follow(follower);
                self.insert(leaving);
                continue;
            }
            tracing::info!(volume = %leaving.config.name, "[volume] section changed or removed: stopping the volume");
            let same_instance = |new: &VolumeConfig| {
                new.follow_vrrp.as_ref().map(|i| i.get_ref())
                    == leaving.config.follow_vrrp.as_ref().map(|i| i.get_ref())
            };
            if let Some(follower) = follower
                && new_section(&leaving.config.name).is_some_and(same_instance)
            {
                handover
                    .followers
                    .insert(leaving.config.name.clone(), follower);
            }
            (handover.previous).insert(leaving.config.name.clone(), leaving.config.clone());
            stopping.push(leaving);
        }
        // All stopped before any starts, so the addresses a changed section keeps are free.
        for leaving in stopping {
            leaving.volume.stop().await;
        }
        handover
    }

    /// The second step of a reload, after VRRP has followed it: starts each volume of
    /// `configs` that is not running, following its instance (a MASTER one promotes it at
    /// once), with the follower `handover` holds for it if any. `role` applies to a volume's
    /// first start in this process only: one started before comes back secondary, as it left.
    /// A changed one that cannot start on its new section (its port held by another process,
    /// say) starts again on the section it ran on. One that cannot start at all is logged and
    /// left stopped; the next reload tries again. A
    /// running volume that follows no instance (VRRP was off, or did not take the file that
    /// added the instance) is given its follower now. Returns the events of the volumes
    /// started, subscribed at once, for the alerts.
    pub(crate) async fn start_new(
        &self,
        configs: Vec<VolumeConfig>,
        vrrp: Option<&Vrrp>,
        mut handover: Handover,
    ) -> Vec<(String, broadcast::Receiver<VolumeEvent>)> {
        let mut started = Vec::new();
        for config in configs {
            let name = config.name.clone();
            if self.running_with_follower(&name, vrrp) {
                continue;
            }
            let start = |config: VolumeConfig| async move {
                let mut starting = config.clone();
                if lock(&self.started_before).contains(&config.name) {
                    starting.role = Role::Secondary;
                }
                let volume = Volume::start(starting, &self.state_dir, &self.node).await?;
                Ok::<_, VolumeError>((config, volume))
            };
            let previous = handover.previous.remove(&name);
            let reloaded = config.clone();
            let what = format!("the volume `{name}`");
            let section = format!("[volume.{name}]");
            let Some((config, volume)) =
                crate::restart::start_or_restore(&what, &section, config, previous, start).await
            else {
                continue;
            };
            let events = volume.subscribe();
            // One whose instance's task was lost at the rebuild would tell the state of an
            // instance that no longer runs. A held one follows the same instance on the new
            // section as on the previous one.
            let held = (handover.followers.remove(&name)).filter(|f| !f.is_gone());
            let follower = held.or_else(|| follower(&config, |instance| vrrp?.follower(instance)));
            if config == reloaded {
                tracing::info!(volume = %name, "volume started on the reloaded [volume] section");
            }
            self.add(config, volume, follower);
            started.push((name, events));
        }
        started
    }

    /// Whether the volume `name` runs; if it should follow an instance and does not, it is
    /// given a follower from `vrrp`.
    fn running_with_follower(&self, name: &str, vrrp: Option<&Vrrp>) -> bool {
        let mut running = self.running();
        let Some(found) = running.iter_mut().find(|r| r.config.name == name) else {
            return false;
        };
        let following = (found.follower.as_ref()).is_some_and(|task| !task.is_finished());
        if found.config.follow_vrrp.is_some() && !following {
            let follower = follower(&found.config, |instance| vrrp?.follower(instance));
            found.follow(follower);
        }
        true
    }

    /// Lets the followers finish (after VRRP has stopped, each demotes once its instance's
    /// `notify_stop` has run; bounded), then stops every volume cleanly (NBD drained, metadata
    /// closed).
    pub(crate) async fn stop(&self) {
        let mut running = std::mem::take(&mut *self.running());
        let last_demotions = async {
            for follower in running.iter_mut().filter_map(|r| r.follower.as_mut()) {
                let _ = follower.await;
            }
        };
        if tokio::time::timeout(LAST_DEMOTION, last_demotions)
            .await
            .is_err()
        {
            tracing::warn!(
                waited = ?LAST_DEMOTION,
                "volumes still following VRRP; stopping them anyway"
            );
        }
        stop_all(running).await;
    }

    /// Takes `volume`, just started on `config`, into the running ones, following its
    /// instance with `follower` if given.
    fn add(&self, config: VolumeConfig, volume: Volume, follower: Option<Follower>) {
        lock(&self.started_before).insert(config.name.clone());
        self.insert(Running::new(as_running(config), volume, follower));
    }

    fn insert(&self, volume: Running) {
        let mut running = self.running();
        running.push(volume);
        running.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    }

    fn running(&self) -> MutexGuard<'_, Vec<Running>> {
        lock(&self.running)
    }
}

impl Running {
    /// `volume`, running on `config`, following the instance with `follower` if given.
    fn new(config: VolumeConfig, volume: Volume, follower: Option<Follower>) -> Running {
        let mut running = Running {
            _progress: AbortOnDropHandle::new(tokio::spawn(log_resync_progress(volume.clone()))),
            config,
            volume,
            follower: None,
            leave: CancellationToken::new(),
        };
        running.follow(follower);
        running
    }

    fn follow(&mut self, follower: Option<Follower>) {
        self.leave = CancellationToken::new();
        self.follower = follower.map(|follower| {
            tokio::spawn(follow_vrrp(
                self.volume.clone(),
                follower,
                self.leave.clone(),
            ))
        });
    }

    /// Tells the follower to leave and waits for it (a promotion or demotion under way ends
    /// first): its follower, unless the instance had stopped.
    async fn leave(&mut self) -> Option<Follower> {
        self.leave.cancel();
        self.follower.take()?.await.ok().flatten()
    }

    /// Whether the volume is primary, and so stays on its old section through a reload that
    /// changed or removed it (warned).
    fn kept_as_primary(&self) -> bool {
        let primary = self.volume.status().role == Role::Primary;
        if primary {
            tracing::warn!(volume = %self.config.name, "[volume] changed or removed, but the volume is primary: it keeps running on its old settings; demote it (fulcrum volume secondary NAME, or move its VRRP instance to the peer), then reload");
        }
        primary
    }

    /// Whether `new`, this volume's new section, gives its backing another size (a block
    /// device grown, say), so that it stays on its old section (warned): the metadata holds
    /// the size, and a restart would refuse the difference.
    fn kept_at_its_size(&self, new: Option<&VolumeConfig>) -> bool {
        let Some(new) = new.filter(|new| new.backing.size != self.config.backing.size) else {
            return false;
        };
        tracing::warn!(volume = %self.config.name, size = self.config.backing.size, new_size = new.backing.size, "[volume] changed, but its backing's size differs: a volume cannot be resized, so it keeps running on its old settings");
        true
    }
}

/// Aborts the followers not done yet (a promotion or demotion under way included), then stops
/// every volume.
async fn stop_all(running: Vec<Running>) {
    for mut running in running {
        if let Some(follower) = running.follower.take()
            && !follower.is_finished()
        {
            follower.abort();
            let _ = follower.await;
        }
        running.volume.stop().await;
    }
}

/// A std mutex's guard; a panic elsewhere while holding one leaves what it guards whole (the
/// lists here are only ever replaced or pushed to).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The follower of `config`'s `follow_vrrp` instance, found with `find`, if it has one.
fn follower(
    config: &VolumeConfig,
    find: impl FnOnce(&str) -> Option<Follower>,
) -> Option<Follower> {
    let instance = config.follow_vrrp.as_ref()?.get_ref();
    let follower = find(instance);
    if follower.is_none() {
        // The config check makes `follow_vrrp` name an instance of `[vrrp]`; a reload that
        // VRRP could not apply leaves the running instances as they were.
        tracing::error!(volume = %config.name, %instance, "follow_vrrp: no such VRRP instance running; the volume does not follow it");
    }
    follower
}

/// `config` as a reload compares it: a backing file the first start created is a `File` from
/// then on, where that start's config said `NewFile`. Without this, every reload would see the
/// volume changed.
fn as_running(mut config: VolumeConfig) -> VolumeConfig {
    if config.backing.kind == BackingKind::NewFile {
        config.backing.kind = BackingKind::File;
    }
    config
}

/// Logs a running resync's progress every [`PROGRESS_EVERY`], DRBD's `sync'ed: 42.0%` line
/// of `/proc/drbd` in the log, so an operator tailing it sees a long resync advance.
async fn log_resync_progress(volume: Volume) {
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let status = volume.status();
        let Some(resync) = status.resync else {
            continue;
        };
        let percent = match resync.total_bytes {
            0 => 100.0,
            total => resync.done_bytes as f64 * 100.0 / total as f64,
        };
        tracing::info!(
            volume = %status.name,
            connection = %status.connection,
            done_mib = resync.done_bytes >> 20,
            total_mib = resync.total_bytes >> 20,
            mib_per_sec = resync.bytes_per_sec >> 20,
            "resync {percent:.1}% done"
        );
    }
}

/// A volume as the stats page, `fulcrum status volume` and the control socket show it.
pub(crate) fn to_stats(status: &VolumeStatus) -> stats::Volume {
    let resync = status.resync.as_ref();
    stats::Volume {
        name: status.name.clone(),
        role: role_name(status.role).to_owned(),
        peer_role: status.peer_role.map(|r| role_name(r).to_owned()),
        connection: status.connection.to_string(),
        disk: format!("{:?}", status.disk),
        peer_disk: status.peer_disk.map(|d| format!("{d:?}")),
        protocol: format!("{:?}", status.protocol),
        out_of_sync_bytes: status.out_of_sync_bytes,
        resync_percent: resync
            .filter(|r| r.total_bytes > 0)
            .map(|r| r.done_bytes as f64 * 100.0 / r.total_bytes as f64),
        resync_bytes_per_sec: resync.map(|r| r.bytes_per_sec),
        nbd: status.nbd.map(|a| a.to_string()),
        net_sent_bytes: status.counters.net_sent_bytes,
        net_received_bytes: status.counters.net_received_bytes,
        disk_written_bytes: status.counters.disk_written_bytes,
        disk_read_bytes: status.counters.disk_read_bytes,
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Primary => "Primary",
        Role::Secondary => "Secondary",
    }
}
