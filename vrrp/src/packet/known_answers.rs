//! Known-answer tests: adverts keepalived 2.2.7 (Debian bookworm's 1:2.2.7-1+b2) sent, byte for
//! byte, which [`encode`] must reproduce and [`decode`] must accept.
//!
//! How they were captured: two network namespaces joined by a veth pair (fa0 192.0.2.1/24 and
//! 2001:db8::1/64, MAC 02:00:00:00:0a:01 so the link-local is fe80::ff:fe00:a01; fb0 192.0.2.2),
//! `keepalived -n -l -D --vrrp -f keepalived.conf` in the first, `tcpdump -i fb0 -w vrrp.pcap
//! 'ip proto 112 or ip6 proto 112'` in the second, keepalived stopped with SIGTERM after 12 s so
//! that each instance also sent its priority-0 resignation. The configuration had five
//! instances, all `state BACKUP` on fa0 (each became master after 3 intervals of silence):
//!
//! | instance | version | vrid | priority | advert_int | auth                    | VIPs |
//! |----------|---------|------|----------|------------|-------------------------|------|
//! | V2PASS   | 2       | 51   | 150      | 1          | PASS `secret-password`  | 192.0.2.100, .101 |
//! | V2NONE   | 2       | 52   | 100      | 2          | none                    | 192.0.2.102 |
//! | V3V4     | 3       | 53   | 200      | 0.5        | -                       | 192.0.2.103, .104 |
//! | V3V4UNI  | 3       | 55   | 120      | 1          | unicast 192.0.2.1 -> .2 | 192.0.2.105 |
//! | V3V6     | 3       | 54   | 100      | 1          | -                       | 2001:db8::100, ::101 |
//!
//! keepalived logged "Truncating auth_pass to 8 characters" for V2PASS: the wire carries
//! `secret-p`. The bytes below are the IP packets from the capture (IPv4 header included; for
//! IPv6 the payload, with the header's fields noted). Every checksum was also verified
//! independently with a few lines of Python (`struct` and a ones' complement sum). keepalived
//! 2.2.7 cannot send a VRRPv3 checksum without the pseudo-header (`v3_checksum_as_v2` came in
//! 2.2.8), so that one advert is the captured V3V4 one with its checksum recomputed by hand in
//! the same Python, over the message alone: 0x81c5.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

const KEEPALIVED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const KEEPALIVED_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 0x0a01);

/// V2PASS, priority 150: 20 bytes of IPv4 header (TOS 0xc0, TTL 255, proto 112, to 224.0.0.18),
/// then the advert: 0x21 (v2, advertisement), vrid 51, priority 150, 2 addresses, auth type 1,
/// interval 1 s, checksum 0x5942, 192.0.2.100, 192.0.2.101, "secret-p".
const V2_PASS: &str = "45c0002c00010000ff70188dc0000201e0000012\
                       2133960201015942c0000264c00002657365637265742d70";
/// V2PASS resigning: priority 0, checksum 0xef42.
const V2_PASS_PRIO0: &str = "45c0002c000a0000ff701884c0000201e0000012\
                             213300020101ef42c0000264c00002657365637265742d70";
/// V2NONE: auth type 0, interval 2 s, the authentication data all zero.
const V2_NONE: &str = "45c0002800010000ff701891c0000201e0000012\
                       213464010002b861c00002660000000000000000";
/// V3V4: 0x31 (v3, advertisement), vrid 53, priority 200, 2 addresses, interval 0x0032 = 50 cs,
/// checksum 0xdf30 over the IPv4 pseudo-header (192.0.2.1, 224.0.0.18, 0, 112, 16) and message.
const V3_V4: &str = "45c0002400010000ff701895c0000201e0000012\
                     3135c8020032df30c0000267c0000268";
/// V3V4 resigning: priority 0, checksum 0xa731.
const V3_V4_PRIO0: &str = "45c0002400160000ff701880c0000201e0000012\
                           313500020032a731c0000267c0000268";
/// V3V4UNI: to the unicast peer 192.0.2.2, TTL still 255; the pseudo-header carries the unicast
/// destination (keepalived's checksum since 1.3.6).
const V3_V4_UNICAST: &str = "45c0002000010000ff7036a9c0000201c0000202\
                             3137780100640f79c0000269";
/// V3V6 payload, from fe80::ff:fe00:a01 to ff02::12, hop limit 255, traffic class 0xc0: vrid
/// 54, priority 100, 2 addresses, 100 cs, checksum 0x05c1 over the IPv6 pseudo-header.
const V3_V6: &str = "31366402006405c1\
                     20010db8000000000000000000000100\
                     20010db8000000000000000000000101";
/// V3V6 resigning: priority 0, checksum 0x69c1.
const V3_V6_PRIO0: &str = "31360002006469c1\
                           20010db8000000000000000000000100\
                           20010db8000000000000000000000101";
/// By hand (see the module doc): V3V4 with the checksum over the message alone.
const V3_V4_MESSAGE_ONLY: &str = "3135c802003281c5c0000267c0000268";

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// The VRRP message inside a captured IPv4 packet (no options: IHL 5).
fn payload(packet: &[u8]) -> &[u8] {
    &packet[20..]
}

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

fn v6(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)
}

fn v2_pass(priority: u8) -> Advert {
    let mut advert = Advert::v2(
        51,
        150,
        Interval::from_secs(1),
        vec![v4(100), v4(101)],
        Auth::pass("secret-password"),
    )
    .unwrap();
    advert.set_priority(priority);
    advert
}

fn v2_none() -> Advert {
    Advert::v2(52, 100, Interval::from_secs(2), vec![v4(102)], Auth::None).unwrap()
}

fn v3_v4(priority: u8) -> Advert {
    Advert::v3(
        53,
        priority,
        Interval::from_centis(50),
        vec![v4(103), v4(104)],
    )
    .unwrap()
}

fn v3_v4_unicast() -> Advert {
    Advert::v3(55, 120, Interval::from_secs(1), vec![v4(105)]).unwrap()
}

fn v3_v6(priority: u8) -> Advert {
    Advert::v3_ipv6(
        54,
        priority,
        Interval::from_secs(1),
        vec![v6(0x100), v6(0x101)],
    )
    .unwrap()
}

fn multicast_v4() -> (IpAddr, IpAddr) {
    (IpAddr::V4(KEEPALIVED), IpAddr::V4(MULTICAST_V4))
}

fn multicast_v6() -> (IpAddr, IpAddr) {
    (IpAddr::V6(KEEPALIVED_LL), IpAddr::V6(MULTICAST_V6))
}

/// A context that expects `advert`'s own configuration, as the peer instance would have it.
fn expecting(advert: &Advert, unicast: bool) -> Vec<Expected> {
    vec![Expected::for_advert(advert, unicast)]
}

fn ctx<'a>(
    (src, dst): (IpAddr, IpAddr),
    checksum: ChecksumMode,
    expected: &'a [Expected],
) -> RecvContext<'a> {
    RecvContext {
        ttl: Some(255),
        src,
        dst,
        checksum,
        expected,
    }
}

#[test]
fn encodes_keepalived_v2_pass_byte_for_byte() {
    let (src, dst) = multicast_v4();
    let packet = hex(V2_PASS);
    assert_eq!(
        encode(&v2_pass(150), ChecksumMode::PseudoHeader, src, dst),
        payload(&packet)
    );
    let resign = hex(V2_PASS_PRIO0);
    assert_eq!(
        encode(&v2_pass(0), ChecksumMode::PseudoHeader, src, dst),
        payload(&resign)
    );
}

#[test]
fn encodes_keepalived_v2_without_auth_byte_for_byte() {
    let (src, dst) = multicast_v4();
    let packet = hex(V2_NONE);
    assert_eq!(
        encode(&v2_none(), ChecksumMode::PseudoHeader, src, dst),
        payload(&packet)
    );
}

#[test]
fn encodes_keepalived_v3_ipv4_byte_for_byte() {
    let (src, dst) = multicast_v4();
    let packet = hex(V3_V4);
    assert_eq!(
        encode(&v3_v4(200), ChecksumMode::PseudoHeader, src, dst),
        payload(&packet)
    );
    let resign = hex(V3_V4_PRIO0);
    assert_eq!(
        encode(&v3_v4(0), ChecksumMode::PseudoHeader, src, dst),
        payload(&resign)
    );
    let unicast = hex(V3_V4_UNICAST);
    let (src, dst) = (IpAddr::V4(KEEPALIVED), IpAddr::V4(PEER));
    assert_eq!(
        encode(&v3_v4_unicast(), ChecksumMode::PseudoHeader, src, dst),
        payload(&unicast)
    );
}

#[test]
fn encodes_keepalived_v3_ipv6_byte_for_byte() {
    let (src, dst) = multicast_v6();
    // The mode only concerns IPv4: IPv6 always has its pseudo-header.
    for mode in [ChecksumMode::PseudoHeader, ChecksumMode::MessageOnly] {
        assert_eq!(encode(&v3_v6(100), mode, src, dst), hex(V3_V6));
        assert_eq!(encode(&v3_v6(0), mode, src, dst), hex(V3_V6_PRIO0));
    }
}

#[test]
fn encodes_the_v3_message_only_checksum() {
    let (src, dst) = multicast_v4();
    assert_eq!(
        encode(&v3_v4(200), ChecksumMode::MessageOnly, src, dst),
        hex(V3_V4_MESSAGE_ONLY)
    );
}

#[test]
fn decodes_every_captured_ipv4_packet() {
    let cases = [
        (V2_PASS, v2_pass(150), false),
        (V2_PASS_PRIO0, v2_pass(0), false),
        (V2_NONE, v2_none(), false),
        (V3_V4, v3_v4(200), false),
        (V3_V4_PRIO0, v3_v4(0), false),
        (V3_V4_UNICAST, v3_v4_unicast(), true),
    ];
    for (text, advert, unicast) in cases {
        let expected = expecting(&advert, unicast);
        let accepted =
            decode_ipv4_packet(&hex(text), ChecksumMode::PseudoHeader, &expected).unwrap();
        assert_eq!(accepted.advert, advert, "{text}");
        assert_eq!(accepted.src, IpAddr::V4(KEEPALIVED));
        assert_eq!(accepted.warnings, vec![], "{text}");
    }
}

#[test]
fn decodes_the_captured_ipv6_payload() {
    let expected = expecting(&v3_v6(100), false);
    for (text, priority) in [(V3_V6, 100), (V3_V6_PRIO0, 0)] {
        let accepted = decode(
            &hex(text),
            &ctx(multicast_v6(), ChecksumMode::PseudoHeader, &expected),
        )
        .unwrap();
        assert_eq!(accepted.advert, v3_v6(priority));
        assert_eq!(accepted.advert.family(), Family::Ipv6);
    }
}

#[test]
fn the_checksum_modes_do_not_accept_each_other() {
    let expected = expecting(&v3_v4(200), false);
    let with_pseudo = hex(V3_V4);
    let message_only = hex(V3_V4_MESSAGE_ONLY);
    let addresses = multicast_v4();

    let ok = decode(
        &message_only,
        &ctx(addresses, ChecksumMode::MessageOnly, &expected),
    );
    assert_eq!(ok.unwrap().advert, v3_v4(200));

    let err = decode(
        &message_only,
        &ctx(addresses, ChecksumMode::PseudoHeader, &expected),
    );
    assert_eq!(
        err,
        Err(DropReason::BadChecksum {
            received: 0x81c5,
            computed: 0xdf30
        })
    );
    let err = decode_ipv4_packet(&with_pseudo, ChecksumMode::MessageOnly, &expected);
    assert_eq!(
        err,
        Err(DropReason::BadChecksum {
            received: 0xdf30,
            computed: 0x81c5
        })
    );
}

/// The unicast advert's checksum covers its real destination, so the same bytes sent to the
/// multicast group would not verify.
#[test]
fn the_unicast_pseudo_header_has_the_unicast_destination() {
    let packet = hex(V3_V4_UNICAST);
    let expected = expecting(&v3_v4_unicast(), true);
    let (src, _) = multicast_v4();
    let ctx = RecvContext {
        ttl: Some(255),
        src,
        dst: IpAddr::V4(v4(3)),
        checksum: ChecksumMode::PseudoHeader,
        expected: &expected,
    };
    assert!(matches!(
        decode(payload(&packet), &ctx),
        Err(DropReason::BadChecksum { .. })
    ));
}
