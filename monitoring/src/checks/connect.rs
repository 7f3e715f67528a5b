//! Opening the TCP connection of `tcp` and `http`, with check_tcp's wording of what failed.

use std::fmt;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::io_error;

/// Why no connection was made.
#[derive(Debug)]
pub enum ConnectError {
    /// The name did not resolve (or resolved to nothing).
    Resolve { host: String },
    /// Every address refused or failed; the last one's error.
    Connect {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve { host } => {
                write!(f, "Invalid hostname, address or socket: {host}")
            }
            Self::Connect { addr, error } => write!(
                f,
                "connect to address {} and port {}: {}",
                addr.ip(),
                addr.port(),
                io_error(error)
            ),
        }
    }
}

/// Connects to `host` (a name or an address) on `port`, trying each address it resolves to.
pub async fn connect(host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let resolve = || ConnectError::Resolve {
        host: host.to_owned(),
    };
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| resolve())?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = Some(ConnectError::Connect { addr, error }),
        }
    }
    Err(last.unwrap_or_else(resolve))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_and_unresolvable() {
        // A port just released by a listener is closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = connect("127.0.0.1", port).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("connect to address 127.0.0.1 and port {port}: Connection refused")
        );
        let err = connect("nonexistent.invalid", 80).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid hostname, address or socket: nonexistent.invalid"
        );
    }
}
