//! TLS for the NRPE listener: a certificate chain and its key, served with rustls (TLS 1.2 and
//! 1.3, ring).
//!
//! A default `check_nrpe` (no `-n`, `-d 1`: anonymous DH allowed, not required) offers ordinary
//! certificate suites too and negotiates one of them. `check_nrpe -d 2` offers anonymous DH only,
//! which rustls does not implement: that handshake fails (counted as a `tls` refusal). The
//! client does not verify the certificate unless given `-A`, so a self-signed one serves.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// The PEM files of `tls = { cert, key }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate, then its chain.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A hash of both files' content when the config was checked: a certificate renewed in
    /// place makes the config differ, so a reload restarts the agent with it.
    pub fingerprint: Option<u64>,
}

/// A certificate or key that cannot be served; the text says which file and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NRPE TLS {file} {path}: {reason}")]
pub struct TlsError {
    /// `certificate` or `key`.
    pub file: &'static str,
    pub path: PathBuf,
    pub reason: String,
}

/// Reads both files and builds the rustls config; also what `[nrpe]`'s check runs.
pub(super) fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_error = |reason: String| error("certificate", &files.cert, reason);
    let key_error = |reason: String| error("key", &files.key, reason);
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert_error(format!("cannot read it: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(cert_error("it holds no PEM certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| key_error(format!("it holds no usable PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| cert_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| key_error(format!("it does not go with the certificate: {e}")))?;
    Ok(Arc::new(config))
}

fn error(file: &'static str, path: &Path, reason: String) -> TlsError {
    TlsError {
        file,
        path: path.to_owned(),
        reason,
    }
}
