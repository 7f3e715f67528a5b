//! Watches a sync root with inotify and hands the sync the changed paths in batches, falling
//! back to a rescan wherever inotify can no longer be trusted (queue overflow, watch limit).
//!
//! # Design
//!
//! - **One non-recursive watch per directory, kept here** ([`tree`]), not notify's
//!   `RecursiveMode::Recursive`. notify's recursive mode watches every directory below the root,
//!   excluded ones included (a large `cache/` would spend watches and flood the queue, and the
//!   issue says excluded trees are not watched at all). It also stops at the first `ENOSPC`
//!   without saying which subtrees were left blind, and it does not list a new directory after
//!   watching it, so a file created in the window between `mkdir` and the watch is lost (notify
//!   issue #727). Here the walk skips excluded directories, a new directory is watched *first*
//!   and listed *second* (everything already in it is reported), and the subtrees the watch limit
//!   left unwatched are known exactly and polled.
//! - **Threads.** notify's own thread reads inotify and calls [`worker::handler`], which drops
//!   read-only events (notify 8's inotify mask is fixed and includes `IN_OPEN`) and forwards the
//!   rest over a channel without ever blocking: the worker's `watch()` is a round trip to that
//!   same thread, so a blocking handler could deadlock. A counter bounds that channel like the
//!   kernel bounds its queue: past it, events are dropped and one "dropped" message stands for
//!   them, handled like a kernel overflow.
//! - **The worker is a std thread**, not a tokio task: what it does is blocking syscalls (the
//!   `inotify_add_watch` round trip, `read_dir` walks), so it stays off the runtime. Its batching
//!   clock is therefore `std::time::Instant`; a paused tokio clock could not drive real inotify
//!   anyway.
//! - **Batches coalesce.** The worker gathers events for `delay` after the first, then merges
//!   what it has into a one-slot mailbox: a slow consumer gets one bigger batch, not a backlog.
//!   Past `max_pending` distinct paths a batch collapses into a rescan of the whole tree (counted
//!   as an overflow), so memory stays bounded whatever the burst.
//! - **Falling back.** A kernel overflow (`Flag::Rescan`), a dropped-events message or an inotify
//!   read error: rescan `""`, and re-walk the tree so directories created during the lost window
//!   are watched too. A watch-limit error (`ENOSPC`): that subtree goes to `rescan` at once, then
//!   is rescanned and its watch retried every `poll_interval` until the limit allows it.
//!
//! Events for the sync's own temporary files ([`is_temp_name`]) are never reported.

mod backend;
mod batch;
mod stats;
mod tree;
mod worker;

#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tracing::{info, warn};

pub use batch::Batch;
pub use stats::WatchStats;

use backend::{AddError, Backend};
use tree::Tree;
use worker::{Msg, Shared, Worker};

/// What the sync's own names start with (a receiver writes `.fulcrum-tmp-…` and renames it
/// into place); see [`is_temp_name`].
pub const TEMP_PREFIX: &str = ".fulcrum-tmp-";

/// Whether `name` is one of the sync's own: the staging directory (`.fulcrum-tmp-staging`),
/// the root marker (`.fulcrum-tmp-root`), or a file in the making, [`TEMP_PREFIX`] then 16 hex
/// digits, `-` and a count (`fsops::temp_path`). Such names are never reported, watched,
/// indexed or sent, and a file of them the scan finds at start is a leftover of a cut transfer.
/// A user's file that merely starts with the prefix is none of these: it is synced like any
/// other, and never removed.
pub fn is_temp_name(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(TEMP_PREFIX.as_bytes()) else {
        return false;
    };
    if rest == b"staging" || rest == b"root" {
        return true;
    }
    let Some((seed, count)) = rest.split_at_checked(16) else {
        return false;
    };
    let Some(count) = count.strip_prefix(b"-") else {
        return false;
    };
    seed.iter().all(u8::is_ascii_hexdigit)
        && !count.is_empty()
        && count.iter().all(u8::is_ascii_digit)
}

/// How often a subtree left unwatched by the watch limit is rescanned and its watch retried.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Most distinct paths held for the consumer before a batch becomes a rescan of the whole tree.
pub const DEFAULT_MAX_PENDING: usize = 1 << 18;

/// How a [`Watcher`] batches and falls back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How long to gather events after the first one before handing them over.
    pub delay: Duration,
    /// How often a subtree the watch limit left unwatched is rescanned and its watch retried.
    pub poll_interval: Duration,
    /// Most distinct paths held for the consumer; past this a batch becomes `rescan = [""]`.
    pub max_pending: usize,
}

impl Options {
    /// `delay` with the default poll interval and pending limit.
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

/// Why a [`Watcher`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The root is missing or unreadable.
    #[error("sync root {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The root is not a directory.
    #[error("sync root {path} is not a directory")]
    NotADirectory { path: PathBuf },
    /// inotify itself could not start (e.g. `fs.inotify.max_user_instances` reached).
    #[error("cannot start inotify")]
    Inotify(#[source] notify::Error),
    /// The root's own watch failed for a reason other than the watch limit.
    #[error("cannot watch sync root {path}")]
    WatchRoot {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    /// The watch thread could not be spawned.
    #[error("cannot start the watch thread")]
    Thread(#[source] io::Error),
}

/// A running watch of one sync root. Dropping it stops the watching.
pub struct Watcher {
    root: PathBuf,
    shared: Arc<Shared>,
    /// Tells the worker to stop when the watcher is dropped.
    tx: mpsc::Sender<Msg>,
}

impl Watcher {
    /// Watches `root` (every directory below it for which `exclude(relative, is_dir)` is false),
    /// batching events for `delay` after the first one.
    ///
    /// Walks the tree before returning, adding a watch per directory; for a very large tree call
    /// it from `spawn_blocking`. Every change made after it returns is reported.
    pub fn start(
        root: PathBuf,
        exclude: impl Fn(&Path, bool) -> bool + Send + Sync + 'static,
        delay: Duration,
    ) -> Result<Self, WatchError> {
        Self::start_with(root, exclude, Options::new(delay))
    }

    /// [`Watcher::start`] with every option.
    pub fn start_with(
        root: PathBuf,
        exclude: impl Fn(&Path, bool) -> bool + Send + Sync + 'static,
        options: Options,
    ) -> Result<Self, WatchError> {
        Self::start_inner(root, Box::new(exclude), options, Hooks::default())
    }

    /// The next batch of changes, waiting for one; `None` once the watch thread has stopped
    /// (which only a bug would make happen while the `Watcher` lives).
    pub async fn next_batch(&mut self) -> Option<Batch> {
        let batch = self.shared.mailbox.next().await?.into_batch();
        self.shared.counters.delivered(&batch);
        Some(batch)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WatchStats {
        self.shared.counters.snapshot()
    }

    /// The root, canonicalized: batch paths are relative to it.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn start_inner(
        root: PathBuf,
        exclude: tree::Exclude,
        options: Options,
        hooks: Hooks,
    ) -> Result<Self, WatchError> {
        let Hooks {
            #[cfg(test)]
            gate,
            #[cfg(test)]
            budget,
        } = hooks;
        let root = fs::canonicalize(&root).map_err(|source| WatchError::Root {
            path: root.clone(),
            source,
        })?;
        let meta = fs::metadata(&root).map_err(|source| WatchError::Root {
            path: root.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(WatchError::NotADirectory { path: root });
        }

        let (tx, rx) = mpsc::channel();
        let inbox = Arc::new(worker::Inbox::default());
        let handler = worker::handler(
            tx.clone(),
            inbox.clone(),
            #[cfg(test)]
            gate,
        );
        let inotify = <notify::RecommendedWatcher as notify::Watcher>::new(
            handler,
            notify::Config::default(),
        )
        .map_err(WatchError::Inotify)?;
        let backend: Box<dyn Backend> = Box::new(inotify);
        #[cfg(test)]
        let backend = match budget {
            Some(budget) => Box::new(backend::Budgeted::new(backend, budget)),
            None => backend,
        };

        let shared = Arc::new(Shared::default());
        let mut tree = Tree::new(root.clone(), exclude, backend);
        let mut limited = Vec::new();
        match tree.add(Path::new("")) {
            Ok(()) => limited = tree.watch_tree(Path::new(""), None),
            Err(AddError::Limit) => limited.push(PathBuf::new()),
            Err(AddError::Gone) => {
                return Err(WatchError::Root {
                    path: root,
                    source: io::ErrorKind::NotFound.into(),
                });
            }
            Err(AddError::Other(source)) => {
                return Err(WatchError::WatchRoot { path: root, source });
            }
        }
        if !limited.is_empty() {
            shared.counters.watch_limit_error();
            warn!(
                root = %root.display(),
                subtrees = limited.len(),
                first = %limited[0].display(),
                sysctl = "fs.inotify.max_user_watches",
                "inotify watch limit reached, polling the unwatched subtrees"
            );
            for subtree in limited {
                tree.poll_subtree(subtree);
            }
        }
        shared.counters.set_watched(tree.watched_len());
        info!(
            root = %root.display(),
            watched = tree.watched_len(),
            polled = tree.polled_len(),
            "watching sync root"
        );

        let worker = Worker::new(rx, inbox, shared.clone(), tree, &options);
        thread::Builder::new()
            .name("fulcrum-watch".into())
            .spawn(move || worker.run())
            .map_err(WatchError::Thread)?;
        Ok(Self { root, shared, tx })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // The worker may already be gone; then there is nothing to stop.
        let _ = self.tx.send(Msg::Shutdown);
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("root", &self.root)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Test-only ways in: a gate that holds notify's thread (to overflow the kernel's queue for
/// real) and a watch budget (to hit the watch limit without touching the system's).
#[derive(Default)]
struct Hooks {
    #[cfg(test)]
    gate: Option<mpsc::Receiver<()>>,
    #[cfg(test)]
    budget: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

/// Whether a relative path names one of the sync's own temporary files.
fn is_temp(rel: &Path) -> bool {
    rel.file_name()
        .is_some_and(|name| is_temp_name(name.as_encoded_bytes()))
}

#[cfg(test)]
mod temp_name_tests {
    use super::is_temp_name;

    #[test]
    fn only_the_syncs_own_names_are_temporary() {
        for ours in [
            ".fulcrum-tmp-staging",
            crate::sync::index::ROOT_MARKER,
            ".fulcrum-tmp-0123456789abcdef-0",
            ".fulcrum-tmp-00000000000000ff-12345",
        ] {
            assert!(is_temp_name(ours.as_bytes()), "{ours}");
        }
        for users in [
            ".fulcrum-tmp-notes.txt",
            ".fulcrum-tmp-",
            ".fulcrum-tmp-0123456789abcdef",
            ".fulcrum-tmp-0123456789abcdef-",
            ".fulcrum-tmp-0123456789abcdeg-1",
            ".fulcrum-tmp-0123456789abcdef-1x",
            ".fulcrum-tmp-stagingx",
            "notes.txt",
        ] {
            assert!(!is_temp_name(users.as_bytes()), "{users}");
        }
    }
}
