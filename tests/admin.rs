//! End-to-end tests of `[admin]` against the real binary with real clients: basic auth on the
//! stats page (curl), the CSRF token and Origin check on admin actions, Prometheus output checked
//! by `promtool` with exact counts, CSV read by a standard CSV reader against the JSON, and the
//! same actions from `fulcrum ctl` over the control socket.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{collections::HashMap, net::SocketAddr, path::Path, process::Command};

use serde_json::Value;
use support::{Fulcrum, KeepAlive, curl, origin, parse_head, require_tool};

/// The servers' health check in [`site`].
const HEALTH_CHECK: &str = r#"health_check = { type = "tcp", interval = "1s" }"#;

/// A site with two servers and the admin server on an ephemeral port, user `admin`/`s3cret`.
fn site(s1: SocketAddr, s2: SocketAddr) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
users = [{{ name = "admin", password = "s3cret" }}]
admin_actions = true
refresh = "60s"

[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
balance = "roundrobin"
cookie = {{ name = "SRV", mode = "insert" }}
{HEALTH_CHECK}
servers = [
  {{ name = "s1", address = "{s1}", cookie = "s1" }},
  {{ name = "s2", address = "{s2}", cookie = "s2" }},
]
"#
    )
}

/// curl's status code for `args` (a URL among them), with the response head.
async fn status_of(args: &[&str]) -> (u16, HashMap<String, Vec<String>>, String) {
    let mut all = vec!["-D", "-", "-o", "-"];
    all.extend_from_slice(args);
    let (status, out, err) = curl(&all).await;
    assert!(status.success(), "curl failed: {err}");
    let (code, headers) = parse_head(&out);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (code, headers, body.unwrap_or_default())
}

/// Every row of the JSON snapshot (frontends, backends, servers).
async fn rows(admin: SocketAddr) -> Vec<Value> {
    let (_, out, err) = curl(&[
        "-u",
        "admin:s3cret",
        "-H",
        "Accept: application/json",
        &format!("http://{admin}/stats"),
    ])
    .await;
    let snapshot: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    snapshot["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["rows"].as_array().unwrap().clone())
        .collect()
}

/// The server rows of the JSON snapshot, by server name.
async fn servers(admin: SocketAddr) -> HashMap<String, Value> {
    rows(admin)
        .await
        .into_iter()
        .filter(|r| r["kind"] == "server")
        .map(|r| (r["svname"].as_str().unwrap().to_owned(), r))
        .collect()
}

/// A server's status without HAProxy's check progress (`UP 2/3` is UP): right after start the
/// first checks move it towards steady UP, which is not what these tests are about.
async fn status(admin: SocketAddr, server: &str) -> String {
    let status = servers(admin).await[server]["status"]
        .as_str()
        .unwrap()
        .to_owned();
    status.split(' ').next().unwrap().to_owned()
}

/// The hidden `token` of the stats page's action form.
fn form_token(page: &str) -> String {
    let at = page
        .find("name=\"token\"")
        .unwrap_or_else(|| panic!("no token field in the page: {page}"));
    let tag_start = page[..at].rfind('<').unwrap();
    let tag_end = at + page[at..].find('>').unwrap();
    let tag = &page[tag_start..tag_end];
    let value = tag.split("value=\"").nth(1).unwrap();
    value[..value.find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_page_needs_the_right_credentials() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let fulcrum = Fulcrum::start(&site(s1.addr(), s2.addr()));
    let url = format!("http://{}/stats", fulcrum.admin_addr());

    let (code, headers, _) = status_of(&[&url]).await;
    assert_eq!(code, 401, "no credentials");
    assert!(
        headers["www-authenticate"][0].starts_with("Basic realm="),
        "{headers:?}"
    );
    let (code, _, _) = status_of(&["-u", "admin:wrong", &url]).await;
    assert_eq!(code, 401, "wrong password");
    let (code, _, _) = status_of(&["-u", "nobody:s3cret", &url]).await;
    assert_eq!(code, 401, "unknown user");
    let (code, _, _) = status_of(&["-u", "admin:wrong", &format!("{url};csv")]).await;
    assert_eq!(code, 401, "the CSV is protected too");

    let (code, headers, page) = status_of(&["-u", "admin:s3cret", &url]).await;
    assert_eq!(code, 200);
    assert!(headers["content-type"][0].starts_with("text/html"));
    for name in ["web", "s1", "s2", "main"] {
        assert!(page.contains(name), "the page names {name}");
    }
    let refused = fulcrum.wait_log(|l| support::message(l) == "stats login refused");
    assert!(
        !refused.to_string().contains("wrong"),
        "no password in the log: {refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_session_token_and_a_same_origin() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let fulcrum = Fulcrum::start(&site(s1.addr(), s2.addr()));
    let admin = fulcrum.admin_addr();
    let url = format!("http://{admin}/stats");
    let jar = fulcrum.dir().join("cookies.txt");
    let jar = jar.to_str().unwrap();

    let (code, _, page) = status_of(&["-u", "admin:s3cret", "-c", jar, &url]).await;
    assert_eq!(code, 200);
    let token = form_token(&page);
    let drain = |token: &str| format!("b=web&s=s1&action=drain&token={token}");

    // No token; a wrong token; the right token from a foreign Origin: all 403, nothing changes.
    let no_token = "b=web&s=s1&action=drain".to_owned();
    let wrong = drain("00000000000000000000000000000000");
    let right = drain(&token);
    let own_origin = format!("Origin: http://{admin}");
    for (body, origin, why) in [
        (&no_token, own_origin.as_str(), "without a token"),
        (&wrong, own_origin.as_str(), "with a wrong token"),
        (
            &right,
            "Origin: http://evil.example",
            "from a foreign origin",
        ),
    ] {
        let (code, _, _) = status_of(&[
            "-u",
            "admin:s3cret",
            "-b",
            jar,
            "-H",
            origin,
            "--data",
            body,
            &url,
        ])
        .await;
        assert_eq!(code, 403, "a POST {why}");
        assert_eq!(status(admin, "s1").await, "UP", "{why}");
    }
    // Without the session cookie the token is worth nothing.
    let (code, _, _) = status_of(&[
        "-u",
        "admin:s3cret",
        "-H",
        &own_origin,
        "--data",
        &right,
        &url,
    ])
    .await;
    assert_eq!(code, 403, "a POST without the session cookie");
    assert_eq!(status(admin, "s1").await, "UP");

    // The right token, same origin, same session: done, and the page says so.
    let (code, headers, _) = status_of(&[
        "-u",
        "admin:s3cret",
        "-b",
        jar,
        "-H",
        &own_origin,
        "--data",
        &right,
        &url,
    ])
    .await;
    assert_eq!(code, 303, "{headers:?}");
    assert_eq!(status(admin, "s1").await, "DRAIN");
    let location = &headers["location"][0];
    let next = if location.starts_with("http") {
        location.clone()
    } else {
        format!("http://{admin}{location}")
    };
    let (_, _, page) = status_of(&["-u", "admin:s3cret", "-b", jar, &next]).await;
    assert!(page.contains("DRAIN"), "the result is shown: {page}");
    let logged = fulcrum.wait_log(|l| support::message(l) == "admin action");
    assert_eq!(logged["user"], "admin");
    assert_eq!(logged["server"], "web/s1");
    assert!(
        logged["result"].as_str().unwrap().contains("DRAIN"),
        "{logged}"
    );
}

/// Counts of `text`'s samples named `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "one {name} {labels:?} in:\n{text}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_count_every_request() {
    if !require_tool("promtool") {
        return;
    }
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let fulcrum = Fulcrum::start(&site(s1.addr(), s2.addr()));
    let sent = 7;
    let mut client = KeepAlive::connect(fulcrum.addr("main")).await;
    for _ in 0..sent {
        let reply = client.get("/", &[]).await.unwrap();
        assert_eq!(reply.status, 200);
    }
    drop(client);

    let url = format!("http://{}/metrics", fulcrum.admin_addr());
    let (code, headers, text) = status_of(&[&url]).await;
    assert_eq!(code, 200, "no credentials needed for scrapers");
    assert!(headers["content-type"][0].starts_with("text/plain; version=0.0.4"));

    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let fe = [("proxy", "main")];
    assert_eq!(
        sample(&text, "fulcrum_frontend_http_requests_total", &fe),
        f64::from(sent)
    );
    assert_eq!(
        sample(
            &text,
            "fulcrum_frontend_http_responses_total",
            &[("proxy", "main"), ("code", "2xx")]
        ),
        f64::from(sent)
    );
    assert_eq!(
        sample(&text, "fulcrum_frontend_sessions_total", &fe),
        1.0,
        "one connection"
    );
    let per_server: Vec<f64> = ["s1", "s2"]
        .iter()
        .map(|s| {
            sample(
                &text,
                "fulcrum_server_sessions_total",
                &[("proxy", "web"), ("server", s)],
            )
        })
        .collect();
    assert_eq!(per_server, [4.0, 3.0], "round robin over 7 requests");
    assert_eq!(
        sample(
            &text,
            "fulcrum_backend_http_response_time_seconds_count",
            &[("proxy", "web")]
        ),
        f64::from(sent)
    );
    assert_eq!(
        sample(&text, "fulcrum_backend_active_servers", &[("proxy", "web")]),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "fulcrum_server_status",
            &[("proxy", "web"), ("server", "s1"), ("state", "UP")]
        ),
        1.0
    );
    assert!(
        text.contains("process_resident_memory_bytes"),
        "process metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_reads_with_a_standard_reader_and_matches_the_json() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    // No health checks: a check landing between the CSV and the JSON read would change a
    // status (`UP` to `UP 2/3`) and make the two disagree for a reason this test is not about.
    let config = site(s1.addr(), s2.addr()).replace(HEALTH_CHECK, "");
    let fulcrum = Fulcrum::start(&config);
    let mut client = KeepAlive::connect(fulcrum.addr("main")).await;
    for _ in 0..5 {
        client.get("/", &[]).await.unwrap();
    }
    drop(client);
    let admin = fulcrum.admin_addr();
    let (code, headers, csv) =
        status_of(&["-u", "admin:s3cret", &format!("http://{admin}/stats;csv")]).await;
    assert_eq!(code, 200);
    // text/plain, as HAProxy serves it, so a browser shows it rather than downloading it.
    assert!(
        headers["content-type"][0].starts_with("text/plain"),
        "{headers:?}"
    );
    assert!(csv.starts_with("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,"));

    let mut reader = csv::ReaderBuilder::new().from_reader(csv.trim_start_matches("# ").as_bytes());
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let servers = servers(admin).await;
    for name in ["s1", "s2"] {
        let row = rows
            .iter()
            .find(|r| &r[column("pxname")] == "web" && &r[column("svname")] == name)
            .unwrap();
        let json = &servers[name];
        for key in [
            "stot", "bin", "bout", "scur", "smax", "hrsp_2xx", "lbtot", "weight",
        ] {
            assert_eq!(
                row[column(key)],
                json[key].to_string(),
                "{name} {key}: CSV and JSON agree"
            );
        }
        assert_eq!(&row[column("status")], json["status"].as_str().unwrap());
        assert_eq!(&row[column("type")], "2");
    }
    let stot: u64 = ["s1", "s2"]
        .iter()
        .map(|s| servers[*s]["stot"].as_u64().unwrap())
        .sum();
    assert_eq!(stot, 5, "every request counted once");
}

/// Runs `fulcrum ctl --socket SOCKET ARGS...`: (success, stdout, stderr).
fn ctl(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["ctl", "--socket", socket.to_str().unwrap()];
    all.extend_from_slice(args);
    support::fulcrum_command(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_client_that_stops_reading_its_answers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const REQUESTS: usize = 1000;
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let fulcrum = Fulcrum::start(&site(s1.addr(), s2.addr()));
    // A small receive window, and far more answers asked for than the buffers on the way hold.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(fulcrum.admin_addr()).await.unwrap();
    let requests = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(REQUESTS);
    stream.write_all(requests.as_bytes()).await.unwrap();
    // Past the 10 s without progress, the server gives up on this client.
    tokio::time::sleep(std::time::Duration::from_secs(13)).await;
    let mut answers = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answers),
    )
    .await;
    assert!(read.is_ok(), "still connected after 30 s more");
    let answered = answers.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
    assert!(
        answered < REQUESTS,
        "all {REQUESTS} answers were kept waiting for a client that did not read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_socket_client_that_sends_nothing_is_dropped_after_ten_seconds() {
    use tokio::io::AsyncReadExt;
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let fulcrum = Fulcrum::start(&site(s1.addr(), s2.addr()));
    let socket = fulcrum.control_socket();
    let mut silent = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let started = std::time::Instant::now();
    // Others are answered meanwhile.
    let (ok, _, err) = ctl(&socket, &["show", "servers", "state"]);
    assert!(ok, "{err}");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        silent.read_to_end(&mut rest),
    )
    .await;
    assert!(
        read.is_ok(),
        "the silent client is still connected after 30 s"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_drains_weighs_and_reports_like_the_runtime_api() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let fulcrum = Fulcrum::start(&site(s1.addr(), s2.addr()));
    let socket = fulcrum.control_socket();

    let (ok, out, err) = ctl(&socket, &["server", "set-state", "web/s1", "drain"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "web/s1: UP -> DRAIN");
    let (ok, out, _) = ctl(&socket, &["show", "servers", "state"]);
    assert!(ok);
    let s1_line = out.lines().find(|l| l.starts_with("web s1 ")).unwrap();
    // `DRAIN`, or `DRAIN_2/3` while a check that timed out under load is being counted.
    let status = s1_line.split(' ').nth(3).unwrap();
    assert!(status == "DRAIN" || status.starts_with("DRAIN_"), "{out}");

    // Drained: new clients all go to s2.
    let mut client = KeepAlive::connect(fulcrum.addr("main")).await;
    for _ in 0..6 {
        assert_eq!(client.get("/", &[]).await.unwrap().server(), "s2");
    }
    let (ok, out, err) = ctl(&socket, &["set", "server", "web/s1", "state", "ready"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "web/s1: DRAIN -> UP");

    let (ok, _, err) = ctl(&socket, &["set", "server", "web/s2", "weight", "0"]);
    assert!(ok, "{err}");
    for _ in 0..6 {
        assert_eq!(
            client.get("/", &[]).await.unwrap().server(),
            "s1",
            "weight 0 takes no new clients"
        );
    }
    fulcrum.wait_log(|l| l["user"].as_str().is_some_and(|u| u.starts_with("uid ")));

    let (ok, _, err) = ctl(&socket, &["set", "server", "web/s9", "state", "drain"]);
    assert!(!ok);
    assert!(err.contains("s9"), "{err}");
    let (ok, _, err) = ctl(&socket, &["set", "server", "web/s1", "weight", "300"]);
    assert!(!ok, "L7 weights stop at 256");
    assert!(err.contains("256"), "{err}");
    let (ok, _, err) = ctl(&socket, &["reboot"]);
    assert!(!ok);
    assert!(err.contains("try `help`"), "{err}");

    let (ok, csv, _) = ctl(&socket, &["show", "stat"]);
    assert!(ok);
    assert!(csv.starts_with("# pxname,svname,"));
    assert!(csv.lines().any(|l| l.starts_with("web,s2,")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_count_request_heads_and_bodies() {
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let fulcrum = Fulcrum::start(&site(s1.addr(), s2.addr()));
    let admin = fulcrum.admin_addr();
    let body = "x".repeat(5000);
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = support::raw_exchange(fulcrum.addr("main"), request.as_bytes()).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let rows = rows(admin).await;
    let row = |px: &str, sv: &str| {
        rows.iter()
            .find(|r| r["pxname"] == px && r["svname"] == sv)
            .unwrap()
            .clone()
    };
    assert_eq!(
        row("main", "FRONTEND")["bin"],
        request.len(),
        "the frontend counts every byte the client sent"
    );
    let served = if row("web", "s1")["stot"] == 1 {
        "s1"
    } else {
        "s2"
    };
    let to_server = row("web", served)["bin"].as_u64().unwrap();
    assert!(
        to_server > body.len() as u64,
        "the server's bin holds the head and the body: {to_server}"
    );
    assert_eq!(row("web", "BACKEND")["bin"], to_server);
}

// Input: `set server web/s1 state maint`, padded with spaces past the control socket's
// 1,024-byte limit, so the server reads it cut and without its newline. Output: refused, and
// s1 stays UP (the cut line used to be carried out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_request_cut_at_its_limit_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let fulcrum = Fulcrum::start(&site(s1.addr(), s2.addr()));
    let socket = fulcrum.control_socket();
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let request = format!("set server web/s1 state maint{}x\n", " ".repeat(1100));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.contains("ended by a newline"), "{answer}");
    assert_not_in_maint(&socket, "web s1 ");
}

// Input: the control socket opened to everyone (as it is for a moment between its creation and
// its chmod), and a request from uid 65534 (python3 run as nobody). Output: refused and logged;
// s1 stays UP. Needs root to run a process as another user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_client_of_another_user_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    if !can_run_as_nobody("connect as another user") {
        return;
    }
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let fulcrum = Fulcrum::start(&site(s1.addr(), s2.addr()));
    let socket = fulcrum.control_socket();
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(fulcrum.dir(), open).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                  s.sendall(b'set server web/s1 state maint\\n')\nprint(s.makefile().read())";
    let out = python_as_nobody(script, &[&socket]).output().unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("refused"),
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fulcrum.wait_log(|l| support::message(l) == "control socket: refused a client of another user");
    assert_not_in_maint(&socket, "web s1 ");
}

// Input: a socket at the control socket's path served by uid 65534 (python3 run as nobody), as
// another user could take `/tmp/fulcrum-UID.sock` first. Output: `fulcrum ctl` refuses to
// talk to it, and sends it nothing. Needs root to run a process as another user.
#[test]
fn ctl_does_not_talk_to_a_socket_of_another_user() {
    use std::os::unix::fs::PermissionsExt;
    if !can_run_as_nobody("serve a socket as another user") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("impostor.sock");
    let heard = dir.path().join("heard");
    let script = "import socket,sys,os\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1]+'.new')\n\
                  s.listen(1)\nos.rename(sys.argv[1]+'.new',sys.argv[1])\nc,_=s.accept()\nc.settimeout(2)\ntry:\n    data=c.recv(100)\n\
                  except Exception:\n    data=b''\nopen(sys.argv[2],'wb').write(data)\n\
                  c.sendall(b'all fine\\n')\n";
    let mut impostor = python_as_nobody(script, &[&socket, &heard])
        .spawn()
        .unwrap();
    wait_for_file(&socket);
    let (ok, out, err) = ctl(&socket, &["show", "servers", "state"]);
    let _ = impostor.wait();
    assert!(!ok, "ctl trusted the impostor: {out}");
    assert!(err.contains("neither root nor this user"), "{err}");
    let heard = std::fs::read(&heard).unwrap_or_default();
    assert!(heard.is_empty(), "the request was sent: {heard:?}");
}

// Input: as root, a socket served by uid 65534 (python3 run as nobody) in a directory that
// user owns and no one else may write, as an appliance run as its own user keeps it. Output:
// `fulcrum ctl` talks to it and prints its answer. Needs root.
#[test]
fn ctl_as_root_talks_to_an_appliance_run_as_its_own_user() {
    use std::os::unix::fs::PermissionsExt;
    if !can_run_as_nobody("serve a socket as another user") {
        return;
    }
    let outer = tempfile::tempdir().unwrap();
    std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = outer.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.join("fulcrum.sock");
    let script = "import socket,sys,os\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1]+'.new')\n\
                  s.listen(1)\nos.rename(sys.argv[1]+'.new',sys.argv[1])\nc,_=s.accept()\nc.recv(100)\nc.sendall(b'served\\n')\nc.close()\n";
    let mut appliance = python_as_nobody(script, &[&socket]).spawn().unwrap();
    wait_for_file(&socket);
    let (ok, out, err) = ctl(&socket, &["show", "servers", "state"]);
    let _ = appliance.wait();
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "served");
}

// Input: a control socket whose server reads the request and closes the connection without
// an answer, as a process that is stopping does. Output: `fulcrum ctl` fails (exit 1) and says
// so. (It printed nothing and exited 0, as if the action had been done.)
#[test]
fn ctl_fails_when_the_process_closes_without_an_answer() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fulcrum.sock");
    let binding = dir.path().join("fulcrum.sock.new");
    let listener = std::os::unix::net::UnixListener::bind(&binding).unwrap();
    std::fs::rename(&binding, &socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut line)
            .unwrap();
        line
    });
    let (ok, out, err) = ctl(&socket, &["set", "server", "web/s1", "state", "maint"]);
    assert_eq!(server.join().unwrap(), "set server web/s1 state maint\n");
    assert!(!ok, "ctl succeeded on no answer: {out}");
    assert!(err.contains("without an answer"), "{err}");
}

/// Whether this test can run a process as another user: root, with python3. Says why when it
/// skips (to do `what`); in CI, which runs as root, not being able to is a failure.
fn can_run_as_nobody(what: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() != 0) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: this test must run there"
        );
        eprintln!("SKIPPED: needs root to {what}");
        return false;
    }
    support::require_tool("python3")
}

/// `python3 -c script args...`, to run as uid and gid 65534 (nobody).
fn python_as_nobody(script: &str, args: &[&Path]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("python3");
    command
        .arg("-c")
        .arg(script)
        .args(args)
        .uid(65534)
        .gid(65534);
    command
}

/// Waits up to 5 s for `path` to exist.
fn wait_for_file(path: &Path) {
    for _ in 0..100 {
        if path.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The server whose `show servers state` line starts with `line_start` is not in MAINT (its
/// health may waver: the site's checks run meanwhile).
fn assert_not_in_maint(socket: &Path, line_start: &str) {
    let (ok, out, err) = ctl(socket, &["show", "servers", "state"]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with(line_start)).unwrap();
    assert!(!line.contains("MAINT"), "{out}");
}

// Input: `[admin]` and `[nrpe]` listening on 192.0.2.77, an address this host does not hold
// (a VIP, on the node that is BACKUP). Output: fulcrum starts, as it does with a frontend on
// such an address. (Both were bound without IP_FREEBIND: the start failed with
// EADDRNOTAVAIL, and the HA pair lost its standby.)
#[test]
fn admin_and_nrpe_start_on_a_vip_the_node_does_not_hold_yet() {
    let fulcrum = Fulcrum::start(
        "[admin]\nlisten = \"192.0.2.77:0\"\nusers = [{ name = \"admin\", password = \"s3cret\" }]\n\n\
         [nrpe]\nlisten = \"192.0.2.77:0\"\n",
    );
    let logs = fulcrum.logs();
    for what in ["admin", "nrpe"] {
        assert!(
            logs.iter().any(|l| l["message"]
                .as_str()
                .is_some_and(|m| m.contains(what) && m.contains("listening"))
                && l["addr"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("192.0.2.77:"))),
            "no {what} listener on 192.0.2.77: {logs:#?}"
        );
    }
}

// Input: `[admin]` and `[nrpe]` on fixed ports; a reload that moves each to a port another
// process holds. Output: the reload logs that each keeps serving with its previous section,
// and both still answer on their old ports. (The old servers were stopped first, the new binds
// failed, and the stats page, /metrics and the NRPE agent were gone until a restart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_taken_address_keeps_admin_and_nrpe_serving() {
    let (admin_addr, nrpe_addr) = (support::free_addr(), support::free_addr());
    let taken: Vec<_> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addr = |i: usize| taken[i].local_addr().unwrap();
    let config = |admin: SocketAddr, nrpe: SocketAddr| {
        format!("[admin]\nlisten = \"{admin}\"\n\n[nrpe]\nlisten = \"{nrpe}\"\n")
    };
    let fulcrum = Fulcrum::start(&config(admin_addr, nrpe_addr));
    fulcrum.write_config(&config(addr(0), addr(1)));
    fulcrum.reload();
    for what in ["admin server", "NRPE agent"] {
        fulcrum.wait_log(|l| {
            let m = support::message(l);
            m.contains(what) && m.contains("keeps serving with the previous one")
        });
    }
    let (code, _, _) = status_of(&[&format!("http://{admin_addr}/stats")]).await;
    assert_eq!(code, 200, "the stats page is gone");
    let nrpe = std::net::TcpStream::connect(nrpe_addr);
    assert!(nrpe.is_ok(), "the NRPE agent is gone: {nrpe:?}");
}

// Input: a frontend on one fixed port and a TCP virtual server on another, with `threads = 1`;
// a reload removes both and puts `[admin]` on the
// first port and `[nrpe]` on the second. Output: both start on them and answer. (The reload
// only told the old listeners to stop; their sockets closed when their tasks next ran, after
// the admin server and the NRPE agent had failed to bind: `Address already in use`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_can_give_a_removed_listeners_port_to_admin_and_nrpe() {
    let (l7_addr, l4_addr) = (support::free_addr(), support::free_addr());
    let dead = support::dead_addr();
    let fulcrum = Fulcrum::start_single_threaded(&format!(
        "[frontend.stats]\nbind = [\"{l7_addr}\"]\ndefault_backend = \"web\"\n\n\
             [backend.web]\nservers = [{{ name = \"s1\", address = \"{dead}\" }}]\n\n\
             [virtual_server.vs]\nlisten = \"{l4_addr}\"\nprotocol = \"tcp\"\n\
             real_servers = [{{ address = \"{dead}\" }}]\n"
    ));
    fulcrum.write_config(&format!(
        "[admin]\nlisten = \"{l7_addr}\"\n\n[nrpe]\nlisten = \"{l4_addr}\"\n"
    ));
    fulcrum.reload();
    fulcrum.wait_log(|l| {
        let m = support::message(l);
        m.contains("NRPE agent listening") || m.contains("not running")
    });
    let not_running: Vec<_> = (fulcrum.logs().into_iter())
        .filter(|l| support::message(l).contains("not running"))
        .collect();
    assert!(not_running.is_empty(), "{not_running:#?}");
    let (code, _, _) = status_of(&[&format!("http://{l7_addr}/stats")]).await;
    assert_eq!(code, 200, "the stats page is not served");
    let nrpe = std::net::TcpStream::connect(l4_addr);
    assert!(nrpe.is_ok(), "the NRPE agent is not listening: {nrpe:?}");
}

// Input: a WebSocket upgrade through the site, answered 101 by the origin and left open.
// Output: while the tunnel is open, the stats count its session on the backend as on the
// server (HAProxy's `scur` of both rows). (The backend's count dropped to 0 when the exchange
// became a tunnel, while the server's stayed at 1.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_tunnel_counts_as_a_backend_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (s1, s2) = (origin("s1").await, origin("s2").await);
    let fulcrum = Fulcrum::start(&site(s1.addr(), s2.addr()));
    let (mut stream, head) = support::upgrade(fulcrum.addr("main")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    stream.read_exact(&mut [0; 4]).await.unwrap();

    let rows = rows(fulcrum.admin_addr()).await;
    let scur = |sv: &str| -> u64 {
        rows.iter()
            .filter(|r| r["pxname"] == "web" && r["svname"] == sv)
            .map(|r| r["scur"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(scur("s1") + scur("s2"), 1, "the tunnel's server session");
    assert_eq!(scur("BACKEND"), 1, "the tunnel's backend session");
}
