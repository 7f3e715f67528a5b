//! The TLS client configuration: rustls with the ring provider, trusting either any certificate
//! (`--insecure`, for the self-signed certificates benchmarks use) or the ones in a PEM file.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use fulcrum_common::tls::AnyCertificate;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// A client configuration offering `alpn` (`h2` or `http/1.1`).
pub(crate) fn client_config(
    insecure: bool,
    cacert: Option<&Path>,
    alpn: &[u8],
) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else if let Some(path) = cacert {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read {}", path.display()))?
        {
            let certificate =
                certificate.with_context(|| format!("bad PEM in {}", path.display()))?;
            roots
                .add(certificate)
                .with_context(|| format!("bad certificate in {}", path.display()))?;
        }
        if roots.is_empty() {
            bail!("{} holds no certificate", path.display());
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        bail!("https:// needs --insecure (accept any certificate) or --cacert FILE");
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// The server name to send and check, from the URL's host (a name or an address).
pub(crate) fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).with_context(|| format!("bad TLS server name {host:?}"))
}
