//! End-to-end tests of what the L7 tier refuses and how it speaks: request smuggling attempts,
//! slowloris, TLS with SNI, HTTP/2 over ALPN and h2c, against real clients (curl, h2load) and raw
//! sockets where the bytes must be malformed on purpose.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::{Duration, Instant};

use support::h2::{h2_get, h2c};
use support::{Fulcrum, curl, get, origin, raw_exchange, require_tool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn plain_site(server: std::net::SocketAddr) -> String {
    format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
timeout = {{ client = "5s", http_request = "1s", keep_alive = "2s" }}
default_backend = "web"

[backend.web]
servers = [{{ name = "s1", address = "{server}" }}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_get_400_close_and_never_reach_the_server() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&plain_site(s1.addr()));
    let addr = fulcrum.addr("main");
    let attempts: [&[u8]; 5] = [
        // CL.TE: the two headers would frame the body differently here and behind us.
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        // Two different Content-Length values.
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nABCDGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        // obs-fold: a header continued on the next line.
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n  Transfer-Encoding: chunked\r\n\r\n",
        // Bare CR inside a header.
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n",
        // Bare CR as a line ending.
        b"GET / HTTP/1.1\rHost: x\r\n\r\n",
    ];
    for attempt in attempts {
        let reply = raw_exchange(addr, attempt).await;
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{:?} -> {text}",
            String::from_utf8_lossy(attempt)
        );
        assert!(text.contains("connection: close"), "{text}");
        assert_eq!(
            text.matches("HTTP/1.1").count(),
            1,
            "exactly one response, then close: {text}"
        );
    }
    assert_eq!(
        s1.request_count(),
        0,
        "nothing of a refused request reached the server"
    );
    // A clean request still works.
    assert_eq!(get(addr, "/", &[]).await.status, 200);
    assert_eq!(s1.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_gets_408_at_http_request_while_others_are_served() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&plain_site(s1.addr()));
    let addr = fulcrum.addr("main");

    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut sent = 0;
        for byte in head {
            if stream.write_all(&[*byte]).await.is_err() {
                break; // the proxy gave up on us, as it should
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
        (
            String::from_utf8_lossy(&reply).into_owned(),
            sent,
            started.elapsed(),
        )
    });

    // Meanwhile other clients are served normally.
    for _ in 0..10 {
        assert_eq!(get(addr, "/", &[]).await.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (reply, sent, _) = slow.await.unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply}"
    );
    assert!(
        sent < 40,
        "the proxy stopped waiting after about 10 bytes at 10 bytes/s, not after {sent}"
    );
    assert!(!s1.requests().iter().any(|r| r.uri.path() == "/slow"));
    let log = fulcrum.wait_log(|l| l["target"] == "access" && l["status"] == 408);
    assert_eq!(&log["termination"].as_str().unwrap()[..2], "cR");
}

fn tls_site(server: std::net::SocketAddr) -> String {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    format!(
        r#"
[frontend.tls]
bind = ["127.0.0.1:0"]
tls = {{ certs = ["{fixtures}/a.pem", "{fixtures}/b.pem", "{fixtures}/c.pem"] }}
default_backend = "web"

[frontend.clear]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
servers = [{{ name = "s1", address = "{server}" }}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_picks_the_certificate_by_sni_over_tls12_and_tls13() {
    if !require_tool("curl") {
        return;
    }
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&tls_site(s1.addr()));
    let port = fulcrum.addr("tls").port();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    for (name, version) in [
        ("a", "--tlsv1.3"),
        ("b", "--tlsv1.3"),
        ("a", "--tls-max"),
        ("b", "--tls-max"),
        // c.pem names its host in its CN alone, with no subjectAltName.
        ("c", "--tlsv1.3"),
    ] {
        let host = format!("{name}.fulcrum.test");
        let resolve = format!("{host}:{port}:127.0.0.1");
        let cacert = format!("{fixtures}/{name}.crt");
        let url = format!("https://{host}:{port}/");
        let mut args = vec![
            "-v",
            "--http1.1",
            "--resolve",
            &resolve,
            "--cacert",
            &cacert,
        ];
        if version == "--tls-max" {
            args.extend(["--tlsv1.2", "--tls-max", "1.2"]);
        } else {
            args.push(version);
        }
        args.push(&url);
        let (status, body, err) = curl(&args).await;
        assert!(status.success(), "{host} {version}: {err}");
        assert!(body.starts_with("s1"), "{body}");
        assert!(
            err.contains(&format!("CN={host}")),
            "{host} was served its own certificate: {err}"
        );
        let expected = if version == "--tls-max" {
            "TLSv1.2"
        } else {
            "TLSv1.3"
        };
        assert!(err.contains(expected), "{expected} negotiated: {err}");
    }
    // A client that offers only HTTP/1.0 over ALPN is served, not refused in the handshake.
    let resolve = format!("a.fulcrum.test:{port}:127.0.0.1");
    let cacert = format!("{fixtures}/a.crt");
    let url = format!("https://a.fulcrum.test:{port}/");
    let (status, body, err) = curl(&[
        "-v",
        "--http1.0",
        "--resolve",
        &resolve,
        "--cacert",
        &cacert,
        &url,
    ])
    .await;
    assert!(status.success(), "HTTP/1.0 over TLS: {err}");
    assert!(err.contains("ALPN: offers http/1.0"), "{err}");
    assert!(body.starts_with("s1"), "{body}");
    // The other certificate's CA does not validate a name's certificate: proof it is a different one.
    let resolve = format!("a.fulcrum.test:{port}:127.0.0.1");
    let wrong_ca = format!("{fixtures}/b.crt");
    let url = format!("https://a.fulcrum.test:{port}/");
    let (status, _, _) = curl(&["--resolve", &resolve, "--cacert", &wrong_ca, &url]).await;
    assert!(!status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_alpn_and_h2c_complete_under_h2load() {
    if !require_tool("h2load") || !require_tool("curl") {
        return;
    }
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&tls_site(s1.addr()));
    let port = fulcrum.addr("tls").port();
    let tls_url = format!("https://127.0.0.1:{port}/");
    let h2c_url = format!("http://{}/", fulcrum.addr("clear"));
    for url in [&tls_url, &h2c_url] {
        let out = tokio::process::Command::new("h2load")
            .args(["-n", "200", "-c", "4", "-m", "10", url])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("200 succeeded, 0 failed, 0 errored"),
            "{url}: {text}"
        );
        assert!(text.contains("status codes: 200 2xx"), "{url}: {text}");
        if url == &tls_url {
            assert!(
                text.contains("Application protocol: h2"),
                "ALPN picked h2: {text}"
            );
        }
    }
    // curl over HTTP/2 sees the origin's answer and a POST body goes through.
    let resolve = format!("a.fulcrum.test:{port}:127.0.0.1");
    let cacert = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/a.crt");
    let url = format!("https://a.fulcrum.test:{port}/h2");
    let (status, out, err) = curl(&[
        "--http2",
        "-D",
        "-",
        "--resolve",
        &resolve,
        "--cacert",
        cacert,
        "--data-binary",
        "hello",
        &url,
    ])
    .await;
    assert!(status.success(), "{err}");
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    let posted = s1
        .requests()
        .into_iter()
        .find(|r| r.uri.path() == "/h2")
        .unwrap();
    assert_eq!(posted.body_len, 5);
    assert_eq!(
        posted.version,
        http::Version::HTTP_11,
        "servers are spoken to in HTTP/1.1"
    );
}

/// A frontend for h2c with one-second idle timeouts, before the first request and between two.
fn h2c_site(server: std::net::SocketAddr) -> String {
    clear_site(
        server,
        r#"{ http_request = "1s", keep_alive = "1s" }"#,
        "{}",
    )
}

/// A cleartext frontend (h2c) with the `timeout` tables `frontend` and `backend`, before `server`.
fn clear_site(server: std::net::SocketAddr, frontend: &str, backend: &str) -> String {
    format!(
        r#"
[frontend.clear]
bind = ["127.0.0.1:0"]
default_backend = "web"
timeout = {frontend}

[backend.web]
timeout = {backend}
servers = [{{ name = "s1", address = "{server}" }}]
"#
    )
}

/// The client connection preface and an empty SETTINGS frame: an h2c client that then says
/// nothing.
const H2C_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_connection_without_a_request_is_closed_after_http_request_timeout() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&h2c_site(s1.addr()));
    let mut stream = tokio::net::TcpStream::connect(fulcrum.addr("clear"))
        .await
        .unwrap();
    stream.write_all(H2C_PREFACE).await.unwrap();
    let mut frames = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut frames)).await;
    assert!(read.is_ok(), "the idle connection is still open after 10 s");
    // The server's SETTINGS, then a GOAWAY (type 7) before the end.
    assert!(
        h2_frame_types(&frames).contains(&7),
        "no GOAWAY: {frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_connection_is_closed_after_keep_alive_once_its_streams_end() {
    use http_body_util::BodyExt;
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&h2c_site(s1.addr()));
    let (mut sender, conn) = h2c(fulcrum.addr("clear")).await;
    // Requests 300 ms apart, each well within the keep-alive time (1 s) of the one before,
    // hold the connection past both timeouts.
    let started = Instant::now();
    for _ in 0..6 {
        let response = sender
            .send_request(h2_get(fulcrum.addr("clear"), "/"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!conn.is_finished(), "closed while requests kept coming");
    assert!(started.elapsed() >= Duration::from_millis(1800));
    // Then silence: the server ends the connection.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(
        ended.is_ok(),
        "the idle connection is still open after 10 s"
    );
}

/// The frame types of an HTTP/2 byte stream from a server (9-octet headers, then payloads).
fn h2_frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = bytes.get(9 + len..).unwrap_or_default();
    }
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_cookie_fields_reach_the_server_as_one_line_and_a_request_without_authority_gets_a_host()
{
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&h2c_site(s1.addr()));
    let (mut sender, _conn) = h2c(fulcrum.addr("clear")).await;
    for uri in [
        format!("http://{}/crumbs", fulcrum.addr("clear")),
        "/crumbs".to_owned(),
    ] {
        let request = http::Request::get(&uri)
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200, "{uri}");
    }
    let seen = s1.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        let cookies: Vec<_> = request.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2"], "{:?}", request.headers);
    }
    assert_eq!(
        seen[0].headers["host"],
        fulcrum.addr("clear").to_string().as_str()
    );
    assert_eq!(seen[1].headers["host"], s1.addr().to_string().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_in_a_transfer_coding_http2_cannot_carry_gets_502_not_its_coded_bytes() {
    // A server answering in `gzip, chunked`: framed by its chunks, its content still gzip.
    let server_addr = support::answering_server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let fulcrum = Fulcrum::start(&h2c_site(server_addr));
    let (mut sender, _conn) = h2c(fulcrum.addr("clear")).await;
    let response = sender
        .send_request(h2_get(fulcrum.addr("clear"), "/"))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
}

// Input: an h2c client asks a server whose chunked body has a chunk size that is not hex,
// behind a backend with `observe = "layer7"`, `error_limit = 1` and `on_error = "mark-down"`.
// Output: the server goes DOWN with HAProxy's `HANA` words: a malformed body counts against it
// for an HTTP/2 client as for an HTTP/1 one. (Over HTTP/2 it went uncounted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_to_an_h2_client_counts_against_the_server() {
    use http_body_util::BodyExt;
    let server = support::answering_server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.clear]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
health_check = {{ type = "tcp", interval = "10h", observe = "layer7", error_limit = 1, on_error = "mark-down" }}
servers = [{{ name = "s1", address = "{server}" }}]
"#
    ));
    let (mut sender, _conn) = h2c(fulcrum.addr("clear")).await;
    // The stream is reset, before or after its head reaches the client.
    let answered = sender
        .send_request(h2_get(fulcrum.addr("clear"), "/"))
        .await;
    if let Ok(response) = answered {
        assert!(
            response.into_body().collect().await.is_err(),
            "the stream ends in an error"
        );
    }
    let down = fulcrum.wait_log(|l| support::message(l) == "server is DOWN");
    assert_eq!(
        down["reason"],
        "HANA Detected 1 consecutive errors, last one was: Invalid or late http response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_h2_response_leaves_its_server_connection_to_the_next_request() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&h2c_site(s1.addr()));
    let (mut sender, _conn) = h2c(fulcrum.addr("clear")).await;
    for _ in 0..3 {
        let request = http::Request::head(format!("http://{}/", fulcrum.addr("clear")))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let seen = s1.requests();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|r| r.peer == seen[0].peer),
        "a new server connection per HEAD: {:?}",
        seen.iter().map(|r| r.peer).collect::<Vec<_>>()
    );
    // Logged as complete, not as cut by the client.
    let deadline = Instant::now() + Duration::from_secs(10);
    let heads = loop {
        let heads: Vec<_> = fulcrum
            .logs()
            .into_iter()
            .filter(|l| l["request"].as_str().is_some_and(|r| r.starts_with("HEAD")))
            .collect();
        if heads.len() == 3 || Instant::now() > deadline {
            break heads;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(heads.len(), 3);
    for log in heads {
        assert_eq!(&log["termination"].as_str().unwrap()[..2], "--", "{log}");
    }
}

// Input: a server streaming a chunked response that never ends, to an HTTP/2 client that takes
// the head and resets its stream. Output: the request is logged as ended by the client
// (termination `CD`). (Any failure of the relay was logged as the server's, `SD`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_resetting_a_chunked_response_is_logged_as_its_abort() {
    use tokio::io::AsyncWriteExt;
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                support::read_head(&mut conn).await;
                let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                let _ = conn.write_all(head).await;
                while conn.write_all(b"5\r\nhello\r\n").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
    });
    let fulcrum = Fulcrum::start(&h2c_site(addr));
    let (mut sender, _conn) = h2c(fulcrum.addr("clear")).await;
    let request = h2_get(fulcrum.addr("clear"), "/stream");
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let log = fulcrum.wait_log(|l| l["request"].as_str().is_some_and(|r| r.contains("/stream")));
    assert_eq!(&log["termination"].as_str().unwrap()[..2], "CD", "{log}");
}

// Input: an h2c GET to a server that takes a minute to answer; once the server has it, the
// client cancels its stream. Output: the request is logged, as ended by the client while
// waiting for the response head (termination `CH`). (hyper drops the handler of a reset
// stream, and its record went with it: the request left no line at all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_request_its_client_cancels_before_the_answer_is_logged() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&h2c_site(s1.addr()));
    let (mut sender, _conn) = h2c(fulcrum.addr("clear")).await;
    let request = h2_get(fulcrum.addr("clear"), "/delay/60000");
    let waiting = tokio::spawn(async move { sender.send_request(request).await });
    support::wait_origin_requests(&s1, 1).await;
    // Dropping the response future resets the stream with CANCEL.
    waiting.abort();
    let log = fulcrum.wait_log(|l| l["request"].as_str().is_some_and(|r| r.contains("/delay/")));
    assert_eq!(&log["termination"].as_str().unwrap()[..2], "CH", "{log}");
    assert_eq!(log["server"], "s1", "{log}");
}

// Input: an h2c GET to a server that takes a minute to answer; once the server has it, Fulcrum
// is stopped and stopped again (now). Output: the request is logged as killed by Fulcrum while
// waiting for the response head (`KH`). (It was logged as the client's abort, `CH`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_request_cut_by_a_hard_stop_is_logged_as_killed() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&h2c_site(s1.addr()));
    let (mut sender, _conn) = h2c(fulcrum.addr("clear")).await;
    let request = h2_get(fulcrum.addr("clear"), "/delay/60000");
    let _waiting = tokio::spawn(async move { sender.send_request(request).await });
    support::wait_origin_requests(&s1, 1).await;
    let fulcrum = stop_now(fulcrum).await;
    let log = fulcrum.wait_log(|l| l["request"].as_str().is_some_and(|r| r.contains("/delay/")));
    assert_eq!(&log["termination"].as_str().unwrap()[..2], "KH", "{log}");
}

// Input: an h2c GET whose server sends the head of a 1 MB body, ten bytes of it, and then
// nothing; once the client has the head, Fulcrum is stopped and stopped again (now). Output:
// the request is logged as killed during the body (`KD`). (It was logged as the client's
// abort, `CD`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_download_cut_by_a_hard_stop_is_logged_as_killed() {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                support::read_head(&mut conn).await;
                let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n0123456789";
                let _ = conn.write_all(head).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    let fulcrum = Fulcrum::start(&h2c_site(addr));
    let (mut sender, _conn) = h2c(fulcrum.addr("clear")).await;
    let response = sender
        .send_request(h2_get(fulcrum.addr("clear"), "/download"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let fulcrum = stop_now(fulcrum).await;
    let log = fulcrum.wait_log(|l| {
        l["request"]
            .as_str()
            .is_some_and(|r| r.contains("/download"))
    });
    assert_eq!(&log["termination"].as_str().unwrap()[..2], "KD", "{log}");
    drop(response);
}

/// Stops `fulcrum`, then stops it again at once (the hard stop), and waits until it exits;
/// its logs stay readable.
async fn stop_now(mut fulcrum: Fulcrum) -> Fulcrum {
    fulcrum.signal(libc::SIGTERM);
    fulcrum.wait_log(|l| support::message(l).starts_with("stopping"));
    fulcrum.signal(libc::SIGTERM);
    tokio::task::spawn_blocking(move || {
        fulcrum.wait_exit();
        fulcrum
    })
    .await
    .unwrap()
}

// Input: an HTTP/2 client that takes the head of an 8 MiB response and stops reading it (its
// stream window stays shut), while it goes on sending requests on the same connection.
// Output: the requests keep being answered past the stall limit; the stuck stream alone is
// cut, and once the client reads it again it fails (the stream is reset), short of its 8 MiB;
// its request is logged with termination `cD`. (The whole connection was closed, with every
// other stream on it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_h2_stream_is_cut_and_its_connection_goes_on() {
    use http_body_util::BodyExt;
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&stall_site(s1.addr()));
    // A small window per stream, a large one for the connection: one stream left unread does
    // not hold the others up.
    let (mut sender, conn) = h2c_with_windows(fulcrum.addr("clear"), 16 << 10, 64 << 20).await;
    tokio::spawn(conn);
    let get = |path: &str| h2_get(fulcrum.addr("clear"), path);
    let stuck = sender.send_request(get("/size/8MiB")).await.unwrap();
    assert_eq!(stuck.status(), 200);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let response = sender.send_request(get("/")).await.unwrap();
        assert_eq!(response.status(), 200, "after {:?}", started.elapsed());
        response.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut body = stuck.into_body();
    let mut read = 0;
    let ended = loop {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |data| data.len()),
            Some(Err(error)) => break error,
            None => panic!("the stuck stream was not cut: all {read} bytes came"),
        }
    };
    assert!(read < 8 << 20, "{read} bytes, then {ended}");
    // Logged as a client timeout during the body, as HAProxy logs a client that stops reading.
    let log = fulcrum.wait_log(|l| l["request"].as_str().is_some_and(|r| r.contains("/size/")));
    assert_eq!(&log["termination"].as_str().unwrap()[..2], "cD", "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_that_stops_reading_a_response_is_cut_off() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&stall_site(s1.addr()));
    // A small window the client never opens again: it takes the head and stops reading.
    let (mut sender, conn) = h2c_with_windows(fulcrum.addr("clear"), 16 << 10, 16 << 10).await;
    let conn = tokio::spawn(conn);
    let request = h2_get(fulcrum.addr("clear"), "/size/8MiB");
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(15), conn).await;
    assert!(
        ended.is_ok(),
        "the stalled connection is still open after 15 s"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    drop(response);
}

// Input: a server that answers a plain GET with `101 Switching Protocols`. Output: the client
// gets a 502, not a switch it did not ask for on a connection the pool would keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_of_protocols_the_request_did_not_ask_for_is_a_502() {
    let server = support::answering_server(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    )
    .await;
    let fulcrum = Fulcrum::start(&plain_site(server));
    let reply = support::get_and_close(fulcrum.addr("main")).await;
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
}

// Input: requests whose Host the server could read otherwise than the ACLs: an absolute-form
// target with another Host, `Connection: host`, and over HTTP/2 a `host` beside `:authority`
// (the same, and another). Output: the server sees the target's host, the Host, the authority;
// another host than `:authority` is a 400 that never reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_sees_the_host_the_request_was_sent_to() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&plain_site(s1.addr()));
    for (request, host) in [
        (
            "GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            "a.example",
        ),
        (
            "GET / HTTP/1.1\r\nHost: c.example\r\nConnection: host, close\r\n\r\n",
            "c.example",
        ),
    ] {
        let reply = raw_exchange(fulcrum.addr("main"), request.as_bytes()).await;
        assert!(reply.starts_with(b"HTTP/1.1 200"), "{request}");
        let seen = s1.requests();
        assert_eq!(seen.last().unwrap().headers["host"], host, "{request}");
    }
    let (mut sender, _conn) = h2c(fulcrum.addr("main")).await;
    for (host, status) in [("A.example", 200), ("b.example", 400)] {
        let request = http::Request::get("http://a.example/h2")
            .header("host", host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), status, "host {host}");
    }
    let seen = s1.requests();
    assert_eq!(seen.len(), 3, "the 400 reached the server");
    assert_eq!(seen[2].headers["host"], "a.example");
}

// Input: an HTTP/2 CONNECT. Output: 501, as over HTTP/1, and nothing reaches the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_connect_gets_501() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&h2c_site(s1.addr()));
    let (mut sender, _conn) = h2c(fulcrum.addr("clear")).await;
    let request = http::Request::connect("a.example:443")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 501);
    assert!(s1.requests().is_empty());
}

/// A frontend `main` whose `return` rule answers every request with 200 and `ok\n`.
const RETURNS_OK: &str = r#"
[frontend.main]
bind = ["127.0.0.1:0"]
return = [{ if = "TRUE", status = 200, content_type = "text/plain", body = "ok\n" }]
"#;

// Input: a POST that waits for `100 Continue` before its body, answered by a `return` rule.
// Output: the 100 comes, then the body is taken and the rule's 200 follows. (The client
// waited for a 100 that never came, then for its timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_rule_lets_a_client_that_expects_100_continue_send_its_body() {
    let fulcrum = Fulcrum::start(RETURNS_OK);
    let mut stream = tokio::net::TcpStream::connect(fulcrum.addr("main"))
        .await
        .unwrap();
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let interim = tokio::time::timeout(Duration::from_secs(5), support::read_head(&mut stream))
        .await
        .expect("no answer to the expectation");
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    stream.write_all(b"hello").await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), support::read_head(&mut stream))
        .await
        .unwrap();
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

// Input: an HTTP/2 (h2c) GET answered by a `return` rule. Output: the frontend's `bout` in
// `fulcrum ctl show stat` counts the rule's body, as over HTTP/1, and its `bin` nothing (no
// body came; HPACK-coded heads are not counted). (HTTP/2 streams were not counted at all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_answer_from_a_return_rule_is_counted_in_bout() {
    use http_body_util::BodyExt;
    let fulcrum = Fulcrum::start(RETURNS_OK);
    let addr = fulcrum.addr("main");
    let (mut sender, _conn) = h2c(addr).await;
    let response = sender.send_request(h2_get(addr, "/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok\n");
    let field = |column| support::stat_field(&fulcrum, "main", "FRONTEND", column);
    assert_eq!((field("bin"), field("bout")), (Some(0), Some(3)));
}

// Input: an HTTP/2 (h2c) POST of 5 bytes to s1. Output: in `fulcrum ctl show stat`, the
// frontend's `bin` is the body's 5 bytes; s1's and its backend's are the whole HTTP/1.1 request
// s1 was sent, head and body. (HTTP/2 streams were not counted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_request_body_is_counted_in_bin() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&clear_site(s1.addr(), "{}", "{}"));
    let addr = fulcrum.addr("clear");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let body = http_body_util::Full::new(bytes::Bytes::from_static(b"hello"));
    let request = http::Request::post(format!("http://{addr}/"))
        .body(body)
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let bin = |pxname, svname| support::stat_field(&fulcrum, pxname, svname, "bin");
    assert_eq!(bin("clear", "FRONTEND"), Some(5));
    // What s1 was sent, rebuilt from what it received: `NAME: value` lines and the body.
    let got = &s1.requests()[0];
    let head: usize = "POST / HTTP/1.1\r\n\r\n".len()
        + (got.headers.iter())
            .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
            .sum::<usize>();
    assert_eq!(got.body_len, 5);
    let to_s1 = (head + got.body_len) as u64;
    assert_eq!(bin("web", "s1"), Some(to_s1));
    assert_eq!(bin("web", "BACKEND"), Some(to_s1));
}

// Input: an HTTP/2 (h2c) GET, then a HEAD, to a backend whose only server is in MAINT.
// Output: a 503 page, whose bytes the frontend's `bout` counts, as over HTTP/1, and nothing for
// the HEAD, answered with the head alone. (They were not counted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_error_page_is_counted_in_bout() {
    use http_body_util::BodyExt;
    let fulcrum = Fulcrum::start(support::ONLY_SERVER_IN_MAINT);
    let addr = fulcrum.addr("main");
    let (mut sender, _conn) = h2c(addr).await;
    let response = sender.send_request(h2_get(addr, "/")).await.unwrap();
    assert_eq!(response.status(), 503);
    let page = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!page.is_empty());
    let head = http::Request::head(format!("http://{addr}/"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(head).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        support::stat_field(&fulcrum, "main", "FRONTEND", "bout"),
        Some(page.len() as u64)
    );
}

// Input: an HTTP/2 POST that sends 4 bytes of its body, then nothing, with `timeout.client`
// 1 s. Output: 408, as over HTTP/1 (it was a 400, as for a broken body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_body_that_stalls_gets_408() {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };
    /// A body that sends one frame, then never another.
    struct Stalls(bool);
    impl hyper::body::Body for Stalls {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Pending
            } else {
                Poll::Ready(Some(Ok(hyper::body::Frame::data(
                    bytes::Bytes::from_static(b"part"),
                ))))
            }
        }
    }
    let s1 = origin("s1").await;
    let fulcrum =
        Fulcrum::start(&plain_site(s1.addr()).replace("client = \"5s\"", "client = \"1s\""));
    let stream = tokio::net::TcpStream::connect(fulcrum.addr("main"))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = http::Request::post(format!("http://{}/upload", fulcrum.addr("main")))
        .body(Stalls(false))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(response.status(), 408);
}

/// A cleartext frontend (h2c) with `timeout.client` and `timeout.server` of 1 s, before `server`.
fn stall_site(server: std::net::SocketAddr) -> String {
    clear_site(server, r#"{ client = "1s" }"#, r#"{ server = "1s" }"#)
}

/// An h2c client of `addr` that grants each stream `stream_window` bytes and the connection
/// `connection_window`, and only as it reads them.
async fn h2c_with_windows(
    addr: std::net::SocketAddr,
    stream_window: u32,
    connection_window: u32,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    hyper::client::conn::http2::Connection<
        hyper_util::rt::TokioIo<tokio::net::TcpStream>,
        http_body_util::Empty<bytes::Bytes>,
        hyper_util::rt::TokioExecutor,
    >,
) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(stream_window)
        .initial_connection_window_size(connection_window)
        .handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap()
}

// Input: a TLS client that keeps its sessions, connecting once, then again after a reload of
// the unchanged file, then after the certificate file was replaced in place (another
// certificate, as after a renewal) and reloaded. Output: full, resumed, and not resumed: the
// new certificate is served (which the client, pinned to the old one, refuses). (Each reload
// built new TLS configs with a fresh 256-session cache: every client did a full handshake
// again. A cache kept by file path would have resumed under the replaced certificate.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_session_is_resumed_across_a_reload_but_not_a_new_certificate() {
    use rustls::HandshakeKind;
    use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s1 = origin("s1").await;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let certs = tempfile::tempdir().unwrap();
    let pem = certs.path().join("site.pem");
    std::fs::copy(format!("{fixtures}/a.pem"), &pem).unwrap();
    let fulcrum = Fulcrum::start(&format!(
        "[frontend.tls]\nbind = [\"127.0.0.1:0\"]\ntls = {{ certs = [\"{}\"] }}\ndefault_backend = \"web\"\n\n\
         [backend.web]\nservers = [{{ name = \"s1\", address = \"{}\" }}]\n",
        pem.display(),
        s1.addr()
    ));
    let port = fulcrum.addr("tls").port();
    let pinned = CertificateDer::from_pem_file(format!("{fixtures}/a.crt")).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Pinned {
        cert: pinned,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = ServerName::try_from("a.fulcrum.test").unwrap();
    // The handshake's kind, or `None` when the client refused it.
    let exchange = || async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut tls = connector.connect(name.clone(), tcp).await.ok()?;
        let request = b"GET / HTTP/1.1\r\nHost: a.fulcrum.test\r\nConnection: close\r\n\r\n";
        tls.write_all(request).await.unwrap();
        // Read to the end: TLS 1.3 session tickets come after the handshake.
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        tls.get_ref().1.handshake_kind()
    };
    assert_eq!(exchange().await, Some(HandshakeKind::Full));
    assert!(fulcrum.reload());
    assert_eq!(
        exchange().await,
        Some(HandshakeKind::Resumed),
        "the reload forgot the client's session"
    );
    std::fs::copy(format!("{fixtures}/b.pem"), &pem).unwrap();
    assert!(fulcrum.reload());
    assert_eq!(
        exchange().await,
        None,
        "a session made under the replaced certificate was resumed"
    );
}

/// Trusts one certificate, the fixture's: it is self-signed with CA rights, which webpki refuses
/// as a server's own. Handshake signatures are still checked.
#[derive(Debug)]
struct Pinned {
    cert: rustls_pki_types::CertificateDer<'static>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// Input: a POST of a 4 MiB body to a backend whose only server is in MAINT, so Fulcrum answers
// 503 before reading the body; the client writes the whole body, half-closes, then reads.
// Output: the client's upload is not cut off, and it reads the 503 page to a clean end. (The
// connection was closed with the body unread, which resets it: the client's upload failed with
// "connection reset", which is what a browser then shows instead of the page.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_page_sent_before_the_body_is_read_reaches_an_uploading_client() {
    let fulcrum = Fulcrum::start(support::ONLY_SERVER_IN_MAINT);
    let body = vec![b'x'; 4 << 20];
    let mut stream = tokio::net::TcpStream::connect(fulcrum.addr("main"))
        .await
        .unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let sent = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        sent.is_ok(),
        "the upload was cut off: {sent:?}; got {answer:?}"
    );
    assert!(
        read.is_ok(),
        "the answer was reset: {read:?}; got {answer:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}

// Input: an HTTP/2 POST (h2c, curl) carrying `content-length: 5` twice. Output: the server
// gets the request with a single `content-length` line. (Both went through, and servers that
// refuse a repeated Content-Length, nginx among them, answered 400.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_content_length_sent_twice_reaches_the_server_once() {
    if !require_tool("curl") {
        return;
    }
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = server.accept().await {
            let head = support::read_head(&mut conn).await;
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).to_lowercase());
            let mut body = [0u8; 5];
            let _ = conn.read_exact(&mut body).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    });
    let fulcrum = Fulcrum::start(&plain_site(server_addr));
    let url = format!("http://{}/form", fulcrum.addr("main"));
    let (status, body, err) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "content-length: 5",
        "-H",
        "content-length: 5",
        "--data-binary",
        "hello",
        &url,
    ])
    .await;
    assert!(status.success() && body == "ok", "{err} {body}");
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert_eq!(
        heads[0].matches("content-length:").count(),
        1,
        "{}",
        heads[0]
    );
}

// Input: an HTTP/2 HEAD (h2c, curl) to a backend whose only server is in MAINT. Output: curl
// gets the 503 head cleanly. (The error page's body went out as DATA on a HEAD response, which
// an HTTP/2 client takes as a protocol error and resets.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_head_gets_an_error_page_without_a_body() {
    if !require_tool("curl") {
        return;
    }
    let fulcrum = Fulcrum::start(support::ONLY_SERVER_IN_MAINT);
    let url = format!("http://{}/", fulcrum.addr("main"));
    let (status, out, err) = curl(&["--http2-prior-knowledge", "--head", &url]).await;
    assert!(status.success(), "curl failed: {err}");
    assert!(out.starts_with("HTTP/2 503"), "{out}");
}

// Input: a `return` rule of status 204; two requests pipelined on one connection. Output: two
// 204 heads, neither with a Content-Length (RFC 9110, 8.6). (A `content-length: 0` went with
// each.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_204_return_rule_sends_no_length() {
    let fulcrum = Fulcrum::start(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
return = [{ if = "TRUE", status = 204 }]
default_backend = "web"

[backend.web]
servers = [{ name = "s1", address = "127.0.0.1:9" }]
"#,
    );
    let answer = raw_exchange(
        fulcrum.addr("main"),
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert_eq!(answer.matches("http/1.1 204").count(), 2, "{answer}");
    assert!(!answer.contains("content-length"), "{answer}");
}

// Input: a TLS frontend with `alpn = ["h2"]`; curl offering only `http/1.1` over ALPN. Output:
// it is served (HTTP/1.1), as HAProxy serves a client whose ALPN matches nothing. (rustls ended
// its handshake with `no_application_protocol`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_is_served_by_an_h2_only_alpn_list() {
    if !require_tool("curl") {
        return;
    }
    let s1 = origin("s1").await;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let fulcrum = Fulcrum::start(&format!(
        "[frontend.tls]\nbind = [\"127.0.0.1:0\"]\ntls = {{ certs = [\"{fixtures}/a.pem\"], alpn = [\"h2\"] }}\n\
         default_backend = \"web\"\n\n[backend.web]\nservers = [{{ name = \"s1\", address = \"{}\" }}]\n",
        s1.addr()
    ));
    let port = fulcrum.addr("tls").port();
    let resolve = format!("a.fulcrum.test:{port}:127.0.0.1");
    let cacert = format!("{fixtures}/a.crt");
    let url = format!("https://a.fulcrum.test:{port}/");
    let (status, body, err) = curl(&[
        "-v",
        "--http1.1",
        "--resolve",
        &resolve,
        "--cacert",
        &cacert,
        &url,
    ])
    .await;
    assert!(status.success(), "HTTP/1.1 to an h2-only ALPN list: {err}");
    assert!(body.starts_with("s1"), "{body}");
}

// Input: an HTTP/2 POST of 50 MiB to a server that answers 413 as soon as it has the head and
// closes without reading the body. Output: the client gets that 413 and its body, as over
// HTTP/1 and as HAProxy relays it. (It got a 502: the failed write of the body ended the
// exchange before the server's answer was read.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_an_h2_upload_before_its_end_has_its_answer_relayed() {
    use http_body_util::BodyExt;
    let response = h2_upload_answered_midway(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big\n",
    )
    .await;
    assert_eq!(response.status(), 413);
    let body = tokio::time::timeout(Duration::from_secs(20), response.into_body().collect())
        .await
        .expect("the whole answer within 20 s")
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"too big\n");
}

// Input: the same, the 413's body in `gzip, chunked`. Output: 502, as for any answer in a
// transfer coding HTTP/2 cannot carry. (The early answer skipped that check, and the client
// got the gzip bytes as the body, with nothing saying they were coded.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_in_a_transfer_coding_http2_cannot_carry_gets_502() {
    let response = h2_upload_answered_midway(
        b"HTTP/1.1 413 Payload Too Large\r\ntransfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(response.status(), 502);
}

/// An HTTP/2 POST of 50 MiB through Fulcrum to a server that sends `answer` as soon as it has
/// the head and closes without reading the body; the response the client gets.
async fn h2_upload_answered_midway(answer: &'static [u8]) -> http::Response<hyper::body::Incoming> {
    let server_addr = support::answering_server(answer).await;
    let fulcrum = Fulcrum::start(&plain_site(server_addr));
    let stream = tokio::net::TcpStream::connect(fulcrum.addr("main"))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let body = http_body_util::Full::new(bytes::Bytes::from(vec![b'x'; 50 * 1024 * 1024]));
    let request = http::Request::post(format!("http://{}/upload", fulcrum.addr("main")))
        .body(body)
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
        .await
        .expect("an answer within 20 s")
        .unwrap()
}

// Input: an h2c client POSTs with `content-length: 100`, sends 10 bytes, then resets its
// stream with NO_ERROR; the server answers each connection's first request at once, with an
// empty 200, before its body. Then a GET on another stream. Output: the GET is answered, by a
// new server connection. (hyper ends a body the client reset with NO_ERROR as it ends a whole
// one: the short body was sent as complete, and the server connection, still owed 90 bytes,
// went back to the pool; the GET went down it and got 504.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_body_the_client_resets_with_no_error_leaves_its_server_connection_out_of_the_pool() {
    let (fulcrum, received, client) = post_reset_with_no_error(Some("100")).await;
    // The POST's record is written once its server connection was pooled or dropped.
    fulcrum.wait_log(|l| {
        l["target"] == "access" && l["request"].as_str().is_some_and(|r| r.contains("/upload"))
    });
    let mut client = client.ready().await.unwrap();
    let addr = fulcrum.addr("clear");
    let get = http::Request::get(format!("http://{addr}/next"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(get, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let connections = received.lock().unwrap().len();
    assert_eq!(connections, 2, "the GET went down the first connection");
}

// Input: an h2c client POSTs with no length (the server gets it chunked), sends 10 bytes, then
// resets its stream with NO_ERROR; the server answers at once. Output: the server never gets
// the last chunk: the body stays unfinished, as the client left it. (hyper ends such a body
// as a whole one, and the `0` chunk told the server the upload was complete.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_body_the_client_resets_with_no_error_is_not_ended_to_the_server() {
    let (_fulcrum, received, _client) = post_reset_with_no_error(None).await;
    // Either Fulcrum closes the connection, or it ends the body.
    let deadline = Instant::now() + support::PATIENCE;
    let first = loop {
        let first = received.lock().unwrap()[0].clone();
        if first.ends_with(CLOSED) || first.ends_with(b"0\r\n\r\n") {
            break first;
        }
        assert!(
            Instant::now() < deadline,
            "the connection stayed open, the body unended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        String::from_utf8_lossy(&first),
        format!("a\r\n{}\r\n<closed>", "x".repeat(10)),
        "the body was ended"
    );
}

/// Fulcrum before [`first_request_answered_at_once`]; an h2c client POSTs 10 bytes to it
/// (with `content-length: LENGTH` when given, chunked to the server otherwise), waits for the
/// server to have the request, and resets the stream with NO_ERROR.
async fn post_reset_with_no_error(
    length: Option<&str>,
) -> (Fulcrum, Received, h2::client::SendRequest<bytes::Bytes>) {
    let (server, received) = first_request_answered_at_once().await;
    let fulcrum = Fulcrum::start(&clear_site(
        server,
        r#"{ http_request = "5s" }"#,
        r#"{ server = "2s" }"#,
    ));
    let addr = fulcrum.addr("clear");
    let mut client = support::h2::h2c_frames(addr).await;
    let mut post = http::Request::post(format!("http://{addr}/upload"));
    if let Some(length) = length {
        post = post.header("content-length", length);
    }
    let (_response, mut body) = client.send_request(post.body(()).unwrap(), false).unwrap();
    body.send_data(bytes::Bytes::from_static(&[b'x'; 10]), false)
        .unwrap();
    let deadline = Instant::now() + support::PATIENCE;
    while received.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the POST never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    body.send_reset(h2::Reason::NO_ERROR);
    (fulcrum, received, client)
}

/// A server that answers each connection's first request head at once with an empty 200, then
/// reads on without answering; and what each of its connections received after that head, as
/// it comes (a connection is counted once its first head is in).
async fn first_request_answered_at_once() -> (std::net::SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let all = std::sync::Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let all = std::sync::Arc::clone(&all);
            tokio::spawn(async move {
                support::read_head(&mut conn).await;
                let index = {
                    let mut all = all.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = conn.read(&mut buf).await {
                    all.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                }
                all.lock().unwrap()[index].extend_from_slice(CLOSED);
            });
        }
    });
    (addr, received)
}

/// What each connection of [`first_request_answered_at_once`] received after its first head,
/// then [`CLOSED`] once it closed.
type Received = std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// Appended to what a connection received once Fulcrum closed it.
const CLOSED: &[u8] = b"<closed>";

// Input: an h2c GET to a server that sends a chunked head and one chunk, then waits, as an
// event stream or a long poll does (`timeout.server` 60 s); the client takes the head, then
// cancels its stream. Output: Fulcrum closes the server connection at once and frees the
// server's slot. (Both were held until the server's next chunk, or `timeout.server`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancelling_an_h2_stream_frees_a_waiting_chunked_response_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let closed = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = std::sync::Arc::clone(&closed);
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        support::read_head(&mut conn).await;
        let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
        conn.write_all(head).await.unwrap();
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest).await;
        notify.notify_one();
    });
    let fulcrum = Fulcrum::start(&clear_site(
        server,
        r#"{ http_request = "5s" }"#,
        r#"{ server = "60s" }"#,
    ));
    let addr = fulcrum.addr("clear");
    let mut client = support::h2::h2c_frames(addr).await;
    let get = http::Request::get(format!("http://{addr}/events"))
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(get, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(support::stat_field(&fulcrum, "web", "s1", "scur"), Some(1));
    stream.send_reset(h2::Reason::CANCEL);
    tokio::time::timeout(support::PATIENCE, closed.notified())
        .await
        .expect("the server connection stayed open");
    let deadline = Instant::now() + support::PATIENCE;
    while support::stat_field(&fulcrum, "web", "s1", "scur") != Some(0) {
        assert!(Instant::now() < deadline, "the server's slot stayed taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
