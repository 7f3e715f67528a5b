//! Roles while the link is down: a node asked to become primary without its peer first tries
//! to reach it, so that a partition that has healed, but that its dialer has not noticed yet,
//! does not end in two primaries of their own generations (a split brain that loses one side's
//! acknowledged writes). A peer that is really gone does not delay the promotion. And a link
//! lost while a demotion drains its NBD clients starts a generation of its own, so the writes
//! the drain acknowledges are never resynced over.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/volume_pair.rs"]
#[allow(dead_code, reason = "this test uses some of the pair helpers")]
mod support;

#[path = "support/link_cut.rs"]
mod link_cut;

use std::time::Duration;

use bytes::Bytes;
use fulcrum_storage::nbd::{Export, proto};
use fulcrum_storage::volume::{ConnState, Protocol, Role, Volume, VolumeError, VolumeEvent};
use link_cut::{Link, relayed_pair};
use support::{pair, pattern, wait_connected, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1 << 20;

/// Longer than either test: a node reconnects within it only when asked to.
const CONNECT_INTERVAL: Duration = Duration::from_secs(30);

// Input (the soak's data loss): A, the dialer, primary and connected to B through a link. A
// demotes and the link is cut (A's VRRP in FAULT); B is promoted alone and acknowledges writes;
// the link comes back while A's dialer still waits out its connect interval, and A is promoted
// (its VRRP preempts). Output: A's promotion reaches B at once and is refused with PeerPrimary
// rather than starting a generation of its own; once B demotes, A is promoted and serves B's
// writes; no split brain on either node.
#[tokio::test(flavor = "multi_thread")]
async fn volume_promotion_after_a_healed_partition_reaches_the_peer_first() {
    healed_partition(true).await;
}

// Input: the same with the roles swapped: B, the accepting node, is cut off, A promoted alone,
// and B promoted once the link is back. Output: B's wake-up call makes A's dialer connect at
// once; B's promotion is refused with PeerPrimary, and B takes over A's writes once A demotes.
#[tokio::test(flavor = "multi_thread")]
async fn volume_promotion_after_a_healed_partition_wakes_the_peers_dialer() {
    healed_partition(false).await;
}

/// The healed partition of the two tests above; `returning_dials`: the node cut off and promoted
/// after the link is back is A, the dialer (else B).
async fn healed_partition(returning_dials: bool) {
    let (mut a, mut b, routes) = relayed_pair(16 * MIB, Protocol::C, Role::Secondary);
    for n in [&mut a, &mut b] {
        n.config.connect_interval = CONNECT_INTERVAL;
    }
    let link = Link::new(&routes).await;
    // B first: A's first dial must find it.
    let vb = b.start().await;
    let va = a.start().await;
    wait_connected(&va).await;
    wait_connected(&vb).await;
    let (returning, other) = if returning_dials {
        (&va, &vb)
    } else {
        (&vb, &va)
    };
    let (mut events_a, mut events_b) = (va.subscribe(), vb.subscribe());
    returning.promote(false).await.unwrap();
    returning
        .export()
        .write(0, Bytes::from(pattern(1, MIB as usize)), true)
        .await
        .unwrap();
    returning.demote().await.unwrap();

    link.cut().await;
    for v in [&va, &vb] {
        wait_for(v, "link lost", |s| s.connection == ConnState::Connecting).await;
    }
    other.promote(false).await.unwrap();
    let acked = Bytes::from(pattern(2, MIB as usize));
    other.export().write(0, acked.clone(), true).await.unwrap();

    link.restore().await;
    let started = tokio::time::Instant::now();
    let refused = returning.promote(false).await;
    assert!(
        matches!(refused, Err(VolumeError::PeerPrimary)),
        "promoted alone beside a primary peer: {refused:?}, {:#?}",
        returning.status()
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{started:?}");
    assert_eq!(returning.status().role, Role::Secondary);
    assert_eq!(returning.status().peer_role, Some(Role::Primary));

    // The other node's VRRP lets go; the follower retries until the promotion goes through.
    other.demote().await.unwrap();
    promote_soon(returning).await;
    wait_connected(returning).await;
    wait_connected(other).await;
    let got = returning.export().read(0, MIB as usize).await.unwrap();
    assert!(
        got == acked,
        "the writes acknowledged during the cut are not served"
    );
    for events in [&mut events_a, &mut events_b] {
        while let Ok(event) = events.try_recv() {
            assert_ne!(event, VolumeEvent::SplitBrain);
        }
    }
    drop(link);
    va.stop().await;
    vb.stop().await;
}

// Input: a connected pair; one node stopped (its port then refuses connections) and the other
// promoted, once with the dialer left and once with the accepting node left. Output: each
// promotion succeeds alone well within `timeout`: a refused connection ends the wait for the
// peer at once.
#[tokio::test(flavor = "multi_thread")]
async fn volume_promotion_without_a_live_peer_is_not_delayed() {
    for dialer_left in [true, false] {
        let (mut a, mut b) = pair(4 * MIB, Protocol::C, Role::Secondary);
        for n in [&mut a, &mut b] {
            n.config.connect_interval = CONNECT_INTERVAL;
        }
        // B first: A (the dialer) must find it on its first dial.
        let vb = b.start().await;
        let va = a.start().await;
        wait_connected(&va).await;
        let (left, gone) = if dialer_left { (va, vb) } else { (vb, va) };
        gone.stop().await;
        wait_for(&left, "peer lost", |s| {
            s.connection == ConnState::Connecting
        })
        .await;
        let started = tokio::time::Instant::now();
        left.promote(false).await.unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "dialer {dialer_left}: {took:?}"
        );
        assert_eq!(left.status().role, Role::Primary);
        left.stop().await;
    }
}

// Input: A primary and connected to B through a link; an NBD client of A asks for more than
// the socket buffers hold and reads nothing, so that A's demotion waits in its drain (up to the
// 5 s grace). Meanwhile the link is cut, and A acknowledges a write of its own. B is then
// promoted alone and writes, and the link comes back. Output: a split brain, both nodes
// StandAlone: each wrote on its own. (A's link loss waited for the demotion, found A secondary
// and started no generation, so B resynced over A's acknowledged write without a word.)
#[tokio::test(flavor = "multi_thread")]
async fn a_link_lost_during_a_demotion_drain_is_a_generation_of_its_own() {
    let (a, b, routes) = relayed_pair(64 * MIB, Protocol::C, Role::Primary);
    let link = Link::new(&routes).await;
    let vb = b.start().await;
    let va = a.start().await;
    wait_connected(&va).await;
    wait_connected(&vb).await;

    let mut reader = unread_nbd_client(va.nbd_addr().unwrap()).await;
    let acked = Bytes::from(pattern(1, MIB as usize));
    let during_the_drain = async {
        // Let the demotion start its drain.
        tokio::time::sleep(Duration::from_millis(300)).await;
        link.cut().await;
        wait_for(&va, "link lost", |s| s.connection == ConnState::Connecting).await;
        assert_eq!(va.status().role, Role::Primary, "the drain ended too soon");
        va.export().write(0, acked.clone(), true).await.unwrap();
    };
    let (demoted, ()) = tokio::join!(va.demote(), during_the_drain);
    demoted.unwrap();
    reader.shutdown().await.unwrap();

    vb.promote(false).await.unwrap();
    vb.export()
        .write(MIB, Bytes::from(pattern(2, MIB as usize)), true)
        .await
        .unwrap();
    link.restore().await;
    for v in [&va, &vb] {
        wait_for(v, "split brain", |s| s.connection == ConnState::StandAlone).await;
    }
    assert!(
        va.export().read(0, MIB as usize).await.unwrap() == acked,
        "A lost the write it acknowledged"
    );
    drop(link);
    va.stop().await;
    vb.stop().await;
}

/// An NBD client of the export at `addr` (fixed newstyle, `EXPORT_NAME`) that has asked for
/// 64 MiB of reads and reads no more than the first reply's header: the server's replies
/// stall. That header says the server is serving the reads, so a demotion started next finds
/// them in flight (on a loaded machine it could come before the server had read them).
async fn unread_nbd_client(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut greeting = [0; 18];
    stream.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting[..8], b"NBDMAGIC");
    // Fixed newstyle, no zeroes; then NBD_OPT_EXPORT_NAME, answered with size and flags.
    let mut wire = (proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES)
        .to_be_bytes()
        .to_vec();
    wire.extend_from_slice(&proto::IHAVEOPT.to_be_bytes());
    wire.extend_from_slice(&proto::OPT_EXPORT_NAME.to_be_bytes());
    wire.extend_from_slice(&(support::NAME.len() as u32).to_be_bytes());
    wire.extend_from_slice(support::NAME.as_bytes());
    stream.write_all(&wire).await.unwrap();
    let mut export = [0; 10];
    stream.read_exact(&mut export).await.unwrap();
    for cookie in 0..4u64 {
        let read = proto::RequestHeader {
            flags: 0,
            command: proto::CMD_READ,
            cookie,
            offset: cookie * 16 * MIB,
            length: 16 * MIB as u32,
        };
        stream.write_all(&read.encode()).await.unwrap();
    }
    // The simple reply's magic, error and cookie.
    let mut header = [0; 16];
    stream.read_exact(&mut header).await.unwrap();
    stream
}

/// Promotes `volume`, retrying as the VRRP follower does while the peer still holds the role
/// or a resync runs (up to 8 s).
async fn promote_soon(volume: &Volume) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        match volume.promote(false).await {
            Ok(()) => return,
            Err(error) if tokio::time::Instant::now() > deadline => {
                panic!("not promoted: {error}: {:#?}", volume.status())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
