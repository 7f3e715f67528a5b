//! One HTTP/1.1 request on a connection of its own, blocking, as the seed's browsers and `ab`
//! made them (and as the lab's curl clients do): the soak's clients, in-process so that they
//! cost the two-core machine less than the site they load.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest a request may take: more than the director's `timeout.connect` (15 s), so a request
/// caught in a takeover gap is reported as what the site made of it, not as our timeout.
pub(crate) const MAX_TIME: Duration = Duration::from_secs(30);

/// Largest answer read: the origins' answers are a few KiB.
const MAX_ANSWER: usize = 1 << 20;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// `X-Server`: which origin answered.
    pub(crate) server: String,
    /// The value of a `Set-Cookie: webserver=VALUE`, the L7 tier's persistence cookie.
    pub(crate) cookie: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// Sends `METHOD PATH` to `addr` with `body` (POST) and the persistence cookie `cookie`, and
/// reads the answer to the end. An error is what a client would see: the connect or the read
/// failing or timing out, or an answer that is not HTTP.
pub(crate) fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &[u8],
) -> Result<Answer, String> {
    let started = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&addr, MAX_TIME).map_err(|e| format!("connect: {e}"))?;
    let left = || {
        MAX_TIME
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1))
    };
    stream
        .set_write_timeout(Some(left()))
        .map_err(|e| format!("socket: {e}"))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: fulcrum-bench-soak\r\nConnection: close\r\n"
    );
    if let Some(cookie) = cookie {
        head.push_str(&format!("Cookie: webserver={cookie}\r\n"));
    }
    if method == "POST" || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(&[head.as_bytes(), body].concat())
        .map_err(|e| format!("send: {e}"))?;
    let mut received = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        stream
            .set_read_timeout(Some(left()))
            .map_err(|e| format!("socket: {e}"))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                if received.len() > MAX_ANSWER {
                    return Err("answer too large".to_owned());
                }
                if complete(&received) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("receive after {} bytes: {e}", received.len())),
        }
    }
    parse(&received)
}

/// Whether `received` holds a whole answer with a `Content-Length` (the origins always send
/// one), so the read need not wait for the close.
fn complete(received: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(received) {
        Ok(httparse::Status::Complete(head)) => {
            content_length(response.headers).is_some_and(|len| received.len() >= head + len)
        }
        _ => false,
    }
}

/// The answer in `received`, read to the close or to its length.
fn parse(received: &[u8]) -> Result<Answer, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(received) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) if received.is_empty() => {
            return Err("closed without an answer".to_owned());
        }
        Ok(httparse::Status::Partial) => return Err("truncated answer head".to_owned()),
        Err(e) => return Err(format!("bad answer: {e}")),
    };
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let mut body = received[head..].to_vec();
    if let Some(len) = content_length(response.headers) {
        if body.len() < len {
            return Err(format!("truncated body: {} of {len} bytes", body.len()));
        }
        body.truncate(len);
    }
    let cookie = response
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("set-cookie"))
        .find_map(|h| {
            let value = String::from_utf8_lossy(h.value);
            let pair = value.split(';').next()?.trim().to_owned();
            pair.strip_prefix("webserver=").map(str::to_owned)
        });
    Ok(Answer {
        status: response.code.unwrap_or(0),
        server: header("x-server").unwrap_or_default(),
        cookie,
        body,
    })
}

fn content_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{complete, parse};

    #[test]
    fn parses_status_server_cookie_and_body() {
        let raw = b"HTTP/1.1 200 OK\r\nX-Server: web1\r\nSet-Cookie: webserver=s1; path=/\r\n\
                    Content-Length: 5\r\n\r\nhello";
        assert!(complete(raw));
        assert!(!complete(&raw[..raw.len() - 1]));
        let answer = parse(raw).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.server, "web1");
        assert_eq!(answer.cookie.as_deref(), Some("s1"));
        assert_eq!(answer.body, b"hello");
    }

    #[test]
    fn a_short_or_missing_answer_is_an_error() {
        assert!(parse(b"").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Le").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello").is_err());
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
