//! The volume's [`Meta`] on a thread of its own: its I/O is blocking and fsyncs, and every
//! change must happen in order, so one thread owns it and the async side sends it jobs.
//!
//! Dropping every handle ends the thread without [`Meta::close`], which is what a crash looks
//! like to the next open (the activity log is replayed): that is what an abrupt stop should be.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::error::VolumeError;
use crate::volume::meta::{HotExtents, Meta, MetaError};

type Job = Box<dyn FnOnce(&mut Meta) + Send>;

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
        std::thread::Builder::new()
            .name(format!("meta-{name}"))
            .spawn(move || {
                // However the thread ends (closed, every handle dropped, a job panicking), no
                // write may start without it any more.
                let _refuse = RefuseOnExit(meta.hot_extents());
                let mut meta = meta;
                while let Ok(command) = rx.recv() {
                    match command {
                        Command::Run(job) => {
                            job(&mut meta);
                            oos.store(meta.bitmap().out_of_sync_bytes(), Ordering::Relaxed);
                        }
                        Command::Close(reply) => {
                            let _ = reply.send(meta.close());
                            return;
                        }
                    }
                }
            })?;
        Ok(MetaHandle {
            tx,
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

    /// [`Meta::begin_write`] without the thread when the write's extents are all in the
    /// activity log, as nearly every write's are: a round trip there cost a quarter of a
    /// 4 KiB write's latency. Returns whether it started; when not, `begin_write` must run on
    /// the thread. End it with [`Meta::end_write`] there either way.
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
