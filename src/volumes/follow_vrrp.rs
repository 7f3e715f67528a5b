//! A volume with `follow_vrrp`: primary exactly while its instance is MASTER, in heartbeat's
//! order around the notify scripts (promoted before `notify_master` runs, demoted after
//! `notify_backup` / `_fault` / `_stop`), as heartbeat's `drbddisk` resource followed the VIP.

use std::time::Duration;

use fulcrum_storage::volume::{Volume, VolumeError, config::Role};
use fulcrum_vrrp::{
    fsm::State,
    run::{Follower, Transition},
};
use tokio_util::sync::CancellationToken;

/// How often a promotion the peer refused (it is still primary, demoting) is tried again while
/// the instance stays MASTER.
const PROMOTE_RETRY: Duration = Duration::from_millis(500);

/// Keeps `volume` primary exactly while the followed instance is MASTER: entering MASTER,
/// promoted before `notify_master` runs (the instance waits for `done`); leaving it, demoted
/// only after that change's notify scripts have run (they stop the service and unmount). Ends
/// when the instance has stopped and the volume is demoted, or at `leave` (a reload stopping the
/// volume) once a promotion or demotion under way has finished: never half-way through one.
pub(super) async fn follow_vrrp(volume: Volume, mut follower: Follower, leave: CancellationToken) {
    let instance = follower.instance().to_owned();
    let mut transition = follower.current();
    loop {
        let newer = if transition.state() == State::Master {
            let newer = promote_while_master(&volume, &instance, &mut follower, &leave).await;
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
            None => match next(&mut follower, &leave).await {
                Some(next) => next,
                None => return,
            },
        };
    }
}

/// The instance's next change; `None` once it has stopped for good or at `leave`.
async fn next(follower: &mut Follower, leave: &CancellationToken) -> Option<Transition> {
    tokio::select! {
        next = follower.next() => next,
        () = leave.cancelled() => None,
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
/// succeed without an operator (the local data is not UpToDate), with the instance's next
/// change if one comes first, or `None` at `leave`.
async fn promote_while_master(
    volume: &Volume,
    instance: &str,
    follower: &mut Follower,
    leave: &CancellationToken,
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
                    // None: the instance stopped, or the volume leaves; the caller finds that
                    // out again.
                    next = next(follower, leave) => return next,
                }
            }
            Err(error) => {
                tracing::error!(volume = %name, %instance, %error, "promotion refused; the volume stays secondary");
                return None;
            }
        }
    }
}
