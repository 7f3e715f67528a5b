//! Header rewriting between client and server: hop-by-hop headers stay on their hop (RFC 9110
//! §7.6.1), and `X-Forwarded-For` / `X-Forwarded-Proto` tell servers who the client is.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::h1::head::{ConnectionTokens, connection_tokens};

/// Headers that describe one connection, never forwarded. `Transfer-Encoding` is not among them:
/// bodies are forwarded with their framing as received; nor is `Trailer`, which announces the
/// trailer fields that go on with the body (end to end, RFC 9110 §6.6.2). `Upgrade` is
/// hop-by-hop too, except on a tunnel (see [`HopByHop::drops`]).
const HOP_BY_HOP: [HeaderName; 4] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
];
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Which headers of one HTTP/1 message stay on their hop, decided once so serializing the
/// message can skip them instead of removing them from the map one by one.
#[derive(Debug)]
pub(crate) struct HopByHop {
    /// Headers the `Connection` header names (rare: empty, no allocation, in the usual case).
    named: Vec<HeaderName>,
    tunnel: bool,
}

impl HopByHop {
    /// For a message with `headers` whose `Connection` tokens are `tokens`; with `tunnel` the
    /// `Upgrade` header goes on.
    pub(crate) fn of(headers: &HeaderMap, tokens: ConnectionTokens, tunnel: bool) -> Self {
        let named = if tokens.names_headers {
            named_by_connection(headers)
        } else {
            Vec::new()
        };
        Self { named, tunnel }
    }

    /// As [`HopByHop::of`], but the headers the `Connection` header names are removed from
    /// `headers` now rather than skipped when it is written, so that fields the proxy adds
    /// under those names afterwards (the persistence cookie's `Set-Cookie` and
    /// `Cache-Control`) still go on.
    pub(crate) fn removed_from(
        headers: &mut HeaderMap,
        tokens: ConnectionTokens,
        tunnel: bool,
    ) -> Self {
        let mut hop = Self::of(headers, tokens, tunnel);
        for name in hop.named.iter().filter(|n| hop.drops(n)) {
            headers.remove(name);
        }
        hop.named.clear();
        hop
    }

    /// Whether `name` must not be forwarded.
    pub(crate) fn drops(&self, name: &HeaderName) -> bool {
        if *name == header::UPGRADE {
            return !self.tunnel;
        }
        HOP_BY_HOP.contains(name) || self.named.contains(name)
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names. With `tunnel` the
/// `Upgrade` header and a `Connection: upgrade` stay, since they ask the next hop for the tunnel.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, tunnel: bool) {
    let hop = HopByHop {
        named: named_by_connection(headers),
        tunnel,
    };
    let (fixed, upgrade) = (HOP_BY_HOP, [header::UPGRADE]);
    let candidates = hop.named.iter().chain(&fixed).chain(&upgrade);
    for name in candidates.filter(|n| hop.drops(n)) {
        headers.remove(name);
    }
    if tunnel {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The headers the `Connection` header names, which are hop-by-hop too; never the framing
/// headers, since bodies are forwarded with their framing, nor `Host`, which an HTTP/1.1
/// request must carry (RFC 9112 §3.2) and which the ACLs have already read.
fn named_by_connection(headers: &HeaderMap) -> Vec<HeaderName> {
    connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|n| {
            ![
                header::TRANSFER_ENCODING,
                header::CONTENT_LENGTH,
                header::HOST,
            ]
            .contains(n)
        })
        .collect()
}

/// Adds `X-Forwarded-For: CLIENT` (a header of its own, as HAProxy's `option forwardfor`) and
/// sets `X-Forwarded-Proto`.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, tls: bool) {
    if let Ok(value) = HeaderValue::from_str(&unmapped(client).to_string()) {
        headers.append(X_FORWARDED_FOR, value);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
}

/// Appends the `X-Forwarded-For` and `X-Forwarded-Proto` lines to a serialized head; an
/// `X-Forwarded-Proto` the client sent must be left out of the head by the caller.
pub(crate) fn write_forwarded(out: &mut Vec<u8>, client: IpAddr, tls: bool) {
    use std::io::Write;
    let _ = write!(out, "x-forwarded-for: {}\r\n", unmapped(client));
    out.extend_from_slice(if tls {
        b"x-forwarded-proto: https\r\n"
    } else {
        b"x-forwarded-proto: http\r\n"
    });
}

/// A v4-mapped IPv6 client shown as the IPv4 address it is.
fn unmapped(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::HOST, HeaderValue::from_static("h"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        // End to end: it announces the trailer fields, which go on with the body.
        h.insert(header::TRAILER, HeaderValue::from_static("server-timing"));
        strip_hop_by_hop(&mut h, false);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["host", "trailer", "transfer-encoding"]);
    }

    // Input: `Connection: host, content-length`. Output: neither is dropped.
    #[test]
    fn connection_cannot_name_host_or_framing_away() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("host, content-length"),
        );
        let tokens = super::super::h1::head::ConnectionTokens {
            names_headers: true,
            ..Default::default()
        };
        let hop = HopByHop::of(&h, tokens, false);
        assert!(!hop.drops(&header::HOST));
        assert!(!hop.drops(&header::CONTENT_LENGTH));
    }

    #[test]
    fn tunnel_keeps_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn forwarded_for_appends_and_unmaps_v4() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        add_forwarded(&mut h, "::ffff:10.0.0.1".parse().unwrap(), true);
        let all: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(all, ["1.2.3.4", "10.0.0.1"]);
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    }
}
