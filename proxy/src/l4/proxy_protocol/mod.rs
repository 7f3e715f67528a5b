//! HAProxy's PROXY protocol, versions 1 (text) and 2 (binary): the header the L4 tier writes at the
//! start of each connection to a real server, so that the server learns the client's address.
//!
//! Spec: <https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt>. [`encode`] and
//! [`encode_v2_udp`] write a header; [`decode`] reads either version, told apart by its
//! signature, and never panics, whatever the bytes (it is a fuzz target).

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use decode::{DecodeError, decode};
pub use encode::{encode, encode_v2_udp};

/// Which version of the protocol to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The human-readable line, `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`.
    V1,
    /// The binary header: cheaper to parse, carries UDP and TLVs.
    V2,
}

/// A decoded PROXY header.
///
/// `source` and `destination` are both `None` when the sender said the connection carries no
/// client address: `UNKNOWN` in v1, the `LOCAL` command (a health check) in v2, or a v2 family or
/// transport the spec tells receivers to ignore (`AF_UNSPEC`, `UNSPEC`, `AF_UNIX`). The receiver
/// then uses the connection's real endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The client's address as the proxy saw it.
    pub source: Option<SocketAddr>,
    /// The address the client connected to.
    pub destination: Option<SocketAddr>,
    /// v2 type-length-value extensions as sent, in order (`(type, value)`). Interpreting them,
    /// including skipping `PP2_TYPE_NOOP` and checking `PP2_TYPE_CRC32C`, is left to the caller.
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

impl Header {
    /// No client address: the receiver keeps the connection's real endpoints.
    fn unknown() -> Self {
        Self {
            source: None,
            destination: None,
            tlvs: Vec::new(),
        }
    }
}

// Version 1 is one US-ASCII line, a single space between fields:
//
//     "PROXY" SP ("TCP4" | "TCP6") SP src-addr SP dst-addr SP src-port SP dst-port CRLF
//     "PROXY" SP "UNKNOWN" [ anything but CRLF ] CRLF
//
// Addresses and ports are decimal without leading zeros (no octal confusion), IPv6 in colon-hex.

/// Version 1 starts with `PROXY` and exactly one space.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The longest v1 line a receiver must accept, CRLF included: `PROXY UNKNOWN` followed by two
/// full-length IPv6 addresses and two 5-digit ports. A receiver that has not seen CRLF by then
/// declares the line invalid.
const V1_MAX_LEN: usize = 107;

// Version 2, all integers in network byte order:
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                                                               |
//  +                          Signature                            +
//  |         0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A (12 bytes)        |
//  +                                                               +
//  |                                                               |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |Version|Command| Family| Proto |            Length             |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |  Address block (size set by Family), then TLVs, Length bytes  |
//  |                              ...                              |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//  Version: 2.  Command: 0 LOCAL, 1 PROXY.
//  Family:  0 AF_UNSPEC, 1 AF_INET, 2 AF_INET6, 3 AF_UNIX.
//  Proto:   0 UNSPEC, 1 STREAM (TCP), 2 DGRAM (UDP).
//  Length:  bytes after these 16, so the whole header is 16 + Length bytes.
//
//  Address block, AF_INET (12 bytes) / AF_INET6 (36 bytes):
//
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |            Source address (4 bytes / 16 bytes)                |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |          Destination address (4 bytes / 16 bytes)             |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |          Source port          |       Destination port        |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//  AF_UNIX: two 108-byte socket paths (216 bytes).
//
//  Each TLV:
//
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |     Type      |         Value length          |  Value ...    |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// Chosen by the spec to be rejected early by the common protocols it may be sent to by mistake.
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Signature, version/command, family/protocol and the 2-byte length.
const V2_FIXED_LEN: usize = 16;
const V2_VERSION: u8 = 0x2;

const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;

const AF_UNSPEC: u8 = 0x0;
const AF_INET: u8 = 0x1;
const AF_INET6: u8 = 0x2;
const AF_UNIX: u8 = 0x3;

const PROTO_UNSPEC: u8 = 0x0;
const PROTO_STREAM: u8 = 0x1;
const PROTO_DGRAM: u8 = 0x2;

const INET_BLOCK_LEN: u16 = 2 * 4 + 2 * 2;
const INET6_BLOCK_LEN: u16 = 2 * 16 + 2 * 2;
const UNIX_BLOCK_LEN: u16 = 2 * 108;
