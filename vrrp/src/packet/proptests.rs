//! Property tests: every valid advert survives encode then decode unchanged, and no input at all
//! makes the decoders panic (the fuzz target in `vrrp/fuzz/` pushes the latter further).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![Just(Auth::None), any::<[u8; 8]>().prop_map(Auth::Pass)]
}

fn mode() -> impl Strategy<Value = ChecksumMode> {
    prop_oneof![
        Just(ChecksumMode::PseudoHeader),
        Just(ChecksumMode::MessageOnly)
    ]
}

/// Any advert the constructors accept: v2 or v3, IPv4 or IPv6, 0 to 255 addresses.
fn advert() -> impl Strategy<Value = Advert> {
    let v2 = (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        vec(any::<Ipv4Addr>(), 0..=MAX_ADDRESSES),
        auth(),
    )
        .prop_map(|(vrid, priority, secs, addresses, auth)| {
            Advert::v2(vrid, priority, Interval::from_secs(secs), addresses, auth).unwrap()
        });
    let v3 = (
        any::<u8>(),
        any::<u8>(),
        0..=0x0FFFu16,
        vec(any::<Ipv4Addr>(), 0..=MAX_ADDRESSES),
    )
        .prop_map(|(vrid, priority, centis, addresses)| {
            Advert::v3(vrid, priority, Interval::from_centis(centis), addresses).unwrap()
        });
    let v3_ipv6 = (
        any::<u8>(),
        any::<u8>(),
        0..=0x0FFFu16,
        vec(any::<Ipv6Addr>(), 0..=MAX_ADDRESSES),
    )
        .prop_map(|(vrid, priority, centis, addresses)| {
            Advert::v3_ipv6(vrid, priority, Interval::from_centis(centis), addresses).unwrap()
        });
    prop_oneof![v2, v3, v3_ipv6]
}

/// A source, and a destination that is the group or a unicast peer, of `family`.
fn endpoints(family: Family) -> BoxedStrategy<(IpAddr, IpAddr)> {
    match family {
        Family::Ipv4 => (
            any::<Ipv4Addr>(),
            prop_oneof![
                Just(MULTICAST_V4),
                any::<Ipv4Addr>().prop_filter("unicast", |a| !a.is_multicast())
            ],
        )
            .prop_map(|(src, dst)| (IpAddr::V4(src), IpAddr::V4(dst)))
            .boxed(),
        Family::Ipv6 => (
            any::<Ipv6Addr>(),
            prop_oneof![
                Just(MULTICAST_V6),
                any::<Ipv6Addr>().prop_filter("unicast", |a| !a.is_multicast())
            ],
        )
            .prop_map(|(src, dst)| (IpAddr::V6(src), IpAddr::V6(dst)))
            .boxed(),
    }
}

fn expected() -> impl Strategy<Value = Expected> {
    (
        any::<u8>(),
        prop_oneof![Just(Version::V2), Just(Version::V3)],
        auth(),
        any::<u16>(),
        vec(any::<IpAddr>(), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(vrid, version, auth, centis, addresses, unicast)| Expected {
                vrid,
                version,
                auth,
                interval: Interval::from_centis(centis),
                addresses,
                unicast,
                sources: Vec::new(),
            },
        )
}

/// Bytes that look like a VRRP header often enough to get past the first checks.
fn vrrp_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(0x21u8), Just(0x31u8), any::<u8>()],
        vec(any::<u8>(), 0..600),
    )
        .prop_map(|(first, mut rest)| {
            rest.insert(0, first);
            rest
        })
}

proptest! {
    #[test]
    fn encode_then_decode_gives_the_advert_back(
        (advert, (src, dst), mode) in advert().prop_flat_map(|advert| {
            let family = advert.family();
            (Just(advert), endpoints(family), mode())
        })
    ) {
        let message = encode(&advert, mode, src, dst);
        let expected = [Expected::for_advert(&advert, !dst.is_multicast())];
        let ctx = RecvContext { ttl: Some(TTL), src, dst, checksum: mode, expected: &expected };
        let accepted = decode(&message, &ctx).unwrap();
        prop_assert_eq!(&accepted.advert, &advert);
        prop_assert_eq!(accepted.src, src);
        prop_assert!(accepted.warnings.is_empty());
    }

    #[test]
    fn a_flipped_bit_is_always_caught(
        (advert, (src, dst), mode, bit) in advert().prop_flat_map(|advert| {
            let family = advert.family();
            (Just(advert), endpoints(family), mode(), any::<prop::sample::Index>())
        })
    ) {
        let mut message = encode(&advert, mode, src, dst);
        let bit = bit.index(message.len() * 8);
        message[bit / 8] ^= 1 << (bit % 8);
        let expected = [Expected::for_advert(&advert, !dst.is_multicast())];
        let ctx = RecvContext { ttl: Some(TTL), src, dst, checksum: mode, expected: &expected };
        // The version, type and count bits fail the structural checks; every other bit, the v3
        // reserved ones included, changes the ones' complement sum.
        prop_assert!(decode(&message, &ctx).is_err(), "bit {}", bit);
    }

    #[test]
    fn decode_never_panics(
        message in prop_oneof![vec(any::<u8>(), 0..2000), vrrp_like_bytes()],
        ttl in any::<Option<u8>>(),
        src in any::<IpAddr>(),
        dst in any::<IpAddr>(),
        checksum in mode(),
        expected in vec(expected(), 0..4),
    ) {
        let ctx = RecvContext { ttl, src, dst, checksum, expected: &expected };
        let _ = decode(&message, &ctx);
    }

    #[test]
    fn decode_ipv4_packet_never_panics(
        packet in prop_oneof![
            vec(any::<u8>(), 0..2000),
            // A plausible header in front, so the VRRP checks are reached too.
            vrrp_like_bytes().prop_map(|message| {
                let total = u16::try_from(20 + message.len()).unwrap_or(u16::MAX);
                let mut packet = vec![0x45, 0xc0];
                packet.extend_from_slice(&total.to_be_bytes());
                packet.extend_from_slice(&[0, 0, 0, 0, 255, PROTOCOL, 0, 0, 192, 0, 2, 1, 224, 0, 0, 18]);
                packet.extend_from_slice(&message);
                packet
            }),
        ],
        checksum in mode(),
        expected in vec(expected(), 0..4),
    ) {
        let _ = decode_ipv4_packet(&packet, checksum, &expected);
    }
}
