//! Reading a received VRRP message (layout: see [`Advert`]) and applying the receive checks of
//! RFC 3768 §7.1 and RFC 5798 §7.1, in the RFCs' order: TTL, version, length, checksum, VRID,
//! authentication, addresses, interval.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use subtle::ConstantTimeEq;

use super::checksum::{self, ChecksumMode};
use super::{
    AUTH_NONE, AUTH_PASS, Advert, Auth, DropReason, Family, HEADER_LEN, Interval, TTL,
    TYPE_ADVERTISEMENT, Version, message_len,
};

/// What the receive checks need that is not in the VRRP message: what the IP layer reported, and
/// what the local instances on this interface and family expect.
#[derive(Clone, Copy, Debug)]
pub struct RecvContext<'a> {
    /// The IPv4 TTL or IPv6 hop limit (IPv6 raw sockets report it with `IPV6_RECVHOPLIMIT`);
    /// `None` when the socket did not say, which skips the check as keepalived does.
    pub ttl: Option<u8>,
    /// The IP source: the sender's primary address.
    pub src: IpAddr,
    /// The IP destination: the VRRP multicast group, or our address for a unicast advert. Its
    /// being multicast is what requires TTL 255.
    pub dst: IpAddr,
    /// How VRRPv3 over IPv4 sums its checksum; must match the sender's.
    pub checksum: ChecksumMode,
    /// The local instances the packet may be for, looked up by VRID.
    pub expected: &'a [Expected],
}

/// What one local VRRP instance accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// Its virtual router id.
    pub vrid: u8,
    /// The version it runs.
    pub version: Version,
    /// Its VRRPv2 authentication (ignored for VRRPv3).
    pub auth: Auth,
    /// Its configured advertisement interval: a VRRPv2 advert must carry the same; a VRRPv3
    /// advert may differ (a backup adopts the master's, RFC 5798 §6.4.2).
    pub interval: Interval,
    /// Its virtual addresses, which an advert must list (in any order) unless it comes from the
    /// address owner.
    pub addresses: Vec<IpAddr>,
    /// Whether it talks to unicast peers rather than the multicast group.
    pub unicast: bool,
    /// The only sources an advert may come from (`check_unicast_src`); empty: any.
    pub sources: Vec<IpAddr>,
}

impl Expected {
    /// What an instance that sends `advert` accepts from its peers.
    pub fn for_advert(advert: &Advert, unicast: bool) -> Self {
        Expected {
            vrid: advert.vrid(),
            version: advert.version(),
            auth: advert.auth().clone(),
            interval: advert.interval(),
            addresses: advert.addresses().to_vec(),
            unicast,
            sources: Vec::new(),
        }
    }
}

/// An advert that passed the receive checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The advert.
    pub advert: Advert,
    /// Who sent it (the IP source), which breaks priority ties (RFC 5798 §6.4.3).
    pub src: IpAddr,
    /// Misconfigurations the RFCs say to log without dropping the packet.
    pub warnings: Vec<Warning>,
}

/// Something to log about an accepted advert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The addresses differ from ours, but the sender is their owner (priority 255), so the RFCs
    /// say to log it and go on.
    AddressListMismatch,
    /// A VRRPv3 interval other than ours: a backup adopts the master's (RFC 5798 §6.4.2), as
    /// keepalived does, logging "advertisement interval changed".
    IntervalMismatch {
        /// The interval received.
        received: Interval,
        /// The interval configured.
        expected: Interval,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::AddressListMismatch => f.write_str(
                "advertised addresses differ from this instance's virtual addresses (accepted: the sender owns them)",
            ),
            Warning::IntervalMismatch { received, expected } => write!(
                f,
                "advert interval {received} differs from this instance's {expected}; following the master's"
            ),
        }
    }
}

/// Whether an advert from `src` comes from one of `peers`. An IPv6 advert comes from its
/// sender's link-local address (RFC 5798 §5.1.2.1), not the address listed for it: any
/// link-local source passes, which only a node on the link can send from, as routers do not
/// forward such packets.
fn from_listed_peer(peers: &[IpAddr], src: IpAddr) -> bool {
    match src {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => true,
        _ => peers.contains(&src),
    }
}

/// Reads `message`, the VRRP payload of an IP packet, and checks it against `ctx`.
pub fn decode(message: &[u8], ctx: &RecvContext<'_>) -> Result<Accepted, DropReason> {
    let Some(
        &[
            version_type,
            vrid,
            priority,
            count,
            field4,
            field5,
            sum_high,
            sum_low,
        ],
    ) = message.get(..HEADER_LEN)
    else {
        return Err(DropReason::TooShort { len: message.len() });
    };

    // Multicast adverts must not have crossed a router. A unicast advert may have (keepalived
    // skips the check for unicast peers).
    let multicast = ctx.dst.is_multicast();
    if multicast && let Some(ttl) = ctx.ttl.filter(|ttl| *ttl != TTL) {
        return Err(DropReason::BadTtl { ttl });
    }

    let number = version_type >> 4;
    let Some(version) = Version::from_number(number) else {
        return Err(DropReason::BadVersion { version: number });
    };
    let kind = version_type & 0x0F;
    if kind != TYPE_ADVERTISEMENT {
        return Err(DropReason::BadType { kind });
    }

    let family = match (ctx.src, ctx.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => Family::Ipv4,
        (IpAddr::V6(_), IpAddr::V6(_)) => Family::Ipv6,
        _ => {
            return Err(DropReason::BadAddressFamily {
                reason: "source and destination addresses are of different IP families",
            });
        }
    };
    if version == Version::V2 && family == Family::Ipv6 {
        return Err(DropReason::BadAddressFamily {
            reason: "VRRPv2 advert over IPv6: VRRPv2 is defined for IPv4 only, use VRRPv3",
        });
    }

    let expected_len = message_len(version, family, usize::from(count));
    if message.len() != expected_len {
        return Err(DropReason::BadLength {
            len: message.len(),
            expected: expected_len,
        });
    }

    if !checksum::verify(message, version, ctx.checksum, ctx.src, ctx.dst) {
        let received = u16::from_be_bytes([sum_high, sum_low]);
        let computed = checksum::advert_checksum(message, version, ctx.checksum, ctx.src, ctx.dst);
        return Err(DropReason::BadChecksum { received, computed });
    }

    let Some(expected) = ctx.expected.iter().find(|e| e.vrid == vrid) else {
        return Err(DropReason::UnknownVrid { vrid });
    };
    if expected.version != version {
        return Err(DropReason::VersionMismatch {
            received: version,
            expected: expected.version,
        });
    }
    if expected.unicast == multicast {
        return Err(DropReason::CastMismatch {
            expected_unicast: expected.unicast,
        });
    }
    if !expected.sources.is_empty() && !from_listed_peer(&expected.sources, ctx.src) {
        return Err(DropReason::UnknownSource { src: ctx.src });
    }

    // The length check above makes the body exactly the addresses then the authentication data.
    let body = message.get(HEADER_LEN..).unwrap_or_default();
    let (address_bytes, auth_data) = body
        .split_at_checked(body.len().saturating_sub(version.auth_len()))
        .unwrap_or((body, &[]));
    let addresses = read_addresses(address_bytes, family);

    let (auth, interval) = match version {
        Version::V2 => (
            check_v2_auth(field4, auth_data, &expected.auth)?,
            Interval::from_secs(field5),
        ),
        // The top 4 bits are reserved and ignored on receipt (RFC 5798 §5.2.6).
        Version::V3 => (
            Auth::None,
            Interval::from_centis(u16::from_be_bytes([field4, field5]) & 0x0FFF),
        ),
    };

    let mut warnings = Vec::new();
    if !same_addresses(&addresses, &expected.addresses) {
        if priority == u8::MAX {
            warnings.push(Warning::AddressListMismatch);
        } else {
            return Err(DropReason::AddressListMismatch { priority });
        }
    }

    if interval != expected.interval {
        match version {
            // "to prevent concurrent VRID running => multiple master in 1 VRID" (keepalived)
            Version::V2 => {
                return Err(DropReason::IntervalMismatch {
                    received: interval,
                    expected: expected.interval,
                });
            }
            Version::V3 => warnings.push(Warning::IntervalMismatch {
                received: interval,
                expected: expected.interval,
            }),
        }
    }

    Ok(Accepted {
        advert: Advert::from_wire(version, vrid, priority, interval, family, addresses, auth),
        src: ctx.src,
        warnings,
    })
}

/// Checks a VRRPv2 Auth Type and data against the instance's, as keepalived does: the type must
/// be one we know and the one configured, and a password must match all 8 bytes.
fn check_v2_auth(auth_type: u8, data: &[u8], expected: &Auth) -> Result<Auth, DropReason> {
    // AUTH_AH (2) lands here too: refused rather than checked.
    if auth_type != AUTH_NONE && auth_type != AUTH_PASS {
        return Err(DropReason::BadAuthType { auth_type });
    }
    if auth_type != expected.type_code() {
        return Err(DropReason::AuthTypeMismatch {
            received: auth_type,
            expected: expected.type_code(),
        });
    }
    match expected {
        Auth::None => Ok(Auth::None),
        Auth::Pass(password) => {
            // Compares without stopping at the first difference, as keepalived's
            // `memcmp_constant_time` does. The password crosses the LAN in clear anyway; this only
            // avoids making an online guess any easier.
            if bool::from(data.ct_eq(password)) {
                Ok(Auth::Pass(*password))
            } else {
                Err(DropReason::AuthFailed)
            }
        }
    }
}

fn read_addresses(bytes: &[u8], family: Family) -> Vec<IpAddr> {
    match family {
        Family::Ipv4 => bytes
            .chunks_exact(4)
            .filter_map(|chunk| <[u8; 4]>::try_from(chunk).ok())
            .map(|octets| IpAddr::V4(Ipv4Addr::from(octets)))
            .collect(),
        Family::Ipv6 => bytes
            .chunks_exact(16)
            .filter_map(|chunk| <[u8; 16]>::try_from(chunk).ok())
            .map(|octets| IpAddr::V6(Ipv6Addr::from(octets)))
            .collect(),
    }
}

/// The same addresses in any order, as keepalived compares them: as many, and each of ours
/// among the advertised.
fn same_addresses(advertised: &[IpAddr], ours: &[IpAddr]) -> bool {
    advertised.len() == ours.len() && ours.iter().all(|address| advertised.contains(address))
}
