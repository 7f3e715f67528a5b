//! The volume's [`Meta`] on a thread of its own: its I/O is blocking and fsyncs, and every
//! change must happen in order, so one thread owns it and the async side sends it jobs.
//!
//! Dropping every handle ends the thread without [`Meta::close`], which is what a crash looks
//! like to the next open (the activity log is replayed): that is what an abrupt stop should be.
//!
//! The write path's bookkeeping (a write's end, its out-of-sync mark with no peer) needs no
//! answer and need not be prompt, so it is queued without waking the thread
//! ([`MetaHandle::post_later`]): waking it twice per write took a third of the context
//! switches of a 4 KiB write. The thread runs those jobs before its next command, so a
//! command always sees them done: an eviction never takes an extent whose write has not
//! ended, and a write ends after its mark. Otherwise it runs them every [`LATER_TICK`].

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::error::VolumeError;
use crate::volume::meta::{HotExtents, Meta, MetaError};

type Job = Box<dyn FnOnce(&mut Meta) + Send>;

/// How long a job queued with [`MetaHandle::post_later`] may wait when no command comes: how
/// stale the status's out-of-sync figure may be.
const LATER_TICK: Duration = Duration::from_millis(50);

/// Jobs queued without waking the thread, in the order they were queued.
#[derive(Default)]
struct Later(Mutex<Vec<Job>>);

impl Later {
    fn push(&self, job: Job) {
        self.lock().push(job);
    }

    fn take(&self) -> Vec<Job> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        // Pushes and takes are whole under the lock: a panic elsewhere leaves nothing half done.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Later({} jobs)", self.lock().len())
    }
}

enum Command {
    Run(Job),
    Close(oneshot::Sender<Result<(), MetaError>>),
}

/// A handle to the metadata thread; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct MetaHandle {
    tx: mpsc::Sender<Command>,
    /// The bitmap's out-of-sync bytes after the last job, for status snapshots without a
    /// round trip.
    out_of_sync: Arc<AtomicU64>,
    /// Starts writes into extents already in the activity log without a round trip.
    hot: HotExtents,
    later: Arc<Later>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Run(_) => "Run",
            Self::Close(_) => "Close",
        })
    }
}

/// Refuses hot starts of writes when dropped, with the metadata thread.
struct RefuseOnExit(HotExtents);

impl Drop for RefuseOnExit {
    fn drop(&mut self) {
        self.0.refuse();
    }
}

impl MetaHandle {
    pub(crate) fn spawn(meta: Meta, name: &str) -> io::Result<MetaHandle> {
        let (tx, rx) = mpsc::channel::<Command>();
        let out_of_sync = Arc::new(AtomicU64::new(meta.bitmap().out_of_sync_bytes()));
        let oos = Arc::clone(&out_of_sync);
        let hot = meta.hot_extents();
        let later = Arc::new(Later::default());
        let queued = Arc::clone(&later);
        std::thread::Builder::new()
            .name(format!("meta-{name}"))
            .spawn(move || {
                // However the thread ends (closed, every handle dropped, a job panicking), no
                // write may start without it any more.
                let _refuse = RefuseOnExit(meta.hot_extents());
                let mut meta = meta;
                loop {
                    let command = match rx.recv_timeout(LATER_TICK) {
                        Ok(command) => Some(command),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    for job in queued.take() {
                        job(&mut meta);
                    }
                    match command {
                        Some(Command::Run(job)) => job(&mut meta),
                        Some(Command::Close(reply)) => {
                            let _ = reply.send(meta.close());
                            return;
                        }
                        None => {}
                    }
                    oos.store(meta.bitmap().out_of_sync_bytes(), Ordering::Relaxed);
                }
            })?;
        Ok(MetaHandle {
            tx,
            out_of_sync,
            hot,
            later,
        })
    }

    /// Runs `job` on the metadata thread and returns its result.
    pub(crate) async fn call<T, F>(&self, job: F) -> Result<T, VolumeError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Meta) -> T + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let out_of_sync = Arc::clone(&self.out_of_sync);
        let job: Job = Box::new(move |meta| {
            let result = job(meta);
            // Before the reply: a caller reading the status next sees its own change.
            out_of_sync.store(meta.bitmap().out_of_sync_bytes(), Ordering::Relaxed);
            let _ = reply.send(result);
        });
        self.tx
            .send(Command::Run(job))
            .map_err(|_| VolumeError::Stopped)?;
        rx.await.map_err(|_| VolumeError::Stopped)
    }

    /// [`call`](Self::call) for a job returning a metadata result.
    pub(crate) async fn try_call<T, F>(&self, job: F) -> Result<T, VolumeError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Meta) -> Result<T, MetaError> + Send + 'static,
    {
        Ok(self.call(job).await??)
    }

    /// Runs `job` without waiting for it (it still runs after every job sent before).
    pub(crate) fn post(&self, job: impl FnOnce(&mut Meta) + Send + 'static) {
        // The thread is gone only when the volume is going down; the job is moot then.
        let _ = self.tx.send(Command::Run(Box::new(job)));
    }

    /// Queues `job` without waking the thread: it runs before the thread's next command, or
    /// within [`LATER_TICK`] (see the module's note).
    pub(crate) fn post_later(&self, job: impl FnOnce(&mut Meta) + Send + 'static) {
        self.later.push(Box::new(job));
    }

    /// [`Meta::begin_write`] without the thread when the write's extents are all in the
    /// activity log, as nearly every write's are: a round trip there cost a quarter of a
    /// 4 KiB write's latency. Returns whether it started; when not, `begin_write` must run on
    /// the thread. End it with [`Meta::end_write`] there either way (posted later).
    pub(crate) fn try_begin_write(&self, offset: u64, len: u64) -> bool {
        self.hot.try_begin_write(offset, len)
    }

    pub(crate) fn out_of_sync_bytes(&self) -> u64 {
        self.out_of_sync.load(Ordering::Relaxed)
    }

    /// Closes the metadata cleanly (clean flag set) and ends the thread.
    pub(crate) async fn close(&self) -> Result<(), VolumeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Close(reply))
            .map_err(|_| VolumeError::Stopped)?;
        Ok(rx.await.map_err(|_| VolumeError::Stopped)??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::meta::DiskState;

    const SIZE: u64 = 16 << 20;

    #[tokio::test]
    async fn jobs_posted_later_run_before_the_next_command_or_within_the_tick() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::create(dir.path(), SIZE, DiskState::UpToDate).expect("create");
        let handle = MetaHandle::spawn(meta, "test").expect("spawn");
        handle.post_later(|m| m.mark_out_of_sync(0, 4096).expect("marked"));
        let seen = handle
            .call(|m| m.bitmap().out_of_sync_bytes())
            .await
            .expect("called");
        assert_eq!(seen, 4096, "the command saw the job queued before it");
        // No command now: the tick runs the job, and the status figure follows.
        handle.post_later(|m| m.mark_out_of_sync(1 << 20, 4096).expect("marked"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while handle.out_of_sync_bytes() != 8192 {
            assert!(
                std::time::Instant::now() < deadline,
                "the tick never ran the job"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        handle.close().await.expect("closed");
    }

    #[tokio::test]
    async fn once_the_thread_ends_no_write_starts_without_it() {
        // Input: a write logs extent 0 and ends; then the thread goes, by a clean close or by
        // every handle dropped (as in a crash). Output: hot starts in extent 0 are refused.
        for clean in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let meta = Meta::create(dir.path(), SIZE, DiskState::UpToDate).expect("create");
            let hot = meta.hot_extents();
            let handle = MetaHandle::spawn(meta, "test").expect("spawn");
            handle
                .try_call(|m| m.begin_write(0, 4096))
                .await
                .expect("logged");
            handle.call(|m| m.end_write(0, 4096)).await.expect("ended");
            assert!(handle.try_begin_write(0, 4096), "extent 0 is logged");
            handle.call(|m| m.end_write(0, 4096)).await.expect("ended");
            if clean {
                handle.close().await.expect("closed");
            } else {
                drop(handle);
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while hot.try_begin_write(0, 4096) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "clean {clean}: still hot"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }
}
