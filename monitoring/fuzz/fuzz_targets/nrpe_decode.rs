//! Fuzzes the NRPE packet decoder and the query checks with arbitrary bytes: the input whole,
//! then the input behind a first byte that picks a version, fixes the length fields and the CRC
//! (so that the type, text and query checks are reached, not only the CRC refusal). Nothing may
//! panic; every packet `decode` accepts must encode to bytes that decode to the same packet, and
//! a fixed-up packet must be accepted.

#![no_main]

use fulcrum_monitoring::nrpe::{
    packet::{self, HEADER_LEN, V2_LEN},
    request,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data, data.first().is_some_and(|b| b & 0x80 != 0));
    if let Some((&flags, rest)) = data.split_first() {
        let fixed = fix_up(flags, rest);
        let decoded = packet::decode(&fixed);
        if fixed.len() >= HEADER_LEN && matches!(u16::from_be_bytes([fixed[2], fixed[3]]), 1 | 2) {
            assert!(
                decoded.is_ok(),
                "a fixed-up packet was refused: {decoded:?}"
            );
        }
        check(&fixed, flags & 0x80 != 0);
    }
});

/// Decodes `bytes` every way the server does, and round-trips what is accepted.
fn check(bytes: &[u8], allow_arguments: bool) {
    if let Some(header) = bytes.first_chunk::<HEADER_LEN>() {
        let _ = packet::remaining_len(header);
    }
    let _ = request::parse(bytes, allow_arguments);
    if let Ok(decoded) = packet::decode(bytes) {
        let _ = request::parse(&decoded.text, allow_arguments);
        let again = packet::decode(&packet::encode(&decoded));
        assert_eq!(again.as_ref(), Ok(&decoded));
    }
}

/// `rest` made a well-formed packet of the version `flags` picks: length fields set, version 2
/// sized, the CRC computed (over version 3's padding when `flags` says it is sent).
fn fix_up(flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut bytes = rest.to_vec();
    if bytes.len() < HEADER_LEN {
        return bytes;
    }
    let version: u16 = match flags % 3 {
        0 => 2,
        1 => 3,
        _ => 4,
    };
    bytes[..2].copy_from_slice(&version.to_be_bytes());
    // Types 1 and 2 mostly, so the text is reached; sometimes anything.
    if flags & 0x40 == 0 {
        bytes[3] = 1 + (bytes[3] & 1);
        bytes[2] = 0;
    }
    let padded = version == 3 && flags & 0x20 != 0;
    match version {
        2 => bytes.resize(V2_LEN, 0),
        _ => {
            let padding = if padded { 3 } else { 0 };
            bytes.truncate(HEADER_LEN + 65536);
            if bytes.len() < HEADER_LEN + padding {
                bytes.resize(HEADER_LEN + padding, 0);
            }
            let len = i32::try_from(bytes.len() - HEADER_LEN - padding).unwrap_or(0);
            bytes[12..16].copy_from_slice(&len.to_be_bytes());
        }
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..4]);
    hasher.update(&[0; 4]);
    if version == 2 {
        hasher.update(&bytes[8..]);
    } else {
        hasher.update(&bytes[8..10]);
        hasher.update(&[0; 2]);
        hasher.update(&bytes[12..]);
        if version == 3 && !padded {
            hasher.update(&[0; 3]);
        }
    }
    let crc = hasher.finalize();
    bytes[4..8].copy_from_slice(&crc.to_be_bytes());
    bytes
}
