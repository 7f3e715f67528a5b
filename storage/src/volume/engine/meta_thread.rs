//! The volume's [`Meta`] on a thread of its own: its I/O is blocking and fsyncs, and every
//! change must happen in order, so one thread owns it and the async side sends it jobs.
//!
//! Dropping every handle ends the thread without [`Meta::close`], which is what a crash looks
//! like to the next open (the activity log is replayed): that is what an abrupt stop should be.
//!
//! Jobs run strictly in the order they were queued, on one queue. The write path's bookkeeping
//! (a write's end, its out-of-sync mark with no peer) needs no answer and need not be prompt,
//! so it is queued without waking the thread ([`MetaHandle::post_later`]): waking it twice per
//! write took a third of the context switches of a 4 KiB write. It runs with the next job
//! that does wake the thread, in its place before it, or after at most [`LATER_TICK`]. A thread
//! that found nothing in that tick parks until a job comes, so an idle volume costs no
//! wake-ups; a job posted later to a parked thread wakes it.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::error::VolumeError;
use crate::volume::meta::{HotExtents, Meta, MetaError};

type Job = Box<dyn FnOnce(&mut Meta) + Send>;

/// How long a job queued with [`MetaHandle::post_later`] may wait when no other comes: how
/// stale the status's out-of-sync figure may be.
const LATER_TICK: Duration = Duration::from_millis(50);

enum Command {
    Run(Job),
    Close(oneshot::Sender<Result<(), MetaError>>),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Run(_) => "Run",
            Self::Close(_) => "Close",
        })
    }
}

/// The thread's queue, and its doorbell.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<Queued>,
    doorbell: Condvar,
}

#[derive(Debug, Default)]
struct Queued {
    commands: VecDeque<Command>,
    /// The thread has ended: nothing queued would ever run.
    gone: bool,
    /// The thread waits for a ring with no tick: every job must ring.
    parked: bool,
    /// Every handle was dropped: nothing more will be queued.
    abandoned: bool,
}

impl Queue {
    /// Queues `command`, waking the thread if `ring`; the command comes back when the thread
    /// has ended.
    fn push(&self, command: Command, ring: bool) -> Result<(), Command> {
        let mut queued = self.lock();
        if queued.gone {
            return Err(command);
        }
        queued.commands.push_back(command);
        let ring = ring || queued.parked;
        drop(queued);
        if ring {
            self.doorbell.notify_one();
        }
        Ok(())
    }

    /// Every queued command, in order, once the doorbell rings or the tick passes with
    /// something queued; empty once the queue is abandoned and drained.
    fn take(&self) -> VecDeque<Command> {
        let mut queued = self.lock();
        if queued.commands.is_empty() && !queued.abandoned {
            // Jobs posted later may be on their way without ringing: give them a tick.
            queued = match self.doorbell.wait_timeout(queued, LATER_TICK) {
                Ok((queued, _)) => queued,
                Err(poisoned) => poisoned.into_inner().0,
            };
            while queued.commands.is_empty() && !queued.abandoned {
                queued.parked = true;
                queued = self
                    .doorbell
                    .wait(queued)
                    .unwrap_or_else(|p| p.into_inner());
            }
            queued.parked = false;
        }
        std::mem::take(&mut queued.commands)
    }

    /// Whether every handle is gone and everything they queued has run.
    fn finished(&self) -> bool {
        let queued = self.lock();
        queued.abandoned && queued.commands.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Queued> {
        // Every change under the lock is whole: a panic elsewhere leaves nothing half done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handles' side of the queue: when the last handle goes, it tells the thread, which may
/// be parked, to finish what is queued and end.
#[derive(Debug)]
struct Handles(Arc<Queue>);

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.lock().abandoned = true;
        self.0.doorbell.notify_one();
    }
}

/// A handle to the metadata thread; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct MetaHandle {
    queue: Arc<Handles>,
    /// The bitmap's out-of-sync bytes after the last job, for status snapshots without a
    /// round trip.
    out_of_sync: Arc<AtomicU64>,
    /// Starts writes into extents already in the activity log without a round trip.
    hot: HotExtents,
}

/// When dropped, with the metadata thread however it ends (closed, every handle dropped, a
/// job panicking): refuses hot starts of writes, which nothing would end any more, and drops
/// what is queued, so that callers waiting for a reply learn the thread is gone.
struct OnExit {
    hot: HotExtents,
    queue: Arc<Queue>,
}

impl Drop for OnExit {
    fn drop(&mut self) {
        self.hot.refuse();
        let mut queued = self.queue.lock();
        queued.gone = true;
        let dropped = std::mem::take(&mut queued.commands);
        drop(queued);
        // Outside the lock: a job's captures may do anything when dropped.
        drop(dropped);
    }
}

impl MetaHandle {
    pub(crate) fn spawn(meta: Meta, name: &str) -> io::Result<MetaHandle> {
        let queue = Arc::new(Queue::default());
        let out_of_sync = Arc::new(AtomicU64::new(meta.bitmap().out_of_sync_bytes()));
        let oos = Arc::clone(&out_of_sync);
        let hot = meta.hot_extents();
        let exit = OnExit {
            hot: meta.hot_extents(),
            queue: Arc::clone(&queue),
        };
        std::thread::Builder::new()
            .name(format!("meta-{name}"))
            .spawn(move || {
                let exit = exit;
                let mut meta = meta;
                loop {
                    for command in exit.queue.take() {
                        match command {
                            Command::Run(job) => job(&mut meta),
                            Command::Close(reply) => {
                                let _ = reply.send(meta.close());
                                return;
                            }
                        }
                    }
                    oos.store(meta.bitmap().out_of_sync_bytes(), Ordering::Relaxed);
                    // Every handle was dropped, and with them every way to queue more. What
                    // they queued runs first, as with a channel's buffered messages.
                    if exit.queue.finished() {
                        return;
                    }
                }
            })?;
        Ok(MetaHandle {
            queue: Arc::new(Handles(queue)),
            out_of_sync,
            hot,
        })
    }

    /// Runs `job` on the metadata thread and returns its result.
    pub(crate) async fn call<T, F>(&self, job: F) -> Result<T, VolumeError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Meta) -> T + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        // Published before the reply: a caller reading the status next sees its own change.
        let job = self.published(job);
        let job: Job = Box::new(move |meta| {
            let _ = reply.send(job(meta));
        });
        self.queue
            .0
            .push(Command::Run(job), true)
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

    /// `job`, then the out-of-sync count it leaves published for the status, before whatever
    /// runs after it on the thread. Without this, the count is published once the thread has
    /// run every job queued.
    pub(crate) fn published<T>(
        &self,
        job: impl FnOnce(&mut Meta) -> T + Send + 'static,
    ) -> impl FnOnce(&mut Meta) -> T + Send + 'static {
        let out_of_sync = Arc::clone(&self.out_of_sync);
        move |meta| {
            let result = job(meta);
            out_of_sync.store(meta.bitmap().out_of_sync_bytes(), Ordering::Relaxed);
            result
        }
    }

    /// Runs `job` without waiting for it (it still runs after every job sent before).
    pub(crate) fn post(&self, job: impl FnOnce(&mut Meta) + Send + 'static) {
        // The thread is gone only when the volume is going down; the job is moot then.
        let _ = self.queue.0.push(Command::Run(Box::new(job)), true);
    }

    /// [`post`](Self::post) without waking the thread: the job runs in its place, before any
    /// job queued after it, but possibly [`LATER_TICK`] later.
    pub(crate) fn post_later(&self, job: impl FnOnce(&mut Meta) + Send + 'static) {
        let _ = self.queue.0.push(Command::Run(Box::new(job)), false);
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
        self.queue
            .0
            .push(Command::Close(reply), true)
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
    async fn jobs_posted_later_keep_their_place_and_run_without_a_ring() {
        // Input: block 0 marked; the thread held inside a job while a waking job marks block 0
        // in sync and then a later job marks it out of sync again. Output: the block ends out
        // of sync (run in the order queued, though the later job never rang); then a later
        // job with nothing after it still runs, on the tick.
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::create(dir.path(), SIZE, DiskState::UpToDate).expect("create");
        let handle = MetaHandle::spawn(meta, "test").expect("spawn");
        handle
            .try_call(|m| m.mark_out_of_sync(0, 4096))
            .await
            .expect("marked");
        let (release, held) = std::sync::mpsc::channel::<()>();
        handle.post(move |_| {
            let _ = held.recv();
        });
        handle.post(|m| m.mark_in_sync(0, 4096));
        handle.post_later(|m| m.mark_out_of_sync(0, 4096).expect("marked"));
        release.send(()).expect("the thread holds");
        let seen = handle
            .call(|m| m.bitmap().out_of_sync_bytes())
            .await
            .expect("called");
        assert_eq!(
            seen, 4096,
            "the later mark ran after the in-sync queued before it"
        );
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
        assert!(
            matches!(handle.call(|_| ()).await, Err(VolumeError::Stopped)),
            "a thread that has ended answers nothing"
        );
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

    /// The voluntary context switches of this process's thread named `name`, from
    /// `/proc/self/task/*/status`.
    fn switches_of(name: &str) -> u64 {
        for task in std::fs::read_dir("/proc/self/task").expect("tasks") {
            let task = task.expect("task").path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if comm.trim_end() != name {
                continue;
            }
            let status = std::fs::read_to_string(task.join("status")).expect("status");
            return status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|n| n.trim().parse().ok())
                .expect("a switch count");
        }
        panic!("no thread named {name}");
    }

    #[tokio::test]
    async fn an_idle_thread_parks_and_a_later_job_still_wakes_it() {
        // Input: a job, then 100 ms of nothing (more than the tick), then 300 ms more. Output:
        // no context switch in those 300 ms (a thread waking on the tick would switch about
        // six times); then a job posted later, which does not ring, still runs.
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::create(dir.path(), SIZE, DiskState::UpToDate).expect("create");
        let handle = MetaHandle::spawn(meta, "parktest").expect("spawn");
        handle.call(|_| ()).await.expect("called");
        tokio::time::sleep(LATER_TICK * 2).await;
        let before = switches_of("meta-parktest");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = switches_of("meta-parktest");
        assert!(after - before < 2, "{} wake-ups while idle", after - before);
        handle.post_later(|m| m.mark_out_of_sync(0, 4096).expect("marked"));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while handle.out_of_sync_bytes() != 4096 {
            assert!(
                std::time::Instant::now() < deadline,
                "the parked thread never ran the job"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
