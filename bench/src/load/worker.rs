//! What the senders on one thread share: the run's window and pacing, the request timeout and the
//! thread's recorder. Senders hold it in an `Rc`: a thread's runtime is single-threaded.

use std::cell::RefCell;
use std::fmt::Display;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::connect::Connect;
use super::recorder::{ErrorKind, Recorder};
use super::schedule::{Pacing, Schedule, Window};

/// How long a sender waits after a failed connection before trying again, so a server that is
/// down is not hammered by a tight loop of refused connections.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub(crate) struct Worker {
    window: Arc<Window>,
    pacing: Pacing,
    timeout: Duration,
    recorder: RefCell<Recorder>,
}

impl Worker {
    pub(crate) fn new(window: Arc<Window>, pacing: Pacing, timeout: Duration) -> Self {
        Self {
            window,
            pacing,
            timeout,
            recorder: RefCell::new(Recorder::new(matches!(pacing, Pacing::Rate { .. }))),
        }
    }

    /// The schedule of sender `index` (a connection, or an HTTP/2 stream).
    pub(crate) fn schedule(&self, index: usize) -> Schedule {
        Schedule::new(self.window.clone(), self.pacing, index)
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Gives a sender the recorder. The borrow is never held across an await, so senders on
    /// this thread cannot collide over it.
    pub(crate) fn record<T>(&self, update: impl FnOnce(&mut Recorder) -> T) -> T {
        update(&mut self.recorder.borrow_mut())
    }

    /// Counts an error that happened now (outside any request's slot).
    pub(crate) fn error_now(&self, kind: ErrorKind, error: &dyn Display) {
        let measured = self.window.is_measured(Instant::now());
        self.record(|recorder| recorder.error(kind, measured, error));
    }

    /// Opens connection `index` within the request timeout, counting it once established.
    pub(crate) async fn connect<C: Connect>(
        &self,
        connector: &C,
        index: usize,
    ) -> io::Result<C::Stream> {
        let stream = tokio::time::timeout(self.timeout, connector.connect(index))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connection timed out"))??;
        let measured = self.window.is_measured(Instant::now());
        self.record(|recorder| recorder.connected(measured));
        Ok(stream)
    }

    /// Waits before reconnecting after a failed connection.
    pub(crate) async fn pause(&self) {
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }

    /// Hands over what this thread recorded, leaving an empty recorder.
    pub(crate) fn finish(&self) -> Recorder {
        self.recorder.replace(Recorder::default())
    }
}
