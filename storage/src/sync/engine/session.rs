//! One introduced connection to a peer, as a few tasks that end together:
//!
//! - the reader dispatches each message to the task it is for, never waiting except on file
//!   data (the one flow with back-pressure); everything else is bounded by the protocol (one
//!   Entries batch outstanding, a window of requests), and a peer exceeding that is dropped;
//! - the writer sends control messages before file data, so an Ack or a request never queues
//!   behind a large file;
//! - the sender sends our index after the peer's mark, one batch per Ack, and sleeps until the
//!   index changes when there is nothing left;
//! - the server answers the peer's requests for our files, in order;
//! - the receiver ([`super::receive`]) applies the peer's batches.
//!
//! Keepalive: the writer sends a Ping after `keepalive` with nothing to send, the reader
//! answers Pings with Pongs and drops the link after `peer_timeout` without any frame, so that
//! a peer that vanished silently is noticed (and the lower node dials again).

use std::{
    io::Read,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use ring::digest;
use tokio::{
    net::tcp::{OwnedReadHalf, OwnedWriteHalf},
    sync::mpsc,
    task::JoinSet,
};
use tracing::{info, warn};

use super::{
    Shared, delta,
    fsops::{self, mtime_ns},
    link::Introduced,
    receive,
    status::{Counters, SyncEvent},
};
use crate::sync::{
    config::is_excluded,
    index::{Entry, NO_HASH, PeerMark, check_path},
    proto::{
        FLAG_RECEIVES, FLAG_SENDS, MAX_DATA, MAX_ENTRIES, Message, ProtoReader, ProtoWriter,
        Request,
    },
};

/// Most requests a peer may have outstanding with us.
const MAX_REQUESTS: usize = 1024;

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

    let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
    let (data_tx, data_rx) = mpsc::channel(4);
    let (acks_tx, acks_rx) = mpsc::channel(4);
    let (entries_tx, entries_rx) = mpsc::channel(4);
    let (serve_tx, serve_rx) = mpsc::channel(MAX_REQUESTS);
    let (resp_tx, resp_rx) = mpsc::channel(16);

    let heard = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    tasks.spawn(write_loop(writer, ctrl_rx, data_rx, shared.keepalive));
    tasks.spawn(read_loop(
        reader,
        Channels {
            acks: acks_tx,
            entries: entries_tx,
            serve: serve_tx,
            responses: resp_tx,
            pong: ctrl_tx.clone(),
        },
        shared.peer_timeout,
        Arc::clone(&heard),
    ));
    tasks.spawn(serve_loop(Arc::clone(shared), serve_rx, data_tx));
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
        let receiver = receive::Receiver::new(
            Arc::clone(shared),
            peer,
            hello.node.clone(),
            hello.index_id,
            ctrl_tx.clone(),
            resp_rx,
        );
        tasks.spawn(receiver.run(entries_rx));
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
    {
        let mut state = shared.peer_state(peer);
        if state
            .session
            .as_ref()
            .is_some_and(|(current, _)| *current == id)
        {
            state.session = None;
            state.connected = false;
        }
    }
    if !shared.cancel.is_cancelled() {
        info!(set = %shared.config.name, peer = %addr, %reason, "sync: peer link ended");
    }
    shared.emit(SyncEvent::PeerLost { addr });
    heard.load(Ordering::Relaxed)
}

/// Sends control messages before file data; a Ping when nothing was sent for `keepalive`.
async fn write_loop(
    mut writer: ProtoWriter<OwnedWriteHalf>,
    mut ctrl: mpsc::UnboundedReceiver<Message>,
    mut data: mpsc::Receiver<Message>,
    keepalive: Duration,
) -> TaskResult {
    let mut nonce = 0u64;
    loop {
        let msg = tokio::select! {
            biased;
            Some(msg) = ctrl.recv() => msg,
            Some(msg) = data.recv() => msg,
            () = tokio::time::sleep(keepalive) => {
                nonce = nonce.wrapping_add(1);
                Message::Ping { nonce }
            }
            else => return Ok(()),
        };
        writer.feed(&msg).map_err(|e| e.to_string())?;
        while writer.queued() < MAX_DATA {
            let next = match ctrl.try_recv() {
                Ok(msg) => msg,
                Err(_) => match data.try_recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                },
            };
            writer.feed(&next).map_err(|e| e.to_string())?;
        }
        writer.flush().await.map_err(|e| format!("write: {e}"))?;
    }
}

/// Where the reader dispatches the peer's messages.
struct Channels {
    acks: mpsc::Sender<Message>,
    entries: mpsc::Sender<Message>,
    serve: mpsc::Sender<Message>,
    responses: mpsc::Sender<Message>,
    /// The control queue, for Pongs.
    pong: mpsc::UnboundedSender<Message>,
}

/// Dispatches the peer's messages; drops the link when no frame (not even a Ping) came for
/// `timeout`. Sets `heard` on the first message that is not a refusal.
async fn read_loop(
    mut reader: ProtoReader<OwnedReadHalf>,
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
    loop {
        let next = tokio::time::timeout(timeout, reader.next()).await;
        let msg = match next {
            Err(_) => return Err(format!("no frame from the peer for {timeout:?}: lost")),
            Ok(Ok(Some(msg))) => msg,
            Ok(Ok(None)) => return Err("the peer closed the link".to_owned()),
            Ok(Err(e)) => return Err(format!("read: {e}")),
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
            Message::Get(_) | Message::GetDelta { .. } => serve.try_send(msg).map_err(full)?,
            Message::Data { .. }
            | Message::Delta { .. }
            | Message::End { .. }
            | Message::Stale { .. }
            | Message::Failed { .. } => responses
                .send(msg)
                .await
                .map_err(|_| format!("{name} that nothing asked for"))?,
            Message::Ping { nonce } => {
                // Ignored if the writer is gone: the session is ending anyway.
                let _ = pong.send(Message::Pong { nonce });
            }
            Message::Pong { .. } => {}
            Message::Hello(_) | Message::Refuse { .. } => {
                return Err(format!("{name} after the Hello"));
            }
        }
    }
}

/// Sends our index after the peer's mark, batch by batch, each waiting for its Ack.
async fn send_loop(
    shared: Arc<Shared>,
    peer: usize,
    mut acks: mpsc::Receiver<Message>,
    ctrl: mpsc::UnboundedSender<Message>,
) -> TaskResult {
    let our_id = shared.index().id();
    let mut mark = match acks.recv().await {
        Some(Message::Resume { index_id, from }) if index_id == our_id => from,
        Some(Message::Resume { .. }) => 0,
        Some(other) => return Err(format!("{} before Resume", other.name())),
        None => return Ok(()),
    };
    shared.peer_state(peer).acked = mark;
    let mut changed = shared.changed.subscribe();
    loop {
        changed.borrow_and_update();
        let (entries, up_to) = next_batch(&shared, mark);
        if entries.is_empty() {
            {
                let mut state = shared.peer_state(peer);
                state.acked = mark;
                state.last_sync = Some(SystemTime::now());
            }
            if changed.changed().await.is_err() {
                return Ok(());
            }
            continue;
        }
        ctrl.send(Message::Entries { up_to, entries })
            .map_err(|_| "writer gone".to_owned())?;
        match acks.recv().await {
            Some(Message::Ack { up_to: acked }) if acked == up_to => {}
            Some(other) => return Err(format!("unexpected {} for batch {up_to}", other.name())),
            None => return Ok(()),
        }
        mark = up_to;
        shared.peer_state(peer).acked = mark;
    }
}

/// Our entries after `mark`, up to a batch's worth, and the last one's sequence.
fn next_batch(shared: &Shared, mark: u64) -> (Vec<Entry>, u64) {
    let index = shared.index();
    let mut octets = 0;
    let mut batch = Vec::new();
    for entry in index.changed_since(mark) {
        octets += 100 + entry.path.len() + entry.version.len() * 24;
        if batch.len() == MAX_ENTRIES || (octets > BATCH_OCTETS && !batch.is_empty()) {
            break;
        }
        batch.push(entry.clone());
    }
    let up_to = batch.last().map_or(mark, |e| e.sequence);
    (batch, up_to)
}

/// Answers the peer's requests for our files, one at a time, in order.
async fn serve_loop(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<Message>,
    data: mpsc::Sender<Message>,
) -> TaskResult {
    while let Some(msg) = requests.recv().await {
        match msg {
            Message::Get(request) => serve_whole(&shared, request, &data).await?,
            Message::GetDelta { request, signature } => {
                serve_delta(&shared, request, signature, &data).await?;
            }
            other => return Err(format!("{} is not a request", other.name())),
        }
    }
    Ok(())
}

/// Why a request cannot be served: the file moved on (Stale) or cannot be read (Failed).
enum Refused {
    Stale,
    Failed(String),
}

fn refused_message(id: u32, refused: Refused) -> Message {
    match refused {
        Refused::Stale => Message::Stale { id },
        Refused::Failed(reason) => Message::Failed { id, reason },
    }
}

/// Opens a requested file: a path inside the root, not excluded, a regular file reached
/// without symlinks, still the version asked for.
fn open_requested(
    shared: &Shared,
    request: &Request,
) -> Result<(std::fs::File, std::fs::Metadata), Refused> {
    if let Err(e) = check_path(&request.path) {
        warn!(set = %shared.config.name, error = %e, "sync: peer requested a path outside the root");
        return Err(Refused::Failed(e.to_string()));
    }
    if is_excluded(&shared.config.exclude, &request.path, false) {
        return Err(Refused::Failed("excluded".to_owned()));
    }
    let (file, meta) = match fsops::open_regular(&shared.root, &request.path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Refused::Stale),
        Err(e) => return Err(Refused::Failed(e.to_string())),
    };
    if meta.len() != request.size || mtime_ns(&meta) != request.mtime_ns {
        return Err(Refused::Stale);
    }
    Ok((file, meta))
}

async fn serve_whole(
    shared: &Arc<Shared>,
    request: Request,
    data: &mpsc::Sender<Message>,
) -> TaskResult {
    let id = request.id;
    let closed = |_| "writer gone".to_owned();
    let opened = {
        let (shared, request) = (Arc::clone(shared), request.clone());
        tokio::task::spawn_blocking(move || open_requested(&shared, &request))
            .await
            .map_err(|e| e.to_string())?
    };
    let (mut file, meta) = match opened {
        Ok(opened) => opened,
        Err(refused) => {
            return data
                .send(refused_message(id, refused))
                .await
                .map_err(closed);
        }
    };
    let mut hasher = digest::Context::new(&digest::SHA256);
    loop {
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; MAX_DATA / 2];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return (file, Err(e)),
                }
            }
            buf.truncate(filled);
            (file, Ok(buf))
        })
        .await
        .map_err(|e| e.to_string())?;
        file = read.0;
        let chunk = match read.1 {
            Ok(chunk) => chunk,
            Err(e) => {
                let refused = Refused::Failed(e.to_string());
                return data
                    .send(refused_message(id, refused))
                    .await
                    .map_err(closed);
            }
        };
        if chunk.is_empty() {
            break;
        }
        hasher.update(&chunk);
        Counters::add(&shared.counters.bytes_sent, chunk.len() as u64);
        data.send(Message::Data {
            id,
            data: Bytes::from(chunk),
        })
        .await
        .map_err(closed)?;
    }
    let after = file.metadata().map_err(|e| e.to_string())?;
    if after.len() != meta.len() || mtime_ns(&after) != mtime_ns(&meta) {
        return data.send(Message::Stale { id }).await.map_err(closed);
    }
    let mut hash = NO_HASH;
    hash.copy_from_slice(hasher.finish().as_ref());
    Counters::add(&shared.counters.files_sent, 1);
    data.send(Message::End { id, hash }).await.map_err(closed)
}

/// Sends the file as rsync deltas against the peer's signature, one window per message.
async fn serve_delta(
    shared: &Arc<Shared>,
    request: Request,
    signature: Bytes,
    data: &mpsc::Sender<Message>,
) -> TaskResult {
    if request.size > delta::DELTA_MAX {
        return serve_whole(shared, request, data).await;
    }
    let shared = Arc::clone(shared);
    let data = data.clone();
    tokio::task::spawn_blocking(move || {
        let id = request.id;
        let send = |msg| {
            data.blocking_send(msg)
                .map_err(|_| "writer gone".to_owned())
        };
        let (mut file, meta) = match open_requested(&shared, &request) {
            Ok(opened) => opened,
            Err(refused) => return send(refused_message(id, refused)),
        };
        let mut content = Vec::with_capacity(meta.len() as usize);
        if let Err(e) = file.read_to_end(&mut content) {
            return send(Message::Failed {
                id,
                reason: e.to_string(),
            });
        }
        match file.metadata() {
            Ok(after) if after.len() == meta.len() && mtime_ns(&after) == mtime_ns(&meta) => {}
            _ => return send(Message::Stale { id }),
        }
        let signature = match delta::parse_signature(signature.to_vec()) {
            Ok(signature) => signature,
            Err(e) => {
                return send(Message::Failed {
                    id,
                    reason: e.to_string(),
                });
            }
        };
        let indexed = signature.index();
        for window in content.chunks(delta::window(&signature)) {
            let delta = match delta::diff(&indexed, window) {
                Ok(delta) => delta,
                Err(e) => {
                    return send(Message::Failed {
                        id,
                        reason: e.to_string(),
                    });
                }
            };
            Counters::add(&shared.counters.bytes_sent, delta.len() as u64);
            send(Message::Delta {
                id,
                delta: Bytes::from(delta),
            })?;
        }
        let mut hash = NO_HASH;
        hash.copy_from_slice(digest::digest(&digest::SHA256, &content).as_ref());
        Counters::add(&shared.counters.files_sent, 1);
        send(Message::End { id, hash })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Records in the index how far we have applied `node`'s index.
pub(super) fn set_mark(shared: &Shared, node: &str, index_id: u64, sequence: u64) {
    shared
        .index()
        .set_peer_mark(node, PeerMark { index_id, sequence });
}
