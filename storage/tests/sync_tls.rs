//! TLS on the directory sync's peer links (`[sync.NAME] tls`), between nodes in one process on
//! loopback, with certificates made by `openssl` at test time: files sync both ways over
//! mutual TLS; a plain peer and a peer whose certificate `ca` does not vouch for are refused
//! (counted, nothing synced); and what crosses the wire does not show a file's content.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/sync_nodes.rs"]
#[allow(dead_code, reason = "this test uses some of the sync helpers")]
mod support;

#[path = "support/tls_certs.rs"]
#[allow(dead_code, reason = "this test uses some of the certificate helpers")]
mod tls_certs;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fulcrum_storage::sync::SyncSet;
use fulcrum_storage::sync::tls::{SyncTls, TlsFiles};
use support::{Node, connected, converge, nodes, stop_both, tree, wait_for};
use tls_certs::{Issued, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Generous, as the suite runs many tests at once on two cores.
const PATIENCE: Duration = Duration::from_secs(30);

/// How long a refused pair is watched for a link that should not come up.
const REFUSED_FOR: Duration = Duration::from_secs(2);

/// Gives `node` TLS with `issued` and `ca`, for its current `listen` and `peers`.
fn set_tls(node: &mut Node, issued: &Issued, ca: &Path) {
    let files = TlsFiles {
        cert: issued.cert.clone(),
        key: issued.key.clone(),
        ca: ca.to_owned(),
    };
    let tls = SyncTls::load(files, node.config.listen, &node.config.peers).unwrap();
    node.config.tls = Some(tls);
}

/// Nodes "a" and "b" with certificates the same CA signed.
fn tls_pair(pki: &Pki) -> Vec<Node> {
    let mut n = nodes(&["a", "b"]);
    for node in &mut n {
        let issued = pki.issue(&node.name);
        set_tls(node, &issued, &pki.ca.cert);
    }
    n
}

/// A file written on each node arrives on the other.
async fn sync_both_ways(n: &[Node], a: &SyncSet, b: &SyncSet) {
    connected(a, PATIENCE).await;
    connected(b, PATIENCE).await;
    n[0].write("from-a.txt", b"written on a");
    converge(&n[0], &n[1], PATIENCE).await;
    n[1].write("dir/from-b.txt", b"written on b");
    converge(&n[0], &n[1], PATIENCE).await;
    let names: Vec<String> = tree(&n[0].root).into_keys().collect();
    assert_eq!(names, ["dir", "dir/from-b.txt", "from-a.txt"]);
}

// Input: two nodes with certificates signed by one CA. Output: a file written on either
// arrives on the other; the status shows the peers connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_sync_both_ways_over_tls() {
    let pki = Pki::new();
    let mut n = tls_pair(&pki);
    let a = n[0].start().await;
    let b = n[1].start().await;
    sync_both_ways(&n, &a, &b).await;
    assert_eq!(a.status().counters.errors, 0);
    assert_eq!(b.status().counters.errors, 0);
    stop_both(a, b).await;
}

// Input: self-signed node certificates, `ca` a bundle of both (as with stunnel's CAfile of
// the peers' certificates). Output: they sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificates_listed_in_ca_sync() {
    let pki = Pki::new();
    let mut n = nodes(&["a", "b"]);
    let issued: Vec<Issued> = n.iter().map(|node| pki.self_signed(&node.name)).collect();
    let bundle = pki.bundle("peers.pem", &[&issued[0].cert, &issued[1].cert]);
    for (node, issued) in n.iter_mut().zip(&issued) {
        set_tls(node, issued, &bundle);
    }
    let a = n[0].start().await;
    let b = n[1].start().await;
    sync_both_ways(&n, &a, &b).await;
    stop_both(a, b).await;
}

/// Starts the pair, writes a file on each, and checks that they stay apart: no peer
/// connected, nothing synced, the refusals counted on both nodes.
async fn stay_apart(n: &mut [Node]) {
    let a = n[0].start().await;
    let b = n[1].start().await;
    n[0].write("only-on-a.txt", b"a");
    n[1].write("only-on-b.txt", b"b");
    let counted = wait_for(PATIENCE, || {
        a.status().counters.errors > 0 && b.status().counters.errors > 0
    })
    .await;
    assert!(
        counted.is_some(),
        "refusals not counted: a {:?}, b {:?}",
        a.status().counters,
        b.status().counters
    );
    tokio::time::sleep(REFUSED_FOR).await;
    for (set, node, other) in [(&a, &n[0], &n[1]), (&b, &n[1], &n[0])] {
        assert!(
            set.status().peers.iter().all(|p| !p.connected),
            "{}",
            node.name
        );
        let mine = format!("only-on-{}.txt", node.name);
        let theirs = format!("only-on-{}.txt", other.name);
        let names: Vec<String> = tree(&node.root).into_keys().collect();
        assert_eq!(names, [mine], "{} got {theirs}", node.name);
    }
    stop_both(a, b).await;
}

// Input: a TLS node and a plain one, with the same secret (whichever dials). Output: no
// link, nothing synced, each counts the refusal (and logs it, naming the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_peer_is_refused() {
    let pki = Pki::new();
    let mut n = tls_pair(&pki);
    n[1].config.tls = None;
    stay_apart(&mut n).await;
    // And the other way round.
    let mut n = tls_pair(&pki);
    n[0].config.tls = None;
    stay_apart(&mut n).await;
}

// Input: one node presents a self-signed certificate that the other's `ca` (the CA) does not
// hold; it trusts the CA itself. Output: no link, nothing synced, the refusal counted on both,
// whether the rogue node is the dialing (TLS client) or the accepting one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_certificate_ca_does_not_vouch_for_is_refused() {
    let pki = Pki::new();
    let rogue = pki.self_signed("rogue");
    for i in 0..2 {
        let mut n = tls_pair(&pki);
        set_tls(&mut n[i], &rogue, &pki.ca.cert);
        stay_apart(&mut n).await;
    }
}

/// A TCP relay in front of `to` that keeps a copy of every octet it passes, both ways.
async fn relay(to: SocketAddr, seen: Arc<Mutex<Vec<u8>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(to).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, Arc::clone(&seen)));
            tokio::spawn(pump(sr, cw, Arc::clone(&seen)));
        }
    });
    addr
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// Syncs a file with a unique content and name through relays in front of both nodes (each
/// node's `listen` is its relay, so whichever dials goes through one); returns what they saw.
async fn captured(pki: Option<&Pki>) -> Vec<u8> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut n = nodes(&["a", "b"]);
    let mut relays = Vec::new();
    for node in &n {
        relays.push(relay(node.addr, Arc::clone(&seen)).await);
    }
    for (i, node) in n.iter_mut().enumerate() {
        node.config.listen = relays[i];
        node.config.peers = vec![relays[1 - i]];
        if let Some(pki) = pki {
            let issued = pki.issue(&node.name);
            set_tls(node, &issued, &pki.ca.cert);
        }
    }
    let a = n[0].start().await;
    let b = n[1].start().await;
    connected(&a, PATIENCE).await;
    n[0].write(SECRET_NAME, &SECRET_CONTENT.repeat(100));
    converge(&n[0], &n[1], PATIENCE).await;
    stop_both(a, b).await;
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.len() > 100 * SECRET_CONTENT.len(),
        "the relay saw the file go by"
    );
    seen
}

const SECRET_NAME: &str = "payroll-2026-unique-name.csv";
const SECRET_CONTENT: &[u8] = b"unique-plaintext-marker-7f3a9c;";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// Input: the same file synced through a recording relay, without TLS and with it. Output:
// without, the relay sees its content and name (so the capture works); with, neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_is_encrypted() {
    let plain = captured(None).await;
    assert!(contains(&plain, SECRET_CONTENT));
    assert!(contains(&plain, SECRET_NAME.as_bytes()));

    let pki = Pki::new();
    let tls = captured(Some(&pki)).await;
    assert!(!contains(&tls, SECRET_CONTENT));
    assert!(!contains(&tls, SECRET_NAME.as_bytes()));
    assert!(
        !contains(&tls, support::SET.as_bytes()),
        "not even the set's name"
    );
}
