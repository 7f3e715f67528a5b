//! The self-signed certificate both proxies terminate TLS with: P-256 (what `openssl` and rustls
//! both handshake fastest with), for `localhost` and `127.0.0.1`, written as one PEM holding the
//! certificate and its key, which is what Fulcrum's `tls.certs` and HAProxy's `crt` both read.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The name in the certificate, which clients that verify it (the idle TLS connections) send.
pub(crate) const SERVER_NAME: &str = "localhost";

/// Generates a certificate and key with `openssl` into `dir`, returns the combined PEM's path.
/// Blocking: it runs one short `openssl` command.
pub(crate) fn generate_cert(openssl: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "7",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            // `req -x509` makes a CA by default, which rustls refuses as a server's certificate
            // (the idle TLS clients verify it, with itself as the only root).
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .with_context(|| format!("cannot run {}", openssl.display()))?;
    if !out.status.success() {
        bail!(
            "openssl req failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut pem =
        std::fs::read(&cert).with_context(|| format!("cannot read {}", cert.display()))?;
    pem.extend(std::fs::read(&key).with_context(|| format!("cannot read {}", key.display()))?);
    let combined = dir.join("site.pem");
    std::fs::write(&combined, pem)
        .with_context(|| format!("cannot write {}", combined.display()))?;
    Ok(combined)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::generate_cert;
    use crate::compare::tools::find_in_path;

    #[test]
    fn the_pem_holds_a_certificate_and_its_key() {
        let Some(openssl) = find_in_path("openssl") else {
            assert!(std::env::var_os("CI").is_none(), "CI must have openssl");
            eprintln!("skipped: openssl is not installed");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let pem = std::fs::read_to_string(generate_cert(&openssl, dir.path()).unwrap()).unwrap();
        assert!(pem.contains("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(pem.contains("PRIVATE KEY-----"), "{pem}");
    }
}
