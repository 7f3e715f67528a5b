//! Listeners a reload stopped, until their accept tasks have ended and so closed their
//! sockets: what a reload starts next on the same address (the admin server, the NRPE agent, a
//! volume) waits for them, or its bind races the old socket's close.

use std::sync::{Mutex, PoisonError};

use tokio::task::JoinHandle;

/// The accept tasks of stopped listeners that may not have ended yet.
#[derive(Debug, Default)]
pub(crate) struct Closing(Mutex<Vec<JoinHandle<()>>>);

impl Closing {
    /// Keeps `task`, whose listener was just told to stop, until [`wait`](Self::wait).
    pub(crate) fn add(&self, task: JoinHandle<()>) {
        let mut tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
    }

    /// Waits until every task added so far has ended.
    pub(crate) async fn wait(&self) {
        let tasks = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "listener task failed");
            }
        }
    }
}
