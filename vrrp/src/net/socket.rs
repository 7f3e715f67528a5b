//! The raw IP socket (protocol 112) one VRRP interface sends and receives adverts on, for one
//! address family.
//!
//! One socket does both, unbound, as a receiver must be to see the multicast group: binding a raw
//! socket to an address would also filter what it receives by destination. The source address
//! (which VRRPv3 sums into its checksum) is instead given per packet with `IP_PKTINFO` /
//! `IPV6_PKTINFO`, and the interface is pinned with `SO_BINDTODEVICE`.
//!
//! The socket is registered with tokio as a `tokio::net::UdpSocket`: tokio's only safe way to
//! wait on a descriptor it owns (`AsyncFd::new` is deprecated as unsound, and the workspace
//! forbids `unsafe`). Nothing UDP-specific is called on it; sends and receives are `sendmsg` /
//! `recvmsg` / `recv` on the descriptor, which a raw socket answers like any datagram socket.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::debug;

use super::Link;
use crate::packet::{
    self, Accepted, ChecksumMode, DropReason, Expected, Family, MULTICAST_V4, MULTICAST_V6,
    PROTOCOL, RecvContext, TTL,
};

/// Room for the largest VRRP packet: a 60-byte IPv4 header and 255 IPv6-sized addresses (8 +
/// 255 × 16 bytes). Anything longer is not VRRP; it arrives cut short and fails the length check.
const RECV_BUFFER_LEN: usize = 8192;

/// A raw socket for VRRP adverts on one interface and family.
///
/// Multicast loop is off, so our own multicast adverts do not come back; should a packet from
/// `local` arrive anyway (a unicast advert to ourselves, a second instance on the same host), it
/// is returned like any other: the caller ignores adverts whose `src` is its own address.
#[derive(Debug)]
pub struct AdvertSocket {
    /// The raw socket (see the module header for why the type says UDP).
    socket: UdpSocket,
    family: Family,
    local: IpAddr,
    index: u32,
}

impl AdvertSocket {
    /// A raw IP protocol 112 socket bound to `link` (`SO_BINDTODEVICE`), sending with TTL / hop
    /// limit 255 to unicast and multicast destinations alike, with multicast loop off and `link`
    /// as the outgoing multicast interface. Unless `unicast`, it joins 224.0.0.18 / ff02::12 on
    /// `link`; it never receives multicast for groups other sockets joined.
    ///
    /// `local` is our primary address on `link` ([`Netlink::primary_address`](super::Netlink::primary_address)),
    /// the source of every advert sent; it must be of `family`. Must be called inside a tokio
    /// runtime.
    pub fn open(
        link: &Link,
        family: Family,
        local: IpAddr,
        unicast: bool,
    ) -> io::Result<AdvertSocket> {
        if Family::of(local) != family {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("source address {local} is not {family}"),
            ));
        }
        let domain = match family {
            Family::Ipv4 => Domain::IPV4,
            Family::Ipv6 => Domain::IPV6,
        };
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(PROTOCOL))))?;
        socket.set_nonblocking(true)?;
        socket.bind_device(Some(link.name.as_bytes()))?;
        match local {
            IpAddr::V4(local) => {
                socket.set_ttl_v4(u32::from(TTL))?;
                socket.set_multicast_ttl_v4(u32::from(TTL))?;
                socket.set_multicast_loop_v4(false)?;
                socket.set_multicast_if_v4(&local)?;
                // Otherwise the socket would also receive every group any other socket on the
                // host has joined.
                socket.set_multicast_all_v4(false)?;
                if !unicast {
                    socket.join_multicast_v4_n(
                        &MULTICAST_V4,
                        &InterfaceIndexOrAddress::Index(link.index),
                    )?;
                }
            }
            IpAddr::V6(_) => {
                socket.set_unicast_hops_v6(u32::from(TTL))?;
                socket.set_multicast_hops_v6(u32::from(TTL))?;
                socket.set_multicast_loop_v6(false)?;
                socket.set_multicast_if_v6(link.index)?;
                socket.set_multicast_all_v6(false)?;
                // IPv6 raw sockets deliver the payload alone: the hop limit and destination come
                // as ancillary data.
                socket.set_recv_hoplimit_v6(true)?;
                setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
                if !unicast {
                    socket.join_multicast_v6(&MULTICAST_V6, link.index)?;
                }
            }
        }
        debug!(interface = %link.name, %family, %local, unicast, "advert socket open");
        Ok(AdvertSocket {
            socket: UdpSocket::from_std(socket.into())?,
            family,
            local,
            index: link.index,
        })
    }

    /// Sends one VRRP message (from [`packet::encode`], with this socket's `local` as its source)
    /// to `dst`: the multicast group or a unicast peer, of the socket's family.
    pub async fn send(&self, message: &[u8], dst: IpAddr) -> io::Result<()> {
        if Family::of(dst) != self.family {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("destination {dst} is not {}", self.family),
            ));
        }
        let sent = self
            .socket
            .async_io(Interest::WRITABLE, || self.send_now(message, dst))
            .await?;
        if sent != message.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                message.len()
            )));
        }
        Ok(())
    }

    /// Waits for the next packet and applies the receive checks of [`packet`] to it.
    ///
    /// The outer error is the socket's; the inner one is why the packet was dropped, for the
    /// caller to log and count. IPv4 packets go through [`packet::decode_ipv4_packet`] (raw IPv4
    /// sockets deliver the IP header); IPv6 ones through [`packet::decode`], with the hop limit
    /// from `IPV6_RECVHOPLIMIT`, the destination from `IPV6_PKTINFO` and the source from the
    /// sender's address. An advert from `local` is returned like any other (see
    /// [`AdvertSocket`]).
    ///
    /// Cancel-safe: dropped before it resolves (in a `select!` with a timer), no packet is lost.
    pub async fn recv(
        &self,
        checksum: ChecksumMode,
        expected: &[Expected],
    ) -> io::Result<Result<Accepted, DropReason>> {
        let mut buffer = vec![0u8; RECV_BUFFER_LEN];
        let fd = self.socket.as_raw_fd();
        match self.family {
            Family::Ipv4 => {
                let len = self.socket.recv(&mut buffer).await?;
                let packet = buffer.get(..len).unwrap_or(&buffer[..]);
                Ok(packet::decode_ipv4_packet(packet, checksum, expected))
            }
            Family::Ipv6 => {
                let received = self
                    .socket
                    .async_io(Interest::READABLE, || recv_v6(fd, &mut buffer))
                    .await?;
                // The kernel always reports these once asked to; a packet without them cannot
                // be checked, so it is dropped rather than guessed at.
                let Some(Ipv6Received { len, ttl, src, dst }) = received else {
                    return Ok(Err(DropReason::BadIpHeader {
                        reason: "an IPv6 packet came without its source or destination",
                    }));
                };
                let ctx = RecvContext {
                    ttl,
                    src: IpAddr::V6(src),
                    dst: IpAddr::V6(dst),
                    checksum,
                    expected,
                };
                let message = buffer.get(..len).unwrap_or(&buffer[..]);
                Ok(packet::decode(message, &ctx))
            }
        }
    }

    /// Drops every packet queued on the socket, without waiting (straight on the descriptor:
    /// tokio's `try_recv` reads nothing until its reactor has seen the socket readable).
    pub fn discard_queued(&self) {
        let mut buffer = [0u8; RECV_BUFFER_LEN];
        let fd = self.socket.as_raw_fd();
        while nix::sys::socket::recv(fd, &mut buffer, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
            .is_ok()
        {}
    }

    /// One non-blocking `sendmsg`, the source and interface given with `IP_PKTINFO` /
    /// `IPV6_PKTINFO`.
    fn send_now(&self, message: &[u8], dst: IpAddr) -> io::Result<usize> {
        let iov = [IoSlice::new(message)];
        let fd = self.socket.as_raw_fd();
        // Index fits: the kernel's interface indexes are positive ints.
        let ifindex = i32::try_from(self.index).unwrap_or(0);
        let sent = match (self.local, dst) {
            (IpAddr::V4(local), IpAddr::V4(dst)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: ifindex,
                    ipi_spec_dst: in_addr(local),
                    ipi_addr: in_addr(Ipv4Addr::UNSPECIFIED),
                };
                let to = SockaddrStorage::from(SocketAddr::V4(SocketAddrV4::new(dst, 0)));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&to),
                )
            }
            (IpAddr::V6(local), IpAddr::V6(dst)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: local.octets(),
                    },
                    ipi6_ifindex: self.index,
                };
                // A link-local peer needs its scope; for others the kernel ignores it.
                let to =
                    SockaddrStorage::from(SocketAddr::V6(SocketAddrV6::new(dst, 0, 0, self.index)));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&to),
                )
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "source and destination of different families",
                ));
            }
        };
        sent.map_err(io::Error::from)
    }
}

/// What the IP layer said about one IPv6 packet.
struct Ipv6Received {
    len: usize,
    ttl: Option<u8>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
}

/// One non-blocking `recvmsg` of an IPv6 packet with its hop limit and destination; `None` for
/// the source or destination missing.
fn recv_v6(fd: RawFd, buffer: &mut [u8]) -> io::Result<Option<Ipv6Received>> {
    let mut iov = [IoSliceMut::new(buffer)];
    let mut control = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let message = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut control), MsgFlags::empty())?;
    let mut ttl = None;
    let mut dst = None;
    for cmsg in message.cmsgs()? {
        match cmsg {
            ControlMessageOwned::Ipv6HopLimit(limit) => ttl = u8::try_from(limit).ok(),
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            _ => {}
        }
    }
    let src = message
        .address
        .as_ref()
        .and_then(|address| address.as_sockaddr_in6())
        .map(|address| address.ip());
    Ok(src.zip(dst).map(|(src, dst)| Ipv6Received {
        len: message.bytes,
        ttl,
        src,
        dst,
    }))
}

fn in_addr(address: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from(address).to_be(),
    }
}
