//! TLS termination settings: certificate chains loaded from PEM files and chosen by SNI.
//!
//! Like HAProxy's `crt` list, each file holds a chain and its key; a certificate serves the DNS
//! names in its subjectAltName, or without any, the Common Names of its subject (wildcards
//! included), and the first file is the default for clients that send no SNI or an unknown name.

mod subject_cn;

use std::{collections::HashMap, path::Path, sync::Arc};

use rustls::{
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// Builds a server config offering `alpn` and serving the certificates in `pem_files`. An error
/// names the index of the file at fault, when one is.
pub(crate) fn server_config(
    pem_files: &[&Path],
    alpn: &[String],
) -> Result<Arc<rustls::ServerConfig>, (usize, String)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut resolver = SniResolver::default();
    for (index, path) in pem_files.iter().enumerate() {
        let key = load_certified_key(path, &provider).map_err(|e| (index, e))?;
        resolver.add(key).map_err(|e| (index, e))?;
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| (0, e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.session_storage = session_cache(pem_files);
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // A client that shares no protocol with the list (one offering only `http/1.1` to
    // `alpn = ["h2"]`, or only `http/1.0`: `curl --http1.0`) would have its handshake ended by
    // rustls with `no_application_protocol`, where HAProxy (OpenSSL) goes on without ALPN and
    // serves it HTTP/1. Both are offered last, and served as HTTP/1.
    for fallback in ["http/1.1", "http/1.0"] {
        if !alpn.iter().any(|p| p == fallback) {
            config.alpn_protocols.push(fallback.as_bytes().to_vec());
        }
    }
    Ok(Arc::new(config))
}

/// Sessions kept for resumption, per set of certificate files, as HAProxy's
/// `tune.ssl.cachesize` (20,000 by default) does: rustls keeps 256 per config by default.
const SESSIONS: usize = 20_000;

/// The session cache of the configs serving `pem_files`. It outlives the config, so sessions
/// survive a reload (each builds new configs), and it is shared only by configs serving the same
/// certificates and keys, hence the same identities: it is keyed by the files' content, so a
/// certificate renewed in place (after a key compromise, say) starts a cache of its own, and a
/// session is never resumed under another identity. Caches no config uses any more are dropped
/// here, when a config is built.
fn session_cache(pem_files: &[&Path]) -> Arc<dyn rustls::server::StoresServerSessions> {
    type Caches = HashMap<u64, Arc<rustls::server::ServerSessionMemoryCache>>;
    static CACHES: std::sync::OnceLock<std::sync::Mutex<Caches>> = std::sync::OnceLock::new();
    // The files were just read whole to load them: unreadable now, they key a cache of their own.
    let key = fulcrum_common::fingerprint::of_files(pem_files).unwrap_or_default();
    let caches = CACHES.get_or_init(Default::default);
    let Ok(mut caches) = caches.lock() else {
        return rustls::server::ServerSessionMemoryCache::new(SESSIONS);
    };
    // Held only here: no running config uses it.
    caches.retain(|k, cache| *k == key || Arc::strong_count(cache) > 1);
    caches
        .entry(key)
        .or_insert_with(|| rustls::server::ServerSessionMemoryCache::new(SESSIONS))
        .clone()
}

fn load_certified_key(path: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let shown = path.display();
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificate file {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM in {shown}: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "{shown} holds no certificate (expected a PEM chain followed by its key)"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{shown} holds no usable private key: {e}"))?;
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| format!("certificate and key in {shown} do not go together: {e}"))
}

/// Picks a certificate by the client's SNI: exact names first, then `*.domain` wildcards, then
/// the first certificate loaded. A name two certificates serve is the first one's.
#[derive(Debug, Default)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn add(&mut self, key: Arc<CertifiedKey>) -> Result<(), String> {
        let leaf = key.end_entity_cert().map_err(|e| e.to_string())?;
        let parsed = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| format!("cannot parse certificate: {e}"))?;
        // The subjectAltName's DNS names; for a certificate with none, the CNs, so that one
        // naming its host in the CN alone is still found. HAProxy takes the CNs of every
        // certificate, but a client checks the CN only when there is no DNS name (RFC 6125): a
        // CN beside them would only take a name from a later file that serves it by SAN.
        let mut names: Vec<&str> = parsed.valid_dns_names().collect();
        if names.is_empty() {
            names = subject_cn::common_names(parsed.subject());
        }
        for name in names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(domain) => self.wildcard.entry(domain.to_owned()),
                None => self.exact.entry(name),
            }
            .or_insert_with(|| Arc::clone(&key));
        }
        self.default.get_or_insert(key);
        Ok(())
    }

    fn find(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_name = sni.and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.exact.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        by_name.or(self.default.as_ref()).cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(hello.server_name())
    }
}

/// A server config for `tests/fixtures/tls/a.pem` (a.fulcrum.test), no ALPN: the TLS server of
/// the crate's unit tests.
#[cfg(test)]
pub(crate) fn fixture_server_config() -> Arc<rustls::ServerConfig> {
    let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tls/a.pem");
    server_config(&[Path::new(pem)], &[]).unwrap_or_else(|e| panic!("{e:?}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// `tests/fixtures/tls/NAME.pem`, loaded.
    fn fixture(name: &str) -> Arc<CertifiedKey> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tls");
        let provider = rustls::crypto::ring::default_provider();
        load_certified_key(Path::new(&format!("{dir}/{name}.pem")), &provider).unwrap()
    }

    // Input: a certificate with a subjectAltName (a.fulcrum.test, the default) and one naming
    // its host in its subject's CN alone (c.fulcrum.test). Output: SNI c.fulcrum.test, in any
    // case, gets the second, as with HAProxy; an unknown name gets the default.
    #[test]
    fn a_certificate_is_found_by_its_common_name() {
        let (a, c) = (fixture("a"), fixture("c"));
        let mut resolver = SniResolver::default();
        resolver.add(Arc::clone(&a)).unwrap();
        resolver.add(Arc::clone(&c)).unwrap();
        for sni in ["c.fulcrum.test", "C.Fulcrum.TEST"] {
            assert!(Arc::ptr_eq(&resolver.find(Some(sni)).unwrap(), &c), "{sni}");
        }
        assert!(Arc::ptr_eq(
            &resolver.find(Some("a.fulcrum.test")).unwrap(),
            &a
        ));
        assert!(Arc::ptr_eq(
            &resolver.find(Some("x.fulcrum.test")).unwrap(),
            &a
        ));
    }

    // Input: d.pem first, which serves d.fulcrum.test by SAN and has the CN b.fulcrum.test,
    // then b.pem, which serves b.fulcrum.test by SAN. Output: SNI b.fulcrum.test gets b.pem.
    // (A CN beside DNS names is one no client checks: serving d.pem would fail every client.)
    #[test]
    fn a_common_name_beside_dns_names_takes_no_name() {
        let (d, b) = (fixture("d"), fixture("b"));
        let mut resolver = SniResolver::default();
        resolver.add(Arc::clone(&d)).unwrap();
        resolver.add(Arc::clone(&b)).unwrap();
        assert!(Arc::ptr_eq(
            &resolver.find(Some("b.fulcrum.test")).unwrap(),
            &b
        ));
        assert!(Arc::ptr_eq(
            &resolver.find(Some("d.fulcrum.test")).unwrap(),
            &d
        ));
    }
}
