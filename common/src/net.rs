//! Whether two listening addresses of the appliance can both be bound, so that a config whose
//! listeners would collide is refused with the file instead of failing at start-up.

use std::net::SocketAddr;

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
