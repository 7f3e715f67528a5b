//! Listening sockets and accepting clients: bind (with IP_FREEBIND, so a VIP held by the peer can
//! be bound before it arrives), wait under the global and per-frontend connection limits, then
//! hand each client to TLS, HTTP/2 or HTTP/1 serving.

use std::{future::Future, io, net::SocketAddr, pin::Pin, sync::Arc};

use fulcrum_common::net::{Sharing, tcp_listener};
use tokio::{
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

pub(crate) use super::frontend_name::ListenerFrontend;
use super::{
    exchange::ClientInfo,
    h1::conn::{Conn, with_timeout},
    h2,
    session::serve_h1,
};
use crate::{
    runtime::{ConnPermit, Runtime},
    state::{FrontendState, counters::FrontendTotal},
};

/// What HTTP/2 clients send first (RFC 9113 §3.4); seen on a plaintext port it means h2c with
/// prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The frontend a listener serves, which a reload may change (see [`ListenerFrontend`]).
pub(crate) type FrontendName = Arc<ListenerFrontend>;

/// Binds `addr` the way a load balancer needs: SO_REUSEADDR so a restart does not wait for
/// TIME_WAIT, IP_FREEBIND so a VIP not yet on this node can be bound, SO_REUSEPORT so a reload
/// can bind it while the listener it replaces still listens, a deep backlog, and
/// TCP_NODELAY, which every accepted connection inherits (as HAProxy sets it on its
/// listeners): a response, or an L4 relay's write, that goes out in pieces must not wait for
/// the client's delayed ACK of the first.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = tcp_listener(addr, 4096, Sharing::ReusePort)?;
    socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
    TcpListener::from_std(listener)
}

/// How often a listener waiting for room under its frontend's `max_connections` looks the
/// frontend up again.
const LIMIT_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Accepts clients on `listener` for the frontend `frontend` names (a reload may hand the
/// address to another frontend) until `stop` is cancelled.
pub(crate) async fn accept_loop(
    rt: Arc<Runtime>,
    frontend: FrontendName,
    listener: TcpListener,
    stop: CancellationToken,
) {
    let local = listener.local_addr().ok();
    loop {
        // Wait for room before accepting, so excess clients stay in the kernel's backlog.
        let global = tokio::select! {
            permit = rt.limit.acquire() => permit,
            () = stop.cancelled() => return,
        };
        let found = {
            let table = rt.table.load();
            frontend
                .find(&table)
                .map(|(i, _)| Arc::clone(&table.frontends[i].state))
        };
        let Some(fe_state) = found else {
            // Mid-reload: this listener's frontend is gone from the table, and the reload is
            // about to stop the listener. Wait for that (or for the address to be handed on).
            drop(global);
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_millis(5)) => continue,
                () = stop.cancelled() => return,
            }
        };
        // Room at once in the usual case, with no timer to set.
        let local_permit = match fe_state.limit.try_acquire() {
            Some(permit) => permit,
            None => tokio::select! {
                permit = fe_state.limit.acquire() => permit,
                () = stop.cancelled() => return,
                // A reload may hand this address to another frontend, whose limit has room
                // while this one stays full (a rename): looked up again now and then.
                () = tokio::time::sleep(LIMIT_RECHECK) => continue,
            },
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(frontend = %frontend.current(), %error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let accepted = Instant::now();
        let local = stream.local_addr().ok().or(local).unwrap_or(peer);
        // Counted from the accept: a client whose frontend a reload has just removed is closed
        // at once below, and counted in the totals all the same.
        let held = Held::new(Arc::clone(&rt), fe_state, (local_permit, global));
        // Looked up once the client is in, so that it meets the settings of that moment.
        let settings = {
            let table = rt.table.load();
            frontend
                .find(&table)
                .map(|(_, fe)| (fe.tls.clone(), fe.timeout_http_request))
        };
        let Some((tls, handshake_timeout)) = settings else {
            continue; // the frontend was removed by a reload: closed, counted out by `held`
        };
        let client = ClientInfo {
            peer,
            local,
            tls: tls.is_some(),
        };
        let frontend = Arc::clone(&frontend);
        // Two kinds of task, each sized for its own path: a TLS connection's task holds only
        // boxes, where the plain path's state would cost every idle TLS client 2.8 KB more.
        match tls {
            Some(config) => rt.connections.spawn(tls_task(
                held,
                frontend,
                client,
                stream,
                config,
                handshake_timeout,
                accepted,
            )),
            None => rt.connections.spawn(plain_task(
                held,
                frontend,
                client,
                stream,
                handshake_timeout,
                accepted,
            )),
        };
    }
}

/// A client connection's place in the totals and under the connection limits: counted in when
/// made, out when dropped, then its permits (the frontend's, then the process's) let go.
struct Held {
    rt: Arc<Runtime>,
    fe_state: Arc<FrontendState>,
    _permits: (ConnPermit, ConnPermit),
}

impl Held {
    fn new(
        rt: Arc<Runtime>,
        fe_state: Arc<FrontendState>,
        permits: (ConnPermit, ConnPermit),
    ) -> Self {
        fe_state.counters.sessions.up();
        rt.active.up();
        fe_state.counters.inc(FrontendTotal::Sessions);
        Self {
            rt,
            fe_state,
            _permits: permits,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.rt.active.down();
        self.fe_state.counters.sessions.down();
    }
}

/// Serves a plaintext client: HTTP/2 with prior knowledge (h2c) or HTTP/1. An `async` block
/// for the reason [`serve_h1`] gives; `held` goes last, after the connection has closed.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice"
)]
fn plain_task(
    held: Held,
    frontend: FrontendName,
    client: ClientInfo,
    stream: TcpStream,
    sniff_timeout: std::time::Duration,
    accepted: Instant,
) -> impl Future<Output = ()> {
    async move {
        let rt = Arc::clone(&held.rt);
        let mut conn = Conn::new(stream);
        if is_h2c(&mut conn, sniff_timeout).await {
            let rewound = h2::Rewind::new(conn.buf.split().freeze(), conn.io);
            Box::pin(h2::serve(rt, &frontend, client, rewound)).await;
        } else {
            serve_h1(rt, &frontend, client, conn, accepted).await;
        }
        drop(held);
    }
}

/// Completes the TLS handshake, then serves HTTP/2 or HTTP/1 as ALPN chose. The handshake's
/// state is boxed and dropped once it ends; the session moves into a box that holds it and its
/// serving, and nothing else: an idle TLS connection keeps no room for a handshake, nor a
/// second copy of the session's place (a local moved into an `.await`ed call keeps its slot).
async fn tls_task(
    held: Held,
    frontend: FrontendName,
    client: ClientInfo,
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    handshake_timeout: std::time::Duration,
    accepted: Instant,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshake = Box::pin(with_timeout(handshake_timeout, acceptor.accept(stream)));
    let stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(client = %client.peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    serving(Arc::clone(&held.rt), &frontend, client, stream, accepted).await;
}

/// What serves a TLS session, boxed with it: HTTP/2 or HTTP/1 as ALPN chose.
fn serving(
    rt: Arc<Runtime>,
    frontend: &FrontendName,
    client: ClientInfo,
    stream: TlsStream<TcpStream>,
    accepted: Instant,
) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        Box::pin(h2::serve(rt, frontend, client, stream))
    } else {
        Box::pin(serve_h1(rt, frontend, client, Conn::new(stream), accepted))
    }
}

/// Reads just enough to tell an h2c preface from an HTTP/1 request, within `timeout` (zero: no
/// limit, as every timeout here).
async fn is_h2c(conn: &mut Conn<TcpStream>, timeout: std::time::Duration) -> bool {
    let sniff = async {
        loop {
            let n = conn.buf.len().min(H2_PREFACE.len());
            if conn.buf[..n] != H2_PREFACE[..n] {
                return false;
            }
            if n == H2_PREFACE.len() {
                return true;
            }
            if conn.fill(std::time::Duration::ZERO).await.is_err() {
                return false;
            }
        }
    };
    with_timeout(timeout, sniff).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::{sync::Arc, time::Duration};

    use tokio::time::Instant;

    use super::{ClientInfo, Held, ListenerFrontend, bind, plain_task, tls_task};

    /// The most a plain connection's task may take: 1,896 bytes in a release build and 1,928 in
    /// a test build. Most of an idle keep-alive connection's memory is this task, so a rare
    /// path's large state (TLS, HTTP/2, error pages, lingering) is boxed, no stack buffer may
    /// live across an await, and `async fn`s that keep a large argument are `async` blocks.
    const TASK_BUDGET: usize = 2048;

    /// Both tiers' client connections come from this listener: each must have Nagle off
    /// without a system call of its own.
    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    /// The most a TLS connection's task may take: its handshake and its session are boxed.
    const TLS_TASK_BUDGET: usize = 512;

    // Input: the futures of a plain client's task and of a TLS one, of the types `accept_loop`
    // spawns (the tracker and tokio add a few words and a header). Output: each within its
    // budget.
    #[tokio::test]
    async fn a_connections_task_stays_small() {
        let config = crate::config::build(&crate::config::Sections::default()).unwrap();
        let registry = crate::state::Registry::default();
        let table = crate::table::Table::build(config, &registry);
        let rt = crate::runtime::Runtime::new(table, registry, 0);
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, peer) = listener.accept().await.unwrap();
        let frontend = Arc::new(ListenerFrontend::new("main".to_owned()));
        let client = ClientInfo {
            peer,
            local: addr,
            tls: false,
        };
        let held = || async {
            let permits = (rt.limit.acquire().await, rt.limit.acquire().await);
            Held::new(Arc::clone(&rt), Arc::default(), permits)
        };
        let timeout = Duration::from_secs(1);

        let task = plain_task(
            held().await,
            Arc::clone(&frontend),
            client,
            accepted,
            timeout,
            Instant::now(),
        );
        let size = std::mem::size_of_val(&task);
        assert!(
            size <= TASK_BUDGET,
            "a plain connection's task takes {size} bytes"
        );

        let tls_config = crate::tls::fixture_server_config();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let task = tls_task(
            held().await,
            frontend,
            ClientInfo {
                tls: true,
                ..client
            },
            accepted,
            tls_config,
            timeout,
            Instant::now(),
        );
        let size = std::mem::size_of_val(&task);
        assert!(
            size <= TLS_TASK_BUDGET,
            "a TLS connection's task takes {size} bytes"
        );
    }
}
