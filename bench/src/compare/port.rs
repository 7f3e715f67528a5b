//! Picking a free loopback port for a proxy's listener: bind port 0, read the port, release it.
//! Another process could take it in between, but the proxy then fails to start with a clear
//! error rather than measuring the wrong thing.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use anyhow::Context;

/// A `127.0.0.1` address whose port was free a moment ago.
pub(crate) fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot bind 127.0.0.1:0 to find a free port")?;
    listener
        .local_addr()
        .context("cannot read the port of 127.0.0.1:0")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::free_port;

    #[test]
    fn the_port_is_free_again() {
        let addr = free_port().unwrap();
        assert_ne!(addr.port(), 0);
        std::net::TcpListener::bind(addr).unwrap();
    }
}
