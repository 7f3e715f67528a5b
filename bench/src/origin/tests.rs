//! Talks to a real origin over loopback with a hand-written HTTP/1.1 client, so the tests see the
//! bytes a proxy would see.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{BODY_FILLER, Origin, OriginOptions, start};

/// Long enough never to fire on a healthy run, short enough that a hang fails the test quickly.
const PATIENCE: Duration = Duration::from_secs(5);

const ANY_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

async fn origin(options: OriginOptions) -> Origin {
    start(ANY_PORT, options).await.unwrap()
}

fn named(name: &str) -> OriginOptions {
    OriginOptions {
        name: name.to_owned(),
        ..OriginOptions::default()
    }
}

/// One client connection, buffered for reading heads line by line.
struct Client {
    stream: BufReader<TcpStream>,
}

#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl Client {
    async fn connect(origin: &Origin) -> Self {
        let stream = TcpStream::connect(origin.addr()).await.unwrap();
        Self {
            stream: BufReader::new(stream),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
    }

    async fn get(&mut self, path: &str) -> RawResponse {
        let request = format!("GET {path} HTTP/1.1\r\nHost: origin\r\n\r\n");
        self.send(request.as_bytes()).await;
        self.response().await
    }

    /// Reads one response; the body is framed by `Content-Length` (absent means none, as for 101).
    async fn response(&mut self) -> RawResponse {
        timeout(PATIENCE, self.read_response()).await.unwrap()
    }

    async fn read_response(&mut self) -> RawResponse {
        let status_line = self.line().await;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(length) = response.header("content-length") {
            response.body = vec![0; length.parse().unwrap()];
            self.stream.read_exact(&mut response.body).await.unwrap();
        }
        response
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        assert!(line.ends_with("\r\n"), "truncated line {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    /// True once the server has closed the connection: the next read sees end of stream.
    async fn sees_eof(&mut self) -> bool {
        let mut byte = [0; 1];
        let read = timeout(PATIENCE, self.stream.read(&mut byte))
            .await
            .unwrap();
        matches!(read, Ok(0))
    }
}

#[tokio::test]
async fn answers_with_its_name_in_header_and_body() {
    let origin = origin(named("s1")).await;
    let mut client = Client::connect(&origin).await;

    let response = client.get("/").await;

    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-server"), Some("s1"));
    assert_eq!(response.body.len(), 64);
    assert!(response.body.starts_with(b"s1"));
    assert!(response.body[2..].iter().all(|&byte| byte == BODY_FILLER));
    assert_eq!(origin.name(), "s1");
}

#[tokio::test]
async fn body_size_option_and_size_path() {
    let origin = origin(OriginOptions {
        body_size: 1000,
        ..named("s2")
    })
    .await;
    let mut client = Client::connect(&origin).await;

    assert_eq!(client.get("/").await.body.len(), 1000);
    let small = client.get("/size/10").await;
    assert_eq!(small.body, b"s2\n\n\n\n\n\n\n\n");
    assert_eq!(small.header("content-length"), Some("10"));
    let large = client.get("/size/4KiB").await;
    assert_eq!(large.body.len(), 4096);
    assert!(large.body.starts_with(b"s2\n"));
    assert_eq!(client.get("/size/lots").await.status, 400);
}

#[tokio::test]
async fn echo_returns_the_request_body() {
    let origin = origin(OriginOptions {
        echo: true,
        ..named("echo")
    })
    .await;
    let mut client = Client::connect(&origin).await;

    client
        .send(b"POST /anything HTTP/1.1\r\nHost: origin\r\nContent-Length: 11\r\n\r\nhello world")
        .await;
    let response = client.response().await;
    assert_eq!(response.body, b"hello world");
    assert_eq!(response.header("content-length"), Some("11"));
    assert_eq!(response.header("x-server"), Some("echo"));

    // Chunked in, Content-Length out.
    client
        .send(b"POST / HTTP/1.1\r\nHost: origin\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        .await;
    let response = client.response().await;
    assert_eq!(response.body, b"abcde");
    assert_eq!(response.header("content-length"), Some("5"));
}

#[tokio::test]
async fn status_option_and_status_path() {
    let origin = origin(OriginOptions {
        status: 201,
        ..named("s1")
    })
    .await;
    let mut client = Client::connect(&origin).await;

    assert_eq!(client.get("/").await.status, 201);
    let unavailable = client.get("/status/503").await;
    assert_eq!(unavailable.status, 503);
    assert_eq!(unavailable.header("x-server"), Some("s1"));
    let no_content = client.get("/status/204").await;
    assert_eq!(no_content.status, 204);
    assert!(no_content.body.is_empty());
    assert_eq!(client.get("/status/abc").await.status, 400);
    assert_eq!(client.get("/status/101").await.status, 400);
    // Still usable after all of that: every answer kept the connection alive.
    assert_eq!(client.get("/").await.status, 201);
}

#[tokio::test(start_paused = true)]
async fn delay_path_and_delay_option_wait_before_answering() {
    let origin = origin(OriginOptions {
        delay: Duration::from_millis(300),
        ..named("slow")
    })
    .await;
    let mut client = Client::connect(&origin).await;

    let started = tokio::time::Instant::now();
    client.get("/").await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    let started = tokio::time::Instant::now();
    client.get("/delay/1000").await;
    assert!(started.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test]
async fn keep_alive_off_answers_close_and_closes() {
    let origin = origin(OriginOptions {
        keep_alive: false,
        ..named("s1")
    })
    .await;
    let mut client = Client::connect(&origin).await;

    let response = client.get("/").await;

    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.sees_eof().await);
}

#[tokio::test]
async fn keep_alive_on_serves_several_requests_per_connection() {
    let origin = origin(named("s1")).await;
    let mut client = Client::connect(&origin).await;

    for _ in 0..3 {
        let response = client.get("/").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), None);
    }
    let requests = origin.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests
            .iter()
            .all(|request| request.peer == requests[0].peer)
    );
}

#[tokio::test]
async fn upgrade_switches_protocols_then_echoes() {
    let origin = origin(named("ws")).await;
    let mut client = Client::connect(&origin).await;

    client
        .send(b"GET /chat HTTP/1.1\r\nHost: origin\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 101);
    assert_eq!(response.header("upgrade"), Some("websocket"));
    assert_eq!(response.header("x-server"), Some("ws"));

    for message in [&b"hello"[..], b"\x00\x01 not http \r\n\r\n"] {
        client.send(message).await;
        let mut echoed = vec![0; message.len()];
        timeout(PATIENCE, client.stream.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message);
    }
    // Closing our side ends the echo, and the server closes its side in turn.
    client.stream.get_mut().shutdown().await.unwrap();
    assert!(client.sees_eof().await);
    assert_eq!(origin.requests()[0].uri, "/chat");
}

#[tokio::test]
async fn records_what_it_received() {
    let origin = origin(named("s1")).await;
    let mut client = Client::connect(&origin).await;

    client
        .send(b"POST /submit?x=1 HTTP/1.1\r\nHost: origin\r\nX-Forwarded-For: 192.0.2.7\r\nContent-Length: 10\r\n\r\n0123456789")
        .await;
    client.response().await;
    client.get("/second").await;

    assert_eq!(origin.request_count(), 2);
    let requests = origin.requests();
    let first = &requests[0];
    assert_eq!(first.method, Method::POST);
    assert_eq!(first.uri, "/submit?x=1");
    assert_eq!(first.version, Version::HTTP_11);
    assert_eq!(first.headers["x-forwarded-for"], "192.0.2.7");
    assert_eq!(first.headers["host"], "origin");
    assert_eq!(first.body_len, 10);
    assert_eq!(
        first.peer,
        client.stream.get_ref().local_addr().unwrap(),
        "the peer is the client's end of the connection"
    );
    assert_eq!(requests[1].uri, "/second");
    assert_eq!(requests[1].body_len, 0);

    origin.clear();
    assert_eq!(origin.request_count(), 0);
    assert!(origin.requests().is_empty());
}

#[tokio::test]
async fn stop_closes_idle_keep_alive_connections() {
    let origin = origin(named("s1")).await;
    let mut idle = Client::connect(&origin).await;
    assert_eq!(idle.get("/").await.status, 200);
    let mut upgraded = Client::connect(&origin).await;
    upgraded
        .send(b"GET / HTTP/1.1\r\nHost: origin\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await;
    assert_eq!(upgraded.response().await.status, 101);

    timeout(PATIENCE, origin.stop()).await.unwrap();

    assert!(idle.sees_eof().await);
    assert!(upgraded.sees_eof().await);
}

#[tokio::test]
async fn drop_closes_connections_too() {
    let origin = origin(named("s1")).await;
    let mut client = Client::connect(&origin).await;
    assert_eq!(client.get("/").await.status, 200);

    drop(origin);

    assert!(client.sees_eof().await);
}

#[tokio::test]
async fn speaks_h2c_with_prior_knowledge() {
    let origin = origin(named("h2")).await;
    let stream = TcpStream::connect(origin.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);

    let request = http::Request::get(format!("http://{}/size/100", origin.addr()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = timeout(PATIENCE, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.headers()["x-server"], "h2");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 100);
    assert_eq!(origin.requests()[0].version, Version::HTTP_2);
}

#[tokio::test]
async fn files_are_stored_and_served_back_when_a_directory_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let origin = origin(OriginOptions {
        files: Some(dir.path().to_owned()),
        ..named("web1")
    })
    .await;
    let mut client = Client::connect(&origin).await;

    assert_eq!(client.get("/files/photo.jpg").await.status, 404);
    client
        .send(b"POST /files/photo.jpg HTTP/1.1\r\nHost: origin\r\nContent-Length: 10\r\n\r\njpeg bytes")
        .await;
    let stored = client.response().await;
    assert_eq!(stored.status, 201);
    assert_eq!(stored.header("x-server"), Some("web1"));
    // On disk under its name, and nothing else left behind (the temporary file was renamed).
    assert_eq!(
        std::fs::read(dir.path().join("photo.jpg")).unwrap(),
        b"jpeg bytes"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let served = client.get("/files/photo.jpg").await;
    assert_eq!((served.status, &served.body[..]), (200, &b"jpeg bytes"[..]));
    client
        .send(b"PUT /files/photo.jpg HTTP/1.1\r\nHost: origin\r\nContent-Length: 3\r\n\r\nnew")
        .await;
    assert_eq!(client.response().await.status, 201);
    assert_eq!(&client.get("/files/photo.jpg").await.body[..], b"new");
    // A file written there by anyone else (a directory sync) is served too.
    std::fs::write(dir.path().join("synced.txt"), b"from the peer").unwrap();
    assert_eq!(
        &client.get("/files/synced.txt").await.body[..],
        b"from the peer"
    );

    for bad in [
        "/files/..",
        "/files/.photo.jpg.1-0.tmp",
        "/files/a%2Fb",
        "/files/",
    ] {
        assert_eq!(client.get(bad).await.status, 400, "{bad}");
    }
    client
        .send(b"DELETE /files/photo.jpg HTTP/1.1\r\nHost: origin\r\n\r\n")
        .await;
    assert_eq!(client.response().await.status, 405);
    let recorded = origin.requests();
    assert_eq!(recorded[1].method, Method::POST);
    assert_eq!(recorded[1].body_len, 10);
}

#[tokio::test]
async fn without_a_directory_files_paths_are_ordinary() {
    let origin = origin(named("s1")).await;
    let mut client = Client::connect(&origin).await;
    let response = client.get("/files/photo.jpg").await;
    assert_eq!(response.status, 200);
    assert!(response.body.starts_with(b"s1"));
}

#[tokio::test]
async fn refuses_options_it_cannot_serve() {
    for options in [
        named("bad\nname"),
        OriginOptions {
            status: 99,
            ..named("s1")
        },
        OriginOptions {
            status: 101,
            ..named("s1")
        },
    ] {
        let error = start(ANY_PORT, options).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    }
}
