//! End-to-end tests of the L7 tier's routing: the seed 004 scenario (POST to the upload backend),
//! cookie persistence and failover, weighted balancing, the queue, retries and redispatch, and
//! the headers servers receive. Each test runs the real binary against real origins.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use fulcrum_bench::origin::OriginOptions;
use support::{Fulcrum, KeepAlive, curl, dead_addr, get, origin, origin_with, parse_head, upgrade};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_insert_nocache_sticks_and_fails_over_after_health_checks() {
    let s1 = origin("s1").await;
    let s2 = origin("s2").await;
    let (interval_ms, fall) = (200, 3);
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
balance = "roundrobin"
# Each request to the stopped server fails at once: retries would wait 1 s each.
retries = 0
cookie = {{ name = "webserver", mode = "insert", nocache = true }}
health_check = {{ type = "http", path = "/", interval = "{interval_ms}ms", timeout = "150ms", rise = 2, fall = {fall} }}
servers = [
  {{ name = "s1", address = "{}", weight = 1, cookie = "s1" }},
  {{ name = "s2", address = "{}", weight = 1, cookie = "s2" }},
]
"#,
        s1.addr(),
        s2.addr()
    ));
    let url = format!("http://{}/page", fulcrum.addr("main"));

    // Without a cookie: alternation by weight, each response inserting the cookie, nocache.
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (status, out, err) = curl(&["-D", "-", "-o", "/dev/null", &url]).await;
        assert!(status.success(), "{err}");
        let (code, headers) = parse_head(&out);
        assert_eq!(code, 200);
        let server = headers["x-server"][0].clone();
        assert_eq!(
            headers["set-cookie"],
            [format!("webserver={server}; path=/")]
        );
        assert_eq!(headers["cache-control"], ["private"]);
        seen.push(server);
    }
    assert_eq!(seen, ["s1", "s2", "s1", "s2", "s1", "s2"]);

    // With the cookie: 100 requests stay on s1 and get no new cookie.
    let mut client = KeepAlive::connect(fulcrum.addr("main")).await;
    for _ in 0..100 {
        let reply = client
            .get("/page", &[("cookie", "webserver=s1")])
            .await
            .unwrap();
        assert_eq!(reply.server(), "s1");
        assert!(reply.header("set-cookie").is_none());
    }

    // s1 stops: once its checks fail `fall` times it is DOWN, the cookie naming it is ignored,
    // and the client is balanced to s2 with a new cookie.
    let stopped = Instant::now();
    s1.stop().await;
    let moved = loop {
        let reply = get(fulcrum.addr("main"), "/page", &[("cookie", "webserver=s1")]).await;
        if reply.status == 200 {
            break reply;
        }
        assert_eq!(
            reply.status, 503,
            "a request to the stopped server fails until it is DOWN"
        );
        assert!(stopped.elapsed() < support::PATIENCE, "s1 never went DOWN");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = stopped.elapsed();
    assert_eq!(moved.server(), "s2");
    assert_eq!(moved.all("set-cookie"), ["webserver=s2; path=/"]);
    let down = fulcrum.wait_log(|l| support::message(l) == "server is DOWN" && l["server"] == "s1");
    assert!(
        down["reason"].as_str().unwrap().starts_with("L4CON")
            || down["reason"].as_str().unwrap().starts_with("L7")
    );
    // fall * interval plus one interval, plus the first check's spread and slack for a busy CI box.
    let bound =
        Duration::from_millis(interval_ms * (fall + 1) + interval_ms / 2) + Duration::from_secs(2);
    assert!(took <= bound, "failover took {took:?}, more than {bound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_naming_set_cookie_in_connection_keeps_the_inserted_cookie() {
    // The server's own `Set-Cookie` and `Cache-Control` are hop-by-hop here (RFC 9110
    // §7.6.1), so they stop at the proxy; the persistence cookie Fulcrum inserts, and its
    // `nocache`, are the proxy's own and must reach the client, over HTTP/1.1 and HTTP/2.
    let server = support::answering_server(
        b"HTTP/1.1 200 OK\r\nConnection: set-cookie, cache-control\r\n\
          Set-Cookie: hop=1\r\nCache-Control: public\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
cookie = {{ name = "srv", mode = "insert", nocache = true }}
servers = [ {{ name = "s1", address = "{server}", cookie = "s1" }} ]
"#
    ));
    let url = format!("http://{}/", fulcrum.addr("main"));
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (status, out, err) = curl(&["-sS", version, "-D", "-", "-o", "/dev/null", &url]).await;
        assert!(status.success(), "{err}");
        let (code, headers) = parse_head(&out);
        assert_eq!(code, 200, "{version}");
        assert_eq!(headers["set-cookie"], ["srv=s1; path=/"], "{version}");
        assert_eq!(headers["cache-control"], ["private"], "{version}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redispatch_moves_a_sticky_client_off_a_dead_server_at_once() {
    let s2 = origin("s2").await;
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
cookie = {{ name = "srv", mode = "insert" }}
retries = 1
redispatch = true
servers = [
  {{ name = "dead", address = "{}" }},
  {{ name = "s2", address = "{}" }},
]
"#,
        dead_addr(),
        s2.addr()
    ));
    let reply = get(fulcrum.addr("main"), "/", &[("cookie", "srv=dead")]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.server(), "s2");
    assert_eq!(reply.all("set-cookie"), ["srv=s2; path=/"]);
    let log = fulcrum.wait_log(|l| l["target"] == "access" && l["server"] == "s2");
    assert!(
        log["message"].as_str().unwrap().contains("/+1 "),
        "retries shown as +1 after a redispatch: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_goes_to_the_upload_backend_and_fails_alone_when_it_is_down() {
    let web = origin("web1").await;
    let upload = origin_with(OriginOptions {
        name: "upload1".into(),
        echo: true,
        ..OriginOptions::default()
    })
    .await;
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
acl.http_method = "method -i POST"
use_backend = [{{ backend = "updataserver", if = "http_method" }}]
default_backend = "webservers"

[backend.webservers]
servers = [{{ name = "web1", address = "{}" }}]

[backend.updataserver]
health_check = {{ type = "tcp", interval = "100ms", fall = 1 }}
servers = [{{ name = "upload1", address = "{}" }}]
"#,
        web.addr(),
        upload.addr()
    ));
    let url = format!("http://{}/forum/post.php", fulcrum.addr("main"));
    let (_, out, _) = curl(&["-D", "-", "--data-binary", "attachment bytes", &url]).await;
    assert_eq!(parse_head(&out).1["x-server"], ["upload1"]);
    assert!(
        out.ends_with("attachment bytes"),
        "the upload server got the body: {out}"
    );
    let (_, out, _) = curl(&["-D", "-", "-o", "/dev/null", &url]).await;
    assert_eq!(parse_head(&out).1["x-server"], ["web1"]);

    upload.stop().await;
    fulcrum.wait_log(|l| support::message(l) == "server is DOWN" && l["server"] == "upload1");
    for _ in 0..5 {
        let (_, out, _) = curl(&["-D", "-", "-o", "/dev/null", "--data-binary", "x", &url]).await;
        assert_eq!(parse_head(&out).0, 503);
        let (_, out, _) = curl(&["-D", "-", "-o", "/dev/null", &url]).await;
        let (status, headers) = parse_head(&out);
        assert_eq!((status, headers["x-server"][0].as_str()), (200, "web1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_queues_then_times_out_with_503() {
    let slow = origin("slow").await;
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "one"

[backend.one]
timeout = {{ connect = "1s", server = "10s", queue = "3s" }}
servers = [{{ name = "slow", address = "{}", max_connections = 1 }}]

[frontend.short]
bind = ["127.0.0.1:0"]
default_backend = "impatient"

[backend.impatient]
timeout = {{ queue = "200ms" }}
servers = [{{ name = "slow", address = "{}", max_connections = 1 }}]
"#,
        slow.addr(),
        slow.addr()
    ));

    // The second request waits for the first to finish, then is served.
    let addr = fulcrum.addr("main");
    let first = tokio::spawn(async move { get(addr, "/delay/600", &[]).await });
    support::wait_origin_requests(&slow, 1).await;
    let second_sent = Instant::now();
    let second = get(addr, "/delay/0", &[]).await;
    let second_took = second_sent.elapsed();
    let first = first.await.unwrap();
    assert_eq!((first.status, second.status), (200, 200));
    // The second request asks for no delay; it can only take this long by waiting for the slot
    // the first one holds until nearly 600ms after the second was sent.
    assert!(
        second_took >= Duration::from_millis(300),
        "the second request did not wait: {second_took:?}"
    );
    let queued =
        fulcrum.wait_log(|l| l["target"] == "access" && l["request"] == "GET /delay/0 HTTP/1.1");
    let timers: Vec<i64> = queued["message"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(4)
        .unwrap()
        .split('/')
        .map(|t| t.parse().unwrap())
        .collect();
    assert!(
        timers[1] >= 300,
        "Tw (queue time) shows the wait: {timers:?}"
    );

    // With `timeout queue = 200ms` the second request gets 503 while the first holds the slot.
    let addr = fulcrum.addr("short");
    let first = tokio::spawn(async move { get(addr, "/delay/1000", &[]).await });
    support::wait_origin_requests(&slow, 3).await;
    let refused = get(addr, "/", &[]).await;
    assert_eq!(refused.status, 503);
    assert_eq!(first.await.unwrap().status, 200);
    let log = fulcrum.wait_log(|l| l["target"] == "access" && l["status"] == 503);
    assert_eq!(
        &log["termination"].as_str().unwrap()[..2],
        "sQ",
        "queue timeout: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_receive_forwarded_for_without_hop_by_hop_headers() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&support::site(
        r#"forward_for = true"#,
        r#"cookie = { name = "srv", mode = "insert", indirect = true }"#,
        &[("s1", s1.addr())],
    ));
    let mut client = KeepAlive::connect(fulcrum.addr("main")).await;
    let reply = client
        .get(
            "/x?y=1",
            &[
                ("connection", "keep-alive, x-drop-me"),
                ("x-drop-me", "1"),
                ("te", "trailers"),
                ("cookie", "a=1; srv=s1; b=2"),
                ("x-forwarded-for", "10.9.8.7"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        reply.header("set-cookie").is_none(),
        "indirect: no cookie re-sent to a client with a valid one"
    );
    let seen = &s1.requests()[0];
    assert_eq!(seen.uri.to_string(), "/x?y=1");
    let xff: Vec<_> = seen
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(xff, ["10.9.8.7", "127.0.0.1"]);
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    for gone in ["x-drop-me", "te", "keep-alive"] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the server"
        );
    }
    assert_eq!(
        seen.headers["cookie"], "a=1; b=2",
        "indirect: the persistence cookie is hidden from servers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_serves_only_while_no_active_server_is_up_and_weights_split_traffic() {
    let a = origin("a").await;
    let b = origin("b").await;
    let backup = origin("backup").await;
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
health_check = {{ type = "tcp", interval = "100ms", fall = 1, rise = 1 }}
servers = [
  {{ name = "a", address = "{}", weight = 3 }},
  {{ name = "b", address = "{}", weight = 1 }},
  {{ name = "backup", address = "{}", backup = true }},
]
"#,
        a.addr(),
        b.addr(),
        backup.addr()
    ));
    let mut client = KeepAlive::connect(fulcrum.addr("main")).await;
    let mut counts = std::collections::HashMap::new();
    for _ in 0..40 {
        let reply = client.get("/", &[]).await.unwrap();
        *counts.entry(reply.server().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(
        (counts["a"], counts["b"], counts.get("backup")),
        (30, 10, None)
    );
    a.stop().await;
    b.stop().await;
    fulcrum.wait_log(|l| support::message(l) == "server is DOWN" && l["server"] == "a");
    fulcrum.wait_log(|l| support::message(l) == "server is DOWN" && l["server"] == "b");
    assert_eq!(get(fulcrum.addr("main"), "/", &[]).await.server(), "backup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_timeout_gives_504_and_upgrade_is_tunnelled() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&support::site(
        r#""#,
        r#"timeout = { server = "300ms" }"#,
        &[("s1", s1.addr())],
    ));
    let addr = fulcrum.addr("main");
    assert_eq!(get(addr, "/delay/2000", &[]).await.status, 504);

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut stream, head) = upgrade(addr).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    stream.write_all(b"ping over the tunnel").await.unwrap();
    let mut echoed = [0u8; 20];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping over the tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_lives_while_bytes_move_and_closes_after_timeout_tunnel_of_silence() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&support::site(
        r#""#,
        r#"timeout = { server = "30s", tunnel = "1s" }"#,
        &[("s1", s1.addr())],
    ));
    let (mut stream, head) = upgrade(fulcrum.addr("main")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // A ping every 300 ms keeps the tunnel open past its 1 s, with room for a loaded machine.
    let started = std::time::Instant::now();
    for _ in 0..5 {
        stream.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // Silence both ways: the proxy closes the tunnel.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the silent tunnel is still open after 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_client_expecting_100_continue_gets_no_interim_response() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = origin_with(OriginOptions {
        name: "echo".into(),
        echo: true,
        ..OriginOptions::default()
    })
    .await;
    let fulcrum = Fulcrum::start(&support::site("", "", &[("echo", echo.addr())]));
    let body = vec![b'x'; 70_000];
    let mut stream = tokio::net::TcpStream::connect(fulcrum.addr("main"))
        .await
        .unwrap();
    stream
        .write_all(
            format!(
                "POST /upload HTTP/1.0\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // A 1.1 client would get `100 Continue` now; this one sends its body after a pause, as
    // an HTTP/1.0 client that knows nothing of 100 does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(
        !text.contains(" 100 Continue"),
        "an interim response reached a 1.0 client"
    );
    assert!(answer.ends_with(&body), "the body came back whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_uploads_stream_with_expect_continue_and_chunked_bodies() {
    let echo = origin_with(OriginOptions {
        name: "echo".into(),
        echo: true,
        ..OriginOptions::default()
    })
    .await;
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "upload"

[backend.upload]
servers = [{{ name = "echo", address = "{}" }}]
"#,
        echo.addr()
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let upload = format!("@{}", file.display());
    let url = format!("http://{}/upload", fulcrum.addr("main"));
    // curl sends `Expect: 100-continue` for a body this large.
    let out = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "-v",
            "--data-binary",
            &upload,
            &url,
        ])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("Expect: 100-continue"));
    assert_eq!(out.stdout, data, "the body came back whole");
    // The same body as chunked transfer coding.
    let out = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &upload,
            &url,
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, data, "the chunked body came back whole");
    let seen = echo.requests();
    assert!(seen.iter().all(|r| r.body_len == data.len()));
    assert!(
        seen.iter().all(|r| !r.headers.contains_key("expect")),
        "Expect was answered by the proxy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_clients_get_bodies_they_can_read() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&support::site(r#""#, r#""#, &[("s1", s1.addr())]));
    let reply =
        support::raw_exchange(fulcrum.addr("main"), b"GET /size/100 HTTP/1.0\r\n\r\n").await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.ends_with(&format!("s1{}", "\n".repeat(98))), "{text}");
    assert_eq!(
        s1.requests()[0].headers["host"],
        s1.addr().to_string(),
        "a Host header is supplied for HTTP/1.1 servers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontend_max_connections_holds_extra_clients_until_one_leaves() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&support::site(
        r#"max_connections = 1
timeout = { keep_alive = "30s" }"#,
        r#""#,
        &[("s1", s1.addr())],
    ));
    let addr = fulcrum.addr("main");
    let mut first = KeepAlive::connect(addr).await;
    assert_eq!(first.get("/", &[]).await.unwrap().status, 200);
    // The second client connects (the kernel's backlog) but is not served while the first holds
    // the only slot.
    let second = tokio::spawn(async move { get(addr, "/second", &[]).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !second.is_finished(),
        "the second client was served beyond max_connections"
    );
    assert_eq!(s1.request_count(), 1);
    drop(first);
    let reply = tokio::time::timeout(support::PATIENCE, second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vip_not_held_yet_can_be_bound() {
    // 192.0.2.0/24 is TEST-NET-1: never on this machine. IP_FREEBIND lets the listener exist
    // before the address arrives, as a VRRP backup needs. Nothing connects to it.
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.vip]
bind = ["192.0.2.123:0", "127.0.0.1:0"]
default_backend = "web"

[backend.web]
servers = [{{ name = "s1", address = "{}" }}]
"#,
        s1.addr()
    ));
    let listening: Vec<String> = fulcrum
        .logs()
        .iter()
        .filter(|l| support::message(l) == "listening")
        .map(|l| l["addr"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        listening.iter().any(|a| a.starts_with("192.0.2.123:")),
        "{listening:?}"
    );
    assert_eq!(get(fulcrum.addr("vip"), "/", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redispatch_retries_stay_on_the_same_server() {
    let live = origin("live").await;
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
retries = 2
servers = [{{ name = "dead", address = "{}" }}, {{ name = "live", address = "{}" }}]
"#,
        dead_addr(),
        live.addr()
    ));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(fulcrum.addr("main"), "/", &[]).await.status);
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 200, 503, 503],
        "half the requests are balanced to the dead server and stay there"
    );
    let failed = fulcrum.wait_log(|l| l["target"] == "access" && l["status"] == 503);
    assert_eq!(failed["server"], "dead");
    assert!(
        failed["message"].as_str().unwrap().contains("/2 "),
        "two retries, no redispatch: {failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_http_request_timeout_means_no_limit_for_tls_and_h2c() {
    if !support::require_tool("curl") {
        return;
    }
    let s1 = origin("s1").await;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.tls]
bind = ["127.0.0.1:0"]
tls = {{ certs = ["{fixtures}/a.pem"] }}
timeout = {{ http_request = "0s" }}
default_backend = "web"

[frontend.clear]
bind = ["127.0.0.1:0"]
timeout = {{ http_request = "0s" }}
default_backend = "web"

[backend.web]
servers = [{{ name = "s1", address = "{}" }}]
"#,
        s1.addr()
    ));
    let h2c = format!("http://{}/", fulcrum.addr("clear"));
    let (status, body, err) = curl(&["--http2-prior-knowledge", &h2c]).await;
    assert!(status.success() && body.starts_with("s1"), "{err}");
    let port = fulcrum.addr("tls").port();
    let resolve = format!("a.fulcrum.test:{port}:127.0.0.1");
    let cacert = format!("{fixtures}/a.crt");
    let url = format!("https://a.fulcrum.test:{port}/");
    let (status, body, err) = curl(&["--resolve", &resolve, "--cacert", &cacert, &url]).await;
    assert!(status.success() && body.starts_with("s1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_upload_reuses_a_pooled_server_connection() {
    let echo = origin_with(OriginOptions {
        name: "echo".into(),
        echo: true,
        ..OriginOptions::default()
    })
    .await;
    let fulcrum = Fulcrum::start(&support::site("", "", &[("echo", echo.addr())]));
    let mut client = KeepAlive::connect(fulcrum.addr("main")).await;
    assert_eq!(client.get("/first", &[]).await.unwrap().status, 200);
    // Larger than the proxy reads with the head, so it streams and cannot be replayed.
    let body = Bytes::from(vec![b'x'; 200_000]);
    let reply = client
        .send("POST", "/upload", &[], body.clone())
        .await
        .unwrap();
    assert_eq!(reply.body, body);
    let peers: Vec<_> = echo.requests().iter().map(|r| r.peer).collect();
    assert_eq!(peers.len(), 2);
    assert_eq!(
        peers[0], peers[1],
        "the upload went over the pooled connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_an_upload_before_its_end_has_its_answer_relayed_not_a_502() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server that answers 413 as soon as it has the head, and closes without reading the body.
    let server_addr = support::answering_server(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big\n",
    )
    .await;
    let fulcrum = Fulcrum::start(&support::site("", "", &[("s1", server_addr)]));
    let stream = tokio::net::TcpStream::connect(fulcrum.addr("main"))
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    const BODY: usize = 50 * 1024 * 1024;
    let uploader = tokio::spawn(async move {
        let head = format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY}\r\n\r\n");
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..BODY / chunk.len() {
            write.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut answer)).await;
    uploader.abort();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.ends_with("too big\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_removed_then_restored_by_reloads_judge_the_server_afresh() {
    // Nothing listens here: every check fails.
    let dead = support::dead_addr();
    let config = |checked: bool| {
        let check = if checked {
            r#"health_check = { type = "tcp", interval = "100ms", fall = 1, rise = 1 }"#
        } else {
            ""
        };
        format!(
            "[frontend.main]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"web\"\n\n[backend.web]\n{check}\nservers = [{{ name = \"gone\", address = \"{dead}\" }}]\n"
        )
    };
    let fulcrum = Fulcrum::start(&config(true));
    let is = |what: &'static str| {
        move |l: &serde_json::Value| support::message(l) == what && l["server"] == "gone"
    };
    fulcrum.wait_log(is("server is DOWN"));

    // Checks removed: UP, and said so, as an alert needs to hear.
    let from = fulcrum.logs().len();
    fulcrum.write_config(&config(false));
    assert!(fulcrum.reload());
    fulcrum.wait_log_from(from, |l| {
        is("server is UP")(l) && l["reason"] == "health check removed"
    });

    // Checks back: the first failure takes it DOWN again.
    let from = fulcrum.logs().len();
    fulcrum.write_config(&config(true));
    assert!(fulcrum.reload());
    fulcrum.wait_log_from(from, is("server is DOWN"));
}

// Input: a running site whose one server answers; then a reload that puts that server in MAINT
// (`disabled = true`) and adds a frontend on an address this test holds. Output: the reload
// fails on the bind, and the server is not in MAINT: requests still reach it. (The file's
// weights and MAINT states used to be applied before the binding.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_cannot_bind_leaves_the_servers_as_they_were() {
    let s1 = origin("s1").await;
    let servers = [("s1", s1.addr())];
    let fulcrum = Fulcrum::start(&support::site("", "", &servers));
    let addr = fulcrum.addr("main");
    assert_eq!(get(addr, "/", &[]).await.server(), "s1");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let maint = format!(
        "[frontend.main]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"web\"\n\n\
         [frontend.more]\nbind = [\"{busy}\"]\ndefault_backend = \"web\"\n\n\
         [backend.web]\nservers = [{{ name = \"s1\", address = \"{}\", disabled = true }}]\n",
        s1.addr()
    );
    fulcrum.write_config(&maint);
    assert!(!fulcrum.reload(), "the reload bound an address in use");
    let reply = get(addr, "/", &[]).await;
    assert_eq!(reply.status, 200, "the failed reload put s1 in MAINT");
    assert_eq!(reply.server(), "s1");
}

// Input: s1, at most one connection, busy with a slow request; two more requests with the
// cookie naming s1 waiting for it; then s1 put in MAINT over the control socket. Output: both
// waiting requests are served by s2 with a new cookie at once, while the slow one is still
// running on s1: they neither go to s1 in MAINT nor wait for its slot (one woken request used
// to leave the other waiting for a wake-up that never came).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_request_queued_for_a_server_put_in_maint_goes_elsewhere() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
cookie = {{ name = "SRV", mode = "insert" }}
servers = [
  {{ name = "s1", address = "{}", max_connections = 1 }},
  {{ name = "s2", address = "{}" }},
]
"#,
        s1.addr(),
        s2.addr()
    ));
    let addr = fulcrum.addr("main");
    let slow = tokio::spawn(async move { get(addr, "/delay/5000", &[("Cookie", "SRV=s1")]).await });
    support::wait_origin_requests(&s1, 1).await;
    let waiting: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(addr, "/", &[("Cookie", "SRV=s1")]).await }))
        .collect();
    // Sticky requests wait in their server's queue, as in HAProxy.
    support::wait_queued(&fulcrum, "web", "s1", 2).await;
    let socket = fulcrum.control_socket();
    let (ok, _, err) = support::fulcrum_command([
        "ctl",
        "--socket",
        socket.to_str().unwrap(),
        "set",
        "server",
        "web/s1",
        "state",
        "maint",
    ]);
    assert!(ok, "{err}");
    for request in waiting {
        let reply = tokio::time::timeout(Duration::from_secs(2), request)
            .await
            .expect("a queued request still waits for s1")
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.server(), "s2", "sent to s1 in MAINT");
        let cookie = reply.header("set-cookie").unwrap_or_default();
        assert!(cookie.starts_with("SRV=s2"), "{cookie}");
    }
    assert!(
        !slow.is_finished(),
        "the slow request ended first: the test proves nothing"
    );
    assert_eq!(slow.await.unwrap().server(), "s1");
}

/// A server that answers each connection's first request (200, kept alive), then reads the
/// next request whole (a 4-byte body when it is a POST) and closes without answering, as a
/// server that crashed while handling it. Returns its address and the request lines it saw.
async fn server_dying_on_the_second_request() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = server.accept().await {
            let log = std::sync::Arc::clone(&log);
            tokio::spawn(async move {
                for answered in [true, false] {
                    let head = support::read_head(&mut conn).await;
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let Some(line) = head.lines().next().filter(|l| !l.is_empty()) else {
                        return;
                    };
                    log.lock().unwrap().push(line.to_owned());
                    if line.starts_with("POST") {
                        let mut body = [0u8; 4];
                        let _ = conn.read_exact(&mut body).await;
                    }
                    if answered {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        let _ = conn.write_all(ok).await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

// Input: a keep-alive client's GET, then a POST with a small body (replayable by size) that
// goes over the pooled server connection; the server reads it whole and closes without
// answering. Output: the client gets 502 and the server saw the POST once; a GET in the same
// place is sent again on a fresh connection and answered. (The POST was sent again too: an
// order or a payment the server had taken was made twice; RFC 9110, 9.2.2.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_the_server_may_have_taken_is_not_sent_again() {
    let (addr, seen) = server_dying_on_the_second_request().await;
    let fulcrum = Fulcrum::start(&support::site("", "", &[("s1", addr)]));
    let mut client = KeepAlive::connect(fulcrum.addr("main")).await;
    assert_eq!(client.get("/first", &[]).await.unwrap().status, 200);
    let reply = client
        .send("POST", "/pay", &[], Bytes::from_static(b"1 EU"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "{:?}", seen.lock().unwrap());

    let mut client = KeepAlive::connect(fulcrum.addr("main")).await;
    assert_eq!(client.get("/first", &[]).await.unwrap().status, 200);
    assert_eq!(client.get("/again", &[]).await.unwrap().status, 200);
    let gets = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("GET /again"))
        .count();
    assert_eq!(
        gets,
        2,
        "the GET was sent again: {:?}",
        seen.lock().unwrap()
    );
}

// Input: two servers of one connection each (`max_connections = 1`), cookie stickiness; s1
// busy for 6 s and s2 for 1 s; then request A, sticky to s1, queues for s1, and request B,
// with no cookie, queues for any server. Output: B is served on s2 as soon as s2 is free,
// before s1's request ends. (A, queued first, took the backend's wake-up for s2's freed slot
// and sat on it until s1 freed: B slept next to an idle server.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_any_server_is_not_held_back_by_one_waiting_for_its_own() {
    use std::time::Instant;
    let slow = |name: &str, secs: u64| OriginOptions {
        name: name.into(),
        delay: Duration::from_secs(secs),
        ..OriginOptions::default()
    };
    let (s1, s2) = (
        origin_with(slow("s1", 6)).await,
        origin_with(slow("s2", 1)).await,
    );
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
cookie = {{ name = "SRV", mode = "insert" }}
timeout = {{ queue = "20s", server = "20s" }}
servers = [
  {{ name = "s1", address = "{}", max_connections = 1 }},
  {{ name = "s2", address = "{}", max_connections = 1 }},
]
"#,
        s1.addr(),
        s2.addr()
    ));
    let addr = fulcrum.addr("main");
    let request = |cookie: Option<&'static str>| {
        tokio::spawn(async move {
            let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
            let reply = get(addr, "/", &headers).await;
            (reply.status, Instant::now())
        })
    };
    let busy_s1 = request(Some("SRV=s1"));
    let busy_s2 = request(Some("SRV=s2"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _a = request(Some("SRV=s1"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = request(None);
    let (status, b_done) = b.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(busy_s2.await.unwrap().0, 200);
    let (_, s1_done) = busy_s1.await.unwrap();
    assert!(b_done < s1_done, "B waited for s1's request to end");
}

// Input: a server that is restarting: nothing listens on its port for its first 300 ms;
// `retries = 3`. Output: the request is answered 200 by the server once it listens. (The three
// retries were made back to back within a millisecond, all refused, and the client got 503;
// HAProxy waits min(timeout.connect, 1 s) before each retry.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_for_a_restarting_server() {
    let server = support::free_addr();
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
retries = 3
servers = [{{ name = "restarting", address = "{server}" }}]
"#
    ));
    let addr = fulcrum.addr("main");
    let request = tokio::spawn(async move { get(addr, "/", &[]).await.status });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = tokio::net::TcpListener::bind(server).await.unwrap();
    support::serve_answers(server, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    assert_eq!(request.await.unwrap(), 200);
}

// Input: a backend with `observe = "layer4"`, `error_limit = 1`, `on_error = "mark-down"` and
// no retries, and Fulcrum left one open-files descriptor (`prlimit`): the client's connection
// takes it, and the connection to the server fails with EMFILE. Output: the client gets 503,
// logged `RC` (a local resource), and the server stays UP; with its descriptors back, Fulcrum
// serves the next request from that server. (The shortage was held against the server, which
// went DOWN: one shortage on an appliance would take every server down.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_fulcrum_lacks_descriptors_for_is_not_held_against_the_server() {
    if !support::require_tool("prlimit") {
        return;
    }
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&support::site(
        "",
        "retries = 0\nhealth_check = { type = \"tcp\", interval = \"10h\", observe = \"layer4\", error_limit = 1, on_error = \"mark-down\" }",
        &[("s1", s1.addr())],
    ));
    let addr = fulcrum.addr("main");
    {
        let _short = support::OneDescriptorLeft::on(&fulcrum);
        assert_eq!(get(addr, "/", &[]).await.status, 503);
    }
    let log = fulcrum.wait_log(|l| l["target"] == "access" && l["status"] == 503);
    assert_eq!(&log["termination"].as_str().unwrap()[..2], "RC", "{log}");
    assert_eq!(
        support::stat_field(&fulcrum, "web", "s1", "chkdown"),
        Some(0),
        "the server was marked DOWN"
    );
    let served = get(addr, "/", &[]).await;
    assert_eq!((served.status, served.server()), (200, "s1"));
}
