//! The rtnetlink connection and what VRRP reads through it: an interface's index, MAC and state
//! ([`Link`]), and the address adverts are sent from.

use std::io;
use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use tracing::debug;

use super::dump;
use super::error::{is_errno, no_such_interface, to_io};
use crate::packet::Family;

/// A handle on rtnetlink (the kernel's routing socket), shared by every VRRP instance.
///
/// Cheap to share by reference; requests from many tasks go through one connection.
#[derive(Debug)]
pub struct Netlink {
    pub(super) handle: rtnetlink::Handle,
    /// Where [`Netlink::watch_link`] spawns its watchers, so that it can be called from any
    /// thread.
    pub(super) runtime: tokio::runtime::Handle,
}

/// A network interface as VRRP sees it, read by [`Netlink::link`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its name, e.g. `eth0`.
    pub name: String,
    /// Its index, which sockets and address changes are bound to.
    pub index: u32,
    /// Its Ethernet address; `None` for links without one (loopback has zeros, tunnels none).
    pub mac: Option<[u8; 6]>,
    /// Whether it is administratively up and has carrier (`IFF_UP` and `IFF_RUNNING`).
    pub up: bool,
}

impl Netlink {
    /// Opens the rtnetlink connection and spawns its task on the current tokio runtime; the task
    /// ends when the last handle (this value and running watchers) is dropped.
    ///
    /// Fails when called outside a tokio runtime.
    pub fn new() -> io::Result<Netlink> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let (connection, handle, _unsolicited) = rtnetlink::new_connection()?;
        runtime.spawn(connection);
        Ok(Netlink { handle, runtime })
    }

    /// The interface called `name`; a `NotFound` error naming it if there is none.
    pub async fn link(&self, name: &str) -> io::Result<Link> {
        match query_link(&self.handle, name).await? {
            Some(link) => Ok(link),
            None => Err(no_such_interface(name)),
        }
    }

    /// The address adverts are sent from: for IPv4 the interface's primary (first non-secondary)
    /// address, for IPv6 its link-local address (RFC 5798 §5.1.2.1). `None` if it has none.
    ///
    /// For IPv6 a link-local address that has finished duplicate address detection is preferred;
    /// a tentative one is returned only when there is no other, and sending from it fails until
    /// DAD completes (a second or two after the link comes up).
    pub async fn primary_address(&self, link: &Link, family: Family) -> io::Result<Option<IpAddr>> {
        let mut tentative = None;
        for message in dump::addresses(&self.handle, link.index, None).await? {
            match family {
                Family::Ipv4 => {
                    if message.header.family == AddressFamily::Inet
                        && !message.header.flags.contains(AddressHeaderFlags::Secondary)
                        && let Some(address) = local_address(&message)
                    {
                        return Ok(Some(address));
                    }
                }
                Family::Ipv6 => {
                    let Some(address @ IpAddr::V6(v6)) = local_address(&message) else {
                        continue;
                    };
                    if !is_link_local(v6) {
                        continue;
                    }
                    let flags = message.header.flags;
                    if flags.contains(AddressHeaderFlags::Dadfailed) {
                        continue;
                    }
                    if !flags.contains(AddressHeaderFlags::Tentative) {
                        return Ok(Some(address));
                    }
                    tentative.get_or_insert(address);
                }
            }
        }
        if let Some(address) = tentative {
            debug!(interface = %link.name, %address, "only a tentative link-local address");
        }
        Ok(tentative)
    }
}

/// The link called `name` now, or `None` if it does not exist.
pub(super) async fn query_link(handle: &rtnetlink::Handle, name: &str) -> io::Result<Option<Link>> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(Some(message)) => Ok(Some(Link::from_message(name, &message))),
        Ok(None) => Ok(None),
        Err(error) => {
            let error = to_io(error);
            // The kernel answers ENODEV for a name it does not know.
            if is_errno(&error, nix::libc::ENODEV) {
                Ok(None)
            } else {
                Err(error)
            }
        }
    }
}

impl Link {
    /// Reads a link message (RTM_NEWLINK); `name` stands in if it carries none.
    pub(super) fn from_message(name: &str, message: &LinkMessage) -> Link {
        let mut link = Link {
            name: name.to_owned(),
            index: message.header.index,
            mac: None,
            up: is_up(message.header.flags),
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(ifname) => link.name.clone_from(ifname),
                LinkAttribute::Address(bytes) => link.mac = <[u8; 6]>::try_from(&bytes[..]).ok(),
                _ => {}
            }
        }
        link
    }
}

/// keepalived's rule for `track_interface`: administratively up and with carrier. A link that is
/// up without carrier (cable out, veth peer down) cannot carry adverts.
pub(super) fn is_up(flags: LinkFlags) -> bool {
    flags.contains(LinkFlags::Up | LinkFlags::Running)
}

/// The address of an address message: IFA_LOCAL, which on point-to-point links differs from
/// IFA_ADDRESS (the peer's), else IFA_ADDRESS (IPv6 sends only that).
fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let local = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            AddressAttribute::Local(address) => Some(*address),
            _ => None,
        });
    local.or_else(|| {
        message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                AddressAttribute::Address(address) => Some(*address),
                _ => None,
            })
    })
}

/// fe80::/10.
fn is_link_local(address: std::net::Ipv6Addr) -> bool {
    address.segments()[0] & 0xffc0 == 0xfe80
}
