//! UDP virtual services against `[global] max_connections`: every flow holds a socket, so flows
//! count against the limit as TCP connections do, and may take half of it at most; a datagram
//! that would open one more is dropped and counted instead of taking a file descriptor.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{net::SocketAddr, time::Duration};

use support::{Fulcrum, PATIENCE};
use tokio::{net::UdpSocket, time::Instant};

/// The largest payload one IPv4 datagram carries.
const LARGEST: usize = 65_507;

// Input: max_connections = 8, a UDP service and a TCP one; five UDP clients, then a TCP
// client; the UDP flows left to fall idle. Output: four flows (half the limit), the fifth
// client's datagram dropped, counted and logged; the TCP client served all the same; the fifth
// UDP client served once a flow has ended. (Flows could take the whole limit, and a flood of
// datagrams from made-up sources left TCP and HTTP no slot.)
#[tokio::test]
async fn udp_flows_beyond_their_half_of_max_connections_are_dropped_and_counted_until_one_ends() {
    let echo = Echo::start().await;
    let tcp_server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_real = tcp_server.local_addr().unwrap();
    let fulcrum = Fulcrum::start_with_max_connections(
        8,
        &format!(
            "[virtual_server.dns]\nlisten = \"127.0.0.1:0\"\nprotocol = \"udp\"\ntimeout = {{ idle = \"3s\" }}\nreal_servers = [{{ address = \"{}\" }}]\n\n\
             [virtual_server.db]\nlisten = \"127.0.0.1:0\"\nreal_servers = [{{ address = \"{tcp_real}\" }}]\n",
            echo.addr
        ),
    );
    let vip = fulcrum.virtual_server_addr("dns");

    // Four clients, four flows: half the limit. One of them sends the largest datagram, which
    // comes back whole through the thread's shared receive buffer.
    let mut held = Vec::new();
    for i in 0..4 {
        let client = client(vip).await;
        let payload = if i == 0 {
            vec![7; LARGEST]
        } else {
            format!("hello {i}").into_bytes()
        };
        assert_eq!(
            ask(&client, &payload, PATIENCE).await.as_deref(),
            Some(&payload[..])
        );
        held.push(client);
    }

    // A fifth client would open a fifth flow: its datagram is dropped.
    let fifth = client(vip).await;
    assert_eq!(
        ask(&fifth, b"let me in", Duration::from_millis(500)).await,
        None
    );
    let status = fulcrum.l4_status("dns");
    assert_eq!(status["flows_refused"], 1, "{status:#}");
    assert_eq!(
        status["connections"].as_array().unwrap().len(),
        4,
        "{status:#}"
    );
    assert!(
        fulcrum
            .logs()
            .iter()
            .any(|l| support::message(l).starts_with("udp flow refused")),
        "no log of the refusal"
    );

    // The other half is left to connections: a TCP client is relayed.
    let db = fulcrum.virtual_server_addr("db");
    let mut tcp = tokio::net::TcpStream::connect(db).await.unwrap();
    let (mut served, _) = tokio::time::timeout(PATIENCE, tcp_server.accept())
        .await
        .expect("the TCP client was not relayed while the UDP flows held their half")
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"q")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut served, &mut byte)
        .await
        .unwrap();
    assert_eq!(&byte, b"q");
    drop((tcp, served));

    // The held flows fall idle and end, freeing their slots: the fifth client gets in.
    let deadline = Instant::now() + PATIENCE;
    loop {
        if ask(&fifth, b"let me in", Duration::from_millis(300))
            .await
            .as_deref()
            == Some(b"let me in")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fifth client was never served"
        );
    }
}

// Input: a UDP service, not quiescent, over real servers `one` (127.0.0.1) and `two`
// (127.0.0.2), checked by TCP connects to a port of their address; a client whose flow went
// to `one`, and that keeps sending; then `one`'s check port closed. Output: once `one` is
// DOWN the client's datagrams reach `two`. (Every datagram renewed the flow's idle timeout, so
// the client stayed on the DOWN server for as long as it kept sending.)
#[tokio::test]
async fn a_udp_flow_leaves_a_server_that_goes_down_when_not_quiescent() {
    let (one, two) = (
        Echo::named("127.0.0.1", "one:").await,
        Echo::named("127.0.0.2", "two:").await,
    );
    let check_one = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = check_one.local_addr().unwrap().port();
    let _check_two = std::net::TcpListener::bind(("127.0.0.2", port)).unwrap();
    let fulcrum = Fulcrum::start(&format!(
        "[virtual_server.dns]\nlisten = \"127.0.0.1:0\"\nprotocol = \"udp\"\nscheduler = \"rr\"\n\
         quiescent = false\ntimeout = {{ idle = \"30s\" }}\n\
         health_check = {{ type = \"tcp\", port = {port}, interval = \"100ms\", timeout = \"100ms\", rise = 1, fall = 1 }}\n\
         real_servers = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\n",
        one.addr, two.addr
    ));
    let vip = fulcrum.virtual_server_addr("dns");
    let client = client(vip).await;
    let first = ask(&client, b"x", PATIENCE).await.unwrap();
    assert_eq!(first, b"one:x");

    drop(check_one);
    answered_by_two(&client, "DOWN").await;
}

// Input: a UDP service over real server `one`; a client whose flow went there and that keeps
// sending; then a reload that replaces `one` by `two`. Output: the client's datagrams reach
// `two`. (The flow kept going to the removed server for as long as the client kept sending,
// each datagram renewing its idle timeout.)
#[tokio::test]
async fn a_udp_flow_leaves_a_server_a_reload_removed() {
    let (one, two) = (
        Echo::named("127.0.0.1", "one:").await,
        Echo::named("127.0.0.1", "two:").await,
    );
    let service = |real: SocketAddr| {
        format!(
            "[virtual_server.dns]\nlisten = \"127.0.0.1:0\"\nprotocol = \"udp\"\nscheduler = \"rr\"\n\
             timeout = {{ idle = \"30s\" }}\nreal_servers = [{{ address = \"{real}\" }}]\n"
        )
    };
    let fulcrum = Fulcrum::start(&service(one.addr));
    let vip = fulcrum.virtual_server_addr("dns");
    let client = client(vip).await;
    assert_eq!(ask(&client, b"x", PATIENCE).await.unwrap(), b"one:x");

    fulcrum.write_config(&service(two.addr));
    assert!(fulcrum.reload());
    answered_by_two(&client, "removed").await;
}

// Input: a UDP service with `proxy_protocol = "v2"`; a client whose flow is open sends a
// datagram that fits the VIP but not the 28-byte PROXY header on top, then a small one.
// Output: the large one is dropped alone: the small one comes back over the same flow (one
// flow opened in all), and the real server counts no connect error. (The send's EMSGSIZE
// ended the flow and was charged to the healthy server as a connect error.)
#[tokio::test]
async fn a_datagram_too_large_for_its_proxy_header_is_dropped_alone() {
    let echo = Echo::start().await;
    let fulcrum = Fulcrum::start(&format!(
        "[virtual_server.dns]\nlisten = \"127.0.0.1:0\"\nprotocol = \"udp\"\nproxy_protocol = \"v2\"\n\
         real_servers = [{{ address = \"{}\" }}]\n",
        echo.addr
    ));
    let client = client(fulcrum.virtual_server_addr("dns")).await;
    let first = ask(&client, b"one", PATIENCE).await.unwrap();
    assert!(first.ends_with(b"one"), "{first:?}");
    assert_eq!(
        ask(&client, &vec![7; LARGEST], Duration::from_millis(500)).await,
        None
    );
    let after = ask(&client, b"two", PATIENCE).await.unwrap();
    assert!(after.ends_with(b"two"), "{after:?}");
    let status = fulcrum.l4_status("dns");
    let real = &status["real_servers"][0];
    assert_eq!(real["connect_errors"], 0, "{status:#}");
    assert_eq!(real["connections_total"], 1, "{status:#}");
}

/// A UDP server that sends every datagram back to its sender.
struct Echo {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    async fn start() -> Self {
        Self::named("127.0.0.1", "").await
    }

    /// An echo server on `ip` whose answers start with `name`.
    async fn named(ip: &str, name: &str) -> Self {
        let socket = UdpSocket::bind((ip, 0)).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let name = name.as_bytes().to_vec();
        let task = tokio::spawn(async move {
            let mut buf = vec![0; 65_536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let answer = [&name[..], &buf[..n]].concat();
                let _ = socket.send_to(&answer, from).await;
            }
        });
        Self { addr, task }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `x` from `client` until server `two` answers it (`two:x`), within `PATIENCE`; the
/// flow was on the server `left` describes.
async fn answered_by_two(client: &UdpSocket, left: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = ask(client, b"x", Duration::from_millis(300)).await;
        if answer.as_deref() == Some(b"two:x") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the flow stayed on the {left} server: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client socket of its own port, connected to `vip`.
async fn client(vip: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(vip).await.unwrap();
    socket
}

/// Sends `payload` and returns the reply, or `None` when none comes within `wait`.
async fn ask(socket: &UdpSocket, payload: &[u8], wait: Duration) -> Option<Vec<u8>> {
    socket.send(payload).await.unwrap();
    let mut buf = vec![0; 65_536];
    let n = tokio::time::timeout(wait, socket.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    buf.truncate(n);
    Some(buf)
}
