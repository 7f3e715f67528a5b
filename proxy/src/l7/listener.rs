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
use crate::{runtime::Runtime, state::counters::FrontendTotal};

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
        let local_permit = tokio::select! {
            permit = fe_state.limit.acquire() => permit,
            () = stop.cancelled() => return,
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
        let rt2 = Arc::clone(&rt);
        let frontend = Arc::clone(&frontend);
        rt.connections.spawn(async move {
            fe_state.counters.sessions.up();
            rt2.active.up();
            fe_state.counters.inc(FrontendTotal::Sessions);
            serve_connection(Arc::clone(&rt2), &frontend, stream, peer, local, accepted).await;
            rt2.active.down();
            fe_state.counters.sessions.down();
            drop(local_permit);
            drop(global);
        });
    }
}

async fn serve_connection(
    rt: Arc<Runtime>,
    frontend: &FrontendName,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    accepted: Instant,
) {
    let (tls, handshake_timeout) = {
        let table = rt.table.load();
        let Some((_, fe)) = frontend.find(&table) else {
            return;
        };
        (fe.tls.clone(), fe.timeout_http_request)
    };
    match tls {
        // Not boxed: `serve_tls` keeps its large parts (the handshake, then the TLS session
        // and what serves it) in boxes of their own.
        Some(config) => {
            let client = ClientInfo {
                peer,
                local,
                tls: true,
            };
            serve_tls(
                rt,
                frontend,
                client,
                stream,
                config,
                handshake_timeout,
                accepted,
            )
            .await;
        }
        None => {
            let client = ClientInfo {
                peer,
                local,
                tls: false,
            };
            let mut conn = Conn::new(stream);
            if is_h2c(&mut conn, handshake_timeout).await {
                let rewound = h2::Rewind::new(conn.buf.split().freeze(), conn.io);
                Box::pin(h2::serve(rt, frontend, client, rewound)).await;
            } else {
                serve_h1(rt, frontend, client, conn, accepted).await;
            }
        }
    }
}

/// Completes the TLS handshake, then serves HTTP/2 or HTTP/1 as ALPN chose. The handshake's
/// state is boxed and dropped once it ends; the session moves into a box that holds it and its
/// serving, and nothing else: an idle TLS connection keeps no room for a handshake, nor a
/// second copy of the session's place (a local moved into an `.await`ed call keeps its slot).
async fn serve_tls(
    rt: Arc<Runtime>,
    frontend: &FrontendName,
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
    serving(rt, frontend, client, stream, accepted).await;
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

    use std::sync::Arc;

    use tokio::time::Instant;

    use super::{ListenerFrontend, bind, serve_connection};

    /// The most a plain connection's task may take. An idle keep-alive connection costs about
    /// this much (issue 3 wants at most 8 KiB per idle connection), so a rare path's large
    /// state (TLS, HTTP/2) is boxed and no stack buffer may live across an await.
    const TASK_BUDGET: usize = 4096;

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

    #[tokio::test]
    async fn a_plain_connections_task_stays_small() {
        let config = crate::config::build(&crate::config::Sections::default()).unwrap();
        let registry = crate::state::Registry::default();
        let table = crate::table::Table::build(config, &registry);
        let rt = crate::runtime::Runtime::new(table, registry, 0);
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, peer) = listener.accept().await.unwrap();
        let frontend = Arc::new(ListenerFrontend::new("main".to_owned()));
        let task = serve_connection(rt, &frontend, accepted, peer, addr, Instant::now());
        let size = std::mem::size_of_val(&task);
        assert!(
            size <= TASK_BUDGET,
            "a connection's task takes {size} bytes"
        );
    }
}
