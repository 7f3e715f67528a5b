//! Each receive check of RFC 3768 / RFC 5798 §7.1 on its own: a packet that fails just that check
//! and the [`DropReason`] it gets, plus the cases the RFCs say to log but accept.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum::advert_checksum;
use super::*;

const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const GROUP: IpAddr = IpAddr::V4(MULTICAST_V4);
const US: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const SRC6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
const GROUP6: IpAddr = IpAddr::V6(MULTICAST_V6);

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

fn v2(priority: u8, auth: Auth) -> Advert {
    Advert::v2(
        51,
        priority,
        Interval::from_secs(1),
        vec![v4(100), v4(101)],
        auth,
    )
    .unwrap()
}

fn v3(priority: u8, interval: Interval) -> Advert {
    Advert::v3(53, priority, interval, vec![v4(103)]).unwrap()
}

fn v2_instance() -> Expected {
    Expected::for_advert(&v2(100, Auth::pass("secret")), false)
}

fn v3_instance() -> Expected {
    Expected::for_advert(&v3(100, Interval::from_secs(1)), false)
}

fn multicast(expected: &[Expected]) -> RecvContext<'_> {
    RecvContext {
        ttl: Some(255),
        src: SRC,
        dst: GROUP,
        checksum: ChecksumMode::PseudoHeader,
        expected,
    }
}

fn send(advert: &Advert) -> Vec<u8> {
    encode(advert, ChecksumMode::PseudoHeader, SRC, GROUP)
}

/// Puts a correct checksum back after a test has edited the bytes, so that a later check is
/// the one that fails.
fn reseal(mut message: Vec<u8>, version: Version) -> Vec<u8> {
    let sum = advert_checksum(&message, version, ChecksumMode::PseudoHeader, SRC, GROUP);
    message[6..8].copy_from_slice(&sum.to_be_bytes());
    message
}

#[test]
fn a_valid_advert_passes_every_check() {
    let expected = [v2_instance()];
    let sent = v2(150, Auth::pass("secret"));
    let accepted = decode(&send(&sent), &multicast(&expected)).unwrap();
    assert_eq!(accepted.advert, sent);
    assert_eq!(accepted.src, SRC);
    assert!(accepted.warnings.is_empty());
}

#[test]
fn too_short() {
    let expected = [v2_instance()];
    let message = send(&v2(150, Auth::pass("secret")));
    assert_eq!(
        decode(&message[..7], &multicast(&expected)),
        Err(DropReason::TooShort { len: 7 })
    );
    assert_eq!(
        decode(&[], &multicast(&expected)),
        Err(DropReason::TooShort { len: 0 })
    );
}

#[test]
fn multicast_needs_ttl_255() {
    let expected = [v2_instance()];
    let message = send(&v2(150, Auth::pass("secret")));
    let mut ctx = multicast(&expected);
    ctx.ttl = Some(254);
    assert_eq!(decode(&message, &ctx), Err(DropReason::BadTtl { ttl: 254 }));
    // Unknown (the socket did not report it): not checked, as keepalived does.
    ctx.ttl = None;
    assert!(decode(&message, &ctx).is_ok());
}

#[test]
fn unicast_may_cross_routers() {
    let advert = v3(150, Interval::from_secs(1));
    let expected = [Expected::for_advert(&advert, true)];
    let message = encode(&advert, ChecksumMode::PseudoHeader, SRC, US);
    let ctx = RecvContext {
        ttl: Some(61),
        src: SRC,
        dst: US,
        checksum: ChecksumMode::PseudoHeader,
        expected: &expected,
    };
    assert!(decode(&message, &ctx).is_ok());
}

// Input: a unicast advert from SRC to an instance with `check_unicast_src`, whose peers
// list SRC, then one whose peers do not. Output: accepted, then dropped as `UnknownSource`.
// (Any address could send a unicast instance adverts, from anywhere.)
#[test]
fn check_unicast_src_takes_adverts_from_the_listed_peers_only() {
    let advert = v3(150, Interval::from_secs(1));
    let message = encode(&advert, ChecksumMode::PseudoHeader, SRC, US);
    let other: IpAddr = "192.0.2.77".parse().unwrap();
    for (peers, accepted) in [(vec![other, SRC], true), (vec![other], false)] {
        let mut instance = Expected::for_advert(&advert, true);
        instance.sources = peers;
        let expected = [instance];
        let ctx = RecvContext {
            ttl: Some(255),
            src: SRC,
            dst: US,
            checksum: ChecksumMode::PseudoHeader,
            expected: &expected,
        };
        match decode(&message, &ctx) {
            Ok(_) => assert!(accepted),
            Err(reason) => {
                assert!(!accepted, "{reason}");
                assert_eq!(reason, DropReason::UnknownSource { src: SRC });
            }
        }
    }
}

// Input: IPv6 unicast adverts to an instance with `check_unicast_src` listing the peer's
// global address, from the peer's link-local address (as VRRPv3 sends them), then from a global
// address not listed. Output: the first accepted, the second dropped. (Every IPv6 advert was
// dropped, its link-local source not being the listed address: both nodes became MASTER.)
#[test]
fn check_unicast_src_over_ipv6_takes_link_local_sources() {
    let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
    let advert = Advert::v3_ipv6(54, 150, Interval::from_secs(1), vec![vip]).unwrap();
    let us: IpAddr = "2001:db8::1".parse().unwrap();
    let cases = [("fe80::2", true), ("2001:db8::99", false)];
    for (src, accepted) in cases {
        let src: IpAddr = src.parse().unwrap();
        let message = encode(&advert, ChecksumMode::PseudoHeader, src, us);
        let mut instance = Expected::for_advert(&advert, true);
        instance.sources = vec!["2001:db8::2".parse().unwrap()];
        let expected = [instance];
        let ctx = RecvContext {
            ttl: Some(255),
            src,
            dst: us,
            checksum: ChecksumMode::PseudoHeader,
            expected: &expected,
        };
        assert_eq!(decode(&message, &ctx).is_ok(), accepted, "{src}");
    }
}

#[test]
fn unknown_version() {
    let expected = [v2_instance()];
    let mut message = send(&v2(150, Auth::pass("secret")));
    for version in [0u8, 1, 4, 15] {
        message[0] = version << 4 | 1;
        assert_eq!(
            decode(&message, &multicast(&expected)),
            Err(DropReason::BadVersion { version })
        );
    }
}

#[test]
fn not_an_advertisement() {
    let expected = [v2_instance()];
    let mut message = send(&v2(150, Auth::pass("secret")));
    message[0] = 0x22;
    assert_eq!(
        decode(&message, &multicast(&expected)),
        Err(DropReason::BadType { kind: 2 })
    );
}

#[test]
fn v2_over_ipv6_and_mixed_families() {
    let expected = [v2_instance()];
    let message = send(&v2(150, Auth::pass("secret")));
    let mut ctx = multicast(&expected);
    (ctx.src, ctx.dst) = (SRC6, GROUP6);
    assert!(matches!(
        decode(&message, &ctx),
        Err(DropReason::BadAddressFamily { .. })
    ));
    (ctx.src, ctx.dst) = (SRC, GROUP6);
    assert!(matches!(
        decode(&message, &ctx),
        Err(DropReason::BadAddressFamily { .. })
    ));
}

#[test]
fn length_must_match_the_address_count() {
    let expected = [v2_instance()];
    let mut message = send(&v2(150, Auth::pass("secret")));
    // v2 with 2 IPv4 addresses: 8 + 2*4 + 8.
    message[3] = 3;
    assert_eq!(
        decode(&message, &multicast(&expected)),
        Err(DropReason::BadLength {
            len: 24,
            expected: 28
        })
    );
    message[3] = 2;
    message.push(0);
    assert_eq!(
        decode(&message, &multicast(&expected)),
        Err(DropReason::BadLength {
            len: 25,
            expected: 24
        })
    );
}

#[test]
fn ipv6_addresses_are_16_bytes() {
    let advert = Advert::v3_ipv6(54, 100, Interval::from_secs(1), vec![Ipv6Addr::LOCALHOST]);
    let advert = advert.unwrap();
    let expected = [Expected::for_advert(&advert, false)];
    let message = encode(&advert, ChecksumMode::PseudoHeader, SRC6, GROUP6);
    assert_eq!(message.len(), 8 + 16);
    let ctx = RecvContext {
        ttl: Some(255),
        src: SRC6,
        dst: GROUP6,
        checksum: ChecksumMode::PseudoHeader,
        expected: &expected,
    };
    assert_eq!(decode(&message, &ctx).unwrap().advert, advert);
    assert_eq!(
        decode(&message[..20], &ctx),
        Err(DropReason::BadLength {
            len: 20,
            expected: 24
        })
    );
}

#[test]
fn corrupted_bytes_fail_the_checksum() {
    let expected = [v2_instance()];
    let mut message = send(&v2(150, Auth::pass("secret")));
    message[9] ^= 0x01;
    assert!(matches!(
        decode(&message, &multicast(&expected)),
        Err(DropReason::BadChecksum { .. })
    ));
}

/// The IPv4 source is in the v3 pseudo-header: the same bytes from another sender fail.
#[test]
fn v3_checksum_covers_the_source() {
    let expected = [v3_instance()];
    let message = send(&v3(150, Interval::from_secs(1)));
    let mut ctx = multicast(&expected);
    ctx.src = IpAddr::V4(v4(9));
    assert!(matches!(
        decode(&message, &ctx),
        Err(DropReason::BadChecksum { .. })
    ));
}

#[test]
fn unknown_vrid() {
    let expected = [v3_instance()];
    let message = send(&v2(150, Auth::pass("secret")));
    assert_eq!(
        decode(&message, &multicast(&expected)),
        Err(DropReason::UnknownVrid { vrid: 51 })
    );
    assert_eq!(
        decode(&message, &multicast(&[])),
        Err(DropReason::UnknownVrid { vrid: 51 })
    );
}

#[test]
fn the_instance_is_found_by_vrid_among_several() {
    let expected = [v3_instance(), v2_instance()];
    assert!(decode(&send(&v2(150, Auth::pass("secret"))), &multicast(&expected)).is_ok());
    assert!(
        decode(
            &send(&v3(150, Interval::from_secs(1))),
            &multicast(&expected)
        )
        .is_ok()
    );
}

#[test]
fn version_must_be_the_instances() {
    let mut instance = v3_instance();
    instance.version = Version::V2;
    let expected = [instance];
    let message = send(&v3(150, Interval::from_secs(1)));
    assert_eq!(
        decode(&message, &multicast(&expected)),
        Err(DropReason::VersionMismatch {
            received: Version::V3,
            expected: Version::V2
        })
    );
}

#[test]
fn unicast_and_multicast_do_not_mix() {
    let advert = v3(150, Interval::from_secs(1));
    let unicast_instance = [Expected::for_advert(&advert, true)];
    assert_eq!(
        decode(&send(&advert), &multicast(&unicast_instance)),
        Err(DropReason::CastMismatch {
            expected_unicast: true
        })
    );
    let multicast_instance = [Expected::for_advert(&advert, false)];
    let message = encode(&advert, ChecksumMode::PseudoHeader, SRC, US);
    let ctx = RecvContext {
        dst: US,
        ..multicast(&multicast_instance)
    };
    assert_eq!(
        decode(&message, &ctx),
        Err(DropReason::CastMismatch {
            expected_unicast: false
        })
    );
}

#[test]
fn ipsec_ah_and_unknown_auth_types_are_refused() {
    let expected = [v2_instance()];
    for auth_type in [2u8, 3, 255] {
        let mut message = send(&v2(150, Auth::pass("secret")));
        message[4] = auth_type;
        let message = reseal(message, Version::V2);
        assert_eq!(
            decode(&message, &multicast(&expected)),
            Err(DropReason::BadAuthType { auth_type })
        );
    }
}

#[test]
fn auth_type_must_be_the_instances() {
    let expected = [v2_instance()];
    assert_eq!(
        decode(&send(&v2(150, Auth::None)), &multicast(&expected)),
        Err(DropReason::AuthTypeMismatch {
            received: 0,
            expected: 1
        })
    );
    let no_auth = [Expected::for_advert(&v2(100, Auth::None), false)];
    assert_eq!(
        decode(&send(&v2(150, Auth::pass("secret"))), &multicast(&no_auth)),
        Err(DropReason::AuthTypeMismatch {
            received: 1,
            expected: 0
        })
    );
    assert!(decode(&send(&v2(150, Auth::None)), &multicast(&no_auth)).is_ok());
}

#[test]
fn wrong_password() {
    let expected = [v2_instance()];
    assert_eq!(
        decode(&send(&v2(150, Auth::pass("secreT"))), &multicast(&expected)),
        Err(DropReason::AuthFailed)
    );
    // Only the first 8 bytes count, as in keepalived.
    let long = [Expected::for_advert(
        &v2(100, Auth::pass("password-one")),
        false,
    )];
    let sent = v2(150, Auth::pass("password-two"));
    assert!(decode(&send(&sent), &multicast(&long)).is_ok());
}

#[test]
fn other_addresses_are_dropped_unless_from_the_owner() {
    let mut instance = v2_instance();
    instance.addresses = vec![IpAddr::V4(v4(100)), IpAddr::V4(v4(102))];
    let expected = [instance];
    assert_eq!(
        decode(&send(&v2(254, Auth::pass("secret"))), &multicast(&expected)),
        Err(DropReason::AddressListMismatch { priority: 254 })
    );
    let accepted = decode(&send(&v2(255, Auth::pass("secret"))), &multicast(&expected)).unwrap();
    assert_eq!(accepted.warnings, vec![Warning::AddressListMismatch]);
}

#[test]
fn fewer_addresses_are_a_mismatch_and_order_is_not() {
    let mut instance = v2_instance();
    instance.addresses = vec![IpAddr::V4(v4(101)), IpAddr::V4(v4(100))];
    let expected = [instance.clone()];
    assert!(decode(&send(&v2(150, Auth::pass("secret"))), &multicast(&expected)).is_ok());
    instance.addresses.pop();
    let expected = [instance];
    assert_eq!(
        decode(&send(&v2(150, Auth::pass("secret"))), &multicast(&expected)),
        Err(DropReason::AddressListMismatch { priority: 150 })
    );
}

#[test]
fn v2_interval_must_match() {
    let mut instance = v2_instance();
    instance.interval = Interval::from_secs(2);
    let expected = [instance];
    assert_eq!(
        decode(&send(&v2(150, Auth::pass("secret"))), &multicast(&expected)),
        Err(DropReason::IntervalMismatch {
            received: Interval::from_secs(1),
            expected: Interval::from_secs(2)
        })
    );
}

#[test]
fn v3_interval_may_differ() {
    let expected = [v3_instance()];
    let half = Interval::from_centis(50);
    let accepted = decode(&send(&v3(150, half)), &multicast(&expected)).unwrap();
    assert_eq!(accepted.advert.interval(), half);
    assert_eq!(
        accepted.warnings,
        vec![Warning::IntervalMismatch {
            received: half,
            expected: Interval::from_secs(1)
        }]
    );
}

#[test]
fn v3_reserved_bits_are_ignored() {
    let expected = [v3_instance()];
    let mut message = send(&v3(150, Interval::from_secs(1)));
    message[4] |= 0xF0;
    let message = reseal(message, Version::V3);
    let accepted = decode(&message, &multicast(&expected)).unwrap();
    assert_eq!(accepted.advert.interval(), Interval::from_secs(1));
}

/// An IPv4 header around `message`, as a raw socket delivers it.
fn ipv4_packet(message: &[u8], protocol: u8, options: &[u8]) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total = u16::try_from(header_len + message.len()).unwrap();
    let ihl = u8::try_from(header_len / 4).unwrap();
    let mut packet = vec![0x40 | ihl, 0xc0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 1, 0, 0, 255, protocol, 0, 0]);
    packet.extend_from_slice(&[192, 0, 2, 1, 224, 0, 0, 18]);
    packet.extend_from_slice(options);
    packet.extend_from_slice(message);
    packet
}

#[test]
fn whole_ipv4_packets() {
    let expected = [v2_instance()];
    let message = send(&v2(150, Auth::pass("secret")));
    let mode = ChecksumMode::PseudoHeader;

    let packet = ipv4_packet(&message, PROTOCOL, &[]);
    assert!(decode_ipv4_packet(&packet, mode, &expected).is_ok());
    // Options (here a router alert and padding) shift the payload.
    let packet = ipv4_packet(&message, PROTOCOL, &[0x94, 0x04, 0, 0]);
    assert!(decode_ipv4_packet(&packet, mode, &expected).is_ok());

    let mut low_ttl = ipv4_packet(&message, PROTOCOL, &[]);
    low_ttl[8] = 1;
    assert_eq!(
        decode_ipv4_packet(&low_ttl, mode, &expected),
        Err(DropReason::BadTtl { ttl: 1 })
    );

    let ah = ipv4_packet(&message, 51, &[]);
    assert_eq!(
        decode_ipv4_packet(&ah, mode, &expected),
        Err(DropReason::NotVrrp { protocol: 51 })
    );
}

#[test]
fn malformed_ipv4_headers() {
    let expected = [v2_instance()];
    let message = send(&v2(150, Auth::pass("secret")));
    let mode = ChecksumMode::PseudoHeader;
    let good = ipv4_packet(&message, PROTOCOL, &[]);
    let bad = |packet: &[u8]| match decode_ipv4_packet(packet, mode, &expected) {
        Err(DropReason::BadIpHeader { reason }) => reason,
        other => panic!("{other:?}"),
    };

    assert_eq!(bad(&good[..19]), "shorter than 20 bytes");
    let mut v6 = good.clone();
    v6[0] = 0x65;
    assert_eq!(bad(&v6), "version is not 4");
    let mut small_ihl = good.clone();
    small_ihl[0] = 0x44;
    assert_eq!(bad(&small_ihl), "header length (IHL) below 5 words");
    assert_eq!(
        bad(&good[..good.len() - 1]),
        "total length differs from the bytes received"
    );
    let mut fragment = good.clone();
    fragment[6] = 0x20; // More Fragments
    assert_eq!(bad(&fragment), "fragment");
    let mut dont_fragment = good.clone();
    dont_fragment[6] = 0x40;
    assert!(decode_ipv4_packet(&dont_fragment, mode, &expected).is_ok());
    let mut huge_ihl = good[..24].to_vec();
    huge_ihl[0] = 0x4F;
    huge_ihl[2..4].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(
        bad(&huge_ihl),
        "header length (IHL) beyond the total length"
    );
}

#[test]
fn drops_are_counted_by_kind() {
    let counters = DropCounters::new();
    let expected = [v2_instance()];
    let packets = [
        send(&v2(150, Auth::pass("wrong"))),
        send(&v2(150, Auth::pass("wrong"))),
        vec![0x21],
        send(&v2(150, Auth::pass("secret"))),
    ];
    for packet in &packets {
        if let Err(reason) = decode(packet, &multicast(&expected)) {
            counters.record(&reason);
        }
    }
    assert_eq!(counters.get(DropKind::AuthFailed), 2);
    assert_eq!(counters.get(DropKind::TooShort), 1);
    assert_eq!(counters.total(), 3);
}
