//! Online verify (DRBD's `drbdadm verify`): walks the whole volume in disk order, compares the
//! SHA-256 of each 1 MiB chunk with the peer's copy, narrows a differing chunk down to its
//! 4 KiB blocks, and marks the differing blocks out of sync. As in DRBD, nothing is repaired
//! here: the next resync (after `disconnect` and `connect`) copies those blocks.
//!
//! Each chunk is read and its request queued while holding the chunk's place among the writes
//! in flight ([`super::overlap`]), so on the primary a concurrent write is either wholly before
//! the request in the replication stream or wholly after it, and the peer (which verifies in
//! order with the writes it applies) compares the same data. A verify run on the secondary
//! while the primary writes can find the blocks being written different: they are then marked
//! out of sync and resynced needlessly, never missed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

use super::error::VolumeError;
use super::inner::Inner;
use super::link::Request;
use super::status::{ConnState, Counters, VerifyReport};
use crate::volume::config::BLOCK_SIZE;
use crate::volume::peer::{DiskState, MAX_DATA};

/// The first pass compares ranges of this size.
const CHUNK: u64 = MAX_DATA as u64;

/// Requests awaiting the peer's answer.
const WINDOW: usize = 16;

/// Runs one verify to its end.
pub(crate) async fn run(inner: &Arc<Inner>) -> Result<VerifyReport, VolumeError> {
    // Taken before the first await: of two verifies started together, one is refused.
    let _one = OneAtATime::take(inner)?;
    let (conn, disk, peer_disk) = {
        let c = inner.control();
        (c.conn, c.disk, c.peer_disk)
    };
    if conn != ConnState::Connected {
        return Err(VolumeError::NotConnected(conn));
    }
    if disk != DiskState::UpToDate {
        return Err(VolumeError::NotUpToDate(disk));
    }
    if peer_disk != Some(DiskState::UpToDate) {
        return Err(VolumeError::PeerNotUpToDate(peer_disk));
    }
    let name = &inner.config.name;
    let size = inner.config.backing.size;
    let started = Instant::now();
    info!(volume = %name, size, "online verify started");
    let mut report = VerifyReport::default();
    // (offset, len, is a whole chunk, the answer)
    let mut in_flight: VecDeque<(u64, u64, bool, oneshot::Receiver<bool>)> = VecDeque::new();
    // The blocks of differing chunks, checked before the walk goes on.
    let mut narrow: VecDeque<u64> = VecDeque::new();
    let mut next = 0;
    let result = 'walk: loop {
        while in_flight.len() < WINDOW {
            let (offset, len, chunk) = if let Some(block) = narrow.pop_front() {
                (block, BLOCK_SIZE.min(size - block), false)
            } else if next < size {
                let len = CHUNK.min(size - next);
                next += len;
                (next - len, len, true)
            } else {
                break;
            };
            match request(inner, offset, len).await {
                Ok(rx) => in_flight.push_back((offset, len, chunk, rx)),
                Err(error) => break 'walk Err(error),
            }
        }
        let Some((offset, len, chunk, rx)) = in_flight.pop_front() else {
            break Ok(());
        };
        let Ok(equal) = rx.await else {
            break Err(VolumeError::ConnectionLost);
        };
        if chunk {
            report.checked_bytes += len;
        }
        if equal {
            continue;
        }
        if chunk && len > BLOCK_SIZE {
            narrow.extend((offset..offset + len).step_by(BLOCK_SIZE as usize));
            continue;
        }
        report.differing_bytes += len;
        info!(volume = %name, offset, len, "verify: out of sync");
        if let Err(error) = inner
            .meta
            .try_call(move |m| m.mark_out_of_sync(offset, len))
            .await
        {
            break Err(error);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            info!(volume = %name, checked_bytes = report.checked_bytes, differing_bytes = report.differing_bytes, secs, "online verify finished");
            Ok(report)
        }
        Err(error) => {
            warn!(volume = %name, %error, checked_bytes = report.checked_bytes, differing_bytes = report.differing_bytes, secs, "online verify aborted");
            Err(error)
        }
    }
}

/// Reads and hashes a range and queues its verify request, holding the range against
/// overlapping writes meanwhile (see the module's note).
async fn request(
    inner: &Inner,
    offset: u64,
    len: u64,
) -> Result<oneshot::Receiver<bool>, VolumeError> {
    let _order = inner.overlaps.lock(offset, offset + len).await;
    // At most CHUNK (1 MiB).
    let n = usize::try_from(len).unwrap_or(MAX_DATA);
    // Hashed on the blocking thread, as one piece (`len` is never 0).
    let digest = inner
        .disk
        .digests(offset, n, n)
        .await?
        .pop()
        .unwrap_or_default();
    Counters::add(&inner.counters.disk_read, len);
    let tx = inner
        .gate
        .read()
        .await
        .clone()
        .ok_or(VolumeError::ConnectionLost)?;
    let (done, rx) = oneshot::channel();
    tx.send(Request::Verify {
        offset,
        len: u32::try_from(len).unwrap_or(u32::MAX),
        digest,
        done,
    })
    .await
    .map_err(|_| VolumeError::ConnectionLost)?;
    Ok(rx)
}

/// The volume's verify flag, cleared on drop.
struct OneAtATime<'a>(&'a Inner);

impl<'a> OneAtATime<'a> {
    fn take(inner: &'a Inner) -> Result<Self, VolumeError> {
        if inner.verifying.swap(true, Ordering::AcqRel) {
            return Err(VolumeError::VerifyRunning);
        }
        Ok(Self(inner))
    }
}

impl Drop for OneAtATime<'_> {
    fn drop(&mut self) {
        self.0.verifying.store(false, Ordering::Release);
    }
}
