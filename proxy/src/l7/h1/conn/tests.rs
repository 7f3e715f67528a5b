//! What a [`Conn`] holds while its client is idle.

use std::{future::Future, net::SocketAddr, pin::pin, task::Poll, time::Duration};

use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, client, server};

use super::{Conn, IoFailure, READ_CHUNK};
use crate::l7::h1::spare;

const PATIENCE: Duration = Duration::from_secs(10);

/// A TLS connection accepted on loopback with `tests/fixtures/tls/a.pem`, and its client.
async fn tls_pair() -> (
    Conn<server::TlsStream<TcpStream>>,
    client::TlsStream<TcpStream>,
) {
    let config = crate::tls::fixture_server_config();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr: SocketAddr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (accepted, client) = tokio::join!(
        async {
            let (tcp, _) = listener.accept().await?;
            TlsAcceptor::from(config).accept(tcp).await
        },
        async {
            let tcp = TcpStream::connect(addr).await?;
            crate::health::https::handshake(tcp, Some("a.fulcrum.test"), addr).await
        },
    );
    let (accepted, client) = (
        accepted.unwrap_or_else(|e| panic!("{e}")),
        client.unwrap_or_else(|e| panic!("{e}")),
    );
    (Conn::new(accepted), client)
}

/// A TLS pair whose server side has read the client's first request, `first`, whole and
/// consumed it, as a keep-alive connection between requests.
async fn served_once() -> (
    Conn<server::TlsStream<TcpStream>>,
    client::TlsStream<TcpStream>,
) {
    let (mut conn, mut client) = tls_pair().await;
    client
        .write_all(b"first")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client.flush().await.unwrap_or_else(|e| panic!("{e}"));
    conn.fill(PATIENCE).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&conn.buf[..], b"first");
    conn.buf.clear();
    (conn, client)
}

/// Polls `fut` once.
async fn poll_once<F: Future + Unpin>(mut fut: F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut fut).poll(cx))).await
}

// Input: a TLS client sends a request, which the server side reads whole, then sends nothing
// until the server side is waiting in `fill_idle`; then a second request. Output: while it
// waits, the server side's read buffer is back among the thread's spares; the second request
// wakes it and is read.
#[tokio::test]
async fn an_idle_tls_connection_waits_without_its_read_buffer() {
    let (mut conn, mut client) = served_once().await;

    let mut idle_timer = pin!(tokio::time::sleep(Duration::ZERO));
    let read = {
        let mut idle = pin!(conn.fill_idle(PATIENCE, idle_timer.as_mut()));
        assert!(poll_once(idle.as_mut()).await.is_pending());
        let spare = spare::take_read();
        assert!(
            spare.capacity() >= READ_CHUNK,
            "the idle connection kept its read buffer ({} bytes spare)",
            spare.capacity()
        );
        spare::put_read(spare);

        client
            .write_all(b"second")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client.flush().await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::timeout(PATIENCE, idle).await
    };
    assert!(matches!(read, Ok(Ok(6))), "{read:?}");
    assert_eq!(&conn.buf[..], b"second");
}

// Input: a TLS client sends a request, which the server side reads, then closes its side
// (`close_notify`, then FIN) while the server side waits in `fill_idle`. Output: the wait ends
// with `Closed` at once, not at its timeout.
#[tokio::test]
async fn an_idle_tls_connection_sees_its_client_close() {
    let (mut conn, mut client) = served_once().await;

    let mut idle_timer = pin!(tokio::time::sleep(Duration::ZERO));
    let mut idle = pin!(conn.fill_idle(PATIENCE, idle_timer.as_mut()));
    assert!(poll_once(idle.as_mut()).await.is_pending());
    client.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    let read = tokio::time::timeout(PATIENCE / 2, idle).await;
    assert!(matches!(read, Ok(Err(IoFailure::Closed))), "{read:?}");
}
