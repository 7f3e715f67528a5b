//! Socket set-up both tiers share: connecting to a server, from the client's own address in
//! transparent mode. Listeners are bound with [`fulcrum_common::net::bind_freebind`].

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use fulcrum_common::net::protocol;
use socket2::{Domain, Socket, Type};
use tokio::{io::Interest, net::TcpStream};

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

/// A nonblocking TCP socket for reaching `addr`, from the client's address `source` in
/// transparent mode, with Nagle off: what is relayed goes on at once.
pub(crate) fn server_socket(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Socket> {
    let socket = match source {
        Some(source) => bind_transparent(addr, source, Type::STREAM)?,
        None => Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking(),
            protocol(Type::STREAM),
        )?,
    };
    socket.set_tcp_nodelay(true)?;
    Ok(socket)
}

/// Connects `socket` (nonblocking) to `addr`. Tokio's own connect asks every new connection for
/// its error (`getsockopt(SO_ERROR)`); here only a connection the kernel reports closed for
/// writing (EPOLLHUP, or EPOLLERR with EPOLLOUT: refused, unreachable, timed out) is asked, so a
/// connection that came up costs one syscall fewer, as in HAProxy, which goes straight to
/// sending.
pub(crate) async fn connect(socket: Socket, addr: SocketAddr) -> io::Result<TcpStream> {
    if let Err(error) = socket.connect(&addr.into())
        && !in_progress(&error)
    {
        return Err(error);
    }
    let stream = TcpStream::from_std(socket.into())?;
    if stream.ready(Interest::WRITABLE).await?.is_write_closed()
        && let Some(error) = stream.take_error()?
    {
        return Err(error);
    }
    Ok(stream)
}

/// Whether a failed connect is this host's doing, not the server's: out of descriptors, memory
/// or local ports, or a source address already taken. Such a failure says nothing of the
/// server's health: passive checks (`observe`) must not count it, or a shortage on the
/// appliance would take every server down, as HAProxy's `RC` (a local resource exhausted) is
/// not held against the server either.
pub(crate) fn is_local_failure(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EADDRNOTAVAIL
                | libc::EADDRINUSE
        )
    )
}

/// Logs a connect to `server` that failed for want of local resources, at most once a second:
/// in such a shortage every connection fails, and a line for each would bury the log.
pub(crate) fn warn_local_failure(server: SocketAddr, error: &io::Error) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LAST.swap(now, Ordering::Relaxed) != now {
        tracing::warn!(%server, %error, "cannot connect: out of local resources (not the server's failure)");
    }
}

/// A nonblocking connect's EINPROGRESS: the handshake goes on. (`io::ErrorKind::InProgress`
/// is not stable yet.)
fn in_progress(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::EINPROGRESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_comes_up_with_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = connect(server_socket(addr, None).unwrap(), addr)
            .await
            .unwrap();
        let (accepted, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, stream.local_addr().unwrap());
        assert!(stream.nodelay().unwrap());
        drop(accepted);
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error() {
        // A port held by a socket that does not listen: no other test can take it meanwhile.
        let holder = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        holder
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addr = holder.local_addr().unwrap().as_socket().unwrap();
        let error = connect(server_socket(addr, None).unwrap(), addr)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    }
}
