//! Reading a whole IPv4 packet, as an IPv4 raw socket delivers it (header included), to get the
//! TTL, the protocol and the addresses the VRRP receive checks need.

use std::net::{IpAddr, Ipv4Addr};

use super::checksum::ChecksumMode;
use super::{Accepted, DropReason, Expected, PROTOCOL, RecvContext, decode};

/// The smallest IPv4 header: no options.
const MIN_HEADER_LEN: usize = 20;

/// An IPv4 packet's header fields that VRRP needs, and its payload.
///
/// RFC 791 §3.1:
///
/// ```text
///     0                   1                   2                   3
///     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |Version|  IHL  |Type of Service|          Total Length         |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |         Identification        |Flags|      Fragment Offset    |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |  Time to Live |    Protocol   |         Header Checksum       |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                       Source Address                          |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                    Destination Address                        |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                    Options                    |    Padding    |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// The header checksum is not verified: the kernel has dropped a packet whose header checksum is
/// wrong before a raw socket sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<'a> {
    /// Time to live.
    pub ttl: u8,
    /// The payload's protocol (112 for VRRP).
    pub protocol: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// What follows the header (and its options), up to the total length.
    pub payload: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    /// Reads the header of `packet`, which must be exactly one IPv4 packet: its Total Length must
    /// be the number of bytes given, as keepalived requires of what a raw socket returns.
    pub fn parse(packet: &'a [u8]) -> Result<Self, DropReason> {
        let bad = |reason| Err(DropReason::BadIpHeader { reason });
        let Some(header) = packet.get(..MIN_HEADER_LEN) else {
            return bad("shorter than 20 bytes");
        };
        let field = |offset: usize| header.get(offset).copied().unwrap_or(0);
        let word = |offset: usize| u16::from_be_bytes([field(offset), field(offset + 1)]);
        let address = |offset: usize| {
            Ipv4Addr::new(
                field(offset),
                field(offset + 1),
                field(offset + 2),
                field(offset + 3),
            )
        };

        if field(0) >> 4 != 4 {
            return bad("version is not 4");
        }
        let header_len = usize::from(field(0) & 0x0F) * 4;
        if header_len < MIN_HEADER_LEN {
            return bad("header length (IHL) below 5 words");
        }
        let total_len = usize::from(word(2));
        if total_len != packet.len() {
            return bad("total length differs from the bytes received");
        }
        // More Fragments set, or a fragment offset: a piece of a packet, not an advert. (Raw
        // sockets receive reassembled packets; Don't Fragment is fine.)
        if word(6) & 0x3FFF != 0 {
            return bad("fragment");
        }
        let Some(payload) = packet.get(header_len..) else {
            return bad("header length (IHL) beyond the total length");
        };

        Ok(Ipv4Packet {
            ttl: field(8),
            protocol: field(9),
            src: address(12),
            dst: address(16),
            payload,
        })
    }
}

/// Reads a whole IPv4 packet carrying a VRRP advert and applies the receive checks to it, with
/// the TTL and addresses from its header (see [`decode`]).
pub fn decode_ipv4_packet(
    packet: &[u8],
    checksum: ChecksumMode,
    expected: &[Expected],
) -> Result<Accepted, DropReason> {
    let ip = Ipv4Packet::parse(packet)?;
    if ip.protocol != PROTOCOL {
        return Err(DropReason::NotVrrp {
            protocol: ip.protocol,
        });
    }
    let ctx = RecvContext {
        ttl: Some(ip.ttl),
        src: IpAddr::V4(ip.src),
        dst: IpAddr::V4(ip.dst),
        checksum,
        expected,
    };
    decode(ip.payload, &ctx)
}
