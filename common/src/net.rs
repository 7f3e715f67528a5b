//! The appliance's listening sockets: bound so that a VIP this node does not hold yet can be
//! ([`bind_freebind`]), and whether two of their addresses can both be bound, so that a config
//! whose listeners would collide is refused with the file instead of failing at start-up.
//!
//! The proxy's listeners (frontends and virtual services) are bound [`Sharing::ReusePort`], as
//! HAProxy binds its own: a reload binds a new listener while the one it replaces still listens,
//! and a new address that overlaps a removed one (`0.0.0.0:80` replaced by `10.0.0.1:80`, a
//! virtual service renamed, an address moved from a frontend to a virtual service) must not
//! fail with `EADDRINUSE`. A program that binds the port without `SO_REUSEPORT` still keeps
//! Fulcrum out, as before. The admin server, the NRPE agent and the replication ports are bound
//! [`Sharing::Exclusive`].

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Whether a listening socket may share its port with another of this user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Alone on its address and port.
    Exclusive,
    /// `SO_REUSEPORT`: beside another socket of this user's that sets it too, so that a reload
    /// can bind the next listener before the previous one closes.
    ReusePort,
}

/// A nonblocking TCP or UDP socket bound to `addr` with IP_FREEBIND, so a VIP not yet on this
/// node can be bound and serves the moment it arrives; TCP also gets SO_REUSEADDR, so a restart
/// does not wait for TIME_WAIT. IPv6 sockets also take IPv4 (`[::]` means both).
pub fn bind_freebind(addr: SocketAddr, ty: Type, sharing: Sharing) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, protocol(ty))?;
    if ty == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    if sharing == Sharing::ReusePort {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
        socket.set_freebind_v6(true).ok();
    } else {
        socket.set_freebind_v4(true).ok();
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A nonblocking TCP listener on `addr`, bound as [`bind_freebind`] binds, with room for
/// `backlog` connections not yet accepted.
pub fn tcp_listener(
    addr: SocketAddr,
    backlog: i32,
    sharing: Sharing,
) -> io::Result<std::net::TcpListener> {
    let socket = bind_freebind(addr, Type::STREAM, sharing)?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// The protocol of a socket of type `ty`: UDP for datagrams, else TCP.
pub fn protocol(ty: Type) -> Option<Protocol> {
    Some(if ty == Type::DGRAM {
        Protocol::UDP
    } else {
        Protocol::TCP
    })
}

/// Whether two TCP (or two UDP) listeners cannot both bind: the same port, and the same
/// address or a wildcard that covers the other. Listeners bind IPv6 wildcards dual-stack
/// (`IPV6_V6ONLY` off), so `[::]` covers IPv4 addresses too; Linux refuses a wildcard and a
/// specific address on one port without `SO_REUSEPORT`. Within one config the proxy's
/// listeners, which set it, are held to this too: two of them sharing a port would split its
/// clients between them. Port 0 (any free port) never collides.
pub fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    let covers = |wide: SocketAddr, other: SocketAddr| {
        wide.ip().is_unspecified() && (wide.is_ipv6() || other.is_ipv4())
    };
    a.port() == b.port() && a.port() != 0 && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

#[cfg(test)]
mod tests {
    use super::binds_overlap;

    fn overlap(a: &str, b: &str) -> bool {
        let (a, b) = (
            a.parse().unwrap_or_else(|_| panic!("{a}")),
            b.parse().unwrap_or_else(|_| panic!("{b}")),
        );
        binds_overlap(a, b)
    }

    #[test]
    fn wildcards_cover_their_family_and_the_ipv6_one_covers_ipv4() {
        assert!(overlap("10.0.0.1:80", "10.0.0.1:80"));
        assert!(overlap("0.0.0.0:80", "10.0.0.1:80"));
        assert!(overlap("10.0.0.1:80", "0.0.0.0:80"));
        assert!(overlap("[::]:80", "0.0.0.0:80"));
        assert!(overlap("[::]:80", "10.0.0.1:80"));
        assert!(overlap("[::]:80", "[fe80::1]:80"));
        assert!(!overlap("0.0.0.0:80", "[::1]:80"));
        assert!(!overlap("10.0.0.1:80", "10.0.0.2:80"));
        assert!(!overlap("10.0.0.1:80", "10.0.0.1:81"));
        assert!(!overlap("0.0.0.0:0", "0.0.0.0:0"));
    }
}
