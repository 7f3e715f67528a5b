//! Applying a peer's batch of entries, as the index module prescribes: each entry is judged
//! ([`Index::apply_remote`]), the disk is made to match, then the entry is recorded, within
//! one hold of the index lock so that a scan never sees the disk and the index disagree.
//!
//! Order within a batch: creations and modifications in path order (a directory before what
//! is in it), then deletions in reverse path order (what is in a directory before it), so that
//! a renamed file's old name still exists when its new name arrives and is moved rather than
//! transferred. Contents are fetched with a window of requests in flight; a file is written
//! under a temporary name, given its mode and mtime, checked against its content hash, synced
//! (in groups, see [`super::fetch`]) and only then renamed into place. A failed transfer is
//! reported and retried with backoff, up to
//! [`MAX_ATTEMPTS`] times: then that entry is set aside (reported, counted, not recorded) so
//! that one path failing for long (a full disk, an unreadable file on the peer, a name too
//! long here) does not stall every later change, and tried again every [`PARKED_RETRY`] (by
//! default) while the link is idle. The batch is acknowledged, so that the peer sends on, but our persisted
//! mark of the peer's index stays where it was before that batch until every entry set aside
//! is applied: after a reconnect or a restart the peer sends again from there, and the entries
//! set aside are tried again (what was applied since is up to date, and costs only its entry).

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{
    Shared, delta,
    fetch::{Fetch, Job, Source},
    fsops::{self, Applied, Deleted, disk_matches},
    session::set_mark,
    status::{Counters, SyncEvent},
};
use crate::{
    sync::{
        config::is_excluded,
        index::{
            Causality, Decision, Entry, Hash, Index, Kind, Rehash, Side, check_path, unix_ns,
            with_suffix,
        },
        proto::Message,
        watch::is_temp_name,
    },
    volume::peer::Backoff,
};

/// Attempts at one entry in a row before it is set aside.
pub(super) const MAX_ATTEMPTS: u32 = 5;

/// How often the entries set aside are tried again by default (each time up to
/// [`MAX_ATTEMPTS`] times): the longest wait of the retries' backoff.
pub(super) const PARKED_RETRY: Duration = Duration::from_secs(30);

/// The receiving half of a session.
pub(super) struct Receiver {
    shared: Arc<Shared>,
    peer: usize,
    node: String,
    index_id: u64,
    ctrl: mpsc::UnboundedSender<Message>,
    /// To the fetcher ([`super::fetch`]), which fetches the contents on a blocking thread.
    jobs: mpsc::UnboundedSender<Job>,
    backoff: Backoff,
    /// Entries set aside after [`MAX_ATTEMPTS`] failures, to be tried again at `retry_at`.
    parked: Vec<Entry>,
    retry_at: tokio::time::Instant,
    /// While entries are set aside: the mark of the peer's index to keep persisting (the one
    /// before the first one's batch), so that they are sent again after a reconnect.
    held_mark: Option<u64>,
    /// The last batch acknowledged: the mark once nothing is set aside.
    acked: u64,
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
        jobs: mpsc::UnboundedSender<Job>,
    ) -> Self {
        Self {
            shared,
            peer,
            node,
            index_id,
            jobs,
            ctrl,
            backoff: Backoff::new(Duration::from_millis(100), PARKED_RETRY),
            parked: Vec::new(),
            retry_at: tokio::time::Instant::now(),
            held_mark: None,
            acked: 0,
        }
    }

    /// Applies each batch, then acknowledges it. While a batch's contents are fetched, the
    /// next batch is prepared as soon as it comes and its fetches queued behind: the judging
    /// of its entries does not hold the transfers up, and the fetcher's window goes on from
    /// one batch to the next instead of draining at each.
    pub(super) async fn run(mut self, mut batches: mpsc::Receiver<Message>) -> Result<(), String> {
        let mut ahead: Option<Started> = None;
        let mut more = true;
        loop {
            let started = match ahead.take() {
                Some(started) => started,
                None => {
                    let msg = tokio::select! {
                        msg = batches.recv() => msg,
                        () = tokio::time::sleep_until(self.retry_at), if !self.parked.is_empty() => {
                            self.retry_parked().await?;
                            continue;
                        }
                    };
                    match msg {
                        Some(msg) => self.start_batch(msg).await?,
                        None => return Ok(()),
                    }
                }
            };
            let before = match self.shared.index().peer_mark(&self.node) {
                Some(mark) if mark.index_id == self.index_id => mark.sequence,
                _ => 0,
            };
            let Started {
                up_to,
                mut fetching,
                mut failed,
                dead,
                tombstones,
            } = started;
            let fetched = loop {
                tokio::select! {
                    fetched = finish_fetch(&mut fetching) => break fetched?,
                    msg = batches.recv(), if more && ahead.is_none() => match msg {
                        Some(msg) => ahead = Some(self.start_batch(msg).await?),
                        None => more = false,
                    },
                }
            };
            failed.extend(fetched);
            let given_up = self.complete(failed, dead, tombstones).await?;
            if !given_up.is_empty() {
                self.held_mark.get_or_insert(before);
                self.park(given_up);
            }
            self.acked = up_to;
            let mark = self.held_mark.unwrap_or(up_to);
            set_mark(&self.shared, &self.node, self.index_id, mark);
            self.shared.notify_changed();
            self.ctrl
                .send(Message::Ack { up_to })
                .map_err(|_| "writer gone".to_owned())?;
            self.shared.peer_state(self.peer).last_sync = Some(SystemTime::now());
            if !more && ahead.is_none() {
                return Ok(());
            }
        }
    }

    /// Sets entries aside, to be tried again in [`SyncOptions::parked_retry`].
    ///
    /// [`SyncOptions::parked_retry`]: super::SyncOptions::parked_retry
    fn park(&mut self, entries: Vec<Entry>) {
        if self.parked.is_empty() {
            self.retry_at = tokio::time::Instant::now() + self.shared.parked_retry;
        }
        self.parked.extend(entries);
    }

    /// Tries the entries set aside again, the way a batch's are (each judged anew against the
    /// index: a later batch may have brought a newer version); once none is left, the mark
    /// moves up to the last batch acknowledged.
    async fn retry_parked(&mut self) -> Result<(), String> {
        let (live, dead, tombstones) = in_order(std::mem::take(&mut self.parked));
        let (fetches, mut failed) = self.prepare_live(live, &tombstones).await?;
        let mut fetching = self.start_fetch(fetches)?;
        failed.extend(finish_fetch(&mut fetching).await?);
        let given_up = self.complete(failed, dead, tombstones).await?;
        if given_up.is_empty() {
            self.held_mark = None;
            set_mark(&self.shared, &self.node, self.index_id, self.acked);
            info!(set = %self.shared.config.name, peer = %self.node,
                "sync: the transfers set aside are done");
        } else {
            self.park(given_up);
        }
        self.shared.notify_changed();
        Ok(())
    }

    /// Prepares a batch and queues its fetches.
    async fn start_batch(&self, msg: Message) -> Result<Started, String> {
        let (up_to, prepared) = self.prepare_batch(msg).await?;
        let Prepared {
            fetches,
            failed,
            dead,
            tombstones,
        } = prepared;
        Ok(Started {
            up_to,
            fetching: self.start_fetch(fetches)?,
            failed,
            dead,
            tombstones,
        })
    }

    /// Sorts a batch (see the module's header) and prepares its live entries.
    async fn prepare_batch(&self, msg: Message) -> Result<(u64, Prepared), String> {
        let Message::Entries { up_to, entries } = msg else {
            return Err(format!("{} where Entries were expected", msg.name()));
        };
        let mut entries = entries;
        if !self.shared.index().tracks_owners() {
            // Not ours to apply (see [`Index::set_track_owners`]).
            entries.iter_mut().for_each(|e| e.owner = None);
        }
        let (live, dead, tombstones) = in_order(entries);
        let (fetches, failed) = self.prepare_live(live, &tombstones).await?;
        Ok((
            up_to,
            Prepared {
                fetches,
                failed,
                dead,
                tombstones,
            },
        ))
    }

    /// Prepares live entries (see [`prepare`]) in one blocking call, as most need no
    /// transfer; returns the fetches needed and the entries that failed here.
    async fn prepare_live(
        &self,
        live: Vec<Entry>,
        tombstones: &Arc<HashMap<String, Entry>>,
    ) -> Result<(Vec<Fetch>, Vec<Entry>), String> {
        let shared = Arc::clone(&self.shared);
        let tombs = Arc::clone(tombstones);
        let steps = self
            .shared
            .disk_work
            .spawn_blocking(move || {
                let mut by_hash = ByHash::new(&live);
                live.into_iter()
                    .map(|remote| {
                        let path = remote.path.clone();
                        (path, prepare(&shared, remote, &tombs, &mut by_hash))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| e.to_string())?;
        let (mut fetches, mut failed) = (Vec::new(), Vec::new());
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
        Ok((fetches, failed))
    }

    /// Applies the deletions, then retries what failed (with backoff) until it succeeds or is
    /// given up; returns the entries given up (see [`MAX_ATTEMPTS`]). The deletions come first
    /// because a live entry may wait for them: a directory replaced by a file fails while the
    /// directory still holds what this batch deletes.
    async fn complete(
        &mut self,
        failed: Vec<Entry>,
        dead: Vec<Entry>,
        tombstones: Arc<HashMap<String, Entry>>,
    ) -> Result<Vec<Entry>, String> {
        let mut attempts: HashMap<String, u32> = HashMap::new();
        let mut given_up = Vec::new();
        let mut retry_live = self.give_up_some(failed, &mut attempts, &mut given_up);

        let mut pending = dead;
        while !pending.is_empty() {
            let mut failed = Vec::new();
            for remote in pending.drain(..) {
                let shared = Arc::clone(&self.shared);
                let path = remote.path.clone();
                let done = self
                    .shared
                    .disk_work
                    .spawn_blocking(move || delete(&shared, remote))
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

        while !retry_live.is_empty() {
            tokio::time::sleep(self.backoff.next_delay()).await;
            let (fetches, mut failed) = self.prepare_live(retry_live, &tombstones).await?;
            let mut fetching = self.start_fetch(fetches)?;
            failed.extend(finish_fetch(&mut fetching).await?);
            retry_live = self.give_up_some(failed, &mut attempts, &mut given_up);
        }
        self.backoff.succeeded();
        Ok(given_up)
    }

    /// Counts one more attempt at each failed entry; returns those to retry, after giving up
    /// (reported, moved to `given_up`) those tried [`MAX_ATTEMPTS`] times.
    fn give_up_some(
        &self,
        failed: Vec<Entry>,
        attempts: &mut HashMap<String, u32>,
        given_up: &mut Vec<Entry>,
    ) -> Vec<Entry> {
        let (retry, spent): (Vec<Entry>, Vec<Entry>) = failed.into_iter().partition(|remote| {
            let n = attempts.entry(remote.path.clone()).or_insert(0);
            *n += 1;
            *n < MAX_ATTEMPTS
        });
        for remote in spent {
            self.shared.error();
            let error = format!(
                "gave up after {MAX_ATTEMPTS} attempts; tried again in {:?}",
                self.shared.parked_retry
            );
            warn!(set = %self.shared.config.name, peer = %self.node, path = %remote.path,
                %error, "sync: transfer set aside");
            self.shared.emit(SyncEvent::TransferFailed {
                path: remote.path.clone(),
                error,
            });
            given_up.push(remote);
        }
        retry
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
        report_failed(&self.shared, &self.node, path, error);
    }

    /// Queues fetches for the fetcher.
    fn start_fetch(&self, fetches: Vec<Fetch>) -> Result<Fetching, String> {
        if fetches.is_empty() {
            return Ok(None);
        }
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Job { fetches, done })
            .map_err(|_| "the fetcher is gone".to_owned())?;
        Ok(Some(result))
    }
}

/// A batch's entries in the order they are applied (see the module's header): the live ones
/// in path order, the deletions in reverse path order, and the deletions by path.
fn in_order(entries: Vec<Entry>) -> (Vec<Entry>, Vec<Entry>, Arc<HashMap<String, Entry>>) {
    let (mut dead, mut live): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| e.deleted);
    live.sort_by(|a, b| a.path.cmp(&b.path));
    dead.sort_by(|a, b| b.path.cmp(&a.path));
    let tombstones = Arc::new(dead.iter().map(|e| (e.path.clone(), e.clone())).collect());
    (live, dead, tombstones)
}

/// Waits for queued fetches to be done; returns the entries to retry. `Err` only when the link
/// is gone.
async fn finish_fetch(fetching: &mut Fetching) -> Result<Vec<Entry>, String> {
    let Some(result) = fetching else {
        return Ok(Vec::new());
    };
    result
        .await
        .map_err(|_| "the fetcher stopped: link closed".to_owned())?
}

/// Fetches queued: the entries to retry once they are all done.
type Fetching = Option<oneshot::Receiver<Result<Vec<Entry>, String>>>;

/// A batch prepared, its fetches queued.
struct Started {
    up_to: u64,
    fetching: Fetching,
    /// Entries that failed here, to retry.
    failed: Vec<Entry>,
    dead: Vec<Entry>,
    tombstones: Arc<HashMap<String, Entry>>,
}

/// A batch's live entries applied as far as they can be without the peer (see [`prepare`]).
struct Prepared {
    fetches: Vec<Fetch>,
    /// Entries that failed here, to retry.
    failed: Vec<Entry>,
    /// Its deletions, in reverse path order.
    dead: Vec<Entry>,
    /// The same, by path, for the moves found by hash.
    tombstones: Arc<HashMap<String, Entry>>,
}

/// A transfer that failed and will be retried: counted, logged and sent as an event.
pub(super) fn report_failed(shared: &Shared, node: &str, path: &str, error: &str) {
    shared.error();
    warn!(set = %shared.config.name, peer = %node, path, error,
        "sync: transfer failed, will retry");
    shared.emit(SyncEvent::TransferFailed {
        path: path.to_owned(),
        error: error.to_owned(),
    });
}

/// Why an entry was not applied.
enum Failure {
    /// Never to be applied (reported).
    Refused(String),
    /// Failed here (I/O); reported and retried.
    Retry(Box<Entry>, String),
}

/// Whether our index already has `remote`'s version of its path, or a newer one: then there
/// is nothing to do whatever the disk holds (a change not yet scanned only makes ours newer),
/// so neither the path nor the disk is looked at. Every entry a peer sends back after taking
/// it from us is such.
fn already_have(shared: &Shared, remote: &Entry) -> bool {
    shared.index().get(&remote.path).is_some_and(|local| {
        matches!(
            local.version.compare(&remote.version),
            Causality::Equal | Causality::Dominates
        )
    })
}

/// The index's files by content hash, for the hashes one batch asks for: built on first use
/// with one pass over the index (no copy of a path that no entry of the batch could use).
struct ByHash {
    wanted: HashSet<Hash>,
    map: Option<HashMap<Hash, Vec<String>>>,
}

impl ByHash {
    fn new(batch: &[Entry]) -> Self {
        let wanted = batch
            .iter()
            .filter(|e| e.kind == Kind::File && !e.deleted)
            .map(|e| e.hash)
            .collect();
        Self { wanted, map: None }
    }

    /// The paths of the index's files whose hash is `hash` (one of the batch's).
    fn paths<'a>(&'a mut self, index: &Index, hash: &Hash) -> impl Iterator<Item = &'a String> {
        let wanted = &self.wanted;
        let map = self.map.get_or_insert_with(|| {
            let mut map: HashMap<Hash, Vec<String>> = HashMap::new();
            for e in index
                .entries()
                .filter(|e| e.is_file() && wanted.contains(&e.hash))
            {
                map.entry(e.hash).or_default().push(e.path.clone());
            }
            map
        });
        map.get(hash).into_iter().flatten()
    }
}

/// The checks every peer path goes through before anything is done with it.
fn admit(shared: &Shared, remote: &Entry) -> Result<bool, Failure> {
    check_path(&remote.path).map_err(|e| Failure::Refused(e.to_string()))?;
    // Our own temporary names (the staging directory among them) are never indexed, so a
    // peer never has them: left alone, as excluded paths are.
    if remote
        .path
        .split('/')
        .any(|name| is_temp_name(name.as_bytes()))
    {
        return Ok(false);
    }
    if is_excluded(
        &shared.config.exclude,
        &remote.path,
        remote.kind == Kind::Dir,
    ) {
        return Ok(false);
    }
    match fsops::check_parents(&shared.root, &remote.path, false) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Failure::Refused(e.to_string())),
    }
}

/// Judges `remote` against the index after making sure the index describes the disk at its
/// path (scanning it first if not). Records what needs no disk change (a merge, a conflict our
/// version won); returns the entry to make the disk match, if any.
fn decide(shared: &Shared, index: &mut Index, remote: &Entry) -> Result<Option<Target>, Failure> {
    let (root, exclude) = (&shared.root, &shared.config.exclude);
    // A root that lost its marker (unmounted) takes nothing: a new file would land on the
    // filesystem below the mount point, where no scan looks for it.
    if let Err(e) = index.require_marker(root) {
        return Err(Failure::Retry(Box::new(remote.clone()), e.to_string()));
    }
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
                record_merge(shared, index, entry)
                    .map_err(|e| Failure::Retry(Box::new(remote.clone()), e.to_string()))?;
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

/// Records a merge (the same content reached on both sides), first giving our file or link
/// the merge's mtime, the newer of the two, and its owner, if they are not ours: both nodes
/// end with them.
fn record_merge(shared: &Shared, index: &mut Index, entry: Entry) -> io::Result<()> {
    let root = &shared.root;
    let ours = index.get(&entry.path);
    let owner = entry
        .owner
        .filter(|owner| ours.is_none_or(|e| e.owner != Some(*owner)));
    if entry.deleted || (ours.map(|e| e.mtime_ns) == Some(entry.mtime_ns) && owner.is_none()) {
        index.record(entry);
        return Ok(());
    }
    let path = root.join(&entry.path);
    let before = unix_ns(SystemTime::now());
    match entry.kind {
        Kind::File => {
            fsops::set_attributes(root, &entry.path, entry.mode, Some(entry.mtime_ns), owner)?;
        }
        Kind::Symlink(_) => {
            fsops::set_owner(root, &entry.path, owner)?;
            fsops::set_link_mtime(&path, entry.mtime_ns)?;
        }
        Kind::Dir => fsops::set_owner(root, &entry.path, owner)?,
    }
    record_applied(
        shared,
        index,
        fsops::recorded(&path, entry.mtime_ns, before)?.onto(entry),
    );
    Ok(())
}

/// Keeps our losing version under its conflict name (before the winner takes its place).
fn keep_loser(shared: &Shared, target: &Target) -> io::Result<()> {
    if target.conflict {
        let mut copy = target.copy.clone();
        if let Some(name) = &copy
            && fs::symlink_metadata(shared.root.join(&target.entry.path)).is_ok()
        {
            copy = Some(place_copy(&shared.root, &target.entry.path, name)?);
        }
        conflict_event(shared, &target.entry.path, copy);
    }
    Ok(())
}

/// Renames the losing `path` to its conflict copy `copy`, or, when a file has that name already
/// (two conflicts within a second), to `copy` numbered `-2`, `-3`... before its extension:
/// a conflict copy never replaces a file. Returns the name used.
fn place_copy(root: &Path, path: &str, copy: &str) -> io::Result<String> {
    for n in 1..=100 {
        let candidate = if n == 1 {
            copy.to_owned()
        } else {
            with_suffix(copy, &format!("-{n}"))
        };
        match fsops::rename_noreplace_beneath(root, path, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for the conflict copy {copy}"),
    ))
}

/// Applies a live entry as far as it can be without the peer: directories, symlinks, content
/// already here (same path, or another path: moved when the batch deletes that path). Returns
/// the fetch still needed.
fn prepare(
    shared: &Shared,
    remote: Entry,
    tombstones: &HashMap<String, Entry>,
    by_hash: &mut ByHash,
) -> Result<Option<Fetch>, Failure> {
    if already_have(shared, &remote) || !admit(shared, &remote)? {
        return Ok(None);
    }
    let retry =
        |remote: &Entry, e: io::Error| Failure::Retry(Box::new(remote.clone()), e.to_string());
    let mut index = shared.index();
    // A file our index does not know is taken as it is: whether the disk holds something
    // there (not yet scanned) is checked where it matters, before a move below or at the
    // commit of a transfer, which judges the entry again; not here as well.
    let unknown_file =
        remote.kind == Kind::File && !remote.deleted && index.get(&remote.path).is_none();
    let mut target = if unknown_file {
        Target {
            entry: remote.clone(),
            copy: None,
            conflict: false,
        }
    } else {
        let Some(target) = decide(shared, &mut index, &remote)? else {
            return Ok(None);
        };
        target
    };
    if target.entry.owner.is_none() {
        // A version from a node that does not sync owners keeps the owner the path has here,
        // rather than taking ours (root) when its content is replaced.
        target.entry.owner = index
            .get(&target.entry.path)
            .filter(|e| !e.deleted)
            .and_then(|e| e.owner);
    }
    let root = &shared.root;
    let path = root.join(&target.entry.path);
    match &target.entry.kind {
        Kind::Dir => {
            let apply = || -> io::Result<Applied> {
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        keep_loser(shared, &target)?;
                        fsops::remove_any(root, &target.entry.path)?;
                        fs::create_dir(&path)?;
                    }
                    Err(_) => {
                        fsops::make_parents(root, &target.entry.path, &|dir| {
                            known_dir(&index, dir)
                        })?;
                        fs::create_dir(&path)?;
                    }
                }
                fsops::set_attributes(
                    root,
                    &target.entry.path,
                    target.entry.mode,
                    None,
                    target.entry.owner,
                )?;
                Applied::read(&path)
            };
            let applied = apply().map_err(|e| retry(&remote, e))?;
            record_applied(shared, &mut index, applied.onto(target.entry));
            Ok(None)
        }
        Kind::Symlink(link) => {
            let apply = || -> io::Result<Applied> {
                fsops::make_parents(root, &target.entry.path, &|dir| known_dir(&index, dir))?;
                let temp = fsops::temp_path(root, &target.entry.path);
                std::os::unix::fs::symlink(link, &temp)?;
                // Removed if a step below fails (a directory in the way still holds files, and
                // the batch is tried again): not left in the tree, pointing where the peer said.
                let temp = fsops::TempPath::new(temp);
                // Set before the rename, which keeps them: the link never shows another owner
                // or mtime.
                let temp_rel = temp
                    .strip_prefix(root)
                    .ok()
                    .and_then(Path::to_str)
                    .ok_or_else(|| io::Error::other("a temporary link outside the root"))?;
                fsops::set_owner(root, temp_rel, target.entry.owner)?;
                fsops::set_link_mtime(&temp, target.entry.mtime_ns)?;
                keep_loser(shared, &target)?;
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    fsops::remove_dir_beneath(root, &target.entry.path)?;
                }
                fsops::rename_into(&temp, root, &target.entry.path)?;
                temp.keep();
                Applied::read(&path)
            };
            let applied = apply().map_err(|e| retry(&remote, e))?;
            record_applied(shared, &mut index, applied.onto(target.entry));
            Ok(None)
        }
        Kind::File => {
            let same_here = index
                .get(&target.entry.path)
                .is_some_and(|e| e.is_file() && e.hash == target.entry.hash);
            if same_here && !target.conflict {
                // The content is here: a new mode, owner or mtime only (a `chmod`, `chown` or
                // `touch` on the peer).
                let apply = || -> io::Result<Applied> {
                    let before = unix_ns(SystemTime::now());
                    fsops::set_attributes(
                        root,
                        &target.entry.path,
                        target.entry.mode,
                        Some(target.entry.mtime_ns),
                        target.entry.owner,
                    )?;
                    fsops::recorded(&path, target.entry.mtime_ns, before)
                };
                let applied = apply().map_err(|e| retry(&remote, e))?;
                // Noted like any applied change: the sync of its directory before the index
                // is saved commits the inode's change too, on the journaled filesystems of the
                // tree (one journal per filesystem), so a power cut cannot leave the index
                // recording a mode the disk lost (the next scan would send it back as ours).
                record_applied(shared, &mut index, applied.onto(target.entry));
                return Ok(None);
            }
            // The content under another name: the old name of a rename, or a copy. Each
            // candidate is checked against the index and the disk.
            let source = by_hash
                .paths(&index, &target.entry.hash)
                .filter_map(|p| index.get(p))
                .find(|e| {
                    e.is_file()
                        && e.hash == target.entry.hash
                        && e.path != target.entry.path
                        && e.size == target.entry.size
                        // Not through a directory swapped for a symlink: the file it leads to
                        // is outside the tree, and would be moved into it.
                        && fsops::check_parents(root, &e.path, false).is_ok()
                        && disk_matches(root, &e.path, Some(e))
                })
                .map(|e| e.path.clone());
            // What is at the path now: `decide` made sure the disk matches the index there,
            // so the index says it without another lstat (for a file the index does not know,
            // the disk is looked at before a move).
            let here = index.get(&target.entry.path).filter(|e| !e.deleted);
            if let Some(source) = source {
                let moved = tombstones.get(&source).filter(|tomb| {
                    shared.config.delete
                        && !target.conflict
                        && here.is_none()
                        && !(unknown_file && fs::symlink_metadata(&path).is_ok())
                        && matches!(index.apply_remote(tomb), Ok(Decision::Accept(_)))
                });
                if let Some(tomb) = moved.cloned() {
                    let apply = || -> io::Result<Applied> {
                        let before = unix_ns(SystemTime::now());
                        fsops::make_parents(root, &target.entry.path, &|dir| {
                            known_dir(&index, dir)
                        })?;
                        fsops::check_parents(root, &source, false)?;
                        fsops::set_attributes(
                            root,
                            &source,
                            target.entry.mode,
                            Some(target.entry.mtime_ns),
                            target.entry.owner,
                        )?;
                        // Both ends resolved beneath the root, so that a parent swapped for a
                        // symlink since the check fails the move rather than redirect it.
                        fsops::rename_noreplace_beneath(root, &source, &target.entry.path)?;
                        fsops::recorded(&path, target.entry.mtime_ns, before)
                    };
                    let applied = apply().map_err(|e| retry(&remote, e))?;
                    record_applied(shared, &mut index, applied.onto(target.entry));
                    record_applied(shared, &mut index, received_deletion(tomb));
                    Counters::add(&shared.counters.renames, 1);
                    return Ok(None);
                }
                fsops::make_parents(root, &target.entry.path, &|dir| known_dir(&index, dir))
                    .map_err(|e| retry(&remote, e))?;
                return Ok(Some(Fetch {
                    remote,
                    target: target.entry,
                    source: Source::Local(root.join(source)),
                }));
            }
            let delta = remote.size >= delta::DELTA_MIN
                && here.is_some_and(|e| {
                    e.is_file() && e.size >= delta::DELTA_MIN && e.size <= delta::DELTA_MAX
                });
            // Made here, where the index says what they were, rather than by the fetch.
            fsops::make_parents(root, &target.entry.path, &|dir| known_dir(&index, dir))
                .map_err(|e| retry(&remote, e))?;
            Ok(Some(Fetch {
                remote,
                target: target.entry,
                source: Source::Remote { delta },
            }))
        }
    }
}

/// The mode and owner `index` last recorded for the directory `dir`, deleted or not, for
/// [`fsops::make_parents`].
fn known_dir(index: &Index, dir: &str) -> fsops::DirAttributes {
    index
        .get(dir)
        .filter(|e| e.kind == Kind::Dir)
        .map(|e| (e.mode, e.owner))
}

/// Renames a received file into place if the entry is still to be applied (judged again: the
/// disk or the index may have moved while it was fetched). Returns whether it was.
pub(super) fn commit(
    shared: &Shared,
    remote: &Entry,
    temp: &Path,
    hash: &Hash,
) -> Result<bool, String> {
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
    // `decide` made sure the disk matches the index here: only where the index has a
    // directory can there be one to make room for (no lstat for every file).
    let maybe_dir = index
        .get(&target.entry.path)
        .is_some_and(|e| !e.deleted && e.kind == Kind::Dir);
    // The mtime and owner as the disk keeps them (a filesystem may round the sender's mtime),
    // so that the scan does not take that for a change of ours: read from the temporary file,
    // which no one else writes, and which the rename keeps.
    let applied = Applied::read(temp);
    let apply = || -> io::Result<()> {
        keep_loser(shared, &target)?;
        if maybe_dir && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            fsops::remove_dir_beneath(&shared.root, &target.entry.path)?;
        }
        // Through the parent as it is now, not as it was when the transfer began: a directory
        // on the way swapped for a symlink meanwhile fails the rename (ELOOP), it is not
        // followed out of the tree.
        fsops::rename_into(temp, &shared.root, &target.entry.path)
    };
    if let Err(e) = apply() {
        let _ = fs::remove_file(temp);
        return Err(e.to_string());
    }
    let entry = match applied {
        Ok(applied) => applied.onto(target.entry),
        Err(_) => target.entry,
    };
    record_applied(shared, &mut index, entry);
    Ok(true)
}

/// Records an entry this node has just written, moved or deleted on the disk, noting its
/// directories first: they are synced before an index that says so is saved (see
/// [`super::touched`]).
fn record_applied(shared: &Shared, index: &mut Index, entry: Entry) {
    shared.touched.note(&entry.path);
    index.record(entry);
}

/// A peer's tombstone as this node records it: dated now, when this node learnt of the
/// deletion, so that `delete_retention` counts from here. A node back after a long absence
/// then keeps the deletion as long as any other, and passes it on. Never dated earlier than
/// the peer dated it: a clock that is behind does not age it.
fn received_deletion(mut tombstone: Entry) -> Entry {
    tombstone.mtime_ns = tombstone.mtime_ns.max(unix_ns(SystemTime::now()));
    tombstone
}

/// Applies a tombstone: deletes the path (a directory only when nothing but excluded entries
/// is left in it) and records the deletion, unless `delete = false`.
fn delete(shared: &Shared, remote: Entry) -> Result<(), Failure> {
    if already_have(shared, &remote) || !admit(shared, &remote)? {
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
            record_applied(shared, &mut index, received_deletion(target.entry));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::fs;

    use super::*;
    use crate::sync::engine::testing;

    // Input: two conflicts on `a.txt` within one second, so both copies get the same name.
    // Output: the second copy is numbered; the first is kept.
    #[test]
    fn conflict_copies_within_one_second_are_numbered() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("a.txt"), b"first").unwrap();
        let copy = "a.conflict-web1-20261122-235959.txt";
        assert_eq!(place_copy(root.path(), "a.txt", copy).unwrap(), copy);
        fs::write(root.path().join("a.txt"), b"second").unwrap();
        let numbered = place_copy(root.path(), "a.txt", copy).unwrap();
        assert_eq!(numbered, "a.conflict-web1-20261122-235959-2.txt");
        assert_eq!(fs::read(root.path().join(copy)).unwrap(), b"first");
        assert_eq!(fs::read(root.path().join(&numbered)).unwrap(), b"second");
    }

    // Input: a peer's deletion of our file, found on the peer long ago (its tombstone dated
    // 1970). Output: the file is deleted, and our tombstone is dated now, so that our
    // `delete_retention` counts from when we learnt of it and we pass it on as long as any
    // node would.
    #[test]
    fn a_received_deletion_is_dated_when_it_is_received() {
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(root.path().join("f"), b"x").unwrap();
        let shared = testing::shared(root.path(), state.path());
        let mut tombstone = shared.index().get("f").unwrap().clone();
        tombstone.deleted = true;
        tombstone.mtime_ns = 5;
        tombstone.version.bump_from("b", 1);
        tombstone.modified_by = "b".to_owned();
        let before = unix_ns(SystemTime::now());

        delete(&shared, tombstone)
            .map_err(|_| "delete failed")
            .unwrap();
        assert!(!root.path().join("f").exists());
        let recorded = shared.index().get("f").unwrap().clone();
        assert!(recorded.deleted);
        assert!(recorded.mtime_ns >= before, "{}", recorded.mtime_ns);
    }

    // Input: a peer's deletion of `d/f`. Output: `d` and the root, where the deletion was
    // written, are noted to be synced before the index recording it is saved; the save syncs
    // them and forgets them.
    #[test]
    fn a_received_change_is_synced_in_its_directories_before_the_index_is_saved() {
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir(root.path().join("d")).unwrap();
        fs::write(root.path().join("d/f"), b"x").unwrap();
        let shared = testing::shared(root.path(), state.path());
        let mut tombstone = shared.index().get("d/f").unwrap().clone();
        tombstone.deleted = true;
        tombstone.version.bump_from("b", 1);
        tombstone.modified_by = "b".to_owned();

        delete(&shared, tombstone)
            .map_err(|_| "delete failed")
            .unwrap();
        assert!(!root.path().join("d/f").exists());
        assert_eq!(shared.touched.noted(), ["", "d"]);
        shared.save_index().unwrap();
        assert!(shared.touched.noted().is_empty());
    }

    // Input: the peer's `chmod 600` of a file we have with the same content. Output: the mode
    // is applied and the file's directories are noted for the sync before the index save, as
    // for any received change. (The index could be saved recording 0600 while a power cut lost
    // the chmod: the next scan then sent 0644 back to every node as this node's change.)
    #[test]
    fn a_received_mode_change_is_synced_before_the_index_is_saved() {
        use std::os::unix::fs::PermissionsExt as _;
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir(root.path().join("d")).unwrap();
        fs::write(root.path().join("d/f"), b"x").unwrap();
        let shared = testing::shared(root.path(), state.path());
        let mut chmod = shared.index().get("d/f").unwrap().clone();
        chmod.mode = 0o600;
        chmod.version.bump_from("b", 1);
        chmod.modified_by = "b".to_owned();

        let fetch = prepare(&shared, chmod, &HashMap::new(), &mut ByHash::new(&[]))
            .map_err(|_| "prepare failed")
            .unwrap();
        assert!(fetch.is_none(), "no content to fetch");
        let mode = fs::metadata(root.path().join("d/f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600);
        assert_eq!(shared.touched.noted(), ["", "d"]);
    }
}
