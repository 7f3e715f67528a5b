//! The fuzz targets' invariants in the normal test suite: heads and chunked bodies assembled
//! from the parts that have smuggled requests past proxies before (duplicate and listed
//! lengths, codings, `Connection` naming framing fields, bare LF line ends, chunk extensions,
//! trailers), then perhaps one byte changed.

use proptest::{collection::vec, prelude::*, sample::select};

use super::{
    Framing,
    invariants::{check_chunked, check_request, check_response, decode_chunked, request_framing},
};

const METHODS: [&str; 6] = ["GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE"];
const TARGETS: [&str; 7] = [
    "/",
    "/a?b=1",
    "http://h/x?y",
    "http://h",
    "*",
    "/a#f",
    "//x",
];

/// `Host` fields; one goes in most requests, since HTTP/1.1 needs one.
const HOSTS: [&str; 4] = ["Host: h", "Host: h:80", "host: a@b", "Host: [::1]:8"];

/// Request fields, alone harmless, together the classic framing conflicts.
const REQUEST_FIELDS: [&str; 27] = [
    "Content-Length: 5",
    "Content-Length: 5, 5",
    "Content-Length: 6",
    "Content-Length: 0",
    "Content-Length: +5",
    "Content-Length: 05",
    "Content-Length:5 ",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked, chunked",
    "transfer-encoding: ,chunked,",
    "Transfer-Encoding: chunked, gzip",
    "Transfer-Encoding: CHUNKED",
    "Connection: close",
    "Connection: keep-alive",
    "Connection: content-length",
    "Connection: transfer-encoding, x-a",
    "Connection: host",
    "Connection: Upgrade",
    "Upgrade: websocket",
    "X-A: 1",
    "Expect: 100-continue",
    "TE: trailers",
    "Keep-Alive: timeout=5",
    "Proxy-Connection: close",
    "X-Forwarded-Proto: https",
    "Cookie: a=1",
];

const RESPONSE_FIELDS: [&str; 14] = [
    "Content-Length: 5",
    "Content-Length: 5, 5",
    "Content-Length: 7",
    "Content-Length: 0",
    "Content-Length: x",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: gzip",
    "Transfer-Encoding: chunked, gzip",
    "Connection: close",
    "Connection: keep-alive",
    "Connection: x-a",
    "X-A: 1",
    "Set-Cookie: s=1",
];

const STATUSES: [u16; 8] = [100, 101, 200, 204, 304, 404, 500, 999];

/// A message: a start line, fields, a blank line, a bit of body, each line ended by `eol`;
/// then one byte perhaps replaced.
fn message(start: String, fields: Vec<&str>, eol: &str, change: Option<(usize, u8)>) -> Vec<u8> {
    let mut raw = start;
    for field in fields {
        raw.push_str(eol);
        raw.push_str(field);
    }
    raw.push_str(eol);
    raw.push_str(eol);
    raw.push_str("5\r\nhello\r\n0\r\n\r\n");
    let mut raw = raw.into_bytes();
    if let Some((at, byte)) = change {
        let at = at % raw.len();
        raw[at] = byte;
    }
    raw
}

fn eol() -> impl Strategy<Value = &'static str> {
    select(&["\r\n", "\r\n", "\n"][..])
}

/// One byte replaced in a quarter of the inputs: most stay well-formed, to reach the checks
/// past parsing.
fn change() -> impl Strategy<Value = Option<(usize, u8)>> {
    proptest::option::weighted(0.25, (any::<usize>(), any::<u8>()))
}

/// A chunked body from `sizes` (each written as given, its data that many bytes), with
/// `extension` on every size line and the trailer lines, then perhaps one byte replaced.
fn chunked(
    sizes: Vec<&str>,
    extension: &str,
    trailers: Vec<&str>,
    change: Option<(usize, u8)>,
) -> Vec<u8> {
    let mut raw = Vec::new();
    for size in sizes.iter().chain(&["0"]) {
        raw.extend_from_slice(format!("{size}{extension}\r\n").as_bytes());
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if *size != "0" {
            raw.extend(std::iter::repeat_n(b'x', n));
            raw.extend_from_slice(b"\r\n");
        }
    }
    for trailer in trailers {
        raw.extend_from_slice(trailer.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\nGET / HTTP/1.1\r\n");
    if let Some((at, byte)) = change {
        let at = at % raw.len();
        raw[at] = byte;
    }
    raw
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever a client's head says, the server reads the forwarded head with the framing the
    /// proxy reads the body by.
    #[test]
    fn a_forwarded_request_is_framed_as_the_proxy_read_it(
        method in select(&METHODS[..]),
        target in select(&TARGETS[..]),
        version in select(&["HTTP/1.1", "HTTP/1.0"][..]),
        mut fields in vec(select(&REQUEST_FIELDS[..]), 0..5),
        host in proptest::option::weighted(0.9, (select(&HOSTS[..]), any::<usize>())),
        eol in eol(),
        change in change(),
        forward_for in any::<bool>(),
    ) {
        if let Some((host, at)) = host {
            fields.insert(at % (fields.len() + 1), host);
        }
        let raw = message(format!("{method} {target} {version}"), fields, eol, change);
        if let Err(broken) = check_request(&raw, forward_for) {
            return Err(TestCaseError::fail(format!("{broken}\ninput: {:?}", String::from_utf8_lossy(&raw))));
        }
    }

    /// A server's head is framed as RFC 9112 §6.3 says for the request's method.
    #[test]
    fn a_response_is_framed_as_the_rfc_says(
        status in select(&STATUSES[..]),
        version in select(&["HTTP/1.1", "HTTP/1.0"][..]),
        fields in vec(select(&RESPONSE_FIELDS[..]), 0..5),
        eol in eol(),
        change in change(),
        method in select(&["GET", "HEAD", "POST"][..]),
    ) {
        let raw = message(format!("{version} {status} X"), fields, eol, change);
        if let Err(broken) = check_response(&raw, method) {
            return Err(TestCaseError::fail(format!("{broken}\ninput: {:?}", String::from_utf8_lossy(&raw))));
        }
    }

    /// A chunked body ends where a strict reader ends it and goes on with the same data.
    #[test]
    fn a_chunked_body_ends_where_a_strict_reader_ends_it(
        sizes in vec(select(&["1", "5", "a", "A", "0a", "00003", "10", " 5", "5 ", "x"][..]), 0..4),
        extension in select(&["", ";a=b", " ;a", "\t; a = \"b\"", " x", ";\n"][..]),
        trailers in vec(select(&["X-T: 1", "x-t:", "Content-Length: 5", ": v", " folded", "X-T: a\rb"][..]), 0..3),
        change in change(),
    ) {
        let raw = chunked(sizes, extension, trailers, change);
        if let Err(broken) = check_chunked(&raw) {
            return Err(TestCaseError::fail(format!("{broken}\ninput: {:?}", String::from_utf8_lossy(&raw))));
        }
    }
}

/// The readers the invariants hold the proxy to refuse what the RFCs refuse, so a proxy that
/// framed a message otherwise would be caught.
#[test]
fn the_reference_readers_refuse_what_the_rfcs_refuse() {
    assert_eq!(
        request_framing(&[("content-length", b"3")]),
        Ok(Framing::Length(3))
    );
    assert_eq!(
        request_framing(&[("Content-Length", b"0")]),
        Ok(Framing::Empty)
    );
    assert_eq!(
        request_framing(&[("Transfer-Encoding", b"gzip, chunked")]),
        Ok(Framing::Chunked)
    );
    assert_eq!(request_framing(&[]), Ok(Framing::Empty));
    assert!(request_framing(&[("content-length", b"3"), ("Content-Length", b"4")]).is_err());
    assert!(request_framing(&[("content-length", b"3, 4")]).is_err());
    assert!(request_framing(&[("content-length", b"+3")]).is_err());
    assert!(
        request_framing(&[("content-length", b"3"), ("transfer-encoding", b"chunked")]).is_err()
    );
    assert!(request_framing(&[("transfer-encoding", b"chunked, gzip")]).is_err());
    assert!(request_framing(&[("transfer-encoding", b"chunked, chunked")]).is_err());

    let body = b"3 ;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\nrest";
    assert_eq!(decode_chunked(body), Ok((b"abc".to_vec(), body.len() - 4)));
    for refused in [
        &b"3 x\r\nabc\r\n0\r\n\r\n"[..],
        b"3\nabc\r\n0\r\n\r\n",
        b"3\r\nabcd\r\n0\r\n\r\n",
        b"3\r\nabc\r\n0\r\nno colon\r\n\r\n",
        b"3\r\nabc\r\n0\r\n",
    ] {
        assert!(
            decode_chunked(refused).is_err(),
            "{:?}",
            String::from_utf8_lossy(refused)
        );
    }
}
