//! Property tests: no bytes make the decoder or the query checks panic, and every packet
//! survives encode then decode (the fuzz target in `monitoring/fuzz/` pushes the former further).

#![allow(clippy::unwrap_used, reason = "tests")]

use proptest::collection::vec;
use proptest::prelude::*;

use super::{
    packet::{self, HEADER_LEN, Kind, MAX_TEXT, Packet, V2_LEN, V2_MAX_TEXT, Version},
    request,
};

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V2), Just(Version::V3), Just(Version::V4)]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Query), Just(Kind::Response)]
}

/// Text the version carries whole: no NUL, not over its limit (long texts only for 3 and 4).
fn packet() -> impl Strategy<Value = Packet> {
    (
        version(),
        kind(),
        any::<u16>(),
        vec(1..=255u8, 0..=2 * V2_MAX_TEXT),
    )
        .prop_map(|(version, kind, result_code, mut text)| {
            text.truncate(version.max_text());
            Packet {
                version,
                kind,
                result_code,
                text,
            }
        })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..2 * V2_LEN), allow in any::<bool>()) {
        if let Ok(packet) = packet::decode(&bytes) {
            let _ = request::parse(&packet.text, allow);
        }
        if let Some(header) = bytes.first_chunk::<HEADER_LEN>() {
            let _ = packet::remaining_len(header);
        }
        let _ = request::parse(&bytes, allow);
    }

    /// Headers that pass the first checks, so the CRC and the rest are reached too.
    #[test]
    fn plausible_packets_never_panic(
        version in 2..=4u16,
        kind in 0..=3u16,
        len in 0..=2 * V2_LEN,
        body in vec(any::<u8>(), 0..2 * V2_LEN),
    ) {
        let mut bytes = version.to_be_bytes().to_vec();
        bytes.extend_from_slice(&kind.to_be_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&i32::try_from(len).unwrap().to_be_bytes());
        bytes.extend_from_slice(&body);
        let _ = packet::decode(&bytes);
    }

    #[test]
    fn encode_then_decode_round_trips(packet in packet()) {
        let bytes = packet::encode(&packet);
        prop_assert_eq!(packet::decode(&bytes).unwrap(), packet.clone());
        let header: &[u8; HEADER_LEN] = bytes.first_chunk().unwrap();
        // A stream reader reads the header, then what it says: everything but version 3's
        // padding, which decodes the same.
        let whole = HEADER_LEN + packet::remaining_len(header).unwrap();
        prop_assert_eq!(packet::decode(&bytes[..whole]).unwrap(), packet);
    }

    #[test]
    fn any_flipped_byte_is_caught(packet in packet(), at in any::<prop::sample::Index>(), flip in 1..=255u8) {
        let mut bytes = packet::encode(&packet);
        let at = at.index(bytes.len());
        bytes[at] ^= flip;
        // CRC32 catches every single-byte change; only the alignment field, which it skips,
        // may change, and then nothing read from the packet does.
        if let Ok(decoded) = packet::decode(&bytes) {
            prop_assert!((10..12).contains(&at), "byte {} changed undetected", at);
            prop_assert_eq!(decoded, packet);
        }
    }
}

#[test]
fn sizes_are_the_4_1_tools() {
    let query = |version, text: &str| Packet {
        version,
        kind: Kind::Query,
        result_code: 0,
        text: text.as_bytes().to_vec(),
    };
    let response = |version, text: &str| Packet {
        kind: Kind::Response,
        ..query(version, text)
    };
    // As check_nrpe 4.1 sends `check_foo` (captured): 1036 bytes in every version.
    for version in [Version::V2, Version::V3, Version::V4] {
        assert_eq!(packet::encode(&query(version, "check_foo")).len(), V2_LEN);
    }
    // As nrpe 4.1 answers `_NRPE_CHECK` in version 4: 28 bytes, buffer_length 12.
    let v4 = packet::encode(&response(Version::V4, "NRPE v4.1.0"));
    assert_eq!(v4.len(), 28);
    assert_eq!(&v4[12..16], &12i32.to_be_bytes());
    // As nrpe 3.x answers in version 3: buffer_length is the text alone, then 3 zero bytes.
    let v3 = packet::encode(&response(Version::V3, "hello"));
    assert_eq!((v3.len(), &v3[12..16]), (24, &5i32.to_be_bytes()[..]));
    // Long output: cut at 1023 bytes in version 2, at 65535 otherwise.
    let long = "x".repeat(70_000);
    assert_eq!(
        packet::decode(&packet::encode(&response(Version::V2, &long)))
            .unwrap()
            .text
            .len(),
        V2_MAX_TEXT
    );
    assert_eq!(
        packet::decode(&packet::encode(&response(Version::V4, &long)))
            .unwrap()
            .text
            .len(),
        MAX_TEXT
    );
}

#[test]
fn refuses_what_nrpe_refuses() {
    let mut bytes = packet::encode(&Packet {
        version: Version::V2,
        kind: Kind::Query,
        result_code: 0,
        text: b"check_load".to_vec(),
    });
    bytes[20] ^= 1;
    assert!(matches!(
        packet::decode(&bytes),
        Err(packet::DecodeError::Crc { .. })
    ));
    bytes[1] = 1;
    assert_eq!(packet::decode(&bytes), Err(packet::DecodeError::Version(1)));
    let mut v4 = [0u8; HEADER_LEN];
    v4[1] = 4;
    v4[12..16].copy_from_slice(&65537i32.to_be_bytes());
    assert_eq!(
        packet::remaining_len(&v4),
        Err(packet::DecodeError::BufferLength(65537))
    );
    v4[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(
        packet::remaining_len(&v4),
        Err(packet::DecodeError::BufferLength(-1))
    );
    v4[12..16].copy_from_slice(&65536i32.to_be_bytes());
    assert_eq!(packet::remaining_len(&v4), Ok(65536));
}
