//! One connection over an in-memory stream: what is answered, what is refused and counted, and
//! the connection timeout (on paused time).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use prometheus::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::nrpe::{command::CommandLine, packet::Version};

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn shared(allow_arguments: bool) -> (Shared, Registry) {
    let registry = Registry::new();
    let commands = [("echo", "/bin/echo $ARG1$")]
        .into_iter()
        .map(|(name, line)| (name.to_owned(), CommandLine::parse(line).unwrap()))
        .collect::<BTreeMap<_, _>>();
    let config = NrpeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allowed_hosts: vec!["127.0.0.1/32".parse().unwrap()],
        tls: None,
        allow_arguments,
        command_timeout: Duration::from_secs(10),
        connection_timeout: Duration::from_secs(300),
        commands,
    };
    let shared = Shared {
        config,
        snapshot: Arc::new(Snapshot::default),
        metrics: Metrics::register(&registry).unwrap(),
    };
    (shared, registry)
}

fn counter(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric())
        .find(|metric| {
            labels.iter().all(|(k, v)| {
                metric
                    .get_label()
                    .iter()
                    .any(|pair| pair.name() == *k && pair.value() == *v)
            })
        })
        .map_or(0, |metric| {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "small counts"
            )]
            let value = metric.get_counter().get_value() as u64;
            value
        })
}

fn refused(registry: &Registry, reason: &str) -> u64 {
    counter(
        registry,
        "fulcrum_nrpe_refused_total",
        &[("reason", reason)],
    )
}

fn query(version: Version, text: &str) -> Vec<u8> {
    packet::encode(&Packet {
        version,
        kind: Kind::Query,
        result_code: 0,
        text: text.as_bytes().to_vec(),
    })
}

/// Sends `bytes` on a connection served with `shared`, then reads until the server closes.
async fn exchange(shared: &Shared, bytes: &[u8]) -> Vec<u8> {
    let (mut client, server): (DuplexStream, DuplexStream) = tokio::io::duplex(1 << 20);
    let deadline = Instant::now() + shared.config.connection_timeout;
    let client = async move {
        client.write_all(bytes).await.unwrap();
        // As check_nrpe: it sends nothing more (a short packet stays short).
        client.shutdown().await.unwrap();
        let mut response = Vec::new();
        client.read_to_end(&mut response).await.unwrap();
        response
    };
    let ((), response) = tokio::join!(serve(server, PEER, deadline, shared), client);
    response
}

#[tokio::test]
async fn answers_in_the_version_asked() {
    let (shared, registry) = shared(false);
    for version in [Version::V2, Version::V3, Version::V4] {
        let response =
            packet::decode(&exchange(&shared, &query(version, "_NRPE_CHECK")).await).unwrap();
        assert_eq!(response.version, version);
        assert_eq!(response.kind, Kind::Response);
        assert_eq!(
            (response.result_code, response.text),
            (0, b"NRPE v4.1.0".to_vec())
        );
    }
    let labels = [("command", "_NRPE_CHECK"), ("state", "ok")];
    assert_eq!(
        counter(&registry, "fulcrum_nrpe_requests_total", &labels),
        3
    );
}

#[tokio::test]
async fn arguments_reach_the_command_when_allowed() {
    let (shared, registry) = shared(true);
    let response =
        packet::decode(&exchange(&shared, &query(Version::V4, "echo!a b")).await).unwrap();
    assert_eq!((response.result_code, response.text), (0, b"a b".to_vec()));
    let undefined =
        packet::decode(&exchange(&shared, &query(Version::V2, "nosuch")).await).unwrap();
    assert_eq!(undefined.result_code, 3);
    assert_eq!(undefined.text, b"NRPE: Command 'nosuch' not defined");
    let labels = [("command", "(undefined)"), ("state", "unknown")];
    assert_eq!(
        counter(&registry, "fulcrum_nrpe_requests_total", &labels),
        1
    );
}

#[tokio::test]
async fn refusals_close_without_an_answer_and_are_counted() {
    let (strict, strict_registry) = shared(false);
    let (lenient, lenient_registry) = shared(true);
    let mut bad_crc = query(Version::V2, "echo");
    bad_crc[4] ^= 0xff;
    let mut bad_version = query(Version::V2, "echo");
    bad_version[1] = 5;
    let mut too_long = query(Version::V4, "echo");
    too_long[12..16].copy_from_slice(&70_000i32.to_be_bytes());
    let response = packet::encode(&Packet {
        version: Version::V4,
        kind: Kind::Response,
        result_code: 0,
        text: b"echo".to_vec(),
    });
    for (shared, bytes) in [
        (&strict, bad_crc),
        (&strict, bad_version),
        (&strict, too_long),
        (&strict, query(Version::V4, "echo!x")),
        (&strict, query(Version::V4, "echo;x")),
        (&strict, query(Version::V4, "")),
        (&strict, response),
        (&strict, query(Version::V4, "echo")[..100].to_vec()),
        (&lenient, query(Version::V4, "echo!$(touch /tmp/x)")),
        (&lenient, query(Version::V4, "echo!!x")),
    ] {
        assert_eq!(exchange(shared, &bytes).await, b"");
    }
    for (reason, count) in [
        ("crc", 1),
        ("version", 1),
        ("length", 2),
        ("arguments", 1),
        ("metachar", 1),
        ("empty", 1),
        ("type", 1),
    ] {
        assert_eq!(refused(&strict_registry, reason), count, "{reason}");
    }
    assert_eq!(refused(&lenient_registry, "metachar"), 1);
    assert_eq!(refused(&lenient_registry, "arguments"), 1);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_not_a_refusal() {
    let (shared, registry) = shared(false);
    assert_eq!(exchange(&shared, b"").await, b"");
    for reason in ["length", "timeout"] {
        assert_eq!(refused(&registry, reason), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_request_is_dropped_at_connection_timeout() {
    let (shared, registry) = shared(false);
    let (mut client, server) = tokio::io::duplex(4096);
    let started = Instant::now();
    let deadline = started + shared.config.connection_timeout;
    // Half a header, then silence.
    client
        .write_all(&query(Version::V4, "echo")[..8])
        .await
        .unwrap();
    serve(server, PEER, deadline, &shared).await;
    assert_eq!(started.elapsed(), Duration::from_secs(300));
    assert_eq!(refused(&registry, "timeout"), 1);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}
