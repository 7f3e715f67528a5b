//! Adding and removing virtual addresses, as keepalived does on entering and leaving MASTER.
//!
//! Both are idempotent, so that a restart that finds its VIPs still configured (or already gone)
//! converges instead of failing.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rtnetlink::AddressMessageBuilder;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use tracing::debug;

use super::error::{is_errno, to_io};
use super::{Link, Netlink, dump};

/// The longest IPv4 address label the kernel takes: IFNAMSIZ less the NUL.
const MAX_LABEL_LEN: usize = 15;

/// The address protocol (`IFA_PROTO`, `ip addr` shows `proto 18`) VIPs are added with:
/// keepalived's `RTPROT_KEEPALIVED`, which keepalived (2.2.8 on) gives its own. It tells a VIP
/// left by a crash, to be removed, from an address the interface has of its own.
const VIP_PROTOCOL: u8 = 18;

impl Netlink {
    /// Adds `vip` to `link`; already present is success.
    ///
    /// An IPv4 VIP gets the address label `label` (at most 15 bytes, e.g. `eth0:vrrp53`), which
    /// `ip addr` and `ifconfig` show, so an operator can tell VIPs from the primary address; an
    /// empty label leaves the kernel's default (the interface name). IPv6 has no labels: `label`
    /// is ignored and the VIP is added with `IFA_F_NODAD`, so it is usable at once instead of
    /// after a second of duplicate address detection (the other router has just given it up).
    pub async fn add_vip(&self, link: &Link, vip: &IpNet, label: &str) -> io::Result<()> {
        let mut request = self
            .handle
            .address()
            .add(link.index, vip.addr(), vip.prefix_len());
        let message = request.message_mut();
        message
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(
                VIP_PROTOCOL,
            )));
        match vip {
            IpNet::V4(_) => {
                if label.len() > MAX_LABEL_LEN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("address label {label:?} is longer than {MAX_LABEL_LEN} bytes"),
                    ));
                }
                if !label.is_empty() {
                    message
                        .attributes
                        .push(AddressAttribute::Label(label.to_owned()));
                }
            }
            IpNet::V6(_) => {
                // The header holds the low 8 flag bits, IFA_FLAGS all 32; set both, as iproute2
                // does.
                message.header.flags |= AddressHeaderFlags::Nodad;
                message
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
        match request.execute().await.map_err(to_io) {
            Ok(()) => {
                debug!(interface = %link.name, %vip, "VIP added");
                Ok(())
            }
            // The request carries NLM_F_EXCL, so an address already there answers EEXIST.
            Err(error) if is_errno(&error, nix::libc::EEXIST) => {
                debug!(interface = %link.name, %vip, "VIP already present");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Removes `vip` from `link`; already absent is success.
    pub async fn remove_vip(&self, link: &Link, vip: &IpNet) -> io::Result<()> {
        let message = match vip {
            IpNet::V4(net) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(link.index)
                .address(net.addr(), net.prefix_len())
                .build(),
            IpNet::V6(net) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(link.index)
                .address(net.addr(), net.prefix_len())
                .build(),
        };
        match self
            .handle
            .address()
            .del(message)
            .execute()
            .await
            .map_err(to_io)
        {
            Ok(()) => {
                debug!(interface = %link.name, %vip, "VIP removed");
                Ok(())
            }
            // The kernel's answer for an address (of that prefix length) not on the interface.
            Err(error) if is_errno(&error, nix::libc::EADDRNOTAVAIL) => {
                debug!(interface = %link.name, %vip, "VIP already absent");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// The addresses on `link` that are not VIPs: neither marked with [`VIP_PROTOCOL`], nor
    /// (as older releases left them) labelled `label` (IPv4, when the label is not just the
    /// interface's name) or added without duplicate address detection (IPv6). A VIP among them
    /// is an address the interface has of its own (an RFC 5798 address owner's), never removed.
    pub async fn own_addresses(&self, link: &Link, label: &str) -> io::Result<Vec<IpNet>> {
        let mut own = Vec::new();
        for message in dump::addresses(&self.handle, link.index, None).await? {
            if !is_vip(&message, label, &link.name)
                && let Some(net) = address_of(&message)
            {
                own.push(net);
            }
        }
        Ok(own)
    }

    /// Whether `addr` is configured on `link`, whatever its prefix length.
    pub async fn has_address(&self, link: &Link, addr: IpAddr) -> io::Result<bool> {
        address_present(&self.handle, link.index, addr).await
    }
}

/// Whether `addr` is configured on the interface of index `index`, whatever its prefix length.
pub(super) async fn address_present(
    handle: &rtnetlink::Handle,
    index: u32,
    addr: IpAddr,
) -> io::Result<bool> {
    Ok(!dump::addresses(handle, index, Some(addr)).await?.is_empty())
}

/// Whether an address was added as a VIP (see [`Netlink::own_addresses`]). Where nothing tells
/// (a kernel that drops the address protocol, and a VIP label that is the interface's name
/// alone), it counts as one, as every configured address did before marks existed: a VIP left
/// by a crash must not stay on two nodes.
fn is_vip(message: &AddressMessage, label: &str, interface: &str) -> bool {
    let marked = message.attributes.iter().any(|attribute| match attribute {
        AddressAttribute::Protocol(protocol) => u8::from(*protocol) == VIP_PROTOCOL,
        AddressAttribute::Label(l) => l == label && label != interface,
        AddressAttribute::Flags(flags) => flags.contains(AddressFlags::Nodad),
        _ => false,
    });
    let v4 = message.header.family == rtnetlink::packet_route::AddressFamily::Inet;
    let undecidable = v4 && label == interface && !kernel_keeps_protocols();
    marked || undecidable
}

/// Whether the kernel keeps an address's protocol (`IFA_PROTO`, Linux 5.18 on); older ones
/// drop it, so a VIP they hold carries no mark but its label.
fn kernel_keeps_protocols() -> bool {
    static KEEPS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KEEPS.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        (major, minor) >= (5, 18)
    })
}

/// The address and prefix length of an address message: IPv4's local address (its `Address`
/// is the peer's on a point-to-point link), IPv6's address.
fn address_of(message: &AddressMessage) -> Option<IpNet> {
    let prefix = message.header.prefix_len;
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    IpNet::new(local.or(address)?, prefix).ok()
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::AddressFamily;

    use super::*;

    fn v4(attributes: Vec<AddressAttribute>) -> AddressMessage {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.attributes = attributes;
        message
    }

    // Input: IPv4 addresses with protocol 18, with the VIP label, with the interface's own
    // label, and with a label that is the interface's name on both sides. Output: the first
    // two are VIPs, the third the interface's own; the last is one only where the kernel
    // would have dropped the protocol.
    #[test]
    fn vips_are_told_by_their_protocol_or_label() {
        let proto = AddressAttribute::Protocol(AddressProtocol::Other(VIP_PROTOCOL));
        let label = |l: &str| AddressAttribute::Label(l.to_owned());
        assert!(is_vip(&v4(vec![proto]), "eth0:53", "eth0"));
        assert!(is_vip(&v4(vec![label("eth0:53")]), "eth0:53", "eth0"));
        assert!(!is_vip(&v4(vec![label("eth0")]), "eth0:53", "eth0"));
        let long = "enp129s0f0np0";
        assert_eq!(
            is_vip(&v4(vec![label(long)]), long, long),
            !kernel_keeps_protocols()
        );
    }
}
