//! Expected bytes are written out by hand from the spec, never produced by the encoder under test.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::{DecodeError, Header, Version, decode, encode, encode_v2_udp};

const SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn encoded(version: Version, src: &str, dst: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode(version, addr(src), addr(dst), &mut out);
    out
}

fn encoded_udp(src: &str, dst: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_v2_udp(addr(src), addr(dst), &mut out);
    out
}

/// A v2 header from its parts, `len` given separately so that tests can lie about it.
fn v2(ver_cmd: u8, fam: u8, len: u16, body: &[u8]) -> Vec<u8> {
    let mut out = SIG.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn with_addresses(src: &str, dst: &str) -> Header {
    Header {
        source: Some(addr(src)),
        destination: Some(addr(dst)),
        tlvs: Vec::new(),
    }
}

fn unknown() -> Header {
    Header {
        source: None,
        destination: None,
        tlvs: Vec::new(),
    }
}

fn invalid<T: std::fmt::Debug>(result: Result<T, DecodeError>) -> bool {
    matches!(result, Err(DecodeError::Invalid(_)))
}

/// 192.168.0.1:56324 -> 192.168.0.11:443, the spec's v1 example, as an AF_INET block.
const INET_BLOCK: [u8; 12] = [
    0xC0, 0xA8, 0x00, 0x01, // source 192.168.0.1
    0xC0, 0xA8, 0x00, 0x0B, // destination 192.168.0.11
    0xDC, 0x04, // source port 56324
    0x01, 0xBB, // destination port 443
];

/// [2001:db8::1]:56324 -> [2001:db8::2]:443 as an AF_INET6 block.
const INET6_BLOCK: [u8; 36] = [
    0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, // source 2001:db8::1
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
    0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, // destination 2001:db8::2
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
    0xDC, 0x04, // source port 56324
    0x01, 0xBB, // destination port 443
];

// ---- v1 bytes ----

#[test]
fn v1_tcp4_is_the_spec_example() {
    assert_eq!(
        encoded(Version::V1, "192.168.0.1:56324", "192.168.0.11:443"),
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    );
}

#[test]
fn v1_tcp6() {
    assert_eq!(
        encoded(Version::V1, "[2001:db8::1]:56324", "[2001:db8::2]:443"),
        b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n"
    );
}

#[test]
fn v1_tcp6_addresses_are_colon_hex_with_the_longest_zero_run_compressed() {
    for (ip, text) in [
        // First run wins a tie.
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        // Longer run wins over an earlier one.
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
        // A lone zero group stays.
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("::", "::"),
        ("::1", "::1"),
        ("1::", "1::"),
        (
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ),
        // Never the dotted tail std's Display uses for these.
        ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ("::192.0.2.1", "::c000:201"),
    ] {
        let line = encoded(Version::V1, &format!("[{ip}]:1"), "[::1]:2");
        assert_eq!(
            String::from_utf8(line).unwrap(),
            format!("PROXY TCP6 {text} ::1 1 2\r\n"),
            "{ip}"
        );
    }
}

#[test]
fn v1_mixed_families_become_tcp6_with_a_v4_mapped_address() {
    assert_eq!(
        encoded(Version::V1, "192.0.2.1:5000", "[2001:db8::1]:80"),
        b"PROXY TCP6 ::ffff:c000:201 2001:db8::1 5000 80\r\n"
    );
    assert_eq!(
        encoded(Version::V1, "[2001:db8::1]:5000", "192.0.2.1:80"),
        b"PROXY TCP6 2001:db8::1 ::ffff:c000:201 5000 80\r\n"
    );
}

#[test]
fn v1_longest_lines_are_the_specs_56_and_104_bytes() {
    let v4 = encoded(
        Version::V1,
        "255.255.255.255:65535",
        "255.255.255.255:65535",
    );
    assert_eq!(v4.len(), 56);
    let all_ones = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
    assert_eq!(encoded(Version::V1, all_ones, all_ones).len(), 104);
}

#[test]
fn encode_appends() {
    let mut out = b"xy".to_vec();
    encode(Version::V1, addr("1.2.3.4:1"), addr("5.6.7.8:2"), &mut out);
    assert_eq!(out, b"xyPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
}

// ---- v2 bytes ----

#[test]
fn v2_tcp4() {
    let mut expected = SIG.to_vec();
    expected.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]);
    expected.extend_from_slice(&INET_BLOCK);
    assert_eq!(
        encoded(Version::V2, "192.168.0.1:56324", "192.168.0.11:443"),
        expected
    );
}

#[test]
fn v2_tcp6() {
    let mut expected = SIG.to_vec();
    expected.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
    expected.extend_from_slice(&INET6_BLOCK);
    assert_eq!(
        encoded(Version::V2, "[2001:db8::1]:56324", "[2001:db8::2]:443"),
        expected
    );
}

#[test]
fn v2_udp4_and_udp6() {
    let mut expected = SIG.to_vec();
    expected.extend_from_slice(&[0x21, 0x12, 0x00, 0x0C]);
    expected.extend_from_slice(&INET_BLOCK);
    assert_eq!(
        encoded_udp("192.168.0.1:56324", "192.168.0.11:443"),
        expected
    );

    let mut expected = SIG.to_vec();
    expected.extend_from_slice(&[0x21, 0x22, 0x00, 0x24]);
    expected.extend_from_slice(&INET6_BLOCK);
    assert_eq!(
        encoded_udp("[2001:db8::1]:56324", "[2001:db8::2]:443"),
        expected
    );
}

#[test]
fn v2_mixed_families_become_inet6_with_a_v4_mapped_address() {
    let mut expected = SIG.to_vec();
    expected.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 1]);
    expected.extend_from_slice(&[0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expected.extend_from_slice(&[0x13, 0x88, 0x00, 0x50]);
    assert_eq!(
        encoded(Version::V2, "192.0.2.1:5000", "[2001:db8::1]:80"),
        expected
    );
}

// ---- decoding valid headers ----

#[test]
fn decodes_v1_and_leaves_the_stream_alone() {
    let buf = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n\r\n";
    assert_eq!(
        decode(buf),
        Ok((with_addresses("192.168.0.1:56324", "192.168.0.11:443"), 47))
    );
    let buf = b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 0 65535\r\nSSH-2.0";
    assert_eq!(
        decode(buf),
        Ok((
            with_addresses("[2001:db8::1]:0", "[::ffff:c000:201]:65535"),
            49
        ))
    );
}

#[test]
fn decodes_v1_unknown_short_and_worst_case_forms() {
    assert_eq!(decode(b"PROXY UNKNOWN\r\n"), Ok((unknown(), 15)));
    // The spec's 107-byte worst case: anything after UNKNOWN is ignored.
    let ones = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY UNKNOWN {ones} {ones} 65535 65535\r\n");
    assert_eq!(line.len(), 107);
    assert_eq!(decode(line.as_bytes()), Ok((unknown(), 107)));
    assert_eq!(
        decode(b"PROXY UNKNOWN \x00\xFF junk\r\nx"),
        Ok((unknown(), 23))
    );
}

#[test]
fn decodes_v2_inet_and_inet6_and_leaves_the_stream_alone() {
    let mut buf = v2(0x21, 0x11, 12, &INET_BLOCK);
    buf.extend_from_slice(b"payload");
    assert_eq!(
        decode(&buf),
        Ok((with_addresses("192.168.0.1:56324", "192.168.0.11:443"), 28))
    );
    let mut buf = v2(0x21, 0x22, 36, &INET6_BLOCK);
    buf.extend_from_slice(b"payload");
    assert_eq!(
        decode(&buf),
        Ok((
            with_addresses("[2001:db8::1]:56324", "[2001:db8::2]:443"),
            52
        ))
    );
}

#[test]
fn decodes_v2_tlvs_after_the_addresses() {
    let mut body = INET_BLOCK.to_vec();
    body.extend_from_slice(&[0x02, 0x00, 0x0B]);
    body.extend_from_slice(b"example.com");
    body.extend_from_slice(&[0x04, 0x00, 0x00]); // empty NOOP
    body.extend_from_slice(&[0xE0, 0x00, 0x02, 0xAB, 0xCD]);
    let buf = v2(0x21, 0x11, u16::try_from(body.len()).unwrap(), &body);
    let mut expected = with_addresses("192.168.0.1:56324", "192.168.0.11:443");
    expected.tlvs = vec![
        (0x02, b"example.com".to_vec()),
        (0x04, Vec::new()),
        (0xE0, vec![0xAB, 0xCD]),
    ];
    assert_eq!(decode(&buf), Ok((expected, buf.len())));
}

#[test]
fn v2_local_skips_the_whole_block_unchecked() {
    assert_eq!(decode(&v2(0x20, 0x00, 0, &[])), Ok((unknown(), 16)));
    // Receivers must honour the length even for LOCAL, and ignore the family.
    let buf = v2(0x20, 0xFF, 5, b"junk!more");
    assert_eq!(decode(&buf), Ok((unknown(), 21)));
    assert_eq!(decode(&v2(0x20, 0x11, 2, &[1, 2])), Ok((unknown(), 18)));
}

#[test]
fn v2_addresses_the_spec_says_to_ignore_are_none() {
    // AF_UNSPEC: no layout, so the whole block is skipped.
    assert_eq!(decode(&v2(0x21, 0x00, 3, &[1, 2, 3])), Ok((unknown(), 19)));
    // UNSPEC transport over AF_INET: addresses skipped, TLVs still read.
    let mut body = INET_BLOCK.to_vec();
    body.extend_from_slice(&[0x05, 0x00, 0x01, 0x07]);
    let mut expected = unknown();
    expected.tlvs = vec![(0x05, vec![0x07])];
    assert_eq!(
        decode(&v2(0x21, 0x10, 16, &body)),
        Ok((expected.clone(), 32))
    );
    // AF_UNIX: 216 bytes of paths, then TLVs.
    let mut body = vec![b'/'; 216];
    body.extend_from_slice(&[0x05, 0x00, 0x01, 0x07]);
    assert_eq!(decode(&v2(0x21, 0x31, 220, &body)), Ok((expected, 236)));
}

// ---- truncated ----

#[test]
fn every_strict_prefix_of_a_header_is_incomplete() {
    let mut with_tlv = INET6_BLOCK.to_vec();
    with_tlv.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
    let ones = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let headers = [
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
        b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 0 65535\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        format!("PROXY UNKNOWN {ones} {ones} 65535 65535\r\n").into_bytes(),
        v2(0x21, 0x11, 12, &INET_BLOCK),
        v2(0x21, 0x21, 41, &with_tlv),
        v2(0x20, 0x00, 0, &[]),
        v2(0x20, 0x00, 4, b"skip"),
    ];
    for header in headers {
        assert!(decode(&header).is_ok(), "{header:?}");
        for cut in 0..header.len() {
            assert_eq!(
                decode(&header[..cut]),
                Err(DecodeError::Incomplete),
                "{:?}",
                &header[..cut]
            );
        }
    }
}

// ---- malformed ----

#[test]
fn bad_signatures_are_invalid() {
    for buf in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXYTCP4",
        b"X",
        b"\x16\x03\x01",
        b"\r\n\r\n\x00\r\nQUIX\n",
        b"\r\n\r\n\x01",
        b"\r\r",
    ] {
        assert_eq!(
            decode(buf),
            Err(DecodeError::Invalid("bad signature")),
            "{buf:?}"
        );
    }
}

#[test]
fn v1_without_crlf_within_107_bytes_is_invalid() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(106, b'x');
    assert_eq!(decode(&line), Err(DecodeError::Incomplete));
    line.push(b'x');
    assert!(invalid(decode(&line)));
    line.extend_from_slice(b"\r\n");
    assert!(invalid(decode(&line)));

    // CR as the 107th byte: the LF would be the 108th.
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(106, b'x');
    line.push(b'\r');
    assert!(invalid(decode(&line)));
    line.push(b'\n');
    assert!(invalid(decode(&line)));
}

#[test]
fn v1_lines_must_end_in_crlf() {
    for buf in [
        &b"PROXY UNKNOWN\n"[..],
        b"PROXY UNKNOWN\rX",
        b"PROXY UNKNOWN\r\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rGET",
        b"PROXY \n",
    ] {
        assert!(invalid(decode(buf)), "{buf:?}");
    }
}

#[test]
fn v1_bad_ports_are_invalid() {
    for (ports, reason) in [
        ("65536 1", "v1: bad source port"),
        ("99999 1", "v1: bad source port"),
        ("100000 1", "v1: bad source port"),
        ("01 1", "v1: bad source port"),
        ("00 1", "v1: bad source port"),
        ("+1 1", "v1: bad source port"),
        ("-1 1", "v1: bad source port"),
        ("1a 1", "v1: bad source port"),
        ("0x1 1", "v1: bad source port"),
        (" 1", "v1: bad source port"),
        ("1 65536", "v1: bad destination port"),
        ("1 080", "v1: bad destination port"),
        ("1 ", "v1: bad destination port"),
        ("1 1 ", "v1: too many fields"),
        ("1 1 1", "v1: too many fields"),
        ("1", "v1: missing fields"),
    ] {
        let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {ports}\r\n");
        assert_eq!(
            decode(line.as_bytes()),
            Err(DecodeError::Invalid(reason)),
            "{line:?}"
        );
    }
    assert!(decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n").is_ok());
}

#[test]
fn v1_bad_protocols_and_addresses_are_invalid() {
    for (line, reason) in [
        ("PROXY TCP4 ::1 ::1 1 2", "v1: bad source address"),
        ("PROXY TCP6 1.2.3.4 ::1 1 2", "v1: bad source address"),
        ("PROXY TCP6 ::1 1.2.3.4 1 2", "v1: bad destination address"),
        ("PROXY TCP4 256.0.0.1 1.2.3.4 1 2", "v1: bad source address"),
        ("PROXY TCP4 01.2.3.4 1.2.3.4 1 2", "v1: bad source address"),
        ("PROXY TCP4 1.2.3 1.2.3.4 1 2", "v1: bad source address"),
        ("PROXY TCP6 fe80::1%1 ::1 1 2", "v1: bad source address"),
        ("PROXY TCP4  1.2.3.4 1.2.3.4 1 2", "v1: bad source address"),
        (
            "PROXY TCP4 1.2.3.4  1.2.3.4 1 2",
            "v1: bad destination address",
        ),
        ("PROXY TCP4", "v1: missing fields"),
        ("PROXY TCP4 ", "v1: bad source address"),
        ("PROXY TCP4 1.2.3.4 5.6.7.8", "v1: missing fields"),
        ("PROXY tcp4 1.2.3.4 5.6.7.8 1 2", "v1: unknown protocol"),
        ("PROXY UDP4 1.2.3.4 5.6.7.8 1 2", "v1: unknown protocol"),
        ("PROXY UNKNOWNX", "v1: unknown protocol"),
        ("PROXY ", "v1: unknown protocol"),
        ("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2", "v1: unknown protocol"),
    ] {
        let buf = format!("{line}\r\n");
        assert_eq!(
            decode(buf.as_bytes()),
            Err(DecodeError::Invalid(reason)),
            "{line:?}"
        );
    }
    assert_eq!(
        decode(b"PROXY TCP4 1.2.3.4 \xFF 1 2\r\n"),
        Err(DecodeError::Invalid("v1: non-ASCII field"))
    );
}

#[test]
fn v1_is_refused_before_the_crlf_once_it_cannot_be_valid() {
    for partial in [
        &b"PROXY TCP5"[..],
        b"PROXY UNKNOWX",
        b"PROXY TCP4 1.2.3.4 -",
        b"PROXY TCP6 ::1 g",
        b"PROXY FOO ",
    ] {
        assert!(invalid(decode(partial)), "{partial:?}");
    }
}

#[test]
fn v2_bad_version_is_invalid_as_soon_as_seen() {
    for ver_cmd in [0x01, 0x11, 0x31, 0xF1] {
        let mut buf = SIG.to_vec();
        buf.push(ver_cmd);
        assert_eq!(
            decode(&buf),
            Err(DecodeError::Invalid("v2: unsupported version"))
        );
        let buf = v2(ver_cmd, 0x11, 12, &INET_BLOCK);
        assert_eq!(
            decode(&buf),
            Err(DecodeError::Invalid("v2: unsupported version"))
        );
    }
}

#[test]
fn v2_bad_command_is_invalid() {
    for ver_cmd in [0x22, 0x23, 0x2F] {
        let buf = v2(ver_cmd, 0x11, 12, &INET_BLOCK);
        assert_eq!(
            decode(&buf),
            Err(DecodeError::Invalid("v2: unknown command"))
        );
        assert_eq!(
            decode(&buf[..13]),
            Err(DecodeError::Invalid("v2: unknown command"))
        );
    }
}

#[test]
fn v2_bad_family_or_protocol_is_invalid() {
    for fam in [0x41, 0x51, 0xF1] {
        assert_eq!(
            decode(&v2(0x21, fam, 12, &INET_BLOCK)),
            Err(DecodeError::Invalid("v2: unknown address family"))
        );
    }
    for fam in [0x13, 0x1F, 0x03, 0x23] {
        assert_eq!(
            decode(&v2(0x21, fam, 36, &INET6_BLOCK)),
            Err(DecodeError::Invalid("v2: unknown transport protocol"))
        );
    }
}

#[test]
fn v2_length_shorter_than_the_addresses_is_invalid() {
    for (fam, len) in [(0x11, 11), (0x12, 0), (0x21, 35), (0x22, 12), (0x31, 215)] {
        let body = vec![0; 300];
        let reason = Err(DecodeError::Invalid(
            "v2: length shorter than the address block",
        ));
        assert_eq!(decode(&v2(0x21, fam, len, &body)), reason, "{fam:x} {len}");
        // Known from the fixed part alone: no need to wait for the rest.
        assert_eq!(decode(&v2(0x21, fam, len, &[])), reason, "{fam:x} {len}");
    }
}

#[test]
fn v2_tlvs_must_tile_the_rest_of_the_header() {
    let mut body = INET_BLOCK.to_vec();
    body.extend_from_slice(&[0x01, 0x00]);
    assert_eq!(
        decode(&v2(0x21, 0x11, 14, &body)),
        Err(DecodeError::Invalid("v2: truncated TLV"))
    );
    let mut body = INET_BLOCK.to_vec();
    body.extend_from_slice(&[0x01, 0x00, 0x03, b'h', b'2']);
    assert_eq!(
        decode(&v2(0x21, 0x11, 17, &body)),
        Err(DecodeError::Invalid("v2: TLV longer than the header"))
    );
    // The TLV may not borrow from the stream that follows the header.
    body.extend_from_slice(b"xyz");
    assert_eq!(
        decode(&v2(0x21, 0x11, 17, &body)),
        Err(DecodeError::Invalid("v2: TLV longer than the header"))
    );
}

#[test]
fn errors_read_well() {
    assert_eq!(
        DecodeError::Invalid("bad signature").to_string(),
        "invalid PROXY protocol header: bad signature"
    );
    assert_eq!(
        DecodeError::Incomplete.to_string(),
        "incomplete PROXY protocol header"
    );
}

// ---- properties ----

/// What the decoder should give back for an encoded pair: one family for both (IPv4 mapped into
/// IPv6 when they differ), and no IPv6 flow label or scope, which the protocol does not carry.
fn as_sent(source: SocketAddr, destination: SocketAddr) -> Header {
    let (src, dst) = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => (IpAddr::V6(mapped(s)), IpAddr::V6(mapped(d))),
    };
    Header {
        source: Some(SocketAddr::new(src, source.port())),
        destination: Some(SocketAddr::new(dst, destination.port())),
        tlvs: Vec::new(),
    }
}

fn mapped(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            Ipv6Addr::from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, a, b, c, d])
        }
        IpAddr::V6(v6) => v6,
    }
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        any::<SocketAddr>(),
        // Edge addresses that random ones rarely hit.
        (
            prop_oneof![
                Just(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                Just(IpAddr::V4(Ipv4Addr::BROADCAST)),
                Just(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                any::<Ipv4Addr>().prop_map(|v4| IpAddr::V6(v4.to_ipv6_mapped())),
                any::<[u16; 8]>().prop_map(|g| IpAddr::V6(Ipv6Addr::from(g.map(|s| s & 1)))),
            ],
            prop_oneof![Just(0u16), Just(65535u16), any::<u16>()],
        )
            .prop_map(|(ip, port)| SocketAddr::new(ip, port)),
    ]
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V1), Just(Version::V2)]
}

/// Seeds that get random bytes past the signature checks and into the parsers.
fn header_start() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"PROXY ".to_vec()),
        Just(b"PROXY TCP4 ".to_vec()),
        Just(b"PROXY TCP6 ".to_vec()),
        Just(b"PROXY UNKNOWN".to_vec()),
        Just(SIG.to_vec()),
        any::<(u8, u8, u16)>().prop_map(|(ver_cmd, fam, len)| v2(ver_cmd, fam, len, &[])),
        (
            prop::sample::select(vec![0x20u8, 0x21]),
            any::<u8>(),
            0u16..300
        )
            .prop_map(|(ver_cmd, fam, len)| v2(ver_cmd, fam, len, &[])),
        "PROXY (TCP4|TCP6|UNKNOWN)[ 0-9a-f.:]{0,110}(\r\n)?".prop_map(String::into_bytes),
    ]
}

fn check_decode_is_sane(buf: &[u8]) {
    match decode(buf) {
        Ok((_, len)) => assert!(0 < len && len <= buf.len(), "{len} of {}", buf.len()),
        Err(DecodeError::Incomplete) => {
            assert!(!buf.starts_with(b"PROXY") || buf.len() < 107, "{buf:?}");
        }
        Err(DecodeError::Invalid(_)) => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trips(
        version in version(),
        source in socket_addr(),
        destination in socket_addr(),
        stream in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut buf = Vec::new();
        encode(version, source, destination, &mut buf);
        let len = buf.len();
        buf.extend_from_slice(&stream);
        prop_assert_eq!(decode(&buf), Ok((as_sent(source, destination), len)));
        if version == Version::V1 {
            prop_assert!(len <= 104);
        }
    }

    #[test]
    fn udp_round_trips(source in socket_addr(), destination in socket_addr()) {
        let mut buf = Vec::new();
        encode_v2_udp(source, destination, &mut buf);
        let fam = buf[13];
        prop_assert!(fam == 0x12 || fam == 0x22);
        prop_assert_eq!(decode(&buf), Ok((as_sent(source, destination), buf.len())));
    }

    #[test]
    fn truncated_encodings_are_incomplete(
        version in version(),
        source in socket_addr(),
        destination in socket_addr(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = Vec::new();
        encode(version, source, destination, &mut buf);
        let cut = cut.index(buf.len());
        prop_assert_eq!(decode(&buf[..cut]), Err(DecodeError::Incomplete));
    }

    #[test]
    fn v2_tlvs_come_back_as_sent(
        tlvs in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..40)), 0..8),
    ) {
        let mut body = INET_BLOCK.to_vec();
        for (kind, value) in &tlvs {
            body.push(*kind);
            body.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
            body.extend_from_slice(value);
        }
        let buf = v2(0x21, 0x11, u16::try_from(body.len()).unwrap(), &body);
        let mut expected = with_addresses("192.168.0.1:56324", "192.168.0.11:443");
        expected.tlvs = tlvs;
        prop_assert_eq!(decode(&buf), Ok((expected, buf.len())));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn decode_never_panics_nor_overreads(
        start in header_start(),
        rest in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut buf = start;
        buf.extend_from_slice(&rest);
        check_decode_is_sane(&buf);
    }

    #[test]
    fn decode_survives_corrupted_headers(
        version in version(),
        source in socket_addr(),
        destination in socket_addr(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = Vec::new();
        encode(version, source, destination, &mut buf);
        for (at, byte) in flips {
            let at = at.index(buf.len());
            buf[at] = byte;
        }
        let cut = cut.index(buf.len() + 1);
        check_decode_is_sane(&buf[..cut]);
    }
}
