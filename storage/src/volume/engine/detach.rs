//! `on_io_error = "detach"`: after a local I/O error, stop using the local disk and go on with
//! the peer's copy (DRBD's Diskless state), and the remote reads that then serve the data.
//!
//! A node detaches only while its peer is Connected and UpToDate; otherwise there is no good
//! copy to go on with, and the error reaches the client as with `pass_on`. Once detached it
//! stays so until the volume restarts: the metadata records the disk Inconsistent and every
//! write since is marked out of sync here, so the next start resyncs those blocks (and the one
//! that failed) from the peer. A link lost while detached is not reconnected: the node then
//! answers EIO, having no copy of its own, until it restarts.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tracing::warn;

use super::inner::Inner;
use super::link::Request;
use super::status::{ConnState, Counters, VolumeEvent};
use crate::nbd::NbdError;
use crate::volume::config::IoErrorPolicy;
use crate::volume::meta;
use crate::volume::peer::{DiskState, MAX_DATA};

/// Called after a local read or write failed with `error`: detaches the disk when the policy
/// and the peer allow it. Returns whether the disk is detached (now or already), in which case
/// the request is to be served by the peer.
pub(crate) async fn detach(inner: &Arc<Inner>, error: &io::Error) -> bool {
    if inner.is_detached() {
        return true;
    }
    if inner.config.on_io_error != IoErrorPolicy::Detach {
        return false;
    }
    {
        let c = inner.control();
        if c.conn != ConnState::Connected || c.peer_disk != Some(DiskState::UpToDate) {
            warn!(volume = %inner.config.name, conn = %c.conn, peer_disk = ?c.peer_disk, "cannot detach: no UpToDate peer to go on with");
            return false;
        }
    }
    if inner.detached.swap(true, Ordering::AcqRel) {
        return true;
    }
    inner.control().disk = DiskState::Diskless;
    warn!(volume = %inner.config.name, %error, "local disk failed: detached, serving from the peer");
    distrust_and_tell(inner).await;
    inner.emit(VolumeEvent::Detached);
    true
}

/// Records this node's copy as Inconsistent, so that the next start resyncs it from the peer
/// rather than trust it, with every extent of the activity log marked out of sync (a write
/// there may not have reached the failing disk), and tells the peer the disk state now held.
async fn distrust_and_tell(inner: &Inner) {
    let recorded = inner
        .meta
        .try_call(|m| {
            m.update(|s| s.disk = meta::DiskState::Inconsistent)?;
            m.mark_log_out_of_sync()
        })
        .await;
    if let Err(error) = recorded {
        warn!(volume = %inner.config.name, %error, "cannot record the disk as Inconsistent");
    }
    super::roles::tell_peer(inner).await;
}

/// A write the peer replicated failed on this node's disk (this node is the secondary): its
/// copy is no longer good, and must not be promoted as if it were. With `detach` the disk is
/// detached as for a failed local request; with `pass_on`, or when there is no UpToDate peer to
/// detach to, the disk goes Inconsistent, as DRBD's does: promotion is refused (short of
/// `--force`) until a resync makes it UpToDate again. The block is already marked out of sync.
pub(crate) async fn replicated_write_failed(inner: &Arc<Inner>) {
    let error = io::Error::other("a replicated write failed on the local disk");
    if detach(inner, &error).await {
        return;
    }
    {
        let mut c = inner.control();
        if c.disk != DiskState::UpToDate {
            return;
        }
        c.disk = DiskState::Inconsistent;
    }
    warn!(volume = %inner.config.name, "a replicated write failed on the local disk: Inconsistent until resynced");
    distrust_and_tell(inner).await;
}

/// Reads `[offset, offset + len)` from the peer's copy, in pieces of at most [`MAX_DATA`]
/// requested together. The peer reads each after applying every write sent before it.
pub(crate) async fn read_from_peer(
    inner: &Inner,
    offset: u64,
    len: usize,
) -> Result<Bytes, NbdError> {
    let tx = inner.gate.read().await.clone().ok_or(NbdError::Io)?;
    let mut parts = Vec::with_capacity(len.div_ceil(MAX_DATA));
    let mut at = 0;
    while at < len {
        let n = (len - at).min(MAX_DATA);
        let (done, rx) = oneshot::channel();
        tx.send(Request::Read {
            offset: offset + at as u64,
            // At most MAX_DATA (1 MiB).
            len: u32::try_from(n).unwrap_or(u32::MAX),
            done,
        })
        .await
        .map_err(|_| NbdError::Io)?;
        parts.push(rx);
        at += n;
    }
    let mut out = BytesMut::with_capacity(if parts.len() > 1 { len } else { 0 });
    let mut single = None;
    for rx in parts {
        // The session checked each piece's length against its request.
        let data = rx.await.ok().flatten().ok_or_else(|| {
            warn!(volume = %inner.config.name, offset, len, "the peer could not serve a read");
            NbdError::Io
        })?;
        if len <= MAX_DATA {
            single = Some(data);
        } else {
            out.extend_from_slice(&data);
        }
    }
    Counters::add(&inner.counters.peer_read, len as u64);
    Ok(single.unwrap_or_else(|| out.freeze()))
}
