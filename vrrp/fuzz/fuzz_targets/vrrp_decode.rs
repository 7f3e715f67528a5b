//! Fuzzes the VRRP decoders with arbitrary bytes: `decode` with a receive context taken from the
//! first bytes of the input, and `decode_ipv4_packet` on the whole input and on the message
//! behind a well-formed IPv4 header. Neither may panic, and any advert `decode` accepts must
//! encode to a message that decodes to the same advert.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fulcrum_vrrp::packet::{
    self, Auth, ChecksumMode, Expected, Interval, MULTICAST_V4, MULTICAST_V6, PROTOCOL,
    RecvContext, Version, checksum,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = packet::decode_ipv4_packet(data, ChecksumMode::PseudoHeader, &[]);

    let mut input = Input(data);
    let flags = input.u8();
    let ttl = input.u8();
    let ipv6 = flags & 0x01 != 0;
    let (src, dst) = input.endpoints(ipv6, flags & 0x02 != 0);
    let mode = if flags & 0x04 != 0 {
        ChecksumMode::MessageOnly
    } else {
        ChecksumMode::PseudoHeader
    };
    let ttl = (flags & 0x08 == 0).then_some(ttl);
    let mut expected: Vec<Expected> = (0..input.u8() % 4).map(|_| input.expected()).collect();
    let mut message = input.0.to_vec();

    // Help the fuzzer past the VRID lookup and the checksum, so the later checks get exercised
    // rather than only the first drops.
    if flags & 0x10 != 0 {
        let mut own = input_expected(&message, ipv6);
        own.unicast = !dst.is_multicast();
        expected.push(own);
    }
    if flags & 0x20 != 0 && message.len() >= 8 {
        let version = if message[0] >> 4 == 2 {
            Version::V2
        } else {
            Version::V3
        };
        let sum = checksum::advert_checksum(&message, version, mode, src, dst);
        message[6..8].copy_from_slice(&sum.to_be_bytes());
    }

    let ctx = RecvContext {
        ttl,
        src,
        dst,
        checksum: mode,
        expected: &expected,
    };
    if let Ok(accepted) = packet::decode(&message, &ctx) {
        let again = packet::encode(&accepted.advert, mode, src, dst);
        let decoded = packet::decode(&again, &ctx).map(|accepted| accepted.advert);
        assert_eq!(decoded, Ok(accepted.advert));
    }

    if !ipv6 && let Ok(total) = u16::try_from(20 + message.len()) {
        let mut ip = vec![0x45, 0xc0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 0, ttl.unwrap_or(255), PROTOCOL, 0, 0]);
        ip.extend_from_slice(&[192, 0, 2, 1]);
        ip.extend_from_slice(&MULTICAST_V4.octets());
        ip.extend_from_slice(&message);
        let _ = packet::decode_ipv4_packet(&ip, mode, &expected);
    }
});

/// An instance configured as the message's own header says (version, interval, password,
/// addresses), so that the fuzzer reaches acceptance, and the re-encoding check, often.
fn input_expected(message: &[u8], ipv6: bool) -> Expected {
    let byte = |index: usize| message.get(index).copied().unwrap_or(0);
    let version = if byte(0) >> 4 == 2 {
        Version::V2
    } else {
        Version::V3
    };
    let (interval, auth_len) = match version {
        Version::V2 => (Interval::from_secs(byte(5)), 8),
        Version::V3 => (
            Interval::from_centis(u16::from_be_bytes([byte(4), byte(5)]) & 0x0FFF),
            0,
        ),
    };
    let body = message.get(8..).unwrap_or_default();
    let (addresses, auth_data) = body.split_at(body.len().saturating_sub(auth_len));
    let addresses = if ipv6 {
        addresses
            .chunks_exact(16)
            .filter_map(|chunk| <[u8; 16]>::try_from(chunk).ok())
            .map(|octets| IpAddr::V6(Ipv6Addr::from(octets)))
            .collect()
    } else {
        addresses
            .chunks_exact(4)
            .filter_map(|chunk| <[u8; 4]>::try_from(chunk).ok())
            .map(|octets| IpAddr::V4(Ipv4Addr::from(octets)))
            .collect()
    };
    let auth = match <[u8; 8]>::try_from(auth_data) {
        Ok(password) if byte(4) == 1 => Auth::Pass(password),
        _ => Auth::None,
    };
    Expected {
        vrid: byte(1),
        version,
        auth,
        interval,
        addresses,
        unicast: false,
    }
}

/// Reads the fuzz input from the front; past its end every byte reads as 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((first, rest)) => {
                self.0 = rest;
                *first
            }
            None => 0,
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut bytes = [0; N];
        for byte in &mut bytes {
            *byte = self.u8();
        }
        bytes
    }

    fn endpoints(&mut self, ipv6: bool, multicast: bool) -> (IpAddr, IpAddr) {
        if ipv6 {
            let src = Ipv6Addr::from(self.array::<16>());
            let dst = if multicast {
                MULTICAST_V6
            } else {
                Ipv6Addr::from(self.array::<16>())
            };
            (IpAddr::V6(src), IpAddr::V6(dst))
        } else {
            let src = Ipv4Addr::from(self.array::<4>());
            let dst = if multicast {
                MULTICAST_V4
            } else {
                Ipv4Addr::from(self.array::<4>())
            };
            (IpAddr::V4(src), IpAddr::V4(dst))
        }
    }

    fn expected(&mut self) -> Expected {
        let vrid = self.u8();
        let flags = self.u8();
        let auth = if flags & 0x01 != 0 {
            Auth::Pass(self.array::<8>())
        } else {
            Auth::None
        };
        let interval = Interval::from_centis(u16::from_be_bytes(self.array::<2>()));
        let addresses = (0..(flags >> 4) % 4)
            .map(|_| {
                if flags & 0x04 != 0 {
                    IpAddr::V6(Ipv6Addr::from(self.array::<16>()))
                } else {
                    IpAddr::V4(Ipv4Addr::from(self.array::<4>()))
                }
            })
            .collect();
        Expected {
            vrid,
            version: if flags & 0x02 != 0 {
                Version::V3
            } else {
                Version::V2
            },
            auth,
            interval,
            addresses,
            unicast: flags & 0x08 != 0,
        }
    }
}
