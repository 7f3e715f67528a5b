//! End-to-end tests of the L4 tier: `[virtual_server.*]` services relaying TCP on loopback to
//! real servers, one test per IPVS scheduler showing its defining decision, then persistence,
//! health (quiescent or not), the fallback server, reloads and the no-server reset.
//!
//! Real servers are `fulcrum-bench` origins (an HTTP client through the service reads the
//! answering server's `X-Server`), or, where a test must close a server's listener while its
//! connections live on, [`EchoServer`]s that greet each connection with their name. A connection
//! "held" is one with a request answered on it and kept open: the service counts it as active on
//! its real server, which is what the least-connection schedulers read. Clients pick their source
//! address (any of 127/8 is local) for `sh`, `mh` and persistence, and services listening on
//! `0.0.0.0` see which 127/8 address a client dialled, for `dh`, `lblc` and `lblcr`.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use fulcrum_bench::origin::Origin;
use support::{Fulcrum, KeepAlive, PATIENCE, get, message, origin};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpSocket, TcpStream},
    task::JoinHandle,
};

// ---------- schedulers ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrr_with_weights_3_to_1_splits_400_connections_300_to_100() {
    let a = origin("a").await;
    let b = origin("b").await;
    let fulcrum = Fulcrum::start(&simple("scheduler = \"wrr\"", &[(&a, 3), (&b, 1)]));
    let vs = fulcrum.virtual_server_addr("vs");

    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..400 {
        *counts.entry(ask(vs, None).await).or_default() += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([("a".to_owned(), 300), ("b".to_owned(), 100)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_sends_new_connections_to_the_servers_with_fewest_active_ones() {
    let (a, b, c) = (origin("A").await, origin("B").await, origin("C").await);
    // B and C start quiesced (weight 0), so the first connections can only go to A.
    let fulcrum = Fulcrum::start(&simple("scheduler = \"lc\"", &[(&a, 1), (&b, 0), (&c, 0)]));
    let vs = fulcrum.virtual_server_addr("vs");
    let (on_a, _held_a) = hold_n(vs, None, 4).await;
    assert_eq!(seq(&on_a), "AAAA");

    fulcrum.write_config(&simple("scheduler = \"lc\"", &[(&a, 1), (&b, 1), (&c, 1)]));
    assert!(fulcrum.reload());
    // A holds 4: the next 8 go to B and C, each to whichever has fewer (ties to the first
    // listed), and only once all three hold 4 does A get one again. Round robin would have
    // given A every third.
    let (next, _held) = hold_n(vs, None, 9).await;
    assert_eq!(seq(&next), "BCBCBCBCA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wlc_sends_new_connections_to_the_least_active_per_weight() {
    let (a, b) = (origin("A").await, origin("B").await);
    let fulcrum = Fulcrum::start(&simple("scheduler = \"wlc\"", &[(&a, 1), (&b, 0)]));
    let vs = fulcrum.virtual_server_addr("vs");
    let (on_a, _held_a) = hold_n(vs, None, 4).await;
    assert_eq!(seq(&on_a), "AAAA");

    fulcrum.write_config(&simple("scheduler = \"wlc\"", &[(&a, 1), (&b, 2)]));
    assert!(fulcrum.reload());
    // A: 4 active / weight 1 = 4. B (weight 2) takes every new connection while k/2 < 4, so 8 of
    // them; at 8/2 = 4 the tie goes to A, listed first. Plain `lc` would have gone back to A
    // after 4.
    let (next, _held) = hold_n(vs, None, 9).await;
    assert_eq!(seq(&next), "BBBBBBBBA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sed_counts_the_new_connection_in_the_expected_delay() {
    let (a, b) = (origin("A").await, origin("B").await);
    let fulcrum = Fulcrum::start(&simple("scheduler = \"sed\"", &[(&a, 5), (&b, 2)]));
    let vs = fulcrum.virtual_server_addr("vs");
    // (active + 1) / weight, no ties: A 1/5 < B 1/2; A 2/5 < B 1/2 although B is idle (nq and
    // wlc would pick idle B here); A 3/5 > B 1/2; A 3/5 < B 2/2; A 4/5 < B 2/2.
    let (names, _held) = hold_n(vs, None, 5).await;
    assert_eq!(seq(&names), "AABAA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nq_gives_an_idle_server_the_connection_even_with_a_lower_weight() {
    let (a, b) = (origin("A").await, origin("B").await);
    let fulcrum = Fulcrum::start(&simple("scheduler = \"nq\"", &[(&a, 4), (&b, 1)]));
    let vs = fulcrum.virtual_server_addr("vs");
    // 1: both idle, the first listed. 2: B is idle, so B, although sed says A (2/4 < 1/1).
    // 3..7: nobody idle, so sed: A's (a + 1) / 4 stays at most 6/4 < B's 2/1 (wlc would have
    // sent the 7th to B, at 5/4 > 1/1).
    let (names, _held) = hold_n(vs, None, 7).await;
    assert_eq!(seq(&names), "ABAAAAA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sh_keeps_each_client_address_on_one_server_and_spreads_addresses() {
    let (a, b, c) = (origin("A").await, origin("B").await, origin("C").await);
    let fulcrum = Fulcrum::start(&simple("scheduler = \"sh\"", &[(&a, 1), (&b, 1), (&c, 1)]));
    let vs = fulcrum.virtual_server_addr("vs");

    let clients: Vec<IpAddr> = (2..26).map(|d| ip(127, 0, 0, d)).collect();
    let mut seen: HashMap<IpAddr, String> = HashMap::new();
    // Twice in a row, in two rounds: round robin would move an address at once.
    for round in 0..2 {
        for &client in &clients {
            for _ in 0..2 {
                let server = ask(vs, Some(client)).await;
                let first = seen.entry(client).or_insert_with(|| server.clone());
                assert_eq!(*first, server, "client {client} moved in round {round}");
            }
        }
    }
    let mut per_server: BTreeMap<&str, u32> = BTreeMap::new();
    for server in seen.values() {
        *per_server.entry(server).or_default() += 1;
    }
    println!("sh: clients per server {per_server:?}");
    assert_eq!(per_server.len(), 3, "24 addresses reach all 3 servers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dh_keeps_each_destination_address_on_one_server() {
    let (a, b, c) = (origin("A").await, origin("B").await, origin("C").await);
    let reals = [(a.addr(), 1, 0), (b.addr(), 1, 0), (c.addr(), 1, 0)];
    let fulcrum = Fulcrum::start(&service("0.0.0.0:0", "scheduler = \"dh\"", &reals));
    let port = fulcrum.virtual_server_addr("vs").port();

    let destinations: Vec<SocketAddr> = (1..25)
        .map(|d| SocketAddr::new(ip(127, 0, 0, d), port))
        .collect();
    let mut seen: HashMap<SocketAddr, String> = HashMap::new();
    // Twice in a row, in two rounds: round robin would move an address at once.
    for round in 0..2 {
        for &destination in &destinations {
            for _ in 0..2 {
                let server = ask(destination, None).await;
                let first = seen.entry(destination).or_insert_with(|| server.clone());
                assert_eq!(*first, server, "{destination} moved in round {round}");
            }
        }
    }
    let mut per_server: BTreeMap<&str, u32> = BTreeMap::new();
    for server in seen.values() {
        *per_server.entry(server).or_default() += 1;
    }
    println!("dh: destinations per server {per_server:?}");
    assert_eq!(per_server.len(), 3, "24 destinations reach all 3 servers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lblc_keeps_a_destination_on_its_server_until_overloaded_then_moves_it() {
    let (a, b) = (origin("A").await, origin("B").await);
    let reals = [(a.addr(), 4, 0), (b.addr(), 4, 0)];
    let fulcrum = Fulcrum::start(&service("0.0.0.0:0", "scheduler = \"lblc\"", &reals));
    let destination = SocketAddr::new(ip(127, 0, 0, 2), fulcrum.virtual_server_addr("vs").port());

    // The destination sticks to A while B is idle (wlc would alternate), up to A's weight of 4
    // active connections; with 5 active (more than its weight) while B is below half of its own,
    // A is overloaded and the destination moves to B. From then on it sticks to B, even past A's
    // load: B never counts as overloaded while A is not below half of its weight.
    let (names, _held) = hold_n(destination, None, 12).await;
    assert_eq!(seq(&names), "AAAAABBBBBBB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lblcr_adds_a_server_to_an_overloaded_destination_and_uses_both() {
    let (a, b) = (origin("A").await, origin("B").await);
    // Weights high enough that only A's upper threshold (3 connections) makes it overloaded.
    let reals = [(a.addr(), 100, 3), (b.addr(), 100, 0)];
    let fulcrum = Fulcrum::start(&service("0.0.0.0:0", "scheduler = \"lblcr\"", &reals));
    let destination = SocketAddr::new(ip(127, 0, 0, 2), fulcrum.virtual_server_addr("vs").port());

    // The destination's set is {A} until A holds 3; then B joins the set and takes the next ones.
    let (mut names, mut held) = hold_n(destination, None, 5).await;
    assert_eq!(seq(&names), "AAABB");
    // A back below its lower threshold (three quarters of 3, as IPVS's default): the
    // destination's set holds both servers, so its next connection goes to the less loaded of
    // them, A. (lblc would have stuck to one server.)
    for _ in 0..2 {
        let on_a = names.iter().zip(&held).position(|(n, _)| n == "A").unwrap();
        held.remove(on_a);
        names.remove(on_a);
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (server, conn) = hold(destination, None).await;
        if server == "A" {
            break;
        }
        assert_eq!(server, "B");
        // Until the closed connections are counted out, A is still overloaded.
        held.push(conn);
        assert!(
            Instant::now() < deadline,
            "the destination never went back to A"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mh_moves_only_the_removed_servers_clients_when_a_server_leaves() {
    let origins = [
        origin("A").await,
        origin("B").await,
        origin("C").await,
        origin("D").await,
    ];
    let all: Vec<(&Origin, u32)> = origins.iter().map(|o| (o, 1)).collect();
    let fulcrum = Fulcrum::start(&simple("scheduler = \"mh\"", &all));
    let vs = fulcrum.virtual_server_addr("vs");

    let clients: Vec<IpAddr> = (0..200u32)
        .map(|i| ip(127, 1, (i / 100) as u8, (i % 100 + 1) as u8))
        .collect();
    let mut before = Vec::new();
    for &client in &clients {
        before.push(ask(vs, Some(client)).await);
    }
    for (client, server) in clients.iter().zip(&before).take(20) {
        assert_eq!(
            ask(vs, Some(*client)).await,
            *server,
            "{client} is hashed to one server"
        );
    }
    for o in &origins {
        assert!(
            before.iter().any(|s| s == o.name()),
            "some clients reach {}",
            o.name()
        );
    }

    fulcrum.write_config(&simple("scheduler = \"mh\"", &all[..3]));
    assert!(fulcrum.reload());
    let mut after = Vec::new();
    for &client in &clients {
        after.push(ask(vs, Some(client)).await);
    }

    assert!(after.iter().all(|s| s != "D"), "D was removed");
    let stayed: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|(b, _)| *b != "D")
        .collect();
    let moved = stayed.iter().filter(|(b, a)| b != a).count();
    let share = moved as f64 / stayed.len() as f64;
    println!(
        "mh: {moved} of {} clients of the remaining servers moved ({:.1}%); {} clients of D moved",
        stayed.len(),
        share * 100.0,
        before.len() - stayed.len()
    );
    assert!(share < 0.10, "{moved} of {} moved", stayed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_keeps_a_client_on_its_server_where_rr_would_alternate() {
    let (a, b) = (origin("A").await, origin("B").await);
    let fulcrum = Fulcrum::start(&simple(
        "scheduler = \"rr\"\npersistence = \"300s\"",
        &[(&a, 1), (&b, 1)],
    ));
    let vs = fulcrum.virtual_server_addr("vs");
    let (one, two) = (ip(127, 0, 0, 2), ip(127, 0, 0, 3));

    let mut first = Vec::new();
    for _ in 0..6 {
        first.push(ask(vs, Some(one)).await);
    }
    assert_eq!(seq(&first), "AAAAAA", "one client, one server");
    // The next client gets the next server in round-robin order, and keeps it too.
    let mut second = Vec::new();
    for _ in 0..6 {
        second.push(ask(vs, Some(two)).await);
        first.push(ask(vs, Some(one)).await);
    }
    assert_eq!(seq(&second), "BBBBBB");
    assert!(first.iter().all(|s| s == "A"), "{first:?}");

    // The same service without persistence alternates for one client.
    fulcrum.write_config(&simple("scheduler = \"rr\"", &[(&a, 1), (&b, 1)]));
    assert!(fulcrum.reload());
    let mut without = Vec::new();
    for _ in 0..4 {
        without.push(ask(vs, Some(one)).await);
    }
    assert!(
        without.contains(&"A".to_owned()) && without.contains(&"B".to_owned()),
        "{without:?}"
    );
}

// Input: rr with persistence and `persistence_netmask = "255.255.255.0"` (`ipvsadm -M`);
// clients from 127.0.0.2, 127.0.0.3 and 127.0.0.200 (one /24), then from 127.0.1.2. Output:
// the whole /24 shares A, as one client would; the other network gets B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistence_netmask_keeps_a_client_network_on_one_server() {
    let (a, b) = (origin("A").await, origin("B").await);
    let fulcrum = Fulcrum::start(&simple(
        "scheduler = \"rr\"\npersistence = \"300s\"\npersistence_netmask = \"255.255.255.0\"",
        &[(&a, 1), (&b, 1)],
    ));
    let vs = fulcrum.virtual_server_addr("vs");
    let mut network = Vec::new();
    for _ in 0..2 {
        for last in [2, 3, 200] {
            network.push(ask(vs, Some(ip(127, 0, 0, last))).await);
        }
    }
    assert_eq!(seq(&network), "AAAAAA", "one network, one server");
    assert_eq!(ask(vs, Some(ip(127, 0, 1, 2))).await, "B");
}

// ---------- health, fallback, reload ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiescent_server_going_down_keeps_its_connections_and_gets_no_new_ones() {
    let (a, b) = (EchoServer::start("A").await, EchoServer::start("B").await);
    let fulcrum = Fulcrum::start(&service(
        "127.0.0.1:0",
        &format!("scheduler = \"rr\"\nquiescent = true\n{TCP_CHECK}"),
        &[(a.addr, 1, 0), (b.addr, 1, 0)],
    ));
    let vs = fulcrum.virtual_server_addr("vs");
    let mut held = EchoClient::connect(vs).await;
    assert_eq!(held.server, "A");
    assert_eq!(held.round_trip("before").await.unwrap(), "before");

    a.close_listener().await;
    wait_down(&fulcrum, a.addr);

    assert_eq!(
        held.round_trip("after").await.unwrap(),
        "after",
        "a quiescent server's connection lives on"
    );
    for _ in 0..4 {
        assert_eq!(EchoClient::connect(vs).await.server, "B");
    }
    assert_eq!(held.round_trip("still").await.unwrap(), "still");
}

// Input: a quiescent service, a connection held to A, A DOWN (the connection lives on), then a
// reload that turns quiescent off. Output: the connection is reset, as ldirectord reloaded with
// `quiescent = no` takes a failed server out of IPVS. (It lived on: a connection read the
// setting once, when it opened.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turning_quiescent_off_resets_the_connections_of_a_down_server() {
    let (a, b) = (EchoServer::start("A").await, EchoServer::start("B").await);
    let config = |quiescent: bool| {
        service(
            "127.0.0.1:0",
            &format!("scheduler = \"rr\"\nquiescent = {quiescent}\n{TCP_CHECK}"),
            &[(a.addr, 1, 0), (b.addr, 1, 0)],
        )
    };
    let fulcrum = Fulcrum::start(&config(true));
    let vs = fulcrum.virtual_server_addr("vs");
    let mut held = EchoClient::connect(vs).await;
    assert_eq!(held.server, "A");
    a.close_listener().await;
    wait_down(&fulcrum, a.addr);
    assert_eq!(held.round_trip("after").await.unwrap(), "after");

    fulcrum.write_config(&config(false));
    assert!(fulcrum.reload());
    let (closed, bytes) = read_until_closed(&mut held.stream).await;
    assert!(closed, "the connection to a DOWN server outlived quiescent");
    assert!(bytes.is_empty(), "unexpected bytes {bytes:?}");
}

// Input: a connection to A held open, then A goes DOWN without quiescent. Output: the
// connection is reset, and the bytes it carried are counted (they were lost with the relay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_quiescent_server_going_down_has_its_connections_reset() {
    let (a, b) = (EchoServer::start("A").await, EchoServer::start("B").await);
    let fulcrum = Fulcrum::start(&service(
        "127.0.0.1:0",
        &format!("scheduler = \"rr\"\nquiescent = false\n{TCP_CHECK}"),
        &[(a.addr, 1, 0), (b.addr, 1, 0)],
    ));
    let vs = fulcrum.virtual_server_addr("vs");
    let mut held = EchoClient::connect(vs).await;
    assert_eq!(held.server, "A");
    assert_eq!(held.round_trip("before").await.unwrap(), "before");

    a.close_listener().await;
    wait_down(&fulcrum, a.addr);

    let (closed, bytes) = read_until_closed(&mut held.stream).await;
    assert!(closed, "the connection to a DOWN server was not closed");
    assert!(bytes.is_empty(), "unexpected bytes {bytes:?}");
    fulcrum.wait_log(|l| message(l).starts_with("connection reset: real server is DOWN"));
    // What the reset connection carried counts: `before\n` in; the greeting and the echo out.
    let status = support::status_json(&fulcrum, "l4");
    let real_a = status["real_servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == a.addr.to_string())
        .unwrap();
    assert_eq!(
        (&real_a["bytes_in"], &real_a["bytes_out"]),
        (&7.into(), &9.into()),
        "{real_a}"
    );
    for _ in 0..4 {
        assert_eq!(EchoClient::connect(vs).await.server, "B");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_answers_once_every_real_server_is_down() {
    let (a, b) = (origin("A").await, origin("B").await);
    let fallback = origin("fallback").await;
    // Both real servers are checked on one port the test closes: they go DOWN together, while
    // still able to answer, so only the health verdict can send clients to the fallback.
    let health = EchoServer::start("health").await;
    let fulcrum = Fulcrum::start(&simple(
        &format!(
            "scheduler = \"rr\"\nhealth_check = {{ type = \"tcp\", port = {}, interval = \"200ms\", timeout = \"200ms\", rise = 1, fall = 1 }}\nfallback = \"{}\"",
            health.addr.port(),
            fallback.addr()
        ),
        &[(&a, 1), (&b, 1)],
    ));
    let vs = fulcrum.virtual_server_addr("vs");
    let mut served = Vec::new();
    for _ in 0..4 {
        served.push(ask(vs, None).await);
    }
    assert_eq!(
        seq(&served),
        "ABAB",
        "the fallback waits while real servers are up"
    );

    health.close_listener().await;
    wait_down(&fulcrum, a.addr());
    wait_down(&fulcrum, b.addr());
    for _ in 0..4 {
        assert_eq!(ask(vs, None).await, "fallback");
    }
}

// Input: a real server A taken DOWN by its check (on a port nothing listens on), then a
// reload that makes A the fallback of the service and B its only real server. Output: A, as the
// fallback, is UP and answers once B is DOWN too. (A kept its DOWN state as the fallback, no
// longer checked: shown DOWN for good, and counted so in the service's availability.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_real_server_made_the_fallback_is_up() {
    let (a, b) = (origin("A").await, origin("B").await);
    let check = format!(
        "health_check = {{ type = \"tcp\", port = {}, interval = \"100ms\", timeout = \"100ms\", rise = 1, fall = 1 }}",
        support::dead_addr().port()
    );
    let fulcrum = Fulcrum::start(&simple(&check, &[(&a, 1)]));
    wait_down(&fulcrum, a.addr());
    let fallback = format!("{check}\nfallback = \"{}\"", a.addr());
    fulcrum.write_config(&simple(&fallback, &[(&b, 1)]));
    assert!(fulcrum.reload());
    wait_down(&fulcrum, b.addr());
    let status = fulcrum.l4_status("vs");
    assert_eq!(status["fallback"]["status"], "UP", "{status:#}");
    assert_eq!(ask(fulcrum.virtual_server_addr("vs"), None).await, "A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_established_connections_and_applies_new_weights() {
    let (a, b) = (origin("A").await, origin("B").await);
    let fulcrum = Fulcrum::start(&simple("scheduler = \"rr\"", &[(&a, 1), (&b, 1)]));
    let vs = fulcrum.virtual_server_addr("vs");
    let (server, mut held) = hold(vs, None).await;
    assert_eq!(server, "A");

    // A quiesced and the scheduler changed: the connection to A lives on, new ones go to B.
    fulcrum.write_config(&simple("scheduler = \"wrr\"", &[(&a, 0), (&b, 3)]));
    assert!(fulcrum.reload());
    assert_eq!(
        fulcrum.virtual_server_addr("vs"),
        vs,
        "the service kept its listener"
    );
    for _ in 0..3 {
        let reply = held.get("/", &[]).await.unwrap();
        assert_eq!((reply.status, reply.server()), (200, "A"));
    }
    for _ in 0..4 {
        assert_eq!(ask(vs, None).await, "B");
    }
    let reply = held.get("/", &[]).await.unwrap();
    assert_eq!((reply.status, reply.server()), (200, "A"));
}

// Input: rr over A (127.0.0.1) and B (127.0.0.2) with `quiescent = false` and HAProxy's agent
// check every 20 ms on a port only A's address answers: first `maxconn:1`, then
// `down#disk full`, then `up maxconn:0`. Output: while a connection is held on A, new ones all
// go to B (rr would alternate), the agent's limit standing in for `upper_threshold`; B, whose
// agent cannot be reached, stays in; `down` takes A DOWN with the agent's words and resets the
// connection held on it; `up` puts A back in the rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_limits_a_real_server_and_takes_it_down_and_up() {
    let a = EchoServer::start("A").await;
    let b = EchoServer::start_on("B", ip(127, 0, 0, 2)).await;
    let agent = LineAgent::start(a.addr.ip()).await;
    agent.say("maxconn:1");
    let fulcrum = Fulcrum::start(&service(
        "127.0.0.1:0",
        &format!(
            "scheduler = \"rr\"\nquiescent = false\nagent_check = {{ port = {}, interval = \"20ms\" }}",
            agent.port
        ),
        &[(a.addr, 1, 0), (b.addr, 1, 0)],
    ));
    let vs = fulcrum.virtual_server_addr("vs");
    // The first reply is applied before the agent is asked again.
    agent.answered_at_least(2).await;
    let mut held = EchoClient::connect(vs).await;
    assert_eq!(held.server, "A");
    for _ in 0..4 {
        assert_eq!(
            EchoClient::connect(vs).await.server,
            "B",
            "A is at the agent's limit"
        );
    }

    agent.say("down#disk full");
    let addr = a.addr.to_string();
    let down = fulcrum.wait_log(|l| message(l) == "server is DOWN" && l["server"] == addr.as_str());
    assert_eq!(down["reason"], "agent says down: disk full");
    let (closed, bytes) = read_until_closed(&mut held.stream).await;
    assert!(closed && bytes.is_empty(), "{bytes:?}");

    // No limit any more either, so that the connections closed just before cannot hold A out.
    agent.say("up maxconn:0");
    fulcrum.wait_log(|l| message(l) == "server is UP" && l["server"] == addr.as_str());
    let mut servers: Vec<_> = Vec::new();
    for _ in 0..4 {
        servers.push(EchoClient::connect(vs).await.server);
    }
    servers.sort();
    assert_eq!(servers, ["A", "A", "B", "B"]);
}

// Input: rr over A, whose port refuses connections, and B, with a TCP check every 10 hours
// and `observe = "layer4"`, `error_limit = 2`, `on_error = "mark-down"`; four clients, one
// after the other. Output: the two sent to A are reset, and the second failure in a row takes
// A DOWN with HAProxy's `HANA` words, long before its check would have; new clients then all
// go to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_connections_in_live_traffic_take_a_real_server_down() {
    let (_refusing, a) = refusing_port();
    let b = EchoServer::start("B").await;
    let fulcrum = Fulcrum::start(&service(
        "127.0.0.1:0",
        "scheduler = \"rr\"\nhealth_check = { type = \"tcp\", interval = \"10h\", observe = \"layer4\", error_limit = 2, on_error = \"mark-down\" }",
        &[(a, 1, 0), (b.addr, 1, 0)],
    ));
    let vs = fulcrum.virtual_server_addr("vs");
    for _ in 0..2 {
        // Reset by the service, possibly before `connect` has returned.
        if let Ok(mut refused) = TcpStream::connect(vs).await {
            let (closed, bytes) = read_until_closed(&mut refused).await;
            assert!(closed && bytes.is_empty(), "{bytes:?}");
        }
        assert_eq!(EchoClient::connect(vs).await.server, "B");
    }
    let a = a.to_string();
    let down = fulcrum.wait_log(|l| message(l) == "server is DOWN" && l["server"] == a.as_str());
    assert_eq!(
        down["reason"],
        "HANA Detected 2 consecutive errors, last one was: L4 unsuccessful connection"
    );
    for _ in 0..4 {
        assert_eq!(EchoClient::connect(vs).await.server, "B");
    }
}

// Input: a service on a fixed address with a connection held through it; a reload that
// renames the service; then one that gives its address to a frontend. Output: each reload
// takes, the renamed service and then the frontend answer on the address, and the held
// connection goes on. (The new socket was bound while the old one listened: both reloads
// failed with `Address already in use`, and had to be done as a removal, then an addition.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_moves_to_a_renamed_service_or_a_frontend_in_one_reload() {
    let (a, b) = (origin("A").await, origin("B").await);
    let addr = support::free_addr();
    let config = service(&addr.to_string(), "", &[(a.addr(), 1, 0)]);
    let fulcrum = Fulcrum::start(&config);
    let (server, mut held) = hold(addr, None).await;
    assert_eq!(server, "A");

    fulcrum.write_config(&config.replace("[virtual_server.vs]", "[virtual_server.web]"));
    assert!(
        fulcrum.reload(),
        "the renamed service could not take its address"
    );
    assert_eq!(ask(addr, None).await, "A");

    fulcrum.write_config(
        &support::site("", "", &[("b", b.addr())]).replace("127.0.0.1:0", &addr.to_string()),
    );
    assert!(
        fulcrum.reload(),
        "the frontend could not take the service's address"
    );
    assert_eq!(get(addr, "/", &[]).await.server(), "B");
    let reply = held.get("/", &[]).await.unwrap();
    assert_eq!((reply.status, reply.server()), (200, "A"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_available_server_or_fallback_a_client_is_reset_at_once() {
    let real = origin("real").await;
    // The real server answers, but its health check probes a port that refuses connections.
    let (_refusing, check) = refusing_port();
    let check_port = check.port();
    let fulcrum = Fulcrum::start(&service(
        "127.0.0.1:0",
        &format!(
            "scheduler = \"wlc\"\nhealth_check = {{ type = \"tcp\", port = {check_port}, interval = \"200ms\", timeout = \"200ms\", rise = 1, fall = 1 }}"
        ),
        &[(real.addr(), 1, 0)],
    ));
    let vs = fulcrum.virtual_server_addr("vs");
    wait_down(&fulcrum, real.addr());

    let started = Instant::now();
    // On loopback the reset can come before `connect` returns, and then `connect` reports it.
    match TcpStream::connect(vs).await {
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
        Ok(mut stream) => {
            // The write may fail too if the reset came first.
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
            let (closed, bytes) = read_until_closed(&mut stream).await;
            assert!(closed, "the connection was left open");
            assert!(
                bytes.is_empty(),
                "answered: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
    // Not the real server's doing: it answers when asked directly.
    assert_eq!(get(real.addr(), "/", &[]).await.server(), "real");
}

// ---------- helpers ----------

/// A `[virtual_server.vs]` section listening on `listen`, with `extra` lines and these real
/// servers (address, weight, upper_threshold).
fn service(listen: &str, extra: &str, reals: &[(SocketAddr, u32, u32)]) -> String {
    let reals: Vec<String> = reals
        .iter()
        .map(|(addr, weight, upper)| {
            format!("  {{ address = \"{addr}\", weight = {weight}, upper_threshold = {upper} }},")
        })
        .collect();
    format!(
        "[virtual_server.vs]\nlisten = \"{listen}\"\nprotocol = \"tcp\"\n{extra}\nreal_servers = [\n{}\n]\n",
        reals.join("\n")
    )
}

/// `service` on a free loopback port, every real server unlimited.
fn simple(extra: &str, reals: &[(&Origin, u32)]) -> String {
    let reals: Vec<_> = reals.iter().map(|(o, w)| (o.addr(), *w, 0)).collect();
    service("127.0.0.1:0", extra, &reals)
}

/// A TCP connection to `to`, from `from` when given (the kernel's choice otherwise).
async fn dial(to: SocketAddr, from: Option<IpAddr>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0)).unwrap();
    }
    socket.connect(to).await.unwrap()
}

/// Opens a connection through the service, does one request on it and keeps it open: the name of
/// the real server that answered, and the connection.
async fn hold(to: SocketAddr, from: Option<IpAddr>) -> (String, KeepAlive) {
    let mut conn = KeepAlive::over(dial(to, from).await).await;
    let reply = conn.get("/", &[]).await.unwrap();
    assert_eq!(reply.status, 200);
    (reply.server().to_owned(), conn)
}

/// One request on a fresh connection, closed after: the real server that answered.
async fn ask(to: SocketAddr, from: Option<IpAddr>) -> String {
    hold(to, from).await.0
}

/// Holds `n` connections one after the other; the servers they went to, in order.
async fn hold_n(to: SocketAddr, from: Option<IpAddr>, n: usize) -> (Vec<String>, Vec<KeepAlive>) {
    let mut names = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..n {
        let (name, conn) = hold(to, from).await;
        names.push(name);
        conns.push(conn);
    }
    (names, conns)
}

/// `names` as one string, e.g. `"AABAA"` for one-letter server names.
fn seq(names: &[String]) -> String {
    names.concat()
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Waits for `server is DOWN` about the real server `addr`.
fn wait_down(fulcrum: &Fulcrum, addr: SocketAddr) {
    let addr = addr.to_string();
    fulcrum.wait_log(|l| message(l) == "server is DOWN" && l["server"] == addr.as_str());
}

/// A real server whose listener can be closed while the connections it accepted live on: it
/// greets each connection with its name and a newline, then echoes what it reads. Closed, its
/// port stays bound (by a socket that does not listen), so connections to it are refused and no
/// other test's listener can take the port over.
struct EchoServer {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    parked: std::sync::Mutex<Option<TcpSocket>>,
}

impl EchoServer {
    async fn start(name: &'static str) -> Self {
        Self::start_on(name, ip(127, 0, 0, 1)).await
    }

    /// One on `ip`, a loopback address.
    async fn start_on(name: &'static str, ip: IpAddr) -> Self {
        let socket = shared_port_socket(SocketAddr::new(ip, 0));
        let listener = socket.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    if stream
                        .write_all(format!("{name}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        Self {
            addr,
            accept,
            parked: std::sync::Mutex::new(None),
        }
    }

    /// Stops listening (new connections and TCP health checks are refused); the connections
    /// already accepted go on.
    async fn close_listener(&self) {
        *self.parked.lock().unwrap() = Some(shared_port_socket(self.addr));
        self.accept.abort();
        support::wait_until_refused(self.addr).await;
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A server agent, HAProxy's `agent-check` peer, on one address: each connection gets the
/// current line, which the test changes as it goes, and is counted.
struct LineAgent {
    port: u16,
    line: tokio::sync::watch::Sender<String>,
    answered: tokio::sync::watch::Receiver<usize>,
}

impl LineAgent {
    async fn start(ip: IpAddr) -> Self {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (line, current) = tokio::sync::watch::channel(String::new());
        let (count, answered) = tokio::sync::watch::channel(0);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let reply = format!("{}\n", *current.borrow());
                // Counted once written: an answer counted has been sent.
                let _ = conn.write_all(reply.as_bytes()).await;
                count.send_modify(|n| *n += 1);
            }
        });
        Self {
            port,
            line,
            answered,
        }
    }

    fn say(&self, line: &str) {
        self.line.send_replace(line.to_owned());
    }

    async fn answered_at_least(&self, n: usize) {
        let mut answered = self.answered.clone();
        tokio::time::timeout(PATIENCE, answered.wait_for(|&count| count >= n))
            .await
            .expect("the agent was not asked in time")
            .unwrap();
    }
}

/// A socket bound to `addr` with SO_REUSEPORT, so a second one can hold the port after the first
/// closed.
fn shared_port_socket(addr: SocketAddr) -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseport(true).unwrap();
    socket.bind(addr).unwrap();
    socket
}

/// A loopback port that refuses connections for as long as the returned socket lives: bound, but
/// not listening. (Unlike a port bound and released, no other listener can take it meanwhile.)
fn refusing_port() -> (TcpSocket, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A connection through the service to an [`EchoServer`], with the greeting read.
struct EchoClient {
    server: String,
    stream: BufReader<TcpStream>,
}

impl EchoClient {
    async fn connect(to: SocketAddr) -> Self {
        let mut stream = BufReader::new(TcpStream::connect(to).await.unwrap());
        let mut server = String::new();
        tokio::time::timeout(PATIENCE, stream.read_line(&mut server))
            .await
            .expect("no greeting from the real server")
            .unwrap();
        Self {
            server: server.trim().to_owned(),
            stream,
        }
    }

    /// Sends a line and reads it back.
    async fn round_trip(&mut self, line: &str) -> std::io::Result<String> {
        self.stream
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .await?;
        let mut back = String::new();
        let n = tokio::time::timeout(PATIENCE, self.stream.read_line(&mut back))
            .await
            .expect("no echo within PATIENCE")?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(back.trim_end().to_owned())
    }
}

/// Reads until the peer closes or resets; whether that happened within `PATIENCE`, and the bytes
/// read before it.
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> (bool, Vec<u8>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (false, out),
            Ok(Ok(0) | Err(_)) => return (true, out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The health check used by the health tests: TCP, every 200ms, one probe to change state.
const TCP_CHECK: &str =
    r#"health_check = { type = "tcp", interval = "200ms", timeout = "200ms", rise = 1, fall = 1 }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_by_the_idle_timeout_is_reset_not_closed_as_if_complete() {
    // A real server that sends far more than the buffers on the way hold.
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                let chunk = vec![7u8; 1024 * 1024];
                for _ in 0..256 {
                    if conn.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let fulcrum = Fulcrum::start(&service(
        "127.0.0.1:0",
        "timeout = { idle = \"300ms\" }",
        &[(server_addr, 1, 0)],
    ));
    let mut client = dial(fulcrum.virtual_server_addr("vs"), None).await;
    // The client stops reading: nothing moves, and the relay gives up with data still on its way.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, client.read_to_end(&mut received)).await;
    let read = read.expect("the connection is still open");
    assert!(
        read.is_err(),
        "a cut stream ended like a whole one after {} bytes",
        received.len()
    );
}

// Input: lc over A and B; four connections held on A; a reload removing A, then one adding it
// back while those connections stay open. Output: the next connections go to B until B holds
// four too: A came back counting its four. (It came back counting none and took them all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_server_removed_and_added_back_keeps_counting_its_connections() {
    let (a, b) = (origin("A").await, origin("B").await);
    let both = simple("scheduler = \"lc\"", &[(&a, 1), (&b, 0)]);
    let fulcrum = Fulcrum::start(&both);
    let vs = fulcrum.virtual_server_addr("vs");
    let (on_a, _held_a) = hold_n(vs, None, 4).await;
    assert_eq!(seq(&on_a), "AAAA");
    fulcrum.write_config(&simple("scheduler = \"lc\"", &[(&b, 1)]));
    assert!(fulcrum.reload());
    fulcrum.write_config(&simple("scheduler = \"lc\"", &[(&a, 1), (&b, 1)]));
    assert!(fulcrum.reload());
    let (next, _held) = hold_n(vs, None, 5).await;
    assert_eq!(seq(&next), "BBBBA");
}

// Input: a TCP service on the dual-stack wildcard `[::]` with PROXY protocol v1, and an IPv4
// client. Output: the real server reads `PROXY TCP4 127.0.0.1 127.0.0.1 ...`: the client as
// the IPv4 address it is, not `TCP6 ::ffff:127.0.0.1` as the listener sees it (the schedulers,
// persistence and transparent mode use that same address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_client_of_a_dual_stack_service_is_ipv4_to_the_real_server() {
    use tokio::io::AsyncReadExt;
    let real = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fulcrum = Fulcrum::start(&service(
        "[::]:0",
        "proxy_protocol = \"v1\"",
        &[(real.local_addr().unwrap(), 1, 0)],
    ));
    let port = fulcrum.virtual_server_addr("vs").port();
    let client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let client_port = client.local_addr().unwrap().port();
    let (mut accepted, _) = real.accept().await.unwrap();
    let mut header = vec![0; 108];
    let n = tokio::time::timeout(PATIENCE, accepted.read(&mut header))
        .await
        .unwrap()
        .unwrap();
    let header = String::from_utf8_lossy(&header[..n]).into_owned();
    assert_eq!(
        header,
        format!("PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {port}\r\n")
    );
}

// Input: a real server B with a TCP check every 10 hours and `observe = "layer4"`,
// `error_limit = 1`, `on_error = "mark-down"`, and Fulcrum left one open-files descriptor
// (`prlimit`): the client's connection takes it, and the connection to B fails with EMFILE.
// Output: the client is reset and B stays UP; with its descriptors back, Fulcrum relays the
// next client to B. (The shortage was held against B, which went DOWN.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_fulcrum_lacks_descriptors_for_is_not_held_against_the_real_server() {
    if !support::require_tool("prlimit") {
        return;
    }
    let b = EchoServer::start("B").await;
    let fulcrum = Fulcrum::start(&service(
        "127.0.0.1:0",
        "health_check = { type = \"tcp\", interval = \"10h\", observe = \"layer4\", error_limit = 1, on_error = \"mark-down\" }",
        &[(b.addr, 1, 0)],
    ));
    let vs = fulcrum.virtual_server_addr("vs");
    {
        let _short = support::OneDescriptorLeft::on(&fulcrum);
        // Reset by the service, possibly before `connect` has returned.
        if let Ok(mut refused) = TcpStream::connect(vs).await {
            let (closed, bytes) = read_until_closed(&mut refused).await;
            assert!(closed && bytes.is_empty(), "{bytes:?}");
        }
        // The connect error is counted before the client is reset.
        let errors = support::stat_field(&fulcrum, "vs", &b.addr.to_string(), "econ");
        assert_eq!(errors, Some(1), "the connection to B did not fail");
    }
    let down = support::stat_field(&fulcrum, "vs", &b.addr.to_string(), "chkdown");
    assert_eq!(down, Some(0), "B was marked DOWN");
    assert_eq!(EchoClient::connect(vs).await.server, "B");
}
