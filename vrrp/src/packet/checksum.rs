//! The Internet checksum (RFC 1071) as VRRP uses it: over the message alone for VRRPv2, and with
//! an IPv4 or IPv6 pseudo-header for VRRPv3 (RFC 5798 §5.2.8).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{CHECKSUM_OFFSET, PROTOCOL, Version};

/// What the checksum of a VRRPv3 advert over IPv4 covers.
///
/// RFC 5798 §5.2.8 sums "the entire VRRP message ... and a pseudo-header as defined in Section 8.1
/// of RFC 2460", which only defines an IPv6 pseudo-header. keepalived (2.2.7 and since) and
/// Wireshark read it as "with an IPv4 pseudo-header over IPv4"; Cisco and others read it as "the
/// message alone", as VRRPv2 does, which RFC 9568 later adopted and keepalived offers as
/// `v3_checksum_as_v2` (from 2.2.8). Both ends of a VRRP instance must agree. VRRPv2 always sums
/// the message alone and VRRPv3 over IPv6 always includes the pseudo-header, whatever the mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ChecksumMode {
    /// VRRPv3 over IPv4 sums an IPv4 pseudo-header (source, destination, zero, 112, length)
    /// and the message: keepalived's default.
    #[default]
    PseudoHeader,
    /// VRRPv3 over IPv4 sums the message alone (RFC 9568; keepalived `v3_checksum_as_v2`).
    MessageOnly,
}

/// The checksum that belongs in `message`'s checksum field, computed as if that field were zero.
///
/// `src` and `dst` are the addresses of the IP header; they only matter to VRRPv3. The IPv4
/// pseudo-header is used when both are IPv4, the IPv6 one otherwise (an IPv4 address among IPv6
/// ones is taken as IPv4-mapped, which no receiver will agree with: the caller's mistake shows as
/// a checksum drop at the peer, not as a panic here).
pub fn advert_checksum(
    message: &[u8],
    version: Version,
    mode: ChecksumMode,
    src: IpAddr,
    dst: IpAddr,
) -> u16 {
    let mut sum = Accumulator::default();
    add_pseudo_header(&mut sum, message.len(), version, mode, src, dst);
    // The field starts at an even offset, so summing around it keeps the 16-bit alignment.
    sum.add(message.get(..CHECKSUM_OFFSET).unwrap_or(message));
    sum.add(message.get(CHECKSUM_OFFSET + 2..).unwrap_or(&[]));
    sum.finish()
}

/// Whether `message` carries a correct checksum. This is RFC 1071's check, the one keepalived
/// makes: the sum over everything, the checksum field included, is all ones. (It differs from
/// comparing with [`advert_checksum`] only in accepting 0xFFFF for a computed 0x0000, ones'
/// complement's other zero.)
pub fn verify(
    message: &[u8],
    version: Version,
    mode: ChecksumMode,
    src: IpAddr,
    dst: IpAddr,
) -> bool {
    let mut sum = Accumulator::default();
    add_pseudo_header(&mut sum, message.len(), version, mode, src, dst);
    sum.add(message);
    sum.finish() == 0
}

/// The RFC 1071 Internet checksum of `data`: the ones' complement of the ones' complement sum of
/// its 16-bit big-endian words, an odd last byte padded with a zero.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum = Accumulator::default();
    sum.add(data);
    sum.finish()
}

fn add_pseudo_header(
    sum: &mut Accumulator,
    message_len: usize,
    version: Version,
    mode: ChecksumMode,
    src: IpAddr,
    dst: IpAddr,
) {
    if version == Version::V2 {
        return;
    }
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            if mode == ChecksumMode::PseudoHeader {
                sum.add(&ipv4_pseudo_header(src, dst, message_len));
            }
        }
        (src, dst) => sum.add(&ipv6_pseudo_header(as_v6(src), as_v6(dst), message_len)),
    }
}

/// The IPv4 pseudo-header (as TCP and UDP use it, RFC 793 §3.1), which keepalived builds for
/// VRRPv3: source, destination, a zero byte, protocol 112, and the 16-bit VRRP message length.
fn ipv4_pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, message_len: usize) -> [u8; 12] {
    // A message longer than 65535 bytes cannot come out of one IPv4 packet; saturating keeps
    // arbitrary input from panicking, and such a message fails its length check first anyway.
    let len = u16::try_from(message_len).unwrap_or(u16::MAX);
    let mut header = [0u8; 12];
    header[..4].copy_from_slice(&src.octets());
    header[4..8].copy_from_slice(&dst.octets());
    header[9] = PROTOCOL;
    header[10..].copy_from_slice(&len.to_be_bytes());
    header
}

/// The IPv6 pseudo-header of RFC 2460 §8.1 (RFC 8200 §8.1): source, destination, the 32-bit
/// upper-layer length, three zero bytes and next header 112.
fn ipv6_pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, message_len: usize) -> [u8; 40] {
    let len = u32::try_from(message_len).unwrap_or(u32::MAX);
    let mut header = [0u8; 40];
    header[..16].copy_from_slice(&src.octets());
    header[16..32].copy_from_slice(&dst.octets());
    header[32..36].copy_from_slice(&len.to_be_bytes());
    header[39] = PROTOCOL;
    header
}

fn as_v6(address: IpAddr) -> Ipv6Addr {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// A running ones' complement sum. Every chunk but the last must have an even length, so that
/// words stay aligned; the pseudo-headers and the part before the checksum field do.
#[derive(Debug, Default)]
struct Accumulator {
    // Carries are folded once at the end; a u64 holds 2^48 words before it could overflow.
    sum: u64,
}

impl Accumulator {
    fn add(&mut self, data: &[u8]) {
        let mut words = data.chunks_exact(2);
        for word in &mut words {
            if let [high, low] = word {
                self.sum += u64::from(u16::from_be_bytes([*high, *low]));
            }
        }
        if let [last] = words.remainder() {
            self.sum += u64::from(u16::from_be_bytes([*last, 0]));
        }
    }

    fn finish(self) -> u16 {
        let mut sum = self.sum;
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        // The loop leaves at most 0xFFFF.
        !u16::try_from(sum).unwrap_or(u16::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 §3's worked example: the words 0001 f203 f4f5 f6f7 sum to ddf2 (with the carries
    /// folded), so the checksum is its complement, 220d.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
        assert_eq!(internet_checksum(&data), 0x220d);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(internet_checksum(&[0x12]), !0x1200);
        assert_eq!(
            internet_checksum(&[0x12, 0x34, 0x56]),
            !(0x1234u16 + 0x5600)
        );
    }

    #[test]
    fn empty_and_all_ones() {
        assert_eq!(internet_checksum(&[]), 0xFFFF);
        assert_eq!(internet_checksum(&[0xFF, 0xFF]), 0x0000);
    }

    /// An IPv4 header with a known-good checksum (captured from keepalived's v2 advert, see
    /// `known_answers.rs`) sums to all ones.
    #[test]
    fn ipv4_header_from_the_wire_verifies() {
        let header = [
            0x45, 0xc0, 0x00, 0x2c, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x18, 0x8d, 0xc0, 0x00,
            0x02, 0x01, 0xe0, 0x00, 0x00, 0x12,
        ];
        assert_eq!(internet_checksum(&header), 0);
    }

    #[test]
    fn pseudo_header_layouts() {
        let v4 = ipv4_pseudo_header(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(224, 0, 0, 18),
            16,
        );
        assert_eq!(v4, [192, 0, 2, 1, 224, 0, 0, 18, 0, 112, 0, 16]);
        let v6 = ipv6_pseudo_header(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED, 40);
        assert_eq!(&v6[..16], &Ipv6Addr::LOCALHOST.octets());
        assert_eq!(&v6[16..32], &[0; 16]);
        assert_eq!(&v6[32..], &[0, 0, 0, 40, 0, 0, 0, 112]);
    }

    #[test]
    fn v2_ignores_the_mode_and_the_addresses() {
        let message = [0x21, 1, 100, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let a = advert_checksum(
            &message,
            Version::V2,
            ChecksumMode::PseudoHeader,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
        );
        assert_eq!(a, internet_checksum(&message));
    }
}
