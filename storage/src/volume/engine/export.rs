//! [`VolumeExport`]: the volume as an NBD [`Export`], the primary's I/O path.
//!
//! A write is serialized against overlapping writes in flight, logged in the activity log,
//! written locally, then queued to the replication session (or marked out of sync when there
//! is none), and acknowledged per protocol. Writing locally *before* queueing keeps the resync
//! correct without conflict detection: the session reads a block for the resync and sends it in
//! one step, so any write to that block is either on disk already (the read sees it) or queued
//! after the resync data (the peer applies it afterwards).
//!
//! With the local disk detached after an I/O error (see [`super::detach`]), reads come from
//! the peer and writes go to the peer only, marked out of sync here.

use std::sync::{Arc, atomic::Ordering};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::warn;

use super::detach;
use super::disk::Zeroing;
use super::error::VolumeError;
use super::inner::Inner;
use super::link::{Delivery, Request};
use super::status::{Counters, VolumeEvent};
use crate::nbd::{Export, ExportFlags, NbdError};
use crate::volume::config::BackingKind;
use crate::volume::config::Protocol;
use crate::volume::meta::MetaError;

/// Write-zeroes requests are logged and replicated in pieces of this size, so one request never
/// needs more of the activity log than it holds.
const ZEROES_CHUNK: u64 = 64 << 20;

/// The volume's data as an NBD export: reads from the local disk, replicated writes, and EPERM
/// for writes while not primary. Cheap to clone.
#[derive(Debug, Clone)]
pub struct VolumeExport {
    inner: Arc<Inner>,
}

impl VolumeExport {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    fn check_writable(&self) -> Result<(), NbdError> {
        if self.inner.cancel.is_cancelled() {
            return Err(NbdError::Shutdown);
        }
        if !self.inner.is_primary() {
            return Err(NbdError::Perm);
        }
        Ok(())
    }

    /// One write or write-zeroes of `[offset, offset + len)`: `local` does the local I/O and
    /// `request` builds what the session sends.
    async fn replicated<L, F>(
        &self,
        offset: u64,
        len: u64,
        local: L,
        request: impl FnOnce(oneshot::Sender<Delivery>) -> Request,
    ) -> Result<(), NbdError>
    where
        L: FnOnce() -> F,
        F: Future<Output = std::io::Result<()>>,
    {
        self.check_writable()?;
        let inner = &self.inner;
        let order = inner.overlaps.lock(offset, offset + len).await;
        self.begin_write(offset, len).await?;
        let result = self.after_begin(offset, len, local, request, order).await;
        inner.meta.post_later(move |m| m.end_write(offset, len));
        result
    }

    /// Logs `[offset, offset + len)` in the activity log before it is written. When the log is
    /// full of extents whose writes no flush has covered, flushes both nodes first, as DRBD
    /// holds an extent until the peer's barrier ack: an extent out of the log is trusted to be
    /// the same on both disks after a power cut.
    async fn begin_write(&self, offset: u64, len: u64) -> Result<(), NbdError> {
        let inner = &self.inner;
        if inner.meta.try_begin_write(offset, len) {
            return Ok(());
        }
        let begin = || async {
            match inner
                .meta
                .try_call(move |m| m.begin_write(offset, len))
                .await
            {
                Ok(()) => Ok(true),
                Err(VolumeError::Meta(MetaError::ActivityLogUnflushed { .. })) => Ok(false),
                Err(error) => {
                    warn!(volume = %inner.config.name, %error, "activity log");
                    Err(NbdError::Io)
                }
            }
        };
        while !begin().await? {
            // Each flush covers every write ended before it: the idle extents it finds are
            // free after it, unless written again meanwhile. Writers that needed room while it
            // ran try again before flushing on their own.
            let _one_at_a_time = inner.evicting.lock().await;
            if begin().await? {
                return Ok(());
            }
            // The activity log's own flush: a write the peer lost is the client's next
            // FLUSH (or FUA write) to hear of, not this unrelated write's.
            self.flush_both(LostWrites::Keep).await?;
        }
        Ok(())
    }

    async fn after_begin<L, F>(
        &self,
        offset: u64,
        len: u64,
        local: L,
        request: impl FnOnce(oneshot::Sender<Delivery>) -> Request,
        order: super::overlap::OverlapGuard<'_>,
    ) -> Result<(), NbdError>
    where
        L: FnOnce() -> F,
        F: Future<Output = std::io::Result<()>>,
    {
        let inner = &self.inner;
        // Detached (now or before): the write goes to the peer only.
        let detached = inner.is_detached()
            || match local().await {
                Ok(()) => {
                    Counters::add(&inner.counters.disk_written, len);
                    false
                }
                Err(error) => {
                    warn!(volume = %inner.config.name, %error, offset, len, "local write failed");
                    inner.emit(VolumeEvent::IoError);
                    if !detach::detach(inner, &error).await {
                        // The block may now differ from the peer's: a resync repairs it.
                        self.mark_out_of_sync(offset, len).await;
                        return Err(error.into());
                    }
                    true
                }
            };
        if detached {
            // Not on our disk: the next start resyncs it from the peer.
            self.mark(offset, len).await;
        }
        let delivery = {
            let gate = inner.gate.read().await;
            let queued = match gate.as_ref() {
                Some(tx) => {
                    let (done, rx) = oneshot::channel();
                    tx.send(request(done)).await.ok().map(|()| rx)
                }
                None => None,
            };
            if queued.is_none() {
                if detached {
                    // No copy here and no peer: the write is nowhere.
                    return Err(NbdError::Io);
                }
                // Under the gate: a session attaching after this sees the bit.
                self.post_out_of_sync(offset, len);
            }
            queued
        };
        // Our place in the stream is taken: overlapping writes may go.
        drop(order);
        if let Some(rx) = delivery
            && rx.await != Ok(Delivery::Done)
        {
            if inner.cancel.is_cancelled() {
                return Err(NbdError::Shutdown);
            }
            if detached {
                return Err(NbdError::Io);
            }
            self.mark_out_of_sync(offset, len).await;
        }
        // A volume torn down meanwhile (a crash, as far as the client can tell) acks nothing.
        if inner.cancel.is_cancelled() {
            return Err(NbdError::Shutdown);
        }
        Counters::add(&inner.counters.writes_acked, 1);
        Ok(())
    }

    /// A write-zeroes or a trim, replicated like a write in pieces of [`ZEROES_CHUNK`].
    async fn zero(
        &self,
        zeroing: Zeroing,
        offset: u64,
        len: u64,
        fua: bool,
    ) -> Result<(), NbdError> {
        let mut done = 0;
        while done < len {
            let (at, n) = (offset + done, (len - done).min(ZEROES_CHUNK));
            let disk = self.inner.disk.clone();
            self.replicated(
                at,
                n,
                move || async move { disk.zero(zeroing, at, n, fua).await },
                move |done| Request::WriteZeroes {
                    offset: at,
                    len: n,
                    zeroing,
                    fua,
                    done,
                },
            )
            .await?;
            done += n;
        }
        self.unit_access(fua).await
    }

    /// A write the peer did not get.
    async fn mark_out_of_sync(&self, offset: u64, len: u64) {
        Counters::add(&self.inner.counters.writes_out_of_sync, 1);
        self.mark(offset, len).await;
    }

    /// [`mark_out_of_sync`](Self::mark_out_of_sync) without waiting for the metadata thread: a
    /// round trip there costs a peer-absent 4 KiB write a third of its latency. Nothing is
    /// lost by not waiting. The write is in the activity log until its `end_write`, which the
    /// thread runs after this job, so a crash before the bitmap is persisted still resyncs the
    /// block. A session attaching later reads the bitmap with a command, which the thread runs
    /// after this job (see [`super::meta_thread`]).
    fn post_out_of_sync(&self, offset: u64, len: u64) {
        let inner = &self.inner;
        Counters::add(&inner.counters.writes_out_of_sync, 1);
        let name = inner.config.name.clone();
        inner.meta.post_later(move |m| {
            if let Err(error) = m.mark_out_of_sync(offset, len) {
                warn!(volume = %name, %error, "cannot mark out of sync");
            }
        });
    }

    async fn mark(&self, offset: u64, len: u64) {
        let inner = &self.inner;
        if let Err(error) = inner
            .meta
            .try_call(move |m| m.mark_out_of_sync(offset, len))
            .await
        {
            warn!(volume = %inner.config.name, %error, "cannot mark out of sync");
        }
    }
}

impl Export for VolumeExport {
    fn size(&self) -> u64 {
        self.inner.config.backing.size
    }

    fn flags(&self) -> ExportFlags {
        ExportFlags {
            read_only: false,
            can_flush: true,
            can_fua: true,
            // Not on a block device: there a punch is a zero-out, which many devices do by
            // writing zeroes, so `mkfs` would write the whole device on both nodes.
            can_trim: self.inner.config.backing.kind != BackingKind::BlockDevice,
            can_write_zeroes: true,
            // One local file and one ordered stream to the peer: a flush on any connection
            // covers what every connection had acknowledged.
            can_multi_conn: true,
            rotational: false,
        }
    }

    async fn read(&self, offset: u64, len: usize) -> Result<Bytes, NbdError> {
        let inner = &self.inner;
        if !inner.is_detached() {
            match inner.disk.read(offset, len).await {
                Ok(data) => {
                    Counters::add(&inner.counters.disk_read, len as u64);
                    return Ok(data);
                }
                Err(error) => {
                    warn!(volume = %inner.config.name, %error, offset, len, "local read failed");
                    inner.emit(VolumeEvent::IoError);
                    if !detach::detach(inner, &error).await {
                        return Err(NbdError::from(error));
                    }
                    // Rewritten from the peer on the next start (a rewrite often heals a bad
                    // sector).
                    self.mark(offset, len as u64).await;
                }
            }
        }
        detach::read_from_peer(inner, offset, len).await
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), NbdError> {
        let len = data.len() as u64;
        let disk = self.inner.disk.clone();
        let local_data = data.clone();
        self.replicated(
            offset,
            len,
            move || async move { disk.write(offset, local_data, fua).await },
            move |done| Request::Write {
                offset,
                data,
                fua,
                done,
            },
        )
        .await?;
        self.unit_access(fua).await
    }

    async fn flush(&self) -> Result<(), NbdError> {
        self.flush_both(LostWrites::Report).await
    }

    /// Punched out on both nodes (or zeroes written where a backing cannot punch), so the
    /// copies stay byte-identical and both free the space, as DRBD passes discards down.
    async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), NbdError> {
        self.zero(Zeroing::Hole, offset, len, fua).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<(), NbdError> {
        self.zero(Zeroing::Allocated, offset, len, fua).await
    }
}

/// Whether a flush reports (and so clears) a write the peer lost after it was acknowledged
/// while detached (see `Inner::lost_acked_write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LostWrites {
    /// A client's FLUSH, or a FUA write's: the client hears of it.
    Report,
    /// The activity log's flush for room: left for the client's next one.
    Keep,
}

impl VolumeExport {
    /// Makes a FUA write durable before it is acknowledged. Attached, the local FUA write is;
    /// detached, the peer's copy is the only one, and protocols A and B acknowledge it before
    /// the peer's disk has it: a flush of the peer then makes it durable, or fails if the peer
    /// failed it (or another write since the last flush).
    async fn unit_access(&self, fua: bool) -> Result<(), NbdError> {
        if fua && self.inner.is_detached() && self.inner.config.protocol != Protocol::C {
            return self.flush_both(LostWrites::Report).await;
        }
        Ok(())
    }

    /// A client's FLUSH, or one the activity log needs: every write acknowledged before it
    /// reaches both disks, or is marked out of sync where the peer's copy cannot be flushed.
    /// Numbered in the activity log, whose extents it covers may then leave it.
    async fn flush_both(&self, lost: LostWrites) -> Result<(), NbdError> {
        if self.inner.cancel.is_cancelled() {
            return Err(NbdError::Shutdown);
        }
        let inner = &self.inner;
        // After the ends of the writes acknowledged so far, which were posted before it.
        let flush = inner
            .meta
            .call(|m| m.begin_flush())
            .await
            .map_err(|_| NbdError::Shutdown)?;
        // Both copies at once: the peer's flush waits for its applier to catch up, ours for the
        // page cache to reach the disk, and neither needs the other first.
        let local = async {
            if inner.is_detached() {
                return Ok(());
            }
            inner.disk.sync().await
        };
        let peer = async {
            let tx = inner.gate.read().await.clone();
            match tx {
                Some(tx) => {
                    let (done, rx) = oneshot::channel();
                    tx.send(Request::Flush { done }).await.is_ok() && rx.await == Ok(Delivery::Done)
                }
                None => false,
            }
        };
        let (local, flushed) = tokio::join!(local, peer);
        if let Err(error) = local {
            warn!(volume = %inner.config.name, %error, "local flush failed");
            inner.emit(VolumeEvent::IoError);
            // Any write here since the last good flush may be lost, and the kernel says so only
            // once: every extent such a write can be in is marked before any leaves the log.
            // Detaching marks them (`distrust_and_tell`); a disk kept needs it here.
            if !detach::detach(inner, &error).await {
                let marked = inner.meta.try_call(|m| m.mark_log_out_of_sync()).await;
                if let Err(mark_error) = marked {
                    warn!(volume = %inner.config.name, error = %mark_error, "cannot mark the activity log out of sync");
                }
                return Err(error.into());
            }
        }
        // Attached, a lost link is fine: the writes it did not confirm are marked out of sync.
        // Detached, the peer holds the only copy.
        if inner.is_detached() && !flushed {
            return Err(NbdError::Io);
        }
        // Reported once, as a disk reports a write its cache lost at the next flush.
        if lost == LostWrites::Report && inner.lost_acked_write.swap(false, Ordering::AcqRel) {
            return Err(NbdError::Io);
        }
        if self.inner.cancel.is_cancelled() {
            return Err(NbdError::Shutdown);
        }
        // A peer flush that failed left its writes marked out of sync (the session marks them
        // before it drops the flush), so they are covered all the same.
        inner.meta.post(move |m| m.end_flush(flush));
        Ok(())
    }
}
