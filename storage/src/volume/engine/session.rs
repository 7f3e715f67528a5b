//! A connected session, after the handshake: one task that owns both halves of the socket and
//! multiplexes the primary's requests, the peer's messages, the applier's completions, pings
//! and the resync, so that nothing here needs a lock.
//!
//! Liveness: each side pings when it has heard nothing for `ping_interval`; whenever an answer
//! is owed to us (a ping, a write's ack, a flush, resync data) and nothing has arrived for
//! `timeout`, the peer is declared lost and the session ends (the caller marks what was not
//! confirmed out of sync).
//!
//! Besides writes, the session carries the online verify's requests (see [`super::verify`]),
//! a detached node's reads (see [`super::detach`]) and, with `checksum_resync`, the
//! SyncTarget's checksums: it asks per 4 KiB block, and the source answers `ChecksumMatch`
//! (no data) or the block's data.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::applier::{self, Applied, Apply};
use super::counting::Counted;
use super::decide::Plan;
use super::disk::{Zeroing, digest};
use super::handshake::Established;
use super::inner::{Admin, Inner, ResyncState, from_wire_role, to_wire_role};
use super::link::{Delivery, Request};
use super::resync::TargetResync;
use super::status::{ConnState, Counters, VolumeEvent};
use crate::volume::config::BLOCK_SIZE;
use crate::volume::meta::{self, GenerationIds};
use crate::volume::peer::{
    AckKind, Digest, DisconnectReason, DiskState, MAX_DATA, Message, MessageReader, MessageWriter,
    Protocol, WriteFlags,
};

pub(crate) type Reader = MessageReader<Counted<OwnedReadHalf>>;
pub(crate) type Writer = MessageWriter<Counted<OwnedWriteHalf>>;

/// Stop taking requests while this much is queued for the socket (protocol A's back-pressure).
const HIGH_WATER: usize = 8 << 20;

/// Stop reading the peer while this much is queued for it. Past [`HIGH_WATER`] the queue
/// grows only with answers to the peer (resync data, reads for a diskless peer, acks), so a
/// peer that kept asking and never read would otherwise make it grow without bound. Only one
/// node of a pair sends large answers (the SyncSource, or the node whose disk serves a
/// diskless primary), so the two never both stop reading and wait on each other. While it does
/// not read, the peer taking our bytes counts as hearing from it.
const READ_GATE: usize = 4 * HIGH_WATER;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The peer stopped answering, or the socket failed.
    Lost,
    /// The peer closed the connection (or said it would).
    Closed,
    /// `disconnect` was asked: go StandAlone.
    Admin,
    /// The volume is stopping.
    Shutdown,
    /// The peer broke the protocol.
    Protocol,
}

/// A write sent and not yet acknowledged as far as the protocol needs.
#[derive(Debug)]
struct Pending {
    offset: u64,
    len: u64,
    done: Option<oneshot::Sender<Delivery>>,
    /// When it was sent: a write the peer does not acknowledge in [`STUCK_AFTER`] timeouts
    /// ends the link, however alive the peer otherwise looks.
    sent: Instant,
}

/// Writes the peer may have acknowledged without a flush before the session asks for one.
const MAX_UNFLUSHED: usize = 4096;

/// Timeouts a single replicated write may wait for its acknowledgement: DRBD's `ko-count`
/// default, 7 (42 s with the default `timeout` of 6 s).
const STUCK_AFTER: u32 = 7;

/// The session's state.
struct Session<'a> {
    inner: &'a Arc<Inner>,
    protocol: Protocol,
    seq: u64,
    pending: BTreeMap<u64, Pending>,
    /// Writes acknowledged to our client (the peer has them, or will: protocol A) that no flush
    /// of the peer has covered yet, by sequence: they may be only in its page cache, or its
    /// applier's queue. A flush acked clears those before it; the link lost, they are marked out
    /// of sync, as DRBD marks the requests its transfer log holds until their barrier is acked.
    unflushed: BTreeMap<u64, (u64, u64)>,
    /// The flush of our own in flight, if any (see [`Session::barrier`]).
    own_flush: Option<u64>,
    flushes: HashMap<u64, oneshot::Sender<Delivery>>,
    /// Marks of writes the peer failed, posted to the metadata thread and not yet run there
    /// (see [`Session::peer_failed`]).
    failed_marks: Arc<AtomicUsize>,
    ping_out: bool,
    last_rx: Instant,
    /// Since when an answer is owed to us with none received.
    awaiting: Option<Instant>,
    apply: mpsc::Sender<Apply>,
    target: Option<TargetResync>,
    /// SyncTarget: the ids to adopt at the end.
    source_ids: Option<GenerationIds>,
    /// SyncSource: waiting for the target to report UpToDate.
    source: bool,
    /// SyncTarget: ask for checksums first (`checksum_resync`).
    checksum: bool,
    /// Our online verify's requests awaiting the peer's result, by range.
    verifies: HashMap<(u64, u32), oneshot::Sender<bool>>,
    /// Our reads from the peer's copy, by id: the length asked and the waiter.
    reads: HashMap<u64, (u32, oneshot::Sender<Option<bytes::Bytes>>)>,
    next_read: u64,
    /// Octets sent on the link at the last tick (the volume's `net_sent` counter).
    sent_at_tick: u64,
}

/// Runs the session until it ends.
pub(crate) async fn run(
    inner: &Arc<Inner>,
    mut reader: Reader,
    mut writer: Writer,
    est: Established,
    mut requests: mpsc::Receiver<Request>,
    mut admin: watch::Receiver<Admin>,
) -> End {
    let config = &inner.config;
    let (apply, mut applied) = match applier::spawn(Arc::clone(inner)) {
        Ok(applier) => applier,
        Err(error) => {
            warn!(volume = %config.name, %error, "cannot start the applier thread");
            return End::Lost;
        }
    };
    let now = Instant::now();
    let mut s = Session {
        inner,
        protocol: est.peer.protocol,
        seq: 0,
        pending: BTreeMap::new(),
        unflushed: BTreeMap::new(),
        own_flush: None,
        flushes: HashMap::new(),
        failed_marks: Arc::default(),
        ping_out: false,
        last_rx: now,
        awaiting: None,
        apply,
        target: None,
        source_ids: est.source_ids,
        source: false,
        checksum: config.checksum_resync,
        verifies: HashMap::new(),
        reads: HashMap::new(),
        next_read: 0,
        sent_at_tick: 0,
    };
    s.start(&est, now).await;
    let renegotiate = admin.borrow_and_update().renegotiate;
    let tick = (config.timeout.min(config.ping_interval) / 4).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = 'session: loop {
        if let Err(end) = s.pump(&mut writer).await {
            break end;
        }
        let paced = s.target.as_ref().and_then(TargetResync::paced_until);
        tokio::select! {
            biased;
            () = inner.cancel.cancelled() => {
                let _ = writer.feed(&Message::Disconnect {
                    reason: DisconnectReason::Shutdown,
                    detail: String::new(),
                });
                let _ = tokio::time::timeout(Duration::from_millis(100), writer.flush()).await;
                break End::Shutdown;
            }
            changed = admin.changed() => {
                let now = *admin.borrow_and_update();
                if changed.is_err() || now.standalone {
                    let _ = writer.feed(&Message::Disconnect {
                        reason: DisconnectReason::Admin,
                        detail: String::new(),
                    });
                    let _ = tokio::time::timeout(config.timeout, writer.flush()).await;
                    break End::Admin;
                }
                if now.renegotiate != renegotiate {
                    // Both nodes connect again at once; the new handshake decides the resync.
                    let _ = writer.feed(&Message::Disconnect {
                        reason: DisconnectReason::Admin,
                        detail: "a new handshake".to_owned(),
                    });
                    let _ = tokio::time::timeout(config.timeout, writer.flush()).await;
                    info!(volume = %config.name, "link ended for a new handshake");
                    break End::Closed;
                }
            }
            flushed = writer.flush(), if writer.queued() > 0 => {
                if let Err(error) = flushed {
                    info!(volume = %config.name, %error, "replication link failed");
                    break End::Lost;
                }
            }
            msg = reader.next(), if writer.queued() < READ_GATE => match msg {
                Ok(Some(msg)) => {
                    s.heard();
                    if let Err(end) = s.on_message(msg, &mut writer).await {
                        break end;
                    }
                }
                Ok(None) => break End::Closed,
                Err(error) => {
                    info!(volume = %config.name, %error, "replication link failed");
                    break End::Lost;
                }
            },
            Some(done) = applied.recv() => {
                // Every completion ready goes out in one flush: acks batch when the applier is
                // ahead of the socket.
                let mut next = Some(done);
                while let Some(done) = next {
                    if let Err(end) = s.on_applied(done, &mut writer).await {
                        break 'session end;
                    }
                    next = applied.try_recv().ok();
                }
            }
            Some(request) = requests.recv(), if writer.queued() < HIGH_WATER => {
                // Likewise the writes queued meanwhile: one flush, one system call for many.
                let mut next = Some(request);
                while let Some(request) = next {
                    if let Err(end) = s.on_request(request, &mut writer) {
                        break 'session end;
                    }
                    next = if writer.queued() < HIGH_WATER {
                        requests.try_recv().ok()
                    } else {
                        None
                    };
                }
            }
            _ = ticker.tick() => {
                if let Err(end) = s.on_tick(&mut writer) {
                    break end;
                }
            }
            () = sleep_until(paced), if paced.is_some() => {}
        }
    };
    // Dropping the session's maps drops every waiter: those writes count as lost. Those the
    // peer acked but did not flush may be lost on its side: resynced at the next connection.
    s.mark_unflushed();
    drop(s);
    // The applier applies what the peer sent before the end (it may have been acked already,
    // protocol B) before the session returns: a next session's applier must not race it.
    while let Some(done) = applied.recv().await {
        if let Applied::Write {
            offset,
            len,
            ok: false,
            ..
        } = done
        {
            inner.meta.post(move |m| {
                let _ = m.mark_out_of_sync(offset, len);
            });
        }
    }
    end
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

impl Session<'_> {
    async fn start(&mut self, est: &Established, now: Instant) {
        let inner = self.inner;
        let conn = match est.plan {
            Plan::Source { .. } => ConnState::SyncSource,
            Plan::Target { .. } => ConnState::SyncTarget,
            _ => ConnState::Connected,
        };
        {
            let mut c = inner.control();
            c.peer_role = Some(from_wire_role(est.peer.role));
            c.peer_disk = Some(if conn == ConnState::SyncSource {
                DiskState::Inconsistent
            } else {
                est.peer.disk
            });
        }
        inner.set_conn(conn);
        Counters::add(&inner.counters.connections, 1);
        inner.emit(VolumeEvent::Connected);
        info!(volume = %inner.config.name, peer = %est.peer.node, plan = ?est.plan, "connected");
        let resync_total = inner.meta.out_of_sync_bytes();
        match est.plan {
            Plan::Source { .. } => {
                self.source = true;
                self.begin_progress(resync_total, now);
            }
            Plan::Target { .. } => {
                let ranges = inner
                    .meta
                    .call(|m| m.bitmap().dirty_ranges().collect::<Vec<_>>())
                    .await
                    .unwrap_or_default();
                let target = TargetResync::new(ranges, inner.config.resync_rate, now);
                self.begin_progress(target.total, now);
                self.target = Some(target);
            }
            _ => {}
        }
    }

    fn begin_progress(&self, total: u64, now: Instant) {
        info!(volume = %self.inner.config.name, total, "resync started");
        self.inner.control().resync = Some(ResyncState {
            total,
            done: 0,
            started: now,
        });
        self.inner.emit(VolumeEvent::ResyncStarted);
    }

    /// `len` bytes of data resynced (sent or received).
    fn progress(&self, len: u64) {
        Counters::add(&self.inner.counters.resynced, len);
        self.advance(len);
    }

    /// `len` bytes found equal by their checksums: no data crossed.
    fn skipped(&self, len: u64) {
        Counters::add(&self.inner.counters.resync_skipped, len);
        self.advance(len);
    }

    fn advance(&self, len: u64) {
        if let Some(r) = self.inner.control().resync.as_mut() {
            r.done += len;
        }
    }

    /// Something arrived: whatever was owed, the peer is alive.
    fn heard(&mut self) {
        let now = Instant::now();
        self.last_rx = now;
        self.awaiting = self.owed().then_some(now);
    }

    fn owed(&self) -> bool {
        self.ping_out
            || !self.pending.is_empty()
            || !self.flushes.is_empty()
            || !self.verifies.is_empty()
            || !self.reads.is_empty()
            || self.target.as_ref().is_some_and(|t| t.in_flight() > 0)
    }

    fn expect_answer(&mut self) {
        self.awaiting.get_or_insert_with(Instant::now);
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn feed(writer: &mut Writer, msg: &Message) -> Result<(), End> {
        writer.feed(msg).map_err(|error| {
            warn!(%error, msg = msg.name(), "cannot encode");
            End::Protocol
        })
    }

    fn on_request(&mut self, request: Request, writer: &mut Writer) -> Result<(), End> {
        match request {
            Request::Write {
                offset,
                data,
                fua,
                done,
            } => {
                let mut done = Some(done);
                let mut at = 0;
                while at < data.len() {
                    let n = (data.len() - at).min(MAX_DATA);
                    let seq = self.next_seq();
                    let chunk = data.slice(at..at + n);
                    Self::feed(
                        writer,
                        &Message::Write {
                            seq,
                            offset: offset + at as u64,
                            flags: WriteFlags {
                                fua,
                                flush_before: false,
                            },
                            data: chunk,
                        },
                    )?;
                    at += n;
                    let last = at >= data.len();
                    self.sent_write(
                        seq,
                        offset + (at - n) as u64,
                        n as u64,
                        last.then(|| done.take()).flatten(),
                    );
                }
                if let Some(done) = done {
                    // An empty write: nothing to replicate.
                    let _ = done.send(Delivery::Done);
                }
            }
            Request::WriteZeroes {
                offset,
                len,
                zeroing,
                fua,
                done,
            } => {
                let seq = self.next_seq();
                let flags = WriteFlags {
                    fua,
                    flush_before: false,
                };
                let message = match zeroing {
                    Zeroing::Allocated => Message::WriteZeroes {
                        seq,
                        offset,
                        len,
                        flags,
                    },
                    Zeroing::Hole => Message::Trim {
                        seq,
                        offset,
                        len,
                        flags,
                    },
                };
                Self::feed(writer, &message)?;
                self.sent_write(seq, offset, len, Some(done));
            }
            Request::Flush { done } => {
                let seq = self.next_seq();
                Self::feed(writer, &Message::Flush { seq })?;
                self.flushes.insert(seq, done);
                self.expect_answer();
            }
            Request::State { role, disk } => {
                Self::feed(writer, &Message::StateChange { role, disk })?;
            }
            Request::Verify {
                offset,
                len,
                digest,
                done,
            } => {
                Self::feed(
                    writer,
                    &Message::VerifyRequest {
                        offset,
                        len,
                        digest,
                    },
                )?;
                self.verifies.insert((offset, len), done);
                self.expect_answer();
            }
            Request::Read { offset, len, done } => {
                self.next_read += 1;
                let id = self.next_read;
                Self::feed(writer, &Message::ReadRequest { id, offset, len })?;
                self.reads.insert(id, (len, done));
                self.expect_answer();
            }
        }
        Ok(())
    }

    /// Records a write put on the wire: protocol A acknowledges it now (it is queued for the
    /// socket), B and C when the peer's ack arrives.
    fn sent_write(
        &mut self,
        seq: u64,
        offset: u64,
        len: u64,
        done: Option<oneshot::Sender<Delivery>>,
    ) {
        if self.protocol == Protocol::A {
            if let Some(done) = done {
                let _ = done.send(Delivery::Done);
            }
            self.acked_unflushed(seq, offset, len);
            return;
        }
        self.pending.insert(
            seq,
            Pending {
                offset,
                len,
                done,
                sent: Instant::now(),
            },
        );
        self.expect_answer();
    }

    async fn on_message(&mut self, msg: Message, writer: &mut Writer) -> Result<(), End> {
        let inner = self.inner;
        match msg {
            Message::Ping => Self::feed(writer, &Message::PingAck)?,
            Message::PingAck => self.ping_out = false,
            Message::Write {
                seq,
                offset,
                flags,
                data,
            } => {
                let apply = Apply::Write {
                    seq,
                    offset,
                    data,
                    flags,
                };
                self.on_write(writer, "Write", seq, apply).await?;
            }
            Message::WriteZeroes {
                seq,
                offset,
                len,
                flags,
            } => {
                let apply = Apply::Zeroes {
                    seq,
                    offset,
                    len,
                    zeroing: Zeroing::Allocated,
                    flags,
                };
                self.on_write(writer, "WriteZeroes", seq, apply).await?;
            }
            Message::Trim {
                seq,
                offset,
                len,
                flags,
            } => {
                let apply = Apply::Zeroes {
                    seq,
                    offset,
                    len,
                    zeroing: Zeroing::Hole,
                    flags,
                };
                self.on_write(writer, "Trim", seq, apply).await?;
            }
            Message::Flush { seq } => self.queue_apply(Apply::Flush { seq }).await?,
            Message::Ack { seq, kind } => self.on_ack(seq, kind)?,
            Message::FlushAck { seq } => {
                // Only for a flush sent: trimming `unflushed` at any other `seq` would forget
                // writes the peer has not made durable, and no resync would cover them.
                let Some(done) = self.flushes.remove(&seq) else {
                    return Err(self.unexpected("FlushAck"));
                };
                self.complete_flush(done);
                // The peer flushed after applying every write sent before this flush.
                self.unflushed = self.unflushed.split_off(&seq);
                if self.own_flush == Some(seq) {
                    self.own_flush = None;
                }
            }
            Message::StateChange { role, disk } => {
                {
                    let mut c = inner.control();
                    c.peer_role = Some(from_wire_role(role));
                    c.peer_disk = Some(disk);
                }
                if role == crate::volume::peer::Role::Primary && inner.is_primary() {
                    warn!(volume = %inner.config.name, "both nodes primary: disconnecting");
                    return Err(End::Protocol);
                }
                if self.source && disk == DiskState::UpToDate {
                    self.finish_source().await;
                }
            }
            Message::ResyncRequest { offset, len } => {
                // Only our SyncTarget asks: serving one marks the range in sync here.
                if !self.source {
                    return Err(self.unexpected("ResyncRequest"));
                }
                self.serve_resync(offset, len, writer).await?;
            }
            Message::ResyncData { offset, data } => {
                let asked =
                    (self.target.as_mut()).is_some_and(|t| t.claim(offset, data.len() as u64));
                if !asked {
                    return Err(self.unexpected("ResyncData"));
                }
                self.queue_apply(Apply::Resync { offset, data }).await?;
            }
            Message::ResyncFailed { offset, len } => {
                let len = u64::from(len);
                let asked = (self.target.as_mut()).is_some_and(|t| t.claim(offset, len));
                if !asked {
                    return Err(self.unexpected("ResyncFailed"));
                }
                if let Some(t) = self.target.as_mut() {
                    t.missed(len);
                }
                warn!(volume = %inner.config.name, offset, len, "the peer could not read a range for the resync: left out of sync");
            }
            Message::ResyncIncomplete { failed } => {
                if !self.source {
                    return Err(self.unexpected("ResyncIncomplete"));
                }
                warn!(volume = %inner.config.name, failed, "resync ended with blocks that could not be copied: the peer stays Inconsistent");
                self.source = false;
                self.checkpoint_resync().await;
                self.resync_done(Some(failed));
            }
            Message::VerifyRequest {
                offset,
                len,
                digest,
            } => {
                // In order with the writes received before it.
                self.queue_apply(Apply::Verify {
                    offset,
                    len,
                    digest,
                })
                .await?;
            }
            Message::VerifyResult { offset, len, equal } => {
                let Some(done) = self.verifies.remove(&(offset, len)) else {
                    return Err(self.unexpected("VerifyResult"));
                };
                let _ = done.send(equal);
            }
            Message::ChecksumRequest {
                offset,
                len,
                digest,
            } => {
                if !self.source {
                    return Err(self.unexpected("ChecksumRequest"));
                }
                self.serve_checksum(offset, len, digest, writer).await?;
            }
            Message::ChecksumMatch { offset, len } => {
                // Only checksums were asked for with `checksum_resync`; without it every range
                // was asked for as data, and a match would skip sending it.
                let Some(target) = self.target.as_mut().filter(|_| self.checksum) else {
                    return Err(self.unexpected("ChecksumMatch"));
                };
                let len = u64::from(len);
                // An answer to one of our ChecksumRequests: one block at most, within a range
                // asked and not answered yet. Anything else would mark unsent blocks in sync
                // and end the resync early.
                if len > BLOCK_SIZE || !target.claim(offset, len) {
                    return Err(self.unexpected("ChecksumMatch"));
                }
                target.received(len);
                self.inner.meta.post(move |m| m.mark_in_sync(offset, len));
                self.skipped(len);
            }
            Message::ReadRequest { id, offset, len } => {
                self.queue_apply(Apply::Read { id, offset, len }).await?;
            }
            Message::ReadData { id, data } => match self.reads.remove(&id) {
                Some((len, done)) if data.len() == len as usize => {
                    let _ = done.send(Some(data));
                }
                _ => return Err(self.unexpected("ReadData")),
            },
            Message::ReadFailed { id } => {
                let Some((_, done)) = self.reads.remove(&id) else {
                    return Err(self.unexpected("ReadFailed"));
                };
                let _ = done.send(None);
            }
            Message::Disconnect { reason, detail } => {
                info!(volume = %inner.config.name, ?reason, %detail, "peer disconnected");
                return Err(End::Closed);
            }
            Message::SplitBrain { resolution } => {
                warn!(volume = %inner.config.name, ?resolution, "peer reports a split brain");
            }
            other @ (Message::Hello(_) | Message::Bitmap { .. }) => {
                return Err(self.unexpected(other.name()));
            }
        }
        Ok(())
    }

    fn unexpected(&self, what: &'static str) -> End {
        warn!(volume = %self.inner.config.name, what, "unexpected message from the peer");
        End::Protocol
    }

    /// The primary's write, write-zeroes or trim (`what`, for the log): applied in order,
    /// acked on receipt with protocol B (and once applied, by the applier, with C).
    async fn on_write(
        &mut self,
        writer: &mut Writer,
        what: &'static str,
        seq: u64,
        apply: Apply,
    ) -> Result<(), End> {
        self.check_secondary(what)?;
        // Before a protocol B ack: a request past the end is never acknowledged.
        self.check_in_volume(&apply)?;
        if self.protocol == Protocol::B {
            Self::feed(
                writer,
                &Message::Ack {
                    seq,
                    kind: AckKind::Received,
                },
            )?;
        }
        self.queue_apply(apply).await
    }

    /// A secondary applies the peer's writes; a primary must never receive one.
    fn check_secondary(&self, what: &'static str) -> Result<(), End> {
        if self.inner.is_primary() {
            return Err(self.unexpected(what));
        }
        Ok(())
    }

    /// A request that reaches past the volume's end is the peer's error (a sound peer never
    /// sends one: the handshake made both sizes equal), which ends the connection.
    fn check_in_volume(&self, apply: &Apply) -> Result<(), End> {
        if let Some((offset, len)) = apply.range()
            && offset
                .checked_add(len)
                .is_none_or(|end| end > self.inner.config.backing.size)
        {
            return Err(self.unexpected("a request past the volume's end"));
        }
        Ok(())
    }

    /// Hands `apply` to the applier, once it is known to lie within the volume.
    async fn queue_apply(&mut self, apply: Apply) -> Result<(), End> {
        self.check_in_volume(&apply)?;
        // Waits while the applier is behind: the socket then fills and the peer slows down.
        self.apply.send(apply).await.map_err(|_| End::Lost)
    }

    /// Records a write acknowledged to our client that the peer has not flushed yet.
    fn acked_unflushed(&mut self, seq: u64, offset: u64, len: u64) {
        self.unflushed.insert(seq, (offset, len));
    }

    /// Past [`MAX_UNFLUSHED`] writes the peer has not flushed, or on each tick (`now`) with any,
    /// asks it for a flush of our own (DRBD's barrier), one at a time: a client that never
    /// flushes neither grows `unflushed` without bound nor leaves more than a tick's writes to
    /// resync after the link ends.
    fn barrier(&mut self, writer: &mut Writer, now: bool) -> Result<(), End> {
        let due = self.unflushed.len() >= MAX_UNFLUSHED || now && !self.unflushed.is_empty();
        if !due || self.own_flush.is_some() {
            return Ok(());
        }
        let seq = self.next_seq();
        Self::feed(writer, &Message::Flush { seq })?;
        // No one waits for it; in `flushes` all the same, so that the peer owes its answer.
        let (done, _) = oneshot::channel();
        self.flushes.insert(seq, done);
        self.own_flush = Some(seq);
        self.expect_answer();
        Ok(())
    }

    /// Marks out of sync every write the peer acked without a flush since (see `unflushed`).
    fn mark_unflushed(&mut self) {
        let unflushed = std::mem::take(&mut self.unflushed);
        if unflushed.is_empty() {
            return;
        }
        self.inner.meta.post(move |m| {
            for (offset, len) in unflushed.into_values() {
                let _ = m.mark_out_of_sync(offset, len);
            }
        });
    }

    fn on_ack(&mut self, seq: u64, kind: AckKind) -> Result<(), End> {
        // With protocol C a write is done once on the peer's disk: an ack of its mere receipt
        // must not complete it.
        if kind == AckKind::Received && self.protocol == Protocol::C {
            return Err(self.unexpected("Ack of receipt with protocol C"));
        }
        let Some(pending) = self.pending.remove(&seq) else {
            // Already acknowledged to our client (protocol A on sending, B on receipt): a
            // failure the peer's disk reports later still leaves its copy short of the write.
            if kind == AckKind::Failed
                && let Some((offset, len)) = self.unflushed.remove(&seq)
            {
                Counters::add(&self.inner.counters.writes_out_of_sync, 1);
                self.peer_failed(offset, len);
                // Detached, the peer's copy was the only one. Set before the answer to any
                // flush sent after the write, which the peer sends after this ack.
                if self.inner.is_detached() {
                    warn!(volume = %self.inner.config.name, offset, len, "a write acknowledged while detached is lost: the peer failed it");
                    self.inner.lost_acked_write.store(true, Ordering::Release);
                }
            }
            return Ok(());
        };
        let delivery = match kind {
            AckKind::Received | AckKind::Written => {
                self.acked_unflushed(seq, pending.offset, pending.len);
                Delivery::Done
            }
            AckKind::Failed => {
                self.peer_failed(pending.offset, pending.len);
                Delivery::Failed
            }
        };
        if let Some(done) = pending.done {
            let _ = done.send(delivery);
        }
        Ok(())
    }

    /// The peer could not write `[offset, offset + len)`: resynced at the next connection.
    fn peer_failed(&self, offset: u64, len: u64) {
        warn!(volume = %self.inner.config.name, offset, len, "peer failed a write: out of sync");
        let pending = Arc::clone(&self.failed_marks);
        pending.fetch_add(1, Ordering::Relaxed);
        // Published before the count drops: a flush answered then finds the block counted.
        let mark = (self.inner.meta).published(move |m| {
            let _ = m.mark_out_of_sync(offset, len);
        });
        self.inner.meta.post(move |m| {
            mark(m);
            pending.fetch_sub(1, Ordering::Release);
        });
    }

    /// Tells the waiter of a flush the peer acknowledged that it is done. While the mark of a
    /// write the peer failed is still queued for the metadata thread (protocol A and B learn of
    /// such a failure after their client had its write acked), the news goes through that thread
    /// behind it: a client whose flush returned then finds the write out of sync, and the mark
    /// persisted, even if the node stops right after.
    fn complete_flush(&self, done: oneshot::Sender<Delivery>) {
        if self.failed_marks.load(Ordering::Acquire) == 0 {
            let _ = done.send(Delivery::Done);
            return;
        }
        // A call, not a post: it also publishes the out-of-sync count before it answers.
        let inner = Arc::clone(self.inner);
        tokio::spawn(async move {
            let _ = inner.meta.call(|_| ()).await;
            let _ = done.send(Delivery::Done);
        });
    }

    async fn on_applied(&mut self, applied: Applied, writer: &mut Writer) -> Result<(), End> {
        match applied {
            Applied::Write {
                seq,
                offset,
                len,
                ok,
            } => {
                if !ok {
                    // The peer (primary) may have acked it already (protocol A/B): our bitmap
                    // remembers the block for the next resync.
                    self.inner.meta.post(move |m| {
                        let _ = m.mark_out_of_sync(offset, len);
                    });
                    // Spawned: it tells the peer through this session's own request queue.
                    // Tracked: `stop` waits for the disk state it records before it closes
                    // the metadata.
                    let inner = Arc::clone(self.inner);
                    (self.inner.tasks).spawn(async move {
                        super::detach::replicated_write_failed(&inner).await;
                    });
                }
                let kind = if ok {
                    AckKind::Written
                } else {
                    AckKind::Failed
                };
                if self.protocol == Protocol::C || !ok {
                    Self::feed(writer, &Message::Ack { seq, kind })?;
                }
                if !ok && let Some(t) = self.target.as_mut() {
                    // A SyncTarget's copy turns UpToDate when the last resync answer lands: a
                    // block it could not write would be called good with the rest. The
                    // resync ends incomplete instead; the block is marked for the next.
                    t.failed += len;
                    warn!(volume = %self.inner.config.name, offset, len, "a replicated write failed during the resync into this node");
                }
            }
            Applied::Flush { seq, ok } => {
                if !ok {
                    // Our disk cannot make the peer's writes durable: let it carry on alone.
                    return Err(End::Lost);
                }
                Self::feed(writer, &Message::FlushAck { seq })?;
            }
            Applied::Resync { offset, len, ok } => {
                // A block our disk failed stays out of sync, and the resync goes on without
                // it, as DRBD's `drbd_rs_failed_io`: ending the link would only bring the
                // same resync into the same block at the next connection.
                if ok {
                    self.inner.meta.post(move |m| m.mark_in_sync(offset, len));
                    self.progress(len);
                }
                if let Some(t) = self.target.as_mut() {
                    if ok {
                        t.received(len);
                    } else {
                        t.missed(len);
                    }
                }
            }
            Applied::Verify { offset, len, equal } => {
                Self::feed(writer, &Message::VerifyResult { offset, len, equal })?;
            }
            Applied::Digests {
                offset,
                len,
                digests,
            } => self.send_checksums(offset, len, digests, writer)?,
            Applied::Read { id, data } => {
                let msg = match data {
                    Some(data) => Message::ReadData { id, data },
                    None => Message::ReadFailed { id },
                };
                Self::feed(writer, &msg)?;
            }
        }
        Ok(())
    }

    /// SyncTarget with `checksum_resync`: one `ChecksumRequest` per 4 KiB block of a range
    /// whose digests the applier computed; the whole range's data when our read failed.
    fn send_checksums(
        &mut self,
        offset: u64,
        len: u32,
        digests: Option<Vec<Digest>>,
        writer: &mut Writer,
    ) -> Result<(), End> {
        let Some(digests) = digests else {
            return Self::feed(writer, &Message::ResyncRequest { offset, len });
        };
        let mut at = 0u64;
        for digest in digests {
            let n = (u64::from(len) - at).min(BLOCK_SIZE);
            Self::feed(
                writer,
                &Message::ChecksumRequest {
                    offset: offset + at,
                    // At most BLOCK_SIZE.
                    len: u32::try_from(n).unwrap_or(u32::MAX),
                    digest,
                },
            )?;
            at += n;
        }
        self.expect_answer();
        Ok(())
    }

    /// SyncTarget: sends as many requests as the window and the rate allow; finishes the resync
    /// once everything came back.
    async fn pump(&mut self, writer: &mut Writer) -> Result<(), End> {
        self.barrier(writer, false)?;
        let Some(target) = self.target.as_mut() else {
            return Ok(());
        };
        let now = Instant::now();
        let mut requests = Vec::new();
        while let Some(request) = target.next_request(now) {
            requests.push(request);
        }
        for &(offset, len) in &requests {
            if self.checksum {
                // Our digests first, read in order with the writes applied before.
                self.queue_apply(Apply::Digests { offset, len }).await?;
            } else {
                Self::feed(writer, &Message::ResyncRequest { offset, len })?;
            }
        }
        if !requests.is_empty() {
            self.expect_answer();
        }
        if self.target.as_ref().is_some_and(TargetResync::finished) {
            let failed = self.target.take().map_or(0, |t| t.failed);
            if failed > 0 {
                self.end_incomplete(failed, writer).await?;
            } else {
                self.finish_target(writer).await?;
            }
        }
        Ok(())
    }

    async fn finish_target(&mut self, writer: &mut Writer) -> Result<(), End> {
        let inner = self.inner;
        // UpToDate only once the resynced data is durable.
        if let Err(error) = inner.disk.sync().await {
            warn!(volume = %inner.config.name, %error, "sync after resync failed");
            return Err(End::Lost);
        }
        let source_ids = self.source_ids.take();
        let primary = inner.is_primary();
        let result = inner
            .meta
            .try_call(move |m| {
                m.update(|s| {
                    if let Some(ids) = source_ids {
                        s.ids.finish_resync_as_target(&ids, primary);
                    }
                    s.disk = meta::DiskState::UpToDate;
                    s.peer_disk = Some(meta::DiskState::UpToDate);
                })?;
                m.checkpoint()
            })
            .await;
        if let Err(error) = result {
            warn!(volume = %inner.config.name, %error, "cannot record the end of the resync");
            return Err(End::Lost);
        }
        inner.control().disk = DiskState::UpToDate;
        Self::feed(
            writer,
            &Message::StateChange {
                role: to_wire_role(inner.control().role),
                disk: DiskState::UpToDate,
            },
        )?;
        self.resync_done(None);
        Ok(())
    }

    /// SyncTarget: every request was answered, but `failed` bytes could not be copied (the
    /// source could not read them, or our disk could not write them). As DRBD at a resync end
    /// with `rs_failed`, this node stays Inconsistent and connected, those blocks out of sync
    /// on both nodes until a later resync (after a reconnect) gets them; the source is told,
    /// so that it ends its side too.
    async fn end_incomplete(&mut self, failed: u64, writer: &mut Writer) -> Result<(), End> {
        warn!(volume = %self.inner.config.name, failed, "resync ended with blocks that could not be copied: Inconsistent until a later resync");
        Self::feed(writer, &Message::ResyncIncomplete { failed })?;
        self.checkpoint_resync().await;
        self.resync_done(Some(failed));
        Ok(())
    }

    /// At the end of an incomplete resync: waits for the bits marked in sync so far (posted to
    /// the metadata thread, not waited for) and persists them, so that the status read after
    /// the `ResyncIncomplete` event counts only the blocks left out of sync, and a restart
    /// does not copy again what was copied.
    async fn checkpoint_resync(&self) {
        let result = self.inner.meta.try_call(|m| m.checkpoint()).await;
        if let Err(error) = result {
            warn!(volume = %self.inner.config.name, %error, "cannot record the end of the resync");
        }
    }

    async fn finish_source(&mut self) {
        self.source = false;
        let result = self
            .inner
            .meta
            .try_call(|m| {
                m.update(|s| {
                    s.ids.finish_resync_as_source();
                    s.peer_disk = Some(meta::DiskState::UpToDate);
                })?;
                m.checkpoint()
            })
            .await;
        if let Err(error) = result {
            warn!(volume = %self.inner.config.name, %error, "cannot record the end of the resync");
        }
        self.resync_done(None);
    }

    /// The resync is over, with `failed` bytes that could not be copied if any.
    fn resync_done(&self, failed: Option<u64>) {
        let inner = self.inner;
        let done = inner.control().resync.take();
        if let Some(r) = done {
            info!(volume = %inner.config.name, bytes = r.done, secs = r.started.elapsed().as_secs_f64(), "resync finished");
        }
        Counters::add(&inner.counters.resyncs, 1);
        inner.set_conn(ConnState::Connected);
        inner.emit(match failed {
            None => VolumeEvent::ResyncDone,
            Some(bytes) => VolumeEvent::ResyncIncomplete(bytes),
        });
    }

    /// SyncSource: reads and sends a range in one step (see the write path's ordering note in
    /// [`super::export`]), then forgets its bits: the target keeps its own until applied.
    async fn serve_resync(
        &mut self,
        offset: u64,
        len: u32,
        writer: &mut Writer,
    ) -> Result<(), End> {
        if len as usize > MAX_DATA
            || offset.saturating_add(u64::from(len)) > self.inner.config.backing.size
        {
            return Err(self.unexpected("ResyncRequest out of range"));
        }
        if let Ok(data) = self.read(offset, len).await {
            return self.send_resync_data(offset, data, writer);
        }
        // Some block of the range is unreadable: block by block, each unreadable one gets
        // DRBD's negative reply. Those stay out of sync on both nodes; the rest of the resync
        // goes on.
        let mut at = 0;
        while at < len {
            let n = (len - at).min(BLOCK_SIZE as u32);
            let read = if n == len {
                Err(())
            } else {
                self.read(offset + u64::from(at), n).await
            };
            match read {
                Ok(data) => self.send_resync_data(offset + u64::from(at), data, writer)?,
                Err(()) => {
                    let failed = Message::ResyncFailed {
                        offset: offset + u64::from(at),
                        len: n,
                    };
                    Self::feed(writer, &failed)?;
                }
            }
            at += n;
        }
        Ok(())
    }

    /// SyncSource: a range read for the target, sent; its bits here are forgotten.
    fn send_resync_data(
        &mut self,
        offset: u64,
        data: bytes::Bytes,
        writer: &mut Writer,
    ) -> Result<(), End> {
        let len = data.len() as u64;
        Self::feed(writer, &Message::ResyncData { offset, data })?;
        self.inner.meta.post(move |m| m.mark_in_sync(offset, len));
        self.progress(len);
        Ok(())
    }

    /// SyncSource with a checksum-based target: answers `ChecksumMatch` when our copy of the
    /// range has the target's digest, else its data, read and sent in one step as in
    /// [`Self::serve_resync`].
    async fn serve_checksum(
        &mut self,
        offset: u64,
        len: u32,
        theirs: Digest,
        writer: &mut Writer,
    ) -> Result<(), End> {
        if offset.saturating_add(u64::from(len)) > self.inner.config.backing.size {
            return Err(self.unexpected("ChecksumRequest out of range"));
        }
        let Ok(data) = self.read(offset, len).await else {
            return Self::feed(writer, &Message::ResyncFailed { offset, len });
        };
        let equal = digest(&data) == theirs;
        let msg = if equal {
            Message::ChecksumMatch { offset, len }
        } else {
            Message::ResyncData { offset, data }
        };
        Self::feed(writer, &msg)?;
        let len = u64::from(len);
        self.inner.meta.post(move |m| m.mark_in_sync(offset, len));
        if equal {
            self.skipped(len);
        } else {
            self.progress(len);
        }
        Ok(())
    }

    async fn read(&self, offset: u64, len: u32) -> Result<bytes::Bytes, ()> {
        if offset.saturating_add(u64::from(len)) > self.inner.config.backing.size {
            return Err(());
        }
        match self.inner.disk.read(offset, len as usize).await {
            Ok(data) => {
                Counters::add(&self.inner.counters.disk_read, u64::from(len));
                Ok(data)
            }
            Err(error) => {
                warn!(volume = %self.inner.config.name, %error, "local read for the peer failed");
                self.inner.emit(VolumeEvent::IoError);
                Err(())
            }
        }
    }

    fn on_tick(&mut self, writer: &mut Writer) -> Result<(), End> {
        let config = &self.inner.config;
        let now = Instant::now();
        let sent = self.inner.counters.net_sent.load(Ordering::Relaxed);
        if writer.queued() >= READ_GATE && sent != self.sent_at_tick {
            // Not reading (see READ_GATE): the peer's answers wait unread, but it is alive
            // as long as it takes what we send.
            self.heard();
        }
        self.sent_at_tick = sent;
        self.barrier(writer, true)?;
        if !self.ping_out && now.duration_since(self.last_rx) >= config.ping_interval {
            Self::feed(writer, &Message::Ping)?;
            self.ping_out = true;
            self.expect_answer();
        }
        if !self.owed() {
            self.awaiting = None;
        } else if let Some(since) = self.awaiting
            && now.duration_since(since) > config.timeout
        {
            warn!(volume = %config.name, timeout = ?config.timeout, "peer did not answer: lost");
            return Err(End::Lost);
        }
        // A peer that answers pings but not a write (the oldest is first: sequence numbers grow).
        if let Some(oldest) = self.pending.values().next()
            && now.duration_since(oldest.sent) > config.timeout * STUCK_AFTER
        {
            warn!(volume = %config.name, timeout = ?config.timeout, offset = oldest.offset, "peer did not acknowledge a write: lost");
            return Err(End::Lost);
        }
        Ok(())
    }
}
