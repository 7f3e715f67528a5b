//! The HTTP/1.1 of the health checks (the NRPE agent's `http` check and the proxy's `http`
//! health checks): a GET request, and a lenient reading of the response as it arrives (status
//! line, headers ended by CRLF or bare LF, a body framed by Content-Length, chunked coding or the
//! end of the connection), so a check can stop as soon as the response is whole.

/// A response read whole (or as much of it as the connection gave).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `HTTP/1.1 200 OK`, without its line end.
    pub status_line: String,
    /// The status code, if the status line has one.
    pub code: Option<u16>,
    /// The body, after undoing chunked coding.
    pub body: Vec<u8>,
}

/// Where the head in `raw` ends, at its first empty line, whichever line ends the server uses
/// (CRLF, bare LF, or both mixed): the head's length, without the line end before the empty
/// line, and where the body starts. One pass, so a long run of heads costs no more than its
/// bytes. `None` while no empty line has come.
pub fn head_end(raw: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(offset) = raw[from..].iter().position(|&b| b == b'\n') {
        let line_end = from + offset;
        let next = &raw[line_end + 1..];
        if next.starts_with(b"\n") {
            return Some((line_end, line_end + 2));
        }
        if next.starts_with(b"\r\n") {
            return Some((line_end, line_end + 3));
        }
        from = line_end + 1;
    }
    None
}

/// The request line and headers of a GET; `host` is the Host header's value.
pub fn request(uri: &str, host: &str) -> String {
    format!(
        "GET {uri} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fulcrum-check_http\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    )
}

/// Reads `raw`, the bytes received so far; `ended` says the connection has closed. `None`
/// while more bytes are needed.
pub fn parse(raw: &[u8], ended: bool) -> Option<Response> {
    let (head, body) = match head_end(raw) {
        Some((head, body)) => (&raw[..head], &raw[body..]),
        // Headers cut short by the end of the connection: read what there is.
        None if ended => (raw, &[][..]),
        None => return None,
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
    let status_line = lines.next().unwrap_or_default().to_owned();
    let code = status_code(&status_line);
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    // RFC 9112 6.3: no body after 1xx, 204 and 304 (the check only sends GET).
    if code.is_some_and(|c| c < 200 || c == 204 || c == 304) {
        return Some(Response {
            status_line,
            code,
            body: Vec::new(),
        });
    }
    let body = if chunked {
        match dechunk(body) {
            Some(whole) => whole,
            // A body cut short (or badly chunked) is judged on what arrived.
            None if ended => dechunk_partial(body),
            None => return None,
        }
    } else if let Some(length) = length {
        match body.get(..length) {
            Some(whole) => whole.to_vec(),
            None if ended => body.to_vec(),
            None => return None,
        }
    } else if ended {
        body.to_vec()
    } else {
        return None;
    };
    Some(Response {
        status_line,
        code,
        body,
    })
}

/// `HTTP/1.x NNN ...`: the code, when the line is one.
fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// A whole chunked body, or `None` while the last chunk has not arrived.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size_line = std::str::from_utf8(&rest[..line_end]).ok()?;
        // Chunk extensions follow a `;`.
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailers are not needed; the body is whole.
            return Some(body);
        }
        let data = rest.get(..size)?;
        body.extend_from_slice(data);
        rest = rest.get(size + 2..)?;
    }
}

/// The data of the chunks that arrived whole, for a body cut short.
fn dechunk_partial(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = find(rest, b"\r\n") {
        let Some(size) = std::str::from_utf8(&rest[..line_end]).ok().and_then(|l| {
            usize::from_str_radix(l.split(';').next().unwrap_or_default().trim(), 16).ok()
        }) else {
            break;
        };
        rest = &rest[line_end + 2..];
        match rest.get(..size) {
            Some(data) if size > 0 => body.extend_from_slice(data),
            Some(_) => break,
            None => {
                body.extend_from_slice(rest);
                break;
            }
        }
        rest = rest.get(size + 2..).unwrap_or_default();
    }
    body
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn content_length() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse(&raw[..raw.len() - 1], false), None);
        let r = parse(raw, false).unwrap();
        assert_eq!(r.status_line, "HTTP/1.1 200 OK");
        assert_eq!(r.code, Some(200));
        assert_eq!(r.body, b"hello");
        // Cut short by the server: judged on what came.
        assert_eq!(parse(&raw[..raw.len() - 2], true).unwrap().body, b"hel");
    }

    #[test]
    fn chunked() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(parse(raw, false).unwrap().body, b"hello world");
        assert_eq!(parse(&raw[..raw.len() - 6], false), None);
        assert_eq!(
            parse(&raw[..raw.len() - 6], true).unwrap().body,
            b"hello world"
        );
        assert_eq!(parse(&raw[..68], true).unwrap().body, b"hello wor");
        assert_eq!(parse(&raw[..60], true).unwrap().body, b"hello");
    }

    #[test]
    fn until_close_and_oddities() {
        let raw = b"HTTP/1.0 404 File not found\nServer: x\n\nnope";
        assert_eq!(parse(raw, false), None);
        let r = parse(raw, true).unwrap();
        assert_eq!((r.code, r.body.as_slice()), (Some(404), &b"nope"[..]));
        let r = parse(b"HTTP/1.1 204 No Content\r\n\r\n", false).unwrap();
        assert!(r.body.is_empty());
        let r = parse(b"SSH-2.0-OpenSSH\r\n", true).unwrap();
        assert_eq!((r.status_line.as_str(), r.code), ("SSH-2.0-OpenSSH", None));
        assert_eq!(parse(b"", true).unwrap().status_line, "");
        assert_eq!(status_code("HTTP/1.1 2000 OK"), None);
    }

    #[test]
    fn the_head_ends_at_its_first_empty_line_whatever_the_line_ends() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nx"), Some((16, 19)));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\n\nx"), Some((15, 17)));
        // A bare-LF head, then CRLF blank lines in the body: the head's own line counts.
        let raw = b"HTTP/1.1 200 OK\nA: b\n\nbody\r\n\r\nmore";
        assert_eq!(head_end(raw), Some((20, 22)));
        assert_eq!(parse(raw, true).unwrap().body, b"body\r\n\r\nmore");
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
    }

    #[test]
    fn request_shape() {
        assert_eq!(
            request("/x?y", "example.com:8080"),
            "GET /x?y HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: fulcrum-check_http\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    proptest! {
        // Whatever a server sends, reading it neither panics nor invents a body.
        #[test]
        fn any_bytes(raw in proptest::collection::vec(any::<u8>(), 0..300), ended in any::<bool>()) {
            if let Some(r) = parse(&raw, ended) {
                prop_assert!(r.body.len() <= raw.len());
            }
        }
    }
}
