//! One health probe of one server: a TCP connect, an HTTP request whose status and body are
//! checked (HAProxy's `option httpchk`, ldirectord's `request`/`receive`), or a program run
//! ([`external`](super::external)). Results carry HAProxy's short descriptions (`L4OK`,
//! `L4TOUT`, `L4CON`, `L7OK`, `L7STS`, `L7RSP`, `L7TOUT`, `PROCOK`, ...) so operators read
//! them as they always have.

use std::{net::SocketAddr, time::Duration};

use fulcrum_common::http_message;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use super::{
    external::{self, Subject},
    https,
};
use crate::{
    config::{Check, CheckKind},
    state::CheckResult,
};

/// The most of a check response read; enough for a status page, bounded so a huge body costs
/// nothing.
const MAX_RESPONSE: usize = 64 * 1024;

/// Probes `subject.addr` as `check` says, all of it within `check.timeout`. A timeout while
/// connecting is `L4TOUT` whatever the kind of check (the server's address does not answer),
/// one while waiting for the HTTP response `L7TOUT` (the application does not).
pub(crate) async fn probe(check: &Check, subject: &Subject<'_>) -> CheckResult {
    let started = Instant::now();
    let (ok, description) = match check.kind {
        CheckKind::External => external::probe(check, subject).await,
        _ => connect_and_ask(check, subject.addr, started + check.timeout).await,
    };
    CheckResult {
        ok,
        description,
        duration: started.elapsed(),
    }
}

/// A `tcp`, `http` or `https` probe of `addr`, over by `deadline`.
async fn connect_and_ask(check: &Check, addr: SocketAddr, deadline: Instant) -> (bool, String) {
    let timed_out = |what: &str| (false, what.to_owned());
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return timed_out("L4TOUT"),
        Ok(Err(e)) => return (false, format!("L4CON {e}")),
        Ok(Ok(stream)) => stream,
    };
    let asked = match check.kind {
        CheckKind::Http => tokio::time::timeout_at(deadline, http(check, addr, stream)).await,
        CheckKind::Https => {
            let handshake = https::handshake(stream, check.host.as_deref(), addr);
            // HAProxy's layer 6: the TLS handshake.
            let stream = match tokio::time::timeout_at(deadline, handshake).await {
                Err(_) => return timed_out("L6TOUT"),
                Ok(Err(e)) => return (false, format!("L6RSP {e}")),
                Ok(Ok(stream)) => stream,
            };
            tokio::time::timeout_at(deadline, http(check, addr, stream)).await
        }
        _ => return (true, "L4OK".to_owned()),
    };
    asked.unwrap_or_else(|_| timed_out("L7TOUT"))
}

/// The HTTP part of a check, on a connection (or a TLS session) to `addr`.
async fn http(
    check: &Check,
    addr: SocketAddr,
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
) -> (bool, String) {
    let host = check.host.clone().unwrap_or_else(|| addr.to_string());
    let request = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fulcrum-check\r\nConnection: close\r\nAccept: */*\r\n\r\n",
        check.method, check.path
    );
    // Flushed: over TLS, a write may leave the request in the session's buffer.
    let sent = async {
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await
    };
    if let Err(e) = sent.await {
        return (false, format!("L4CON {e}"));
    }
    let mut response = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            // A TLS server that closes without close_notify ends its response all the same.
            Ok(0) => break,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Ok(n) => {
                response.extend_from_slice(&chunk[..n]);
                if response.len() >= MAX_RESPONSE || done_reading(&response, check) {
                    break;
                }
            }
            Err(_) if !response.is_empty() => break,
            Err(e) => return (false, format!("L7RSP {e}")),
        }
    }
    judge(check, &response)
}

/// Whether enough of the response is in to judge it, so a server that keeps the connection open
/// despite `Connection: close` does not turn a pass into a timeout: the whole response, or
/// (without `expect_body`) its head, or the wanted text once it is in the body.
fn done_reading(response: &[u8], check: &Check) -> bool {
    let response = final_part(response);
    match http_message::parse(response, false) {
        Some(_) => true,
        None => {
            // A body that runs until the server closes: what has arrived, as it is.
            let Some(partial) = http_message::parse(response, true) else {
                return false;
            };
            http_message::head_end(response).is_some()
                && check.expect_body.as_ref().is_none_or(|needle| {
                    http_message::find(&partial.body, needle.as_bytes()).is_some()
                })
        }
    }
}

/// Decides a check from the response read: its status, and the text wanted in its body once
/// chunked coding is undone.
pub(crate) fn judge(check: &Check, response: &[u8]) -> (bool, String) {
    let parsed = http_message::parse(final_part(response), true);
    let Some(status) = parsed.as_ref().and_then(|r| r.code) else {
        return (false, "L7RSP invalid response".to_owned());
    };
    let (lo, hi) = check.expect_status;
    if !(lo..=hi).contains(&status) {
        return (false, format!("L7STS {status}"));
    }
    if let Some(needle) = &check.expect_body {
        let body = parsed.map(|r| r.body).unwrap_or_default();
        if http_message::find(&body, needle.as_bytes()).is_none() {
            return (false, "L7RSP content mismatch".to_owned());
        }
    }
    (true, format!("L7OK {status}"))
}

/// The response after the interim ones (`103 Early Hints`, `100 Continue`) a server may send
/// before it: those say nothing of its health. An interim head not yet whole is left in, so
/// the response reads as incomplete.
fn final_part(mut response: &[u8]) -> &[u8] {
    let interim = |r: &[u8]| {
        r.len() > 12
            && r.starts_with(b"HTTP/1.")
            && r[9] == b'1'
            && r[10..12].iter().all(u8::is_ascii_digit)
            // The reason phrase may be left out: `HTTP/1.1 100` and its line end.
            && matches!(r[12], b' ' | b'\r' | b'\n')
            && &r[9..12] != b"101"
    };
    while interim(response) {
        let Some((_, end)) = http_message::head_end(response) else {
            break;
        };
        response = &response[end..];
    }
    response
}

/// `period` lengthened or shortened at random by up to `percent` of it (HAProxy's
/// `spread-checks`): servers checked at the same interval drift apart instead of being probed
/// in step.
pub(crate) fn spread(period: Duration, percent: u32) -> Duration {
    if percent == 0 {
        return period;
    }
    // At most half either way, as HAProxy's `spread-checks` allows: never a wait near zero.
    let most = period.mul_f64(f64::from(percent.min(50)) / 100.0);
    period.saturating_sub(most) + most.mul_f64(2.0 * fastrand::f64())
}

/// How long to wait before a server's first check: spread over one interval so a backend of many
/// servers is not probed in one burst.
pub(crate) fn first_delay(interval: Duration) -> Duration {
    interval.mul_f64(fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expect_body: Option<&str>) -> Check {
        Check {
            path: "/test.html".into(),
            expect_body: expect_body.map(str::to_owned),
            ..Check::of_kind(CheckKind::Http)
        }
    }

    fn subject(state: &ServerState, addr: SocketAddr) -> Subject<'_> {
        Subject {
            state,
            listener: None,
            addr,
        }
    }

    use crate::state::ServerState;

    // Input: 1 s spread by 0 %, and by 20 % a thousand times. Output: exactly 1 s; then every
    // wait within 0.8 to 1.2 s, both halves of the range used.
    #[test]
    fn spread_varies_the_wait_within_the_percent() {
        let second = Duration::from_secs(1);
        assert_eq!(spread(second, 0), second);
        let waits: Vec<_> = (0..1000).map(|_| spread(second, 20)).collect();
        assert!(waits.iter().all(|w| (800..=1200).contains(&w.as_millis())));
        assert!(
            waits.iter().any(|w| w.as_millis() < 900) && waits.iter().any(|w| w.as_millis() > 1100)
        );
        // Past HAProxy's 50 %, held to it: never a wait near zero.
        assert!((0..1000).all(|_| spread(second, 100) >= second / 2));
    }

    #[test]
    fn status_range_decides() {
        assert!(judge(&check(None), b"HTTP/1.1 200 OK\r\n\r\n").0);
        assert!(judge(&check(None), b"HTTP/1.0 302 Found\r\n\r\n").0);
        let (ok, why) = judge(&check(None), b"HTTP/1.1 503 Unavailable\r\n\r\n");
        assert!(!ok);
        assert_eq!(why, "L7STS 503");
        assert!(!judge(&check(None), b"garbage").0);
    }

    #[test]
    fn body_substring_like_ldirectord_receive() {
        let c = check(Some("Test Page"));
        assert!(judge(&c, b"HTTP/1.1 200 OK\r\n\r\n<h1>Test Page</h1>").0);
        let (ok, why) = judge(&c, b"HTTP/1.1 200 OK\r\n\r\nsomething else");
        assert!(!ok);
        assert!(why.contains("mismatch"));
        // The needle in a header does not count.
        assert!(!judge(&c, b"HTTP/1.1 200 OK\r\nX: Test Page\r\n\r\n").0);
    }

    // Input: a `103 Early Hints` then a 200, a 103 then a 503, a 103 alone, and a 103 not yet
    // whole. Output: judged by the final response; with no final response yet, not done.
    // (The 103 was judged as the response: `L7STS 103`, and the server went DOWN.)
    #[test]
    fn interim_responses_are_read_past() {
        let c = check(Some("ok"));
        let hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n";
        let pass = [
            &hints[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ]
        .concat();
        assert!(done_reading(&pass, &c));
        assert_eq!(judge(&c, &pass), (true, "L7OK 200".to_owned()));
        let fail = [
            &hints[..],
            b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n",
        ]
        .concat();
        assert_eq!(judge(&c, &fail), (false, "L7STS 503".to_owned()));
        assert!(!done_reading(hints, &c));
        assert!(!done_reading(&hints[..20], &c));
        let continued = b"HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\nContent-Length: 2\n\nok";
        assert_eq!(judge(&c, continued), (true, "L7OK 200".to_owned()));
    }

    // Input: an interim response without a reason phrase (`HTTP/1.1 100`), then a 200.
    // Output: judged by the 200. (The 100 was taken for the answer: `L7STS 100`, DOWN.)
    #[test]
    fn an_interim_response_without_a_reason_phrase_is_read_past() {
        let c = check(Some("ok"));
        for interim in [&b"HTTP/1.1 100\r\n\r\n"[..], b"HTTP/1.1 100\n\n"] {
            let response = [interim, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"].concat();
            assert!(done_reading(&response, &c));
            assert_eq!(judge(&c, &response), (true, "L7OK 200".to_owned()));
        }
    }

    // Input: a head ended by bare LFs whose body has CRLF blank lines, the text expected
    // before them. Output: found, L7OK. (The head was taken to end at the body's first CRLF
    // blank line, the text was left in it, and the server went DOWN on a content mismatch.)
    #[test]
    fn a_bare_lf_head_ends_at_its_own_empty_line() {
        let c = check(Some("Test Page"));
        let response =
            b"HTTP/1.1 200 OK\nContent-Type: text/html\n\n<p>Test Page</p>\r\n\r\nfooter";
        assert_eq!(judge(&c, response), (true, "L7OK 200".to_owned()));
        // A head ended by LF then CRLF, a body until close, the connection still open: the
        // head is in, so the check is done once the text is.
        let mixed = b"HTTP/1.1 200 OK\nServer: x\n\r\n<p>Test Page</p>";
        assert!(done_reading(mixed, &c));
    }

    // Input: an HTTP check of a listener whose accept queue is full (so the kernel drops the
    // SYN), then of a server that accepts but never answers. Output: `L4TOUT` for the first,
    // `L7TOUT` for the second. (An HTTP check's connect timeout read `L7TOUT`, as if the
    // application were at fault.)
    #[tokio::test]
    async fn a_connect_timeout_is_l4tout_and_a_response_timeout_l7tout() {
        let mut c = check(None);
        c.timeout = Duration::from_millis(300);
        let state = ServerState::new("app", "s1", SocketAddr::from(([127, 0, 0, 1], 1)), 1, 0);
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .unwrap_or_else(|e| panic!("{e}"));
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"));
        socket.bind(&any.into()).unwrap_or_else(|e| panic!("{e}"));
        socket.listen(0).unwrap_or_else(|e| panic!("{e}"));
        let full = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(any);
        // One connection fills a queue of 0; the next SYN is dropped.
        let _queued = TcpStream::connect(full)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            probe(&c, &subject(&state, full)).await.description,
            "L4TOUT"
        );

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = silent.local_addr().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            probe(&c, &subject(&state, addr)).await.description,
            "L7TOUT"
        );
    }

    /// A TLS server on loopback with `tests/fixtures/tls/a.pem` (a.fulcrum.test), answering
    /// each request with `ok`; the SNI of each handshake, and whether it was a full one, go to
    /// the returned channel.
    async fn tls_server() -> (
        SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<(Option<String>, bool)>,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::fixture_server_config());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (names, seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let session = tls.get_ref().1;
                let full = session.handshake_kind() == Some(rustls::HandshakeKind::Full);
                let _ = names.send((session.server_name().map(str::to_owned), full));
                let mut request = [0u8; 1024];
                let _ = tls.read(&mut request).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        (addr, seen)
    }

    // Input: `https` checks of a TLS server whose certificate no client trusts, twice with `host`
    // a name with a port, then with none; then of a plain HTTP server. Output: `L7OK 200` with
    // the body found, SNI `a.fulcrum.test` (the port dropped) and none without `host`, a full
    // handshake each time; `L6RSP` for the server that speaks no TLS.
    #[tokio::test]
    async fn an_https_check_speaks_tls_with_the_hosts_sni_and_any_certificate() {
        let (addr, mut seen) = tls_server().await;
        let state = ServerState::new("app", "s1", addr, 1, 0);
        let named = Check {
            host: Some("a.fulcrum.test:8443".to_owned()),
            expect_body: Some("ok".to_owned()),
            ..Check::of_kind(CheckKind::Https)
        };
        let sni = Some("a.fulcrum.test".to_owned());
        for _ in 0..2 {
            let result = probe(&named, &subject(&state, addr)).await;
            assert_eq!(result.description, "L7OK 200");
            // Full each time: no session resumed, so the certificate is presented again.
            assert_eq!(seen.recv().await, Some((sni.clone(), true)));
        }
        let bare = Check::of_kind(CheckKind::Https);
        assert_eq!(
            probe(&bare, &subject(&state, addr)).await.description,
            "L7OK 200"
        );
        assert_eq!(seen.recv().await, Some((None, true)));

        let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let plain_addr = plain.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = plain.accept().await {
                let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let result = probe(&bare, &subject(&state, plain_addr)).await;
        assert!(
            result.description.starts_with("L6RSP"),
            "{}",
            result.description
        );
    }

    #[test]
    fn the_body_is_read_through_chunked_coding_and_bare_line_ends() {
        let c = check(Some("Test Page"));
        // The needle split across two chunks.
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nTest\r\n5\r\n Page\r\n0\r\n\r\n";
        assert!(done_reading(chunked, &c));
        assert_eq!(judge(&c, chunked), (true, "L7OK 200".to_owned()));
        // Bare LF line ends, and a server that keeps the connection open: done once it is in.
        let bare = b"HTTP/1.1 200 OK\nContent-Length: 9\n\nTest Page";
        assert!(done_reading(bare, &c));
        assert!(judge(&c, bare).0);
        let open_ended = b"HTTP/1.1 200 OK\n\n<h1>Test Page";
        assert!(done_reading(open_ended, &c));
        assert!(!done_reading(b"HTTP/1.1 200 OK\n\n<h1>Test", &c));
    }
}
