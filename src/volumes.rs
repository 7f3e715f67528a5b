//! The replicated volumes of `[volume.NAME]` in this process: each one that has `follow_vrrp`
//! promoted while its instance is MASTER and demoted otherwise, as heartbeat's `drbddisk`
//! resource did beside the VIP, and stopped after VRRP so the peer holds the VIP by the time this
//! node lets the data go. Heartbeat's order holds around the notify scripts: promoted before
//! `notify_master` runs, demoted after `notify_backup` / `_fault` / `_stop`. For that, the
//! volumes are planned ([`Volumes::plan`], their followers registered) before VRRP's instances
//! start, and started after.

use std::{path::Path, time::Duration};

use fulcrum_common::stats;
use fulcrum_storage::volume::{
    Volume, VolumeError, VolumeStatus,
    config::{Role, VolumeConfig},
};
use fulcrum_vrrp::{
    fsm::State,
    run::{Follower, Prepared, Transition},
};
use tokio::task::JoinSet;

/// How often a running resync's progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How often a promotion the peer refused (it is still primary, demoting) is tried again while
/// the instance stays MASTER.
const PROMOTE_RETRY: Duration = Duration::from_millis(500);

/// How long stopping waits for the followers' last demotion (VRRP has stopped by then, its
/// `notify_stop` scripts run) before the volumes stop anyway.
const LAST_DEMOTION: Duration = Duration::from_secs(10);

/// The running volumes, in name order, and their tasks: following VRRP, logging resync progress.
#[derive(Debug, Default)]
pub(crate) struct Volumes {
    volumes: Vec<Volume>,
    followers: JoinSet<()>,
    tasks: JoinSet<()>,
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
                let follower = follower(&config, vrrp);
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
        let mut started = Volumes::default();
        for (config, follower) in planned.volumes {
            let name = config.name.clone();
            let volume = match Volume::start(config, state_dir, node).await {
                Ok(volume) => volume,
                Err(error) => {
                    started.abort().await;
                    return Err(format!("volume {name}: {error}"));
                }
            };
            if let Some(follower) = follower {
                started
                    .followers
                    .spawn(follow_vrrp(volume.clone(), follower));
            }
            started.tasks.spawn(log_resync_progress(volume.clone()));
            started.volumes.push(volume);
        }
        Ok(started)
    }

    pub(crate) fn handles(&self) -> Vec<Volume> {
        self.volumes.clone()
    }

    /// Lets the followers finish (after VRRP has stopped, each demotes once its instance's
    /// `notify_stop` has run; bounded), stops the other tasks, then every volume cleanly (NBD
    /// drained, metadata closed).
    pub(crate) async fn stop(mut self) {
        let followers = async { while self.followers.join_next().await.is_some() {} };
        if tokio::time::timeout(LAST_DEMOTION, followers)
            .await
            .is_err()
        {
            tracing::warn!(
                waited = ?LAST_DEMOTION,
                "volumes still following VRRP; stopping them anyway"
            );
        }
        self.abort().await;
    }

    /// Stops the tasks at once, then every volume.
    async fn abort(&mut self) {
        self.followers.shutdown().await;
        self.tasks.shutdown().await;
        for volume in self.volumes.drain(..) {
            volume.stop().await;
        }
    }
}

/// The follower of `config`'s `follow_vrrp` instance, if it has one.
fn follower(config: &VolumeConfig, vrrp: Option<&Prepared>) -> Option<Follower> {
    let instance = config.follow_vrrp.as_ref()?.get_ref();
    let follower = vrrp.and_then(|vrrp| vrrp.follower(instance));
    if follower.is_none() {
        // The config check makes `follow_vrrp` name an instance of `[vrrp]`.
        tracing::error!(volume = %config.name, %instance, "follow_vrrp: no such VRRP instance running; the volume does not follow it");
    }
    follower
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

/// Keeps `volume` primary exactly while the followed instance is MASTER, in heartbeat's order:
/// entering MASTER, promoted before `notify_master` runs (the instance waits for `done`);
/// leaving it, demoted only after that change's notify scripts have run (they stop the service
/// and unmount). Ends when the instance has stopped and the volume is demoted.
async fn follow_vrrp(volume: Volume, mut follower: Follower) {
    let instance = follower.instance().to_owned();
    let mut transition = follower.current();
    loop {
        let newer = if transition.state() == State::Master {
            let newer = promote_while_master(&volume, &instance, &mut follower).await;
            // Promoted, refused, or MASTER already left: `notify_master` may run.
            follower.done(&transition);
            newer
        } else {
            // Reported first: a MASTER change queued before this one waits for it.
            follower.done(&transition);
            transition.notified().await;
            demote(&volume, &instance).await;
            None
        };
        transition = match newer {
            Some(newer) => newer,
            None => match follower.next().await {
                Some(next) => next,
                None => return,
            },
        };
    }
}

/// Demotes `volume` if it is primary.
async fn demote(volume: &Volume, instance: &str) {
    if volume.status().role != Role::Primary {
        return;
    }
    let name = volume.status().name;
    match volume.demote().await {
        Ok(()) => {
            tracing::info!(volume = %name, %instance, "demoted: the VRRP instance is no longer MASTER")
        }
        Err(error) => {
            tracing::error!(volume = %name, %instance, %error, "demotion failed")
        }
    }
}

/// Promotes `volume`, retrying while the peer still holds the primary role (its demotion is
/// under way: it runs its notify scripts first) and while this node is still receiving the
/// resync that makes it current (after a healed partition the peer, primary meanwhile, may
/// demote before the resync ends). Returns once promoted, when promotion cannot
/// succeed without an operator (the local data is not UpToDate), or with the instance's next
/// change if one comes first.
async fn promote_while_master(
    volume: &Volume,
    instance: &str,
    follower: &mut Follower,
) -> Option<Transition> {
    let name = volume.status().name;
    let mut logged = false;
    loop {
        match volume.promote(false).await {
            Ok(()) => {
                tracing::info!(volume = %name, %instance, "promoted: the VRRP instance is MASTER");
                return None;
            }
            Err(error)
                if matches!(error, VolumeError::SyncTarget)
                    || volume.status().peer_role == Some(Role::Primary) =>
            {
                if !logged {
                    tracing::warn!(volume = %name, %instance, %error, "promotion waits for the peer to demote or the resync to end");
                    logged = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(PROMOTE_RETRY) => {}
                    // None: the instance stopped; the caller finds that out again.
                    next = follower.next() => return next,
                }
            }
            Err(error) => {
                tracing::error!(volume = %name, %instance, %error, "promotion refused; the volume stays secondary");
                return None;
            }
        }
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
