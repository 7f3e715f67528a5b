//! VRRP advertisements on the wire: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798) over IPv4, VRRPv3
//! over IPv6, byte-compatible with keepalived 2.2.7.
//!
//! - [`Advert`] is the value (its doc comment carries the RFC packet diagrams); it cannot be built
//!   in a shape the wire cannot carry, so [`encode`] cannot fail.
//! - [`encode`] gives the VRRP message alone: raw sockets let the kernel build the IP header,
//!   with TTL/hop limit 255 set on the socket.
//! - [`decode`] reads a VRRP message and applies the receive checks of RFC 3768 / 5798 §7.1,
//!   given what the IP layer told ([`RecvContext`]: TTL, addresses) and what the local instances
//!   expect ([`Expected`]). A refusal is a [`DropReason`], counted by [`DropCounters`].
//! - [`decode_ipv4_packet`] does the same from a whole IPv4 packet, as an IPv4 raw socket
//!   delivers it (IPv6 raw sockets deliver the payload alone; the hop limit comes from
//!   `IPV6_RECVHOPLIMIT` ancillary data).
//! - [`checksum`] is the RFC 1071 sum, with the pseudo-headers VRRPv3 adds.
//!
//! Nothing here panics on any input; `fuzz/` and the property tests hold that.

mod advert;
pub mod checksum;
mod decode;
mod drop;
mod encode;
mod ipv4;

#[cfg(test)]
mod known_answers;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod receive_checks;

use std::net::{Ipv4Addr, Ipv6Addr};

pub use advert::{Advert, AdvertError, Auth, Family, Interval, MAX_ADDRESSES, Version};
pub use checksum::ChecksumMode;
pub use decode::{Accepted, Expected, RecvContext, Warning, decode};
pub use drop::{DropCounters, DropKind, DropReason};
pub use encode::encode;
pub use ipv4::{Ipv4Packet, decode_ipv4_packet};

/// The IP protocol number (IPv4) and next header (IPv6) of VRRP.
pub const PROTOCOL: u8 = 112;

/// The TTL / hop limit every VRRP router sends with and a multicast receiver insists on, so that
/// adverts cannot come from off the link.
pub const TTL: u8 = 255;

/// The IPv4 multicast group adverts are sent to (RFC 3768 §5.2.2, RFC 5798 §5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// The IPv6 multicast group adverts are sent to (RFC 5798 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// The 8 fixed bytes before the addresses.
const HEADER_LEN: usize = 8;

/// The VRRPv2 authentication data after the addresses.
const AUTH_DATA_LEN: usize = 8;

/// The length of a VRRP message of `version` listing `count` addresses of `family`: the fixed
/// header, the addresses, then the authentication data (VRRPv2 only).
fn message_len(version: Version, family: Family, count: usize) -> usize {
    HEADER_LEN + count * family.address_len() + version.auth_len()
}

/// Where the 16-bit checksum sits in the fixed header.
const CHECKSUM_OFFSET: usize = 6;

/// The only packet type: ADVERTISEMENT.
const TYPE_ADVERTISEMENT: u8 = 1;

/// VRRPv2 Auth Types (RFC 3768 §5.3.6 keeps the field of RFC 2338 for compatibility).
const AUTH_NONE: u8 = 0;
const AUTH_PASS: u8 = 1;
const AUTH_AH: u8 = 2;
