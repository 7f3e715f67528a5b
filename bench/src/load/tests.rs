//! Load runs against the origin and against purpose-built servers: one that stalls (coordinated
//! omission), ones that fail in each way a report counts, and a TLS one.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::connect::Connect;
use super::http1::{self, Http1};
use super::options::{LoadOptions, Protocol, Stop};
use super::report::{Report, SCHEMA};
use super::request::RequestSpec;
use super::schedule::{Pacing, Window};
use super::target::Target;
use super::worker::Worker;
use crate::origin::{self, Origin, OriginOptions};

const ANY_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

async fn origin() -> Origin {
    origin::start(ANY_PORT, OriginOptions::default())
        .await
        .unwrap()
}

/// A short closed-loop run against `url`.
fn quick(url: String) -> LoadOptions {
    LoadOptions {
        url,
        connections: 4,
        stop: Stop::Duration(Duration::from_millis(300)),
        timeout: Duration::from_secs(2),
        ..LoadOptions::default()
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}

#[tokio::test]
async fn closed_loop_against_the_origin() {
    let origin = origin().await;
    let options = LoadOptions {
        stop: Stop::Duration(Duration::from_millis(500)),
        ..quick(url(origin.addr()))
    };

    let report = super::run(&options).await.unwrap();

    assert!(report.requests > 0);
    assert_eq!(report.errors, Default::default());
    assert_eq!(report.status, BTreeMap::from([(200, report.requests)]));
    assert!(report.duration_s >= 0.5, "{}", report.duration_s);
    assert!(report.throughput_rps > 0.0);
    assert_eq!(
        (report.mode.as_str(), report.protocol.as_str()),
        ("closed", "http1")
    );
    // Each answer has a head and the default 64-byte body.
    assert!(report.bytes_read > 64 * report.requests);
    assert!(report.latency_us.max >= report.latency_us.p50);
    assert_eq!(report.connects, 4);
    // The origin saw at least every answered request (and those cut off at the end).
    assert!(origin.request_count() >= report.requests);
}

#[tokio::test]
async fn keep_alive_reuses_connections_and_close_opens_one_per_request() {
    let origin = origin().await;
    let peers = |origin: &Origin| {
        let peers: BTreeSet<SocketAddr> = origin.requests().iter().map(|r| r.peer).collect();
        peers.len()
    };
    // Two threads, one connection each, sharing one request budget.
    let options = LoadOptions {
        connections: 2,
        threads: 2,
        stop: Stop::Requests(40),
        ..quick(url(origin.addr()))
    };

    let kept = super::run(&options).await.unwrap();
    assert_eq!(kept.requests, 40);
    assert_eq!(kept.connects, 2);
    assert_eq!(peers(&origin), 2);
    assert!(kept.keep_alive);
    assert_eq!(kept.threads, 2);

    origin.clear();
    let closed = super::run(&LoadOptions {
        keep_alive: false,
        ..options
    })
    .await
    .unwrap();
    assert_eq!(closed.requests, 40);
    assert_eq!(closed.connects, 40);
    assert_eq!(peers(&origin), 40);
    assert!(
        origin
            .requests()
            .iter()
            .all(|request| request.headers["connection"] == "close")
    );
}

#[tokio::test]
async fn paths_methods_bodies_and_headers_reach_the_server() {
    let origin = origin().await;
    let options = LoadOptions {
        connections: 1,
        stop: Stop::Requests(4),
        method: "POST".into(),
        paths: vec!["/size/10".into(), "/status/503".into()],
        body_size: 1000,
        headers: vec![("X-Load".into(), "yes".into())],
        ..quick(url(origin.addr()))
    };

    let report = super::run(&options).await.unwrap();

    assert_eq!(report.status, BTreeMap::from([(200, 2), (503, 2)]));
    let requests = origin.requests();
    let paths: Vec<String> = requests.iter().map(|r| r.uri.to_string()).collect();
    assert_eq!(
        paths,
        ["/size/10", "/status/503", "/size/10", "/status/503"]
    );
    for request in &requests {
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(request.body_len, 1000);
        assert_eq!(request.headers["x-load"], "yes");
    }
}

#[tokio::test]
async fn h2c_streams_against_the_origin() {
    let origin = origin().await;
    let options = LoadOptions {
        connections: 2,
        streams: 4,
        protocol: Protocol::H2,
        ..quick(url(origin.addr()))
    };

    let report = super::run(&options).await.unwrap();

    assert!(report.requests > 0);
    assert_eq!(report.errors, Default::default());
    assert_eq!(report.status, BTreeMap::from([(200, report.requests)]));
    assert_eq!(report.protocol, "h2");
    assert_eq!(report.streams, Some(4));
    assert_eq!(report.connects, 2);
    assert!(report.bytes_read > 64 * report.requests);
    assert!(
        origin
            .requests()
            .iter()
            .all(|request| request.version == http::Version::HTTP_2)
    );
}

#[tokio::test]
async fn rate_mode_sends_at_the_rate() {
    let origin = origin().await;
    let options = LoadOptions {
        rate: Some(400.0),
        stop: Stop::Duration(Duration::from_millis(500)),
        ..quick(url(origin.addr()))
    };

    let report = super::run(&options).await.unwrap();

    // 200 requests are due; a slow machine may still be answering the last few at the end.
    assert!(
        (190..=200).contains(&report.requests),
        "{}",
        report.requests
    );
    assert_eq!(report.mode, "rate");
    assert_eq!(report.rate, Some(400.0));
    assert_eq!(report.errors, Default::default());
}

/// Coordinated omission, end to end over TCP: a server that stalls every connection for 400 ms
/// once, during a 1.2 s run at 200 requests/s on 2 connections.
#[tokio::test]
async fn a_stall_shows_in_the_rate_latency_but_not_the_service_time() {
    let listener = TcpListener::bind(ANY_PORT).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stall = Arc::new(Stall::new(
        Instant::now() + Duration::from_millis(400),
        Duration::from_millis(400),
    ));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(stream, stall.clone()));
        }
    });
    let options = LoadOptions {
        connections: 2,
        rate: Some(200.0),
        stop: Stop::Duration(Duration::from_millis(1200)),
        ..quick(url(addr))
    };

    let report = super::run(&options).await.unwrap();

    assert_eq!(report.requests, 240);
    // About 80 requests were due during the stall, waiting up to 400 ms each: over a quarter of
    // the run, so p99 sits in the stall.
    assert!(report.latency_us.p99 >= 300_000, "{:?}", report.latency_us);
    // A naive client saw only the 2 requests that were in flight when it began stall: under 1 %.
    assert!(report.service_us.p99 < 100_000, "{:?}", report.service_us);
    assert!(report.service_us.max >= 300_000, "{:?}", report.service_us);
}

#[tokio::test]
async fn connect_failures_are_counted_and_the_run_still_ends() {
    // A port that was free a moment ago and has no listener now.
    let addr = TcpListener::bind(ANY_PORT)
        .await
        .unwrap()
        .local_addr()
        .unwrap();

    for stop in [
        Stop::Duration(Duration::from_millis(200)),
        Stop::Requests(6),
    ] {
        for protocol in [Protocol::Http1, Protocol::H2] {
            let options = LoadOptions {
                connections: 2,
                streams: 2,
                protocol,
                stop,
                ..quick(url(addr))
            };
            let report = super::run(&options).await.unwrap();
            assert_eq!(report.requests, 0);
            assert!(report.errors.connect > 0, "{protocol:?} {stop:?}");
            assert_eq!(report.connects, 0);
        }
    }
}

#[tokio::test]
async fn silence_is_a_timeout_garbage_a_protocol_error_and_hang_ups_read_errors() {
    /// Answers the first request with `answer`, then hangs up or (`hold`) stays silent.
    async fn failing_server(answer: &'static [u8], hold: bool) -> SocketAddr {
        let listener = TcpListener::bind(ANY_PORT).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut request = [0; 1024];
                    if stream.read(&mut request).await.unwrap_or(0) > 0 {
                        let _ = stream.write_all(answer).await;
                    }
                    if hold {
                        // Until the client gives up on the connection.
                        let _ = stream.read(&mut request).await;
                    }
                });
            }
        });
        addr
    }

    let silent = LoadOptions {
        timeout: Duration::from_millis(100),
        ..quick(url(failing_server(b"", true).await))
    };
    let report = super::run(&silent).await.unwrap();
    assert!(report.errors.timeout > 0);
    assert_eq!(report.requests, 0);

    let garbage = quick(url(failing_server(b"SSH-2.0-OpenSSH\r\n\r\n", true).await));
    let report = super::run(&garbage).await.unwrap();
    assert!(report.errors.protocol > 0);
    assert_eq!(report.requests, 0);

    let truncated = quick(url(failing_server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        false,
    )
    .await));
    let report = super::run(&truncated).await.unwrap();
    assert!(report.errors.read > 0);
    assert_eq!(report.requests, 0);
}

#[tokio::test]
async fn https_with_http1_and_h2() {
    let addr = tls_server().await;
    for protocol in [Protocol::Http1, Protocol::H2] {
        let options = LoadOptions {
            url: format!("https://{addr}/"),
            insecure: true,
            protocol,
            connections: 2,
            streams: 2,
            ..quick(String::new())
        };
        let report = super::run(&options).await.unwrap();
        assert!(report.requests > 0, "{protocol:?}");
        assert_eq!(report.errors, Default::default(), "{protocol:?}");
        assert_eq!(report.status, BTreeMap::from([(200, report.requests)]));
    }

    // The certificate is for a.fulcrum.test, so checking it against 127.0.0.1 fails.
    let options = LoadOptions {
        url: format!("https://{addr}/"),
        cacert: Some(fixture("a.crt").into()),
        ..quick(String::new())
    };
    let report = super::run(&options).await.unwrap();
    assert!(report.errors.connect > 0);
    assert_eq!(report.requests, 0);
}

#[tokio::test]
async fn refuses_options_it_cannot_run() {
    let https = "https://127.0.0.1:1/".to_owned();
    for options in [
        LoadOptions {
            connections: 0,
            ..LoadOptions::default()
        },
        LoadOptions {
            rate: Some(0.0),
            ..LoadOptions::default()
        },
        LoadOptions {
            rate: Some(f64::NAN),
            ..LoadOptions::default()
        },
        LoadOptions {
            stop: Stop::Requests(0),
            ..LoadOptions::default()
        },
        LoadOptions {
            protocol: Protocol::H2,
            keep_alive: false,
            ..LoadOptions::default()
        },
        // Neither --insecure nor --cacert.
        LoadOptions {
            url: https.clone(),
            ..LoadOptions::default()
        },
        LoadOptions {
            url: https,
            cacert: Some("/nonexistent/ca.pem".into()),
            ..LoadOptions::default()
        },
    ] {
        assert!(super::run(&options).await.is_err(), "{options:?}");
    }
}

#[test]
fn the_json_report_keeps_its_keys() {
    let json = serde_json::to_value(Report::default()).unwrap();
    let keys: BTreeSet<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "schema",
            "url",
            "mode",
            "protocol",
            "keep_alive",
            "connections",
            "rate",
            "duration_s",
            "requests",
            "errors",
            "status",
            "throughput_rps",
            "bytes_read",
            "latency_us",
            "distribution",
            "service_us",
            "connects",
            "threads",
            "streams",
        ])
    );
    assert_eq!(json["schema"], "fulcrum-bench/load/v1");
    assert_eq!(SCHEMA, "fulcrum-bench/load/v1");
    let errors: BTreeSet<&str> = json["errors"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        errors,
        BTreeSet::from(["connect", "read", "write", "timeout", "protocol"])
    );
    let latency: BTreeSet<&str> = json["latency_us"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        latency,
        BTreeSet::from(["min", "mean", "stdev", "p50", "p90", "p99", "p999", "max"])
    );
    // A report round-trips, and one written before the added fields still reads.
    let report: Report = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(report, Report::default());
    let mut older = json;
    for added in ["service_us", "connects", "threads", "streams"] {
        older.as_object_mut().unwrap().remove(added);
    }
    assert_eq!(
        serde_json::from_value::<Report>(older).unwrap(),
        Report::default()
    );
}

/// Coordinated omission in paused time, exactly: one connection at 200 requests/s for 2 s
/// against an in-memory server that answers at once, except that it stalls 500 ms once at 1 s.
#[tokio::test(start_paused = true)]
async fn coordinated_omission_is_corrected_in_paused_time() {
    let start = Instant::now();
    let stall = Arc::new(Stall::new(
        start + Duration::from_secs(1),
        Duration::from_millis(500),
    ));
    let window = Arc::new(Window::new(
        start,
        Duration::ZERO,
        Stop::Duration(Duration::from_secs(2)),
    ));
    let pacing = Pacing::Rate {
        rate: 200.0,
        slots: 1,
    };
    let worker = Rc::new(Worker::new(window, pacing, Duration::from_secs(5)));
    let options = LoadOptions::default();
    let target = Target::resolve(&options.url, &[]).unwrap();
    let http = Arc::new(Http1::new(
        &RequestSpec::new(&options, &target).unwrap(),
        true,
    ));

    http1::send(worker.clone(), Rc::new(InMemory { stall }), http, 0).await;

    let recorder = worker.finish();
    assert_eq!(recorder.requests(), 400);
    let latency = super::stats::summary(&recorder.latency);
    let service = super::stats::summary(&recorder.service);
    // The ~100 requests due during the stall waited from their due time until it ended: 500 ms
    // down to 0, so the slowest 1 % took about 480 ms or more.
    assert!(latency.p99 >= 450_000, "{latency:?}");
    assert!(latency.p90 >= 250_000, "{latency:?}");
    assert!(latency.max >= 500_000, "{latency:?}");
    // Measured from their actual send, only the one request caught in the stall was slow.
    assert!(service.p99 < 2_000, "{service:?}");
    assert!(service.max >= 499_000, "{service:?}");
}

/// A server-wide stall: the first request at or after `at` holds every answer for `length`.
#[derive(Debug)]
struct Stall {
    at: Instant,
    length: Duration,
    started: AtomicBool,
    until: std::sync::OnceLock<Instant>,
}

impl Stall {
    fn new(at: Instant, length: Duration) -> Self {
        Self {
            at,
            length,
            started: AtomicBool::new(false),
            until: std::sync::OnceLock::new(),
        }
    }

    async fn wait(&self) {
        let now = Instant::now();
        if now >= self.at && !self.started.swap(true, Ordering::SeqCst) {
            let _ = self.until.set(now + self.length);
        }
        if let Some(&until) = self.until.get() {
            tokio::time::sleep_until(until).await;
        }
    }
}

/// Answers every request with [`OK`], after the stall if one is on.
async fn serve(mut stream: impl AsyncRead + AsyncWrite + Unpin, stall: Arc<Stall>) {
    let mut pending = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let read = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        pending.extend_from_slice(&buffer[..read]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            stall.wait().await;
            if stream.write_all(OK).await.is_err() {
                return;
            }
        }
    }
}

/// Connections to [`serve`] over in-memory pipes, so paused time only moves when every task
/// waits on a timer.
#[derive(Debug)]
struct InMemory {
    stall: Arc<Stall>,
}

impl Connect for InMemory {
    type Stream = DuplexStream;

    async fn connect(&self, _index: usize) -> io::Result<DuplexStream> {
        let (client, server) = tokio::io::duplex(64 << 10);
        tokio::spawn(serve(server, self.stall.clone()));
        Ok(client)
    }
}

fn fixture(name: &str) -> String {
    format!(
        "{}/../tests/fixtures/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// An HTTPS server (HTTP/1.1 or h2 by ALPN) with the self-signed `a.fulcrum.test` certificate.
async fn tls_server() -> SocketAddr {
    let certificates = CertificateDer::pem_file_iter(fixture("a.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("a.pem")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(ANY_PORT).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|_request| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        b"hello",
                    ))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
