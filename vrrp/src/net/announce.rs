//! Sending the announcements of [`frames`](super::frames) on one interface: gratuitous ARP
//! through an AF_PACKET socket (pnet_datalink, as the frame is Ethernet and the workspace forbids
//! `unsafe`), Neighbor Advertisements through a raw ICMPv6 socket. Each socket is opened on first
//! use, so an IPv4-only instance never opens the ICMPv6 one.

use std::fmt;
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::time::Duration;

use nix::libc;
use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
use pnet_datalink::{ChannelType, DataLinkSender, MacAddr, NetworkInterface};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::Link;
use super::frames::{gratuitous_arp, unsolicited_na_with_router};

/// ff02::1, all nodes on the link: where unsolicited advertisements go (RFC 4861 §7.2.6).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The hop limit of every Neighbor Discovery message; receivers drop any other (RFC 4861 §7.1.2).
const ND_HOP_LIMIT: u32 = 255;

/// The EtherType the AF_PACKET socket is bound to, so that it receives (and queues, unread) only
/// RARP, which nobody sends: keepalived does the same. Sending a whole Ethernet frame does not
/// depend on it.
const ETH_P_RARP: u16 = 0x8035;

/// How long a send may wait for room in the socket buffer; announcing must not stall the caller.
const WRITE_TIMEOUT: Duration = Duration::from_millis(100);

/// Sends gratuitous ARPs and unsolicited Neighbor Advertisements on one interface.
pub struct Announcer {
    link: Link,
    mac: [u8; 6],
    /// The Ethernet sender for gratuitous ARP, opened with the announcer. pnet's sender
    /// is `Send` but not `Sync`; the mutex makes the announcer `Sync` (so a task may hold `&` to
    /// it across an await) and is never locked: `&mut self` reaches it with `get_mut`.
    ethernet: Mutex<Box<dyn DataLinkSender>>,
    /// The ICMPv6 socket for Neighbor Advertisements, opened on the first IPv6 address.
    icmpv6: Option<Socket>,
}

impl fmt::Debug for Announcer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Announcer")
            .field("link", &self.link)
            .field("icmpv6", &self.icmpv6)
            .finish()
    }
}

impl Announcer {
    /// An announcer for `link`. The packet socket for gratuitous ARP is opened now: opening it
    /// takes milliseconds, which the first failover must not wait for (measured: the first
    /// burst went out 6 to 14 ms after the advert when it was opened on first use). The ICMPv6
    /// socket, a plain socket, is opened on the first IPv6 address. Fails if the link has no MAC
    /// address (a tunnel, say), as there is nothing to announce there.
    pub fn open(link: &Link) -> io::Result<Announcer> {
        let Some(mac) = link.mac else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "interface {} has no MAC address to announce VIPs with",
                    link.name
                ),
            ));
        };
        Ok(Announcer {
            link: link.clone(),
            mac,
            ethernet: Mutex::new(open_ethernet(link, mac)?),
            icmpv6: None,
        })
    }

    /// Sends one gratuitous ARP per IPv4 address and one unsolicited Neighbor Advertisement per
    /// IPv6 address in `addresses`.
    ///
    /// A failure on one address is logged (warn) and the others are still sent; the first
    /// failure is then returned, so the caller can count it.
    ///
    /// Blocking, but briefly: a frame waits at most 100 ms for room in a full socket buffer, and
    /// the ICMPv6 socket does not wait at all.
    pub fn announce(&mut self, addresses: &[IpAddr]) -> io::Result<()> {
        let mut first_error = None;
        for &address in addresses {
            let sent = match address {
                IpAddr::V4(ip) => self.send_arp(ip),
                IpAddr::V6(ip) => self.send_na(ip),
            };
            match sent {
                Ok(()) => debug!(interface = %self.link.name, %address, "VIP announced"),
                Err(error) => {
                    warn!(interface = %self.link.name, %address, %error, "VIP announcement failed");
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn send_arp(&mut self, ip: Ipv4Addr) -> io::Result<()> {
        let frame = gratuitous_arp(self.mac, ip);
        self.ethernet
            .get_mut()
            .send_to(&frame, None)
            .unwrap_or_else(|| Err(io::Error::other("frame larger than the write buffer")))
    }

    fn send_na(&mut self, target: Ipv6Addr) -> io::Result<()> {
        let message = unsolicited_na_with_router(self.mac, target, self.forwards_ipv6());
        let socket = match &mut self.icmpv6 {
            Some(socket) => socket,
            empty => empty.insert(open_icmpv6(&self.link)?),
        };
        // From the target itself, as Linux (ndisc_send_unsol_na) and keepalived send it.
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: target.octets(),
            },
            ipi6_ifindex: self.link.index,
        };
        let to = SockaddrStorage::from(SocketAddr::V6(SocketAddrV6::new(
            ALL_NODES,
            0,
            0,
            self.link.index,
        )));
        let sent = sendmsg(
            socket.as_raw_fd(),
            &[IoSlice::new(&message)],
            &[ControlMessage::Ipv6PacketInfo(&info)],
            MsgFlags::empty(),
            Some(&to),
        )?;
        if sent != message.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                message.len()
            )));
        }
        Ok(())
    }

    /// Whether the interface forwards IPv6, which keepalived reflects in the Router flag.
    fn forwards_ipv6(&self) -> bool {
        let path = format!("/proc/sys/net/ipv6/conf/{}/forwarding", self.link.name);
        std::fs::read_to_string(path).is_ok_and(|value| value.trim() == "1")
    }
}

/// An AF_PACKET sender on `link` for whole Ethernet frames.
///
/// pnet_datalink would open an `ETH_P_ALL` socket in promiscuous mode, which copies every frame
/// on the interface into a queue nobody reads; it is handed a socket bound to RARP instead and
/// told not to go promiscuous.
fn open_ethernet(link: &Link, mac: [u8; 6]) -> io::Result<Box<dyn DataLinkSender>> {
    let socket = Socket::new(
        Domain::PACKET,
        Type::RAW,
        Some(Protocol::from(i32::from(ETH_P_RARP.to_be()))),
    )?;
    let interface = NetworkInterface {
        name: link.name.clone(),
        description: String::new(),
        index: link.index,
        mac: Some(MacAddr::from(mac)),
        ips: Vec::new(),
        flags: 0,
    };
    let config = pnet_datalink::Config {
        write_timeout: Some(WRITE_TIMEOUT),
        read_buffer_size: 0,
        // pnet binds to the Layer3 protocol given; on our SOCK_RAW socket that still sends whole
        // frames.
        channel_type: ChannelType::Layer3(ETH_P_RARP),
        promiscuous: false,
        // pnet owns the descriptor from here and closes it, also on failure.
        socket_fd: Some(socket.into_raw_fd()),
        ..pnet_datalink::Config::default()
    };
    match pnet_datalink::channel(&interface, config)? {
        pnet_datalink::Channel::Ethernet(sender, _receiver) => {
            debug!(interface = %link.name, "ARP sender open");
            Ok(sender)
        }
        _ => Err(io::Error::other(
            "pnet_datalink gave a non-Ethernet channel",
        )),
    }
}

/// A raw ICMPv6 socket on `link` that sends with hop limit 255 and receives nothing.
fn open_icmpv6(link: &Link) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    socket.set_nonblocking(true)?;
    socket.bind_device(Some(link.name.as_bytes()))?;
    socket.set_multicast_hops_v6(ND_HOP_LIMIT)?;
    socket.set_unicast_hops_v6(ND_HOP_LIMIT)?;
    socket.set_multicast_if_v6(link.index)?;
    socket.set_multicast_loop_v6(false)?;
    // A raw ICMPv6 socket gets a copy of every ICMPv6 packet on the host; one BPF instruction
    // ("return 0": keep no bytes) drops them all before they are queued.
    socket.attach_filter(&[SockFilter::new(BPF_RET_K, 0, 0, 0)])?;
    debug!(interface = %link.name, "Neighbor Advertisement socket open");
    Ok(socket)
}

/// BPF_RET | BPF_K: return the constant.
const BPF_RET_K: u16 = 0x06;
