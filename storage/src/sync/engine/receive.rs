//! Applying a peer's batch of entries, as the index module prescribes: each entry is judged
//! ([`Index::apply_remote`]), the disk is made to match, then the entry is recorded, within
//! one hold of the index lock so that a scan never sees the disk and the index disagree.
//!
//! Order within a batch: creations and modifications in path order (a directory before what
//! is in it), then deletions in reverse path order (what is in a directory before it), so that
//! a renamed file's old name still exists when its new name arrives and is moved rather than
//! transferred. Contents are fetched with a window of requests in flight; a file is written
//! under a temporary name, fsynced, given its mode and mtime, checked against its SHA-256 and
//! only then renamed into place. A failed transfer is reported and retried with backoff, up to
//! [`MAX_ATTEMPTS`] times: then that entry is given up for this session (reported, counted,
//! not recorded) so that one path failing forever (an unreadable file on the peer, a name too
//! long here) does not stall every later change. The batch is then acknowledged, so that the
//! peer sends on, but our persisted mark of the peer's index stays where it was before that
//! batch for the rest of the session: after a reconnect or a restart the peer sends again
//! from there, and the entry given up is tried again (what was applied since is up to date,
//! and costs only its entry).

use std::{
    collections::{HashMap, VecDeque},
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{
    Shared, delta,
    fsops::{self, Deleted, TempFile, disk_matches, mtime_ns},
    session::set_mark,
    status::{Counters, SyncEvent},
};
use crate::{
    sync::{
        config::is_excluded,
        index::{Decision, Entry, Hash, Index, Kind, Rehash, Side, check_path},
        proto::{Message, Request},
    },
    volume::peer::Backoff,
};

/// Attempts at one entry in one batch before it is given up for the session.
pub(super) const MAX_ATTEMPTS: u32 = 5;

/// Requests in flight at once.
const WINDOW: usize = 64;

/// A whole file up to this size is held in memory until its end, then written in one go.
const SMALL_FILE: usize = 1024 * 1024;

/// The receiving half of a session.
pub(super) struct Receiver {
    shared: Arc<Shared>,
    peer: usize,
    node: String,
    index_id: u64,
    ctrl: mpsc::UnboundedSender<Message>,
    responses: mpsc::Receiver<Message>,
    next_id: u32,
    backoff: Backoff,
    /// Once an entry was given up: the mark of the peer's index to keep persisting (the one
    /// before that entry's batch), so that it is sent again after a reconnect.
    held_mark: Option<u64>,
}

/// How an entry's content will be obtained.
enum Source {
    /// A local file with the same content (a copy; a rename is done at once).
    Local(PathBuf),
    /// From the peer; `delta` when we have an older copy worth an rsync delta.
    Remote { delta: bool },
}

/// An entry whose content must be fetched.
struct Fetch {
    /// As the peer sent it (judged again at commit).
    remote: Entry,
    /// What will be recorded: its mode and mtime go on the file.
    target: Entry,
    source: Source,
}

/// A request in flight.
struct InFlight {
    fetch: Fetch,
    id: u32,
    temp: Option<TempFile>,
    base: Option<Arc<Vec<u8>>>,
    /// A whole file's first octets, before its temporary file exists (small files never
    /// need one before their end).
    buffer: Vec<u8>,
    received: u64,
    error: Option<String>,
}

/// A decision that changes the disk.
struct Target {
    entry: Entry,
    /// Where to keep our losing version first.
    copy: Option<String>,
    conflict: bool,
}

impl Receiver {
    pub(super) fn new(
        shared: Arc<Shared>,
        peer: usize,
        node: String,
        index_id: u64,
        ctrl: mpsc::UnboundedSender<Message>,
        responses: mpsc::Receiver<Message>,
    ) -> Self {
        Self {
            shared,
            peer,
            node,
            index_id,
            ctrl,
            responses,
            next_id: 0,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(30)),
            held_mark: None,
        }
    }

    /// Applies each batch, then acknowledges it.
    pub(super) async fn run(mut self, mut batches: mpsc::Receiver<Message>) -> Result<(), String> {
        while let Some(msg) = batches.recv().await {
            let Message::Entries { up_to, entries } = msg else {
                return Err(format!("{} where Entries were expected", msg.name()));
            };
            let before = match self.shared.index().peer_mark(&self.node) {
                Some(mark) if mark.index_id == self.index_id => mark.sequence,
                _ => 0,
            };
            let given_up = self.batch(entries).await?;
            if given_up > 0 && self.held_mark.is_none() {
                self.held_mark = Some(before);
            }
            let mark = self.held_mark.unwrap_or(up_to);
            set_mark(&self.shared, &self.node, self.index_id, mark);
            self.shared.notify_changed();
            self.ctrl
                .send(Message::Ack { up_to })
                .map_err(|_| "writer gone".to_owned())?;
            self.shared.peer_state(self.peer).last_sync = Some(SystemTime::now());
        }
        Ok(())
    }

    /// Applies one batch; returns how many entries were given up (see [`MAX_ATTEMPTS`]).
    async fn batch(&mut self, entries: Vec<Entry>) -> Result<usize, String> {
        let mut attempts: HashMap<String, u32> = HashMap::new();
        let mut given_up = 0;
        let (mut dead, mut live): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| e.deleted);
        live.sort_by(|a, b| a.path.cmp(&b.path));
        dead.sort_by(|a, b| b.path.cmp(&a.path));
        let tombstones: Arc<HashMap<String, Entry>> =
            Arc::new(dead.iter().map(|e| (e.path.clone(), e.clone())).collect());

        let mut pending = live;
        while !pending.is_empty() {
            let mut fetches = Vec::new();
            let mut failed = Vec::new();
            let shared = Arc::clone(&self.shared);
            let tombs = Arc::clone(&tombstones);
            let batch = std::mem::take(&mut pending);
            // One blocking call for the whole batch: most entries need no transfer.
            let steps = tokio::task::spawn_blocking(move || {
                let mut by_hash = None;
                batch
                    .into_iter()
                    .map(|remote| {
                        let path = remote.path.clone();
                        (path, prepare(&shared, remote, &tombs, &mut by_hash))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| e.to_string())?;
            for (path, step) in steps {
                match step {
                    Ok(Some(fetch)) => fetches.push(fetch),
                    Ok(None) => {}
                    Err(Failure::Refused(error)) => self.refused(&path, &error),
                    Err(Failure::Retry(remote, error)) => {
                        self.failed(&path, &error);
                        failed.push(*remote);
                    }
                }
            }
            failed.extend(self.fetch_all(fetches).await?);
            pending = self.give_up_some(failed, &mut attempts, &mut given_up);
            if !pending.is_empty() {
                tokio::time::sleep(self.backoff.next_delay()).await;
            }
        }

        let mut pending = dead;
        while !pending.is_empty() {
            let mut failed = Vec::new();
            for remote in pending.drain(..) {
                let shared = Arc::clone(&self.shared);
                let path = remote.path.clone();
                let done = tokio::task::spawn_blocking(move || delete(&shared, remote))
                    .await
                    .map_err(|e| e.to_string())?;
                match done {
                    Ok(()) => {}
                    Err(Failure::Refused(error)) => self.refused(&path, &error),
                    Err(Failure::Retry(remote, error)) => {
                        self.failed(&path, &error);
                        failed.push(*remote);
                    }
                }
            }
            pending = self.give_up_some(failed, &mut attempts, &mut given_up);
            if !pending.is_empty() {
                tokio::time::sleep(self.backoff.next_delay()).await;
            }
        }
        self.backoff.succeeded();
        Ok(given_up)
    }

    /// Counts one more attempt at each failed entry; returns those to retry, after giving up
    /// (reported, counted in `given_up`) those tried [`MAX_ATTEMPTS`] times.
    fn give_up_some(
        &self,
        failed: Vec<Entry>,
        attempts: &mut HashMap<String, u32>,
        given_up: &mut usize,
    ) -> Vec<Entry> {
        failed
            .into_iter()
            .filter(|remote| {
                let n = attempts.entry(remote.path.clone()).or_insert(0);
                *n += 1;
                if *n < MAX_ATTEMPTS {
                    return true;
                }
                *given_up += 1;
                self.shared.error();
                let error =
                    format!("gave up after {MAX_ATTEMPTS} attempts; tried again after a reconnect");
                warn!(set = %self.shared.config.name, peer = %self.node, path = %remote.path,
                    %error, "sync: transfer given up for this session");
                self.shared.emit(SyncEvent::TransferFailed {
                    path: remote.path.clone(),
                    error,
                });
                false
            })
            .collect()
    }

    /// An entry we will never apply (a path escaping the root, a symlinked parent).
    fn refused(&self, path: &str, error: &str) {
        self.shared.error();
        warn!(set = %self.shared.config.name, peer = %self.node, path, error, "sync: entry refused");
        self.shared.emit(SyncEvent::TransferFailed {
            path: path.to_owned(),
            error: error.to_owned(),
        });
    }

    /// A transfer that failed and will be retried.
    fn failed(&self, path: &str, error: &str) {
        self.shared.error();
        warn!(set = %self.shared.config.name, peer = %self.node, path, error,
            "sync: transfer failed, will retry");
        self.shared.emit(SyncEvent::TransferFailed {
            path: path.to_owned(),
            error: error.to_owned(),
        });
    }

    /// Fetches every content, `WINDOW` requests in flight (one delta at a time, whose base is
    /// held in memory); returns the entries to retry. `Err` only when the link is gone.
    async fn fetch_all(&mut self, fetches: Vec<Fetch>) -> Result<Vec<Entry>, String> {
        let mut queue: VecDeque<Fetch> = fetches.into();
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut failed = Vec::new();
        let mut delta_busy = false;
        loop {
            while in_flight.len() < WINDOW {
                let wants_delta = matches!(
                    queue.front(),
                    Some(Fetch {
                        source: Source::Remote { delta: true },
                        ..
                    })
                );
                if wants_delta && delta_busy {
                    break;
                }
                let Some(fetch) = queue.pop_front() else {
                    break;
                };
                match &fetch.source {
                    Source::Local(from) => {
                        if let Some(retry) = self.copy_local(&fetch, from.clone()).await? {
                            queue.push_back(retry);
                        }
                    }
                    Source::Remote { delta } => {
                        let delta = *delta;
                        match self.request(fetch, delta).await? {
                            Ok(flight) => {
                                delta_busy |= flight.base.is_some();
                                in_flight.push_back(flight);
                            }
                            Err((remote, error)) => {
                                self.failed(&remote.path, &error);
                                failed.push(remote);
                            }
                        }
                    }
                }
            }
            let Some(flight) = in_flight.pop_front() else {
                break;
            };
            if flight.base.is_some() {
                delta_busy = false;
            }
            if let Some(remote) = self.receive(flight).await? {
                failed.push(remote);
            }
        }
        Ok(failed)
    }

    /// Copies a local file with the right content; returns the fetch again (from the peer)
    /// if the copy turned out not to have it.
    async fn copy_local(&mut self, fetch: &Fetch, from: PathBuf) -> Result<Option<Fetch>, String> {
        let shared = Arc::clone(&self.shared);
        let (remote, target) = (fetch.remote.clone(), fetch.target.clone());
        let copied = tokio::task::spawn_blocking(move || {
            let temp = fsops::copy_to_temp(&shared.root, &from, &target.path)?;
            let (temp, hash) = temp.finish(target.mode, target.mtime_ns)?;
            if hash != target.hash {
                let _ = fs::remove_file(&temp);
                return Ok(false);
            }
            commit(&shared, &remote, &temp, &hash).map_err(io::Error::other)
        })
        .await
        .map_err(|e| e.to_string())?;
        match copied {
            Ok(true) => {
                Counters::add(&self.shared.counters.renames, 1);
                Ok(None)
            }
            Ok(false) | Err(_) => Ok(Some(Fetch {
                remote: fetch.remote.clone(),
                target: fetch.target.clone(),
                source: Source::Remote { delta: false },
            })),
        }
    }

    /// Creates the temporary file and sends the request. The inner `Err` is a local failure
    /// to report and retry.
    async fn request(
        &mut self,
        fetch: Fetch,
        delta: bool,
    ) -> Result<Result<InFlight, (Entry, String)>, String> {
        let shared = Arc::clone(&self.shared);
        let path = fetch.target.path.clone();
        if !delta {
            // Created on the first octets: a small file is written in one go at its end.
            return self.send_request(fetch, None, None, None);
        }
        let prepared = tokio::task::spawn_blocking(move || {
            let temp = TempFile::create(&shared.root, &path)?;
            let base = if delta {
                match read_base(&shared.root, &path) {
                    Ok(base) => Some(base),
                    Err(e) => {
                        debug!(path, error = %e, "sync: no delta base, fetching whole");
                        None
                    }
                }
            } else {
                None
            };
            let signature = base.as_ref().map(|b| delta::sign(b));
            Ok::<_, io::Error>((temp, base, signature))
        })
        .await
        .map_err(|e| e.to_string())?;
        let (temp, base, signature) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err((fetch.remote, e.to_string()))),
        };
        self.send_request(fetch, Some(temp), base, signature)
    }

    /// Sends a Get (or a GetDelta with `signature`) and returns what is in flight.
    #[allow(clippy::type_complexity, reason = "the two error levels of `request`")]
    fn send_request(
        &mut self,
        fetch: Fetch,
        temp: Option<TempFile>,
        base: Option<Vec<u8>>,
        signature: Option<Vec<u8>>,
    ) -> Result<Result<InFlight, (Entry, String)>, String> {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let request = Request {
            id,
            path: fetch.remote.path.clone(),
            size: fetch.remote.size,
            mtime_ns: fetch.remote.mtime_ns,
            hash: fetch.remote.hash,
        };
        let msg = match signature {
            Some(signature) => Message::GetDelta {
                request,
                signature: Bytes::from(signature),
            },
            None => Message::Get(request),
        };
        self.ctrl.send(msg).map_err(|_| "writer gone".to_owned())?;
        Ok(Ok(InFlight {
            fetch,
            id,
            temp,
            base: base.map(Arc::new),
            buffer: Vec::new(),
            received: 0,
            error: None,
        }))
    }

    /// Receives one request's answer into its temporary file and commits it; returns the entry
    /// if it is to be retried.
    async fn receive(&mut self, mut flight: InFlight) -> Result<Option<Entry>, String> {
        let mut delta_octets = 0u64;
        loop {
            let msg = self
                .responses
                .recv()
                .await
                .ok_or_else(|| "link closed".to_owned())?;
            match msg {
                Message::Data { id, data } if id == flight.id => {
                    flight.received += data.len() as u64;
                    Counters::add(&self.shared.counters.bytes_received, data.len() as u64);
                    self.write(&mut flight, data, false).await?;
                }
                Message::Delta { id, delta } if id == flight.id => {
                    if flight.base.is_none() {
                        return Err("a delta for a whole-file request".to_owned());
                    }
                    delta_octets += delta.len() as u64;
                    Counters::add(&self.shared.counters.bytes_received, delta.len() as u64);
                    self.write(&mut flight, delta, true).await?;
                }
                Message::End { id, hash } if id == flight.id => {
                    return self.end(flight, hash, delta_octets).await;
                }
                Message::Stale { id } if id == flight.id => {
                    debug!(path = %flight.fetch.remote.path, "sync: the peer's file moved on");
                    if let Some(temp) = flight.temp.take() {
                        let _ = tokio::task::spawn_blocking(move || temp.discard()).await;
                    }
                    return Ok(None);
                }
                Message::Failed { id, reason } if id == flight.id => {
                    if let Some(temp) = flight.temp.take() {
                        let _ = tokio::task::spawn_blocking(move || temp.discard()).await;
                    }
                    let error = format!("the peer cannot read it: {reason}");
                    self.failed(&flight.fetch.remote.path, &error);
                    return Ok(Some(flight.fetch.remote));
                }
                other => {
                    return Err(format!(
                        "{} out of order (expected answers to request {})",
                        other.name(),
                        flight.id
                    ));
                }
            }
        }
    }

    /// Writes a piece (data, or a delta applied to the base) into the temporary file. A local
    /// failure (disk full) is kept, and the rest of the answer drained, so the link stays in
    /// step.
    async fn write(
        &mut self,
        flight: &mut InFlight,
        piece: Bytes,
        is_delta: bool,
    ) -> Result<(), String> {
        if flight.error.is_some() {
            return Ok(());
        }
        if !is_delta && flight.temp.is_none() {
            if flight.buffer.len() + piece.len() <= SMALL_FILE {
                flight.buffer.extend_from_slice(&piece);
                return Ok(());
            }
            let shared = Arc::clone(&self.shared);
            let path = flight.fetch.target.path.clone();
            let buffer = std::mem::take(&mut flight.buffer);
            let created = tokio::task::spawn_blocking(move || {
                let mut temp = TempFile::create(&shared.root, &path)?;
                temp.write(&buffer)?;
                Ok::<_, io::Error>(temp)
            })
            .await
            .map_err(|e| e.to_string())?;
            match created {
                Ok(temp) => flight.temp = Some(temp),
                Err(e) => {
                    flight.error = Some(e.to_string());
                    return Ok(());
                }
            }
        }
        let Some(mut temp) = flight.temp.take() else {
            return Ok(());
        };
        let base = flight.base.clone();
        let limit = flight.fetch.target.size.saturating_sub(0);
        let (temp, result) = tokio::task::spawn_blocking(move || {
            let result = if is_delta {
                let base = base.unwrap_or_default();
                let room =
                    usize::try_from(limit.saturating_sub(temp.written)).unwrap_or(usize::MAX);
                let mut out = Vec::new();
                match delta::apply(&base, &piece, &mut out, room) {
                    Ok(()) => temp.write(&out).map_err(|e| e.to_string()),
                    Err(e) => Err(format!("delta does not apply: {e}")),
                }
            } else {
                temp.write(&piece).map_err(|e| e.to_string())
            };
            (temp, result)
        })
        .await
        .map_err(|e| e.to_string())?;
        flight.temp = Some(temp);
        if let Err(error) = result {
            flight.error = Some(error);
        }
        Ok(())
    }

    /// The answer is complete: check it and commit.
    async fn end(
        &mut self,
        mut flight: InFlight,
        sent_hash: Hash,
        delta_octets: u64,
    ) -> Result<Option<Entry>, String> {
        let temp = flight.temp.take();
        if let Some(error) = flight.error.take() {
            if let Some(temp) = temp {
                let _ = tokio::task::spawn_blocking(move || temp.discard()).await;
            }
            self.failed(&flight.fetch.remote.path, &error);
            return Ok(Some(flight.fetch.remote));
        }
        let shared = Arc::clone(&self.shared);
        let (remote, target) = (flight.fetch.remote.clone(), flight.fetch.target.clone());
        let buffer = std::mem::take(&mut flight.buffer);
        let result = tokio::task::spawn_blocking(move || {
            let temp = match temp {
                Some(temp) => temp,
                None => {
                    let create = || {
                        let mut temp = TempFile::create(&shared.root, &target.path)?;
                        temp.write(&buffer)?;
                        Ok::<_, io::Error>(temp)
                    };
                    create().map_err(|e| e.to_string())?
                }
            };
            let (path, hash) = temp
                .finish(target.mode, target.mtime_ns)
                .map_err(|e| e.to_string())?;
            if hash != sent_hash {
                let _ = fs::remove_file(&path);
                return Err("content does not match the sender's SHA-256".to_owned());
            }
            if hash != target.hash {
                // The peer's file changed after it sent the entry: a newer entry follows.
                let _ = fs::remove_file(&path);
                return Ok(false);
            }
            commit(&shared, &remote, &path, &hash)
        })
        .await
        .map_err(|e| e.to_string())?;
        match result {
            Ok(committed) => {
                if committed {
                    let counters = &self.shared.counters;
                    Counters::add(&counters.files_received, 1);
                    if flight.base.is_some() {
                        let saved = flight.fetch.target.size.saturating_sub(delta_octets);
                        Counters::add(&counters.bytes_saved_by_delta, saved);
                    }
                }
                Ok(None)
            }
            Err(error) => {
                self.failed(&flight.fetch.remote.path, &error);
                Ok(Some(flight.fetch.remote))
            }
        }
    }
}

/// Why an entry was not applied.
enum Failure {
    /// Never to be applied (reported).
    Refused(String),
    /// Failed here (I/O); reported and retried.
    Retry(Box<Entry>, String),
}

/// The checks every peer path goes through before anything is done with it.
fn admit(shared: &Shared, remote: &Entry) -> Result<bool, Failure> {
    check_path(&remote.path).map_err(|e| Failure::Refused(e.to_string()))?;
    if is_excluded(
        &shared.config.exclude,
        &remote.path,
        remote.kind == Kind::Dir,
    ) {
        return Ok(false);
    }
    match fsops::check_parents(&shared.root, &remote.path, false) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Failure::Refused(e.to_string())),
    }
}

/// Judges `remote` against the index after making sure the index describes the disk at its
/// path (scanning it first if not). Records what needs no disk change (a merge, a conflict our
/// version won); returns the entry to make the disk match, if any.
fn decide(shared: &Shared, index: &mut Index, remote: &Entry) -> Result<Option<Target>, Failure> {
    let (root, exclude) = (&shared.root, &shared.config.exclude);
    for _ in 0..3 {
        if !disk_matches(root, &remote.path, index.get(&remote.path)) {
            if let Err(e) = index.scan_under(root, exclude, &remote.path, Rehash::IfChanged) {
                return Err(Failure::Retry(Box::new(remote.clone()), e.to_string()));
            }
            continue;
        }
        let decision = index
            .apply_remote(remote)
            .map_err(|e| Failure::Refused(e.to_string()))?;
        return Ok(match decision {
            Decision::UpToDate | Decision::Ignore => None,
            Decision::Merge(entry) => {
                index.record(entry);
                None
            }
            Decision::Accept(entry) => Some(Target {
                entry,
                copy: None,
                conflict: false,
            }),
            Decision::Conflict(c) if c.winner == Side::Local => {
                // Not the merge when the peer must keep its losing version: our entry would
                // then dominate the peer's, which the peer would overwrite without a copy.
                if let Some(resolved) = c.to_record() {
                    index.record(resolved.clone());
                }
                conflict_event(shared, &remote.path, None);
                None
            }
            Decision::Conflict(c) => Some(Target {
                copy: c.local_copy_name(SystemTime::now()),
                entry: c.resolved,
                conflict: true,
            }),
        });
    }
    Err(Failure::Retry(
        Box::new(remote.clone()),
        "the local file keeps changing".to_owned(),
    ))
}

fn conflict_event(shared: &Shared, path: &str, kept_as: Option<String>) {
    Counters::add(&shared.counters.conflicts, 1);
    warn!(set = %shared.config.name, path, kept_as = kept_as.as_deref().unwrap_or("-"),
        "sync: conflict, newest wins");
    shared.emit(SyncEvent::Conflict {
        path: path.to_owned(),
        kept_as,
    });
}

/// Keeps our losing version under its conflict name (before the winner takes its place).
fn keep_loser(shared: &Shared, target: &Target) -> io::Result<()> {
    if target.conflict {
        if let Some(copy) = &target.copy {
            let from = shared.root.join(&target.entry.path);
            if fs::symlink_metadata(&from).is_ok() {
                fs::rename(&from, shared.root.join(copy))?;
            }
        }
        conflict_event(shared, &target.entry.path, target.copy.clone());
    }
    Ok(())
}

/// Applies a live entry as far as it can be without the peer: directories, symlinks, content
/// already here (same path, or another path: moved when the batch deletes that path). Returns
/// the fetch still needed.
fn prepare(
    shared: &Shared,
    remote: Entry,
    tombstones: &HashMap<String, Entry>,
    by_hash: &mut Option<HashMap<Hash, Vec<String>>>,
) -> Result<Option<Fetch>, Failure> {
    if !admit(shared, &remote)? {
        return Ok(None);
    }
    let retry =
        |remote: &Entry, e: io::Error| Failure::Retry(Box::new(remote.clone()), e.to_string());
    let mut index = shared.index();
    let Some(target) = decide(shared, &mut index, &remote)? else {
        return Ok(None);
    };
    let root = &shared.root;
    let path = root.join(&target.entry.path);
    match &target.entry.kind {
        Kind::Dir => {
            let apply = || -> io::Result<i64> {
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        keep_loser(shared, &target)?;
                        fsops::remove_any(&path)?;
                        fs::create_dir(&path)?;
                    }
                    Err(_) => {
                        fsops::check_parents(root, &target.entry.path, true)?;
                        fs::create_dir(&path)?;
                    }
                }
                fsops::set_attributes(&path, target.entry.mode, None)?;
                Ok(mtime_ns(&fs::symlink_metadata(&path)?))
            };
            let mtime = apply().map_err(|e| retry(&remote, e))?;
            index.record(Entry {
                mtime_ns: mtime,
                ..target.entry
            });
            Ok(None)
        }
        Kind::Symlink(link) => {
            let apply = || -> io::Result<i64> {
                fsops::check_parents(root, &target.entry.path, true)?;
                let temp = fsops::temp_path(root, &target.entry.path);
                std::os::unix::fs::symlink(link, &temp)?;
                keep_loser(shared, &target)?;
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    fs::remove_dir(&path)?;
                }
                fs::rename(&temp, &path)?;
                Ok(mtime_ns(&fs::symlink_metadata(&path)?))
            };
            let mtime = apply().map_err(|e| retry(&remote, e))?;
            index.record(Entry {
                mtime_ns: mtime,
                ..target.entry
            });
            Ok(None)
        }
        Kind::File => {
            let same_here = index
                .get(&target.entry.path)
                .is_some_and(|e| e.is_file() && e.hash == target.entry.hash);
            if same_here && !target.conflict {
                fsops::set_attributes(&path, target.entry.mode, Some(target.entry.mtime_ns))
                    .map_err(|e| retry(&remote, e))?;
                index.record(target.entry);
                return Ok(None);
            }
            // The content under another name: the old name of a rename, or a copy.
            // A map of the index's files by hash, built once per batch (find_by_hash is a
            // linear pass); each candidate is checked against the index and the disk.
            let by_hash = by_hash.get_or_insert_with(|| {
                let mut map: HashMap<Hash, Vec<String>> = HashMap::new();
                for e in index.entries().filter(|e| e.is_file()) {
                    map.entry(e.hash).or_default().push(e.path.clone());
                }
                map
            });
            let source = by_hash
                .get(&target.entry.hash)
                .into_iter()
                .flatten()
                .filter_map(|p| index.get(p))
                .find(|e| {
                    e.is_file()
                        && e.hash == target.entry.hash
                        && e.path != target.entry.path
                        && e.size == target.entry.size
                        && disk_matches(root, &e.path, Some(e))
                })
                .map(|e| e.path.clone());
            let here = fs::symlink_metadata(&path);
            if let Some(source) = source {
                let moved = tombstones.get(&source).filter(|tomb| {
                    shared.config.delete
                        && !target.conflict
                        && here.is_err()
                        && matches!(index.apply_remote(tomb), Ok(Decision::Accept(_)))
                });
                if let Some(tomb) = moved.cloned() {
                    let from = root.join(&source);
                    let apply = || -> io::Result<()> {
                        fsops::check_parents(root, &target.entry.path, true)?;
                        fsops::set_attributes(
                            &from,
                            target.entry.mode,
                            Some(target.entry.mtime_ns),
                        )?;
                        fs::rename(&from, &path)
                    };
                    apply().map_err(|e| retry(&remote, e))?;
                    index.record(target.entry);
                    index.record(tomb);
                    Counters::add(&shared.counters.renames, 1);
                    return Ok(None);
                }
                return Ok(Some(Fetch {
                    remote,
                    target: target.entry,
                    source: Source::Local(root.join(source)),
                }));
            }
            let delta = remote.size >= delta::DELTA_MIN
                && here.is_ok_and(|m| {
                    m.is_file() && m.len() >= delta::DELTA_MIN && m.len() <= delta::DELTA_MAX
                });
            Ok(Some(Fetch {
                remote,
                target: target.entry,
                source: Source::Remote { delta },
            }))
        }
    }
}

/// Renames a received file into place if the entry is still to be applied (judged again: the
/// disk or the index may have moved while it was fetched). Returns whether it was.
fn commit(shared: &Shared, remote: &Entry, temp: &Path, hash: &Hash) -> Result<bool, String> {
    let mut index = shared.index();
    let target = match decide(shared, &mut index, remote) {
        Ok(Some(target)) if target.entry.kind == Kind::File && target.entry.hash == *hash => target,
        Ok(_) => {
            let _ = fs::remove_file(temp);
            return Ok(false);
        }
        Err(Failure::Refused(e) | Failure::Retry(_, e)) => {
            let _ = fs::remove_file(temp);
            return Err(e);
        }
    };
    let path = shared.root.join(&target.entry.path);
    let apply = || -> io::Result<()> {
        keep_loser(shared, &target)?;
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir(&path)?;
        }
        fs::rename(temp, &path)
    };
    if let Err(e) = apply() {
        let _ = fs::remove_file(temp);
        return Err(e.to_string());
    }
    index.record(target.entry);
    Ok(true)
}

/// Applies a tombstone: deletes the path (a directory only when nothing but excluded entries
/// is left in it) and records the deletion, unless `delete = false`.
fn delete(shared: &Shared, remote: Entry) -> Result<(), Failure> {
    if !admit(shared, &remote)? {
        return Ok(());
    }
    let mut index = shared.index();
    let Some(target) = decide(shared, &mut index, &remote)? else {
        return Ok(());
    };
    if !target.entry.deleted {
        return Ok(());
    }
    if target.conflict {
        conflict_event(shared, &target.entry.path, None);
    }
    if !shared.config.delete {
        return Ok(());
    }
    match fsops::delete(&shared.root, &target.entry.path, &shared.config.exclude) {
        Ok(Deleted::Yes) => {
            index.record(target.entry);
            Counters::add(&shared.counters.deletes, 1);
            Ok(())
        }
        Ok(Deleted::NotEmpty) => {
            debug!(path = %target.entry.path, "sync: directory not empty, kept");
            Ok(())
        }
        Err(e) => Err(Failure::Retry(Box::new(remote), e.to_string())),
    }
}

/// Our older copy of `rel`, the base of a delta.
fn read_base(root: &Path, rel: &str) -> io::Result<Vec<u8>> {
    let (mut file, meta) = fsops::open_regular(root, rel)?;
    if meta.len() > delta::DELTA_MAX {
        return Err(io::Error::other("too large for a delta"));
    }
    let mut base = Vec::with_capacity(meta.len() as usize);
    io::Read::read_to_end(&mut file, &mut base)?;
    Ok(base)
}
