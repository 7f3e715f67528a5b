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

/// What comes after a step of [`follow_vrrp`].
enum After {
    /// The instance changed again: act on this.
    Change(Transition),
    /// Acted on the change: wait for the next.
    Wait,
    /// Told to leave.
    Leave,
    /// The instance has stopped for good.
    Stopped,
}

/// Keeps `volume` primary exactly while the followed instance is MASTER: entering MASTER,
/// promoted before `notify_master` runs (the instance waits for `done`); leaving it, demoted
/// only after that change's notify scripts have run (they stop the service and unmount). Ends
/// with `None` when the instance has stopped for good and the volume is demoted. At `leave` (a
/// reload stopping the volume) it ends once a promotion or demotion under way has finished,
/// never half-way through one, and hands the follower back: a MASTER change it has not acted
/// on then waits for the volume that follows with it next, rather than for nobody.
pub(super) async fn follow_vrrp(
    volume: Volume,
    mut follower: Follower,
    leave: CancellationToken,
) -> Option<Follower> {
    let instance = follower.instance().to_owned();
    let mut transition = follower.current();
    loop {
        let after = if transition.state() == State::Master {
            let after = promote_while_master(&volume, &instance, &mut follower, &leave).await;
            if matches!(after, After::Leave) {
                return Some(follower);
            }
            // Promoted, refused, or MASTER already left: `notify_master` may run.
            follower.done(&transition);
            after
        } else {
            // Reported first: a MASTER change queued before this one waits for it.
            follower.done(&transition);
            tokio::select! {
                // Leaving, the volume is stopped, or kept primary and followed again: either
                // way the demotion is done by whoever follows on, not waited for here (the
                // scripts may themselves wait for a follower another leaving volume holds).
                biased;
                () = leave.cancelled() => return Some(follower),
                () = transition.notified() => {}
            }
            demote(&volume, &instance).await;
            After::Wait
        };
        let after = match after {
            After::Wait => next(&mut follower, &leave).await,
            after => after,
        };
        transition = match after {
            After::Change(newer) => newer,
            After::Leave => return Some(follower),
            After::Stopped | After::Wait => return None,
        };
    }
}

/// Waits for the instance's next change, or `leave` (first, when both are there).
async fn next(follower: &mut Follower, leave: &CancellationToken) -> After {
    tokio::select! {
        biased;
        () = leave.cancelled() => After::Leave,
        next = follower.next() => next.map_or(After::Stopped, After::Change),
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
/// demote before the resync ends). Returns `Wait` once promoted or when promotion cannot
/// succeed without an operator (the local data is not UpToDate), or what [`next`] finds first.
async fn promote_while_master(
    volume: &Volume,
    instance: &str,
    follower: &mut Follower,
    leave: &CancellationToken,
) -> After {
    let name = volume.status().name;
    let mut logged = false;
    loop {
        match volume.promote(false).await {
            Ok(()) => {
                tracing::info!(volume = %name, %instance, "promoted: the VRRP instance is MASTER");
                return After::Wait;
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
                    next = next(follower, leave) => return next,
                }
            }
            Err(error) => {
                tracing::error!(volume = %name, %instance, %error, "promotion refused; the volume stays secondary");
                return After::Wait;
            }
        }
    }
}
