//! The listener: accepts connections, turns away hosts not in `allowed_hosts` before anything
//! else (as NRPE does, TLS handshake included), does the TLS handshake when configured, and
//! serves each connection in a task of its own.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use fulcrum_common::stats::Snapshot;
use ipnet::IpNet;
use prometheus::Registry;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
    task::JoinHandle,
    time::Instant,
};
use tokio_rustls::TlsAcceptor;

use super::{
    config::NrpeConfig,
    connection::{self, Shared},
    metrics::{Metrics, Refusal},
    tls::{self, TlsError},
};

/// Connections served at once; past that, new ones wait in the listen backlog. Nagios asks a few
/// checks at a time per host; this only bounds what a flood can hold (each may run a plugin).
const MAX_CONNECTIONS: usize = 128;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot listen on {addr} for NRPE: {source} (is another process, an nrpe daemon, using it?)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot register the NRPE metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The running agent. Dropping it stops accepting and ends every connection (killing the
/// commands they run) in the background; [`NrpeServer::stop`] does the same and returns once the
/// address is free again.
#[derive(Debug)]
pub struct NrpeServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
    /// One permit per connection being served; all of them back means none is left.
    slots: Arc<Semaphore>,
    metrics: Metrics,
    registry: Registry,
}

impl NrpeServer {
    /// Binds `config.listen` (port 0 picks a free port, see [`NrpeServer::local_addr`]),
    /// registers the metrics in `registry` (until stopped), and serves. `snapshot` gives the
    /// appliance's state to the builtin checks.
    pub async fn start(
        config: NrpeConfig,
        snapshot: Arc<dyn Fn() -> Snapshot + Send + Sync>,
        registry: &Registry,
    ) -> Result<Self, Error> {
        let tls = match &config.tls {
            Some(files) => Some(TlsAcceptor::from(tls::server_config(files)?)),
            None => None,
        };
        let bind_error = |source| Error::Bind {
            addr: config.listen,
            source,
        };
        // IP_FREEBIND, as the frontends: an agent on a VIP starts on the backup node too.
        let listener = fulcrum_common::net::tcp_listener(
            config.listen,
            1024,
            fulcrum_common::net::Sharing::Exclusive,
        )
        .and_then(TcpListener::from_std)
        .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let metrics = Metrics::register(registry)?;
        if config.allow_arguments {
            tracing::warn!("nrpe accepts command arguments from clients (allow_arguments)");
        }
        tracing::info!(
            addr = %local_addr,
            tls = tls.is_some(),
            commands = config.commands.len(),
            "nrpe listening"
        );
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            snapshot,
            metrics: metrics.clone(),
        });
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let accept = tokio::spawn(accept(listener, tls, shared, Arc::clone(&slots), stopped));
        Ok(Self {
            local_addr,
            stop,
            accept: Some(accept),
            slots,
            metrics,
            registry: registry.clone(),
        })
    }

    /// The address it listens on, with the port the system chose for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving (killing running commands), and returns once the listening socket is closed
    /// and every connection has ended, so a new server can bind the same address and register
    /// its metrics.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(accept) = self.accept.take() {
            // A panic in the accept task is reported by the runtime already.
            let _ = accept.await;
        }
        #[allow(
            clippy::cast_possible_truncation,
            reason = "MAX_CONNECTIONS is a small constant"
        )]
        let _ = self.slots.acquire_many(MAX_CONNECTIONS as u32).await;
    }
}

impl Drop for NrpeServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.metrics.unregister(&self.registry);
    }
}

/// Admits allowed hosts only, each connection served until `connection_timeout`.
async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    crate::accept::accept(listener, "nrpe", slots, stop, |stream, peer| {
        let peer = peer.ip().to_canonical();
        if !allowed(&shared.config.allowed_hosts, peer) {
            shared.metrics.refused(Refusal::Host);
            tracing::warn!(%peer, "nrpe host is not allowed to talk to us");
            return None;
        }
        let deadline = Instant::now() + shared.config.connection_timeout;
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        Some(async move { handle(stream, peer, deadline, tls, &shared).await })
    })
    .await;
}

/// The TLS handshake when configured (within the request's deadline), then the request.
async fn handle(
    stream: TcpStream,
    peer: IpAddr,
    deadline: Instant,
    tls: Option<TlsAcceptor>,
    shared: &Shared,
) {
    // A check is one small request and answer: send them at once.
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return connection::serve(stream, peer, deadline, shared).await;
    };
    match tokio::time::timeout_at(deadline, tls.accept(stream)).await {
        Ok(Ok(stream)) => connection::serve(stream, peer, deadline, shared).await,
        Ok(Err(error)) => {
            shared.metrics.refused(Refusal::Tls);
            tracing::warn!(%peer, reason = "tls", %error, "nrpe TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.refused(Refusal::Timeout);
            tracing::warn!(%peer, reason = "timeout", "nrpe TLS handshake not done within connection_timeout");
        }
    }
}

/// Whether `allowed_hosts` lets `peer` in.
fn allowed(allowed_hosts: &[IpNet], peer: IpAddr) -> bool {
    allowed_hosts.iter().any(|net| net.contains(&peer))
}
