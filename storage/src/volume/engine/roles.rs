//! Promotion and demotion: the checks DRBD makes, the generation change, the peer told, and the
//! NBD server started (primary) or drained and stopped (before demotion).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tracing::info;

use super::error::VolumeError;
use super::export::VolumeExport;
use super::inner::{Inner, to_wire_role};
use super::link::Request;
use super::reach;
use super::status::{ConnState, VolumeEvent};
use crate::nbd::NbdServer;
use crate::volume::config::Role;
use crate::volume::meta::{self, GenerationIds};
use crate::volume::peer::DiskState;

/// Makes this node primary. Refused when the peer is primary, while receiving a resync, or
/// (unless `force`) when the local disk is not UpToDate. While disconnected (or with `force`)
/// a new generation starts, so the next connect knows this node wrote on its own. Without
/// `force`, a node that finds the link down first tries to reach the peer (see `reach`), and
/// goes on alone only when the peer does not answer.
pub(crate) async fn promote(inner: &Arc<Inner>, force: bool) -> Result<(), VolumeError> {
    if !force {
        reach::before_promotion(inner).await;
    }
    let mut nbd = inner.role_lock.lock().await;
    if inner.cancel.is_cancelled() {
        return Err(VolumeError::Stopped);
    }
    if inner.is_primary() {
        return Ok(());
    }
    let (conn, peer_role, disk, peer_disk) = {
        let c = inner.control();
        (c.conn, c.peer_role, c.disk, c.peer_disk)
    };
    if peer_role == Some(Role::Primary) {
        return Err(VolumeError::PeerPrimary);
    }
    if conn == ConnState::SyncTarget {
        return Err(VolumeError::SyncTarget);
    }
    if inner.is_detached() {
        // No local copy to serve from once the peer goes: not even `force`.
        return Err(VolumeError::NotUpToDate(DiskState::Diskless));
    }
    if disk != DiskState::UpToDate && !force {
        return Err(VolumeError::NotUpToDate(disk));
    }
    // Bind first: a port in use fails the promotion before anything changed.
    let listener = match &inner.config.nbd {
        Some(cfg) => {
            Some(
                TcpListener::bind(cfg.listen)
                    .await
                    .map_err(|source| VolumeError::Listen {
                        addr: cfg.listen,
                        source,
                    })?,
            )
        }
        None => None,
    };
    let new_generation = !conn.is_connected() || force;
    // Forced while connected to a peer that is not UpToDate (two adopted disks, both
    // Inconsistent, settled on no resync): as DRBD, the peer is resynced from this node now. The
    // link is made again, and its handshake finds this node UpToDate and the peer not.
    let resync_peer = force && conn.is_connected() && peer_disk != Some(DiskState::UpToDate);
    let id = GenerationIds::random_id()
        .map_err(|e| VolumeError::Io(std::io::Error::other(e.to_string())))?;
    inner
        .meta
        .try_call(move |m| {
            m.update(|s| {
                if new_generation {
                    s.ids.new_current(id, true);
                }
                s.ids.set_role(true);
                s.primary = true;
                if force {
                    s.disk = meta::DiskState::UpToDate;
                }
            })
        })
        .await?;
    inner.primary.store(true, Ordering::Release);
    {
        let mut c = inner.control();
        c.role = Role::Primary;
        if force {
            c.disk = DiskState::UpToDate;
        }
    }
    tell_peer(inner).await;
    if let (Some(listener), Some(cfg)) = (listener, &inner.config.nbd) {
        let export = Arc::new(VolumeExport::new(Arc::clone(inner)));
        let server = NbdServer::start(listener, cfg.export.clone(), export)?;
        inner.control().nbd = Some(server.local_addr());
        info!(volume = %inner.config.name, nbd = %server.local_addr(), "serving NBD");
        *nbd = Some(server);
    }
    if resync_peer {
        inner.admin.send_modify(|a| a.renegotiate += 1);
    }
    info!(volume = %inner.config.name, force, new_generation, "promoted to primary");
    inner.emit(VolumeEvent::RoleChanged(Role::Primary));
    Ok(())
}

/// Makes this node secondary: the NBD server stops first (its clients' requests in flight are
/// answered), then writes are refused.
pub(crate) async fn demote(inner: &Arc<Inner>) -> Result<(), VolumeError> {
    let mut nbd = inner.role_lock.lock().await;
    if let Some(server) = nbd.take() {
        server.stop().await;
    }
    inner.control().nbd = None;
    if !inner.is_primary() {
        return Ok(());
    }
    inner.primary.store(false, Ordering::Release);
    inner
        .meta
        .try_call(|m| {
            m.update(|s| {
                s.ids.set_role(false);
                s.primary = false;
            })
        })
        .await?;
    inner.control().role = Role::Secondary;
    tell_peer(inner).await;
    info!(volume = %inner.config.name, "demoted to secondary");
    inner.emit(VolumeEvent::RoleChanged(Role::Secondary));
    Ok(())
}

/// Stops serving NBD without touching the role (volume shutdown, or a dropped volume).
pub(crate) async fn stop_nbd(inner: &Inner) {
    let server = inner.role_lock.lock().await.take();
    if let Some(server) = server {
        server.stop().await;
    }
    inner.control().nbd = None;
}

/// Tells the peer this node's role and disk state as they stand now.
pub(super) async fn tell_peer(inner: &Inner) {
    let tx = inner.gate.read().await.clone();
    if let Some(tx) = tx {
        let (role, disk) = {
            let c = inner.control();
            (to_wire_role(c.role), c.disk)
        };
        let _ = tx.send(Request::State { role, disk }).await;
    }
}
