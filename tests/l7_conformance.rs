//! The L7 tier held to RFC 9110, 9112 and 9113 where a proxy is easy to get wrong, with real
//! clients (raw sockets for HTTP/1, hyper's client for HTTP/2) and real or hand-written servers:
//! framing by a coding list, folded lengths, error pages to HEAD, empty uploads over HTTP/2,
//! large header blocks, and how a malformed response is logged.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::net::SocketAddr;

use support::h2::{h2_get, h2c};
use support::{Fulcrum, PATIENCE, origin, raw_exchange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A frontend `main` (HTTP/1 and h2c) on a free port before backend `web` with `server`.
fn site(server: SocketAddr) -> String {
    format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
servers = [{{ name = "s1", address = "{server}" }}]
"#
    )
}

/// A server that answers every request head on a connection with `response`, and keeps the
/// connection open until the proxy closes it.
async fn keep_alive_server(response: &'static [u8]) -> SocketAddr {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0; 4096];
                while let Ok(n @ 1..) = conn.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if conn.write_all(response).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Reads from `stream` until `buf` ends with `end`, for at most [`PATIENCE`].
async fn read_until(stream: &mut tokio::net::TcpStream, end: &[u8]) -> String {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0; 4096];
        while !buf.ends_with(end) {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let waited = tokio::time::timeout(PATIENCE, read).await;
    assert!(
        waited.is_ok(),
        "still waiting: {:?}",
        String::from_utf8_lossy(&buf)
    );
    String::from_utf8(buf).unwrap()
}

// Input: a server answering `Transfer-Encoding: gzip, chunked` on a connection it keeps open;
// an HTTP/1.1 client asking twice on one connection, then an HTTP/1.0 client. Output: the 1.1
// client gets each response whole, its coding header as sent, on a connection kept alive; the
// 1.0 client gets 502, since the de-chunked gzip would reach it as content. (The response was
// read until the server closed: the client waited for `timeout.server`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_coded_then_chunked_is_framed_by_its_chunks() {
    let server = keep_alive_server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let fulcrum = Fulcrum::start(&site(server));
    let addr = fulcrum.addr("main");
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let response = read_until(&mut client, b"0\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let lower = response.to_ascii_lowercase();
        assert!(
            lower.contains("transfer-encoding: gzip, chunked\r\n"),
            "{response}"
        );
        assert!(!lower.contains("connection: close"), "{response}");
    }
    let reply = raw_exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
}

// Input: `Content-Length: 4` twice, then `Content-Length: 4, 4`, each with a 4-byte body.
// Output: the server gets one `content-length: 4` field each time. (Both fields went on, and
// servers such as nginx answer 400 to that.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_content_length_reaches_the_server_as_one_field() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&site(s1.addr()));
    for lengths in [
        "Content-Length: 4\r\nContent-Length: 4",
        "Content-Length: 4, 4",
    ] {
        let request =
            format!("POST / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{lengths}\r\n\r\nbody");
        let reply = raw_exchange(fulcrum.addr("main"), request.as_bytes()).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    let seen = s1.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        let lengths: Vec<_> = request.headers.get_all("content-length").iter().collect();
        assert_eq!(lengths, ["4"], "{:?}", request.headers);
    }
}

// Input: an HTTP/1.1 HEAD, then a GET pipelined behind it, to a backend whose only server is
// in MAINT. Output: the 503 head with its length, and no page after it: the next bytes are the
// GET's 503. (The page went out after the HEAD's head, where a client reads the next response.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_head_gets_an_error_page_without_a_body() {
    let fulcrum = Fulcrum::start(support::ONLY_SERVER_IN_MAINT);
    let reply = raw_exchange(
        fulcrum.addr("main"),
        b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    let (head, after) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("content-length: "), "{reply}");
    assert!(!after.contains("<html>"), "a page after a HEAD: {reply}");
}

// Input: an HTTP/2 POST and PUT with no body (hyper's client sends `content-length: 0` for them),
// and a GET with none. Output: the server gets `content-length: 0` with the POST and the PUT,
// as an HTTP/1 client sends it, and no length with the GET. (The length was dropped, and
// servers such as IIS answer 411 to a POST without one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_h2_upload_reaches_the_server_with_a_length_of_zero() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&site(s1.addr()));
    let (mut sender, _conn) = h2c(fulcrum.addr("main")).await;
    for method in [http::Method::POST, http::Method::PUT, http::Method::GET] {
        let request = http::Request::builder()
            .method(method.clone())
            .uri(format!("http://{}/", fulcrum.addr("main")))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200, "{method}");
    }
    let lengths: Vec<_> = (s1.requests().iter())
        .map(|r| {
            r.headers
                .get("content-length")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(lengths, [Some("0".to_owned()), Some("0".to_owned()), None]);
}

// Input: a 20 KB cookie over HTTP/1.1 and over HTTP/2. Output: both reach the server. (HTTP/2
// took 16 KiB of headers, hyper's default, and answered 431 before any log or count.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_cookie_passes_over_http2_as_over_http1() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&site(s1.addr()));
    let cookie = format!("big={}", "c".repeat(20_000));
    let reply = support::get(fulcrum.addr("main"), "/", &[("cookie", &cookie)]).await;
    assert_eq!(reply.status, 200);
    let (mut sender, _conn) = h2c(fulcrum.addr("main")).await;
    let mut request = h2_get(fulcrum.addr("main"), "/");
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(s1.requests().len(), 2);
}

// Input: a server answering a status line that is not one (`2x0`), to an HTTP/1.1 client and
// to an HTTP/2 one. Output: 502 to both, each logged `PH` (the proxy refused the response), as
// HAProxy logs it. (HTTP/2 logged `SH`, as if the server had aborted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_response_is_logged_as_the_proxys_refusal_over_either_version() {
    let server = support::answering_server(b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n").await;
    let fulcrum = Fulcrum::start(&site(server));
    let reply = raw_exchange(
        fulcrum.addr("main"),
        b"GET /one HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 502"));
    let (mut sender, _conn) = h2c(fulcrum.addr("main")).await;
    let response = sender
        .send_request(h2_get(fulcrum.addr("main"), "/two"))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let logs = fulcrum.wait_access_logs(2);
    let terminations: Vec<_> = (logs.iter())
        .map(|l| {
            (
                l["request"].as_str().unwrap().to_owned(),
                l["termination"].as_str().unwrap()[..2].to_owned(),
            )
        })
        .collect();
    assert_eq!(
        terminations,
        [
            ("GET /one HTTP/1.1".to_owned(), "PH".to_owned()),
            ("GET /two HTTP/2.0".to_owned(), "PH".to_owned())
        ],
        "{logs:#?}"
    );
}

// Input: a server that sends `103 Early Hints` (and, on another connection, a `100 Continue`)
// before its 200; an HTTP/1.1 client, then an HTTP/1.0 one. Output: the 1.1 client gets the
// 103 with its `link` field, then the 200; the 1.0 client gets the 200 alone (RFC 9110 §15.2
// forbids a 1xx to it), and a server's 100 goes to no one, since the proxy answers `Expect`
// itself. (Every interim response was dropped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_reach_an_http11_client_before_the_response() {
    let hints = support::answering_server(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    )
    .await;
    let fulcrum = Fulcrum::start(&site(hints));
    let addr = fulcrum.addr("main");
    let reply = support::get_and_close(addr).await;
    assert!(
        reply.starts_with(
            "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n"
        ),
        "{reply}"
    );
    assert!(reply.ends_with("\r\n\r\nok"), "{reply}");
    let reply = raw_exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");

    let continues = support::answering_server(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    )
    .await;
    let fulcrum = Fulcrum::start(&site(continues));
    let reply = support::get_and_close(fulcrum.addr("main")).await;
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
}
