//! Reads a PROXY header of either version from the start of a buffer; the other end of
//! [`super::encode`], and what a server behind Fulcrum (or a test, or the fuzzer) runs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC, CMD_LOCAL, CMD_PROXY, Header, INET_BLOCK_LEN,
    INET6_BLOCK_LEN, PROTO_DGRAM, PROTO_STREAM, PROTO_UNSPEC, UNIX_BLOCK_LEN, V1_MAX_LEN,
    V1_PREFIX, V2_FIXED_LEN, V2_SIGNATURE, V2_VERSION,
};

/// Why [`decode`] returned no header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Everything so far is a valid start of a header: read more and call again with the whole
    /// buffer. Bound the wait: the spec suggests a timeout of a few seconds.
    #[error("incomplete PROXY protocol header")]
    Incomplete,
    /// Not a PROXY header, or one that breaks the spec: the connection must be closed.
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(&'static str),
}

/// Parses a header at the start of `buf`: the header and its length in bytes.
///
/// The version is told by the signature. Bytes after the header belong to the proxied stream and
/// are left alone. A receiver must know a header is coming and not guess (it would let anyone
/// spoof an address), so anything that is not a header is [`DecodeError::Invalid`]. A clear
/// violation is reported as soon as it is seen, even before the header is complete, so that the
/// connection can be dropped early.
///
/// # Errors
///
/// [`DecodeError::Incomplete`] while `buf` holds only the start of a valid header;
/// [`DecodeError::Invalid`] as soon as it cannot be one.
pub fn decode(buf: &[u8]) -> Result<(Header, usize), DecodeError> {
    if is_prefix_of(buf, &V2_SIGNATURE) {
        decode_v2(buf)
    } else if is_prefix_of(buf, V1_PREFIX) {
        decode_v1(buf)
    } else {
        Err(DecodeError::Invalid("bad signature"))
    }
}

/// Whether `buf` and `signature` agree on their common length: `buf` starts with `signature`, or
/// is too short to tell yet.
fn is_prefix_of(buf: &[u8], signature: &[u8]) -> bool {
    buf.iter().zip(signature).all(|(a, b)| a == b)
}

fn decode_v1(buf: &[u8]) -> Result<(Header, usize), DecodeError> {
    let window = buf.get(..V1_MAX_LEN).unwrap_or(buf);
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if buf.len() >= V1_MAX_LEN {
            Err(DecodeError::Invalid("v1: no CRLF within 107 bytes"))
        } else if v1_start_is_plausible(buf) {
            Err(DecodeError::Incomplete)
        } else {
            Err(DecodeError::Invalid("v1: malformed line"))
        };
    };
    // The spec forbids ending the line on a lone CR or LF.
    if window.get(end) == Some(&b'\n') {
        return Err(DecodeError::Invalid("v1: line ends with a bare LF"));
    }
    let len = end + 2;
    if len > V1_MAX_LEN {
        return Err(DecodeError::Invalid("v1: no CRLF within 107 bytes"));
    }
    let line = buf.get(..end).unwrap_or_default();
    match buf.get(end + 1) {
        Some(b'\n') => Ok((parse_v1_line(line)?, len)),
        Some(_) => Err(DecodeError::Invalid("v1: line ends with a bare CR")),
        None if v1_start_is_plausible(line) => Err(DecodeError::Incomplete),
        None => Err(DecodeError::Invalid("v1: malformed line")),
    }
}

/// Parses the line without its CRLF.
fn parse_v1_line(line: &[u8]) -> Result<Header, DecodeError> {
    let rest = line
        .strip_prefix(V1_PREFIX)
        .ok_or(DecodeError::Invalid("bad signature"))?;
    let (proto, fields) = match rest.iter().position(|&b| b == b' ') {
        Some(space) => (rest.get(..space).unwrap_or_default(), rest.get(space + 1..)),
        None => (rest, None),
    };
    let v6 = match proto {
        // The spec has receivers ignore whatever follows UNKNOWN up to the CRLF.
        b"UNKNOWN" => return Ok(Header::unknown()),
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(DecodeError::Invalid("v1: unknown protocol")),
    };
    let fields = fields.ok_or(DecodeError::Invalid("v1: missing fields"))?;
    let fields =
        std::str::from_utf8(fields).map_err(|_| DecodeError::Invalid("v1: non-ASCII field"))?;
    // Split on every space: a doubled space yields an empty field, which fails to parse, as the
    // spec's "exactly one space" wants. Fields are checked in order, so that the error names the
    // first bad one.
    let fields = &mut fields.split(' ');
    let src = v1_field(fields, |t| parse_v1_ip(t, v6), "v1: bad source address")?;
    let dst = v1_field(
        fields,
        |t| parse_v1_ip(t, v6),
        "v1: bad destination address",
    )?;
    let sport = v1_field(fields, parse_v1_port, "v1: bad source port")?;
    let dport = v1_field(fields, parse_v1_port, "v1: bad destination port")?;
    if fields.next().is_some() {
        return Err(DecodeError::Invalid("v1: too many fields"));
    }
    Ok(Header {
        source: Some(SocketAddr::new(src, sport)),
        destination: Some(SocketAddr::new(dst, dport)),
        tlvs: Vec::new(),
    })
}

fn v1_field<'a, T>(
    fields: &mut impl Iterator<Item = &'a str>,
    parse: impl FnOnce(&str) -> Option<T>,
    bad: &'static str,
) -> Result<T, DecodeError> {
    let text = fields
        .next()
        .ok_or(DecodeError::Invalid("v1: missing fields"))?;
    parse(text).ok_or(DecodeError::Invalid(bad))
}

/// The address family must match the protocol. std's IPv4 parser already refuses leading zeros,
/// as the spec does; its IPv6 parser also takes a dotted IPv4 tail, as `inet_pton` does.
fn parse_v1_ip(text: &str, v6: bool) -> Option<IpAddr> {
    if v6 {
        text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// Decimal 0..=65535 with no sign and no leading zero (`u16::from_str` accepts `+1` and `01`).
fn parse_v1_port(text: &str) -> Option<u16> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    if !digits_only || leading_zero {
        return None;
    }
    text.parse().ok()
}

/// Whether a v1 line cut short (no CR or LF yet) could still become valid, so that a wrong
/// protocol or a stray byte is refused at once instead of after a timeout.
fn v1_start_is_plausible(partial: &[u8]) -> bool {
    let Some(rest) = partial.strip_prefix(V1_PREFIX) else {
        // Still inside "PROXY ", which the caller has matched so far.
        return true;
    };
    let Some(space) = rest.iter().position(|&b| b == b' ') else {
        return [&b"TCP4"[..], b"TCP6", b"UNKNOWN"]
            .iter()
            .any(|proto| proto.starts_with(rest));
    };
    let proto = rest.get(..space).unwrap_or_default();
    let fields = rest.get(space + 1..).unwrap_or_default();
    match proto {
        b"UNKNOWN" => true,
        b"TCP4" | b"TCP6" => fields
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b' ')),
        _ => false,
    }
}

fn decode_v2(buf: &[u8]) -> Result<(Header, usize), DecodeError> {
    // Check each field as soon as it has arrived, so a bad header is refused early.
    let Some(&ver_cmd) = buf.get(V2_SIGNATURE.len()) else {
        return Err(DecodeError::Incomplete);
    };
    if ver_cmd >> 4 != V2_VERSION {
        return Err(DecodeError::Invalid("v2: unsupported version"));
    }
    let command = ver_cmd & 0x0F;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(DecodeError::Invalid("v2: unknown command"));
    }
    let Some(&fam) = buf.get(V2_SIGNATURE.len() + 1) else {
        return Err(DecodeError::Incomplete);
    };
    let Some(&[len_hi, len_lo]) = buf.get(V2_SIGNATURE.len() + 2..V2_FIXED_LEN) else {
        return Err(DecodeError::Incomplete);
    };
    let len = u16::from_be_bytes([len_hi, len_lo]);
    let total = V2_FIXED_LEN + usize::from(len);

    if command == CMD_LOCAL {
        // A health check from the proxy itself: the spec has the receiver skip the whole block,
        // family included, unchecked, and keep the real endpoints.
        return if buf.len() < total {
            Err(DecodeError::Incomplete)
        } else {
            Ok((Header::unknown(), total))
        };
    }

    let (family, proto) = (fam >> 4, fam & 0x0F);
    let block_len = match family {
        // No address layout to skip, so nothing after it can be located either.
        AF_UNSPEC => None,
        AF_INET => Some(INET_BLOCK_LEN),
        AF_INET6 => Some(INET6_BLOCK_LEN),
        AF_UNIX => Some(UNIX_BLOCK_LEN),
        _ => return Err(DecodeError::Invalid("v2: unknown address family")),
    };
    if !matches!(proto, PROTO_UNSPEC | PROTO_STREAM | PROTO_DGRAM) {
        return Err(DecodeError::Invalid("v2: unknown transport protocol"));
    }
    if block_len.is_some_and(|block_len| len < block_len) {
        return Err(DecodeError::Invalid(
            "v2: length shorter than the address block",
        ));
    }
    let Some(payload) = buf.get(V2_FIXED_LEN..total) else {
        return Err(DecodeError::Incomplete);
    };
    let Some(block_len) = block_len else {
        return Ok((Header::unknown(), total));
    };
    let (block, tlvs) =
        payload
            .split_at_checked(usize::from(block_len))
            .ok_or(DecodeError::Invalid(
                "v2: length shorter than the address block",
            ))?;
    let tlvs = parse_tlvs(tlvs)?;
    // An UNSPEC transport or a UNIX socket gives no address a TCP/UDP server could use: the spec
    // has the receiver ignore it and keep the real endpoints.
    let (source, destination) = match (family, proto) {
        (_, PROTO_UNSPEC) | (AF_UNIX, _) => (None, None),
        (AF_INET, _) => {
            let (src, dst) = inet_pair::<4>(block).ok_or(DecodeError::Invalid(
                "v2: length shorter than the address block",
            ))?;
            (Some(src), Some(dst))
        }
        _ => {
            let (src, dst) = inet_pair::<16>(block).ok_or(DecodeError::Invalid(
                "v2: length shorter than the address block",
            ))?;
            (Some(src), Some(dst))
        }
    };
    Ok((
        Header {
            source,
            destination,
            tlvs,
        },
        total,
    ))
}

/// Source and destination from an AF_INET (`N` = 4) or AF_INET6 (`N` = 16) address block.
fn inet_pair<const N: usize>(block: &[u8]) -> Option<(SocketAddr, SocketAddr)>
where
    IpAddr: From<[u8; N]>,
{
    let (src, rest) = block.split_first_chunk::<N>()?;
    let (dst, rest) = rest.split_first_chunk::<N>()?;
    let (sport, rest) = rest.split_first_chunk::<2>()?;
    let (dport, _) = rest.split_first_chunk::<2>()?;
    Some((
        SocketAddr::new(IpAddr::from(*src), u16::from_be_bytes(*sport)),
        SocketAddr::new(IpAddr::from(*dst), u16::from_be_bytes(*dport)),
    ))
}

/// The TLVs must tile what follows the address block exactly: a TLV that overruns the header, or
/// a tail too short to be one, means the sender and receiver disagree on the framing.
fn parse_tlvs(mut rest: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, DecodeError> {
    let mut tlvs = Vec::new();
    while let [kind, len_hi, len_lo, after @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
        let (value, next) = after
            .split_at_checked(len)
            .ok_or(DecodeError::Invalid("v2: TLV longer than the header"))?;
        tlvs.push((*kind, value.to_vec()));
        rest = next;
    }
    if rest.is_empty() {
        Ok(tlvs)
    } else {
        Err(DecodeError::Invalid("v2: truncated TLV"))
    }
}
