//! End-to-end tests of the process around the proxy: `fulcrum check`, hot reload on SIGHUP under
//! load (no request may fail), a broken reload changing nothing, listeners following the config,
//! and a graceful stop on SIGTERM that lets requests in flight finish.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use support::{Fulcrum, KeepAlive, get, message, origin};

/// Runs `fulcrum check -c path`.
fn check(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(["check", "-c"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn check_lists_every_error_with_its_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"[frontend.main]
bind = ["127.0.0.1:8080"]
use_backend = [{ backend = "uploads", if = "{ method POST }" }]
default_backend = "web"
colour = "blue"

[backend.web]
timeout = { connect = "5 fortnights" }
servers = [{ name = "s1", address = "127.0.0.1:8081" }]
"#,
    )
    .unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let shown = path.display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "three errors and a count: {err}");
    assert!(lines[0].starts_with(&format!("{shown}:3:")), "{err}");
    assert!(
        lines[0].contains("`frontend.main.use_backend[0].backend`")
            && lines[0].contains("`uploads`, which is not defined"),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{shown}:5:1: `frontend.main.colour`: unknown field `colour`"
        )),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!("{shown}:8:"))
            && lines[2].contains("timeout.connect")
            && lines[2].contains("invalid duration"),
        "{err}"
    );
    assert!(lines[3].ends_with("3 error(s)"), "{err}");

    std::fs::write(
        &path,
        "[frontend.main]\nbind = [\"127.0.0.1:8080\"]\ndefault_backend = \"web\"\n[backend.web]\nservers = [{ name = \"s1\", address = \"127.0.0.1:8081\" }]\n",
    )
    .unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(0));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(
        summary.contains("configuration is valid: 1 frontend(s), 1 backend(s), 1 server(s)"),
        "{summary}"
    );
}

#[test]
fn the_default_config_is_valid() {
    let out = check(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/etc/fulcrum.toml"
    )));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn site(servers: &[(&str, std::net::SocketAddr)], acl: &str, extra_frontend: bool) -> String {
    let mut config = format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
acl.special = "{acl}"
use_backend = [{{ backend = "special", if = "special" }}]
default_backend = "web"

[backend.web]
servers = {}

[backend.special]
servers = {}
"#,
        support::servers_list(servers),
        support::servers_list(&servers[0..1])
    );
    if extra_frontend {
        config
            .push_str("\n[frontend.extra]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"web\"\n");
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_no_request_and_a_broken_file_changes_nothing() {
    let s1 = origin("s1").await;
    let s2 = origin("s2").await;
    let s3 = origin("s3").await;
    let config_a = site(
        &[("s1", s1.addr()), ("s2", s2.addr())],
        "path_beg /special",
        false,
    );
    let config_b = site(
        &[("s1", s1.addr()), ("s2", s2.addr()), ("s3", s3.addr())],
        "path_beg /other",
        true,
    );
    let fulcrum = Fulcrum::start(&config_a);
    let addr = fulcrum.addr("main");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (stop, ok) = (Arc::clone(&stop), Arc::clone(&ok));
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut client = KeepAlive::connect(addr).await;
            while !stop.load(Ordering::Relaxed) {
                if !client.is_open() {
                    client = KeepAlive::connect(addr).await;
                }
                match client.get("/page", &[]).await {
                    Ok(reply) if reply.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(reply) => failures.push(format!("status {}", reply.status)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }));
    }

    for i in 0..20 {
        let config = if i % 2 == 0 { &config_b } else { &config_a };
        fulcrum.write_config(config);
        assert!(fulcrum.reload(), "reload {i} applied");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // After an even number of reloads config A is back: s3 is gone, ACL matches /special.
    assert_eq!(get(addr, "/special", &[]).await.server(), "s1");

    // A broken file: refused, every error logged, and traffic goes on as before.
    let before = fulcrum.log_len();
    fulcrum.write_config(&format!(
        "{config_a}\n[backend.web2]\nservers = 3\nbalance = \"nope\"\n"
    ));
    assert!(!fulcrum.reload(), "the broken reload was refused");
    let refusal = fulcrum.wait_log_from(before, |l| {
        message(l).starts_with("reload refused, keeping")
    });
    assert_eq!(refusal["count"], 1, "{refusal}");
    assert!(fulcrum.logs()[before..].iter().any(|l| {
        l["error"]
            .as_str()
            .is_some_and(|e| e.contains("backend.web2.servers"))
    }));
    assert_eq!(get(addr, "/special", &[]).await.server(), "s1");

    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "failed requests during reloads: {failures:?}"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "the clients kept sending: {}",
        ok.load(Ordering::Relaxed)
    );
    assert!(
        s3.request_count() > 0,
        "the added server took traffic while configured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_listeners() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&site(&[("s1", s1.addr())], "path /x", false));
    fulcrum.write_config(&site(&[("s1", s1.addr())], "path /x", true));
    assert!(fulcrum.reload());
    let extra = fulcrum.addr("extra");
    assert_eq!(get(extra, "/", &[]).await.status, 200);
    fulcrum.write_config(&site(&[("s1", s1.addr())], "path /x", false));
    assert!(fulcrum.reload());
    fulcrum.wait_log(|l| message(l) == "listener closed" && l["frontend"] == "extra");
    // The accept loop drops its socket as soon as it sees the stop; give it that moment.
    support::wait_until_refused(extra).await;
    assert_eq!(get(fulcrum.addr("main"), "/", &[]).await.status, 200);
}

// Input: a client of the `extra` frontend sends half of a POST's head; a reload removes the
// frontend; the client sends the rest. Output: a 503 (the request was not acted on, so the
// client may send it again) with `connection: close`, logged `PR`. (The connection was closed
// without an answer, which a client cannot tell from a response lost after the server acted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_frontend_a_reload_removed_mid_head_gets_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&site(&[("s1", s1.addr())], "path /x", true));
    let mut client = tokio::net::TcpStream::connect(fulcrum.addr("extra"))
        .await
        .unwrap();
    client.write_all(b"POST /pay HTTP/1.1\r\n").await.unwrap();
    fulcrum.write_config(&site(&[("s1", s1.addr())], "path /x", false));
    assert!(fulcrum.reload());
    client
        .write_all(b"Host: h\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(support::PATIENCE, client.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply:?}");
    assert!(reply.contains("connection: close"), "{reply}");
    assert_eq!(s1.request_count(), 0);
    let logged = fulcrum.wait_access_logs(1);
    assert_eq!(
        &logged[0]["termination"].as_str().unwrap()[..2],
        "PR",
        "{logged:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_lets_requests_in_flight_finish() {
    let s1 = origin("s1").await;
    let mut fulcrum = Fulcrum::start(&site(&[("s1", s1.addr())], "path /x", false));
    let addr = fulcrum.addr("main");
    let in_flight = tokio::spawn(async move { get(addr, "/delay/2000", &[]).await });
    support::wait_origin_requests(&s1, 1).await;
    fulcrum.signal(libc::SIGTERM);
    fulcrum.wait_log(|l| message(l).starts_with("stopping"));
    support::wait_until_refused(addr).await;
    assert!(
        !in_flight.is_finished(),
        "the listener closed while the request was still in flight"
    );
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "the request in flight finished");
    let status = tokio::task::spawn_blocking(move || fulcrum.wait_exit())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_server_health_for_servers_that_stay() {
    let s1 = origin("s1").await;
    let dead = support::dead_addr();
    let config = |acl: &str| {
        format!(
            r#"
[frontend.main]
bind = ["127.0.0.1:0"]
acl.x = "{acl}"
use_backend = [{{ backend = "web", if = "x" }}]
default_backend = "web"

[backend.web]
health_check = {{ type = "tcp", interval = "100ms", fall = 1, rise = 50 }}
servers = [{{ name = "s1", address = "{}" }}, {{ name = "dead", address = "{dead}" }}]
"#,
            s1.addr()
        )
    };
    let fulcrum = Fulcrum::start(&config("path /a"));
    fulcrum.wait_log(|l| message(l) == "server is DOWN" && l["server"] == "dead");
    fulcrum.write_config(&config("path /b"));
    assert!(fulcrum.reload());
    // With rise = 50 the dead server could only be UP again if the reload had reset its health;
    // every request therefore lands on s1, with no 503 from a connect to the dead one.
    let mut client = KeepAlive::connect(fulcrum.addr("main")).await;
    for _ in 0..20 {
        let reply = client.get("/", &[]).await.unwrap();
        assert_eq!((reply.status, reply.server()), (200, "s1"));
    }
    let downs = fulcrum
        .logs()
        .iter()
        .filter(|l| message(l) == "server is DOWN")
        .count();
    assert_eq!(
        downs, 1,
        "the server went DOWN once, not again after the reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_can_hand_an_address_to_another_frontend() {
    let s1 = origin("s1").await;
    let addr = support::dead_addr(); // a free port, fixed so both configs bind the same address
    let config = |frontend: &str| {
        format!(
            "[frontend.{frontend}]\nbind = [\"{addr}\"]\ndefault_backend = \"web\"\n\n[backend.web]\nservers = [{{ name = \"s1\", address = \"{}\" }}]\n",
            s1.addr()
        )
    };
    let fulcrum = Fulcrum::start(&config("old_name"));
    let mut client = KeepAlive::connect(addr).await;
    assert_eq!(client.get("/", &[]).await.unwrap().status, 200);
    fulcrum.write_config(&config("new_name"));
    assert!(
        fulcrum.reload(),
        "renaming the frontend that binds an address is no bind conflict"
    );
    // The connection opened before the reload serves its next request on the new table.
    assert_eq!(client.get("/after", &[]).await.unwrap().status, 200);
    assert_eq!(get(addr, "/fresh", &[]).await.status, 200);
    let frontends: Vec<String> = fulcrum
        .wait_access_logs(3)
        .iter()
        .map(|l| l["frontend"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(frontends, ["old_name", "new_name", "new_name"]);
}

// Input: a frontend with `max_connections = 1`, full with one kept-alive client; a reload that
// renames it (same address, a limit of its own), then a new client. Output: the new client is
// served while the first stays connected. (The address kept waiting for room under the old
// frontend's limit, so nothing was accepted until the first client left.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_frontend_accepts_under_its_own_limit() {
    let s1 = origin("s1").await;
    let addr = support::dead_addr();
    let config = |frontend: &str| {
        format!(
            "[frontend.{frontend}]\nbind = [\"{addr}\"]\nmax_connections = 1\ndefault_backend = \"web\"\n\n[backend.web]\nservers = [{{ name = \"s1\", address = \"{}\" }}]\n",
            s1.addr()
        )
    };
    let fulcrum = Fulcrum::start(&config("old_name"));
    let mut first = KeepAlive::connect(addr).await;
    assert_eq!(first.get("/", &[]).await.unwrap().status, 200);
    fulcrum.write_config(&config("new_name"));
    assert!(fulcrum.reload());
    let second = tokio::time::timeout(Duration::from_secs(5), get(addr, "/second", &[]))
        .await
        .expect("no room under the renamed frontend's own limit");
    assert_eq!(second.status, 200);
    assert_eq!(first.get("/again", &[]).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stop_signal_closes_at_once() {
    let s1 = origin("s1").await;
    let mut fulcrum =
        Fulcrum::start(&site(&[("s1", s1.addr())], "path /x", false).replace("grace = \"5s\"", ""));
    let addr = fulcrum.addr("main");
    let in_flight = tokio::spawn(async move {
        KeepAlive::connect(addr)
            .await
            .get("/delay/10000", &[])
            .await
    });
    support::wait_origin_requests(&s1, 1).await;
    let started = std::time::Instant::now();
    fulcrum.signal(libc::SIGTERM);
    fulcrum.wait_log(|l| message(l).starts_with("stopping"));
    fulcrum.signal(libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || fulcrum.wait_exit())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "did not wait out the 5s grace period"
    );
    assert!(
        in_flight.await.unwrap().is_err(),
        "the request in flight was cut"
    );
}

// Input: a reload that changes `[global] grace`, read at start only; then one that changes
// `max_connections` alone. Output: the first logs that `[global]` keeps its running values
// until a restart (it used to say only "reloaded"); the second, which a reload applies, does
// not.
// Input: Fulcrum started with `log.format = "json"`, then reloaded with `"text"`, then a request.
// Output: its access record still comes as JSON with its own fields (`client`, `status`), as
// the log keeps its running format until a restart. (The records switched to text at once, and
// came out as a text line inside the running JSON log, without their fields.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_leaves_the_access_log_in_its_running_format() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&site(&[("s1", s1.addr())], "path_beg /x", false));
    let written = std::fs::read_to_string(fulcrum.config_path()).unwrap();
    let text = written.replacen("format = \"json\"", "format = \"text\"", 1);
    assert_ne!(text, written);
    std::fs::write(fulcrum.config_path(), text).unwrap();
    assert!(fulcrum.reload());
    let reply = get(fulcrum.addr("main"), "/after-reload", &[]).await;
    assert_eq!(reply.status, 200);
    let record =
        fulcrum.wait_log(|l| l["target"] == "access" && message(l).contains("/after-reload"));
    assert_eq!(record["status"], 200, "{record}");
    assert!(record["client"].is_string(), "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_says_which_global_settings_wait_for_a_restart() {
    let s1 = origin("s1").await;
    let fulcrum = Fulcrum::start(&site(&[("s1", s1.addr())], "path_beg /x", false));
    let written = std::fs::read_to_string(fulcrum.config_path()).unwrap();
    let warning = |l: &serde_json::Value| message(l).starts_with("[global] changed");
    let graceful = written.replacen("grace = \"5s\"", "grace = \"7s\"", 1);
    assert_ne!(graceful, written);
    std::fs::write(fulcrum.config_path(), graceful).unwrap();
    let from = fulcrum.log_len();
    assert!(fulcrum.reload());
    // It follows the `reloaded` line that `reload` waits for.
    fulcrum.wait_log_from(from, warning);

    let limited = written.replacen("max_connections = 1000", "max_connections = 500", 1);
    assert_ne!(limited, written);
    std::fs::write(fulcrum.config_path(), &limited).unwrap();
    let from = fulcrum.log_len();
    assert!(fulcrum.reload());
    // Then a reload that warns: once its warning is in, one from the reload before would be
    // too, however late it came.
    let regraced = limited.replacen("grace = \"5s\"", "grace = \"9s\"", 1);
    assert_ne!(regraced, limited);
    std::fs::write(fulcrum.config_path(), regraced).unwrap();
    assert!(fulcrum.reload());
    fulcrum.wait_log_from(from, warning);
    assert_eq!(
        fulcrum.logs()[from..].iter().filter(|l| warning(l)).count(),
        1,
        "max_connections is applied by a reload"
    );
}
