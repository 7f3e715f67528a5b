//! HTTPS for the admin server: one PEM file holding the certificate chain and its key, as
//! HAProxy's `crt` and the proxy's `tls.certs` take them.

use std::{path::Path, sync::Arc};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::Error;

/// Builds the server config from `path`; every error says what is wrong with the file.
pub(crate) fn server_config(path: &Path) -> Result<Arc<rustls::ServerConfig>, Error> {
    let error = |reason: String| Error::Tls {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(format!("cannot read it: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(error(
            "it holds no certificate (expected a PEM chain followed by its key)".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(path)
        .map_err(|e| error(format!("it holds no usable private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| error(format!("the certificate and key do not go together: {e}")))?;
    // The server speaks HTTP/1.1 only; saying so lets clients skip an h2 attempt.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The DNS names of the first certificate in `path` (its subjectAltName's), which a browser
/// checks and so names the server by: they pass the Host check as `server_names` do
/// (`*.example.com` for one label under it). None if the file cannot be read or parsed, which
/// [`server_config`] reports.
pub(crate) fn certificate_names(path: &Path) -> Vec<String> {
    let Some(Ok(leaf)) = CertificateDer::pem_file_iter(path)
        .ok()
        .and_then(|mut c| c.next())
    else {
        return Vec::new();
    };
    webpki::EndEntityCert::try_from(&leaf)
        .map(|cert| cert.valid_dns_names().map(str::to_owned).collect())
        .unwrap_or_default()
}
