//! Memory per idle keep-alive connection: the proxy's RSS before and after this process opens
//! many connections, sends one GET on each, reads the answer and then holds them idle.
//!
//! The connections are opened from here (not by the load generator) because they must stay open
//! while RSS is read. Past what one source address can open to one destination (the ephemeral
//! port range, ~28 000), they are spread over 127.0.0.2 to 127.0.0.9, bound before connecting.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Request;
use http::header::HOST;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::cert::SERVER_NAME;
use super::procfs::read_rss_bytes;
use super::report::IdleMemory;

/// Connections being opened at once: enough to be quick, few enough that neither proxy's listen
/// backlog overflows (an overflow would show up as a slow connect, not a failure, but slowly).
const OPEN_CONCURRENCY: usize = 64;
/// Time one connection may take to open and get its answer.
const OPEN_PATIENCE: Duration = Duration::from_secs(30);
/// Wait after the last connection opened before reading RSS, for memory freed lazily.
const SETTLE: Duration = Duration::from_millis(500);
/// The extra source addresses, for counts past one address's ephemeral ports.
const EXTRA_SOURCES: std::ops::RangeInclusive<u8> = 2..=9;

/// Where to connect, and how.
#[derive(Debug, Clone)]
pub(crate) struct IdleTarget<'a> {
    pub(crate) addr: SocketAddr,
    /// The server's certificate for a TLS frontend; the clients trust it and nothing else.
    pub(crate) tls_cert: Option<&'a Path>,
}

/// Opens `count` idle keep-alive connections to the proxy `pid` listening at `target`, and
/// returns how much its RSS grew.
pub(crate) async fn measure_idle(
    pid: u32,
    target: &IdleTarget<'_>,
    count: usize,
) -> anyhow::Result<IdleMemory> {
    let opener = Opener::new(target)?;
    let sources = source_addresses(count, ephemeral_ports())?;
    // One request first, so one-time set-up (the first origin connection, buffer pools) is not
    // counted per connection.
    drop(
        opener
            .open(None)
            .await
            .context("cannot open a first connection")?,
    );
    let rss_before_bytes = read_rss_bytes(pid)?;

    let cancel = CancellationToken::new();
    let closed = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let (opened_tx, mut opened_rx) = mpsc::channel(OPEN_CONCURRENCY);
    // Dropping the set (on any early return) aborts the tasks, which closes their connections.
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        let (opener, cancel, closed, permits, opened_tx) = (
            opener.clone(),
            cancel.clone(),
            closed.clone(),
            permits.clone(),
            opened_tx.clone(),
        );
        tasks.spawn(async move {
            let Ok(permit) = permits.acquire_owned().await else {
                return;
            };
            let opened = opener.open(source).await;
            drop(permit);
            match opened {
                Err(error) => {
                    let _ = opened_tx.send(Err(error)).await;
                }
                Ok(mut connection) => {
                    let _ = opened_tx.send(Ok(())).await;
                    tokio::select! {
                        _ = &mut connection.driver => {
                            closed.fetch_add(1, Ordering::Relaxed);
                        }
                        () = cancel.cancelled() => {}
                    }
                }
            }
        });
    }
    drop(opened_tx);

    let mut failures = 0;
    let mut first_error = None;
    for _ in 0..count {
        match opened_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                failures += 1;
                first_error.get_or_insert(error);
            }
            None => bail!("the connection tasks stopped before reporting"),
        }
    }
    if let Some(error) = first_error {
        return Err(error.context(format!(
            "{failures} of {count} idle connections to {} failed",
            target.addr
        )));
    }
    sleep(SETTLE).await;
    let rss_after_bytes = read_rss_bytes(pid)?;
    let closed_early = closed.load(Ordering::Relaxed);

    cancel.cancel();
    // Closing politely lets the proxy free them before the next measurement; a slow close is
    // cut short by dropping the set.
    let _ = timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;

    let delta = rss_after_bytes as f64 - rss_before_bytes as f64;
    Ok(IdleMemory {
        connections: count,
        tls: target.tls_cert.is_some(),
        rss_before_bytes,
        rss_after_bytes,
        closed_early,
        bytes_per_connection: delta / count.max(1) as f64,
    })
}

/// How many ports one source address can use for connections to one destination.
fn ephemeral_ports() -> usize {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(str::parse::<usize>);
            match (bounds.next(), bounds.next()) {
                (Some(Ok(low)), Some(Ok(high))) if high >= low => Some(high - low + 1),
                _ => None,
            }
        })
        .unwrap_or(60_999 - 32_768 + 1);
    // Leave a tenth for the load generator and connections still in TIME_WAIT.
    range * 9 / 10
}

/// The source addresses to bind, or none when the default one has enough ports.
pub(crate) fn source_addresses(
    count: usize,
    ports_per_address: usize,
) -> anyhow::Result<Vec<Ipv4Addr>> {
    if count <= ports_per_address {
        return Ok(Vec::new());
    }
    let needed = count.div_ceil(ports_per_address.max(1));
    let available = EXTRA_SOURCES.count();
    if needed > available {
        bail!(
            "{count} idle connections need {needed} source addresses of {ports_per_address} \
             ports each, and only {available} (127.0.0.2 to 127.0.0.9) are used"
        );
    }
    Ok(EXTRA_SOURCES
        .take(needed)
        .map(|last| Ipv4Addr::new(127, 0, 0, last))
        .collect())
}

/// An open idle connection: dropping it closes the connection.
struct Connection {
    _sender: SendRequest<Empty<Bytes>>,
    /// Drives the connection; resolves when the proxy closes it.
    driver: Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>,
}

/// Opens connections that have made one request.
#[derive(Clone)]
struct Opener {
    addr: SocketAddr,
    tls: Option<TlsConnector>,
}

impl Opener {
    fn new(target: &IdleTarget<'_>) -> anyhow::Result<Self> {
        let tls = target.tls_cert.map(tls_connector).transpose()?;
        Ok(Self {
            addr: target.addr,
            tls,
        })
    }

    async fn open(&self, source: Option<Ipv4Addr>) -> anyhow::Result<Connection> {
        timeout(OPEN_PATIENCE, self.open_now(source))
            .await
            .with_context(|| format!("no answer within {OPEN_PATIENCE:?}"))?
    }

    async fn open_now(&self, source: Option<Ipv4Addr>) -> anyhow::Result<Connection> {
        let tcp = match source {
            None => TcpStream::connect(self.addr).await,
            Some(ip) => {
                let socket = TcpSocket::new_v4()?;
                socket
                    .bind(SocketAddr::new(IpAddr::V4(ip), 0))
                    .with_context(|| format!("cannot bind {ip}:0"))?;
                socket.connect(self.addr).await
            }
        }
        .with_context(|| format!("cannot connect to {}", self.addr))?;
        match &self.tls {
            None => exchange(tcp).await,
            Some(connector) => {
                let name = ServerName::try_from(SERVER_NAME)?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake failed")?;
                exchange(tls).await
            }
        }
    }
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// One GET and its whole answer, leaving the connection open and idle.
async fn exchange<S>(io: S) -> anyhow::Result<Connection>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, driver) = http1::handshake(TokioIo::new(io))
        .await
        .context("HTTP/1.1 handshake failed")?;
    let mut driver: Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>> = Box::pin(driver);
    let request = Request::get("/")
        .header(HOST, SERVER_NAME)
        .body(Empty::<Bytes>::new())
        .context("cannot build the request")?;
    let answer = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok::<_, hyper::Error>(status)
    };
    let status = tokio::select! {
        status = answer => status.context("the request failed")?,
        closed = &mut driver => {
            closed.context("the connection failed")?;
            bail!("the connection closed before the answer");
        }
    };
    if !status.is_success() {
        bail!("the answer was {status}");
    }
    Ok(Connection {
        _sender: sender,
        driver,
    })
}

/// A TLS client that trusts only `cert` and offers HTTP/1.1.
fn tls_connector(cert: &Path) -> anyhow::Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
    {
        roots.add(der.with_context(|| format!("bad certificate in {}", cert.display()))?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("no TLS version in common with the provider")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::net::Ipv4Addr;

    use super::{IdleTarget, Opener, measure_idle, source_addresses};
    use crate::origin::{self, OriginOptions};

    #[test]
    fn one_source_address_until_its_ports_run_out() {
        assert!(source_addresses(10_000, 25_000).unwrap().is_empty());
        assert!(source_addresses(25_000, 25_000).unwrap().is_empty());
        assert_eq!(
            source_addresses(100_000, 25_000).unwrap(),
            (2..=5)
                .map(|last| Ipv4Addr::new(127, 0, 0, last))
                .collect::<Vec<_>>()
        );
        assert!(source_addresses(300_000, 25_000).is_err());
    }

    /// Past one address's ports, connections come from 127.0.0.2 and up, bound before connecting.
    #[tokio::test]
    async fn connects_from_another_loopback_address() {
        let origin = origin::start("127.0.0.1:0".parse().unwrap(), OriginOptions::default())
            .await
            .unwrap();
        let opener = Opener::new(&IdleTarget {
            addr: origin.addr(),
            tls_cert: None,
        })
        .unwrap();
        opener
            .open(Some(Ipv4Addr::new(127, 0, 0, 2)))
            .await
            .unwrap();
        assert_eq!(origin.requests()[0].peer.ip(), Ipv4Addr::new(127, 0, 0, 2));
        origin.stop().await;
    }

    /// The origin itself stands in for a proxy: the connections open, are answered and held, and
    /// the report adds up.
    #[tokio::test]
    async fn holds_connections_and_reads_rss() {
        let origin = origin::start("127.0.0.1:0".parse().unwrap(), OriginOptions::default())
            .await
            .unwrap();
        let target = IdleTarget {
            addr: origin.addr(),
            tls_cert: None,
        };
        let memory = measure_idle(std::process::id(), &target, 50).await.unwrap();
        assert_eq!(memory.connections, 50);
        assert_eq!(memory.closed_early, 0);
        assert!(memory.rss_before_bytes > 0);
        assert!(memory.bytes_per_connection.is_finite());
        // The first connection plus the 50 idle ones.
        assert_eq!(origin.request_count(), 51);
        origin.stop().await;
    }
}
