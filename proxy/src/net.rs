//! Socket set-up both tiers share: opening a socket to a real server from the client's own
//! address (transparent mode). Listeners are bound with [`fulcrum_common::net::bind_freebind`].

use std::{
    io,
    net::{IpAddr, SocketAddr},
};

use fulcrum_common::net::protocol;
use socket2::{Domain, Socket, Type};

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how a dual-stack listener sees an
/// IPv4 client) turned back into IPv4: the schedulers hash it, persistence keys on it, the PROXY
/// header names it and a transparent connection binds to it, all as the IPv4 address it is.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// A nonblocking socket for reaching `real`, bound to the client's address `source` with
/// IP_TRANSPARENT, so the real server sees the true client (needs CAP_NET_ADMIN and the routing
/// in docs/config.md). The port is the kernel's choice, as HAProxy's `usesrc clientip`: one
/// client port may reach the same real server through two virtual services.
pub(crate) fn bind_transparent(real: SocketAddr, source: IpAddr, ty: Type) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(real), ty, protocol(ty))?;
    if real.is_ipv4() {
        socket.set_ip_transparent_v4(true)?;
    } else {
        socket.set_ip_transparent_v6(true)?;
    }
    if ty == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    Ok(socket)
}
