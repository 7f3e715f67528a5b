//! The kernel-facing layer (`fulcrum_vrrp::net`) against a real kernel: each test runs in a
//! network namespace of its own with a veth pair `va` (10.0.0.1/24) <-> `vb` (10.0.0.2/24).
//! They need root (CI runs them as root) and print "skipped" otherwise.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/netns.rs"]
mod netns;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use fulcrum_vrrp::net::{AdvertSocket, Announcer, Link, Netlink, gratuitous_arp};
use fulcrum_vrrp::packet::{
    self, Accepted, Advert, Auth, ChecksumMode, DropReason, Expected, Family, Interval,
    MULTICAST_V4, MULTICAST_V6,
};
use ipnet::IpNet;
use netns::{PATIENCE, index_and_mac, ip};
use pnet_datalink::{Channel, DataLinkReceiver, NetworkInterface};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::runtime::Runtime;
use tokio::sync::watch;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
/// The TTL / hop limit of [`send_plain`]: anything below the 255 VRRP requires.
const LOW_TTL: u8 = 64;

#[test]
fn link_reports_index_mac_and_state() {
    in_lab(async |Lab { netlink, .. }| {
        let (index, mac) = index_and_mac("va");
        let link = netlink.link("va").await.unwrap();
        assert_eq!(
            link,
            Link {
                name: "va".to_owned(),
                index,
                mac: Some(mac),
                up: true
            }
        );

        ip(&["link", "set", "vb", "down"]);
        assert!(
            !netlink.link("va").await.unwrap().up,
            "no carrier: peer down"
        );
        assert!(
            !netlink.link("vb").await.unwrap().up,
            "administratively down"
        );

        let missing = netlink.link("nosuch0").await.unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(missing.to_string().contains("nosuch0"), "{missing}");
    });
}

#[test]
fn primary_address_is_the_first_ipv4_and_the_ipv6_link_local() {
    in_lab(async |Lab { netlink, va, .. }| {
        ip(&["addr", "add", "10.0.0.9/24", "dev", "va"]); // a secondary
        ip(&["addr", "add", "2001:db8::1/64", "dev", "va"]);
        ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d0p"]);
        assert_eq!(
            netlink.primary_address(&va, Family::Ipv4).await.unwrap(),
            Some(IpAddr::V4(A))
        );

        let link_local = netlink.primary_address(&va, Family::Ipv6).await.unwrap();
        let Some(IpAddr::V6(link_local)) = link_local else {
            panic!("no IPv6 link-local address: {link_local:?}");
        };
        assert_eq!(link_local.segments()[0], 0xfe80);
        let shown = ip(&["-6", "addr", "show", "dev", "va", "scope", "link"]);
        assert!(shown.contains(&link_local.to_string()), "{shown}");

        let bare = netlink.link("d0").await.unwrap();
        assert_eq!(
            netlink.primary_address(&bare, Family::Ipv4).await.unwrap(),
            None
        );
        assert_eq!(
            netlink.primary_address(&bare, Family::Ipv6).await.unwrap(),
            None
        );
    });
}

#[test]
fn vips_are_added_and_removed_idempotently() {
    in_lab(async |Lab { netlink, va, .. }| {
        let v4: IpNet = "10.0.0.100/32".parse().unwrap();
        let v6: IpNet = "2001:db8::100/64".parse().unwrap();

        for vip in [&v4, &v6] {
            assert!(!netlink.has_address(&va, vip.addr()).await.unwrap());
            netlink.add_vip(&va, vip, "va:vrrp53").await.unwrap();
            netlink.add_vip(&va, vip, "va:vrrp53").await.unwrap();
            assert!(netlink.has_address(&va, vip.addr()).await.unwrap());
        }
        let shown = ip(&["-4", "addr", "show", "dev", "va"]);
        assert!(
            shown.contains("inet 10.0.0.100/32") && shown.contains("va:vrrp53"),
            "{shown}"
        );
        let shown = ip(&["-6", "addr", "show", "dev", "va"]);
        let line = shown
            .lines()
            .find(|line| line.contains("2001:db8::100/64"))
            .unwrap();
        assert!(
            line.contains("nodad") && !line.contains("tentative"),
            "{line}"
        );

        for vip in [&v4, &v6] {
            netlink.remove_vip(&va, vip).await.unwrap();
            netlink.remove_vip(&va, vip).await.unwrap();
            assert!(!netlink.has_address(&va, vip.addr()).await.unwrap());
        }
        assert!(
            netlink.has_address(&va, IpAddr::V4(A)).await.unwrap(),
            "the primary stays"
        );

        let long = netlink
            .add_vip(&va, &v4, "va:label-too-long")
            .await
            .unwrap_err();
        assert_eq!(long.kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn watch_link_follows_the_interface() {
    in_lab(async |Lab { netlink, .. }| {
        let mut va = netlink.watch_link("va");
        tokio::time::timeout(PATIENCE, va.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(*va.borrow_and_update(), "first state: up");

        ip(&["link", "set", "va", "down"]);
        wait_for(&mut va, false).await;
        ip(&["link", "set", "va", "up"]);
        wait_for(&mut va, true).await;
        // Carrier follows the peer.
        ip(&["link", "set", "vb", "down"]);
        wait_for(&mut va, false).await;
        ip(&["link", "set", "vb", "up"]);
        wait_for(&mut va, true).await;

        let mut later = netlink.watch_link("d1");
        tokio::time::timeout(PATIENCE, later.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(!*later.borrow_and_update(), "missing: down");
        ip(&["link", "add", "d1", "type", "veth", "peer", "name", "d1p"]);
        ip(&["link", "set", "d1p", "up"]);
        ip(&["link", "set", "d1", "up"]);
        wait_for(&mut later, true).await;
        ip(&["link", "set", "d1", "name", "d2"]);
        wait_for(&mut later, false).await;
        ip(&["link", "set", "d2", "name", "d1"]);
        wait_for(&mut later, true).await;
        ip(&["link", "del", "d1"]);
        wait_for(&mut later, false).await;
    });
}

#[test]
fn multicast_v2_advert_crosses_the_link() {
    with_sockets(false, async |a, b| {
        let advert = v2_advert(Auth::pass("secret"));
        let accepted = exchange(&a, &b, &advert, IpAddr::V4(MULTICAST_V4)).await;
        assert_eq!(accepted.src, IpAddr::V4(A));
        assert_eq!(accepted.advert.vrid(), 53);
        assert_eq!(accepted.advert.priority(), 150);
        assert_eq!(accepted.advert, advert);
    });
}

#[test]
fn multicast_v3_advert_checksum_covers_our_source() {
    with_sockets(false, async |a, b| {
        let advert = Advert::v3(53, 200, Interval::from_centis(100), vec![VIP]).unwrap();
        // The pseudo-header sums the source: it only verifies if the kernel sent from 10.0.0.1.
        let accepted = exchange(&a, &b, &advert, IpAddr::V4(MULTICAST_V4)).await;
        assert_eq!(accepted.src, IpAddr::V4(A));
        assert_eq!(accepted.advert.priority(), 200);
    });
}

#[test]
fn unicast_advert_reaches_the_peer() {
    with_sockets(true, async |a, b| {
        let advert = v2_advert(Auth::None);
        let accepted = exchange(&a, &b, &advert, IpAddr::V4(B)).await;
        assert_eq!(accepted.src, IpAddr::V4(A));
        assert_eq!(accepted.advert.vrid(), 53);
    });
}

#[test]
fn wrong_password_is_dropped() {
    with_sockets(false, async |a, b| {
        let ours = v2_advert(Auth::pass("secret"));
        let expected = [Expected::for_advert(&ours, false)];
        send(
            &a,
            &v2_advert(Auth::pass("guess")),
            IpAddr::V4(MULTICAST_V4),
        )
        .await;
        assert_eq!(recv(&b, &expected).await, Err(DropReason::AuthFailed));
    });
}

#[test]
fn multicast_with_ttl_below_255_is_dropped() {
    with_sockets(false, async |_a, b| {
        let advert = v2_advert(Auth::None);
        let expected = [Expected::for_advert(&advert, false)];

        let message = packet::encode(
            &advert,
            ChecksumMode::default(),
            IpAddr::V4(A),
            IpAddr::V4(MULTICAST_V4),
        );
        send_plain(&netns::link("va"), &message, IpAddr::V4(MULTICAST_V4));

        assert_eq!(
            recv(&b, &expected).await,
            Err(DropReason::BadTtl { ttl: LOW_TTL })
        );
    });
}

#[test]
fn ipv6_v3_advert_crosses_the_link_and_hop_limit_is_checked() {
    in_lab(async |lab| {
        let (a_local, b_local) = lab.primaries(Family::Ipv6).await;
        let a = AdvertSocket::open(&lab.va, Family::Ipv6, a_local, false).unwrap();
        let b = AdvertSocket::open(&lab.vb, Family::Ipv6, b_local, false).unwrap();

        let vip6: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let advert = Advert::v3_ipv6(53, 150, Interval::from_centis(100), vec![vip6]).unwrap();
        let expected = [Expected::for_advert(&advert, false)];
        let message = packet::encode(
            &advert,
            ChecksumMode::default(),
            a_local,
            IpAddr::V6(MULTICAST_V6),
        );
        a.send(&message, IpAddr::V6(MULTICAST_V6)).await.unwrap();
        let accepted = recv(&b, &expected).await.unwrap();
        assert_eq!(accepted.src, a_local);
        assert_eq!(accepted.advert, advert);

        // The same message from a plain socket with a low hop limit.
        send_plain(&lab.va, &message, IpAddr::V6(MULTICAST_V6));
        assert_eq!(
            recv(&b, &expected).await,
            Err(DropReason::BadTtl { ttl: LOW_TTL })
        );
    });
}

#[test]
fn announcer_sends_gratuitous_arp() {
    in_lab(async |Lab { va, vb, .. }| {
        let mut capture = capture(&vb);

        let mut announcer = Announcer::open(&va).unwrap();
        announcer.announce(&[IpAddr::V4(VIP)]).unwrap();

        let frame = next_frame(capture.as_mut(), |frame| {
            frame.get(12..14) == Some(&[0x08, 0x06])
        });
        let expected = gratuitous_arp(va.mac.unwrap(), VIP);
        assert_eq!(frame.get(..expected.len()), Some(&expected[..]));
    });
}

#[test]
fn announcer_sends_unsolicited_neighbor_advertisement() {
    in_lab(async |Lab { netlink, va, vb }| {
        let target: Ipv6Addr = "2001:db8::100".parse().unwrap();
        netlink
            .add_vip(&va, &IpNet::new(IpAddr::V6(target), 64).unwrap(), "")
            .await
            .unwrap();
        let mut capture = capture(&vb);

        let mut announcer = Announcer::open(&va).unwrap();
        announcer.announce(&[IpAddr::V6(target)]).unwrap();
        // Ethernet (14) + IPv6 (40) + ICMPv6 type 136.
        let frame = next_frame(capture.as_mut(), |frame| {
            frame.get(12..14) == Some(&[0x86, 0xdd])
                && frame.get(20) == Some(&58)
                && frame.get(54) == Some(&136)
        });
        let mac = va.mac.unwrap();
        assert_eq!(frame[0..6], [0x33, 0x33, 0, 0, 0, 1], "to all nodes");
        assert_eq!(frame[6..12], mac);
        assert_eq!(frame[21], 255, "hop limit");
        assert_eq!(frame[22..38], target.octets(), "from the target itself");
        assert_eq!(
            frame[38..54],
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets()
        );
        let icmp = &frame[54..54 + 32];
        assert_eq!(icmp[4], 0x20, "Override; not a router (forwarding is off)");
        assert_eq!(icmp[8..24], target.octets());
        assert_eq!(icmp[24..26], [2, 1]);
        assert_eq!(icmp[26..32], mac);

        // The kernel filled in the checksum: the sum over pseudo-header and message is zero.
        let mut summed = Vec::new();
        summed.extend_from_slice(&frame[22..54]);
        summed.extend_from_slice(&32u32.to_be_bytes());
        summed.extend_from_slice(&[0, 0, 0, 58]);
        summed.extend_from_slice(icmp);
        assert_eq!(packet::checksum::internet_checksum(&summed), 0);
    });
}

/// Netlink's view of the veth pair, as every netlink-facing test starts from it.
struct Lab {
    netlink: Netlink,
    va: Link,
    vb: Link,
}

impl Lab {
    async fn new() -> Self {
        let netlink = Netlink::new().unwrap();
        let va = netlink.link("va").await.unwrap();
        let vb = netlink.link("vb").await.unwrap();
        Self { netlink, va, vb }
    }

    /// The primary addresses of `va` and `vb` for `family`, once usable; panics where one has none.
    async fn primaries(&self, family: Family) -> (IpAddr, IpAddr) {
        if family == Family::Ipv6 {
            netns::wait_for_link_local("va");
            netns::wait_for_link_local("vb");
        }
        let primary = async |link| {
            self.netlink
                .primary_address(link, family)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("no {family:?} address on {}", link.name))
        };
        (primary(&self.va).await, primary(&self.vb).await)
    }
}

/// Runs `test` on the [`Lab`] of a namespace of its own with the veth pair (skipped without
/// root).
fn in_lab(test: impl AsyncFnOnce(Lab)) {
    let Some(runtime) = netns::enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async { test(Lab::new().await).await });
}

/// Runs `test` on the IPv4 advert sockets of [`socket_pair`], in a namespace of its own with the
/// veth pair (skipped without root).
fn with_sockets(unicast: bool, test: impl AsyncFnOnce(AdvertSocket, AdvertSocket)) {
    let Some(runtime) = netns::enter_with_veth_pair() else {
        return;
    };
    let (a, b) = socket_pair(&runtime, unicast);
    runtime.block_on(test(a, b));
}

fn v2_advert(auth: Auth) -> Advert {
    Advert::v2(53, 150, Interval::from_secs(1), vec![VIP], auth).unwrap()
}

/// Advert sockets on `va` (10.0.0.1) and, in a namespace of its own, `vb` (10.0.0.2).
fn socket_pair(runtime: &Runtime, unicast: bool) -> (AdvertSocket, AdvertSocket) {
    let handle = runtime.handle().clone();
    let b = netns::beyond_vb(move || {
        let _runtime = handle.enter();
        AdvertSocket::open(&netns::link("vb"), Family::Ipv4, IpAddr::V4(B), unicast).unwrap()
    });
    let _runtime = runtime.enter();
    let a = AdvertSocket::open(&netns::link("va"), Family::Ipv4, IpAddr::V4(A), unicast).unwrap();
    (a, b)
}

/// Sends `advert` from `va`'s socket (source 10.0.0.1).
async fn send(socket: &AdvertSocket, advert: &Advert, dst: IpAddr) {
    let message = packet::encode(advert, ChecksumMode::default(), IpAddr::V4(A), dst);
    socket.send(&message, dst).await.unwrap();
}

/// Sends `advert` from `a` to `dst` and has `b` accept it as expected of it.
async fn exchange(a: &AdvertSocket, b: &AdvertSocket, advert: &Advert, dst: IpAddr) -> Accepted {
    let expected = [Expected::for_advert(advert, !dst.is_multicast())];
    send(a, advert, dst).await;
    recv(b, &expected).await.unwrap()
}

/// Sends `message` to the group `group` out of `link` from a plain raw socket (not an
/// [`AdvertSocket`]) whose TTL / hop limit is [`LOW_TTL`].
fn send_plain(link: &Link, message: &[u8], group: IpAddr) {
    let domain = if group.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let plain = Socket::new(domain, Type::RAW, Some(Protocol::from(112))).unwrap();
    plain.bind_device(Some(link.name.as_bytes())).unwrap();
    if group.is_ipv4() {
        plain.set_multicast_if_v4(&A).unwrap();
        plain.set_multicast_ttl_v4(LOW_TTL.into()).unwrap();
    } else {
        plain.set_multicast_if_v6(link.index).unwrap();
        plain.set_multicast_hops_v6(LOW_TTL.into()).unwrap();
    }
    plain
        .send_to(message, &SocketAddr::new(group, 0).into())
        .unwrap();
}

async fn recv(socket: &AdvertSocket, expected: &[Expected]) -> Result<Accepted, DropReason> {
    tokio::time::timeout(PATIENCE, socket.recv(ChecksumMode::default(), expected))
        .await
        .expect("a packet in time")
        .unwrap()
}

async fn wait_for(link: &mut watch::Receiver<bool>, up: bool) {
    tokio::time::timeout(PATIENCE, link.wait_for(|state| *state == up))
        .await
        .unwrap_or_else(|_| panic!("link never became up={up}"))
        .unwrap();
}

/// An AF_PACKET receiver of every frame arriving on `link`.
fn capture(link: &Link) -> Box<dyn DataLinkReceiver> {
    let interface = NetworkInterface {
        name: link.name.clone(),
        description: String::new(),
        index: link.index,
        mac: None,
        ips: Vec::new(),
        flags: 0,
    };
    let config = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(100)),
        promiscuous: false,
        ..pnet_datalink::Config::default()
    };
    match pnet_datalink::channel(&interface, config).unwrap() {
        Channel::Ethernet(_, receiver) => receiver,
        _ => panic!("not an Ethernet channel"),
    }
}

/// The first frame `wanted` accepts, within [`PATIENCE`].
fn next_frame(capture: &mut dyn DataLinkReceiver, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline {
        match capture.next() {
            Ok(frame) if wanted(frame) => return frame.to_vec(),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::TimedOut => {}
            Err(error) => panic!("capture failed: {error}"),
        }
    }
    panic!("no such frame within {PATIENCE:?}");
}
