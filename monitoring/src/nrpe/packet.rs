//! NRPE packets on the wire, byte-compatible with NRPE 4.1's `nrpe` daemon and `check_nrpe`.
//!
//! Integers are big-endian. The CRC32 is zlib's (IEEE), over the whole packet with its CRC field
//! zeroed; versions 3 and 4 also zero the alignment field before computing it, as `nrpe` does.
//!
//! ```text
//! Version 2: always 1036 bytes (a C struct: 10 bytes, the 1024-byte buffer, 2 bytes of padding)
//!  0       2       4               8       10                              1034    1036
//! +-------+-------+---------------+-------+-------------------------------+-------+
//! |version| type  |    crc32      |result | buffer: the text, a NUL, then |padding|
//! |   2   | 1 / 2 |               | code  | anything (1024 bytes)         |       |
//! +-------+-------+---------------+-------+-------------------------------+-------+
//!
//! Versions 3 and 4: a 16-byte header, then `buffer_length` bytes of buffer
//!  0       2       4               8       10      12              16
//! +-------+-------+---------------+-------+-------+---------------+------------------ - -
//! |version| type  |    crc32      |result | align-|buffer_length  | buffer
//! | 3 / 4 | 1 / 2 |               | code  | ment  |  (signed)     |
//! +-------+-------+---------------+-------+-------+---------------+------------------ - -
//! ```
//!
//! Type 1 is a query (the command, `!`-separated arguments), type 2 a response (the plugin's
//! output; `result code` its exit code). What differs between the versions, as the 4.1 tools
//! send and read them:
//!
//! | | version 2 | version 3 | version 4 |
//! |---|---|---|---|
//! | query from `check_nrpe` | 1036 bytes | buffer padded to 1017 bytes + 3 bytes after it (1036) | buffer padded to 1020 bytes (1036) |
//! | response | 1036 bytes, text cut at 1023 bytes | `buffer_length` = text length, then 3 zero bytes that the CRC covers | `buffer_length` = text length + its NUL |
//!
//! Version 3's 3 extra bytes are the C struct's trailing padding (`sizeof(v3_packet) - 1` is 19,
//! not 16), which version 4 stopped counting. The 4.1 daemon refuses version 3 (its
//! `check_nrpe -3` then retries with version 2); Fulcrum answers it as the 3.x daemons did, which
//! `check_nrpe -3` reads. A reader of a stream needs the 16 bytes of [`HEADER_LEN`] first;
//! [`remaining_len`] then says how many more make the packet: version 3's trailing 3 bytes are not
//! waited for, their CRC contribution is taken as zeros (what every sender puts there), as the
//! 3.x daemon did.
//!
//! Nothing here panics on any input; `fuzz/` and the property tests hold that.

use std::fmt;

/// Bytes to read before the size of the packet is known: the longest fixed header (versions 3
/// and 4); version 2's packet is longer than that, so reading them never over-reads.
pub const HEADER_LEN: usize = 16;

/// Every version 2 packet's size.
pub const V2_LEN: usize = 1036;

/// The longest `buffer_length` accepted (NRPE 4.1 refuses more).
pub const MAX_BUFFER_LEN: usize = 65536;

/// The longest text a version 2 packet carries: its buffer less the NUL.
pub const V2_MAX_TEXT: usize = V2_BUFFER_LEN - 1;

/// The longest text a version 3 or 4 packet carries: the daemon's 64 KiB output buffer less the
/// NUL.
pub const MAX_TEXT: usize = MAX_BUFFER_LEN - 1;

const V2_BUFFER_LEN: usize = 1024;
/// Where version 2's buffer starts: after version, type, CRC and result code.
const V2_BUFFER_AT: usize = 10;
/// The C struct padding after a version 3 buffer (see the module header).
const V3_PADDING: usize = 3;
const CRC_AT: std::ops::Range<usize> = 4..8;
const ALIGNMENT_AT: std::ops::Range<usize> = 10..12;

/// A packet version this codec speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V2,
    V3,
    V4,
}

impl Version {
    /// The number in the packet's first field.
    pub const fn number(self) -> u16 {
        match self {
            Self::V2 => 2,
            Self::V3 => 3,
            Self::V4 => 4,
        }
    }

    /// The longest text a packet of this version carries.
    pub const fn max_text(self) -> usize {
        match self {
            Self::V2 => V2_MAX_TEXT,
            Self::V3 | Self::V4 => MAX_TEXT,
        }
    }

    fn from_number(number: u16) -> Option<Self> {
        match number {
            2 => Some(Self::V2),
            3 => Some(Self::V3),
            4 => Some(Self::V4),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// A query (client to daemon) or a response (daemon to client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Query,
    Response,
}

impl Kind {
    const fn number(self) -> u16 {
        match self {
            Self::Query => 1,
            Self::Response => 2,
        }
    }
}

/// A decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub version: Version,
    pub kind: Kind,
    /// The exit code in a response; whatever the client left there in a query (`check_nrpe -2`
    /// sends garbage).
    pub result_code: u16,
    /// The buffer as the C tools read it: the bytes before its first NUL, at most
    /// [`Version::max_text`]. In a query the last byte of the buffer is never part of it (the
    /// daemon overwrites it with a NUL).
    pub text: Vec<u8>,
}

/// Why bytes are not an NRPE packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet version {0} is not 2, 3 or 4")]
    Version(u16),
    #[error("buffer length {0} is outside 0..={MAX_BUFFER_LEN}")]
    BufferLength(i32),
    #[error("{got} bytes where the header says {expected}")]
    Truncated { got: usize, expected: usize },
    #[error("invalid CRC32: the packet says {sent:#010x}, its bytes give {computed:#010x}")]
    Crc { sent: u32, computed: u32 },
    #[error("packet type {0} is neither 1 (query) nor 2 (response)")]
    Type(u16),
}

/// How many bytes follow `header` (the packet's first [`HEADER_LEN`] bytes) to make the whole
/// packet; checks the version and the length, not the CRC (that needs the rest).
pub fn remaining_len(header: &[u8; HEADER_LEN]) -> Result<usize, DecodeError> {
    let version =
        Version::from_number(u16_at(header, 0)).ok_or(DecodeError::Version(u16_at(header, 0)))?;
    Ok(match version {
        Version::V2 => V2_LEN - HEADER_LEN,
        Version::V3 | Version::V4 => buffer_len(header)?,
    })
}

/// Decodes one whole packet: `bytes` must be exactly the packet (for version 3, with or without
/// its 3 trailing bytes).
pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
    let header: &[u8; HEADER_LEN] = bytes.first_chunk().ok_or(DecodeError::Truncated {
        got: bytes.len(),
        expected: HEADER_LEN,
    })?;
    let remaining = remaining_len(header)?;
    let version =
        Version::from_number(u16_at(header, 0)).ok_or(DecodeError::Version(u16_at(header, 0)))?;
    let expected = HEADER_LEN + remaining;
    let padded = version == Version::V3 && bytes.len() == expected + V3_PADDING;
    if bytes.len() != expected && !padded {
        return Err(DecodeError::Truncated {
            got: bytes.len(),
            expected,
        });
    }
    let sent = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    // Version 3's unsent padding counts as the zeros every sender puts there.
    let implied = if version == Version::V3 && !padded {
        V3_PADDING
    } else {
        0
    };
    let computed = crc(bytes, version, implied);
    if sent != computed {
        return Err(DecodeError::Crc { sent, computed });
    }
    let kind = match u16_at(header, 2) {
        1 => Kind::Query,
        2 => Kind::Response,
        other => return Err(DecodeError::Type(other)),
    };
    let buffer = match version {
        Version::V2 => &bytes[V2_BUFFER_AT..V2_BUFFER_AT + V2_BUFFER_LEN],
        Version::V3 | Version::V4 => &bytes[HEADER_LEN..expected],
    };
    // The daemon writes a NUL over a query's last byte; a version 3 response has no NUL of its
    // own (its text fills the buffer), so a response's is read up to the version's limit.
    let buffer = match kind {
        Kind::Query => &buffer[..buffer.len().saturating_sub(1)],
        Kind::Response => &buffer[..buffer.len().min(version.max_text())],
    };
    let text = buffer
        .split(|&b| b == 0)
        .next()
        .unwrap_or_default()
        .to_vec();
    Ok(Packet {
        version,
        kind,
        result_code: u16_at(header, 8),
        text,
    })
}

/// Encodes `packet` as the 4.1 tools send it (queries padded as `check_nrpe` pads them,
/// responses as the daemon sizes them). The text is cut at its first NUL and at the version's
/// [`Version::max_text`], so encoding never fails.
pub fn encode(packet: &Packet) -> Vec<u8> {
    let text = packet.text.split(|&b| b == 0).next().unwrap_or_default();
    let text = &text[..text.len().min(packet.version.max_text())];
    let mut bytes = Vec::with_capacity(V2_LEN.max(HEADER_LEN + text.len() + V3_PADDING + 1));
    bytes.extend_from_slice(&packet.version.number().to_be_bytes());
    bytes.extend_from_slice(&packet.kind.number().to_be_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&packet.result_code.to_be_bytes());
    match packet.version {
        Version::V2 => {
            bytes.extend_from_slice(text);
            bytes.resize(V2_LEN, 0);
        }
        Version::V3 | Version::V4 => {
            let buffer_len = match (packet.version, packet.kind) {
                // check_nrpe pads a query so that the packet is as long as a version 2 one.
                (Version::V3, Kind::Query) => {
                    (text.len() + 1).max(V2_LEN - HEADER_LEN - V3_PADDING)
                }
                (_, Kind::Query) => (text.len() + 1).max(V2_LEN - HEADER_LEN),
                // The 3.x daemon counted the text alone; its NUL is the first padding byte.
                (Version::V3, Kind::Response) => text.len(),
                (_, Kind::Response) => text.len() + 1,
            };
            bytes.extend_from_slice(&[0; 2]);
            // At most MAX_TEXT + 1 = 65536: fits.
            let wire_len = i32::try_from(buffer_len).unwrap_or(i32::MAX);
            bytes.extend_from_slice(&wire_len.to_be_bytes());
            bytes.extend_from_slice(text);
            let padding = if packet.version == Version::V3 {
                V3_PADDING
            } else {
                0
            };
            bytes.resize(HEADER_LEN + buffer_len + padding, 0);
        }
    }
    let crc = crc(&bytes, packet.version, 0);
    bytes[CRC_AT].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// The CRC32 of `bytes` with the CRC field (and for versions 3 and 4 the alignment field) zeroed,
/// followed by `implied_zeros` zero bytes.
fn crc(bytes: &[u8], version: Version, implied_zeros: usize) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..CRC_AT.start]);
    hasher.update(&[0; 4]);
    match version {
        Version::V2 => hasher.update(&bytes[CRC_AT.end..]),
        Version::V3 | Version::V4 => {
            hasher.update(&bytes[CRC_AT.end..ALIGNMENT_AT.start]);
            hasher.update(&[0; 2]);
            hasher.update(&bytes[ALIGNMENT_AT.end..]);
        }
    }
    hasher.update(&[0; V3_PADDING][..implied_zeros.min(V3_PADDING)]);
    hasher.finalize()
}

/// The `buffer_length` field of a version 3 or 4 header, checked.
fn buffer_len(header: &[u8; HEADER_LEN]) -> Result<usize, DecodeError> {
    let len = i32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    usize::try_from(len)
        .ok()
        .filter(|&len| len <= MAX_BUFFER_LEN)
        .ok_or(DecodeError::BufferLength(len))
}

fn u16_at(header: &[u8; HEADER_LEN], at: usize) -> u16 {
    u16::from_be_bytes([header[at], header[at + 1]])
}
