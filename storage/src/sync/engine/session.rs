//! One introduced connection to a peer, as a few tasks that end together:
//!
//! - the reader dispatches each message to the task it is for, never waiting except on file
//!   data (the one flow with back-pressure); everything else is bounded by the protocol (two
//!   Entries batches outstanding, a window of requests), and a peer exceeding that is dropped;
//! - the writer sends control messages before file data, so an Ack or a request never queues
//!   behind a large file;
//! - the sender sends our index after the peer's mark, a batch ahead of each Ack, and sleeps
//!   until the index changes when there is nothing left;
//! - the server ([`super::serve`]) answers the peer's requests for our files, in order, on a
//!   blocking thread;
//! - the hasher ([`super::hasher`]) hashes the answers to our requests on a blocking thread;
//! - the fetcher ([`super::fetch`]) fetches the contents the receiver asks for, on a blocking
//!   thread;
//! - the receiver ([`super::receive`]) applies the peer's batches.
//!
//! Keepalive: the writer sends a Ping after `keepalive` with nothing to send, the reader
//! answers Pings with Pongs and drops the link after `peer_timeout` without any frame, so that
//! a peer that vanished silently is noticed (and the lower node dials again). A write that
//! does not complete within `peer_timeout` drops the link too, and Pongs not yet sent are
//! coalesced into one, so that a peer sending Pings without reading costs no memory.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc,
    },
    time::{Duration, Instant, SystemTime},
};

use tokio::{sync::mpsc, task::JoinSet};
use tracing::info;

use super::{
    Shared, fetch, hasher,
    link::{Introduced, LinkRead, LinkWrite},
    receive, serve,
    status::SyncEvent,
};
use crate::sync::{
    index::{Entry, PeerMark},
    proto::{
        FLAG_RECEIVES, FLAG_SENDS, FrameBuf, MAX_DATA, MAX_ENTRIES, Message, ProtoReader,
        ProtoWriter,
    },
};

/// Buffers of answers waiting for the writer (each up to about 2 MiB).
const ANSWER_QUEUE: usize = 4;

/// Runs of the peer's answers waiting for the receiver, and the most octets and messages in
/// one run: the answers to our requests that one read brought in go over together, so that
/// the receiver wakes once for them rather than once per message.
const RESPONSE_QUEUE: usize = 4;
const RUN_OCTETS: usize = MAX_DATA;
const RUN_MESSAGES: usize = 256;

/// Entries batches sent ahead of their Acks: the receiver finds the next batch waiting when it
/// acknowledges one, instead of idling for a round trip (its queue holds four).
const OUTSTANDING_BATCHES: usize = 2;

/// Most octets of entries in one Entries message (well under the frame limit).
const BATCH_OCTETS: usize = 1024 * 1024;

/// What a session's tasks end with: `Err` says why the link is dropped.
type TaskResult = Result<(), String>;

/// Runs one introduced connection until it fails, the peer goes, a newer connection to the
/// same peer replaces it, or the set stops. Returns whether it got as far as running: the peer
/// sent something after its Hello other than a Refuse (a refused Hello arrives after the
/// peer's own Hello, so the dialer must not count it as a success and reset its backoff).
pub(super) async fn run(shared: &Arc<Shared>, link: Introduced) -> bool {
    let Introduced {
        peer,
        hello,
        reader,
        writer,
    } = link;
    let addr = shared.peers[peer].addr;
    if shared.cancel.is_cancelled() {
        // The handshake ended as the set stopped: no session to start.
        return false;
    }
    let cancel = shared.cancel.child_token();
    let id = {
        let mut state = shared.peer_state(peer);
        let id = state.next_session;
        state.next_session += 1;
        if let Some((_, old)) = state.session.replace((id, cancel.clone())) {
            old.cancel();
        }
        state.connected = true;
        state.node = Some(hello.node.clone());
        id
    };
    shared.emit(SyncEvent::PeerConnected {
        addr,
        node: hello.node.clone(),
    });
    let direction = shared.config.direction;
    let we_send = direction.sends() && hello.flags & FLAG_RECEIVES != 0;
    let we_receive = direction.receives() && hello.flags & FLAG_SENDS != 0;
    if direction.sends() && !we_send {
        // A peer that does not apply our changes: nothing waits for it, now or after a
        // restart.
        shared.set_not_applying(peer);
    }

    let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
    let (pong_tx, pong_rx) = mpsc::channel(1);
    let (frames_tx, frames_rx) = mpsc::channel(ANSWER_QUEUE);
    let (spent_tx, spent_rx) = std_mpsc::channel();
    let (acks_tx, acks_rx) = mpsc::channel(4);
    let (entries_tx, entries_rx) = mpsc::channel(4);
    let (serve_tx, serve_rx) = serve::request_queue();
    let (resp_tx, resp_rx) = mpsc::channel(RESPONSE_QUEUE);

    let heard = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    tasks.spawn(write_loop(
        writer,
        Outgoing {
            ctrl: ctrl_rx,
            pongs: pong_rx,
            answers: Answers {
                frames: frames_rx,
                spent: spent_tx,
            },
        },
        shared.keepalive,
        shared.peer_timeout,
    ));
    tasks.spawn(read_loop(
        reader,
        Channels {
            acks: acks_tx,
            entries: entries_tx,
            serve: serve_tx,
            responses: resp_tx,
            pong: pong_tx,
        },
        shared.peer_timeout,
        Arc::clone(&heard),
    ));
    {
        let shared = Arc::clone(shared);
        let outbox = serve::Outbox {
            frames: frames_tx,
            spent: spent_rx,
        };
        tasks.spawn_blocking(move || serve::serve_loop(shared, serve_rx, outbox));
    }
    if we_send {
        tasks.spawn(send_loop(
            Arc::clone(shared),
            peer,
            acks_rx,
            ctrl_tx.clone(),
        ));
    }
    if we_receive {
        let from = match shared.index().peer_mark(&hello.node) {
            Some(mark) if mark.index_id == hello.index_id => mark.sequence,
            _ => 0,
        };
        let _ = ctrl_tx.send(Message::Resume {
            index_id: hello.index_id,
            from,
        });
        // Answers go through the hasher on their way to the fetcher, which takes its jobs
        // from the receiver.
        let (hashed_tx, hashed_rx) = mpsc::channel(RESPONSE_QUEUE);
        tasks.spawn_blocking(move || hasher::hash_loop(resp_rx, hashed_tx));
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let mut fetcher = fetch::Fetcher::new(
            Arc::clone(shared),
            hello.node.clone(),
            ctrl_tx.clone(),
            hashed_rx,
        );
        tasks.spawn_blocking(move || fetcher.run(jobs_rx));
        let receiver = receive::Receiver::new(
            Arc::clone(shared),
            peer,
            hello.node.clone(),
            hello.index_id,
            ctrl_tx.clone(),
            jobs_tx,
        );
        tasks.spawn(receiver.run(entries_rx));
    } else {
        // Nothing here asks this peer for files: answers from it end the link (see
        // `send_run`) rather than fill a queue no one reads, which would stop the reader.
        drop(resp_rx);
    }
    drop(ctrl_tx);

    let reason = tokio::select! {
        () = cancel.cancelled() => "replaced or stopped".to_owned(),
        ended = tasks.join_next() => match ended {
            Some(Ok(Ok(()))) => "closed".to_owned(),
            Some(Ok(Err(reason))) => reason,
            Some(Err(e)) => format!("task failed: {e}"),
            None => "no tasks".to_owned(),
        },
    };
    tasks.shutdown().await;
    let current = {
        let mut state = shared.peer_state(peer);
        let current = state
            .session
            .as_ref()
            .is_some_and(|(current, _)| *current == id);
        if current {
            state.session = None;
            state.connected = false;
        }
        current
    };
    // A set that stops (Fulcrum stopping, or a reload restarting it) has not lost its peer,
    // nor has one whose newer connection replaced this one: no alert for those.
    if !shared.cancel.is_cancelled() {
        info!(set = %shared.config.name, peer = %addr, %reason, "sync: peer link ended");
        if current {
            shared.emit(SyncEvent::PeerLost { addr });
        }
    }
    heard.load(Ordering::Relaxed)
}

/// The writer's ends of the server's channels.
struct Answers {
    /// Buffers of whole frames from the server.
    frames: mpsc::Receiver<FrameBuf>,
    /// Written buffers, back to the server.
    spent: std_mpsc::Sender<FrameBuf>,
}

/// What the writer sends.
struct Outgoing {
    /// Control messages from the session's tasks.
    ctrl: mpsc::UnboundedReceiver<Message>,
    /// The nonce of the last Ping to answer (one at most waits: later ones replace it).
    pongs: mpsc::Receiver<u64>,
    answers: Answers,
}

/// Sends control messages before file data; a Ping when nothing was sent for `keepalive`.
/// Fails when a write does not complete within `timeout`.
async fn write_loop(
    mut writer: ProtoWriter<LinkWrite>,
    outgoing: Outgoing,
    keepalive: Duration,
    timeout: Duration,
) -> TaskResult {
    let Outgoing {
        mut ctrl,
        mut pongs,
        mut answers,
    } = outgoing;
    let stalled = |what: &str| format!("{what}: not done within {timeout:?}: lost");
    let mut nonce = 0u64;
    loop {
        let mut frames = None;
        tokio::select! {
            biased;
            Some(msg) = ctrl.recv() => writer.feed(&msg).map_err(|e| e.to_string())?,
            Some(nonce) = pongs.recv() => {
                writer.feed(&Message::Pong { nonce }).map_err(|e| e.to_string())?;
            }
            Some(buf) = answers.frames.recv() => frames = Some(buf),
            () = tokio::time::sleep(keepalive) => {
                nonce = nonce.wrapping_add(1);
                writer.feed(&Message::Ping { nonce }).map_err(|e| e.to_string())?;
            }
            else => return Ok(()),
        }
        while writer.queued() < MAX_DATA {
            let Ok(msg) = ctrl.try_recv() else { break };
            writer.feed(&msg).map_err(|e| e.to_string())?;
        }
        if frames.is_none() {
            frames = answers.frames.try_recv().ok();
        }
        match frames {
            Some(buf) => {
                tokio::time::timeout(timeout, writer.send_frames(buf.as_slice()))
                    .await
                    .map_err(|_| stalled("write"))?
                    .map_err(|e| format!("write: {e}"))?;
                // The server may be gone; the buffer is then dropped.
                let _ = answers.spent.send(buf);
            }
            None => tokio::time::timeout(timeout, writer.flush())
                .await
                .map_err(|_| stalled("write"))?
                .map_err(|e| format!("write: {e}"))?,
        }
    }
}

/// Where the reader dispatches the peer's messages.
struct Channels {
    acks: mpsc::Sender<Message>,
    entries: mpsc::Sender<Message>,
    serve: serve::Requests,
    /// Answers to our requests, in runs.
    responses: mpsc::Sender<Vec<Message>>,
    /// The nonce of a Ping to answer, to the writer.
    pong: mpsc::Sender<u64>,
}

/// Dispatches the peer's messages; drops the link when no frame (not even a Ping) came for
/// `timeout`, or when a run of answers is not taken for that long. Sets `heard` on the first
/// message that is not a refusal.
async fn read_loop(
    mut reader: ProtoReader<LinkRead>,
    channels: Channels,
    timeout: Duration,
    heard: Arc<AtomicBool>,
) -> TaskResult {
    let Channels {
        acks,
        entries,
        serve,
        responses,
        pong,
    } = channels;
    let mut run = Vec::new();
    let mut run_octets = 0;
    loop {
        // What is already buffered first; the run of answers goes once nothing more is.
        let msg = match reader.try_next() {
            Ok(Some(msg)) => msg,
            Ok(None) => {
                if !run.is_empty() {
                    send_run(&responses, &mut run, &mut run_octets, timeout).await?;
                }
                let next = tokio::time::timeout(timeout, reader.next()).await;
                match next {
                    Err(_) => return Err(format!("no frame from the peer for {timeout:?}: lost")),
                    Ok(Ok(Some(msg))) => msg,
                    Ok(Ok(None)) => return Err("the peer closed the link".to_owned()),
                    Ok(Err(e)) => return Err(format!("read: {e}")),
                }
            }
            Err(e) => return Err(format!("read: {e}")),
        };
        if let Message::Refuse { reason } = &msg {
            return Err(format!("the peer refused us: {reason}"));
        }
        heard.store(true, Ordering::Relaxed);
        let name = msg.name();
        let full = |_| format!("the peer sent {name} beyond the protocol's window");
        match msg {
            Message::Resume { .. } | Message::Ack { .. } => acks.try_send(msg).map_err(full)?,
            Message::Entries { .. } => entries.try_send(msg).map_err(full)?,
            Message::Get(_) | Message::GetDelta { .. } => serve.push(msg)?,
            Message::Data {
                data: ref octets, ..
            }
            | Message::Delta {
                delta: ref octets, ..
            } => {
                run_octets += octets.len();
                run.push(msg);
            }
            Message::End { .. } | Message::Stale { .. } | Message::Failed { .. } => run.push(msg),
            Message::Ping { nonce } => {
                // With a Pong already waiting this one is not needed: one answer shows we are
                // alive. Ignored too if the writer is gone: the session is ending anyway.
                let _ = pong.try_send(nonce);
            }
            Message::Pong { .. } => {}
            Message::Hello(_) | Message::Refuse { .. } => {
                return Err(format!("{name} after the Hello"));
            }
        }
        if run_octets >= RUN_OCTETS || run.len() >= RUN_MESSAGES {
            send_run(&responses, &mut run, &mut run_octets, timeout).await?;
        }
    }
}

/// Hands a run of answers to the receiver (waiting while it is behind: the one flow with
/// back-pressure), for up to four times `timeout`. Answers the receiver does not take for that
/// long were not asked for (an idle fetcher reads none), and would stop this reader, Acks and
/// Pings with them, for good; or the disk is stuck. Either way the link ends, to be made
/// again, and what was received is kept. Four times, so that a slow commit or a long local
/// copy does not end a link that is only behind.
async fn send_run(
    responses: &mpsc::Sender<Vec<Message>>,
    run: &mut Vec<Message>,
    octets: &mut usize,
    timeout: Duration,
) -> TaskResult {
    *octets = 0;
    let limit = timeout.saturating_mul(4);
    match tokio::time::timeout(limit, responses.send(std::mem::take(run))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("answers that nothing asked for".to_owned()),
        Err(_) => Err(format!(
            "answers not taken for {limit:?}: the peer sent what nothing asked for, or the disk is stuck"
        )),
    }
}

/// Sends our index after the peer's mark, batch by batch, at most [`OUTSTANDING_BATCHES`]
/// waiting for their Acks.
async fn send_loop(
    shared: Arc<Shared>,
    peer: usize,
    mut acks: mpsc::Receiver<Message>,
    ctrl: mpsc::UnboundedSender<Message>,
) -> TaskResult {
    let our_id = shared.index().id();
    // Past the sequence this index was loaded at (and past what this run sent the peer), the
    // peer saw a history this index no longer has (restored from a snapshot, say): everything
    // again, or the entries that reuse those sequences would never be sent. The sequence now
    // is no bound: the start-up scan may have pushed it past the peer's mark meanwhile.
    let known = shared
        .loaded_sequence
        .max(shared.peer_state(peer).sent_this_run);
    let mut mark = match acks.recv().await {
        Some(Message::Resume { index_id, from }) if index_id == our_id && from <= known => from,
        Some(Message::Resume { .. }) => 0,
        Some(other) => return Err(format!("{} before Resume", other.name())),
        None => return Ok(()),
    };
    let backlog = shared.index().count_changed_since(mark) as u64;
    shared.peer_state(peer).catch_up_total = backlog;
    shared.set_acked(peer, mark);
    let mut progress = CatchUpLog::new(backlog);
    let mut changed = shared.changed.subscribe();
    // The batches sent and not yet acknowledged (their `up_to`), and the last sequence sent.
    let mut outstanding: VecDeque<u64> = VecDeque::new();
    let mut sent = mark;
    loop {
        changed.borrow_and_update();
        while outstanding.len() < OUTSTANDING_BATCHES {
            let (entries, up_to) = next_batch(&shared, sent);
            if entries.is_empty() {
                break;
            }
            ctrl.send(Message::Entries { up_to, entries })
                .map_err(|_| "writer gone".to_owned())?;
            outstanding.push_back(up_to);
            sent = up_to;
            let mut state = shared.peer_state(peer);
            state.sent_this_run = state.sent_this_run.max(up_to);
        }
        let Some(&oldest) = outstanding.front() else {
            {
                let mut state = shared.peer_state(peer);
                state.last_sync = Some(SystemTime::now());
                state.catch_up_total = 0;
            }
            progress.done(&shared, peer);
            if changed.changed().await.is_err() {
                return Ok(());
            }
            continue;
        };
        tokio::select! {
            ack = acks.recv() => match ack {
                Some(Message::Ack { up_to }) if up_to == oldest => {
                    outstanding.pop_front();
                    mark = up_to;
                    shared.set_acked(peer, mark);
                    progress.tick(&shared, peer);
                }
                Some(other) => {
                    return Err(format!("unexpected {} for batch {oldest}", other.name()));
                }
                None => return Ok(()),
            },
            // Room for another batch, and the index changed: send it.
            changed = changed.changed(), if outstanding.len() < OUTSTANDING_BATCHES => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Log lines while a peer catches up: every [`CatchUpLog::EVERY`] how far it is, and once when
/// it is done, so that a start-up full sync of a large tree is not silent.
struct CatchUpLog {
    /// The backlog at the start (0: nothing to report).
    total: u64,
    started: Instant,
    logged: Instant,
}

impl CatchUpLog {
    const EVERY: Duration = Duration::from_secs(5);

    fn new(total: u64) -> Self {
        let now = Instant::now();
        Self {
            total,
            started: now,
            logged: now,
        }
    }

    /// After an Ack: logs the progress if the last line is old enough.
    fn tick(&mut self, shared: &Shared, peer: usize) {
        if self.total == 0 || self.logged.elapsed() < Self::EVERY {
            return;
        }
        self.logged = Instant::now();
        if let Some(progress) = shared.status().peers[peer].catch_up {
            info!(set = %shared.config.name, peer = %shared.peers[peer].addr,
                done = progress.done, total = progress.total,
                percent = progress.done * 100 / progress.total, "sync: catching up a peer");
        }
    }

    /// Caught up: says so once, if there was a backlog.
    fn done(&mut self, shared: &Shared, peer: usize) {
        if self.total == 0 {
            return;
        }
        info!(set = %shared.config.name, peer = %shared.peers[peer].addr, changes = self.total,
            seconds = self.started.elapsed().as_secs_f64(), "sync: peer caught up");
        self.total = 0;
    }
}

/// Our published entries after `mark` (saved ones only: see [`Index::published`]), up to a
/// batch's worth, and the last one's sequence.
///
/// [`Index::published`]: crate::sync::index::Index::published
fn next_batch(shared: &Shared, mark: u64) -> (Vec<Entry>, u64) {
    let index = shared.index();
    let published = index.published();
    let mut octets = 0;
    let mut batch = Vec::new();
    for entry in index.first_changed_since(mark, MAX_ENTRIES) {
        octets += 100 + entry.path.len() + entry.version.len() * 24;
        let full = batch.len() == MAX_ENTRIES || (octets > BATCH_OCTETS && !batch.is_empty());
        if full || entry.sequence > published {
            break;
        }
        batch.push(entry.clone());
    }
    let up_to = batch.last().map_or(mark, |e| e.sequence);
    (batch, up_to)
}

/// Records in the index how far we have applied `node`'s index.
pub(super) fn set_mark(shared: &Shared, node: &str, index_id: u64, sequence: u64) {
    shared
        .index()
        .set_peer_mark(node, PeerMark { index_id, sequence });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::*;
    use crate::sync::{
        CatchUp,
        engine::{local, testing},
        index::{INDEX_FILE, Index, Rehash},
    };

    /// A write loop on one end of a TCP connection whose other end never reads, fed file data
    /// faster than the socket buffers take it: it gives up after its timeout instead of
    /// waiting for ever.
    #[tokio::test]
    async fn the_writer_gives_up_on_a_peer_that_does_not_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_theirs, _) = listener.accept().await.unwrap();
        let (_read, write) = ours.into_split();
        let (_ctrl_tx, ctrl) = mpsc::unbounded_channel();
        let (_pong_tx, pongs) = mpsc::channel(1);
        let (frames_tx, frames) = mpsc::channel(1);
        let (spent, _spent_rx) = std_mpsc::channel();
        let started = Instant::now();
        let writer = write_loop(
            ProtoWriter::new(LinkWrite::Plain(write)),
            Outgoing {
                ctrl,
                pongs,
                answers: Answers { frames, spent },
            },
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        let feeder = async {
            loop {
                let mut buf = FrameBuf::new();
                buf.put_data_from(1, &mut std::io::repeat(7), usize::MAX)
                    .unwrap();
                if frames_tx.send(buf).await.is_err() {
                    return;
                }
            }
        };
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::select! {
                ended = writer => ended,
                () = feeder => unreachable!("the writer took every buffer"),
            }
        })
        .await
        .expect("the writer still waits after 20 s");
        let error = ended.unwrap_err();
        assert!(error.contains("not done within 1s"), "{error}");
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    /// The next Entries the sender sends (within 5 s): its `up_to` and size.
    async fn entries(ctrl: &mut mpsc::UnboundedReceiver<Message>) -> (u64, usize) {
        match tokio::time::timeout(Duration::from_secs(5), ctrl.recv()).await {
            Ok(Some(Message::Entries { up_to, entries })) => (up_to, entries.len()),
            other => panic!("{other:?}"),
        }
    }

    /// A sender over a set of `files` one-octet files, its peer resumed from 0: the set, the
    /// Ack channel, what the sender sends, the sender, and the temporary directories.
    struct Started {
        shared: Arc<Shared>,
        acks: mpsc::Sender<Message>,
        ctrl: mpsc::UnboundedReceiver<Message>,
        sender: tokio::task::JoinHandle<TaskResult>,
        root: tempfile::TempDir,
        state: tempfile::TempDir,
    }

    async fn start_sender(files: usize) -> Started {
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for i in 0..files {
            std::fs::write(root.path().join(format!("f{i:04}")), b"x").unwrap();
        }
        let shared = testing::shared(root.path(), state.path());
        let (acks, acks_rx) = mpsc::channel(4);
        let (ctrl_tx, ctrl) = mpsc::unbounded_channel();
        let index_id = shared.index().id();
        acks.send(Message::Resume { index_id, from: 0 })
            .await
            .unwrap();
        let sender = tokio::spawn(send_loop(Arc::clone(&shared), 0, acks_rx, ctrl_tx));
        Started {
            shared,
            acks,
            ctrl,
            sender,
            root,
            state,
        }
    }

    /// Waits up to 5 s for `done`.
    async fn until(done: impl Fn() -> bool) {
        let waited = async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), waited)
            .await
            .unwrap();
    }

    // Input: an index of 1,100 files; the peer resumes from 0 and acknowledges slowly.
    // Output: two batches (512 each) go before any Ack and no third; each Ack lets one more
    // go; once all three are acknowledged nothing is pending for the peer.
    // Real time (storage's tokio has no test-util to pause it): 200 ms without a third batch
    // stands for "none".
    #[tokio::test]
    async fn two_batches_go_ahead_of_their_acks() {
        let Started {
            shared,
            acks: acks_tx,
            mut ctrl,
            sender,
            ..
        } = start_sender(1100).await;

        let (first, n1) = entries(&mut ctrl).await;
        let (second, n2) = entries(&mut ctrl).await;
        assert_eq!((n1, n2), (MAX_ENTRIES, MAX_ENTRIES));
        let third = tokio::time::timeout(Duration::from_millis(200), ctrl.recv()).await;
        assert!(third.is_err(), "a third batch before any Ack: {third:?}");

        acks_tx.send(Message::Ack { up_to: first }).await.unwrap();
        let (last, n3) = entries(&mut ctrl).await;
        assert_eq!(n3, 1100 - 2 * MAX_ENTRIES);
        for up_to in [second, last] {
            acks_tx.send(Message::Ack { up_to }).await.unwrap();
        }
        until(|| shared.status().peers[0].queue == 0).await;
        // Caught up, it waits for the index to change.
        assert!(!sender.is_finished());
        sender.abort();
    }

    // Input: an index of 600 files; the peer resumes from 0 and acknowledges batch by batch.
    // Output: its status shows the catch-up (0 of 600 at first, 512 after the first Ack), and
    // none once everything is acknowledged.
    #[tokio::test]
    async fn a_peer_catching_up_shows_its_progress() {
        let Started {
            shared,
            acks: acks_tx,
            mut ctrl,
            sender,
            ..
        } = start_sender(600).await;
        let catch_up = || shared.status().peers[0].catch_up;
        let (first, _) = entries(&mut ctrl).await;
        let (second, _) = entries(&mut ctrl).await;
        assert_eq!(
            catch_up(),
            Some(CatchUp {
                done: 0,
                total: 600
            })
        );
        acks_tx.send(Message::Ack { up_to: first }).await.unwrap();
        until(|| catch_up().is_some_and(|c| c.done > 0)).await;
        assert_eq!(
            catch_up(),
            Some(CatchUp {
                done: 512,
                total: 600
            })
        );
        acks_tx.send(Message::Ack { up_to: second }).await.unwrap();
        until(|| catch_up().is_none()).await;
        sender.abort();
    }

    // Input: the peer has acknowledged everything; a new file is scanned into the index, and
    // only later is the saver started. Output: nothing is sent while the change is unsaved
    // (200 ms stands for "never": a crash then would lose an entry the peer acknowledged,
    // and the restarted node would give its sequence to another change); once the saver runs,
    // the entry is sent, and the index on disk holds it by then.
    #[tokio::test]
    async fn a_change_is_sent_only_once_the_index_is_saved() {
        let Started {
            shared,
            acks: acks_tx,
            mut ctrl,
            sender,
            root,
            state,
        } = start_sender(1).await;
        let (up_to, n) = entries(&mut ctrl).await;
        assert_eq!(n, 1);
        acks_tx.send(Message::Ack { up_to }).await.unwrap();

        std::fs::write(root.path().join("f9999"), b"y").unwrap();
        shared
            .index()
            .scan_under(&shared.root, &[], "f9999", Rehash::IfChanged)
            .unwrap();
        shared.notify_changed();
        let early = tokio::time::timeout(Duration::from_millis(200), ctrl.recv()).await;
        assert!(early.is_err(), "sent before saved: {early:?}");

        let saver = tokio::spawn(local::save(Arc::clone(&shared), Duration::from_millis(100)));
        let (up_to, n) = entries(&mut ctrl).await;
        assert_eq!((up_to, n), (shared.index().sequence(), 1));
        let on_disk = Index::load(&state.path().join(INDEX_FILE)).unwrap();
        assert!(on_disk.get("f9999").is_some());
        sender.abort();
        saver.abort();
    }
}
