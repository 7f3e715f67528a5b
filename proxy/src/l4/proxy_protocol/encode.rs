//! Writes PROXY headers: what the L4 tier sends first on each connection to a real server.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
};

use super::{
    AF_INET, AF_INET6, CMD_PROXY, INET_BLOCK_LEN, INET6_BLOCK_LEN, PROTO_DGRAM, PROTO_STREAM,
    V2_SIGNATURE, V2_VERSION, Version,
};

/// Appends a header for a TCP connection from `source` (the client) to `destination` (the address
/// it connected to) to `out`.
///
/// Both versions carry one address family for the pair, so when exactly one address is IPv4 it
/// is written as its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) and the header says TCP6 / AF_INET6.
pub fn encode(version: Version, source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    match version {
        Version::V1 => encode_v1(source, destination, out),
        Version::V2 => encode_v2(PROTO_STREAM, source, destination, out),
    }
}

/// Appends a v2 header for a UDP flow (`DGRAM`); v1 has no way to say UDP. Mixed families are
/// mapped as in [`encode`].
pub fn encode_v2_udp(source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    encode_v2(PROTO_DGRAM, source, destination, out);
}

fn encode_v1(source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    let line = match (source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => format!(
            "PROXY TCP4 {src} {dst} {} {}\r\n",
            source.port(),
            destination.port()
        ),
        (src, dst) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            ColonHex(to_v6(src)),
            ColonHex(to_v6(dst)),
            source.port(),
            destination.port()
        ),
    };
    out.extend_from_slice(line.as_bytes());
}

fn encode_v2(proto: u8, source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(V2_VERSION << 4 | CMD_PROXY);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.push(AF_INET << 4 | proto);
            out.extend_from_slice(&INET_BLOCK_LEN.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            out.push(AF_INET6 << 4 | proto);
            out.extend_from_slice(&INET6_BLOCK_LEN.to_be_bytes());
            out.extend_from_slice(&to_v6(src).octets());
            out.extend_from_slice(&to_v6(dst).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// An IPv6 address in the only text form the v1 spec names: colon-separated hex groups, the
/// longest run of zero groups (the first on a tie, RFC 5952) replaced by `::`. `Ipv6Addr`'s own
/// `Display` writes IPv4-mapped addresses as `::ffff:a.b.c.d`, which a strict receiver may refuse.
struct ColonHex(Ipv6Addr);

impl fmt::Display for ColonHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups = self.0.segments();
        let (mut best_start, mut best_len) = (0, 0);
        let (mut run_start, mut run_len) = (0, 0);
        for (i, &group) in groups.iter().enumerate() {
            if group == 0 {
                if run_len == 0 {
                    run_start = i;
                }
                run_len += 1;
                if run_len > best_len {
                    (best_start, best_len) = (run_start, run_len);
                }
            } else {
                run_len = 0;
            }
        }
        // RFC 5952 §4.2.2: a lone zero group is written as `0`, not `::`.
        if best_len < 2 {
            return write_groups(f, &groups);
        }
        let (head, rest) = groups.split_at(best_start);
        let (_, tail) = rest.split_at(best_len);
        write_groups(f, head)?;
        f.write_str("::")?;
        write_groups(f, tail)
    }
}

fn write_groups(f: &mut fmt::Formatter<'_>, groups: &[u16]) -> fmt::Result {
    for (i, group) in groups.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{group:x}")?;
    }
    Ok(())
}
