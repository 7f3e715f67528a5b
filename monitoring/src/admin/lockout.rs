//! Refused logins counted per client: after [`MAX_FAILURES`] within [`WINDOW`], the client is
//! answered 429 without its credentials being checked, until the window has passed. Without
//! it, one keep-alive connection could try passwords as fast as 401s come back.
//!
//! A client is what [`super::per_source`] calls one: an IPv4 address, or an IPv6 /64, since one
//! IPv6 host is given a whole /64 and could otherwise take a new address for every ten tries.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::per_source::client_of;

/// Refused logins a client may make within [`WINDOW`].
pub(super) const MAX_FAILURES: u32 = 10;
/// How long refusals are remembered, counted from a client's first one.
pub(super) const WINDOW: Duration = Duration::from_secs(300);
/// Clients remembered at most, so that a spread of addresses cannot make the table grow
/// without bound. A full table forgets clients whose window has passed, then those not held
/// off; a client held off is never forgotten early (that would let a spread of addresses
/// unlock it). Clients that find it full of held-off ones share one count, [`OVERFLOW`].
const MAX_CLIENTS: usize = 4096;
/// The key the clients share that a table full of held-off clients has no room for.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// A client's refusals since `since`.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

impl Failures {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.since) >= WINDOW
    }

    fn held_off(&self, now: Instant) -> bool {
        self.count >= MAX_FAILURES && !self.expired(now)
    }
}

#[derive(Debug, Default)]
pub(super) struct Lockout(Mutex<HashMap<IpAddr, Failures>>);

impl Lockout {
    /// `Err` with how long to wait when `peer`'s client has used up its refusals.
    pub(super) fn check(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let Ok(mut clients) = self.0.lock() else {
            return Ok(());
        };
        let client = client_of(peer);
        let key = if clients.contains_key(&client) || clients.len() < MAX_CLIENTS {
            client
        } else {
            OVERFLOW
        };
        match clients.get(&key) {
            Some(f) if f.expired(now) => {
                clients.remove(&key);
                Ok(())
            }
            Some(f) if f.held_off(now) => {
                Err(WINDOW.saturating_sub(now.saturating_duration_since(f.since)))
            }
            _ => Ok(()),
        }
    }

    /// Counts a refused login from `peer`'s client.
    pub(super) fn failed(&self, peer: IpAddr, now: Instant) {
        let Ok(mut clients) = self.0.lock() else {
            return;
        };
        let mut key = client_of(peer);
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&key) {
            clients.retain(|_, f| !f.expired(now));
            if clients.len() >= MAX_CLIENTS {
                clients.retain(|k, f| *k == OVERFLOW || f.held_off(now));
            }
            if clients.len() >= MAX_CLIENTS {
                key = OVERFLOW;
            }
        }
        let failures = clients.entry(key).or_insert(Failures {
            count: 0,
            since: now,
        });
        if failures.expired(now) {
            *failures = Failures {
                count: 0,
                since: now,
            };
        }
        failures.count = failures.count.saturating_add(1);
    }

    /// A login from `peer`'s client passed: its refusals are forgotten.
    pub(super) fn succeeded(&self, peer: IpAddr) {
        if let Ok(mut clients) = self.0.lock() {
            clients.remove(&client_of(peer));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    // Input: ten refusals from A; a check from A and from B; a check from A once the window
    // has passed. Output: A is held off (for what is left of the window), B is not, and A is let
    // in again after it.
    #[test]
    fn a_client_that_used_up_its_refusals_waits_out_the_window() {
        let lockout = Lockout::default();
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(lockout.check(A, start), Ok(()), "refusal {i}");
            lockout.failed(A, start);
        }
        let later = start + Duration::from_secs(100);
        assert_eq!(
            lockout.check(A, later),
            Err(WINDOW - Duration::from_secs(100))
        );
        assert_eq!(lockout.check(B, later), Ok(()));
        assert_eq!(lockout.check(A, start + WINDOW), Ok(()));
    }

    // Input: ten refusals spread over ten addresses of one IPv6 /64, then a check from an
    // eleventh. Output: held off, as one client. (Each address had ten tries of its own.)
    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let lockout = Lockout::default();
        let now = Instant::now();
        for i in 0..MAX_FAILURES {
            let peer: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            lockout.failed(peer, now);
        }
        let other: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(lockout.check(other, now).is_err());
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(lockout.check(elsewhere, now), Ok(()));
    }

    // Input: as many clients as the table holds, each held off; then ten refusals from a
    // newcomer. Output: every client in the table is still held off, and the newcomer, with
    // no room of its own, shares a count with any other newcomer: after its ten refusals, both
    // are held off. (A full table was cleared, freeing every client held off.)
    #[test]
    fn a_full_table_never_frees_a_client_held_off() {
        let lockout = Lockout::default();
        let now = Instant::now();
        let client = |i: usize| IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i as u32));
        for i in 0..MAX_CLIENTS {
            for _ in 0..MAX_FAILURES {
                lockout.failed(client(i), now);
            }
        }
        let (newcomer, another) = (client(MAX_CLIENTS), client(MAX_CLIENTS + 1));
        for _ in 0..MAX_FAILURES {
            assert_eq!(lockout.check(newcomer, now), Ok(()));
            lockout.failed(newcomer, now);
        }
        assert!(lockout.check(newcomer, now).is_err());
        assert!(lockout.check(another, now).is_err(), "no shared count");
        assert!(
            lockout.check(client(0), now).is_err(),
            "a client was let go"
        );
        assert!(lockout.check(client(MAX_CLIENTS - 1), now).is_err());
    }

    // Input: nine refusals from A, a login that passes, nine more. Output: A is never held off:
    // a success forgets the refusals before it.
    #[test]
    fn a_login_that_passes_forgets_the_refusals() {
        let lockout = Lockout::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            lockout.failed(A, now);
        }
        lockout.succeeded(A);
        for _ in 0..MAX_FAILURES - 1 {
            lockout.failed(A, now);
        }
        assert_eq!(lockout.check(A, now), Ok(()));
    }
}
