//! Writing an [`Advert`] as the VRRP message a raw socket sends (layout: see [`Advert`]).

use std::net::IpAddr;

use super::checksum::{self, ChecksumMode};
use super::{Advert, CHECKSUM_OFFSET, TYPE_ADVERTISEMENT, Version, message_len};

/// The VRRP message for `advert`, checksum included; the IP header is the kernel's.
///
/// `src` and `dst` are the addresses the IP header will carry (our primary address on the
/// interface, and [`MULTICAST_V4`](super::MULTICAST_V4) / [`MULTICAST_V6`](super::MULTICAST_V6)
/// or the unicast peer), of the advert's family: VRRPv3 sums them in its pseudo-header. `mode`
/// only matters to VRRPv3 over IPv4.
pub fn encode(advert: &Advert, mode: ChecksumMode, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let addresses = advert.addresses();
    let mut message = Vec::with_capacity(message_len(
        advert.version(),
        advert.family(),
        addresses.len(),
    ));

    message.push(advert.version().number() << 4 | TYPE_ADVERTISEMENT);
    message.push(advert.vrid());
    message.push(advert.priority());
    // An Advert holds at most 255 addresses (checked when it is built).
    message.push(u8::try_from(addresses.len()).unwrap_or(u8::MAX));
    match advert.version() {
        Version::V2 => {
            message.push(advert.auth().type_code());
            // A v2 Advert's interval is whole seconds up to 255 (checked when it is built).
            message.push(advert.interval().whole_secs().unwrap_or(u8::MAX));
        }
        Version::V3 => {
            // The 4 reserved bits stay zero (RFC 5798 §5.2.6); a v3 interval fits the other 12.
            message.extend_from_slice(&(advert.interval().centis() & 0x0FFF).to_be_bytes());
        }
    }
    message.extend_from_slice(&[0, 0]); // the checksum, filled in last
    for address in addresses {
        match address {
            IpAddr::V4(v4) => message.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => message.extend_from_slice(&v6.octets()),
        }
    }
    if advert.version() == Version::V2 {
        message.extend_from_slice(&advert.auth().data());
    }

    let sum = checksum::advert_checksum(&message, advert.version(), mode, src, dst);
    if let Some(field) = message.get_mut(CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2) {
        field.copy_from_slice(&sum.to_be_bytes());
    }
    message
}
