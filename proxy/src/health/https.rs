//! The TLS side of an `https` check (HAProxy's `check-ssl` with `verify none`, ldirectord's
//! `service=https`): the server's certificate is not verified ([`AnyCertificate`]), since a
//! health check asks whether the server answers, and real servers often carry certificates
//! only the clients' own names or an internal CA make valid. The handshake's signatures are
//! verified, so a server whose TLS is broken fails.
//!
//! SNI is the check's `host` when that names a host (its port dropped), else none; ALPN offers
//! `http/1.1`, the only protocol the probe speaks.

use std::sync::{Arc, OnceLock};

use fulcrum_common::tls::AnyCertificate;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

/// Shakes hands over `stream` as a client of the server at `addr`.
pub(crate) async fn handshake(
    stream: TcpStream,
    host: Option<&str>,
    addr: std::net::SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = host
        .and_then(sni_name)
        .unwrap_or(ServerName::IpAddress(addr.ip().into()));
    let config = config().map_err(std::io::Error::other)?;
    TlsConnector::from(config).connect(name, stream).await
}

/// The name a `host` setting gives SNI: its host part when that is a DNS name (an address sends
/// no SNI, as RFC 6066 says).
fn sni_name(host: &str) -> Option<ServerName<'static>> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    match ServerName::try_from(name).ok()? {
        dns @ ServerName::DnsName(_) => Some(dns.to_owned()),
        _ => None,
    }
}

/// One client config for every `https` check.
fn config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, rustls::Error>> = OnceLock::new();
    let built = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AnyCertificate(Arc::clone(&provider)));
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Every probe a full handshake: a resumed one shows no certificate and signs nothing,
        // and a ticket cached under one `host` would be offered to every server sharing it.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    });
    built.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: `host` values as users write them. Output: a DNS name without its port for SNI;
    // none for an address, bracketed or not.
    #[test]
    fn sni_is_the_host_name_without_its_port() {
        let sni = |host| sni_name(host).map(|n| n.to_str().into_owned());
        assert_eq!(sni("www.example.com"), Some("www.example.com".to_owned()));
        assert_eq!(
            sni("www.example.com:8443"),
            Some("www.example.com".to_owned())
        );
        assert_eq!(sni("10.0.0.2:443"), None);
        assert_eq!(sni("10.0.0.2"), None);
        assert_eq!(sni("[::1]:443"), None);
        assert_eq!(sni("::1"), None);
    }
}
