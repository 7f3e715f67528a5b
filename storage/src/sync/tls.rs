//! TLS for a sync set's peer links (`tls = { cert, key, ca }`): the PEM files read into rustls
//! configs for both ends of a link, and the stream a link runs on, plain TCP or TLS over it.
//!
//! Mutual TLS 1.3 (rustls, ring). The accepting node presents `cert` and requires one from the
//! dialer, which presents the same `cert`; each verifies the other's chain against `ca`. The
//! dialer also checks that the accepting node's certificate names the IP address it dialed (a
//! subjectAltName of type IP, as `peers` are `IP:port`), the way a browser checks a host name.
//! The accepting node checks the dialer's chain only (stunnel's `verifyChain`): a dialer's
//! source address need not be its `listen`, and the Hello that follows says which peer it is.
//! The shared secret's HMAC challenge still runs inside the TLS session: a peer needs both.

use std::{
    fmt, io,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use rustls::{
    CertificateError, RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

/// The PEM files of `tls = { cert, key, ca }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate, then its chain; presented to every peer.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificates a peer's must chain to: a CA's, or the peers' own self-signed ones.
    pub ca: PathBuf,
}

/// Which of the files a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Cert,
    Key,
    Ca,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cert => "certificate",
            Self::Key => "key",
            Self::Ca => "CA bundle",
        })
    }
}

/// A file that cannot be used; the text says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS {file} {path}: {reason}")]
pub struct TlsError {
    pub file: TlsFile,
    pub path: PathBuf,
    pub reason: String,
}

/// A set's TLS, loaded: what both ends of a link need. Two compare equal when they name the
/// same files with the same contents (as read when the config was built).
#[derive(Clone)]
pub struct SyncTls {
    files: TlsFiles,
    /// SHA-256 over the three files' contents.
    digest: [u8; 32],
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl fmt::Debug for SyncTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SyncTls {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files && self.digest == other.digest
    }
}

impl Eq for SyncTls {}

/// A TLS record holding a fatal `decode_error` alert (content type 21, TLS 1.2 record version,
/// length 2, level 2, description 50), sent when a peer's first bytes were not TLS.
const NOT_TLS_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];

impl SyncTls {
    /// Reads the files and builds both ends' configs for a node listening on `listen` with
    /// `peers`. Also checks this node's certificate as its peers will (when `ca` holds its
    /// issuer): a certificate they would refuse is an error here rather than at every
    /// connection.
    pub fn load(
        files: TlsFiles,
        listen: SocketAddr,
        peers: &[SocketAddr],
    ) -> Result<Self, TlsError> {
        let fail = |file: TlsFile, reason: String| TlsError {
            file,
            path: match file {
                TlsFile::Cert => files.cert.clone(),
                TlsFile::Key => files.key.clone(),
                TlsFile::Ca => files.ca.clone(),
            },
            reason,
        };
        let cert_pem = read(&files.cert).map_err(|r| fail(TlsFile::Cert, r))?;
        let key_pem = read(&files.key).map_err(|r| fail(TlsFile::Key, r))?;
        let ca_pem = read(&files.ca).map_err(|r| fail(TlsFile::Ca, r))?;

        let chain = certificates(&cert_pem).map_err(|r| fail(TlsFile::Cert, r))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            fail(
                TlsFile::Key,
                format!("it holds no usable PEM private key: {e}"),
            )
        })?;
        let mut roots = RootCertStore::empty();
        for (i, cert) in certificates(&ca_pem)
            .map_err(|r| fail(TlsFile::Ca, r))?
            .into_iter()
            .enumerate()
        {
            roots.add(cert).map_err(|e| {
                fail(
                    TlsFile::Ca,
                    format!("its certificate {} cannot be trusted: {e}", i + 1),
                )
            })?;
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(roots);
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|e| fail(TlsFile::Ca, e.to_string()))?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| fail(TlsFile::Ca, e.to_string()))?;
        let mismatch = |e: rustls::Error| {
            let cert = files.cert.display();
            fail(
                TlsFile::Key,
                match e {
                    rustls::Error::InconsistentKeys(_) => format!(
                        "it does not go with the certificate {cert}: their public keys differ"
                    ),
                    other => format!("it cannot be used with the certificate {cert}: {other}"),
                },
            )
        };
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| fail(TlsFile::Cert, e.to_string()))?
            .with_client_cert_verifier(Arc::clone(&client_verifier))
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(mismatch)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| fail(TlsFile::Cert, e.to_string()))?
            .with_webpki_verifier(Arc::clone(&server_verifier))
            .with_client_auth_cert(chain.clone(), key)
            .map_err(mismatch)?;
        check_own(&chain, listen, peers, &*server_verifier, &*client_verifier)
            .map_err(|r| fail(TlsFile::Cert, r))?;

        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        for pem in [&cert_pem, &key_pem, &ca_pem] {
            digest.update(&(pem.len() as u64).to_be_bytes());
            digest.update(pem);
        }
        let mut sum = [0; 32];
        sum.copy_from_slice(digest.finish().as_ref());
        Ok(Self {
            files,
            digest: sum,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The accepting end's TLS handshake, within `timeout`; `Err` says why, for the log.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> Result<LinkStream, String> {
        let accept = self.acceptor.accept(stream).into_fallible();
        match tokio::time::timeout(timeout, accept).await {
            Err(_) => Err(format!("TLS handshake did not finish within {timeout:?}")),
            Ok(Err((e, mut tcp))) => {
                // rustls sends no alert when the first bytes are not TLS at all: a plain peer
                // would only see the link close. A fatal decode_error alert tells it what it met.
                let _ = tcp.write_all(&NOT_TLS_ALERT).await;
                Err(explain(&e, None))
            }
            Ok(Ok(tls)) => Ok(LinkStream::Tls(Box::new(TlsStream::Server(tls)))),
        }
    }

    /// The dialing end's TLS handshake with the peer at `ip`, within `timeout`.
    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
        ip: IpAddr,
        timeout: Duration,
    ) -> Result<LinkStream, String> {
        let name = ServerName::IpAddress(ip.into());
        match tokio::time::timeout(timeout, self.connector.connect(name, stream)).await {
            Err(_) => Err(format!("TLS handshake did not finish within {timeout:?}")),
            Ok(Err(e)) => Err(explain(&e, Some(ip))),
            Ok(Ok(tls)) => Ok(LinkStream::Tls(Box::new(TlsStream::Client(tls)))),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))
}

/// Every certificate in a PEM text; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
    }
    Ok(certs)
}

/// Verifies this node's chain as its peers will: as a server for `listen`'s IP if a peer dials
/// this node (its `listen` sorts lower), as a client if this node dials one. Only what is wrong
/// with the certificate itself is an error (its names, CA:TRUE, its dates): whether its issuer
/// is trusted is the peers' to judge, as they may trust another CA than this node does.
fn check_own(
    chain: &[CertificateDer<'static>],
    listen: SocketAddr,
    peers: &[SocketAddr],
    server: &dyn ServerCertVerifier,
    client: &dyn ClientCertVerifier,
) -> Result<(), String> {
    let Some((end, intermediates)) = chain.split_first() else {
        return Ok(());
    };
    let now = UnixTime::now();
    let name = ServerName::IpAddress(listen.ip().into());
    let mut results = Vec::new();
    if peers.iter().any(|peer| *peer < listen) {
        results.push(
            server
                .verify_server_cert(end, intermediates, &name, &[], now)
                .map(drop),
        );
    }
    if peers.iter().any(|peer| *peer > listen) {
        results.push(client.verify_client_cert(end, intermediates, now).map(drop));
    }
    for result in results {
        let Err(error) = result else { continue };
        match error {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => {
                let ip = listen.ip();
                return Err(format!(
                    "it does not name this node's address {ip}, which the peers check when they dial it: give it a subjectAltName IP:{ip} (openssl req -addext \"subjectAltName=IP:{ip}\")"
                ));
            }
            e if is_ca_used_as_end_entity(&e) => {
                return Err(
                    "it is a CA certificate (basicConstraints CA:TRUE), which the peers refuse as a node's certificate: make it with basicConstraints CA:FALSE (openssl req -addext \"basicConstraints=critical,CA:FALSE\")"
                        .to_owned(),
                );
            }
            rustls::Error::InvalidCertificate(
                e @ (CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. }),
            ) => return Err(format!("the peers would refuse it: {e}")),
            // Anything about the issuer is the peers' to judge: they may trust another CA.
            _ => {}
        }
    }
    Ok(())
}

fn is_ca_used_as_end_entity(error: &rustls::Error) -> bool {
    let rustls::Error::InvalidCertificate(CertificateError::Other(other)) = error else {
        return false;
    };
    matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    )
}

/// Why the peer ended the link, when `error` (from a link that finished its TLS handshake) is
/// a TLS alert or error: in TLS 1.3 the dialer's handshake is over before the accepting node
/// has checked its certificate, so a refusal of it arrives as the first read's error.
pub(crate) fn refusal(error: &io::Error) -> Option<String> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|_| explain(error, None))
}

/// A failed handshake, in words that point at the likely cause; `dialed` is the peer's IP
/// when we dialed it.
fn explain(error: &io::Error, dialed: Option<IpAddr>) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => format!(
                "the peer closed the connection during the TLS handshake (has it `tls` set, and does it trust our certificate?): {error}"
            ),
            _ => format!("TLS handshake: {error}"),
        };
    };
    match tls {
        rustls::Error::InvalidMessage(_) => format!(
            "the peer does not speak TLS: set `tls` on every node of the set, or on none ({tls})"
        ),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the peer's certificate is not signed by one in `tls.ca`".to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => match dialed {
            Some(ip) => {
                format!("the peer's certificate does not name {ip}, the address dialed ({tls})")
            }
            None => format!("the peer's certificate: {tls}"),
        },
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            format!("the peer's certificate is refused: {tls}")
        }
        rustls::Error::AlertReceived(alert) => format!(
            "the peer refused the TLS handshake ({alert:?}): does it trust our certificate (its `tls.ca`)?"
        ),
        other => format!("TLS handshake: {other}"),
    }
}

/// A peer link's byte stream: TCP, or TLS over it.
#[derive(Debug)]
pub(crate) enum LinkStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl LinkStream {
    /// The halves for the reader and the writer tasks. A plain link splits without a lock, as
    /// before; a TLS session is one state, shared by its halves through tokio's split.
    pub(crate) fn into_split(self) -> (LinkRead, LinkWrite) {
        match self {
            Self::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (LinkRead::Plain(read), LinkWrite::Plain(write))
            }
            Self::Tls(tls) => {
                let (read, write) = tokio::io::split(*tls);
                (LinkRead::Tls(read), LinkWrite::Tls(write))
            }
        }
    }
}

/// The reading half of a [`LinkStream`].
#[derive(Debug)]
pub(crate) enum LinkRead {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half of a [`LinkStream`].
#[derive(Debug)]
pub(crate) enum LinkWrite {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl AsyncRead for LinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for LinkRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LinkWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Test certificates, for the tests below and the config's.
#[cfg(test)]
#[path = "../../tests/support/tls_certs.rs"]
#[allow(dead_code, reason = "the tests use some of the helpers")]
pub(crate) mod tls_certs;

#[cfg(test)]
mod tests {
    //! The reasons a refused handshake is logged with, on each end.

    #![allow(clippy::unwrap_used, reason = "tests")]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const LOCAL: &str = "127.0.0.1:1";
    const PEER: &str = "127.0.0.1:2";
    const TIMEOUT: Duration = Duration::from_secs(5);

    fn load(issued: &tls_certs::Issued, ca: &Path) -> SyncTls {
        let files = TlsFiles {
            cert: issued.cert.clone(),
            key: issued.key.clone(),
            ca: ca.to_owned(),
        };
        SyncTls::load(files, LOCAL.parse().unwrap(), &[PEER.parse().unwrap()]).unwrap()
    }

    /// A connected pair of TCP streams: (dialer's end, accepter's end).
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialed = TcpStream::connect(listener.local_addr().unwrap());
        let (dialed, accepted) = tokio::join!(dialed, listener.accept());
        (dialed.unwrap(), accepted.unwrap().0)
    }

    // Input: a plain node's greeting to a TLS node, and a plain node's greeting to a TLS
    // dialer. Output: both TLS ends say the peer does not speak TLS, without waiting.
    #[tokio::test]
    async fn a_plain_peer_is_named_as_such() {
        let pki = tls_certs::Pki::new();
        let tls = load(&pki.issue("a"), &pki.ca.cert);
        let greeting = [0xF1, 0xC5, 0, 1, 0, 0, 0, 40, 1, 2];

        let (mut plain, accepted) = tcp_pair().await;
        plain.write_all(&greeting).await.unwrap();
        let reason = tls.accept(accepted, TIMEOUT).await.unwrap_err();
        assert!(reason.contains("does not speak TLS"), "{reason}");

        let (dialed, mut plain) = tcp_pair().await;
        plain.write_all(&greeting).await.unwrap();
        let ip = "127.0.0.1".parse().unwrap();
        let reason = tls.connect(dialed, ip, TIMEOUT).await.unwrap_err();
        assert!(reason.contains("does not speak TLS"), "{reason}");
    }

    // Input: a dialer whose certificate the accepting node's `ca` does not hold. Output: the
    // accepting node says so; the dialer, whose TLS 1.3 handshake is over first, learns it
    // from its first read, in words.
    #[tokio::test]
    async fn an_untrusted_dialer_is_told_apart() {
        let pki = tls_certs::Pki::new();
        let server = load(&pki.issue("a"), &pki.ca.cert);
        let rogue = load(&pki.self_signed("rogue"), &pki.ca.cert);
        let (dialed, accepted) = tcp_pair().await;
        let ip = "127.0.0.1".parse().unwrap();
        let (client, refused) = tokio::join!(
            rogue.connect(dialed, ip, TIMEOUT),
            server.accept(accepted, TIMEOUT)
        );
        let reason = refused.unwrap_err();
        assert!(reason.contains("not signed by one in `tls.ca`"), "{reason}");
        let mut client = client.unwrap();
        let error = client.read_u8().await.unwrap_err();
        let reason = refusal(&error).unwrap();
        assert!(reason.contains("refused the TLS handshake"), "{reason}");
    }

    // Input: an accepting node whose certificate names no IP address. Output: the dialer
    // refuses it, naming the address it dialed.
    #[tokio::test]
    async fn a_certificate_without_the_dialed_address_is_refused() {
        let pki = tls_certs::Pki::new();
        let unnamed = pki.issue_with("unnamed", None);
        let files = TlsFiles {
            cert: unnamed.cert.clone(),
            key: unnamed.key.clone(),
            ca: pki.ca.cert.clone(),
        };
        // Only dials (its peer sorts above it), so its own name is not checked.
        let server = SyncTls::load(files, LOCAL.parse().unwrap(), &[PEER.parse().unwrap()]);
        let server = server.unwrap();
        let client = load(&pki.issue("b"), &pki.ca.cert);
        let (dialed, accepted) = tcp_pair().await;
        let ip = "127.0.0.1".parse().unwrap();
        let (refused, _) = tokio::join!(
            client.connect(dialed, ip, TIMEOUT),
            server.accept(accepted, TIMEOUT)
        );
        let reason = refused.unwrap_err();
        assert!(reason.contains("does not name 127.0.0.1"), "{reason}");
    }
}
