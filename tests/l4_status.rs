//! `fulcrum status l4` against a running process: the `ipvsadm -L -n` table, `--stats`,
//! `--connections` and `--json` show the connections a test holds open, read over the control
//! socket.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::process::Command;

use support::{Fulcrum, KeepAlive, origin};

/// Runs `fulcrum status l4 ARGS` for `fulcrum`'s config; returns (success, stdout, stderr).
fn status(fulcrum: &Fulcrum, args: &[&str]) -> (bool, String, String) {
    let config = fulcrum.config_path();
    let mut all = vec!["status", "l4", "-c", config.to_str().unwrap()];
    all.extend_from_slice(args);
    support::fulcrum_command(all)
}

/// The whitespace-separated fields of the table line for real server `addr`.
fn server_line(table: &str, addr: std::net::SocketAddr) -> Vec<String> {
    let needle = format!("-> {addr}");
    table
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no line for {addr} in\n{table}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn status_l4_lists_services_servers_and_the_connections_held_open() {
    let (a, b) = (origin("a").await, origin("b").await);
    let fulcrum = Fulcrum::start(&format!(
        r#"
[virtual_server.web]
listen = "127.0.0.1:0"
scheduler = "wrr"
persistence = "60s"
real_servers = [{{ address = "{}", weight = 3 }}, {{ address = "{}", weight = 1 }}]
"#,
        a.addr(),
        b.addr()
    ));
    let vip = fulcrum.virtual_server_addr("web");
    // One client address and persistence: both connections land on one server and stay open.
    let mut first = KeepAlive::connect(vip).await;
    let mut second = KeepAlive::connect(vip).await;
    let served_by = first.get("/", &[]).await.unwrap().server().to_owned();
    assert_eq!(second.get("/", &[]).await.unwrap().server(), served_by);
    let (held, idle) = if served_by == "a" {
        (a.addr(), b.addr())
    } else {
        (b.addr(), a.addr())
    };

    let (ok, table, err) = status(&fulcrum, &[]);
    assert!(ok, "{err}");
    assert!(
        table.contains(&format!("TCP  {vip} wrr persistent 60 (web)")),
        "{table}"
    );
    let weight = |addr| if addr == a.addr() { "3" } else { "1" };
    assert_eq!(
        server_line(&table, held)[1..],
        [
            held.to_string().as_str(),
            "Masq",
            weight(held),
            "2",
            "0",
            "UP"
        ],
        "{table}"
    );
    assert_eq!(
        server_line(&table, idle)[1..],
        [
            idle.to_string().as_str(),
            "Masq",
            weight(idle),
            "0",
            "0",
            "UP"
        ],
        "{table}"
    );

    let (ok, stats, _) = status(&fulcrum, &["--stats"]);
    assert!(ok);
    assert_eq!(
        server_line(&stats, held)[2],
        "2",
        "two connections: {stats}"
    );

    let (ok, conns, _) = status(&fulcrum, &["--connections"]);
    assert!(ok);
    let lines: Vec<&str> = conns.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{conns}");
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], "TCP");
        assert_eq!(fields[2], "ESTABLISHED");
        assert_eq!(fields[4], vip.to_string());
        assert_eq!(fields[5], held.to_string());
    }

    let (ok, json, _) = status(&fulcrum, &["--json"]);
    assert!(ok);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value[0]["name"], "web");
    assert_eq!(value[0]["persistent_clients"], 1);
    drop((first, second));
}

#[test]
fn status_l4_says_when_no_process_answers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(["status", "l4", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach a running fulcrum at") && stderr.contains("nobody.sock"),
        "{stderr}"
    );
}

// Input: a TCP service whose real server holds its connection open, a client that sends a
// byte and then half-closes (its FIN); and a UDP service with one flow answered. Output: the
// TCP connection shows as InActConn once the FIN went through, the UDP flow as InActConn
// throughout, as ipvsadm shows them (IPVS counts FIN_WAIT/CLOSE_WAIT and every UDP entry
// inactive). (Both showed as ActiveConn, and lc/wlc weighed them 256 times as much.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_connection_and_a_udp_flow_count_as_inactive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let holder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_real = holder.local_addr().unwrap();
    let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_real = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0; 512];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let fulcrum = Fulcrum::start(&format!(
        r#"
[virtual_server.tcp]
listen = "127.0.0.1:0"
real_servers = [{{ address = "{tcp_real}" }}]

[virtual_server.udp]
listen = "127.0.0.1:0"
protocol = "udp"
real_servers = [{{ address = "{udp_real}" }}]
"#
    ));
    let mut client = tokio::net::TcpStream::connect(fulcrum.virtual_server_addr("tcp"))
        .await
        .unwrap();
    let (mut held, _) = holder.accept().await.unwrap();
    client.write_all(b"x").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    // The server sees the byte, then the FIN: the relay passed the half-close on.
    held.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"x");

    let flow = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    flow.connect(fulcrum.virtual_server_addr("udp"))
        .await
        .unwrap();
    flow.send(b"query").await.unwrap();
    let mut answer = [0; 16];
    let n = tokio::time::timeout(support::PATIENCE, flow.recv(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&answer[..n], b"query");

    let counts = |table: &str, real| server_line(table, real)[4..6].to_vec();
    let (ok, table, err) = status(&fulcrum, &[]);
    assert!(ok, "{err}");
    assert_eq!(counts(&table, tcp_real), ["0", "1"], "{table}");
    assert_eq!(counts(&table, udp_real), ["0", "1"], "{table}");
    drop((client, held));
}
