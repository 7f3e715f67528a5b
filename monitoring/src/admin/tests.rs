//! The admin server end to end: a real server on 127.0.0.1:0, a test appliance that records the
//! actions it is asked for, and raw HTTP/1.1 requests over TCP (and TLS), so each check sees
//! exactly the bytes a browser or curl would.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use fulcrum_common::{
    action::{AdminState, ServerAction, ServerRef},
    stats::{ProxyKind, ProxyStats, Row, RowKind, Snapshot},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use super::AdminServer;
use crate::{
    Appliance,
    config::{AdminConfig, User},
};

const VERSION: &str = "9.8.7-test";

#[derive(Debug, Default)]
struct TestAppliance {
    actions: Mutex<Vec<(ServerRef, ServerAction)>>,
}

impl TestAppliance {
    fn actions(&self) -> Vec<(ServerRef, ServerAction)> {
        self.actions.lock().unwrap().clone()
    }
}

impl Appliance for TestAppliance {
    fn snapshot(&self) -> Snapshot {
        let mut s1 = Row::new("web", "s1", RowKind::Server);
        s1.status = "UP".into();
        s1.stot = 10;
        let mut s2 = Row::new("web", "s2", RowKind::Server);
        s2.status = "UP 2/3".into();
        let mut backend = Row::new("web", "BACKEND", RowKind::Backend);
        backend.status = "UP".into();
        Snapshot {
            proxies: vec![ProxyStats {
                name: "web".into(),
                kind: ProxyKind::Backend,
                mode: "http".into(),
                rows: vec![s1, s2, backend],
            }],
            ..Snapshot::default()
        }
    }

    fn server_action(&self, server: &ServerRef, action: ServerAction) -> Result<String, String> {
        if server.server == "ghost" {
            return Err("no such server".into());
        }
        self.actions.lock().unwrap().push((server.clone(), action));
        Ok(format!("{server}: {action} done"))
    }
}

fn config(users: bool, admin_actions: bool) -> AdminConfig {
    AdminConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        stats_path: "/stats".into(),
        metrics_path: "/metrics".into(),
        users: if users {
            vec![
                User {
                    name: "admin".into(),
                    password: "s3cret".into(),
                    read_only: false,
                },
                User {
                    name: "viewer".into(),
                    password: "l00k".into(),
                    read_only: true,
                },
            ]
        } else {
            Vec::new()
        },
        hide_version: false,
        admin_actions,
        refresh: Duration::from_secs(5),
        tls_cert: None,
        tls_fingerprint: None,
        server_names: Vec::new(),
        max_connections_per_source: 16,
    }
}

async fn start(config: AdminConfig) -> (AdminServer, Arc<TestAppliance>) {
    let appliance = Arc::new(TestAppliance::default());
    let registry = prometheus::Registry::new();
    crate::process::register(&registry).unwrap();
    let server = AdminServer::start(config, registry, appliance.clone(), VERSION)
        .await
        .unwrap();
    (server, appliance)
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn auth(credentials: &str) -> String {
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

const ADMIN: &str = "admin:s3cret";
/// A user with `read_only = true`.
const VIEWER: &str = "viewer:l00k";

/// Sends `head` (request line and headers, without the blank line) and `body`, and reads the
/// whole answer (the request says `Connection: close`).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &str,
    body: &[u8],
) -> Reply {
    let mut request = head.to_owned();
    request.push_str("Connection: close\r\n");
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    exchange(TcpStream::connect(addr).await.unwrap(), head, body).await
}

async fn get(addr: SocketAddr, path: &str, extra: &str) -> Reply {
    send(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}"),
        b"",
    )
    .await
}

async fn post(addr: SocketAddr, extra: &str, body: &str) -> Reply {
    send(
        addr,
        &format!(
            "POST /stats HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n{extra}"
        ),
        body.as_bytes(),
    )
    .await
}

/// The session cookie's `name=value` and the form's token, from a page load.
fn session_of(reply: &Reply) -> (String, String) {
    let cookie = reply.header("set-cookie").unwrap();
    let pair = cookie.split(';').next().unwrap().to_owned();
    let token = reply
        .body
        .split("name=\"token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (pair, token)
}

// Input: ten logins with a wrong password from one address, then the right one, the CSV and
// the metrics. Output: 401 ten times, then 429 with Retry-After even for the right password
// (its credentials are not looked at), the CSV too; the metrics, which need no login, still
// answer. (Every guess got its 401 at once, as fast as a client could send them.)
#[tokio::test]
async fn a_client_that_keeps_guessing_passwords_is_held_off() {
    let (server, _) = start(config(true, true)).await;
    let addr = server.local_addr();
    for i in 0..10 {
        let reply = get(addr, "/stats", &auth("admin:guess")).await;
        assert_eq!(reply.status, 401, "guess {i}");
    }
    let reply = get(addr, "/stats", &auth(ADMIN)).await;
    assert_eq!(reply.status, 429);
    let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    assert_eq!(get(addr, "/stats;csv", &auth(ADMIN)).await.status, 429);
    assert_eq!(get(addr, "/metrics", "").await.status, 200);
}

#[tokio::test]
async fn the_stats_page_needs_a_login() {
    let (server, _) = start(config(true, true)).await;
    let addr = server.local_addr();

    let reply = get(addr, "/stats", "").await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Basic realm=\"Fulcrum statistics\"")
    );
    assert!(!reply.body.contains("row-web-s1"));
    for wrong in ["admin:wrong", "nobody:s3cret", "admin"] {
        assert_eq!(
            get(addr, "/stats", &auth(wrong)).await.status,
            401,
            "{wrong}"
        );
    }
    assert_eq!(get(addr, "/stats;csv", "").await.status, 401);
    let json = get(addr, "/stats", "Accept: application/json\r\n").await;
    assert_eq!(json.status, 401);

    let reply = get(addr, "/stats", &auth(ADMIN)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        reply
            .body
            .contains("<tr id=\"row-web-s1\" class=\"srv state-up\"")
    );
    assert!(
        reply
            .body
            .contains("<tr id=\"row-web-s2\" class=\"srv state-going-down\"")
    );
    assert!(reply.body.contains(VERSION));
    assert_eq!(reply.header("server"), Some("Fulcrum/9.8.7-test"));
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    let cookie = reply.header("set-cookie").unwrap();
    assert!(cookie.starts_with("fulcrum_admin="), "{cookie}");
    assert!(
        cookie.ends_with("; HttpOnly; SameSite=Strict; Path=/stats"),
        "{cookie}"
    );
    assert!(
        reply
            .body
            .contains("<button type=\"submit\" id=\"apply-web\">")
    );
}

#[tokio::test]
async fn json_csv_and_metrics() {
    let (server, _) = start(config(true, true)).await;
    let addr = server.local_addr();

    let reply = get(
        addr,
        "/stats",
        &format!("{}Accept: application/json\r\n", auth(ADMIN)),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json["proxies"][0]["name"], "web");
    assert_eq!(json["proxies"][0]["rows"][0]["svname"], "s1");
    assert_eq!(json["proxies"][0]["rows"][0]["stot"], 10);

    let reply = get(addr, "/stats;csv", &auth(ADMIN)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.starts_with("# pxname,svname,qcur,qmax,scur,"));
    assert!(reply.body.contains("\nweb,s1,"));
    assert_eq!(reply.body.lines().count(), 4);

    // HEAD: the headers of a GET, no body.
    let reply = send(
        addr,
        &format!(
            "HEAD /stats;csv HTTP/1.1\r\nHost: {addr}\r\n{}",
            auth(ADMIN)
        ),
        b"",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());

    // Metrics need no login.
    let reply = get(addr, "/metrics", "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    assert!(reply.body.contains(&format!(
        "fulcrum_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(
        reply
            .body
            .contains("# TYPE process_cpu_seconds_total counter")
    );
    assert!(
        reply
            .body
            .contains("# TYPE process_resident_memory_bytes gauge")
    );
    promtool_check(&reply.body).await;
}

/// `promtool check metrics` over `text`, where promtool is installed (Debian's `prometheus`).
async fn promtool_check(text: &str) {
    let promtool = PathBuf::from("/usr/bin/promtool");
    if !promtool.exists() {
        // CI installs promtool (Debian's `prometheus`); there its absence is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI"
        );
        eprintln!("SKIPPED: promtool is not installed: the metrics format is not checked by it");
        return;
    }
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let (server, _) = start(config(true, true)).await;
    let addr = server.local_addr();
    assert_eq!(get(addr, "/", "").await.status, 404);
    assert_eq!(get(addr, "/stats/x", &auth(ADMIN)).await.status, 404);
    assert_eq!(get(addr, "/stats;json", &auth(ADMIN)).await.status, 404);
    let reply = send(
        addr,
        &format!("DELETE /stats HTTP/1.1\r\nHost: {addr}\r\n{}", auth(ADMIN)),
        b"",
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD, POST"));
    let reply = send(
        addr,
        &format!("POST /metrics HTTP/1.1\r\nHost: {addr}\r\n"),
        b"x=1",
    )
    .await;
    assert_eq!(reply.status, 405);
    // Not HTTP at all: the connection is closed or answered 400, and the server goes on.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"\x16\x03\x01\x00\xff garbage\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink)).await;
    assert_eq!(get(addr, "/metrics", "").await.status, 200);
}

#[tokio::test]
async fn admin_actions_need_the_session_token_and_origin() {
    let (server, appliance) = start(config(true, true)).await;
    let addr = server.local_addr();
    let page = get(addr, "/stats", &auth(ADMIN)).await;
    let (cookie, token) = session_of(&page);
    let logged_in = format!("{}Cookie: {cookie}\r\n", auth(ADMIN));
    let form = format!("s=s1&s=s2&b=web&action=drain&token={token}");

    // No token, a wrong token, no cookie, or no login: refused, nothing done.
    let reply = post(addr, &logged_in, "s=s1&b=web&action=drain").await;
    assert_eq!(reply.status, 403);
    let reply = post(
        addr,
        &logged_in,
        "s=s1&b=web&action=drain&token=00000000000000000000000000000000",
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(post(addr, &auth(ADMIN), &form).await.status, 403);
    assert_eq!(
        post(addr, &format!("Cookie: {cookie}\r\n"), &form)
            .await
            .status,
        401
    );
    // Another site's form, with everything else right.
    let foreign = format!("{logged_in}Origin: http://evil.example\r\n");
    assert_eq!(post(addr, &foreign, &form).await.status, 403);
    let wrong_port = format!("{logged_in}Origin: http://127.0.0.1:1\r\n");
    assert_eq!(post(addr, &wrong_port, &form).await.status, 403);
    assert!(appliance.actions().is_empty());

    // The page's own form: done, and back to the page.
    let same_origin = format!("{logged_in}Origin: http://{addr}\r\n");
    let reply = post(addr, &same_origin, &form).await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/stats"));
    let drain = ServerAction::SetState(AdminState::Drain);
    let web = |server: &str| ServerRef {
        backend: "web".into(),
        server: server.into(),
    };
    assert_eq!(
        appliance.actions(),
        [(web("s1"), drain), (web("s2"), drain)]
    );

    // The next page shows the results, once; a HEAD in between leaves them for it.
    let head = send(
        addr,
        &format!("HEAD /stats HTTP/1.1\r\nHost: {addr}\r\n{logged_in}"),
        b"",
    )
    .await;
    assert_eq!(head.status, 200);
    let page = get(addr, "/stats", &logged_in).await;
    assert!(page.header("set-cookie").is_none(), "the session is reused");
    assert!(
        page.body
            .contains("<p class=\"flash ok\">web/s1: set state drain done</p>")
    );
    assert!(
        page.body
            .contains("<p class=\"flash ok\">web/s2: set state drain done</p>")
    );
    let page = get(addr, "/stats", &logged_in).await;
    assert!(!page.body.contains("class=\"flash"));

    // Errors show too: the appliance's, and the form's own.
    let reply = post(
        addr,
        &logged_in,
        &format!("s=ghost&b=web&action=maint&token={token}"),
    )
    .await;
    assert_eq!(reply.status, 303);
    let page = get(addr, "/stats", &logged_in).await;
    assert!(
        page.body
            .contains("<p class=\"flash error\">web/ghost: no such server</p>")
    );
    post(
        addr,
        &logged_in,
        &format!("s=s1&b=web&action=weight&weight=x&token={token}"),
    )
    .await;
    let page = get(addr, "/stats", &logged_in).await;
    assert!(
        page.body
            .contains("class=\"flash error\">weight must be a whole number")
    );
    post(
        addr,
        &logged_in,
        &format!("b=web&action=ready&token={token}"),
    )
    .await;
    let page = get(addr, "/stats", &logged_in).await;
    assert!(page.body.contains("no server selected"));
    assert_eq!(appliance.actions().len(), 2);

    // From the page without auto-refresh, back to it.
    let reply = send(
        addr,
        &format!(
            "POST /stats?norefresh HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n{logged_in}"
        ),
        format!("s=s1&b=web&action=weight&weight=7&token={token}").as_bytes(),
    )
    .await;
    assert_eq!(reply.header("location"), Some("/stats?norefresh"));
    assert_eq!(
        appliance.actions()[2],
        (web("s1"), ServerAction::SetWeight(7))
    );
    let page = get(addr, "/stats?norefresh", &logged_in).await;
    assert!(!page.body.contains("http-equiv=\"refresh\""));
    assert!(page.body.contains("action=\"/stats?norefresh\""));
}

#[tokio::test]
async fn bad_posts_get_their_4xx() {
    let (server, appliance) = start(config(true, true)).await;
    let addr = server.local_addr();
    let page = get(addr, "/stats", &auth(ADMIN)).await;
    let (cookie, token) = session_of(&page);
    let logged_in = format!("{}Cookie: {cookie}\r\n", auth(ADMIN));

    let big = format!(
        "s=s1&b=web&action=drain&token={token}&pad={}",
        "x".repeat(70_000)
    );
    assert_eq!(post(addr, &logged_in, &big).await.status, 413);
    // Chunked, so the size is only known while reading.
    let chunked = send(
        addr,
        &format!(
            "POST /stats HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Transfer-Encoding: chunked\r\n{logged_in}"
        ),
        format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len()).as_bytes(),
    )
    .await;
    assert_eq!(chunked.status, 413);
    let json = send(
        addr,
        &format!(
            "POST /stats HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{logged_in}"
        ),
        b"{}",
    )
    .await;
    assert_eq!(json.status, 415);
    assert_eq!(post(addr, &logged_in, "%%%&&&==").await.status, 403);
    assert!(appliance.actions().is_empty());
}

// Input: what a DNS-rebinding page sends: a logged-in page load, and an admin action with a
// valid session and token, each with `Host: evil.example:PORT` and a matching `Origin`; then
// the page with that name in `server_names`, and the metrics by any name.
// Output: 403 and no action for the unknown name; the page for the listed one; the metrics
// always.
#[tokio::test]
async fn a_request_for_another_host_is_refused() {
    let (server, appliance) = start(config(true, true)).await;
    let addr = server.local_addr();
    let evil = format!("evil.example:{}", addr.port());
    let as_evil = |head: String| head.replace(&format!("Host: {addr}"), &format!("Host: {evil}"));
    let page = send(
        addr,
        &as_evil(format!(
            "GET /stats HTTP/1.1\r\nHost: {addr}\r\n{}",
            auth(ADMIN)
        )),
        b"",
    )
    .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("server_names"));

    let (cookie, token) = session_of(&get(addr, "/stats", &auth(ADMIN)).await);
    let form = format!("s=s1&b=web&action=drain&token={token}");
    let action = format!(
        "POST /stats HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         {}Cookie: {cookie}\r\nOrigin: http://{evil}\r\n",
        auth(ADMIN)
    );
    assert_eq!(
        send(addr, &as_evil(action), form.as_bytes()).await.status,
        403
    );
    assert!(appliance.actions().is_empty());
    let metrics = send(
        addr,
        &as_evil(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n")),
        b"",
    )
    .await;
    assert_eq!(metrics.status, 200);
    server.stop().await;

    let mut listed = config(true, true);
    listed.server_names = vec!["evil.example".to_owned()];
    let (server, _) = start(listed).await;
    let addr = server.local_addr();
    let head = format!(
        "GET /stats HTTP/1.1\r\nHost: evil.example:{}\r\n{}",
        addr.port(),
        auth(ADMIN)
    );
    assert_eq!(send(addr, &head, b"").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn without_users_the_page_is_open_and_actions_refused() {
    let (server, appliance) = start(config(false, true)).await;
    let addr = server.local_addr();
    let page = get(addr, "/stats", "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("row-web-s1"));
    assert!(!page.body.contains("<form"));
    assert!(page.header("set-cookie").is_none());
    let reply = post(addr, "", "s=s1&b=web&action=maint").await;
    assert_eq!(reply.status, 403);
    assert!(appliance.actions().is_empty());
}

// Input: with admin actions on, a `read_only` user loads the page, then posts an action with
// everything else right (a live session and its token, the page's origin). Output: the page
// shows the servers with no form and opens no session; the post gets 403 for being read-only,
// and nothing is done. (Every user in `users` could act.)
#[tokio::test]
async fn a_read_only_user_sees_the_page_but_cannot_act() {
    let (server, appliance) = start(config(true, true)).await;
    let addr = server.local_addr();
    let page = get(addr, "/stats", &auth(VIEWER)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("row-web-s1"));
    assert!(!page.body.contains("<form"));
    assert!(page.header("set-cookie").is_none());
    let (cookie, token) = session_of(&get(addr, "/stats", &auth(ADMIN)).await);
    let as_viewer = format!(
        "{}Cookie: {cookie}\r\nOrigin: http://{addr}\r\n",
        auth(VIEWER)
    );
    let reply = post(
        addr,
        &as_viewer,
        &format!("s=s1&b=web&action=maint&token={token}"),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("read_only"), "{}", reply.body);
    assert!(appliance.actions().is_empty());
}

#[tokio::test]
async fn with_actions_off_there_is_no_form() {
    let (server, appliance) = start(config(true, false)).await;
    let addr = server.local_addr();
    let page = get(addr, "/stats", &auth(ADMIN)).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<form"));
    assert!(page.header("set-cookie").is_none());
    assert_eq!(
        post(addr, &auth(ADMIN), "s=s1&b=web&action=maint")
            .await
            .status,
        403
    );
    assert!(appliance.actions().is_empty());
}

#[tokio::test]
async fn hide_version_leaves_it_out() {
    let mut config = config(false, false);
    config.hide_version = true;
    let (server, _) = start(config).await;
    let addr = server.local_addr();
    let page = get(addr, "/stats", "").await;
    assert!(!page.body.contains(VERSION));
    assert!(page.header("server").is_none());
    assert!(!get(addr, "/stats;csv", "").await.body.contains(VERSION));
}

#[tokio::test]
async fn stopping_closes_the_port() {
    let (server, _) = start(config(false, false)).await;
    let addr = server.local_addr();
    assert_eq!(get(addr, "/stats", "").await.status, 200);
    // A connection in progress does not keep stop from returning.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /stats HTTP/1.1\r\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after stop"
    );
    // Closed: an end of stream, or a reset for the request bytes left unread.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection is still open");
    // The address is free for the next server at once.
    let mut again = config(false, false);
    again.listen = addr;
    let (server, _) = start(again).await;
    assert_eq!(get(addr, "/stats", "").await.status, 200);
    drop(server);

    let (server, _) = start(config(false, false)).await;
    let addr = server.local_addr();
    drop(server);
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still accepting after drop");
}

/// A connection to `addr` from the loopback address `source` (any of 127/8 reaches the server).
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether the server closes `stream` within a few seconds without a request sent.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
    // An end of stream or a reset; a timeout means it is still open.
    read.is_ok() && rest.is_empty()
}

// Input: `max_connections_per_source = 2`; two connections from 127.0.0.1, then a third, a
// request on the second, one from 127.0.0.2, and, once the first two ended, a fourth from
// 127.0.0.1. Output: the third is closed unanswered; the others are served.
#[tokio::test]
async fn one_client_holds_at_most_max_connections_per_source() {
    let mut cfg = config(false, false);
    cfg.max_connections_per_source = 2;
    let (server, _) = start(cfg).await;
    let addr = server.local_addr();
    let first = connect_from("127.0.0.1", addr).await;
    let second = connect_from("127.0.0.1", addr).await;
    let mut third = connect_from("127.0.0.1", addr).await;
    assert!(
        closed_by_server(&mut third).await,
        "a third connection from one client was kept"
    );
    let head = format!("GET /stats;csv HTTP/1.1\r\nHost: {addr}\r\n");
    // Both of the first two were taken: the second is served while the first is open.
    assert_eq!(exchange(second, &head, b"").await.status, 200);
    let other = exchange(connect_from("127.0.0.2", addr).await, &head, b"").await;
    assert_eq!(other.status, 200, "another client was held back");
    drop(first);
    // The server sees the ends of `first` and `second` on its own time: retry until a slot is
    // back. A refused attempt may fail as early as its write (reset).
    let request = format!("{head}Connection: close\r\n\r\n");
    let mut served = None;
    for _ in 0..50 {
        let mut stream = connect_from("127.0.0.1", addr).await;
        if stream.write_all(request.as_bytes()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut raw)).await;
        if !raw.is_empty() {
            served = Some(String::from_utf8_lossy(&raw).into_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served = served.expect("the client's slot never came back");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

fn test_cert() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/admin/testdata/localhost.pem")
}

/// `GET /stats` as the admin user over TLS to `addr` (SNI `server_name`, trusting
/// [`test_cert`]), with `Host: host`.
async fn https_get(addr: SocketAddr, server_name: &str, host: &str) -> Reply {
    use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(test_cert()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let head = format!("GET /stats HTTP/1.1\r\nHost: {host}\r\n{}", auth(ADMIN));
    exchange(tls, &head, b"").await
}

// Input: the HTTPS admin server, whose certificate names `admin.fulcrum.test` and
// `*.lb.fulcrum.test`, asked by those names (none in `server_names`) and by another.
// Output: 200 for the certificate's names (a browser has checked them), 403 for the other.
#[tokio::test]
async fn the_https_certificates_names_pass_the_host_check() {
    let mut config = config(true, true);
    config.tls_cert = Some(test_cert());
    let (server, _) = start(config).await;
    let addr = server.local_addr();
    let port = addr.port();
    for name in ["admin.fulcrum.test", "a.lb.fulcrum.test"] {
        let reply = https_get(addr, name, &format!("{name}:{port}")).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
    }
    let reply = https_get(addr, "localhost", &format!("a.b.lb.fulcrum.test:{port}")).await;
    assert_eq!(reply.status, 403);
    let reply = https_get(addr, "localhost", &format!("evil.example:{port}")).await;
    assert_eq!(reply.status, 403);
}

#[tokio::test]
async fn https_serves_the_page_with_a_secure_cookie() {
    let mut config = config(true, true);
    config.tls_cert = Some(test_cert());
    let (server, _) = start(config).await;
    let addr = server.local_addr();
    let reply = https_get(addr, "localhost", &format!("localhost:{}", addr.port())).await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("set-cookie").unwrap().ends_with("; Secure"));

    // Plain HTTP on the HTTPS port gets nowhere.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut sink)).await;
    assert!(!String::from_utf8_lossy(&sink).contains("200 OK"));
}

#[tokio::test]
async fn a_bad_certificate_file_is_a_clear_error() {
    let mut config = config(true, true);
    config.tls_cert = Some(PathBuf::from("/nonexistent/admin.pem"));
    let appliance = Arc::new(TestAppliance::default());
    let error = AdminServer::start(config, prometheus::Registry::new(), appliance, VERSION)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/admin.pem"),
        "{error}"
    );
}

#[tokio::test]
async fn rates_are_sampled_while_the_server_runs() {
    // The appliance's stot grows by 5 per snapshot; after the sampler's first two ticks the
    // page shows a rate.
    #[derive(Debug, Default)]
    struct Growing(Mutex<u64>);
    impl Appliance for Growing {
        fn snapshot(&self) -> Snapshot {
            let mut n = self.0.lock().unwrap();
            *n += 5;
            let mut row = Row::new("web", "s1", RowKind::Server);
            row.stot = *n;
            Snapshot {
                proxies: vec![ProxyStats {
                    name: "web".into(),
                    kind: ProxyKind::Backend,
                    mode: "http".into(),
                    rows: vec![row],
                }],
                ..Snapshot::default()
            }
        }
        fn server_action(&self, _: &ServerRef, _: ServerAction) -> Result<String, String> {
            Err("no".into())
        }
    }
    let server = AdminServer::start(
        config(false, false),
        prometheus::Registry::new(),
        Arc::new(Growing::default()),
        VERSION,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let mut rate = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reply = get(addr, "/stats", "Accept: application/json\r\n").await;
        let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        rate = json["proxies"][0]["rows"][0]["rate_max"].as_u64().unwrap();
        if rate > 0 {
            break;
        }
    }
    assert!(rate > 0, "no rate after 5s");
}

/// One request of arbitrary content that hyper still frames (so it reaches our code): a method,
/// a path under or beside the stats path, a Host, credentials good or garbled, cookies, an
/// Origin, an Accept and a form body, each from a small alphabet that is rich in the characters parsers
/// trip on.
fn arbitrary_request() -> impl proptest::strategy::Strategy<Value = (String, Vec<u8>)> {
    use proptest::prelude::*;
    let method = prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "OPTIONS"]);
    let path = "(/stats|/metrics|/)[;?%&=a-z0-9/.+-]{0,24}";
    let text = "[ -~]{0,40}";
    let credentials = prop_oneof![Just(ADMIN.to_owned()), "[a-z:]{0,12}", "[ -~]{0,20}"];
    let raw_auth = prop_oneof![Just(false), Just(true)];
    let body = "(b|s|action|token|weight|x)=[a-z0-9%+&=./:]{0,30}(&(b|s|action|token|weight)=[a-z0-9%+&=./:]{0,30}){0,4}";
    // Mostly a name that passes the Host check, so that most requests reach what lies past it.
    let host = prop_oneof![
        4 => Just("localhost".to_owned()),
        1 => "[ -~]{0,20}",
    ];
    (method, path, credentials, raw_auth, text, text, text, body, host).prop_map(
        |(method, path, credentials, raw_auth, cookie, origin, accept, body, host)| {
            let authorization = if raw_auth {
                format!("Authorization: Basic {credentials}\r\n")
            } else {
                auth(&credentials)
            };
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{authorization}Cookie: {cookie}\r\n\
                 Origin: {origin}\r\nAccept: {accept}\r\n"
            );
            (head, body.into_bytes())
        },
    )
}

/// Whatever a client sends, it gets an answer (a panicking handler would drop the connection
/// without one), and the server goes on serving.
#[test]
fn arbitrary_requests_get_an_answer_and_never_stop_the_server() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, _appliance) = rt.block_on(start(config(true, true)));
    let addr = server.local_addr();
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    runner
        .run(&arbitrary_request(), |(head, body)| {
            let reply = rt.block_on(send(addr, &head, &body));
            proptest::prop_assert!((200..600).contains(&reply.status), "{head}: {reply:?}");
            Ok(())
        })
        .unwrap();
    // Still serving: its refused logins have this address held off (429), which is an answer.
    let held_off = rt.block_on(get(addr, "/stats", &auth(ADMIN))).status;
    assert!(matches!(held_off, 200 | 429), "{held_off}");
    // A valid session and token, then arbitrary forms through the action path itself, on a
    // server that has refused no login from this address.
    let (server, _appliance) = rt.block_on(start(config(true, true)));
    let addr = server.local_addr();
    let page = rt.block_on(get(addr, "/stats", &auth(ADMIN)));
    let (cookie, token) = session_of(&page);
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    runner
        .run(&"[a-z0-9%+&=./:_-]{0,60}", |form| {
            let extra = format!(
                "{}Cookie: {cookie}\r\nOrigin: http://{addr}\r\n",
                auth(ADMIN)
            );
            let body = format!("token={token}&{form}");
            let reply = rt.block_on(post(addr, &extra, &body));
            proptest::prop_assert!(
                matches!(reply.status, 303 | 400 | 403 | 413),
                "{form}: {reply:?}"
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(rt.block_on(get(addr, "/stats", &auth(ADMIN))).status, 200);
}
