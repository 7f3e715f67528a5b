//! What a load run is asked to do: the plain options struct the command line fills in and that
//! other tools (`compare`) can build directly.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a load run needs to know. [`Default`] is `fulcrum-bench load`'s defaults against
/// the origin's default address.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// `http://` or `https://` URL; its path is requested unless [`LoadOptions::paths`] is set.
    pub url: String,
    /// Client connections, spread over [`LoadOptions::threads`].
    pub connections: usize,
    /// When the run ends, once the warm-up is over.
    pub stop: Stop,
    /// Time spent sending load before measuring, so caches, pools and TCP windows are warm.
    pub warmup: Duration,
    /// Requests per second over all connections (open loop, latency from the intended send
    /// time); `None` sends each connection's next request as soon as the previous one is answered.
    pub rate: Option<f64>,
    /// Request method, sent as given.
    pub method: String,
    /// Paths requested in turn by each connection; empty means the URL's path.
    pub paths: Vec<String>,
    /// Bytes of request body (filler), sent with `Content-Length`.
    pub body_size: usize,
    /// Extra request headers, `(name, value)`, sent as given after `Host`.
    pub headers: Vec<(String, String)>,
    /// HTTP/1.1 only: reuse connections; when off, every request opens a new connection and
    /// says `Connection: close`.
    pub keep_alive: bool,
    pub protocol: Protocol,
    /// HTTP/2 only: concurrent streams per connection.
    pub streams: usize,
    /// `https://` only: accept any server certificate (benchmarks use self-signed ones).
    pub insecure: bool,
    /// `https://` only: PEM file of the certificates to trust, when not `insecure`.
    pub cacert: Option<PathBuf>,
    /// Longest a request may take, connection included, before it counts as a timeout.
    pub timeout: Duration,
    /// Threads, each running its own single-threaded runtime with its share of connections.
    pub threads: usize,
    /// Source addresses for client sockets, used in turn by successive connections; empty lets
    /// the kernel choose. Each address has its own ~28k ephemeral ports towards one server.
    pub bind_ips: Vec<IpAddr>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081/".to_owned(),
            connections: 64,
            stop: Stop::Duration(Duration::from_secs(10)),
            warmup: Duration::ZERO,
            rate: None,
            method: "GET".to_owned(),
            paths: Vec::new(),
            body_size: 0,
            headers: Vec::new(),
            keep_alive: true,
            protocol: Protocol::Http1,
            streams: 10,
            insecure: false,
            cacert: None,
            timeout: Duration::from_secs(5),
            threads: 1,
            bind_ips: Vec::new(),
        }
    }
}

/// When a run stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long (warm-up not included); requests in flight then are still waited for.
    Duration(Duration),
    /// After this many requests were attempted once the warm-up is over.
    Requests(u64),
}

/// The HTTP version spoken to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 with the load generator's own client.
    Http1,
    /// HTTP/2: ALPN `h2` over TLS, prior knowledge (h2c) over plain TCP.
    H2,
}

impl Protocol {
    /// The name written in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::H2 => "h2",
        }
    }
}
