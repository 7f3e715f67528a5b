//! HTTP/2 with prior knowledge (h2c) from hyper's client, for the tests that speak it.

/// A GET of `path` from `addr`, with no body, for an h2c client.
pub fn h2_get(
    addr: std::net::SocketAddr,
    path: &str,
) -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    http::Request::get(format!("http://{addr}{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap()
}

/// An HTTP/2 client connection with prior knowledge to `addr`: its sender, and the task that
/// drives it (which ends when the connection does).
pub async fn h2c(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(conn))
}

/// An HTTP/2 client connection with prior knowledge to `addr` from the `h2` crate, for frames
/// hyper's client does not send (a stream reset with a chosen reason), ready for a request;
/// its connection is driven by a task of its own.
pub async fn h2c_frames(addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    client.ready().await.unwrap()
}
