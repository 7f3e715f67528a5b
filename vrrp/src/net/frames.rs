//! The announcements a new master sends so that hosts and switches move a VIP to its MAC: a
//! gratuitous ARP (IPv4) and an unsolicited Neighbor Advertisement (IPv6), byte for byte as
//! keepalived 2.2 sends them. Pure, so their bytes are tested here.

use std::net::{Ipv4Addr, Ipv6Addr};

/// An Ethernet header (14 bytes) and an ARP packet for IPv4 over Ethernet (28 bytes). Drivers pad
/// it to the 60-byte minimum.
pub const ARP_FRAME_LEN: usize = 42;

/// A Neighbor Advertisement with one Target Link-Layer Address option for Ethernet.
pub const NA_LEN: usize = 32;

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ARPHRD_ETHER: u16 = 1;
const ARPOP_REQUEST: u16 = 1;
const BROADCAST: [u8; 6] = [0xff; 6];

const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
const NA_FLAG_ROUTER: u8 = 0x80;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LINK_LAYER_ADDRESS: u8 = 2;

/// A gratuitous ARP for `ip` at `mac`, in keepalived's shape (`send_gratuitous_arp_immediate` in
/// `vrrp_arp.c`): a broadcast ARP *request* whose sender and target IP are both the VIP.
/// Requests refresh the caches of hosts that ignore gratuitous replies.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Ethernet destination ff:ff:ff:ff:ff:ff               |
/// +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                               |                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+       Ethernet source (mac)   +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |       EtherType 0x0806        |      Hardware type 1          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Protocol type 0x0800        |  HLEN 6       |  PLEN 4       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |      Operation 1 (request)    |  Sender hardware address (mac)|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   Sender protocol address (VIP)               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |            Target hardware address ff:ff:ff:ff:ff:ff          |
/// +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                               |  Target protocol address (VIP)|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
/// |                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// keepalived fills the target hardware address with the broadcast address (`memset(...,
/// 0xFF, ...)`), where RFC 5227 suggests zeros; we follow keepalived, as its peers have seen it.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    // Constant ranges within a fixed-size array, so none can be out of bounds.
    let mut frame = [0u8; ARP_FRAME_LEN];
    frame[0..6].copy_from_slice(&BROADCAST);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    frame[14..16].copy_from_slice(&ARPHRD_ETHER.to_be_bytes());
    frame[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    frame[18] = 6; // hardware address length
    frame[19] = 4; // protocol address length
    frame[20..22].copy_from_slice(&ARPOP_REQUEST.to_be_bytes());
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip.octets());
    frame[32..38].copy_from_slice(&BROADCAST);
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

/// An unsolicited Neighbor Advertisement (RFC 4861 §4.4, §7.2.6) for `target` at `mac`, with
/// the Router flag clear; see [`unsolicited_na_with_router`].
pub fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    unsolicited_na_with_router(mac, target, false)
}

/// The ICMPv6 message of an unsolicited Neighbor Advertisement, as written to a raw ICMPv6
/// socket: the kernel adds the IPv6 header and fills in the checksum (left zero here). It is
/// sent to ff02::1 (all nodes) with hop limit 255, or receivers drop it (RFC 4861 §7.1.2).
///
/// As keepalived's `ndisc_send_unsolicited_na_immediate` (`vrrp_ndisc.c`) does: Override set
/// (replace the cached MAC), Solicited clear (nobody asked), Router set when the interface
/// forwards IPv6 (`router`), and a Target Link-Layer Address option carrying `mac`.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Type 136    |    Code 0     |      Checksum (kernel's)      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |R|S|O|                     Reserved                            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                                                               +
/// |                     Target Address (16 bytes)                 |
/// +                                                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |    Type 2     |   Length 1    |   Link-layer address (mac)    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub fn unsolicited_na_with_router(mac: [u8; 6], target: Ipv6Addr, router: bool) -> Vec<u8> {
    let mut flags = NA_FLAG_OVERRIDE;
    if router {
        flags |= NA_FLAG_ROUTER;
    }
    let mut message = Vec::with_capacity(NA_LEN);
    message.extend_from_slice(&[ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, 0, 0]);
    message.extend_from_slice(&[flags, 0, 0, 0]);
    message.extend_from_slice(&target.octets());
    // The option length counts 8-byte units: type, length and a 6-byte MAC make one.
    message.extend_from_slice(&[ND_OPT_TARGET_LINK_LAYER_ADDRESS, 1]);
    message.extend_from_slice(&mac);
    message
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn gratuitous_arp_fields() {
        let frame = gratuitous_arp(MAC, Ipv4Addr::new(192, 0, 2, 53));
        assert_eq!(frame[0..6], [0xff; 6], "Ethernet destination: broadcast");
        assert_eq!(frame[6..12], MAC, "Ethernet source: our MAC");
        assert_eq!(frame[12..14], [0x08, 0x06], "EtherType ARP");
        assert_eq!(frame[14..16], [0x00, 0x01], "hardware type Ethernet");
        assert_eq!(frame[16..18], [0x08, 0x00], "protocol type IPv4");
        assert_eq!(frame[18], 6, "hardware address length");
        assert_eq!(frame[19], 4, "protocol address length");
        assert_eq!(frame[20..22], [0x00, 0x01], "operation REQUEST");
        assert_eq!(frame[22..28], MAC, "sender hardware address");
        assert_eq!(frame[28..32], [192, 0, 2, 53], "sender IP: the VIP");
        assert_eq!(
            frame[32..38],
            [0xff; 6],
            "target hardware address: broadcast"
        );
        assert_eq!(frame[38..42], [192, 0, 2, 53], "target IP: the VIP");
    }

    #[test]
    fn gratuitous_arp_known_bytes() {
        let frame = gratuitous_arp(MAC, Ipv4Addr::new(10, 1, 2, 3));
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 10,
            1, 2, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 10, 1, 2, 3,
        ];
        assert_eq!(frame, expected);
    }

    #[test]
    fn unsolicited_na_fields() {
        let target: Ipv6Addr = "2001:db8::53".parse().unwrap();
        let message = unsolicited_na(MAC, target);
        assert_eq!(message.len(), NA_LEN);
        assert_eq!(message[0], 136, "type Neighbor Advertisement");
        assert_eq!(message[1], 0, "code");
        assert_eq!(message[2..4], [0, 0], "checksum left to the kernel");
        assert_eq!(message[4], 0x20, "Override only: not Router, not Solicited");
        assert_eq!(message[5..8], [0, 0, 0], "reserved");
        assert_eq!(message[8..24], target.octets(), "target address");
        assert_eq!(message[24], 2, "option Target Link-Layer Address");
        assert_eq!(message[25], 1, "option length in 8-byte units");
        assert_eq!(message[26..32], MAC, "option: our MAC");
    }

    #[test]
    fn unsolicited_na_router_flag() {
        let target: Ipv6Addr = "fe80::1".parse().unwrap();
        let message = unsolicited_na_with_router(MAC, target, true);
        assert_eq!(message[4], 0x80 | 0x20, "Router and Override");
        assert_eq!(message[..4], unsolicited_na(MAC, target)[..4]);
        assert_eq!(message[5..], unsolicited_na(MAC, target)[5..]);
    }
}
