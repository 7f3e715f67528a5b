//! Refused logins counted per client address: after [`MAX_FAILURES`] within [`WINDOW`], the
//! client is answered 429 without its credentials being checked, until the window has passed.
//! Without it, one keep-alive connection could try passwords as fast as 401s come back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refused logins a client may make within [`WINDOW`].
pub(super) const MAX_FAILURES: u32 = 10;
/// How long refusals are remembered, counted from a client's first one.
pub(super) const WINDOW: Duration = Duration::from_secs(300);
/// Clients remembered at most; a full table starts over, so that a spread of addresses cannot
/// make it grow without bound (and then locks out no one until refusals pile up again).
const MAX_CLIENTS: usize = 4096;

/// A client's refusals since `since`.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

#[derive(Debug, Default)]
pub(super) struct Lockout(Mutex<HashMap<IpAddr, Failures>>);

impl Lockout {
    /// `Err` with how long to wait when `client` has used up its refusals.
    pub(super) fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let Ok(mut clients) = self.0.lock() else {
            return Ok(());
        };
        match clients.get(&client) {
            Some(f) if now.saturating_duration_since(f.since) >= WINDOW => {
                clients.remove(&client);
                Ok(())
            }
            Some(f) if f.count >= MAX_FAILURES => {
                Err(WINDOW.saturating_sub(now.saturating_duration_since(f.since)))
            }
            _ => Ok(()),
        }
    }

    /// Counts a refused login from `client`.
    pub(super) fn failed(&self, client: IpAddr, now: Instant) {
        let Ok(mut clients) = self.0.lock() else {
            return;
        };
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.clear();
        }
        let failures = clients.entry(client).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.saturating_duration_since(failures.since) >= WINDOW {
            *failures = Failures {
                count: 0,
                since: now,
            };
        }
        failures.count = failures.count.saturating_add(1);
    }

    /// A login from `client` passed: its refusals are forgotten.
    pub(super) fn succeeded(&self, client: IpAddr) {
        if let Ok(mut clients) = self.0.lock() {
            clients.remove(&client);
        }
    }
}

#[cfg(test)]
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
