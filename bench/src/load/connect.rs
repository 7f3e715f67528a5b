//! Opening client connections: TCP from an optional list of source addresses, and TLS on top.
//!
//! The senders are generic over [`Connect`], so the same code drives plain and TLS connections
//! without a dynamic call per read or write, and tests can drive in-memory ones.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// Opens connections to the server under test.
pub(crate) trait Connect {
    /// `Send` because hyper's HTTP/2 client spawns its connection task with `tokio::spawn`.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Opens the `index`th connection; the index picks its source address.
    async fn connect(&self, index: usize) -> io::Result<Self::Stream>;
}

/// Plain TCP with `TCP_NODELAY`, from `bind_ips` in turn when there are some.
#[derive(Debug, Clone)]
pub(crate) struct TcpConnector {
    addr: SocketAddr,
    bind_ips: Arc<[IpAddr]>,
}

impl TcpConnector {
    pub(crate) fn new(addr: SocketAddr, bind_ips: &[IpAddr]) -> Self {
        Self {
            addr,
            bind_ips: bind_ips.into(),
        }
    }
}

impl Connect for TcpConnector {
    type Stream = TcpStream;

    async fn connect(&self, index: usize) -> io::Result<TcpStream> {
        let stream = if self.bind_ips.is_empty() {
            TcpStream::connect(self.addr).await?
        } else {
            let ip = self.bind_ips[index % self.bind_ips.len()];
            let socket = if ip.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            // Binding picks the source port before connecting, among ports not bound on that
            // address; SO_REUSEADDR lets it reuse ports whose old connections are in TIME_WAIT,
            // which a run with a connection per request leaves many of.
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(self.addr).await?
        };
        // Requests are single writes that must leave at once, not wait for Nagle.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// TLS over [`TcpConnector`], with the handshake part of connecting.
#[derive(Debug, Clone)]
pub(crate) struct TlsConnector {
    tcp: TcpConnector,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl TlsConnector {
    pub(crate) fn new(
        tcp: TcpConnector,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Self {
        Self {
            tcp,
            config,
            server_name,
        }
    }
}

impl Connect for TlsConnector {
    type Stream = TlsStream<TcpStream>;

    async fn connect(&self, index: usize) -> io::Result<Self::Stream> {
        let tcp = self.tcp.connect(index).await?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), tcp)
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::net::{IpAddr, Ipv4Addr};

    use tokio::net::TcpListener;

    use super::{Connect, TcpConnector};

    #[tokio::test]
    async fn bind_ips_are_used_in_turn() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let sources: [IpAddr; 2] = [
            Ipv4Addr::new(127, 0, 0, 2).into(),
            Ipv4Addr::new(127, 0, 0, 3).into(),
        ];
        let connector = TcpConnector::new(listener.local_addr().unwrap(), &sources);
        for index in 0..4 {
            let stream = connector.connect(index).await.unwrap();
            assert!(stream.nodelay().unwrap());
            let (_, peer) = listener.accept().await.unwrap();
            assert_eq!(peer.ip(), sources[index % 2]);
            assert_eq!(stream.local_addr().unwrap().ip(), sources[index % 2]);
        }
    }
}
