//! Serving our files to a peer: its requests answered in order on one blocking thread, which
//! reads each file straight into the outgoing frames ([`FrameBuf`]). A small file thus costs a
//! few syscalls and no task hop, and many small answers leave in one write.
//!
//! The End of an answer carries the content hash our index holds for the version asked for; the
//! file is served only while the index and the disk (size and mtime, before and after the
//! read) still describe that version, and the receiver checks every octet against the hash.
//! Hashing here too would only tell a damaged transfer from a file rewritten in place with
//! its size and mtime kept (which our index cannot see either), at the cost of a second
//! content hash of everything sent.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering::Relaxed},
    mpsc as std_mpsc,
};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::warn;

use super::{
    Shared, delta,
    fsops::{self, mtime_ns},
    status::Counters,
};
use crate::sync::{
    config::is_excluded,
    index::{Hash, check_path},
    proto::{FrameBuf, MAX_DATA, Message, Request},
};

/// The most file octets in one Data frame.
const PIECE: usize = MAX_DATA / 2;

/// A buffer of frames is handed to the writer once it holds this much (or when no request is
/// waiting, so that a lone small file is not held back).
const HAND_OVER_AT: usize = MAX_DATA / 2;

/// What the server's thread ends with: `Err` says why the link is dropped.
type TaskResult = Result<(), String>;

/// Most requests a peer may have waiting to be served.
const MAX_REQUESTS: usize = 1024;

/// Most octets of rsync signatures a peer may have waiting in its GetDeltas. An honest receiver
/// has at most 16 MiB of files in flight, or one larger file (see `fetch`), and a signature is a
/// few percent of its file, 2 MiB at most; without a cap, 1,024 GetDeltas of 2 MiB signatures
/// would hold 2 GiB here.
pub(super) const MAX_SIGNATURE_OCTETS: usize = 64 * 1024 * 1024;

/// The peer's requests on their way from the reader to the server: at most [`MAX_REQUESTS`] of
/// them, holding at most [`MAX_SIGNATURE_OCTETS`] of signatures.
pub(super) fn request_queue() -> (Requests, Queued) {
    let (tx, rx) = mpsc::channel(MAX_REQUESTS);
    let signatures = Arc::new(AtomicUsize::new(0));
    let requests = Requests {
        tx,
        signatures: Arc::clone(&signatures),
    };
    (requests, Queued { rx, signatures })
}

/// The reader's end of the [`request_queue`].
pub(super) struct Requests {
    tx: mpsc::Sender<Message>,
    signatures: Arc<AtomicUsize>,
}

impl Requests {
    /// Queues a Get or GetDelta; `Err` says why the peer broke the protocol's window.
    pub(super) fn push(&self, msg: Message) -> TaskResult {
        let name = msg.name();
        if let Message::GetDelta { signature, .. } = &msg {
            let held = self.signatures.fetch_add(signature.len(), Relaxed) + signature.len();
            if held > MAX_SIGNATURE_OCTETS {
                return Err(format!(
                    "the peer has more than {} MiB of delta signatures waiting",
                    MAX_SIGNATURE_OCTETS >> 20
                ));
            }
        }
        self.tx
            .try_send(msg)
            .map_err(|_| format!("the peer sent {name} beyond the protocol's window"))
    }
}

/// The server's end of the [`request_queue`].
pub(super) struct Queued {
    rx: mpsc::Receiver<Message>,
    signatures: Arc<AtomicUsize>,
}

/// The server's ends of its channels.
pub(super) struct Outbox {
    /// To the writer: buffers of whole frames (bounded, so at most a few MiB wait).
    pub(super) frames: mpsc::Sender<FrameBuf>,
    /// From the writer: buffers it has written, to be filled again.
    pub(super) spent: std_mpsc::Receiver<FrameBuf>,
}

/// Answers the peer's requests in order until the link goes. Blocking.
pub(super) fn serve_loop(shared: Arc<Shared>, queued: Queued, outbox: Outbox) -> TaskResult {
    let Queued {
        rx: mut requests,
        signatures,
    } = queued;
    let mut out = Out {
        outbox,
        buf: FrameBuf::new(),
    };
    let mut next = requests.blocking_recv();
    while let Some(msg) = next {
        match msg {
            Message::Get(request) => serve_whole(&shared, &request, &mut out)?,
            Message::GetDelta { request, signature } => {
                let len = signature.len();
                serve_delta(&shared, &request, signature, &mut out)?;
                signatures.fetch_sub(len, Relaxed);
            }
            other => return Err(format!("{} is not a request", other.name())),
        }
        next = match requests.try_recv() {
            Ok(msg) => Some(msg),
            Err(mpsc::error::TryRecvError::Empty) => {
                out.hand_over()?;
                requests.blocking_recv()
            }
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
    }
    out.hand_over()
}

/// The buffer being filled, and where it goes.
struct Out {
    outbox: Outbox,
    buf: FrameBuf,
}

impl Out {
    fn put(&mut self, msg: &Message) -> TaskResult {
        self.buf.put_message(msg).map_err(|e| e.to_string())?;
        if self.buf.len() >= HAND_OVER_AT {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Sends what the buffer holds to the writer (waiting while its queue is full) and takes
    /// a spent buffer, or a new one.
    fn hand_over(&mut self) -> TaskResult {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut next = self.outbox.spent.try_recv().unwrap_or_default();
        next.clear();
        let full = std::mem::replace(&mut self.buf, next);
        self.outbox
            .frames
            .blocking_send(full)
            .map_err(|_| "writer gone".to_owned())
    }
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
/// without symlinks, still the version asked for in the index and on disk. Returns the
/// version's hash with the file.
fn open_requested(
    shared: &Shared,
    request: &Request,
) -> Result<(std::fs::File, std::fs::Metadata, Hash), Refused> {
    if let Err(e) = check_path(&request.path) {
        warn!(set = %shared.config.name, error = %e, "sync: peer requested a path outside the root");
        return Err(Refused::Failed(e.to_string()));
    }
    if is_excluded(&shared.config.exclude, &request.path, false) {
        return Err(Refused::Failed("excluded".to_owned()));
    }
    let indexed = shared.index().get(&request.path).is_some_and(|e| {
        e.is_file()
            && e.size == request.size
            && e.mtime_ns == request.mtime_ns
            && e.hash == request.hash
    });
    if !indexed {
        // The index moved on: a newer entry follows.
        return Err(Refused::Stale);
    }
    let (file, meta) = match fsops::open_regular(&shared.root, &request.path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Refused::Stale),
        Err(e) => return Err(Refused::Failed(e.to_string())),
    };
    if meta.len() != request.size || mtime_ns(&meta) != request.mtime_ns {
        return Err(Refused::Stale);
    }
    Ok((file, meta, request.hash))
}

/// Whether the open file still has the size and mtime it had when opened.
fn unchanged(file: &std::fs::File, meta: &std::fs::Metadata) -> bool {
    file.metadata()
        .is_ok_and(|after| after.len() == meta.len() && mtime_ns(&after) == mtime_ns(meta))
}

/// Sends the file whole, [`PIECE`] octets per Data frame.
fn serve_whole(shared: &Shared, request: &Request, out: &mut Out) -> TaskResult {
    let id = request.id;
    let (mut file, meta, hash) = match open_requested(shared, request) {
        Ok(opened) => opened,
        Err(refused) => return out.put(&refused_message(id, refused)),
    };
    // Up to the size it had: a file that grows meanwhile is Stale below.
    let mut left = meta.len();
    while left > 0 {
        let read = out
            .buf
            .put_data_from(id, &mut file, PIECE.min(left as usize));
        match read {
            Ok(0) => break,
            Ok(n) => {
                left -= n as u64;
                Counters::add(&shared.counters.bytes_sent, n as u64);
            }
            Err(e) => return out.put(&refused_message(id, Refused::Failed(e.to_string()))),
        }
        if out.buf.len() >= HAND_OVER_AT {
            out.hand_over()?;
        }
    }
    if left > 0 || !unchanged(&file, &meta) {
        return out.put(&Message::Stale { id });
    }
    Counters::add(&shared.counters.files_sent, 1);
    out.put(&Message::End {
        id,
        hash,
        sha256: None,
    })
}

/// Sends the file as rsync deltas against the peer's signature, one window per message, read
/// a window at a time.
fn serve_delta(shared: &Shared, request: &Request, signature: Bytes, out: &mut Out) -> TaskResult {
    if request.size > delta::DELTA_MAX {
        return serve_whole(shared, request, out);
    }
    let id = request.id;
    let failed = |reason: String| Message::Failed { id, reason };
    let signature = match delta::parse_signature(signature.to_vec()) {
        Ok(signature) => signature,
        Err(e) => return out.put(&failed(e.to_string())),
    };
    let (mut file, meta, hash) = match open_requested(shared, request) {
        Ok(opened) => opened,
        Err(refused) => return out.put(&refused_message(id, refused)),
    };
    let indexed = signature.index();
    let mut window = vec![0; delta::window(&signature)];
    // Of the whole file as read to make the deltas: the receiver checks what it rebuilt.
    let mut sha256 = delta::WholeFileSha256::new();
    // Up to the size it had: a file that grows or shrinks meanwhile is Stale below.
    let mut left = meta.len();
    while left > 0 {
        let want = window
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        let read = match delta::read_full(&mut file, &mut window[..want]) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) => return out.put(&failed(e.to_string())),
        };
        left -= read as u64;
        sha256.update(&window[..read]);
        let delta = match delta::diff(&indexed, &window[..read]) {
            Ok(delta) => delta,
            Err(e) => return out.put(&failed(e.to_string())),
        };
        Counters::add(&shared.counters.bytes_sent, delta.len() as u64);
        out.put(&Message::Delta {
            id,
            delta: Bytes::from(delta),
        })?;
    }
    if left > 0 || !unchanged(&file, &meta) {
        return out.put(&Message::Stale { id });
    }
    Counters::add(&shared.counters.files_sent, 1);
    out.put(&Message::End {
        id,
        hash,
        sha256: Some(sha256.finish()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::{fs, sync::mpsc as std_mpsc, time::Duration};

    use bytes::BytesMut;

    use super::*;
    use crate::sync::{engine::testing, proto};

    /// A request for `path` as the index has it.
    fn request(shared: &Shared, id: u32, path: &str) -> Request {
        let index = shared.index();
        let e = index.get(path).unwrap();
        Request {
            id,
            path: path.to_owned(),
            size: e.size,
            mtime_ns: e.mtime_ns,
            hash: e.hash,
        }
    }

    // Input: six requests sent at once: a small file, a 3 MiB file, a version the index no
    // longer has, the small file again, a path outside the root, and a file rewritten on disk
    // since it was indexed. Output: the answers in request order, the large file in pieces of
    // at most PIECE octets, each End with the index's hash; Stale, Failed and Stale for the
    // others; every buffer handed to the writer within a hand-over plus one piece.
    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(root.path().join("a.txt"), b"small").unwrap();
        let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        fs::write(root.path().join("big.bin"), &big).unwrap();
        fs::write(root.path().join("c.txt"), b"indexed").unwrap();
        let shared = testing::shared(root.path(), state.path());
        fs::write(root.path().join("c.txt"), b"rewritten since").unwrap();
        let mut moved_on = request(&shared, 3, "a.txt");
        moved_on.mtime_ns += 1;
        let outside = Request {
            id: 5,
            path: "../x".to_owned(),
            size: 0,
            mtime_ns: 0,
            hash: [0; 32],
        };
        let (requests_tx, requests_rx) = request_queue();
        for request in [
            request(&shared, 1, "a.txt"),
            request(&shared, 2, "big.bin"),
            moved_on,
            request(&shared, 4, "a.txt"),
            outside,
            request(&shared, 6, "c.txt"),
        ] {
            requests_tx.push(Message::Get(request)).unwrap();
        }
        drop(requests_tx);

        let (frames_tx, mut frames_rx) = mpsc::channel(2);
        let (spent_tx, spent_rx) = std_mpsc::channel();
        let outbox = Outbox {
            frames: frames_tx,
            spent: spent_rx,
        };
        let server = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || serve_loop(shared, requests_rx, outbox))
        };
        let mut wire = BytesMut::new();
        while let Some(buf) = frames_rx.blocking_recv() {
            assert!(buf.len() <= HAND_OVER_AT + PIECE + 64, "{}", buf.len());
            wire.extend_from_slice(buf.as_slice());
            let _ = spent_tx.send(buf);
        }
        server.join().unwrap().unwrap();

        let mut answers = Vec::new();
        while let Some(msg) = proto::decode(&mut wire).unwrap() {
            answers.push(msg);
        }
        let hash_of = |path| shared.index().get(path).unwrap().hash;
        let mut big_received = Vec::new();
        let summary: Vec<(&str, u32)> = answers
            .iter()
            .map(|msg| match msg {
                Message::Data { id, data } => {
                    assert!(data.len() <= PIECE);
                    if *id == 2 {
                        big_received.extend_from_slice(data);
                    } else {
                        assert_eq!(&data[..], b"small");
                    }
                    ("Data", *id)
                }
                Message::End { id, hash, .. } => {
                    let path = if *id == 2 { "big.bin" } else { "a.txt" };
                    assert_eq!(*hash, hash_of(path));
                    ("End", *id)
                }
                Message::Stale { id } => ("Stale", *id),
                Message::Failed { id, .. } => ("Failed", *id),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("Data", 1),
                ("End", 1),
                ("Data", 2),
                ("Data", 2),
                ("Data", 2),
                ("End", 2),
                ("Stale", 3),
                ("Data", 4),
                ("End", 4),
                ("Failed", 5),
                ("Stale", 6),
            ]
        );
        assert_eq!(big_received, big);
    }

    /// A GetDelta for a file this node does not have, with a signature of 2 MiB.
    fn get_delta(id: u32) -> Message {
        Message::GetDelta {
            request: Request {
                id,
                path: format!("missing-{id}"),
                size: 1,
                mtime_ns: 0,
                hash: [0; 32],
            },
            signature: Bytes::from(vec![0u8; 2 << 20]),
        }
    }

    // Input: 32 GetDeltas with 2 MiB signatures (the cap, 64 MiB) waiting, then one more; then
    // the same again once the server has answered the first 32. Output: the 33rd is refused
    // (the link drops, naming why); once answered, the first 32 leave room for 32 more. (All
    // 1,024 requests the queue holds were taken, 2 GiB of signatures.)
    #[test]
    fn the_delta_signatures_waiting_to_be_served_are_capped() {
        let (requests, queued) = request_queue();
        for id in 0..32 {
            requests.push(get_delta(id)).unwrap();
        }
        let error = requests.push(get_delta(32)).unwrap_err();
        assert!(error.contains("64 MiB of delta signatures"), "{error}");

        drop(queued);

        let (requests, queued) = request_queue();
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let shared = testing::shared(root.path(), state.path());
        let (frames_tx, mut frames_rx) = mpsc::channel(2);
        let (_spent_tx, spent_rx) = std_mpsc::channel();
        let outbox = Outbox {
            frames: frames_tx,
            spent: spent_rx,
        };
        let server = std::thread::spawn(move || serve_loop(shared, queued, outbox));
        let writer = std::thread::spawn(move || while frames_rx.blocking_recv().is_some() {});
        for id in 0..32 {
            requests.push(get_delta(id)).unwrap();
        }
        let answered = std::time::Instant::now();
        while requests.signatures.load(Relaxed) > 0 {
            assert!(answered.elapsed() < Duration::from_secs(10), "not answered");
            std::thread::sleep(Duration::from_millis(5));
        }
        for id in 32..64 {
            requests.push(get_delta(id)).unwrap();
        }
        drop(requests);
        server.join().unwrap().unwrap();
        writer.join().unwrap();
    }
}
