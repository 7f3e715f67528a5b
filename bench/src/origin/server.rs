//! Accepting connections and serving each one until it ends or the origin stops.
//!
//! Every task the origin runs (the accept loop, each connection, each HTTP/2 stream and each
//! upgraded echo) is spawned through [`Tasks`], which ties it to one cancellation token and one
//! tracker: cancelling drops every task at once, which closes its socket, and the tracker lets
//! `stop` wait until all of them are gone.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::service::{self, Shared};

/// How long to wait after a failed accept (typically out of file descriptors) before trying again,
/// so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tasks: Tasks) {
    let mut builder = auto::Builder::new(tasks.clone());
    builder.http1().keep_alive(shared.keep_alive());
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            () = tasks.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tasks.spawn(serve(
                    stream,
                    peer,
                    shared.clone(),
                    builder.clone(),
                    tasks.clone(),
                ));
            }
            Err(error) => {
                warn!(%error, "origin accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<Tasks>>,
    tasks: Tasks,
) {
    // Small answers must leave at once rather than wait for Nagle; the origin must not be what a
    // latency benchmark measures.
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%peer, %error, "origin cannot set TCP_NODELAY");
    }
    let service = {
        let tasks = tasks.clone();
        service_fn(move |request| service::handle(shared.clone(), peer, tasks.clone(), request))
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    // No select on stop here: `Tasks::spawn` drops this whole future, connection and socket
    // included, when the origin stops.
    if let Err(error) = connection.await {
        debug!(%peer, %error, "origin connection failed");
    }
}

/// Spawns the origin's tasks so that they all end when it stops. It is also the executor hyper
/// spawns HTTP/2 streams on, so those end with the origin too.
#[derive(Debug, Clone)]
pub(super) struct Tasks {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    pub(super) fn new() -> Self {
        Self {
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// Runs `task` until it finishes or the origin stops, whichever comes first. Stopping drops the
    /// task, and with it any socket it owns.
    pub(super) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = task => {}
            }
        });
    }

    pub(super) async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    pub(super) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Cancels every task and waits until all of them have been dropped.
    pub(super) async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl<F> hyper::rt::Executor<F> for Tasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.spawn(async move {
            future.await;
        });
    }
}
