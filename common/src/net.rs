//! The appliance's listening sockets: bound so that a VIP this node does not hold yet can be
//! ([`bind_freebind`]), and whether two of their addresses can both be bound, so that a config
//! whose listeners would collide is refused with the file instead of failing at start-up.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// A nonblocking TCP or UDP socket bound to `addr` with IP_FREEBIND, so a VIP not yet on this
/// node can be bound and serves the moment it arrives; TCP also gets SO_REUSEADDR, so a restart
/// does not wait for TIME_WAIT. IPv6 sockets also take IPv4 (`[::]` means both).
pub fn bind_freebind(addr: SocketAddr, ty: Type) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, protocol(ty))?;
    if ty == Type::STREAM {
        socket.set_reuse_address(true)?;
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
pub fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = bind_freebind(addr, Type::STREAM)?;
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
/// specific address on one port without `SO_REUSEPORT`, which Fulcrum does not set. Port 0 (any
/// free port) never collides.
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
