//! The server a run talks to, read from the URL and resolved once before any connection opens.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};
use http::Uri;

/// A parsed and resolved URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// `https://`.
    pub(super) tls: bool,
    /// Host name or address without brackets, for TLS server name indication.
    pub(super) host: String,
    /// `host[:port]` as written in the URL, for the `Host` header and the HTTP/2 `:authority`.
    pub(super) authority: String,
    /// Path and query, `/` when the URL has none.
    pub(super) path: String,
    /// Where connections go.
    pub(super) addr: SocketAddr,
}

impl Target {
    /// Parses `url` and resolves its host, preferring an address of the same family as the
    /// first of `bind_ips` (a socket bound to an IPv4 address cannot reach an IPv6 one).
    pub(super) fn resolve(url: &str, bind_ips: &[IpAddr]) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => bail!("URL {url:?} must start with http:// or https://"),
        };
        let Some(authority) = uri.authority() else {
            bail!("URL {url:?} has no host");
        };
        if authority.as_str().contains('@') {
            bail!("URL {url:?} has user information, which is not supported");
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_owned();
        let candidates: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .collect();
        let wanted_v4 = bind_ips.first().map(IpAddr::is_ipv4);
        let addr = candidates
            .iter()
            .find(|addr| wanted_v4.is_none_or(|v4| addr.is_ipv4() == v4))
            .or(candidates.first())
            .copied()
            .with_context(|| format!("{host} has no address"))?;
        Ok(Self {
            tls,
            host: host.to_owned(),
            authority: authority.as_str().to_owned(),
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path
            },
            addr,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::net::SocketAddr;

    use super::Target;

    #[test]
    fn reads_scheme_authority_path_and_default_ports() {
        let target = Target::resolve("http://127.0.0.1:8081/a/b?c=d", &[]).unwrap();
        assert!(!target.tls);
        assert_eq!(target.host, "127.0.0.1");
        assert_eq!(target.authority, "127.0.0.1:8081");
        assert_eq!(target.path, "/a/b?c=d");
        assert_eq!(target.addr, "127.0.0.1:8081".parse::<SocketAddr>().unwrap());

        let target = Target::resolve("https://[::1]", &[]).unwrap();
        assert!(target.tls);
        assert_eq!(target.host, "::1");
        assert_eq!(target.authority, "[::1]");
        assert_eq!(target.path, "/");
        assert_eq!(target.addr, "[::1]:443".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn refuses_what_it_cannot_load() {
        for url in [
            "ftp://host/",
            "/just/a/path",
            "http://user@127.0.0.1/",
            "not a url",
        ] {
            assert!(Target::resolve(url, &[]).is_err(), "{url}");
        }
    }
}
