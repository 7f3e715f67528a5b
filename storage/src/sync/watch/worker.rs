//! The thread between inotify and the consumer: turns notify's events into relative paths, keeps
//! the watch set in step with directories appearing and going, and hands batches over.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, EventKind};
use tracing::{debug, error, info, warn};

use super::Options;
use super::batch::Pending;
use super::stats::Counters;
use super::tree::Tree;

/// Most events waiting between notify's thread and the worker: as many as four default kernel
/// queues. Past this, events are dropped and stand for a rescan, as the kernel does.
const MAX_QUEUED: usize = 4 * 16384;

/// Most messages handled in a row before the worker looks at its clocks again.
const MAX_DRAIN: usize = 4096;

/// While a batch gathers, how often the worker takes the events that came (far fewer than
/// [`MAX_QUEUED`] can come in between).
const GATHER_TICK: Duration = Duration::from_millis(2);

/// What reaches the worker.
#[derive(Debug)]
pub(super) enum Msg {
    Event(notify::Result<Event>),
    /// The channel was full and events were dropped.
    Dropped,
    Shutdown,
}

/// How full the channel from notify's thread is.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    queued: AtomicUsize,
    dropping: AtomicBool,
}

/// What the worker shares with the [`super::Watcher`].
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) mailbox: Mailbox,
    pub(super) counters: Counters,
}

/// notify's event handler. It runs on notify's thread, which must never block for long: the
/// worker's `watch()` calls wait for that thread. In a stream of events it does pause for
/// [`NAP`] after one (see there).
pub(super) fn handler(
    tx: Sender<Msg>,
    inbox: Arc<Inbox>,
    #[cfg(test)] mut gate: Option<std::sync::mpsc::Receiver<()>>,
) -> impl FnMut(notify::Result<Event>) + Send + 'static {
    let mut pace = Pace::default();
    move |event| {
        // After this event is handed on: the kernel queues what comes meanwhile, and notify's
        // thread reads it all in one wake-up.
        let _nap = Nap::new(&mut pace);
        if let Ok(event) = &event
            && is_read_only(&event.kind)
        {
            return;
        }
        // Test only: hold notify's thread on the first event until the test lets go.
        #[cfg(test)]
        if let Some(gate) = gate.take() {
            let _ = gate.recv();
        }
        if inbox.queued.fetch_add(1, Relaxed) >= MAX_QUEUED {
            inbox.queued.fetch_sub(1, Relaxed);
            if !inbox.dropping.swap(true, Relaxed) {
                let _ = tx.send(Msg::Dropped);
            }
            return;
        }
        // The worker is gone only when the watcher is being dropped.
        let _ = tx.send(Msg::Event(event));
    }
}

/// How long notify's thread pauses after an event that came alone but soon after the last.
/// In a stream of changes (a peer's files arriving, or ours being read for a peer, whose opens
/// notify 8 cannot be told not to watch) it would otherwise wake once per event; pausing lets
/// the kernel queue them (far fewer than its 16,384 in this time) so that one wake-up reads
/// many. No event waits for its own pause: it comes after the event is handed on. Events
/// already queued are read without pausing, so a burst goes at full speed; and the first
/// event after a quiet spell is not followed by a pause, so a lone change is not delayed.
const NAP: Duration = Duration::from_millis(2);

/// An event this soon after the previous one was already queued: no pause.
const QUEUED: Duration = Duration::from_micros(20);

/// An event this long after the previous one ends a quiet spell: no pause.
const QUIET: Duration = Duration::from_millis(1);

/// When notify's thread last finished with an event.
struct Pace(Instant);

impl Default for Pace {
    fn default() -> Self {
        Self(Instant::now())
    }
}

/// Paces notify's thread when dropped, after an event (see [`NAP`]).
struct Nap<'a> {
    pace: &'a mut Pace,
    /// How long the thread waited for this event.
    gap: Duration,
}

impl<'a> Nap<'a> {
    fn new(pace: &'a mut Pace) -> Self {
        let gap = pace.0.elapsed();
        Self { pace, gap }
    }
}

impl Drop for Nap<'_> {
    fn drop(&mut self) {
        if (QUEUED..QUIET).contains(&self.gap) {
            std::thread::sleep(NAP);
        }
        self.pace.0 = Instant::now();
    }
}

/// Opens and closes without writing: notify 8 cannot be told not to watch for them.
fn is_read_only(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(access) if *access != AccessKind::Close(AccessMode::Write))
}

pub(super) struct Worker {
    rx: Receiver<Msg>,
    inbox: Arc<Inbox>,
    shared: Arc<Shared>,
    tree: Tree,
    pending: Pending,
    delay: Duration,
    poll_interval: Duration,
    max_pending: usize,
}

impl Worker {
    pub(super) fn new(
        rx: Receiver<Msg>,
        inbox: Arc<Inbox>,
        shared: Arc<Shared>,
        tree: Tree,
        options: &Options,
    ) -> Self {
        Self {
            rx,
            inbox,
            shared,
            tree,
            pending: Pending::new(options.max_pending),
            delay: options.delay,
            poll_interval: options.poll_interval,
            max_pending: options.max_pending,
        }
    }

    /// Runs until the watcher is dropped.
    pub(super) fn run(mut self) {
        let _closed = CloseOnDrop(self.shared.clone());
        let mut deadline: Option<Instant> = None;
        let mut next_poll = Instant::now() + self.poll_interval;
        loop {
            let wake = deadline.map_or(next_poll, |deadline| deadline.min(next_poll));
            let first = if deadline.is_some() {
                // A batch is gathering: its events are taken a tick at a time, not each as it
                // comes, so that a burst (a peer's files arriving) wakes this thread a few
                // hundred times a second rather than once per event. The batch still goes at
                // its deadline.
                let nap = wake.saturating_duration_since(Instant::now());
                std::thread::sleep(nap.min(GATHER_TICK));
                self.rx.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                self.rx
                    .recv_timeout(wake.saturating_duration_since(Instant::now()))
            };
            match first {
                Ok(msg) => {
                    let mut next = Some(msg);
                    let mut handled = 0;
                    while let Some(msg) = next.take() {
                        if !self.handle(msg) {
                            return;
                        }
                        if deadline.is_none() && !self.pending.is_empty() {
                            deadline = Some(Instant::now() + self.delay);
                        }
                        handled += 1;
                        if handled < MAX_DRAIN {
                            next = self.rx.try_recv().ok();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= next_poll {
                self.poll();
                next_poll = now + self.poll_interval;
                if deadline.is_none() && !self.pending.is_empty() {
                    deadline = Some(now);
                }
            }
            if deadline.is_some_and(|deadline| now >= deadline) {
                self.publish();
                deadline = None;
            }
        }
    }

    /// Handles one message; false to stop.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Shutdown => return false,
            Msg::Dropped => {
                self.inbox.dropping.store(false, Relaxed);
                self.overflow("watcher queue");
            }
            Msg::Event(result) => {
                self.inbox.queued.fetch_sub(1, Relaxed);
                self.shared.counters.event();
                match result {
                    Ok(event) => self.event(event),
                    Err(error) => {
                        self.shared.counters.overflow();
                        warn!(
                            root = %self.tree.root().display(),
                            %error,
                            "inotify failed, rescanning the whole tree"
                        );
                        self.resync();
                    }
                }
            }
        }
        if self.pending.take_collapsed() {
            self.too_many_paths();
        }
        self.shared.counters.set_watched(self.tree.watched_len());
        true
    }

    fn event(&mut self, event: Event) {
        if event.need_rescan() {
            self.overflow("inotify queue");
            return;
        }
        for path in event.paths {
            match event.kind {
                EventKind::Create(kind) => {
                    let hint = match kind {
                        CreateKind::Folder => Some(true),
                        CreateKind::File => Some(false),
                        _ => None,
                    };
                    self.appeared(&path, hint);
                }
                EventKind::Remove(kind) => {
                    let hint = match kind {
                        RemoveKind::Folder => Some(true),
                        RemoveKind::File => Some(false),
                        _ => None,
                    };
                    self.vanished(&path, hint);
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                    self.vanished(&path, None);
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                    self.appeared(&path, None);
                }
                // notify follows a matched From and To with Both; both ends were handled.
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {}
                EventKind::Modify(ModifyKind::Name(_)) => {
                    if path.symlink_metadata().is_ok() {
                        self.appeared(&path, None);
                    } else {
                        self.vanished(&path, None);
                    }
                }
                EventKind::Modify(ModifyKind::Data(_))
                | EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    self.changed(&path, Some(false));
                }
                EventKind::Access(_) => {}
                EventKind::Modify(_) | EventKind::Any | EventKind::Other => {
                    self.changed(&path, None);
                }
            }
        }
    }

    /// `abs` was created or moved in: report it, and watch it (and list it) if a directory.
    fn appeared(&mut self, abs: &Path, is_dir: Option<bool>) {
        let Some(rel) = self.tree.rel(abs) else {
            return;
        };
        if rel.as_os_str().is_empty() {
            return;
        }
        let is_dir = is_dir.unwrap_or_else(|| is_dir_now(abs));
        if self.tree.is_excluded(&rel, is_dir) {
            return;
        }
        if is_dir {
            let limited = self.tree.watch_tree(&rel, Some(&mut self.pending));
            self.limited(limited);
        }
        self.pending.add_path(rel);
    }

    /// `abs` was removed or moved out: report it, and drop the watches below it.
    fn vanished(&mut self, abs: &Path, is_dir: Option<bool>) {
        let Some(rel) = self.tree.rel(abs) else {
            return;
        };
        if rel.as_os_str().is_empty() {
            error!(root = %self.tree.root().display(), "sync root removed or moved away");
            self.pending.add_rescan(PathBuf::new());
            return;
        }
        let is_dir = is_dir.unwrap_or_else(|| self.tree.knows_dir(&rel));
        if self.tree.is_excluded(&rel, is_dir) {
            return;
        }
        self.tree.forget(&rel);
        self.pending.add_path(rel);
    }

    /// `abs` changed in place (contents or metadata).
    fn changed(&mut self, abs: &Path, is_dir: Option<bool>) {
        let Some(rel) = self.tree.rel(abs) else {
            return;
        };
        if rel.as_os_str().is_empty() {
            return;
        }
        let is_dir = is_dir.unwrap_or_else(|| is_dir_now(abs));
        if self.tree.is_excluded(&rel, is_dir) {
            return;
        }
        self.pending.add_path(rel);
    }

    /// Events were lost: rescan everything and bring the watches back in step with the disk.
    fn overflow(&mut self, queue: &'static str) {
        self.shared.counters.overflow();
        warn!(
            root = %self.tree.root().display(),
            queue,
            "event queue overflowed, rescanning the whole tree"
        );
        self.resync();
    }

    /// Rescans everything, and re-walks the tree: directories created while events were lost are
    /// watched, watches on directories gone or replaced are dropped.
    fn resync(&mut self) {
        self.pending.add_rescan(PathBuf::new());
        self.tree.prune();
        let limited = self.tree.watch_tree(Path::new(""), None);
        self.limited(limited);
    }

    /// Subtrees a walk could not watch for the watch limit: rescan them now, poll them from now.
    fn limited(&mut self, subtrees: Vec<PathBuf>) {
        let Some(first) = subtrees.first().cloned() else {
            return;
        };
        let count = subtrees.len();
        let mut news = false;
        for subtree in subtrees {
            news |= self.tree.poll_subtree(subtree.clone());
            self.pending.add_rescan(subtree);
        }
        if news {
            self.shared.counters.watch_limit_error();
            warn!(
                root = %self.tree.root().display(),
                subtrees = count,
                first = %first.display(),
                sysctl = "fs.inotify.max_user_watches",
                "inotify watch limit reached, polling the unwatched subtrees"
            );
        }
    }

    /// Rescans the subtrees the watch limit left unwatched, and tries to watch them again.
    fn poll(&mut self) {
        let polled = self.tree.take_polled();
        if polled.is_empty() {
            return;
        }
        let mut blocked = false;
        for subtree in polled {
            if !is_dir_now(&self.tree.abs(&subtree)) {
                // Gone: its parent's watch reported that (or it was the root).
                continue;
            }
            self.pending.add_rescan(subtree.clone());
            if blocked {
                self.tree.poll_subtree(subtree);
                continue;
            }
            let limited = self.tree.watch_tree(&subtree, None);
            if !limited.is_empty() {
                blocked = true;
                for rest in limited {
                    self.tree.poll_subtree(rest);
                }
            }
        }
        if blocked {
            debug!(
                root = %self.tree.root().display(),
                polled = self.tree.polled_len(),
                "inotify watch limit still reached"
            );
        } else {
            info!(
                root = %self.tree.root().display(),
                watched = self.tree.watched_len(),
                "inotify watch limit no longer reached, whole tree watched"
            );
        }
        self.shared.counters.set_watched(self.tree.watched_len());
    }

    fn publish(&mut self) {
        let pending = std::mem::replace(&mut self.pending, Pending::new(self.max_pending));
        if self.shared.mailbox.put(pending) {
            self.too_many_paths();
        }
    }

    fn too_many_paths(&self) {
        self.shared.counters.overflow();
        warn!(
            root = %self.tree.root().display(),
            max_pending = self.max_pending,
            "too many changed paths pending, rescanning the whole tree instead"
        );
    }
}

/// Whether `abs` is a directory now (not following a symlink); false if it is gone.
fn is_dir_now(abs: &Path) -> bool {
    abs.symlink_metadata().is_ok_and(|meta| meta.is_dir())
}

/// A one-slot mailbox: a batch not yet taken absorbs the next one.
#[derive(Debug, Default)]
pub(super) struct Mailbox {
    // std's Mutex: held for a merge, once per batch, never across an await.
    slot: Mutex<Option<Pending>>,
    ready: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Mailbox {
    /// Puts a batch in, merging it into one not yet taken. Returns whether the merge overflowed
    /// into a rescan of everything.
    fn put(&self, pending: Pending) -> bool {
        let collapsed = {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.as_mut() {
                Some(waiting) => {
                    waiting.merge(pending);
                    waiting.take_collapsed()
                }
                None => {
                    *slot = Some(pending);
                    false
                }
            }
        };
        self.ready.notify_one();
        collapsed
    }

    fn take(&self) -> Option<Pending> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The next batch; `None` once the worker is gone and nothing is left.
    pub(super) async fn next(&self) -> Option<Pending> {
        loop {
            if let Some(pending) = self.take() {
                return Some(pending);
            }
            if self.closed.load(Ordering::Acquire) {
                return self.take();
            }
            // `notify_one` stores a permit when nobody waits, so a put in between is not lost.
            self.ready.notified().await;
        }
    }
}

/// Marks the mailbox closed when the worker ends, however it ends.
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.mailbox.closed.store(true, Ordering::Release);
        self.0.mailbox.ready.notify_one();
    }
}
