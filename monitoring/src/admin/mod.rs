//! The admin web server of `[admin]`: HAProxy's `stats uri` page with its admin form, its CSV and
//! JSON forms, and Prometheus `/metrics`, over HTTP/1.1 or HTTPS.
//!
//! | request | answer |
//! |---|---|
//! | `GET`/`HEAD STATS_PATH` | the HTML page (`html.rs`), or the [`Snapshot`](crate::Snapshot) as JSON when `Accept` prefers `application/json`; `?norefresh` leaves the page's auto-refresh out |
//! | `GET`/`HEAD STATS_PATH;csv` | HAProxy's CSV ([`csv()`]) |
//! | `POST STATS_PATH` | an admin action from the page's form (`routes.rs`), answered `303 See Other` back to the page, which then shows the result |
//! | `GET`/`HEAD METRICS_PATH` | Prometheus text format, without authentication |
//!
//! Anything else is 404, another method 405. Every route but `METRICS_PATH` answers 403 to a
//! `Host` that is not one of the server's names (`host.rs`, against DNS rebinding). With
//! `users` configured every stats route but
//! `METRICS_PATH` needs HTTP basic auth (`auth.rs`); admin actions also need `admin_actions`, a
//! session cookie and its CSRF token (`session.rs`).
//!
//! The server runs as tasks that end when the [`AdminServer`] is stopped or dropped, so it never
//! outlives its owner.

mod auth;
mod csv;
mod form;
mod host;
mod html;
mod lockout;
mod per_source;
mod rates;
mod routes;
mod session;
#[cfg(test)]
mod tests;
mod throttle;
pub(crate) mod tls;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fulcrum_common::activity::{Activity, Touching};
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::Registry;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

pub use self::csv::csv;
use self::throttle::Admit;
use crate::{Appliance, config::AdminConfig};

/// Connections served at once; past that, new ones wait in the listen backlog. The page is for a
/// few operators and a scraper, so this only bounds what misbehaving clients can hold; one
/// client alone holds at most `max_connections_per_source` (`per_source.rs`).
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// How long a client has to send a request's headers, and to finish the TLS handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may make no progress either way: idle between requests, or with a
/// response its client does not read. Then it is closed, freeing its slot.
const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot listen on {addr} for the admin server: {source} (is another process using it?)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin TLS certificate {path}: {reason}")]
    Tls { path: String, reason: String },
}

/// The running admin server. Dropping it stops accepting, closes the connections it serves and
/// ends the session-rate sampler, all in the background; [`AdminServer::stop`] does the same
/// and returns once the address is free again (for a restart on the same address).
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    /// One permit per connection being served; all of them back means none is left.
    slots: Arc<Semaphore>,
}

impl AdminServer {
    /// Binds `config.listen` (port 0 picks a free port, see [`AdminServer::local_addr`]) and
    /// serves until stopped. `version` is shown on the page unless `hide_version` is set.
    pub async fn start(
        config: AdminConfig,
        registry: Registry,
        appliance: Arc<dyn Appliance>,
        version: &'static str,
    ) -> Result<Self, Error> {
        let tls = match &config.tls_cert {
            Some(path) => Some(TlsAcceptor::from(tls::server_config(path)?)),
            None => None,
        };
        // IP_FREEBIND, as the frontends: a stats page on a VIP starts on the backup node too.
        let listener = fulcrum_common::net::tcp_listener(
            config.listen,
            1024,
            fulcrum_common::net::Sharing::Exclusive,
        )
        .and_then(TcpListener::from_std)
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop, stopped) = watch::channel(false);
        let rates = Arc::new(Mutex::new(rates::Rates::default()));
        let shared = Arc::new(Shared {
            tls: tls.is_some(),
            sessions: session::Sessions::default(),
            rates: Arc::clone(&rates),
            login_refusals: throttle::LogThrottle::default(),
            lockout: lockout::Lockout::default(),
            hosts: host::AllowedHosts::new(&server_names(&config)),
            host_refusals: throttle::LogThrottle::default(),
            per_source: per_source::PerSource::new(config.max_connections_per_source),
            source_refusals: throttle::LogThrottle::default(),
            appliance: Arc::clone(&appliance),
            config,
            registry,
            version,
        });
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::spawn(rates::sample(appliance, rates, stopped.clone()));
        let accept = tokio::spawn(accept(listener, tls, shared, Arc::clone(&slots), stopped));
        tracing::debug!(addr = %local_addr, "admin server listening");
        Ok(Self {
            local_addr,
            stop,
            accept,
            slots,
        })
    }

    /// The address it listens on, with the port the system chose for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving, and returns once the listening socket is closed and every connection
    /// has ended, so a new server can bind the same address.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        // A panic in the accept task is reported by the runtime already; the listener is gone
        // either way.
        let _ = self.accept.await;
        #[allow(
            clippy::cast_possible_truncation,
            reason = "MAX_CONNECTIONS is a small constant"
        )]
        let _ = self.slots.acquire_many(MAX_CONNECTIONS as u32).await;
    }
}

/// What every request handler reads.
struct Shared {
    config: AdminConfig,
    registry: Registry,
    appliance: Arc<dyn Appliance>,
    version: &'static str,
    /// Whether this is HTTPS: the session cookie gets `Secure` and an `Origin` must be https.
    tls: bool,
    sessions: session::Sessions,
    /// Filled each second by [`rates::sample`]; read by each request. A std mutex is right here:
    /// it is held for a map update or lookup, never across an await, and off the traffic path.
    rates: Arc<Mutex<rates::Rates>>,
    /// Refused logins are logged at most ten a minute.
    login_refusals: throttle::LogThrottle,
    /// Refused logins per client: too many, and the client waits.
    lockout: lockout::Lockout,
    /// What a request's `Host` may name.
    hosts: host::AllowedHosts,
    /// Requests refused for their `Host` are logged at most ten a minute.
    host_refusals: throttle::LogThrottle,
    /// The connections each client holds.
    per_source: Arc<per_source::PerSource>,
    /// Connections closed for their client's count are logged at most ten a minute.
    source_refusals: throttle::LogThrottle,
}

/// The names the Host check lets through besides addresses, `localhost` and the host name:
/// `server_names`, and those of the HTTPS certificate, which a browser reaching the server by
/// one of them has already checked.
fn server_names(config: &AdminConfig) -> Vec<String> {
    let mut names = config.server_names.clone();
    if let Some(cert) = &config.tls_cert {
        names.extend(tls::certificate_names(cert));
    }
    names
}

async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    crate::accept::accept(listener, "admin", slots, stop, |stream, peer| {
        let Some(source) = shared.per_source.admit(peer.ip()) else {
            if let Admit::Log { unlogged } = shared.source_refusals.admit(Instant::now()) {
                let max = shared.config.max_connections_per_source;
                tracing::warn!(%peer, max, unlogged, "admin connection closed: its client holds max_connections_per_source already");
            }
            // Dropping the stream closes it: like HAProxy's `tcp-request connection reject`.
            return None;
        };
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        Some(async move {
            connection(stream, peer, tls, shared).await;
            drop(source);
        })
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
) {
    match tls {
        None => serve(stream, peer, shared).await,
        Some(acceptor) => {
            match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve(stream, peer, shared).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "admin TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "admin TLS handshake timed out"),
            }
        }
    }
}

async fn serve<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(routes::handle(&shared, peer, request).await) }
    });
    // hyper bounds only the reading of request headers: a client that stops reading its
    // answers would otherwise hold its slot for ever.
    let activity = Arc::new(Activity::new());
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(
            TokioIo::new(Touching::new(stream, Arc::clone(&activity))),
            service,
        );
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "admin connection ended with an error");
            }
        }
        () = activity.idle(INACTIVITY_TIMEOUT) => {
            tracing::debug!(%peer, "admin connection made no progress: closed");
        }
    }
}
