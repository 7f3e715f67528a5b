//! The replicated volumes of `[volume.NAME]` in this process: started after VRRP, each one that
//! has `follow_vrrp` promoted while its instance is MASTER and demoted otherwise, as heartbeat's
//! `drbddisk` resource did beside the VIP, and stopped after VRRP so the peer holds the VIP by
//! the time this node lets the data go.

use std::{path::Path, time::Duration};

use fulcrum_common::stats;
use fulcrum_storage::volume::{
    Volume, VolumeStatus,
    config::{Role, VolumeConfig},
};
use fulcrum_vrrp::{fsm::State, run::Vrrp};
use tokio::{sync::broadcast::error::RecvError, task::JoinSet};

/// How often a running resync's progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How often a promotion the peer refused (it is still primary, demoting) is tried again while
/// the instance stays MASTER.
const PROMOTE_RETRY: Duration = Duration::from_millis(500);

/// The running volumes, in name order, and their tasks: following VRRP, logging resync progress.
#[derive(Debug, Default)]
pub(crate) struct Volumes {
    volumes: Vec<Volume>,
    tasks: JoinSet<()>,
}

impl Volumes {
    /// Starts every volume; on an error, the ones already started are stopped again.
    pub(crate) async fn start(
        configs: Vec<VolumeConfig>,
        state_dir: &Path,
        node: &str,
        vrrp: Option<&Vrrp>,
    ) -> Result<Volumes, String> {
        let mut started = Volumes::default();
        for config in configs {
            let name = config.name.clone();
            let follow = config.follow_vrrp.as_ref().map(|f| f.get_ref().clone());
            let volume = match Volume::start(config, state_dir, node).await {
                Ok(volume) => volume,
                Err(error) => {
                    started.stop().await;
                    return Err(format!("volume {name}: {error}"));
                }
            };
            if let (Some(instance), Some(vrrp)) = (follow, vrrp) {
                started
                    .tasks
                    .spawn(follow_vrrp(volume.clone(), instance, vrrp));
            }
            started.tasks.spawn(log_resync_progress(volume.clone()));
            started.volumes.push(volume);
        }
        Ok(started)
    }

    pub(crate) fn handles(&self) -> Vec<Volume> {
        self.volumes.clone()
    }

    /// Stops those tasks, then every volume cleanly (NBD drained, metadata closed).
    pub(crate) async fn stop(mut self) {
        self.tasks.shutdown().await;
        for volume in self.volumes.drain(..) {
            volume.stop().await;
        }
    }
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

/// Keeps `volume` primary exactly while `instance` is MASTER.
fn follow_vrrp(
    volume: Volume,
    instance: String,
    vrrp: &Vrrp,
) -> impl Future<Output = ()> + Send + 'static {
    let mut events = vrrp.subscribe();
    let status = vrrp.status_handle();
    async move {
        let state_now = || {
            status
                .instances()
                .into_iter()
                .find(|i| i.name == instance)
                .map(|i| i.state)
        };
        let mut master = state_now() == Some(State::Master);
        loop {
            if master {
                promote_while_master(&volume, &instance).await;
            } else if volume.status().role == Role::Primary {
                match volume.demote().await {
                    Ok(()) => {
                        tracing::info!(volume = %volume.status().name, %instance, "demoted: the VRRP instance is no longer MASTER")
                    }
                    Err(error) => {
                        tracing::error!(volume = %volume.status().name, %instance, %error, "demotion failed")
                    }
                }
            }
            // Wait for this instance's next change; a lagged receiver re-reads the state.
            loop {
                match events.recv().await {
                    Ok(event) if event.instance == instance => {
                        master = event.to == State::Master;
                        break;
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        master = state_now() == Some(State::Master);
                        break;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}

/// Promotes `volume`, retrying while the peer still holds the primary role (its demotion is
/// under way: it stops VRRP before its volumes). Returns once promoted, or when promotion
/// cannot succeed without an operator (the local data is not UpToDate).
async fn promote_while_master(volume: &Volume, instance: &str) {
    let name = volume.status().name;
    let mut logged = false;
    loop {
        match volume.promote(false).await {
            Ok(()) => {
                tracing::info!(volume = %name, %instance, "promoted: the VRRP instance is MASTER");
                return;
            }
            Err(error) if volume.status().peer_role == Some(Role::Primary) => {
                if !logged {
                    tracing::warn!(volume = %name, %instance, %error, "promotion waits for the peer to demote");
                    logged = true;
                }
                tokio::time::sleep(PROMOTE_RETRY).await;
            }
            Err(error) => {
                tracing::error!(volume = %name, %instance, %error, "promotion refused; the volume stays secondary");
                return;
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
