//! Fetching the contents the batches need, on one blocking thread for the session: requests
//! go out ahead of the answers (a window bounded by count and by octets, spanning batches),
//! the answers come back in request order and are written into temporary files as they
//! arrive, and each file is checked against its content hash at its End. There is no task hop
//! per piece or per file: the thread does the disk work itself.
//!
//! Files are committed (synced, renamed into place, recorded) in groups: as a received file
//! ends (at its End) or a local copy is made, its writeback is started, and the group is
//! synced and renamed once it holds [`GROUP_FILES`] files or [`GROUP_OCTETS`], and whenever
//! the thread would wait (for the peer's next answer, or for a job). One `fsync` per file,
//! each a journal commit, made a journaled ext4 take 7 × rsync's time for 10,000 small files;
//! a group costs about one commit.

use std::{
    collections::VecDeque,
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use tokio::sync::{
    mpsc::{self, error::TryRecvError},
    oneshot,
};
use tracing::debug;

use super::{
    Shared, delta,
    fsops::{self, TempFile, Unsynced},
    hasher::Answer,
    receive::{commit, report_failed},
    signing::{Signed, Signing},
    status::Counters,
};
use crate::sync::{
    index::{Entry, Hash},
    proto::{MAX_DATA, Message, Request},
};

/// Requests in flight at once, at most.
const WINDOW: usize = 256;

/// File octets requested and not yet received, at most (a larger file goes alone).
const WINDOW_OCTETS: u64 = 16 * 1024 * 1024;

/// A whole file up to this size is held in memory until its end, then written in one go: an
/// answer that turns out Stale never creates a file.
const SMALL_FILE: usize = 1024 * 1024;

/// Received files committed together, at most (each holds a descriptor until then).
const GROUP_FILES: usize = 64;

/// Octets of received files committed together, at most (a larger file goes alone).
const GROUP_OCTETS: u64 = 64 * 1024 * 1024;

/// How an entry's content will be obtained.
pub(super) enum Source {
    /// A local file with the same content, copied (a rename is applied before any fetch, as
    /// a move of the local file, and never comes here).
    Local(PathBuf),
    /// From the peer; `delta` when we have an older copy worth an rsync delta.
    Remote { delta: bool },
}

/// An entry whose content must be fetched.
pub(super) struct Fetch {
    /// As the peer sent it (judged again at commit).
    pub(super) remote: Entry,
    /// What will be recorded: its mode and mtime go on the file.
    pub(super) target: Entry,
    pub(super) source: Source,
}

/// One batch's fetches for the fetcher, and where the entries to retry go when they are all
/// done.
pub(super) struct Job {
    pub(super) fetches: Vec<Fetch>,
    pub(super) done: oneshot::Sender<Result<Vec<Entry>, String>>,
}

/// An open job's progress.
struct Progress {
    /// Fetches not finished yet.
    left: usize,
    /// Entries to retry.
    failed: Vec<Entry>,
    done: Option<oneshot::Sender<Result<Vec<Entry>, String>>>,
}

/// A received file, checked, its writeback started: synced and committed with its group.
struct Ready {
    job: u64,
    unsynced: Unsynced,
    hash: Hash,
    remote: Entry,
    origin: Origin,
}

/// Where a ready file's content came from, for the counters.
enum Origin {
    /// The peer; with the octets a delta saved, if it came as one.
    Peer { saved_by_delta: Option<u64> },
    /// A local file with the same content (a copy).
    Local,
}

/// A request in flight.
struct InFlight {
    fetch: Fetch,
    id: u32,
    temp: Option<TempFile>,
    /// Our older copy, when the answer is a delta against it: read where each delta copies
    /// from, never whole.
    base: Option<fs::File>,
    /// One window's content, rebuilt from a delta before it is written.
    applied: Vec<u8>,
    /// A whole file's first octets, before its temporary file exists: copied, not the
    /// pieces themselves, each of which would keep its whole read buffer (2 MiB) alive.
    pieces: Vec<u8>,
    /// Delta octets received (for the bytes a delta saved).
    delta_octets: u64,
    /// For a delta request: the SHA-256 of the file as it is rebuilt, checked at the End.
    sha256: Option<delta::WholeFileSha256>,
    error: Option<String>,
    /// Whether more octets came than the entry's size: the peer's file grew after it sent the
    /// entry (a newer entry follows), or a peer is filling our disk. The rest is drained
    /// unwritten, and the answer dropped as a changed file's is.
    outgrown: bool,
}

impl InFlight {
    /// Checks the file rebuilt from deltas against the sender's SHA-256 of it, `sent` with the
    /// End; the error to fail the transfer with, if any.
    fn check_sha256(&mut self, sent: Option<Hash>) -> Option<String> {
        let rebuilt = self.sha256.take()?.finish();
        match sent {
            Some(sent) if sent == rebuilt => None,
            Some(_) => {
                Some("the file rebuilt from deltas does not match the sender's SHA-256".to_owned())
            }
            None if self.delta_octets > 0 => Some("deltas without the sender's SHA-256".to_owned()),
            None => None,
        }
    }
}

/// The session's receiving end of file contents.
pub(super) struct Fetcher {
    shared: Arc<Shared>,
    /// The peer's node name, for reports.
    node: String,
    ctrl: mpsc::UnboundedSender<Message>,
    /// The peer's answers, in runs, hashed (see [`super::hasher`]).
    responses: mpsc::Receiver<Vec<Answer>>,
    /// The rest of the current run.
    run: VecDeque<Answer>,
    next_id: u32,
    /// Received files not committed yet, and their octets.
    group: Vec<Ready>,
    group_octets: u64,
    /// The jobs not yet done, oldest first; `first` is the number of the oldest.
    open: VecDeque<Progress>,
    first: u64,
    /// The delta fetch whose base is being signed, at most one.
    signing: Option<Signing>,
}

impl Fetcher {
    pub(super) fn new(
        shared: Arc<Shared>,
        node: String,
        ctrl: mpsc::UnboundedSender<Message>,
        responses: mpsc::Receiver<Vec<Answer>>,
    ) -> Self {
        Self {
            shared,
            node,
            ctrl,
            responses,
            run: VecDeque::new(),
            next_id: 0,
            group: Vec::new(),
            group_octets: 0,
            open: VecDeque::new(),
            first: 0,
            signing: None,
        }
    }

    /// Runs the jobs the receiver queues until it goes; `Err` when the link is gone. The
    /// window spans jobs: the next batch's requests go out while this one's last answers
    /// arrive, so the transfers do not drain and start again at every batch. Blocking.
    pub(super) fn run(&mut self, jobs: mpsc::UnboundedReceiver<Job>) -> Result<(), String> {
        let result = self.run_jobs(jobs);
        if let Some(signing) = self.signing.take() {
            signing.discard();
        }
        if self.shared.cancel.is_cancelled() {
            // A stop waits for this thread: no syncing on a disk that may hang. The files come
            // again after the next start.
            for ready in self.group.drain(..) {
                let _ = fs::remove_file(&ready.unsynced.path);
            }
        } else {
            // The files received whole and checked are committed even when the link is gone.
            self.commit_group();
        }
        result
    }

    fn run_jobs(&mut self, mut jobs: mpsc::UnboundedReceiver<Job>) -> Result<(), String> {
        let mut queue: VecDeque<(u64, Fetch)> = VecDeque::new();
        let mut in_flight: VecDeque<(u64, InFlight)> = VecDeque::new();
        let mut octets = 0u64;
        let mut delta_busy = false;
        loop {
            if queue.is_empty() && in_flight.is_empty() && self.signing.is_none() {
                // Idle: commit what was received (which reports the jobs it completes), then
                // wait for a job.
                self.commit_group();
                match jobs.blocking_recv() {
                    Some(job) => self.open_job(job, &mut queue),
                    None => return Ok(()),
                }
            }
            while let Ok(job) = jobs.try_recv() {
                self.open_job(job, &mut queue);
            }
            // Refilled only once half the window is free, then to the full: requests leave in
            // bursts, so the writer wakes (and a segment goes) once per burst, not per file.
            let refill = in_flight.is_empty()
                || (in_flight.len() <= WINDOW / 2 && octets <= WINDOW_OCTETS / 2);
            while refill
                && in_flight.len() < WINDOW
                && (in_flight.is_empty() || octets < WINDOW_OCTETS)
            {
                let wants_delta = matches!(
                    queue.front(),
                    Some((
                        _,
                        Fetch {
                            source: Source::Remote { delta: true },
                            ..
                        }
                    ))
                );
                if wants_delta && delta_busy {
                    break;
                }
                // A stopping set does not copy the rest of its queue before it ends (a stop
                // waits for this thread); what is left is fetched after the next start.
                if self.shared.cancel.is_cancelled() {
                    return Err("the set is stopping".to_owned());
                }
                let Some((job, fetch)) = queue.pop_front() else {
                    break;
                };
                let outcome = match &fetch.source {
                    Source::Local(from) => {
                        let from = from.clone();
                        if let Some(retry) = self.copy_local(job, fetch, &from) {
                            queue.push_back((job, retry));
                        }
                        continue;
                    }
                    Source::Remote { delta: true } => match self.start_signing(job, fetch) {
                        None => {
                            delta_busy = true;
                            continue;
                        }
                        failed => failed,
                    },
                    Source::Remote { delta: false } => {
                        let flight = self.request(fetch, None, None)?;
                        // Sizes are the peer's word: saturating, as a size of 2^64 - 1 must
                        // not wrap the window.
                        octets = octets.saturating_add(flight.fetch.remote.size);
                        in_flight.push_back((job, flight));
                        continue;
                    }
                };
                self.finished(job, outcome);
            }
            if self.signing.is_some() {
                // With nothing in flight there is nothing else to wait for: the refill sent
                // what it could.
                let wait = in_flight.is_empty();
                if wait {
                    if self.ctrl.is_closed() {
                        // The link is gone: the session ends without waiting for the base.
                        return Err("writer gone".to_owned());
                    }
                    self.commit_group();
                }
                if let Some((job, flight)) = self.signed(wait)? {
                    delta_busy = flight.base.is_some();
                    octets = octets.saturating_add(flight.fetch.remote.size);
                    in_flight.push_back((job, flight));
                }
            }
            if let Some((job, flight)) = in_flight.pop_front() {
                octets = octets.saturating_sub(flight.fetch.remote.size);
                if flight.base.is_some() {
                    delta_busy = false;
                }
                self.receive(job, flight)?;
            }
            self.close_done();
        }
    }

    /// Fetches every content (one job); returns the entries to retry. `Err` only when the
    /// link is gone. Blocking.
    #[cfg(test)]
    pub(super) fn fetch_all(&mut self, fetches: Vec<Fetch>) -> Result<Vec<Entry>, String> {
        let (jobs, queued) = mpsc::unbounded_channel();
        let (done, result) = oneshot::channel();
        jobs.send(Job { fetches, done })
            .map_err(|_| "not queued".to_owned())?;
        drop(jobs);
        self.run(queued)?;
        result.blocking_recv().map_err(|_| "no result".to_owned())?
    }

    /// Queues a job's fetches, numbered after the open jobs.
    fn open_job(&mut self, job: Job, queue: &mut VecDeque<(u64, Fetch)>) {
        let number = self.first + self.open.len() as u64;
        self.open.push_back(Progress {
            left: job.fetches.len(),
            failed: Vec::new(),
            done: Some(job.done),
        });
        queue.extend(job.fetches.into_iter().map(|fetch| (number, fetch)));
    }

    /// Counts one of job `job`'s fetches as finished, with the entry to retry if it failed.
    fn finished(&mut self, job: u64, outcome: Option<Entry>) {
        if let Some(progress) = usize::try_from(job - self.first)
            .ok()
            .and_then(|i| self.open.get_mut(i))
        {
            progress.left -= 1;
            progress.failed.extend(outcome);
        }
    }

    /// Reports the oldest jobs that are done, in order.
    fn close_done(&mut self) {
        while self.open.front().is_some_and(|p| p.left == 0) {
            if let Some(mut progress) = self.open.pop_front() {
                self.first += 1;
                if let Some(done) = progress.done.take() {
                    // The receiver may be gone: the session is ending.
                    let _ = done.send(Ok(progress.failed));
                }
            }
        }
    }

    /// Copies a local file with the right content into the group, as job `job`'s; returns
    /// the fetch again (from the peer) if the copy could not be made or turned out not to
    /// have that content.
    fn copy_local(&mut self, job: u64, fetch: Fetch, from: &Path) -> Option<Fetch> {
        let shared = &self.shared;
        let target = &fetch.target;
        let copied = fsops::copy_to_temp(&shared.root, shared.staging.as_ref(), from, &target.path)
            .and_then(|temp| temp.finish_unsynced(target));
        match copied {
            Ok(unsynced) if unsynced.hash == Some(target.hash) => {
                let (hash, size) = (target.hash, target.size);
                self.ready(
                    Ready {
                        job,
                        unsynced,
                        hash,
                        remote: fetch.remote,
                        origin: Origin::Local,
                    },
                    size,
                );
                None
            }
            copied => {
                if let Ok(unsynced) = copied {
                    let _ = fs::remove_file(&unsynced.path);
                }
                Some(Fetch {
                    source: Source::Remote { delta: false },
                    ..fetch
                })
            }
        }
    }

    /// Adds a file of `size` octets to the group, and commits the group if it is full.
    fn ready(&mut self, ready: Ready, size: u64) {
        self.group_octets = self.group_octets.saturating_add(size);
        self.group.push(ready);
        if self.group.len() >= GROUP_FILES || self.group_octets >= GROUP_OCTETS {
            self.commit_group();
        }
    }

    /// Starts job `job`'s delta fetch: its temporary file, and the signing of its base.
    /// Returns the entry to retry if the file could not be made (reported).
    fn start_signing(&mut self, job: u64, fetch: Fetch) -> Option<Entry> {
        let shared = &self.shared;
        let path = &fetch.target.path;
        match TempFile::create(&shared.root, shared.staging.as_ref(), path, true) {
            Ok(temp) => {
                let cancel = shared.cancel.clone();
                self.signing = Some(Signing::start(&shared.root, job, fetch, temp, cancel));
                None
            }
            Err(e) => {
                report_failed(shared, &self.node, &fetch.remote.path, &e.to_string());
                Some(fetch.remote)
            }
        }
    }

    /// The delta request whose base is signed, sent (with `wait`, after waiting a little for
    /// the signature); whole if there turned out to be no base.
    fn signed(&mut self, wait: bool) -> Result<Option<(u64, InFlight)>, String> {
        let Some(outcome) = self.signing.as_ref().and_then(|s| s.poll(wait)) else {
            return Ok(None);
        };
        let Some((job, fetch, temp)) = self.signing.take().map(Signing::into_parts) else {
            return Ok(None);
        };
        if self.shared.cancel.is_cancelled() {
            // Not a missing base: a stop, which fetches nothing more.
            temp.discard();
            return Err("the set is stopping".to_owned());
        }
        let based = outcome
            .inspect_err(|e| {
                debug!(path = %fetch.target.path, error = %e, "sync: no delta base, fetching whole");
            })
            .ok();
        Ok(Some((job, self.request(fetch, Some(temp), based)?)))
    }

    /// Sends the request: a delta against `based` (our copy and its signature) if given, else
    /// the whole file, written to `temp` if given (else created once its size is known).
    /// `Err` only when the link is gone.
    fn request(
        &mut self,
        fetch: Fetch,
        temp: Option<TempFile>,
        based: Option<Signed>,
    ) -> Result<InFlight, String> {
        let (base, signature) = based
            .map(|(file, signed)| (file, Bytes::from(signed)))
            .unzip();
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
            Some(signature) => Message::GetDelta { request, signature },
            None => Message::Get(request),
        };
        if self.ctrl.send(msg).is_err() {
            if let Some(temp) = temp {
                temp.discard();
            }
            return Err("writer gone".to_owned());
        }
        Ok(InFlight {
            fetch,
            id,
            temp,
            sha256: base.is_some().then(delta::WholeFileSha256::new),
            base,
            applied: Vec::new(),
            pieces: Vec::new(),
            delta_octets: 0,
            error: None,
            outgrown: false,
        })
    }

    /// Receives one request's answer (of job `job`) into its temporary file, and settles it or
    /// adds it to the group to commit.
    fn receive(&mut self, job: u64, mut flight: InFlight) -> Result<(), String> {
        loop {
            let Answer { msg, received } = self.next_response()?;
            match msg {
                Message::Data { id, data } if id == flight.id => {
                    Counters::add(&self.shared.counters.bytes_received, data.len() as u64);
                    self.write(&mut flight, data, false);
                }
                Message::Delta { id, delta } if id == flight.id => {
                    if flight.base.is_none() {
                        return Err("a delta for a whole-file request".to_owned());
                    }
                    flight.delta_octets += delta.len() as u64;
                    Counters::add(&self.shared.counters.bytes_received, delta.len() as u64);
                    self.write(&mut flight, delta, true);
                }
                Message::End { id, hash, sha256 } if id == flight.id => {
                    if let Some(error) = flight.check_sha256(sha256) {
                        flight.error.get_or_insert(error);
                    }
                    self.end(job, flight, hash, received);
                    return Ok(());
                }
                Message::Stale { id } if id == flight.id => {
                    debug!(path = %flight.fetch.remote.path, "sync: the peer's file moved on");
                    if let Some(temp) = flight.temp.take() {
                        temp.discard();
                    }
                    self.finished(job, None);
                    return Ok(());
                }
                Message::Failed { id, reason } if id == flight.id => {
                    if let Some(temp) = flight.temp.take() {
                        temp.discard();
                    }
                    let error = format!("the peer cannot read it: {reason}");
                    report_failed(&self.shared, &self.node, &flight.fetch.remote.path, &error);
                    self.finished(job, Some(flight.fetch.remote));
                    return Ok(());
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

    /// The peer's next answer, waiting for it (after committing the group: nothing else
    /// would for as long as the wait). `Err` when the link is gone.
    fn next_response(&mut self) -> Result<Answer, String> {
        loop {
            if let Some(msg) = self.run.pop_front() {
                return Ok(msg);
            }
            let run = match self.responses.try_recv() {
                Ok(run) => run,
                Err(TryRecvError::Empty) => {
                    self.commit_group();
                    self.responses.blocking_recv().ok_or("link closed")?
                }
                Err(TryRecvError::Disconnected) => return Err("link closed".to_owned()),
            };
            self.run = run.into();
        }
    }

    /// Writes a piece (data, or a delta applied to the base) into the temporary file. A local
    /// failure (disk full) is kept, and the rest of the answer drained, so the link stays in
    /// step.
    fn write(&self, flight: &mut InFlight, piece: Bytes, is_delta: bool) {
        if flight.error.is_some() || flight.outgrown {
            return;
        }
        if !is_delta {
            // The hash check at the end would drop a longer file too, but only once the peer
            // had filled the disk with it.
            let written = flight
                .temp
                .as_ref()
                .map_or(flight.pieces.len() as u64, |t| t.written);
            if written.saturating_add(piece.len() as u64) > flight.fetch.target.size {
                flight.outgrown = true;
                return;
            }
        }
        if !is_delta && flight.temp.is_none() {
            if flight.pieces.len() + piece.len() <= SMALL_FILE {
                flight.pieces.extend_from_slice(&piece);
                return;
            }
            let created = self.create_temp(&flight.fetch.target.path, &mut flight.pieces);
            match created {
                Ok(temp) => flight.temp = Some(temp),
                Err(e) => {
                    flight.error = Some(e.to_string());
                    return;
                }
            }
        }
        let Some(temp) = flight.temp.as_mut() else {
            return;
        };
        let result = if is_delta {
            let Some(base) = flight.base.as_ref() else {
                flight.error = Some("a delta without a base".to_owned());
                return;
            };
            // A window rebuilds at most MAX_DATA octets: a larger claim is refused before any
            // memory is taken for it.
            let room = flight.fetch.target.size.saturating_sub(temp.written);
            let room = usize::try_from(room).unwrap_or(usize::MAX).min(MAX_DATA);
            flight.applied.clear();
            match delta::apply(base, &piece, &mut flight.applied, room) {
                Ok(()) => temp.write(&flight.applied).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        } else {
            temp.write(&piece).map_err(|e| e.to_string())
        };
        match result {
            Err(error) => flight.error = Some(error),
            Ok(()) => {
                if let Some(sha256) = &mut flight.sha256 {
                    sha256.update(if is_delta { &flight.applied } else { &piece });
                }
            }
        }
    }

    /// The temporary file of a whole-file answer for `rel`, holding the octets buffered so
    /// far (`pieces`, emptied).
    fn create_temp(&self, rel: &str, pieces: &mut Vec<u8>) -> io::Result<TempFile> {
        // The hasher hashes whole-file answers: not again here.
        let mut temp =
            TempFile::create(&self.shared.root, self.shared.staging.as_ref(), rel, false)?;
        let buffered = std::mem::take(pieces);
        if !buffered.is_empty()
            && let Err(e) = temp.write(&buffered)
        {
            temp.discard();
            return Err(e);
        }
        Ok(temp)
    }

    /// The answer is complete: check it (hashed by the temporary file as it was written, or
    /// else by the hasher as it arrived), and add it to the group to commit, or settle it.
    fn end(&mut self, job: u64, mut flight: InFlight, sent_hash: Hash, received: Option<Hash>) {
        let temp = flight.temp.take();
        if flight.outgrown && flight.error.is_none() {
            if let Some(temp) = temp {
                temp.discard();
            }
            self.finished(job, None);
            return;
        }
        if let Some(error) = flight.error.take() {
            if let Some(temp) = temp {
                temp.discard();
            }
            report_failed(&self.shared, &self.node, &flight.fetch.remote.path, &error);
            self.finished(job, Some(flight.fetch.remote));
            return;
        }
        let mut pieces = std::mem::take(&mut flight.pieces);
        let target = &flight.fetch.target;
        let checked = || -> Result<Option<(Unsynced, Hash)>, String> {
            let temp = match temp {
                Some(temp) => temp,
                None => self
                    .create_temp(&target.path, &mut pieces)
                    .map_err(|e| e.to_string())?,
            };
            let unsynced = temp.finish_unsynced(target).map_err(|e| e.to_string())?;
            let Some(hash) = unsynced.hash.or(received) else {
                let _ = fs::remove_file(&unsynced.path);
                return Err("the content was not hashed".to_owned());
            };
            if hash != sent_hash {
                let _ = fs::remove_file(&unsynced.path);
                return Err("content does not match the sender's hash".to_owned());
            }
            if hash != target.hash {
                // The peer's file changed after it sent the entry: a newer entry follows.
                let _ = fs::remove_file(&unsynced.path);
                return Ok(None);
            }
            Ok(Some((unsynced, hash)))
        };
        match checked() {
            Ok(Some((unsynced, hash))) => {
                let saved_by_delta = flight
                    .base
                    .is_some()
                    .then(|| target.size.saturating_sub(flight.delta_octets));
                let size = target.size;
                self.ready(
                    Ready {
                        job,
                        unsynced,
                        hash,
                        remote: flight.fetch.remote,
                        origin: Origin::Peer { saved_by_delta },
                    },
                    size,
                );
            }
            Ok(None) => self.finished(job, None),
            Err(error) => {
                report_failed(&self.shared, &self.node, &flight.fetch.remote.path, &error);
                self.finished(job, Some(flight.fetch.remote));
            }
        }
    }

    /// Syncs the group's files, then renames them into place and records them, in the order
    /// they came. Their writeback started as each ended, so the first sync commits the journal
    /// for them all, and the others find their data on the disk already.
    fn commit_group(&mut self) {
        let group = std::mem::take(&mut self.group);
        self.group_octets = 0;
        let synced: Vec<_> = group
            .into_iter()
            .map(|ready| {
                let synced = ready.unsynced.file.sync_all();
                (ready, synced)
            })
            .collect();
        for (ready, synced) in synced {
            let Ready {
                job,
                unsynced,
                hash,
                remote,
                origin,
            } = ready;
            let Unsynced { path, file, .. } = unsynced;
            drop(file);
            let committed = match synced {
                Ok(()) => commit(&self.shared, &remote, &path, &hash),
                Err(e) => {
                    let _ = fs::remove_file(&path);
                    Err(e.to_string())
                }
            };
            let counters = &self.shared.counters;
            let outcome = match committed {
                Ok(true) => {
                    match origin {
                        Origin::Peer { saved_by_delta } => {
                            Counters::add(&counters.files_received, 1);
                            if let Some(saved) = saved_by_delta {
                                Counters::add(&counters.bytes_saved_by_delta, saved);
                            }
                        }
                        Origin::Local => Counters::add(&counters.renames, 1),
                    }
                    None
                }
                Ok(false) => None,
                Err(error) => {
                    report_failed(&self.shared, &self.node, &remote.path, &error);
                    Some(remote)
                }
            };
            self.finished(job, outcome);
        }
        // Now, not once the answer being received ends: a batch's Ack (and its deletions)
        // must not wait for the next batch's large file.
        self.close_done();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::{collections::HashMap, fs, os::unix::fs::PermissionsExt, thread, time::Duration};

    use super::*;
    use crate::sync::{
        engine::{hasher, testing},
        index::{Kind, VersionVector},
    };

    /// Peer "b"'s entry for `path` holding `content`.
    fn entry(path: &str, content: &[u8]) -> Entry {
        let hash = crate::sync::index::content_hash(content);
        Entry {
            path: path.to_owned(),
            kind: Kind::File,
            size: content.len() as u64,
            mtime_ns: 1_700_000_000_000_000_000,
            mode: 0o644,
            owner: None,
            hash,
            version: [("b", 1)].into_iter().collect::<VersionVector>(),
            modified_by: "b".to_owned(),
            deleted: false,
            sequence: 1,
        }
    }

    // Input: 600 small files, then 4 of 6 MiB, fetched from a peer that answers in order but
    // holds back (100 ms) before the first answer and before the first large file. Output: the
    // count fills the window exactly, the octets never exceed the window by more than one file,
    // requests leave in bursts (the window refills only once half of it is free), and every
    // file is committed with its content, through the hasher.
    #[test]
    fn the_request_window_is_bounded_by_count_and_octets() {
        const LARGE: usize = 6 << 20;
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let shared = testing::shared(root.path(), state.path());
        let contents: Vec<(String, Vec<u8>)> = (0..600)
            .map(|i| (format!("s/{i:03}.txt"), vec![i as u8; 1000]))
            .chain((0..4).map(|i| (format!("l/{i}.bin"), vec![i as u8; LARGE])))
            .collect();
        let fetches = contents
            .iter()
            .map(|(path, content)| Fetch {
                remote: entry(path, content),
                target: entry(path, content),
                source: Source::Remote { delta: false },
            })
            .collect();

        let (ctrl_tx, mut ctrl_rx) = mpsc::unbounded_channel();
        let (runs_tx, runs_rx) = mpsc::channel(4);
        let (answers_tx, answers_rx) = mpsc::channel(4);
        thread::spawn(move || hasher::hash_loop(runs_rx, answers_tx));
        let by_path: HashMap<String, Vec<u8>> = contents.iter().cloned().collect();
        let total = contents.len();
        let peer = thread::spawn(move || {
            let mut outstanding = VecDeque::new();
            let (mut octets, mut max_count, mut max_octets) = (0, 0, 0);
            let (mut bursts, mut held_large) = (0, false);
            thread::sleep(Duration::from_millis(100));
            let mut answered = 0;
            while answered < total {
                let mut burst = false;
                while let Ok(msg) = ctrl_rx.try_recv() {
                    let Message::Get(request) = msg else {
                        panic!("{msg:?}")
                    };
                    octets += request.size;
                    outstanding.push_back(request);
                    burst = true;
                }
                bursts += usize::from(burst);
                let is_large = |r: &Request| r.size as usize == LARGE;
                if !held_large && outstanding.iter().any(is_large) {
                    held_large = true;
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
                max_count = max_count.max(outstanding.len());
                max_octets = max_octets.max(octets);
                let request = loop {
                    match outstanding.pop_front() {
                        Some(request) => break request,
                        None => match ctrl_rx.blocking_recv() {
                            Some(Message::Get(request)) => {
                                octets += request.size;
                                outstanding.push_back(request);
                            }
                            other => panic!("{other:?}"),
                        },
                    }
                };
                octets -= request.size;
                let content = &by_path[&request.path];
                let mut run: Vec<Message> = content
                    .chunks(1 << 20)
                    .map(|piece| Message::Data {
                        id: request.id,
                        data: Bytes::copy_from_slice(piece),
                    })
                    .collect();
                let (id, hash) = (request.id, request.hash);
                run.push(Message::End {
                    id,
                    hash,
                    sha256: None,
                });
                runs_tx.blocking_send(run).unwrap();
                answered += 1;
            }
            (max_count, max_octets, bursts)
        });

        let mut fetcher = Fetcher::new(Arc::clone(&shared), "b".to_owned(), ctrl_tx, answers_rx);
        let failed = fetcher.fetch_all(fetches).unwrap();
        assert!(failed.is_empty());
        let (max_count, max_octets, bursts) = peer.join().unwrap();
        assert_eq!(max_count, WINDOW);
        assert!(max_octets > WINDOW_OCTETS, "{max_octets}");
        assert!(max_octets <= WINDOW_OCTETS + LARGE as u64, "{max_octets}");
        assert!(bursts < total / 16, "{bursts} bursts of requests");
        for (path, content) in &contents {
            assert_eq!(
                &fs::read(root.path().join(path)).unwrap(),
                content,
                "{path}"
            );
        }
        assert_eq!(shared.index().len(), contents.len());
    }

    // Input: in one job, two copies of a local file and a "copy" whose local source does not
    // hold the content the entry names. Output: the two copies are made from the local file
    // (counted as renames, with the entry's mode and mtime); the third is fetched from the
    // peer instead, and is the only file received.
    #[test]
    fn local_copies_join_the_group_and_a_wrong_one_is_fetched() {
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(root.path().join("orig.txt"), b"same").unwrap();
        let shared = testing::shared(root.path(), state.path());
        let local = |path: &str, content: &[u8]| {
            let mut target = entry(path, content);
            target.mode = 0o640;
            Fetch {
                remote: target.clone(),
                target,
                source: Source::Local(root.path().join("orig.txt")),
            }
        };
        let fetches = vec![
            local("copy1.txt", b"same"),
            local("stale.txt", b"other"),
            local("copy2.txt", b"same"),
        ];

        let (ctrl_tx, mut ctrl_rx) = mpsc::unbounded_channel();
        let (runs_tx, runs_rx) = mpsc::channel(4);
        let (answers_tx, answers_rx) = mpsc::channel(4);
        thread::spawn(move || hasher::hash_loop(runs_rx, answers_tx));
        let peer = thread::spawn(move || {
            let Some(Message::Get(request)) = ctrl_rx.blocking_recv() else {
                panic!("no request")
            };
            let run = vec![
                Message::Data {
                    id: request.id,
                    data: Bytes::from_static(b"other"),
                },
                Message::End {
                    id: request.id,
                    hash: request.hash,
                    sha256: None,
                },
            ];
            runs_tx.blocking_send(run).unwrap();
            request.path
        });
        let mut fetcher = Fetcher::new(Arc::clone(&shared), "b".to_owned(), ctrl_tx, answers_rx);
        assert!(fetcher.fetch_all(fetches).unwrap().is_empty());
        assert_eq!(peer.join().unwrap(), "stale.txt", "the one request");

        for (path, content) in [
            ("copy1.txt", &b"same"[..]),
            ("copy2.txt", b"same"),
            ("stale.txt", b"other"),
        ] {
            let path = root.path().join(path);
            assert_eq!(fs::read(&path).unwrap(), content);
            let meta = fs::metadata(&path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
            assert_eq!(fsops::mtime_ns(&meta), 1_700_000_000_000_000_000);
        }
        let counters = shared.counters.snapshot();
        assert_eq!((counters.renames, counters.files_received), (2, 1));
    }

    // Input: a delta fetch of a 64 MiB file whose older copy is here, queued before a small
    // whole file. Output: the small file's Get leaves first, while the base is still being
    // signed (some 60 ms at 1 GB/s), then the GetDelta with the base's signature; both are
    // answered and settled. Signed inline, the GetDelta would leave first.
    #[test]
    fn requests_go_out_while_a_delta_base_is_signed() {
        const BASE: usize = 64 << 20;
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let base: Vec<u8> = (0..BASE).map(|i| (i % 251) as u8).collect();
        fs::write(root.path().join("big.bin"), &base).unwrap();
        let shared = testing::shared(root.path(), state.path());
        let mut newer = base;
        newer[0] ^= 1;
        let fetches = vec![
            Fetch {
                remote: entry("big.bin", &newer),
                target: entry("big.bin", &newer),
                source: Source::Remote { delta: true },
            },
            Fetch {
                remote: entry("small.txt", b"small"),
                target: entry("small.txt", b"small"),
                source: Source::Remote { delta: false },
            },
        ];

        let (ctrl_tx, mut ctrl_rx) = mpsc::unbounded_channel();
        let (runs_tx, runs_rx) = mpsc::channel(4);
        let (answers_tx, answers_rx) = mpsc::channel(4);
        thread::spawn(move || hasher::hash_loop(runs_rx, answers_tx));
        let peer = thread::spawn(move || {
            let mut order = Vec::new();
            while order.len() < 2 {
                let run = match ctrl_rx.blocking_recv() {
                    Some(Message::Get(request)) => {
                        order.push(format!("Get {}", request.path));
                        vec![
                            Message::Data {
                                id: request.id,
                                data: Bytes::from_static(b"small"),
                            },
                            Message::End {
                                id: request.id,
                                hash: request.hash,
                                sha256: None,
                            },
                        ]
                    }
                    Some(Message::GetDelta { request, signature }) => {
                        order.push(format!("GetDelta {} signed", request.path));
                        assert!(!signature.is_empty());
                        // The peer's file moved on: settled without content.
                        vec![Message::Stale { id: request.id }]
                    }
                    other => panic!("{other:?}"),
                };
                runs_tx.blocking_send(run).unwrap();
            }
            order
        });
        let mut fetcher = Fetcher::new(Arc::clone(&shared), "b".to_owned(), ctrl_tx, answers_rx);
        assert!(fetcher.fetch_all(fetches).unwrap().is_empty());
        assert_eq!(
            peer.join().unwrap(),
            ["Get small.txt", "GetDelta big.bin signed"]
        );
        assert_eq!(fs::read(root.path().join("small.txt")).unwrap(), b"small");
        assert_eq!(fs::read(root.path().join("big.bin")).unwrap().len(), BASE);
    }

    /// Fetches a 512 KiB file as a delta against an older copy, from a peer that diffs it
    /// properly and ends with `sha256` (given the true SHA-256 of the new content); returns
    /// the entries to retry and the file then on disk.
    fn fetch_as_delta(
        sha256: impl FnOnce(Hash) -> Option<Hash> + Send + 'static,
    ) -> (Vec<Entry>, Vec<u8>) {
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let old: Vec<u8> = (0..512u32 << 10).map(|i| (i % 253) as u8).collect();
        fs::write(root.path().join("doc.bin"), &old).unwrap();
        let shared = testing::shared(root.path(), state.path());
        let mut new = old.clone();
        new[1000..1100].fill(7);
        // A version after ours (the scan's), so that it replaces it.
        let mut newer = entry("doc.bin", &new);
        newer.version = shared.index().get("doc.bin").unwrap().version.clone();
        newer.version.set("b", 1);
        let fetches = vec![Fetch {
            remote: newer.clone(),
            target: newer,
            source: Source::Remote { delta: true },
        }];
        let (ctrl_tx, mut ctrl_rx) = mpsc::unbounded_channel();
        let (runs_tx, runs_rx) = mpsc::channel(4);
        let (answers_tx, answers_rx) = mpsc::channel(4);
        thread::spawn(move || hasher::hash_loop(runs_rx, answers_tx));
        thread::spawn(move || {
            let Some(Message::GetDelta { request, signature }) = ctrl_rx.blocking_recv() else {
                panic!("no GetDelta")
            };
            let signature = delta::parse_signature(signature.to_vec()).unwrap();
            let diff = delta::diff(&signature.index(), &new).unwrap();
            let mut whole = delta::WholeFileSha256::new();
            whole.update(&new);
            let run = vec![
                Message::Delta {
                    id: request.id,
                    delta: Bytes::from(diff),
                },
                Message::End {
                    id: request.id,
                    hash: request.hash,
                    sha256: sha256(whole.finish()),
                },
            ];
            runs_tx.blocking_send(run).unwrap();
        });
        let mut fetcher = Fetcher::new(Arc::clone(&shared), "b".to_owned(), ctrl_tx, answers_rx);
        let failed = fetcher.fetch_all(fetches).unwrap();
        (failed, fs::read(root.path().join("doc.bin")).unwrap())
    }

    // Input: a file fetched as a delta, ended with the sender's SHA-256 of the whole file; with
    // another SHA-256; with none. Output: the first is rebuilt and in place; the other two
    // fail (to be retried), and the older copy stays.
    #[test]
    fn a_file_rebuilt_from_deltas_is_checked_against_the_senders_sha256() {
        let (failed, content) = fetch_as_delta(Some);
        assert!(failed.is_empty());
        assert_eq!(&content[1000..1100], &[7; 100]);

        for wrong in [
            Box::new(|_| Some([9u8; 32])) as Box<dyn FnOnce(Hash) -> Option<Hash> + Send>,
            Box::new(|_| None),
        ] {
            let (failed, content) = fetch_as_delta(wrong);
            assert_eq!(failed.len(), 1, "the transfer failed");
            assert_eq!(content[1000], (1000 % 253) as u8, "the older copy stays");
        }
    }

    // Input: two jobs of one file each, from a peer that answers the second request only once
    // the first job is reported done. Output: the first job is reported done (its file
    // committed) while the second file is still awaited; had its report waited for the next
    // answer to end, neither would ever come.
    #[test]
    fn a_job_is_reported_done_without_waiting_for_the_next_answer() {
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let shared = testing::shared(root.path(), state.path());
        let (first, second) = (b"first".as_slice(), b"second".as_slice());
        let job = |path: &str, content: &[u8]| {
            let (done, result) = oneshot::channel();
            let fetches = vec![Fetch {
                remote: entry(path, content),
                target: entry(path, content),
                source: Source::Remote { delta: false },
            }];
            (Job { fetches, done }, result)
        };
        let (job_a, done_a) = job("a.txt", first);
        let (job_b, done_b) = job("b.txt", second);

        let (ctrl_tx, mut ctrl_rx) = mpsc::unbounded_channel();
        let (runs_tx, runs_rx) = mpsc::channel(4);
        let (answers_tx, answers_rx) = mpsc::channel(4);
        thread::spawn(move || hasher::hash_loop(runs_rx, answers_tx));
        let (a_done_tx, a_done_rx) = std::sync::mpsc::channel::<()>();
        let peer = thread::spawn(move || {
            let mut answer = |content: &[u8]| {
                let Some(Message::Get(request)) = ctrl_rx.blocking_recv() else {
                    panic!("no request")
                };
                let run = vec![
                    Message::Data {
                        id: request.id,
                        data: Bytes::copy_from_slice(content),
                    },
                    Message::End {
                        id: request.id,
                        hash: request.hash,
                        sha256: None,
                    },
                ];
                runs_tx.blocking_send(run).unwrap();
            };
            answer(first);
            // Held until the first job is reported (or the test gave up on it).
            let _ = a_done_rx.recv_timeout(Duration::from_secs(10));
            answer(second);
        });

        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        jobs_tx.send(job_a).unwrap();
        jobs_tx.send(job_b).unwrap();
        drop(jobs_tx);
        let mut fetcher = Fetcher::new(Arc::clone(&shared), "b".to_owned(), ctrl_tx, answers_rx);
        let fetching = thread::spawn(move || fetcher.run(jobs_rx));

        let (reported_tx, reported_rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let _ = reported_tx.send(done_a.blocking_recv());
        });
        let reported = reported_rx.recv_timeout(Duration::from_secs(5));
        let _ = a_done_tx.send(());
        let failed = reported
            .expect("the first job is reported before the second answer")
            .unwrap()
            .unwrap();
        assert!(failed.is_empty());
        assert_eq!(fs::read(root.path().join("a.txt")).unwrap(), first);

        assert!(done_b.blocking_recv().unwrap().unwrap().is_empty());
        fetching.join().unwrap().unwrap();
        peer.join().unwrap();
        assert_eq!(fs::read(root.path().join("b.txt")).unwrap(), second);
    }

    /// The largest file under `dir`, however deep (temporary and staged files included).
    fn largest_file(dir: &Path) -> u64 {
        let mut largest = 0;
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            largest = largest.max(if meta.is_dir() {
                largest_file(&entry.path())
            } else {
                meta.len()
            });
        }
        largest
    }

    // Input: an entry of 4 KiB, whose answer brings 3 MiB (the peer's file grew since, or a
    // peer filling our disk). Output: while the answer arrives, no file under the root holds
    // more than the entry's 4 KiB; at its end the file is dropped as a changed one is (no
    // failure, no file), for the newer entry to bring it.
    #[test]
    fn an_answer_longer_than_its_entry_is_not_written_past_the_entrys_size() {
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let shared = testing::shared(root.path(), state.path());
        let small = vec![7u8; 4096];
        let fetches = vec![Fetch {
            remote: entry("grew.log", &small),
            target: entry("grew.log", &small),
            source: Source::Remote { delta: false },
        }];
        let (ctrl_tx, mut ctrl_rx) = mpsc::unbounded_channel();
        let (runs_tx, runs_rx) = mpsc::channel(4);
        let (answers_tx, answers_rx) = mpsc::channel(4);
        thread::spawn(move || hasher::hash_loop(runs_rx, answers_tx));
        let watched = root.path().to_owned();
        let peer = thread::spawn(move || {
            let Some(Message::Get(request)) = ctrl_rx.blocking_recv() else {
                panic!("no request")
            };
            let grown = vec![7u8; 3 << 20];
            let run = grown
                .chunks(1 << 20)
                .map(|piece| Message::Data {
                    id: request.id,
                    data: Bytes::copy_from_slice(piece),
                })
                .collect();
            runs_tx.blocking_send(run).unwrap();
            // Time for the fetcher to take the pieces before the End comes.
            let mut largest = 0;
            for _ in 0..30 {
                thread::sleep(Duration::from_millis(10));
                largest = largest.max(largest_file(&watched));
            }
            let end = Message::End {
                id: request.id,
                hash: crate::sync::index::content_hash(&grown),
                sha256: None,
            };
            runs_tx.blocking_send(vec![end]).unwrap();
            largest
        });
        let mut fetcher = Fetcher::new(Arc::clone(&shared), "b".to_owned(), ctrl_tx, answers_rx);
        let failed = fetcher.fetch_all(fetches).unwrap();
        let largest = peer.join().unwrap();
        assert!(largest <= 4096, "a file of {largest} octets was written");
        assert!(failed.is_empty(), "{failed:?}");
        assert!(!root.path().join("grew.log").exists());
        assert_eq!(largest_file(root.path()), 0, "a temporary file is left");
    }
}
