//! What an HTTP/2 request must be before it becomes an HTTP/1.1 request to a server: the checks
//! the HTTP/1 parser makes of a request line and its Host (see [`super::h1::head`]), made of the
//! pseudo-header fields, so that a client gets the same answer over either version.

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};

use super::h1::head::is_authority;

/// The request's target as the HTTP/1.1 request line carries it (origin form, or `*` for
/// `OPTIONS`), with `headers` given the Host the server must see; or the status that refuses it:
/// - `CONNECT` gets 501, as over HTTP/1 (no tunnels).
/// - A `:path` that is neither absolute nor `*` on an `OPTIONS` gets 400.
/// - An `:authority` with user information gets 400 (RFC 9113 §8.3.1 forbids it), as does an
///   `:authority` or `host` that HTTP/1's parser would refuse as a Host (a path, a space, `@`).
/// - More than one `host`, or a `host` that names another authority than `:authority`, gets 400
///   (RFC 9113 §8.3.1 lets a server treat that as malformed; the ACLs and the server would
///   otherwise each read another host). Otherwise `:authority`, when there is one, is the Host
///   (RFC 9113 §8.3.1: an intermediary builds it from `:authority`).
pub(super) fn target_and_host<'u>(
    method: &Method,
    uri: &'u Uri,
    headers: &mut HeaderMap,
) -> Result<&'u str, StatusCode> {
    if method == Method::CONNECT {
        return Err(StatusCode::NOT_IMPLEMENTED);
    }
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let asterisk = target == "*" && method == Method::OPTIONS;
    if !target.starts_with('/') && !asterisk {
        return Err(StatusCode::BAD_REQUEST);
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let (host, another) = (hosts.next(), hosts.next());
    if another.is_some() || host.is_some_and(|h| !is_authority(h.as_bytes())) {
        return Err(StatusCode::BAD_REQUEST);
    }
    if let Some(authority) = uri.authority() {
        // RFC 9113 §8.3.1: `:authority` must not include user information, which would make
        // `x@admin.example` the Host the ACLs match and the server reads.
        if !is_authority(authority.as_str().as_bytes()) {
            return Err(StatusCode::BAD_REQUEST);
        }
        if host.is_some_and(|h| {
            !h.as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
        }) {
            return Err(StatusCode::BAD_REQUEST);
        }
        let value =
            HeaderValue::from_str(authority.as_str()).map_err(|_| StatusCode::BAD_REQUEST)?;
        headers.insert(header::HOST, value);
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn check(
        method: Method,
        uri: &str,
        hosts: &[&str],
    ) -> Result<(String, Vec<String>), StatusCode> {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        let uri = uri.parse().unwrap();
        let target = target_and_host(&method, &uri, &mut headers)?.to_owned();
        let hosts = headers
            .get_all(header::HOST)
            .iter()
            .map(|h| h.to_str().unwrap().to_owned())
            .collect();
        Ok((target, hosts))
    }

    // Input: an `:authority` with user information. Output: 400. (It became the Host, which an
    // ACL on the host then did not match.)
    #[test]
    fn an_authority_with_user_information_is_refused() {
        assert_eq!(
            check(Method::GET, "http://x@admin.example/", &[]),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    // Input: `:authority` alone, with the same `host`, with another `host`, and with two.
    // Output: the Host is `:authority`; another host, or two, is a 400.
    #[test]
    fn the_host_is_the_authority_and_another_one_is_refused() {
        let ok = |hosts: &[&str]| check(Method::GET, "http://a.example/x?q", hosts);
        assert_eq!(ok(&[]).unwrap(), ("/x?q".into(), vec!["a.example".into()]));
        assert_eq!(ok(&["A.example"]).unwrap().1, ["a.example"]);
        assert_eq!(ok(&["b.example"]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(
            ok(&["a.example", "b.example"]),
            Err(StatusCode::BAD_REQUEST)
        );
        // Without `:authority`, the one `host` stays, if HTTP/1 would take it as a Host.
        assert_eq!(
            check(Method::GET, "/", &["b.example"]).unwrap().1,
            ["b.example"]
        );
        for bad in ["x@admin.example", "a/b", "a b", "[::1"] {
            assert_eq!(
                check(Method::GET, "/", &[bad]),
                Err(StatusCode::BAD_REQUEST),
                "{bad}"
            );
        }
    }

    // Input: CONNECT, `*` on GET and on OPTIONS. Output: 501, 400, and `*` passed on.
    #[test]
    fn connect_and_a_stray_asterisk_are_refused_as_over_http1() {
        assert_eq!(
            check(Method::CONNECT, "a.example:443", &[]),
            Err(StatusCode::NOT_IMPLEMENTED)
        );
        assert_eq!(check(Method::GET, "*", &[]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(check(Method::OPTIONS, "*", &[]).unwrap().0, "*");
    }
}
