//! A running sync set: the index kept up to date from the watcher, a link to each peer, index
//! deltas sent both ways and contents fetched, so that either node's directory can take
//! uploads.
//!
//! - [`local`]: start-up scan, the watcher's batches into the index, periodic index saves.
//! - [`link`]: who dials whom (the lower `listen` dials, as the volume engine), authentication
//!   with backoff, the Hello.
//! - [`session`]: one authenticated connection: its reader, writer and the sender of our index
//!   delta.
//! - [`serve`]: the server of our files, on a blocking thread.
//! - [`receive`]: applying a peer's entries: decisions, renames found by hash, deletions,
//!   conflicts; [`fetch`] transfers the contents (whole or rsync delta) into temporary files
//!   renamed into place, on a blocking thread, with [`hasher`] hashing what arrives and
//!   [`staging`] keeping the temporary files out of the watcher's sight; [`touched`] fsyncs the
//!   directories they changed before the index that records it is saved.
//!
//! The index is the only queue: what a peer has not acknowledged is what its mark lags behind,
//! so a peer that is down costs no memory here.

mod delta;
mod fetch;
mod fsops;
mod hasher;
mod link;
mod local;
mod receive;
mod serve;
mod session;
mod signing;
mod staging;
mod startup;
mod status;
#[cfg(test)]
mod testing;
mod touched;

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::{
    net::TcpListener,
    sync::{Notify, broadcast, watch},
    task::JoinHandle,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::info;

pub use startup::{ScanHook, describe as describe_scan};
pub use status::{CatchUp, PeerStatus, SyncCounters, SyncEvent, SyncStatus};

use self::status::Counters;
use super::{
    config::SyncConfig,
    index::{AckedMark, Index, IndexError, ScanProgress, index_dir},
    watch::{self as watcher, WatchError, Watcher},
};

/// Why a sync set could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync set {name}: {source}")]
    Index {
        name: String,
        #[source]
        source: IndexError,
    },
    #[error("sync set {name}: {source}")]
    Watch {
        name: String,
        #[source]
        source: WatchError,
    },
    #[error("sync set {name}: cannot listen on {addr}: {source}")]
    Listen {
        name: String,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("sync set {name}: the node name is empty")]
    EmptyNode { name: String },
    #[error("sync set {name}: a start-up task failed: {reason}")]
    Task { name: String, reason: String },
}

/// Knobs beyond the config, for tests and benchmarks.
#[derive(Debug)]
pub struct SyncOptions {
    /// How the watcher batches and falls back (its `delay` is the config's unless set here).
    pub watch: Option<watcher::Options>,
    /// The index saver's pace (see `local::save`): a burst of changes is saved at most every
    /// tenth of it, peer marks alone every ten, a failed save retried every one.
    pub save_interval: Duration,
    /// Handshake and Hello timeout.
    pub timeout: Duration,
    /// A listener already bound to `listen` (tests bind port 0 first, then configure it).
    pub listener: Option<std::net::TcpListener>,
    /// A link with nothing to send for this long sends a Ping.
    pub keepalive: Duration,
    /// A link that received no frame at all for this long is dropped (the peer is lost; the
    /// dialing side dials again).
    pub peer_timeout: Duration,
    /// How often the transfers set aside after repeated failures are tried again.
    pub parked_retry: Duration,
    /// How often deletions older than the config's `delete_retention` are forgotten (and once
    /// at start).
    pub forget_interval: Duration,
    /// How long after a failed start-up scan it is tried again.
    pub scan_retry: Duration,
    /// Tests: holds the start-up scan (see [`ScanHook`]).
    pub before_scan: Option<ScanHook>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            watch: None,
            save_interval: Duration::from_millis(100),
            timeout: Duration::from_secs(10),
            listener: None,
            keepalive: Duration::from_secs(10),
            peer_timeout: Duration::from_secs(30),
            parked_retry: receive::PARKED_RETRY,
            forget_interval: local::FORGET_INTERVAL,
            scan_retry: startup::SCAN_RETRY,
            before_scan: None,
        }
    }
}

/// A running sync set. Stop it with [`SyncSet::stop`], which saves the index; dropping it
/// stops the tasks without the final save (the periodic saves still hold all but the last
/// 100 ms, and a restart's scan finds the rest).
#[derive(Debug)]
pub struct SyncSet {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    local_addr: SocketAddr,
}

/// What every task of a set shares.
#[derive(Debug)]
pub(crate) struct Shared {
    config: SyncConfig,
    /// `config.path`, canonicalized (the watcher's paths are relative to it).
    root: PathBuf,
    /// Where received files are written before their rename (`None`: beside their targets).
    staging: Option<staging::Staging>,
    node: String,
    index_dir: PathBuf,
    index: Mutex<Index>,
    /// The directories the receiver changed since the last save, synced before the next.
    touched: touched::TouchedDirs,
    /// The index's sequence when it was loaded, before the start-up scan: a peer's Resume
    /// beyond it (and beyond what this run sent it) speaks of a history this index does not
    /// have (see `session::send_loop`).
    loaded_sequence: u64,
    /// The index's published sequence (see [`Index::published`]), so that senders wake up
    /// when there is more they may send.
    changed: watch::Sender<u64>,
    /// Woken after each change to the index, so that the saver saves and publishes it.
    unsaved: Notify,
    counters: Counters,
    events: broadcast::Sender<SyncEvent>,
    peers: Vec<Peer>,
    cancel: CancellationToken,
    /// The receivers' blocking work on the tree (applying a batch, deleting): a receiver that
    /// stops may leave it running, so the set's stop waits for it before the index is saved.
    disk_work: TaskTracker,
    timeout: Duration,
    keepalive: Duration,
    peer_timeout: Duration,
    /// See [`SyncOptions::parked_retry`].
    parked_retry: Duration,
    /// The accepting side's refusals, logged at most once a minute per peer and reason.
    refusals: link::Throttle,
    /// The challenges of this node's handshakes in progress, dialing and accepting: the
    /// middle node of three both dials and accepts, and must not answer itself.
    challenges: crate::volume::peer::OwnChallenges,
    /// The start-up scan's progress, and its stop.
    scan: ScanProgress,
    /// Until the start-up scan is over: it holds the index meanwhile, so the status does not
    /// wait for it.
    scanning: AtomicBool,
    /// Why the last start-up scan failed, while it waits to be tried again.
    scan_failed: Mutex<Option<String>>,
}

/// A configured peer and what we know of it.
#[derive(Debug)]
pub(crate) struct Peer {
    addr: SocketAddr,
    state: Mutex<PeerState>,
}

#[derive(Debug, Default)]
struct PeerState {
    node: Option<String>,
    connected: bool,
    last_sync: Option<SystemTime>,
    /// The backlog the peer lacked when its session started, while it is being sent (0: none
    /// or done).
    catch_up_total: u64,
    /// The current session, cancelled when a newer connection replaces it.
    session: Option<(u64, CancellationToken)>,
    next_session: u64,
    /// The highest sequence sent to the peer since this process started: how far a peer's
    /// Resume may be trusted beyond [`Shared::loaded_sequence`].
    sent_this_run: u64,
}

impl SyncSet {
    /// Starts the sync set `config` for node `node`: opens (or creates) its index in
    /// `state_dir/sync/NAME`, starts the watcher, scans the tree for what changed while the
    /// node was down, listens on `listen` and connects to the peers.
    pub async fn start(
        config: SyncConfig,
        state_dir: &Path,
        node: &str,
    ) -> Result<Self, SyncError> {
        Self::start_with(config, state_dir, node, SyncOptions::default()).await
    }

    /// [`SyncSet::start`] with [`SyncOptions`].
    pub async fn start_with(
        config: SyncConfig,
        state_dir: &Path,
        node: &str,
        options: SyncOptions,
    ) -> Result<Self, SyncError> {
        let name = config.name.clone();
        if node.is_empty() {
            return Err(SyncError::EmptyNode { name });
        }
        let task_name = name.clone();
        let task_error = |e: tokio::task::JoinError| SyncError::Task {
            name: task_name.clone(),
            reason: e.to_string(),
        };
        let dir = index_dir(state_dir, &config.name);
        let mut index = {
            let (dir, node) = (dir.clone(), node.to_owned());
            tokio::task::spawn_blocking(move || Index::open(&dir, &node))
                .await
                .map_err(task_error)?
                .map_err(|source| SyncError::Index {
                    name: name.clone(),
                    source,
                })?
        };

        // The watcher first, the scan second: a change made in between is seen by both, never
        // by neither.
        let watch_options = options
            .watch
            .unwrap_or_else(|| watcher::Options::new(config.delay));
        let watcher = {
            let root = config.path.clone();
            let exclude = config.exclude.clone();
            tokio::task::spawn_blocking(move || {
                Watcher::start_with(
                    root,
                    move |rel: &Path, is_dir| {
                        rel.to_str()
                            .is_some_and(|rel| super::config::is_excluded(&exclude, rel, is_dir))
                    },
                    watch_options,
                )
            })
            .await
            .map_err(task_error)?
            .map_err(|source| SyncError::Watch {
                name: name.clone(),
                source,
            })?
        };
        let root = watcher.root().to_path_buf();
        let staging = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || staging::Staging::open(&root))
                .await
                .map_err(task_error)?
        };

        let listener = match options.listener {
            Some(std) => std
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(std)),
            None => TcpListener::bind(config.listen).await,
        }
        .map_err(|source| SyncError::Listen {
            name: name.clone(),
            addr: config.listen,
            source,
        })?;
        let local_addr = listener.local_addr().unwrap_or(config.listen);

        // Owners are synced with `owners` in the config, as root. Otherwise the index keeps
        // none, and the peers' are dropped as their entries arrive (see `receive`), so that a
        // node that cannot `chown` neither applies them nor sends its own user's.
        let owners = config.owners && crate::sync::owner::can_chown();
        if config.owners && !owners {
            tracing::info!(set = %name, "sync: owners and groups are not synced: not running as root");
        }
        index.set_track_owners(owners);
        // The marks of peers taken out of the config go.
        index.keep_acked_of(
            &config
                .peers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        );
        let peers = config
            .peers
            .iter()
            .map(|&addr| Peer {
                addr,
                state: Mutex::new(PeerState::default()),
            })
            .collect();
        let (changed, _) = watch::channel(index.published());
        let (events, _) = broadcast::channel(1024);
        let loaded_sequence = index.sequence();
        let shared = Arc::new(Shared {
            loaded_sequence,
            root,
            staging,
            node: node.to_owned(),
            index_dir: dir,
            index: Mutex::new(index),
            changed,
            unsaved: Notify::new(),
            counters: Counters::default(),
            events,
            peers,
            cancel: CancellationToken::new(),
            disk_work: TaskTracker::new(),
            timeout: options.timeout,
            keepalive: options.keepalive,
            peer_timeout: options.peer_timeout,
            parked_retry: options.parked_retry,
            refusals: link::Throttle::new(link::WARN_EVERY),
            challenges: crate::volume::peer::OwnChallenges::of(node),
            scan: ScanProgress::default(),
            scanning: AtomicBool::new(true),
            scan_failed: Mutex::new(None),
            touched: touched::TouchedDirs::default(),
            config,
        });

        // The root must be readable now, so that a start that cannot work fails at once; the
        // scan itself runs in the background (see `startup`).
        std::fs::read_dir(&shared.root)
            .map_err(IndexError::io(&shared.root))
            .map_err(|source| SyncError::Index {
                name: name.clone(),
                source,
            })?;
        let startup = startup::Startup {
            watcher,
            listener,
            save_interval: options.save_interval,
            forget_interval: options.forget_interval,
            scan_retry: options.scan_retry,
            before_scan: options.before_scan,
        };
        let tasks = vec![tokio::spawn(startup.run(Arc::clone(&shared)))];
        info!(set = %shared.config.name, node, listen = %local_addr, root = %shared.root.display(),
            "sync set started");
        Ok(Self {
            shared,
            tasks,
            local_addr,
        })
    }

    /// A snapshot of the set's state.
    pub fn status(&self) -> SyncStatus {
        self.shared.status()
    }

    /// Conflicts, peers coming and going, failed transfers.
    pub fn subscribe(&self) -> broadcast::Receiver<SyncEvent> {
        self.shared.events.subscribe()
    }

    /// The address the set listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops every task and saves the index. The tasks (and a start-up scan) are told to stop
    /// when this is called, not when the returned future is first polled.
    pub fn stop(mut self) -> impl Future<Output = Result<(), SyncError>> {
        self.shared.cancel.cancel();
        self.shared.scan.stop();
        async move {
            for task in self.tasks.drain(..) {
                let _ = task.await;
            }
            self.shared.disk_work.close();
            self.shared.disk_work.wait().await;
            let shared = Arc::clone(&self.shared);
            let name = shared.config.name.clone();
            tokio::task::spawn_blocking(move || shared.save_index())
                .await
                .map_err(|e| SyncError::Task {
                    name: name.clone(),
                    reason: e.to_string(),
                })?
                .map_err(|source| SyncError::Index { name, source })
        }
    }
}

impl Drop for SyncSet {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        self.shared.scan.stop();
    }
}

impl Shared {
    /// Saves the index whole (if it changed), after the directories it records changes in.
    fn save_index(&self) -> Result<(), IndexError> {
        self.sync_touched()?;
        self.index().save(&self.index_dir)
    }

    /// Fsyncs the directories the receiver changed (see [`touched`]): before any save of the
    /// index, once the snapshot to be saved is taken.
    fn sync_touched(&self) -> Result<(), IndexError> {
        self.touched
            .sync(&self.root)
            .map_err(IndexError::io(&self.root))
    }

    /// The index; a panic while it was held leaves it as the panicking task left it, which is
    /// still an index describing a disk (each change is one `record`).
    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After a change to the index: the saver saves it, then the senders send it.
    fn notify_changed(&self) {
        self.unsaved.notify_one();
        self.notify_published();
    }

    /// Wakes the senders if the published sequence moved.
    fn notify_published(&self) {
        let published = self.index().published();
        self.changed.send_if_modified(|old| {
            let moved = *old != published;
            *old = published;
            moved
        });
    }

    fn scan_failed(&self) -> MutexGuard<'_, Option<String>> {
        self.scan_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event: SyncEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    fn error(&self) {
        Counters::add(&self.counters.errors, 1);
    }

    /// Records in the index (saved with it, so that a restart while the peer is away still
    /// counts what waits for it) that peer `i` acknowledged our index up to `sequence`.
    fn set_acked(&self, i: usize, sequence: u64) {
        let mark = AckedMark {
            sequence,
            applies: true,
        };
        self.index()
            .set_acked_by(&self.peers[i].addr.to_string(), mark);
    }

    /// Records in the index that peer `i` does not apply our changes (a `push` peer):
    /// nothing waits for it.
    fn set_not_applying(&self, i: usize) {
        let addr = self.peers[i].addr.to_string();
        let mut index = self.index();
        let sequence = index.acked_by(&addr).map_or(0, |mark| mark.sequence);
        index.set_acked_by(
            &addr,
            AckedMark {
                sequence,
                applies: false,
            },
        );
    }

    fn peer_state(&self, i: usize) -> MutexGuard<'_, PeerState> {
        self.peers[i]
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn status(&self) -> SyncStatus {
        let states: Vec<_> = (0..self.peers.len())
            .map(|i| {
                let s = self.peer_state(i);
                (s.node.clone(), s.connected, s.last_sync, s.catch_up_total)
            })
            .collect();
        let scanning = self.scanning.load(Ordering::Acquire);
        // The start-up scan holds the index; no peer is linked before it is done.
        let queues: Vec<u64> = if scanning {
            vec![0; states.len()]
        } else {
            let index = self.index();
            self.peers
                .iter()
                .map(|peer| match index.acked_by(&peer.addr.to_string()) {
                    Some(mark) if !mark.applies => 0,
                    mark => index.count_changed_since(mark.map_or(0, |m| m.sequence)) as u64,
                })
                .collect()
        };
        let peers = self
            .peers
            .iter()
            .zip(states)
            .zip(queues)
            .map(
                |((peer, (node, connected, last_sync, catch_up_total)), queue)| {
                    let queue = if self.config.direction.sends() {
                        queue
                    } else {
                        0
                    };
                    PeerStatus {
                        addr: peer.addr,
                        node,
                        connected,
                        last_sync,
                        queue,
                        catch_up: CatchUp::of(catch_up_total, queue),
                    }
                },
            )
            .collect();
        SyncStatus {
            name: self.config.name.clone(),
            path: self.config.path.clone(),
            peers,
            conflicts: self
                .counters
                .conflicts
                .load(std::sync::atomic::Ordering::Relaxed),
            counters: self.counters.snapshot(),
            scan: scanning.then(|| self.scan.counts()),
            scan_failed: self.scan_failed().clone(),
        }
    }
}
