//! The operator's view of a running proxy: HAProxy's stats rows, the Prometheus families drawn
//! from the same numbers, and admin actions on servers, against a real proxy on 127.0.0.1:0 in
//! front of tiny local origins.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use fulcrum_common::{
    action::{AdminState, ServerAction, ServerRef},
    stats::{ProxyKind, ProxyStats, Row},
};
use fulcrum_proxy::{
    ActionError, Config, Event, Proxy,
    config::{
        Sections,
        l4_section::VirtualServerSection,
        section::{BackendSection, FrontendSection},
    },
    state::ServerStatus,
};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::proto::MetricFamily;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
};

/// Longest any wait may take before it is a failure.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(serde::Deserialize)]
struct File {
    #[serde(default)]
    frontend: BTreeMap<String, FrontendSection>,
    #[serde(default)]
    backend: BTreeMap<String, BackendSection>,
    #[serde(default)]
    virtual_server: BTreeMap<String, VirtualServerSection>,
}

fn config(toml_text: &str) -> Config {
    let file: File = toml::from_str(toml_text).unwrap();
    let sections = Sections {
        frontend: file.frontend,
        backend: file.backend,
        virtual_server: file.virtual_server,
        ..Sections::default()
    };
    fulcrum_proxy::config::build(&sections).unwrap_or_else(|e| panic!("{e:?}"))
}

/// An HTTP/1.1 origin answering `GET /missing` with 404, `GET /error` with 500 and
/// `GET /unimplemented` with 501, `GET /coded` in `gzip, chunked`, holding `GET /slow`
/// forever, sending only part of the body of `GET /stall`, and anything else 200 with its
/// `name` as the body.
async fn origin(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = find(&buf, b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("/");
                    let response = match path {
                        "/slow" => {
                            std::future::pending::<()>().await;
                            return;
                        }
                        "/stall" => {
                            let part = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc";
                            let _ = conn.write_all(part.as_bytes()).await;
                            std::future::pending::<()>().await;
                            return;
                        }
                        "/missing" => {
                            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_owned()
                        }
                        "/error" => {
                            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
                                .to_owned()
                        }
                        "/unimplemented" => {
                            "HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\n\r\n".to_owned()
                        }
                        "/coded" => "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                            .to_owned(),
                        "/chunked" => "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                            .to_owned(),
                        _ => format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                            name.len()
                        ),
                    };
                    if conn.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One response read off a client connection.
#[derive(Debug)]
struct Response {
    status: u16,
    body: String,
    /// The persistence cookie the proxy set, if any.
    cookie: Option<String>,
    /// Bytes received, head and body.
    bytes: u64,
}

/// Sends `GET path` on `conn` and reads the response; `None` if the proxy closed the connection.
async fn get(conn: &mut TcpStream, path: &str, cookie: Option<&str>) -> (u64, Option<Response>) {
    let cookie = cookie.map_or(String::new(), |c| format!("cookie: SRV={c}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n{cookie}\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let response = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let cookie = head
                    .lines()
                    .find_map(|l| l.strip_prefix("set-cookie: srv="))
                    .map(|v| v.split(';').next().unwrap_or("").to_owned());
                break Some(Response {
                    status,
                    body: String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string(),
                    cookie,
                    bytes: buf.len() as u64,
                });
            }
        }
        match tokio::time::timeout(PATIENCE, conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no response to {path} in time"),
        }
    };
    (request.len() as u64, response)
}

fn proxy_of<'a>(stats: &'a [ProxyStats], name: &str) -> &'a ProxyStats {
    stats.iter().find(|p| p.name == name).unwrap()
}

fn row<'a>(stats: &'a [ProxyStats], proxy: &str, sv: &str) -> &'a Row {
    proxy_of(stats, proxy)
        .rows
        .iter()
        .find(|r| r.svname == sv)
        .unwrap_or_else(|| panic!("no row {proxy}/{sv}"))
}

/// The value of the series of `family` whose labels include `labels`.
fn value(families: &[MetricFamily], family: &str, labels: &[(&str, &str)]) -> f64 {
    let f = families
        .iter()
        .find(|f| f.name() == family)
        .unwrap_or_else(|| panic!("no family {family}"));
    let m = f
        .get_metric()
        .iter()
        .find(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .unwrap_or_else(|| panic!("no series {family}{labels:?}"));
    match f.get_field_type() {
        prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
        prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
        prometheus::proto::MetricType::HISTOGRAM => m.get_histogram().get_sample_count() as f64,
        other => panic!("{family}: unexpected type {other:?}"),
    }
}

/// Polls `stats` until `done` holds.
async fn wait_for(proxy: &Proxy, what: &str, done: impl Fn(&[ProxyStats]) -> bool) {
    let started = Instant::now();
    loop {
        if done(&proxy.stats()) {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const N: u64 = 10;
const MISSING: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_and_metrics_count_every_request_exactly() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let proxy = Proxy::start(config(&format!(
        r#"
[frontend.web]
bind = ["127.0.0.1:0"]
default_backend = "app"
max_connections = 100

[backend.app]
balance = "roundrobin"
servers = [
  {{ name = "s1", address = "{s1}", max_connections = 50 }},
  {{ name = "s2", address = "{s2}", weight = 3 }},
  {{ name = "spare", address = "{s1}", backup = true }},
]

[virtual_server.vs]
listen = "127.0.0.1:0"
real_servers = [{{ address = "{s2}", upper_threshold = 9 }}]
"#
    )))
    .unwrap();
    let registry = prometheus::Registry::new();
    proxy.register_metrics(&registry).unwrap();
    assert!(
        proxy.register_metrics(&registry).is_err(),
        "a registry takes the proxy's families once"
    );
    let web = proxy.listeners()[0].bound;

    let mut client = TcpStream::connect(web).await.unwrap();
    let (mut sent, mut received) = (0, 0);
    let mut bodies = Vec::new();
    for i in 0..N + MISSING {
        let path = if i < N { "/" } else { "/missing" };
        let (req, res) = get(&mut client, path, None).await;
        let res = res.unwrap();
        assert_eq!(res.status, if i < N { 200 } else { 404 });
        sent += req;
        received += res.bytes;
        bodies.push(res.body);
    }
    // The L4 service relays one connection carrying two requests.
    let vs = proxy.l4_status()[0].address;
    let mut l4_client = TcpStream::connect(vs).await.unwrap();
    let mut l4_sent = 0;
    let mut l4_received = 0;
    for _ in 0..2 {
        let (req, res) = get(&mut l4_client, "/", None).await;
        l4_sent += req;
        l4_received += res.unwrap().bytes;
    }
    drop(l4_client);
    drop(client);
    wait_for(&proxy, "connections to close", |s| {
        row(s, "web", "FRONTEND").scur == 0 && row(s, "vs", "BACKEND").scur == 0
    })
    .await;

    let stats = proxy.stats();
    let kinds: Vec<_> = stats.iter().map(|p| (p.name.as_str(), p.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("web", ProxyKind::Frontend),
            ("app", ProxyKind::Backend),
            ("vs", ProxyKind::VirtualService)
        ]
    );

    let fe = row(&stats, "web", "FRONTEND");
    assert_eq!(fe.status, "OPEN");
    assert_eq!(fe.req_tot, Some(N + MISSING));
    assert_eq!((fe.hrsp_2xx, fe.hrsp_4xx, fe.hrsp_5xx), (N, MISSING, 0));
    assert_eq!((fe.stot, fe.smax, fe.slim), (1, 1, Some(100)));
    assert_eq!((fe.bin, fe.bout), (sent, received));
    assert_eq!(fe.ereq, Some(0));

    // Round robin with weights 1 and 3: a quarter to s1.
    let (r1, r2) = (row(&stats, "app", "s1"), row(&stats, "app", "s2"));
    let to_s1 = bodies.iter().filter(|b| *b == "s1").count() as u64;
    assert_eq!(r1.stot + r2.stot, N + MISSING);
    assert_eq!(r1.lbtot, Some(r1.stot));
    assert_eq!(r1.hrsp_2xx, to_s1);
    assert_eq!(r2.hrsp_2xx, N - to_s1);
    assert!(
        to_s1 > 0 && to_s1 < N / 2,
        "weights 1 and 3: {to_s1} of {N}"
    );
    assert_eq!(r1.status, "no check");
    assert_eq!(r1.check_enabled, Some(false));
    assert_eq!(r1.slim, Some(50));
    assert_eq!((r2.weight, r2.config_weight), (Some(3), Some(3)));
    assert!(r1.lastsess.is_some_and(|s| s < 5), "{:?}", r1.lastsess);
    let spare = row(&stats, "app", "spare");
    assert_eq!((spare.act, spare.bck, spare.stot), (Some(0), Some(1), 0));
    assert_eq!(spare.lastsess, None);

    let be = row(&stats, "app", "BACKEND");
    assert_eq!(be.status, "UP");
    assert_eq!((be.stot, be.lbtot), (N + MISSING, Some(N + MISSING)));
    assert_eq!((be.hrsp_2xx, be.hrsp_4xx), (N, MISSING));
    assert_eq!(
        be.bout, received,
        "every byte the client got came from a server"
    );
    assert_eq!((be.act, be.bck, be.weight), (Some(2), Some(1), Some(4)));
    assert_eq!((be.qcur, be.qmax), (Some(0), Some(0)));
    assert_eq!(
        (be.econ, be.eresp, be.wretr, be.wredis),
        (Some(0), Some(0), Some(0), Some(0))
    );
    assert_eq!(be.downtime, Some(0));

    let vs_name = format!("{s2}");
    let real = row(&stats, "vs", &vs_name);
    assert_eq!(proxy_of(&stats, "vs").mode, "tcp");
    assert_eq!(real.addr.as_deref(), Some(vs_name.as_str()));
    assert_eq!((real.stot, real.lbtot, real.slim), (1, Some(1), Some(9)));
    assert_eq!((real.bin, real.bout), (l4_sent, l4_received));
    assert_eq!(real.status, "no check");
    let vs_row = row(&stats, "vs", "BACKEND");
    assert_eq!(
        (vs_row.stot, vs_row.bin, vs_row.bout),
        (1, l4_sent, l4_received)
    );
    assert_eq!((vs_row.status.as_str(), vs_row.act), ("UP", Some(1)));

    // The metrics are the same numbers.
    let families = registry.gather();
    let web = [("proxy", "web")];
    let app = [("proxy", "app")];
    assert_eq!(
        value(&families, "fulcrum_frontend_http_requests_total", &web),
        (N + MISSING) as f64
    );
    assert_eq!(
        value(
            &families,
            "fulcrum_frontend_http_responses_total",
            &[("proxy", "web"), ("code", "2xx")]
        ),
        N as f64
    );
    assert_eq!(
        value(
            &families,
            "fulcrum_frontend_http_responses_total",
            &[("proxy", "web"), ("code", "4xx")]
        ),
        MISSING as f64
    );
    assert_eq!(
        value(&families, "fulcrum_frontend_bytes_out_total", &web),
        received as f64
    );
    assert_eq!(
        value(&families, "fulcrum_frontend_limit_sessions", &web),
        100.0
    );
    assert_eq!(
        value(&families, "fulcrum_backend_sessions_total", &app),
        (N + MISSING) as f64
    );
    assert_eq!(value(&families, "fulcrum_backend_status", &app), 1.0);
    assert_eq!(value(&families, "fulcrum_backend_weight", &app), 4.0);
    assert_eq!(
        value(
            &families,
            "fulcrum_backend_http_response_time_seconds",
            &app
        ),
        (N + MISSING) as f64,
        "one response time per response"
    );
    let s1_labels = [("proxy", "app"), ("server", "s1")];
    assert_eq!(
        value(&families, "fulcrum_server_sessions_total", &s1_labels),
        r1.stot as f64
    );
    assert_eq!(
        value(
            &families,
            "fulcrum_server_http_response_time_seconds",
            &s1_labels
        ),
        r1.stot as f64
    );
    assert_eq!(
        value(
            &families,
            "fulcrum_server_status",
            &[("server", "s1"), ("state", "NOCHECK")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "fulcrum_server_status",
            &[("server", "s1"), ("state", "UP")]
        ),
        0.0
    );
    let real_labels = [("virtual_service", "vs"), ("server", vs_name.as_str())];
    assert_eq!(
        value(
            &families,
            "fulcrum_real_server_connections_total",
            &real_labels
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "fulcrum_real_server_bytes_in_total",
            &real_labels
        ),
        l4_sent as f64
    );
    assert_eq!(
        value(
            &families,
            "fulcrum_real_server_inactive_connections",
            &real_labels
        ),
        0.0
    );
    assert_eq!(
        value(
            &families,
            "fulcrum_virtual_service_connections_total",
            &[("virtual_service", "vs")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "fulcrum_virtual_service_no_server_total",
            &[("virtual_service", "vs")]
        ),
        0.0
    );

    promtool_check(&families);
}

/// Runs `promtool check metrics` on the text exposition, when promtool is installed (Debian's
/// `prometheus` package); without it the check is skipped, saying so.
fn promtool_check(families: &[MetricFamily]) {
    use prometheus::Encoder;
    let mut text = Vec::new();
    prometheus::TextEncoder::new()
        .encode(families, &mut text)
        .unwrap();
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        // CI installs promtool (Debian's `prometheus`); there its absence is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI"
        );
        eprintln!("SKIPPED: promtool is not installed: the exposition format lint is skipped");
        return;
    };
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&text).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&text),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_actions_change_servers_and_say_what_changed() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let proxy = Proxy::start(config(&format!(
        r#"
[frontend.web]
bind = ["127.0.0.1:0"]
default_backend = "app"

[backend.app]
cookie = {{ name = "SRV", mode = "insert" }}
servers = [{{ name = "s1", address = "{s1}" }}, {{ name = "s2", address = "{s2}" }}]

[backend.checked]
health_check = {{ type = "tcp", interval = "50ms" }}
servers = [{{ name = "c1", address = "{s1}" }}]

[virtual_server.vs]
listen = "127.0.0.1:0"
real_servers = [{{ address = "{s2}" }}]
"#
    )))
    .unwrap();
    let mut events = proxy.subscribe();
    let web = proxy.listeners()[0].bound;
    let at = |backend: &str, server: &str| ServerRef {
        backend: backend.to_owned(),
        server: server.to_owned(),
    };

    // A client stuck to s2 by its cookie.
    let mut sticky = TcpStream::connect(web).await.unwrap();
    let mut cookie = None;
    while cookie.as_deref() != Some("s2") {
        let (_, res) = get(&mut sticky, "/", None).await;
        cookie = res.unwrap().cookie;
    }

    let drained = proxy
        .server_action(&at("app", "s2"), ServerAction::SetState(AdminState::Drain))
        .unwrap();
    assert_eq!(drained, "app/s2: UP -> DRAIN");
    let event = events.recv().await.unwrap();
    assert_eq!(
        event,
        Event::ServerStatus {
            backend: "app".to_owned(),
            server: "s2".to_owned(),
            from: ServerStatus::Up,
            to: ServerStatus::Drain,
            reason: "admin action: set state drain".to_owned(),
        }
    );
    assert_eq!(row(&proxy.stats(), "app", "s2").status, "DRAIN");
    for _ in 0..4 {
        let (_, res) = get(&mut sticky, "/", Some("s2")).await;
        assert_eq!(
            res.unwrap().body,
            "s2",
            "a sticky client of a DRAIN server stays"
        );
        let mut fresh = TcpStream::connect(web).await.unwrap();
        let (_, res) = get(&mut fresh, "/", None).await;
        assert_eq!(
            res.unwrap().body,
            "s1",
            "a new client does not go to a DRAIN server"
        );
    }
    assert_eq!(
        proxy
            .server_action(&at("app", "s2"), ServerAction::SetState(AdminState::Ready))
            .unwrap(),
        "app/s2: DRAIN -> UP"
    );

    assert_eq!(
        proxy
            .server_action(&at("app", "s1"), ServerAction::SetWeight(5))
            .unwrap(),
        "app/s1: weight 1 -> 5"
    );
    let stats = proxy.stats();
    assert_eq!(
        (
            row(&stats, "app", "s1").weight,
            row(&stats, "app", "s1").config_weight
        ),
        (Some(5), Some(1))
    );
    let too_heavy = proxy
        .server_action(&at("app", "s1"), ServerAction::SetWeight(257))
        .unwrap_err();
    assert_eq!(
        too_heavy.to_string(),
        "app/s1: weight 257 is out of range, it must be 0 to 256"
    );
    let real = proxy.l4_status()[0].real_servers[0].address.to_string();
    assert_eq!(
        proxy
            .server_action(&at("vs", &real), ServerAction::SetWeight(1000))
            .unwrap(),
        format!("vs/{real}: weight 1 -> 1000"),
        "IPVS weights go to 65535"
    );
    assert!(matches!(
        proxy.server_action(&at("vs", &real), ServerAction::SetWeight(65_536)),
        Err(ActionError::WeightOutOfRange { max: 65_535, .. })
    ));
    assert_eq!(
        proxy
            .server_action(&at("app", "nope"), ServerAction::SetWeight(1))
            .unwrap_err()
            .to_string(),
        "`app` has no server `nope`; its servers are: s1, s2"
    );
    assert_eq!(
        proxy
            .server_action(&at("nope", "s1"), ServerAction::SetWeight(1))
            .unwrap_err(),
        ActionError::UnknownBackend("nope".to_owned())
    );
    assert_eq!(
        proxy
            .server_action(&at("app", "s1"), ServerAction::DisableHealth)
            .unwrap_err(),
        ActionError::NoHealthCheck("app/s1".to_owned())
    );

    // Health checks off and on again.
    wait_for(&proxy, "a first check", |s| {
        row(s, "checked", "c1").check_status.as_deref() == Some("L4OK")
    })
    .await;
    let c1 = row(&proxy.stats(), "checked", "c1").clone();
    assert_eq!(c1.check_enabled, Some(true));
    assert!(c1.status.starts_with("UP"), "{}", c1.status);
    assert_eq!(
        proxy
            .server_action(&at("checked", "c1"), ServerAction::DisableHealth)
            .unwrap(),
        "checked/c1: health checks disabled, UP -> UP"
    );
    let c1 = row(&proxy.stats(), "checked", "c1").clone();
    assert_eq!(
        (c1.status.as_str(), c1.check_enabled),
        ("no check", Some(false))
    );
    assert_eq!(c1.check_status, None);
    proxy
        .server_action(&at("checked", "c1"), ServerAction::EnableHealth)
        .unwrap();
    wait_for(&proxy, "checks to bring c1 fully UP", |s| {
        row(s, "checked", "c1").status == "UP"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_sessions_ends_what_a_server_serves_now_and_nothing_later() {
    let s1 = origin("s1").await;
    let proxy = Proxy::start(config(&format!(
        r#"
[frontend.web]
bind = ["127.0.0.1:0"]
default_backend = "app"

[backend.app]
servers = [{{ name = "s1", address = "{s1}" }}]

[virtual_server.vs]
listen = "127.0.0.1:0"
real_servers = [{{ address = "{s1}" }}]
"#
    )))
    .unwrap();
    let web = proxy.listeners()[0].bound;
    let vs = proxy.l4_status()[0].address;
    let real = format!("{s1}");

    // An HTTP request waiting for its response, and an idle L4 connection.
    let slow = slow_request_held_by(&proxy, web, "s1").await;
    let mut l4 = TcpStream::connect(vs).await.unwrap();
    let (_, res) = get(&mut l4, "/", None).await;
    assert_eq!(res.unwrap().status, 200);

    let message = proxy
        .server_action(
            &ServerRef {
                backend: "app".to_owned(),
                server: "s1".to_owned(),
            },
            ServerAction::ShutdownSessions,
        )
        .unwrap();
    assert_eq!(message, "app/s1: 1 sessions shut down");
    assert_closed(slow).await;
    assert_eq!(row(&proxy.stats(), "app", "s1").scur, 0);

    proxy
        .server_action(
            &ServerRef {
                backend: "vs".to_owned(),
                server: real.clone(),
            },
            ServerAction::ShutdownSessions,
        )
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(PATIENCE, l4.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the relayed connection is reset: {read:?}"
    );

    // Later sessions are served as usual.
    let mut conn = TcpStream::connect(web).await.unwrap();
    assert_eq!(get(&mut conn, "/", None).await.1.unwrap().body, "s1");
    let mut l4 = TcpStream::connect(vs).await.unwrap();
    assert_eq!(get(&mut l4, "/", None).await.1.unwrap().body, "s1");
}

/// An HTTP/2 (h2c) client connection to `addr`.
async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>> {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn h2_get(path: &str) -> http::Request<Empty<bytes::Bytes>> {
    http::Request::get(format!("http://test{path}"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h2_requests_are_counted_and_cut_as_h1_ones() {
    let s1 = origin("s1").await;
    let proxy = Proxy::start(config(&format!(
        r#"
[frontend.web]
bind = ["127.0.0.1:0"]
default_backend = "app"

[backend.app]
servers = [{{ name = "s1", address = "{s1}" }}]
"#
    )))
    .unwrap();
    let web = proxy.listeners()[0].bound;
    let mut client = h2(web).await;
    for _ in 0..N {
        let res = client.send_request(h2_get("/")).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"s1");
    }
    // A body of unknown length, relayed through a pipe rather than read by hyper.
    let res = client.send_request(h2_get("/chunked")).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello");
    let stats = proxy.stats();
    assert_eq!(row(&stats, "web", "FRONTEND").req_tot, Some(N + 1));
    let s1_row = row(&stats, "app", "s1");
    assert_eq!((s1_row.stot, s1_row.hrsp_2xx), (N + 1, N + 1));
    // Bytes: the bodies out as s1 sent them ("s1" each, then "hello" in 15 bytes of chunked
    // coding, as the access log counts it), for the frontend, the backend and the server; in,
    // the requests sent to s1 (heads only: GETs), and no body for the frontend, whose heads
    // came HPACK-coded.
    let (fe, be) = (
        row(&stats, "web", "FRONTEND"),
        row(&stats, "app", "BACKEND"),
    );
    let out = 2 * N + "5\r\nhello\r\n0\r\n\r\n".len() as u64;
    assert_eq!((fe.bout, be.bout, s1_row.bout), (out, out, out));
    assert_eq!(fe.bin, 0);
    assert!(
        s1_row.bin > N * "GET / HTTP/1.1\r\n\r\n".len() as u64,
        "{s1_row:?}"
    );
    assert_eq!(be.bin, s1_row.bin);
    let registry = prometheus::Registry::new();
    proxy.register_metrics(&registry).unwrap();
    assert_eq!(
        value(
            &registry.gather(),
            "fulcrum_server_http_response_time_seconds",
            &[("server", "s1")]
        ),
        (N + 1) as f64
    );

    // Shutting s1's sessions down cuts a request waiting for its response (503) and one
    // whose body is on its way (the stream is reset), on HTTP/2 and HTTP/1 alike.
    let waiting = tokio::spawn({
        let mut client = client.clone();
        async move { client.send_request(h2_get("/slow")).await.unwrap().status() }
    });
    let stalled = client.send_request(h2_get("/stall")).await.unwrap();
    let mut h1 = TcpStream::connect(web).await.unwrap();
    h1.write_all(b"GET /stall HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    // The cut must come after the part of the body s1 sent has reached the client, or what
    // the client sees depends on which of the two the proxy handled first.
    let mut received = Vec::new();
    while !received.ends_with(b"abc") {
        let mut chunk = [0u8; 512];
        let n = tokio::time::timeout(PATIENCE, h1.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(
            n, 0,
            "the connection closed before the body began: {received:?}"
        );
        received.extend_from_slice(&chunk[..n]);
    }
    wait_for(&proxy, "three requests on s1", |s| {
        row(s, "app", "s1").scur == 3
    })
    .await;
    let s1_ref = ServerRef {
        backend: "app".to_owned(),
        server: "s1".to_owned(),
    };
    assert_eq!(
        proxy
            .server_action(&s1_ref, ServerAction::ShutdownSessions)
            .unwrap(),
        "app/s1: 3 sessions shut down"
    );
    let status = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 503);
    let body = tokio::time::timeout(PATIENCE, stalled.into_body().collect())
        .await
        .unwrap();
    assert!(body.is_err(), "a cut body is an error, not a short body");
    let mut after_cut = Vec::new();
    let end = tokio::time::timeout(PATIENCE, h1.read_to_end(&mut after_cut))
        .await
        .unwrap();
    assert!(
        matches!(end, Ok(0) | Err(_)),
        "the head and what came of the body, then the close: {after_cut:?}"
    );
    wait_for(&proxy, "s1's slots to be free", |s| {
        row(s, "app", "s1").scur == 0
    })
    .await;
}

/// A `GET /slow` on a new connection to `web`, left waiting for its response; returns once
/// `server` of `app` holds it. The task yields the response, `None` once the proxy closed.
async fn slow_request_held_by(
    proxy: &Proxy,
    web: SocketAddr,
    server: &'static str,
) -> tokio::task::JoinHandle<Option<Response>> {
    let slow = tokio::spawn(async move {
        let mut conn = TcpStream::connect(web).await.unwrap();
        get(&mut conn, "/slow", None).await.1
    });
    wait_for(proxy, "the slow request to reach its server", |s| {
        row(s, "app", server).scur == 1
    })
    .await;
    slow
}

/// Asserts that the proxy closed `slow`'s connection without a response.
async fn assert_closed(slow: tokio::task::JoinHandle<Option<Response>>) {
    let cut = tokio::time::timeout(PATIENCE, slow).await.unwrap().unwrap();
    assert!(cut.is_none(), "the client connection is closed: {cut:?}");
}

/// A port on 127.0.0.1 that refuses connections: bound, not listening. The socket holds it,
/// so no other test takes it meanwhile; `listen` on it makes the port accept.
fn refusing_port() -> (TcpSocket, u16) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// A proxy with frontend `web` before backend `app`, whose one server `s1` at `s1` is checked
/// with `health_check` (an inline table) and has the `extra` keys on its line.
fn checked_app(s1: SocketAddr, health_check: &str, extra: &str) -> Proxy {
    Proxy::start(config(&format!(
        r#"
[frontend.web]
bind = ["127.0.0.1:0"]
default_backend = "app"

[backend.app]
health_check = {health_check}
servers = [{{ name = "s1", address = "{s1}"{extra} }}]
"#
    )))
    .unwrap()
}

fn server(backend: &str, server: &str) -> ServerRef {
    ServerRef {
        backend: backend.into(),
        server: server.into(),
    }
}

// Input: a server in MAINT from its config, checked every 60 s on a port that refuses, fall 3;
// the operator sets it READY. Output: UP at once, then DOWN after one failed check made at
// once: HAProxy's "start OK but check immediately". (It kept the verdict from before MAINT
// and waited for its next interval, up to a minute, with any failure before it forgiven.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_maint_is_up_at_once_and_checked_at_once() {
    let s1 = origin("s1").await;
    let (_held, refusing) = refusing_port();
    let proxy = checked_app(
        s1,
        &format!(r#"{{ type = "tcp", port = {refusing}, interval = "60s", fall = 3 }}"#),
        ", disabled = true",
    );
    assert_eq!(row(&proxy.stats(), "app", "s1").status, "MAINT");
    assert_eq!(
        proxy
            .server_action(
                &server("app", "s1"),
                ServerAction::SetState(AdminState::Ready)
            )
            .unwrap(),
        "app/s1: MAINT -> UP"
    );
    wait_for(&proxy, "one failed check to take s1 DOWN", |s| {
        row(s, "app", "s1").status == "DOWN"
    })
    .await;
    assert_eq!(
        row(&proxy.stats(), "app", "s1").check_status.as_deref(),
        Some("L4CON")
    );
}

// Input: a server checked (tcp) every 60 s, with `down_interval` and `fast_interval` of 20 ms,
// rise 3 and fall 2, on a port that refuses; once it is DOWN, the port starts accepting.
// Output: UP again within seconds: checked every 20 ms while DOWN and while it rises, as
// HAProxy's `downinter` and `fastinter`. (Checked every `interval` whatever the state, it
// waited a minute for each of its three checks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_server_is_checked_every_down_interval_and_rises_every_fast_interval() {
    let s1 = origin("s1").await;
    let (socket, port) = refusing_port();
    let proxy = checked_app(
        s1,
        &format!(
            r#"{{ type = "tcp", port = {port}, interval = "60s", fast_interval = "20ms", down_interval = "20ms", rise = 3, fall = 2 }}"#
        ),
        "",
    );
    wait_for(&proxy, "s1 DOWN at its first failed check", |s| {
        row(s, "app", "s1").status == "DOWN"
    })
    .await;
    let _accepting = socket.listen(16).unwrap();
    wait_for(&proxy, "s1 UP after three checks", |s| {
        row(s, "app", "s1").status == "UP"
    })
    .await;
}

// Input: `roundrobin` over s1 and s2, weight 100 each, `slow_start = "60s"`; s2 put into MAINT
// and back to READY, then 100 requests. Output: s2, back UP for well under a minute, takes a
// small share (its weight ramps from 1), and the stats show it throttled with a reduced
// weight; s1 takes the rest. (s2 took its half at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_back_from_maint_takes_its_weight_over_slow_start() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let proxy = Proxy::start(config(&format!(
        r#"
[frontend.web]
bind = ["127.0.0.1:0"]
default_backend = "app"

[backend.app]
balance = "roundrobin"
slow_start = "60s"
servers = [
  {{ name = "s1", address = "{s1}", weight = 100 }},
  {{ name = "s2", address = "{s2}", weight = 100 }},
]
"#
    )))
    .unwrap();
    let web = proxy.listeners()[0].bound;
    for state in [AdminState::Maint, AdminState::Ready] {
        proxy
            .server_action(&server("app", "s2"), ServerAction::SetState(state))
            .unwrap();
    }
    let mut conn = TcpStream::connect(web).await.unwrap();
    let mut to_s2 = 0;
    for _ in 0..100 {
        let (_, response) = get(&mut conn, "/", None).await;
        to_s2 += usize::from(response.unwrap().body == "s2");
    }
    assert!(to_s2 < 20, "s2 took {to_s2} of 100 at once");
    let s2_row = row(&proxy.stats(), "app", "s2").clone();
    assert!(
        s2_row.throttle.is_some_and(|t| t < 100) && s2_row.weight < Some(100),
        "{s2_row:?}"
    );
    assert_eq!(
        row(&proxy.stats(), "app", "s1").throttle,
        None,
        "s1 never left"
    );
}

// Input: a server checked on a port of the test's every 50 ms, fall 1, `on_marked_down =
// "shutdown-sessions"`, with a request to it waiting for its response; the port then closes.
// Output: the server goes DOWN and the waiting client's connection is closed at once, as
// HAProxy's `on-marked-down shutdown-sessions`. (It waited on, for `timeout.server`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_marked_down_shuts_its_sessions_when_asked() {
    let s1 = origin("s1").await;
    let check_port = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = check_port.local_addr().unwrap().port();
    let proxy = checked_app(
        s1,
        &format!(
            r#"{{ type = "tcp", port = {port}, interval = "50ms", fall = 1, on_marked_down = "shutdown-sessions" }}"#
        ),
        "",
    );
    let slow = slow_request_held_by(&proxy, proxy.listeners()[0].bound, "s1").await;
    drop(check_port);
    assert_closed(slow).await;
    let s1_row = row(&proxy.stats(), "app", "s1").clone();
    assert_eq!((s1_row.status.as_str(), s1_row.scur), ("DOWN", 0));
}

// Input: an active server s1 checked on a port that refuses (rise 1, fall 1), with
// `on_marked_up = "shutdown-backup-sessions"`, and an unchecked backup b1; once s1 is DOWN a
// request waits on b1 for its response; then the port accepts. Output: s1 UP, and the client
// on b1 has its connection closed, to come back to s1 (HAProxy's `on-marked-up
// shutdown-backup-sessions`). (It stayed on the backup.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_server_marked_up_shuts_the_backups_sessions_when_asked() {
    let (s1, b1) = (origin("s1").await, origin("b1").await);
    let (socket, port) = refusing_port();
    let proxy = Proxy::start(config(&format!(
        r#"
[frontend.web]
bind = ["127.0.0.1:0"]
default_backend = "app"

[backend.app]
health_check = {{ type = "tcp", port = {port}, interval = "50ms", rise = 1, fall = 1, on_marked_up = "shutdown-backup-sessions" }}
servers = [
  {{ name = "s1", address = "{s1}" }},
  {{ name = "b1", address = "{b1}", backup = true, check = false }},
]
"#
    )))
    .unwrap();
    wait_for(&proxy, "s1 DOWN", |s| row(s, "app", "s1").status == "DOWN").await;
    let slow = slow_request_held_by(&proxy, proxy.listeners()[0].bound, "b1").await;
    let _accepting = socket.listen(16).unwrap();
    assert_closed(slow).await;
    assert_eq!(row(&proxy.stats(), "app", "s1").status, "UP");
}

// Input: the same for a virtual service's real server (quiescent, so it keeps its connections
// without the key), with a relayed connection open. Output: the connection is reset once the
// real server is DOWN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_server_marked_down_resets_its_connections_when_asked() {
    let s1 = origin("s1").await;
    let check_port = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = check_port.local_addr().unwrap().port();
    let proxy = Proxy::start(config(&format!(
        r#"
[virtual_server.vs]
listen = "127.0.0.1:0"
health_check = {{ type = "tcp", port = {port}, interval = "50ms", fall = 1, on_marked_down = "shutdown-sessions" }}
real_servers = [{{ address = "{s1}" }}]
"#
    )))
    .unwrap();
    let vs = proxy.l4_status()[0].address;
    let mut l4 = TcpStream::connect(vs).await.unwrap();
    assert_eq!(get(&mut l4, "/", None).await.1.unwrap().body, "s1");
    drop(check_port);
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(PATIENCE, l4.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the relayed connection is reset: {read:?}"
    );
}

// Input: a server whose HTTP check never gets an answer (timeout 1 s, every 50 ms), put into
// MAINT while a check is under way, and held there past that check's timeout. Output: no
// status change, no DOWN and no failed check counted while in MAINT. (The check under way was
// counted, logged `server is DOWN`, and sent a MAINT -> MAINT event to the alerts.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_under_way_when_maint_begins_does_not_count() {
    let s1 = origin("s1").await;
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let proxy = checked_app(
        s1,
        &format!(
            r#"{{ type = "http", port = {port}, interval = "50ms", timeout = "1s", fall = 1 }}"#
        ),
        "",
    );
    // The first check is under way once the silent server has its connection.
    let (_conn, _) = tokio::time::timeout(PATIENCE, silent.accept())
        .await
        .unwrap()
        .unwrap();
    let mut events = proxy.subscribe();
    proxy
        .server_action(
            &server("app", "s1"),
            ServerAction::SetState(AdminState::Maint),
        )
        .unwrap();
    let failed_before = row(&proxy.stats(), "app", "s1").chkfail;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s1_row = row(&proxy.stats(), "app", "s1").clone();
    assert_eq!(s1_row.status, "MAINT");
    assert_eq!(s1_row.chkfail, failed_before, "a failure counted in MAINT");
    let mut statuses = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::ServerStatus { from, to, .. } = event {
            statuses.push((from, to));
        }
    }
    assert_eq!(statuses, [(ServerStatus::Up, ServerStatus::Maint)]);
}

// Input: a server whose check port refuses, checked every 50 ms, left DOWN for half a second.
// Output: `chkfail` is 1, the failure that took it DOWN (UP at `rise` at start-up, it falls at
// its first failure), as HAProxy counts only the checks failed while a server is not fully
// DOWN. (Every failure counted: about ten more here, 1,800 an hour at a 2 s interval.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checks_stop_counting_once_the_server_is_down() {
    let s1 = origin("s1").await;
    let (_held, refusing) = refusing_port();
    let proxy = checked_app(
        s1,
        &format!(r#"{{ type = "tcp", port = {refusing}, interval = "50ms" }}"#),
        "",
    );
    wait_for(&proxy, "s1 to go DOWN", |s| {
        row(s, "app", "s1").status == "DOWN"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // At start-up a server is UP at `rise`, so its first failure takes it DOWN: 1.
    assert_eq!(row(&proxy.stats(), "app", "s1").chkfail, Some(1));
}

// Input: a backend server checked every 50 ms (fall 1, rise 1) by an external command that
// passes while a flag file exists and is told the server's name; the file is removed, then
// made again. Output: `PROCOK` while it exists, DOWN with `PROCERR` and the command's words
// once it is gone, UP again once it is back: the program's exit status is the verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_check_decides_a_backend_servers_health() {
    let s1 = origin("s1").await;
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("up");
    std::fs::write(&flag, "").unwrap();
    let proxy = checked_app(
        s1,
        &format!(
            r#"{{ type = "external", command = '''sh -c 'test -e "$0" || {{ echo "$HAPROXY_SERVER_NAME: no $0"; exit 1; }}' {}''', interval = "50ms", rise = 1, fall = 1 }}"#,
            flag.display()
        ),
        "",
    );
    wait_for(&proxy, "a passing check", |s| {
        row(s, "app", "s1").check_status.as_deref() == Some("PROCOK")
    })
    .await;
    let mut events = proxy.subscribe();
    std::fs::remove_file(&flag).unwrap();
    wait_for(&proxy, "s1 DOWN", |s| row(s, "app", "s1").status == "DOWN").await;
    let reason = loop {
        if let Event::ServerStatus { reason, .. } = events.recv().await.unwrap() {
            break reason;
        }
    };
    assert_eq!(reason, format!("PROCERR exit 1: s1: no {}", flag.display()));
    std::fs::write(&flag, "").unwrap();
    wait_for(&proxy, "s1 UP again", |s| {
        row(s, "app", "s1").status == "UP"
    })
    .await;
}

// Input: s1 with a TCP check every 10 hours, `fast_interval = "500ms"`, and `observe =
// "layer7"`, `error_limit = 3`, `on_error = "mark-down"`; requests for 500, 500, 501, 500, 500,
// then a third 500 in a row. Output: 501 (a client's doing) clears the count, so only the last
// 500 reaches the limit: s1 goes DOWN with HAProxy's `HANA` words, `hanafail` (and its metric)
// and `chkfail` are 1; then its health check, brought forward to `fast_interval`, finds it
// answering and brings it back UP (it would next have run hours later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_in_live_traffic_mark_a_server_down_and_bring_its_check_forward() {
    let s1 = origin("s1").await;
    let proxy = checked_app(
        s1,
        // Not shorter: the check brought forward overwrites `HANA` once it runs, and the test
        // must read the row before that.
        r#"{ type = "tcp", interval = "10h", fast_interval = "500ms", rise = 2, observe = "layer7", error_limit = 3, on_error = "mark-down" }"#,
        "",
    );
    let web = proxy.listeners()[0].bound;
    // The first check comes soon (a server not yet checked is on its way); the next one only
    // after 10 hours, unless brought forward.
    wait_for(&proxy, "the first check", |s| {
        row(s, "app", "s1").check_status.as_deref() == Some("L4OK")
    })
    .await;
    let mut events = proxy.subscribe();
    let mut conn = TcpStream::connect(web).await.unwrap();
    for path in ["/error", "/error", "/unimplemented", "/error", "/error"] {
        get(&mut conn, path, None).await;
    }
    assert_eq!(row(&proxy.stats(), "app", "s1").status, "UP");
    get(&mut conn, "/error", None).await;
    let reason = loop {
        if let Event::ServerStatus { reason, to, .. } = events.recv().await.unwrap()
            && to == ServerStatus::Down
        {
            break reason;
        }
    };
    assert_eq!(
        reason,
        "HANA Detected 3 consecutive errors, last one was: Wrong http response"
    );
    let s1_row = row(&proxy.stats(), "app", "s1").clone();
    assert_eq!(
        (
            s1_row.hanafail,
            s1_row.chkfail,
            s1_row.check_status.as_deref()
        ),
        (Some(1), Some(1), Some("HANA"))
    );
    let registry = prometheus::Registry::new();
    proxy.register_metrics(&registry).unwrap();
    let s1 = [("proxy", "app"), ("server", "s1")];
    assert_eq!(
        value(
            &registry.gather(),
            "fulcrum_server_observe_failures_total",
            &s1
        ),
        1.0
    );
    wait_for(&proxy, "s1 UP again by its check", |s| {
        row(s, "app", "s1").status == "UP"
    })
    .await;
}

// Input: `observe = "layer7"` with `error_limit = 1` and `on_error = "mark-down"`; an HTTP/1.0
// client asks for a `gzip, chunked` response (Fulcrum's 502: HTTP/1.0 cannot carry it), then
// a client gets a body the server stops sending (`timeout.server`), then a 500. Output: s1 is
// still UP with `hanafail` 0 after the first two, which HAProxy's `health_adjust` does not
// hold against a server either, and the 500 takes it DOWN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_does_not_hold_a_clients_502_or_a_stalled_body_against_the_server() {
    let s1 = origin("s1").await;
    let proxy = Proxy::start(app_config(
        r#"health_check = { type = "tcp", interval = "10h", observe = "layer7", error_limit = 1, on_error = "mark-down" }
timeout = { server = "200ms" }"#,
        &format!(r#"{{ name = "s1", address = "{s1}" }}"#),
    ))
    .unwrap();
    let web = proxy.listeners()[0].bound;
    let mut old = TcpStream::connect(web).await.unwrap();
    old.write_all(b"GET /coded HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, old.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 502"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut conn = TcpStream::connect(web).await.unwrap();
    let (_, stalled) = get(&mut conn, "/stall", None).await;
    assert!(stalled.is_none(), "the stalled body ends the connection");
    let s1_row = row(&proxy.stats(), "app", "s1").clone();
    assert_eq!((s1_row.status.as_str(), s1_row.hanafail), ("UP", Some(0)));
    let mut conn = TcpStream::connect(web).await.unwrap();
    get(&mut conn, "/error", None).await;
    wait_for(&proxy, "s1 DOWN", |s| row(s, "app", "s1").status == "DOWN").await;
}

/// Frontend `web` before backend `app`, which has the `keys` and `servers`.
fn app_config(keys: &str, servers: &str) -> Config {
    config(&format!(
        "[frontend.web]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"app\"\n\n[backend.app]\n{keys}\nservers = [{servers}]\n"
    ))
}

/// A server agent on 127.0.0.1: each connection gets `send` checked, then the current reply
/// line. The reply can be changed while it runs, and the replies sent are counted.
struct Agent {
    port: u16,
    reply: std::sync::Arc<std::sync::Mutex<String>>,
    answered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Agent {
    async fn start(expect: &'static str) -> Agent {
        Agent::start_on("127.0.0.1", expect).await
    }

    /// One listening on `ip`, a loopback address.
    async fn start_on(ip: &str, expect: &'static str) -> Agent {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reply = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let line = std::sync::Arc::clone(&reply);
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&answered);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut got = vec![0u8; expect.len()];
                if conn.read_exact(&mut got).await.is_err() || got != expect.as_bytes() {
                    continue;
                }
                let answer = format!("{}\n", line.lock().unwrap());
                // Counted before it can be read, so a count read once the proxy acted on a
                // reply includes it.
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        Agent {
            port,
            reply,
            answered,
        }
    }

    fn answered(&self) -> usize {
        self.answered.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn say(&self, line: &str) {
        *self.reply.lock().unwrap() = line.to_owned();
    }
}

// Input: s1 (weight 100, max_connections 0) with HAProxy's agent check every 20 ms and no
// health check, and s2 (weight 1) without checks; the agent says `50% maxconn:1`, then
// `drain`, then `ready`, then `down#disk full`, then `up`. Output: the weight halves and the
// limit is 1, so while a slow request holds s1, requests go to s2; DRAIN, then UP; DOWN with
// the agent's words, shown as `DOWN (agent)`, and requests go to s2; UP again once the agent
// says so. The agent's reply is in the stats (`agent_status`, `last_agt`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sets_weight_limit_admin_state_and_health() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let agent = Agent::start("hello\n").await;
    agent.say("50% maxconn:1");
    let proxy = Proxy::start(app_config(
        &format!(
            r#"agent_check = {{ port = {}, interval = "20ms", send = "hello\n" }}"#,
            agent.port
        ),
        &format!(
            r#"{{ name = "s1", address = "{s1}", weight = 100 }}, {{ name = "s2", address = "{s2}", check = false }}"#
        ),
    ))
    .unwrap();
    let web = proxy.listeners()[0].bound;
    wait_for(&proxy, "weight 50 and limit 1", |s| {
        let r = row(s, "app", "s1");
        r.weight == Some(50) && r.slim == Some(1) && r.agent_status.is_some()
    })
    .await;
    let s1_row = row(&proxy.stats(), "app", "s1").clone();
    assert_eq!(
        (s1_row.agent_status.as_deref(), s1_row.last_agt.as_deref()),
        (Some("L7OK"), Some("50% maxconn:1"))
    );
    // Weight 50 against 1: s1 takes the first request, and the next ones too unless full.
    let slow = slow_request_held_by(&proxy, web, "s1").await;
    let mut conn = TcpStream::connect(web).await.unwrap();
    for _ in 0..4 {
        let (_, response) = get(&mut conn, "/", None).await;
        assert_eq!(response.unwrap().body, "s2", "s1 is at the agent's limit");
    }
    slow.abort();
    agent.say("drain");
    wait_for(&proxy, "s1 DRAIN", |s| {
        row(s, "app", "s1").status == "DRAIN"
    })
    .await;
    agent.say("ready");
    // UP, shown as HAProxy shows a server without a health check of its own.
    let up = |s: &[ProxyStats]| row(s, "app", "s1").status == "no check";
    wait_for(&proxy, "s1 UP", up).await;

    let mut events = proxy.subscribe();
    agent.say("down#disk full");
    wait_for(&proxy, "s1 DOWN", |s| {
        row(s, "app", "s1").status == "DOWN (agent)"
    })
    .await;
    let reason = loop {
        if let Event::ServerStatus { reason, to, .. } = events.recv().await.unwrap()
            && to == ServerStatus::Down
        {
            break reason;
        }
    };
    assert_eq!(reason, "agent says down: disk full");
    assert_eq!(
        row(&proxy.stats(), "app", "s1").agent_status.as_deref(),
        Some("L7STS")
    );
    let mut conn = TcpStream::connect(web).await.unwrap();
    for _ in 0..4 {
        let (_, response) = get(&mut conn, "/", None).await;
        assert_eq!(response.unwrap().body, "s2", "s1 is DOWN");
    }
    agent.say("up");
    wait_for(&proxy, "s1 UP again", up).await;
}

// Input: s1 on 127.0.0.1 whose agent listens on 127.0.0.3 only, named by the server's
// `agent_addr`, and says `drain`. Output: s1 goes DRAIN: the agent was asked at `agent_addr`,
// where on the server's own address nothing answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_asked_at_the_servers_agent_addr() {
    let s1 = origin("s1").await;
    let agent = Agent::start_on("127.0.0.3", "").await;
    agent.say("drain");
    let proxy = Proxy::start(app_config(
        &format!(
            r#"agent_check = {{ port = {}, interval = "20ms" }}"#,
            agent.port
        ),
        &format!(r#"{{ name = "s1", address = "{s1}", agent_addr = "127.0.0.3" }}"#),
    ))
    .unwrap();
    wait_for(&proxy, "s1 DRAIN", |s| {
        row(s, "app", "s1").status == "DRAIN"
    })
    .await;
}

// Input: an agent saying `stopped` every 500 ms, then a reload without `agent_check`.
// Output: s1 DOWN after the first or second reply, not after `fall` (3) of them: as in
// HAProxy, the agent's word acts at once. After the reload, s1 is UP again and its agent
// columns are empty: only the agent held it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_without_the_agent_check_lets_go_of_what_the_agent_held() {
    let s1 = origin("s1").await;
    let agent = Agent::start("").await;
    agent.say("stopped maxconn:3");
    let servers = format!(r#"{{ name = "s1", address = "{s1}" }}"#);
    // Long enough for the test to see DOWN before a third reply on a loaded machine.
    let agent_check = format!(
        r#"agent_check = {{ port = {}, interval = "500ms" }}"#,
        agent.port
    );
    let proxy = Proxy::start(app_config(&agent_check, &servers)).unwrap();
    wait_for(&proxy, "s1 DOWN", |s| {
        row(s, "app", "s1").status == "DOWN (agent)"
    })
    .await;
    assert!(agent.answered() < 3, "{} replies", agent.answered());
    proxy.reload(app_config("", &servers)).unwrap();
    let s1_row = row(&proxy.stats(), "app", "s1").clone();
    assert_eq!(
        (s1_row.status.as_str(), s1_row.slim, s1_row.agent_status),
        ("no check", None, None)
    );
}

// Input: s1 checked (tcp, every 60 s) with `on_marked_down = "shutdown-sessions"` and an agent
// check, with a request to it waiting for its response; the agent then says `fail`. Output:
// s1 goes DOWN and the waiting client's connection is closed, as when the health check marks
// it DOWN: HAProxy applies `on-marked-down` to any change of the server's state. (It waited
// on.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_the_agent_takes_down_shuts_its_sessions_when_asked() {
    let s1 = origin("s1").await;
    let agent = Agent::start("").await;
    agent.say("up");
    let proxy = Proxy::start(app_config(
        &format!(
            "health_check = {{ type = \"tcp\", interval = \"60s\", on_marked_down = \"shutdown-sessions\" }}\nagent_check = {{ port = {}, interval = \"20ms\" }}",
            agent.port
        ),
        &format!(r#"{{ name = "s1", address = "{s1}" }}"#),
    ))
    .unwrap();
    let slow = slow_request_held_by(&proxy, proxy.listeners()[0].bound, "s1").await;
    agent.say("fail");
    assert_closed(slow).await;
    assert_eq!(row(&proxy.stats(), "app", "s1").status, "DOWN (agent)");
}

// Input: one server (max_connections 20, `slow_start = "60s"`, `timeout.queue` 300 ms) put
// into MAINT and back; a slow request then holds it, and another request comes. Output: the
// second request waits in the queue and gets 503: just back, the server takes 1 connection,
// not 20, as HAProxy's warmup ramps `maxconn` with the weight. (It was served at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_back_from_maint_takes_its_connection_limit_over_slow_start() {
    let s1 = origin("s1").await;
    let proxy = Proxy::start(app_config(
        "slow_start = \"60s\"\ntimeout = { queue = \"300ms\" }",
        &format!(r#"{{ name = "s1", address = "{s1}", max_connections = 20 }}"#),
    ))
    .unwrap();
    for state in [AdminState::Maint, AdminState::Ready] {
        proxy
            .server_action(&server("app", "s1"), ServerAction::SetState(state))
            .unwrap();
    }
    let web = proxy.listeners()[0].bound;
    let slow = slow_request_held_by(&proxy, web, "s1").await;
    let mut conn = TcpStream::connect(web).await.unwrap();
    let (_, response) = get(&mut conn, "/", None).await;
    assert_eq!(response.unwrap().status, 503, "s1 takes one connection");
    slow.abort();
}

// Input: an agent saying `stopped` every 20 ms; an operator's `disable agent`, a wait of
// several intervals, then `enable agent`; `disable agent` on a server without an agent.
// Output: DOWN (agent); UP once disabled, and still UP while the agent goes on saying
// `stopped` (it is not asked); DOWN again once enabled; the last refused, as HAProxy's `disable
// agent` and `enable agent` do. (An agent's DOWN could only be undone by a reload.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_disables_and_enables_an_agent_check() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let agent = Agent::start("").await;
    agent.say("stopped");
    let proxy = Proxy::start(app_config(
        &format!(r#"agent_check = {{ port = {}, interval = "20ms" }}"#, agent.port),
        &format!(
            r#"{{ name = "s1", address = "{s1}" }}, {{ name = "s2", address = "{s2}", check = false }}"#
        ),
    ))
    .unwrap();
    let down = |s: &[ProxyStats]| row(s, "app", "s1").status == "DOWN (agent)";
    wait_for(&proxy, "s1 DOWN", down).await;
    let act = |action| proxy.server_action(&server("app", "s1"), action);
    act(ServerAction::DisableAgent).unwrap();
    assert_eq!(row(&proxy.stats(), "app", "s1").status, "no check");
    let asked = agent.answered();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(row(&proxy.stats(), "app", "s1").status, "no check");
    assert!(agent.answered() <= asked + 1, "asked while disabled");
    act(ServerAction::EnableAgent).unwrap();
    wait_for(&proxy, "s1 DOWN again", down).await;
    assert!(matches!(
        proxy.server_action(&server("app", "s2"), ServerAction::DisableAgent),
        Err(ActionError::NoAgentCheck(_))
    ));
}

// Input: one server whose agent says `maxconn:1`, a slow request holding it, a second request
// waiting in the queue (`timeout.queue` 5 s), then the agent says `maxconn:5`. Output: the
// waiting request is served once the limit grew, with no slot freed. (It waited out the queue
// timeout and got 503.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_the_queue_is_served_once_the_agent_raises_the_limit() {
    let s1 = origin("s1").await;
    let agent = Agent::start("").await;
    agent.say("maxconn:1");
    let proxy = Proxy::start(app_config(
        &format!(
            "agent_check = {{ port = {}, interval = \"20ms\" }}\ntimeout = {{ queue = \"5s\" }}",
            agent.port
        ),
        &format!(r#"{{ name = "s1", address = "{s1}" }}"#),
    ))
    .unwrap();
    wait_for(&proxy, "limit 1", |s| row(s, "app", "s1").slim == Some(1)).await;
    let web = proxy.listeners()[0].bound;
    let slow = slow_request_held_by(&proxy, web, "s1").await;
    let waiting = tokio::spawn(async move {
        let mut conn = TcpStream::connect(web).await.unwrap();
        get(&mut conn, "/", None).await.1
    });
    wait_for(&proxy, "a request queued", |s| {
        proxy_of(s, "app").rows.iter().any(|r| r.qcur == Some(1))
    })
    .await;
    agent.say("maxconn:5");
    let response = waiting.await.unwrap().unwrap();
    assert_eq!((response.status, response.body.as_str()), (200, "s1"));
    slow.abort();
}

// Input: s1 and s2 with `max_connections = 1` and cookie persistence, each held by a slow
// request; then a request with s1's cookie and one with none; then s1 put into MAINT.
// Output: the sticky request is counted in s1's queue and the other in the backend's, as
// HAProxy counts them, in the stats and the metrics; once s1 is in MAINT the sticky request
// waits for any server and is counted in the backend's queue, s1's maximum kept. (Every
// queued request was counted in the backend's queue, and servers had none.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_its_server_is_counted_in_that_servers_queue() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let proxy = Proxy::start(app_config(
        "cookie = { name = \"SRV\" }\ntimeout = { queue = \"30s\" }",
        &format!(
            r#"{{ name = "s1", address = "{s1}", max_connections = 1, cookie = "s1" }},
               {{ name = "s2", address = "{s2}", max_connections = 1, cookie = "s2" }}"#
        ),
    ))
    .unwrap();
    let registry = prometheus::Registry::new();
    proxy.register_metrics(&registry).unwrap();
    let web = proxy.listeners()[0].bound;
    let _slow1 = slow_request_held_by(&proxy, web, "s1").await;
    let _slow2 = slow_request_held_by(&proxy, web, "s2").await;
    let waiting = |cookie: Option<&'static str>| {
        tokio::spawn(async move {
            let mut conn = TcpStream::connect(web).await.unwrap();
            get(&mut conn, "/", cookie).await
        })
    };
    let _sticky = waiting(Some("s1"));
    let queue = |s: &[ProxyStats], sv: &str| (row(s, "app", sv).qcur, row(s, "app", sv).qmax);
    wait_for(&proxy, "the sticky request queued", |s| {
        queue(s, "s1").0 == Some(1)
    })
    .await;
    let _any = waiting(None);
    wait_for(&proxy, "the other request queued", |s| {
        queue(s, "BACKEND").0 == Some(1)
    })
    .await;
    let stats = proxy.stats();
    assert_eq!(queue(&stats, "s1"), (Some(1), Some(1)));
    assert_eq!(queue(&stats, "s2"), (Some(0), Some(0)));
    assert_eq!(queue(&stats, "BACKEND"), (Some(1), Some(1)));
    let families = registry.gather();
    let s1_labels = [("proxy", "app"), ("server", "s1")];
    assert_eq!(
        value(&families, "fulcrum_server_current_queue", &s1_labels),
        1.0
    );
    assert_eq!(
        value(&families, "fulcrum_server_max_queue", &s1_labels),
        1.0
    );
    let app = [("proxy", "app")];
    assert_eq!(value(&families, "fulcrum_backend_current_queue", &app), 1.0);

    proxy
        .server_action(
            &server("app", "s1"),
            ServerAction::SetState(AdminState::Maint),
        )
        .unwrap();
    wait_for(
        &proxy,
        "the sticky request handed to the backend's queue",
        |s| queue(s, "BACKEND") == (Some(2), Some(2)),
    )
    .await;
    assert_eq!(queue(&proxy.stats(), "s1"), (Some(0), Some(1)));
}
