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
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use fulcrum_common::stats;
use fulcrum_storage::volume::{
    Volume, VolumeEvent, VolumeStatus,
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
    follower: Option<JoinHandle<()>>,
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
            state_dir: state_dir.to_owned(),
            node: node.to_owned(),
        };
        for (config, follower) in planned.volumes {
            let name = config.name.clone();
            match Volume::start(config.clone(), state_dir, node).await {
                Ok(volume) => {
                    let running = Running::new(as_running(config), volume, follower);
                    volumes.running().push(running);
                }
                Err(error) => {
                    volumes.stop_now().await;
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

    /// The events from now on (link lost and back, split brain, disk detached) of each volume,
    /// or of those named in `only`, with the volume's name, for the alerts.
    pub(crate) fn subscribe(
        &self,
        only: Option<&[String]>,
    ) -> Vec<(String, broadcast::Receiver<VolumeEvent>)> {
        self.running()
            .iter()
            .filter(|r| only.is_none_or(|names| names.contains(&r.config.name)))
            .map(|r| (r.config.name.clone(), r.volume.subscribe()))
            .collect()
    }

    /// The first step of a reload, before VRRP follows it: stops each volume whose section
    /// changed or is gone, cleanly, as `drbdadm down` does (its peer sees the link drop, and
    /// resyncs what changed meanwhile when it comes back). A volume that is primary keeps
    /// running on its old section, with a warning: stopping it would pull the device from
    /// under its NBD clients. Returns the names stopped; [`Volumes::start_new`] starts the
    /// changed ones again.
    pub(crate) async fn stop_changed(
        &self,
        configs: &[VolumeConfig],
        vrrp: Option<&Vrrp>,
    ) -> Vec<String> {
        let configs: Vec<_> = configs.iter().cloned().map(as_running).collect();
        let leaving = {
            let mut running = self.running();
            let (stay, leaving): (Vec<_>, Vec<_>) = std::mem::take(&mut *running)
                .into_iter()
                .partition(|r| configs.contains(&r.config) || r.kept_as_primary());
            *running = stay;
            leaving
        };
        let mut stopping = Vec::new();
        for mut leaving in leaving {
            // The follower ends between two promotions, never inside one.
            leaving.leave.cancel();
            if let Some(follower) = leaving.follower.take() {
                let _ = follower.await;
            }
            if leaving.kept_as_primary() {
                // Its instance became MASTER meanwhile and promoted it.
                leaving.follow_again(vrrp);
                self.insert(leaving);
                continue;
            }
            tracing::info!(volume = %leaving.config.name, "[volume] section changed or removed: stopping the volume");
            stopping.push(leaving);
        }
        let names = stopping.iter().map(|r| r.config.name.clone()).collect();
        // All stopped before any starts, so the addresses a changed section keeps are free.
        for leaving in stopping {
            leaving.volume.stop().await;
        }
        names
    }

    /// The second step of a reload, after VRRP has followed it: starts each volume of
    /// `configs` that is not running, its follower registered with the running instance (a
    /// MASTER one promotes it at once). One that [`Volumes::stop_changed`] stopped
    /// (`restarted`) comes back secondary, as it was: `role` applies to a volume's first
    /// start. One that cannot start is logged and left stopped; the next reload tries again.
    /// Returns the names started, whose events the alerts have yet to follow.
    pub(crate) async fn start_new(
        &self,
        configs: Vec<VolumeConfig>,
        vrrp: Option<&Vrrp>,
        restarted: &[String],
    ) -> Vec<String> {
        let mut started = Vec::new();
        for config in configs {
            let name = config.name.clone();
            if self.running().iter().any(|r| r.config.name == name) {
                continue;
            }
            let mut starting = config.clone();
            if restarted.contains(&name) {
                starting.role = Role::Secondary;
            }
            match Volume::start(starting, &self.state_dir, &self.node).await {
                Ok(volume) => {
                    let follower = follower(&config, |instance| vrrp?.follower(instance));
                    self.insert(Running::new(as_running(config), volume, follower));
                    tracing::info!(volume = %name, "volume started on the reloaded [volume] section");
                    started.push(name);
                }
                Err(error) => {
                    tracing::error!(volume = %name, %error, "cannot start the volume on the reloaded [volume] section; it is not running");
                }
            }
        }
        started
    }

    /// Lets the followers finish (after VRRP has stopped, each demotes once its instance's
    /// `notify_stop` has run; bounded), then stops every volume cleanly (NBD drained, metadata
    /// closed).
    pub(crate) async fn stop(&self) {
        let mut running = std::mem::take(&mut *self.running());
        let mut followers: Vec<_> = running
            .iter_mut()
            .filter_map(|r| r.follower.take())
            .collect();
        let last_demotions = async {
            for follower in &mut followers {
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
        stop_all(running, followers).await;
    }

    /// Stops the followers at once, then every volume.
    async fn stop_now(&self) {
        let mut running = std::mem::take(&mut *self.running());
        let followers = running
            .iter_mut()
            .filter_map(|r| r.follower.take())
            .collect();
        stop_all(running, followers).await;
    }

    fn insert(&self, volume: Running) {
        let mut running = self.running();
        running.push(volume);
        running.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    }

    fn running(&self) -> MutexGuard<'_, Vec<Running>> {
        // A panic elsewhere while holding it leaves the list whole: it is only ever replaced or
        // pushed to.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// Follows its instance again, after a reload told its follower to leave.
    fn follow_again(&mut self, vrrp: Option<&Vrrp>) {
        let follower = follower(&self.config, |instance| vrrp?.follower(instance));
        self.follow(follower);
    }

    /// Whether the volume is primary, and so stays on its old section through a reload that
    /// changed or removed it (warned).
    fn kept_as_primary(&self) -> bool {
        let primary = self.volume.status().role == Role::Primary;
        if primary {
            tracing::warn!(volume = %self.config.name, "[volume] changed or removed, but the volume is primary: it keeps running on its old settings; demote it (`fulcrum volume secondary NAME`, or move its VRRP instance to the peer), then reload");
        }
        primary
    }
}

/// Aborts `followers` (a promotion or demotion under way included), then stops every volume.
async fn stop_all(running: Vec<Running>, followers: Vec<JoinHandle<()>>) {
    for follower in followers {
        follower.abort();
        let _ = follower.await;
    }
    for running in running {
        running.volume.stop().await;
    }
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
