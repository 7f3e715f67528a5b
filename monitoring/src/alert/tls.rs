//! Client TLS for HTTPS webhooks: the system's CA bundle, plus an optional `ca` file for a
//! receiver with a private CA.
//!
//! The bundle is read from the file the distribution maintains (`SSL_CERT_FILE` first, as
//! OpenSSL does), which is what rustls-native-certs does on Linux; reading it here saves a
//! dependency for one function.

use std::{path::Path, sync::Arc};

use rustls_pki_types::{CertificateDer, pem::PemObject};

/// Where distributions keep their CA bundle: Debian and Ubuntu, Fedora and RHEL, openSUSE,
/// Alpine.
const BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A client config trusting the system roots and the certificates of `extra_pem`.
pub(super) fn client_config(extra_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(bundle) = system_bundle() {
        // A bundle with an odd entry still holds the others; rustls skips what it cannot use.
        let certs = CertificateDer::pem_file_iter(&bundle)
            .map(|iter| iter.filter_map(Result::ok).collect::<Vec<_>>())
            .unwrap_or_default();
        roots.add_parsable_certificates(certs);
    }
    if let Some(pem) = extra_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("bad PEM in `ca`: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("unusable certificate in `ca`: {e}"))?;
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "no CA certificates: none of {} exists, and no `ca` is set",
            BUNDLES.join(", ")
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The PEM certificates of `pem`, for checking a `ca` file at load time.
pub(super) fn count_certificates(pem: &[u8]) -> Result<usize, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map(|certs| certs.len())
        .map_err(|e| format!("bad PEM: {e}"))
}

fn system_bundle() -> Option<std::path::PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(BUNDLES.iter().map(|p| Path::new(p).to_path_buf()))
        .find(|p| p.is_file())
}
