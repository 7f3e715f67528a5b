//! The TCP side: accepts connections, runs a session for each, counts, and stops gracefully.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::proto::MAX_STRING_LEN;
use super::session::{self, SessionError};
use super::{Export, MAX_CONNECTIONS};

/// A running NBD server for one export.
#[derive(Debug)]
pub struct NbdServer {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    connections: TaskTracker,
    accept: JoinHandle<()>,
    counters: Arc<Counters>,
}

/// What an [`NbdServer`] has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NbdStats {
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Requests received in the transmission phase (`DISC` included).
    pub requests: u64,
    /// Requests answered with an error.
    pub request_errors: u64,
    /// Connections closed because the client broke the protocol.
    pub protocol_errors: u64,
    /// Bytes of data read by clients.
    pub bytes_read: u64,
    /// Bytes of data written by clients.
    pub bytes_written: u64,
}

/// The live counters behind [`NbdStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_active: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) request_errors: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
}

impl NbdServer {
    /// Serves `export` as `export_name` (and as the default, empty name) on `listener`, until
    /// [`stop`](Self::stop). Fails if the listener has no address or the name is longer than
    /// the protocol's 4096-byte limit.
    pub fn start<E: Export>(
        listener: TcpListener,
        export_name: impl Into<String>,
        export: Arc<E>,
    ) -> io::Result<NbdServer> {
        let export_name: String = export_name.into();
        if export_name.len() > MAX_STRING_LEN || export_name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an NBD export name must be at most 4096 bytes, without NUL",
            ));
        }
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let connections = TaskTracker::new();
        let counters = Arc::new(Counters::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            Arc::from(export_name),
            export,
            Arc::clone(&counters),
            shutdown.clone(),
            connections.clone(),
        ));
        Ok(NbdServer {
            local_addr,
            shutdown,
            connections,
            accept,
            counters,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open now.
    pub fn connections(&self) -> u64 {
        self.counters.connections_active.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NbdStats {
        let c = &self.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        NbdStats {
            connections_accepted: get(&c.connections_accepted),
            connections_active: get(&c.connections_active),
            requests: get(&c.requests),
            request_errors: get(&c.request_errors),
            protocol_errors: get(&c.protocol_errors),
            bytes_read: get(&c.bytes_read),
            bytes_written: get(&c.bytes_written),
        }
    }

    /// Stops accepting, lets every connection finish the requests it has in flight (their
    /// replies are sent), then closes them; connections still in the handshake are closed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Err(error) = self.accept.await {
            warn!(%error, "nbd accept task failed");
        }
        self.connections.close();
        self.connections.wait().await;
    }
}

/// How long a connection is silent before the first keepalive probe.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Between probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes that end the connection.
const KEEPALIVE_PROBES: u32 = 6;

async fn accept_loop<E: Export>(
    listener: TcpListener,
    export_name: Arc<str>,
    export: Arc<E>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Room first, so that clients past the limit wait in the kernel's backlog.
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            slot = Arc::clone(&slots).acquire_owned() => slot,
        };
        let Ok(slot) = slot else { return };
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off rather than spin.
                warn!(%error, "nbd accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The spec asks for it: replies must not wait for the previous one's ACK.
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%peer, %error, "nbd set_nodelay failed");
        }
        // A client may stay idle for hours, so no idle timeout; but one that vanished (power
        // lost, a partition) would hold its slot forever. Probes find it, as nbd-server's
        // SO_KEEPALIVE does, within KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_PROBES.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES);
        if let Err(error) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
            debug!(%peer, %error, "nbd keepalive failed");
        }
        counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        counters.connections_active.fetch_add(1, Ordering::Relaxed);
        let export_name = Arc::clone(&export_name);
        let export = Arc::clone(&export);
        let counters = Arc::clone(&counters);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            debug!(%peer, "nbd connection accepted");
            let result = session::run(stream, &export_name, export, &counters, &shutdown).await;
            counters.connections_active.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
            match result {
                Ok(()) => debug!(%peer, "nbd connection closed"),
                // Counted by the session, before it closed the connection.
                Err(SessionError::Protocol(violation)) => {
                    warn!(%peer, violation, "nbd client broke the protocol, disconnected");
                }
                Err(error) => debug!(%peer, %error, "nbd connection ended"),
            }
        });
    }
}
