//! Passive health checks, HAProxy's `observe`: the request path tells a server's [`Observer`]
//! how each connection and response went, and `error_limit` errors in a row hand the server's
//! health-check task a failure to act on (`on_error`, see `health::observed`).
//!
//! As HAProxy's `health_adjust`: with `layer4`, a connection made clears the count and one that
//! failed adds to it; with `layer7`, a failed connection adds to it too, and responses decide
//! the rest: a 5xx other than 501 and 505 (which a client's request can cause), or a response
//! head that is malformed, cut short or late, or a malformed body, adds to it; any other
//! response clears it. (A body the server cuts short does not count, as in HAProxy.) A passing
//! health check clears it too. Once the count reaches the limit it starts again from 0, so the
//! action comes once per `error_limit` errors in a row, and each time it comes counts.

use std::sync::{
    Mutex,
    atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed},
};

use tokio::sync::Notify;

use crate::config::{Check, Observe};

/// What the request path saw of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// A new connection to it was made.
    Connected,
    /// A connection to it could not be made (refused, unreachable, timed out).
    ConnectFailed,
    /// It answered with this status.
    Response(u16),
    /// Its response head was malformed, cut short or late, or its body malformed.
    BadResponse,
}

impl Seen {
    /// Whether `observe` counts it as an error (`Some(true)`), as clearing the count
    /// (`Some(false)`), or not at all.
    fn failed(self, observe: Observe) -> Option<bool> {
        match (self, observe) {
            (Seen::Connected, Observe::Layer4) => Some(false),
            (Seen::Connected, Observe::Layer7) => None,
            (Seen::ConnectFailed, _) => Some(true),
            (Seen::Response(_) | Seen::BadResponse, Observe::Layer4) => None,
            (Seen::Response(status), Observe::Layer7) => {
                Some(!(100..500).contains(&status) && status != 501 && status != 505)
            }
            (Seen::BadResponse, Observe::Layer7) => Some(true),
        }
    }

    /// HAProxy's words for it, in the check's description.
    fn describe(self) -> &'static str {
        match self {
            Seen::Connected => "L4 successful connection",
            Seen::ConnectFailed => "L4 unsuccessful connection",
            Seen::Response(_) => "Wrong http response",
            Seen::BadResponse => "Invalid or late http response",
        }
    }
}

/// `mode` when nothing is observed.
const OFF: u8 = 0;
const LAYER4: u8 = 1;
const LAYER7: u8 = 2;

/// One server's passive health; see the module documentation.
#[derive(Debug, Default)]
pub struct Observer {
    /// [`OFF`], [`LAYER4`] or [`LAYER7`]: one load on the request path when off.
    mode: AtomicU8,
    limit: AtomicU32,
    consecutive: AtomicU32,
    /// How many times the limit was reached, and why the last time, until the health-check
    /// task takes them: several may come while it probes, and each is an action.
    reached: Mutex<Option<(u32, String)>>,
    /// Wakes the health-check task when the limit is reached.
    pub(crate) wake: Notify,
    /// How many times the limit was reached (HAProxy's `hanafail`).
    pub(crate) failures: AtomicU64,
}

impl Observer {
    /// Follows the server's health check: observes what its `observe` says, or nothing.
    pub(crate) fn configure(&self, check: Option<&Check>) {
        let (mode, limit) = match check.and_then(|c| c.observe.map(|o| (o, c.error_limit))) {
            None => (OFF, 0),
            Some((Observe::Layer4, limit)) => (LAYER4, limit),
            Some((Observe::Layer7, limit)) => (LAYER7, limit),
        };
        self.limit.store(limit, Relaxed);
        if self.mode.swap(mode, Relaxed) != mode {
            self.consecutive.store(0, Relaxed);
        }
    }

    /// Counts what the request path saw.
    pub(crate) fn saw(&self, seen: Seen) {
        let observe = match self.mode.load(Relaxed) {
            OFF => return,
            LAYER4 => Observe::Layer4,
            _ => Observe::Layer7,
        };
        match seen.failed(observe) {
            None => {}
            Some(false) => self.clear(),
            Some(true) => {
                let count = self.consecutive.fetch_add(1, Relaxed) + 1;
                if count < self.limit.load(Relaxed) {
                    return;
                }
                self.consecutive.store(0, Relaxed);
                self.failures.fetch_add(1, Relaxed);
                let why = format!(
                    "Detected {count} consecutive errors, last one was: {}",
                    seen.describe()
                );
                if let Ok(mut reached) = self.reached.lock() {
                    let before = reached.as_ref().map_or(0, |(hits, _)| *hits);
                    *reached = Some((before + 1, why));
                }
                self.wake.notify_one();
            }
        }
    }

    /// Starts the count again: a success, or a passing health check (as HAProxy's
    /// `set_server_check_status` does).
    pub(crate) fn clear(&self) {
        // Read first: a server that keeps answering well is not written to at all.
        if self.consecutive.load(Relaxed) != 0 {
            self.consecutive.store(0, Relaxed);
        }
    }

    /// How many times the limit was reached since the last call, and why the last time.
    pub(crate) fn take(&self) -> Option<(u32, String)> {
        self.reached.lock().ok().and_then(|mut r| r.take())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::config::CheckKind;

    fn observing(observe: Observe, limit: u32) -> Observer {
        let observer = Observer::default();
        observer.configure(Some(&Check {
            observe: Some(observe),
            error_limit: limit,
            ..Check::of_kind(CheckKind::Tcp)
        }));
        observer
    }

    // Input: with layer7 and a limit of 3: responses 500, 502, then 200 (clears), then 503,
    // 504, a bad response (the third in a row), then 501 and 505 twice each after two more
    // 500s. Output: the limit is reached once, at the bad response, with HAProxy's words; 501
    // and 505 clear the count as a client's fault.
    #[test]
    fn layer7_counts_server_errors_in_a_row_and_not_501_or_505() {
        let o = observing(Observe::Layer7, 3);
        for status in [500, 502, 200, 503, 504] {
            o.saw(Seen::Response(status));
        }
        assert_eq!(o.take(), None);
        o.saw(Seen::BadResponse);
        assert_eq!(
            o.take(),
            Some((
                1,
                "Detected 3 consecutive errors, last one was: Invalid or late http response"
                    .to_owned()
            ))
        );
        for seen in [500, 500, 501, 500, 500, 505, 500, 500] {
            o.saw(Seen::Response(seen));
        }
        assert_eq!(o.take(), None, "501 and 505 cleared the count");
        o.saw(Seen::ConnectFailed);
        assert!(o.take().unwrap().1.ends_with("L4 unsuccessful connection"));
        assert_eq!(o.failures.load(Relaxed), 2);
    }

    // Input: with a limit of 2, six errors in a row before the check task looks, then two
    // errors around a passing health check. Output: three hits, the last one's words; the
    // passing check starts the count again, so no hit after it.
    #[test]
    fn hits_add_up_until_taken_and_a_passing_check_clears_the_count() {
        let o = observing(Observe::Layer7, 2);
        for _ in 0..6 {
            o.saw(Seen::Response(502));
        }
        let (hits, why) = o.take().unwrap();
        assert_eq!((hits, why.ends_with("Wrong http response")), (3, true));
        o.saw(Seen::Response(502));
        o.clear();
        o.saw(Seen::Response(502));
        assert_eq!(o.take(), None);
    }

    // Input: with layer4 and a limit of 2: a failed connection, one made, then two failed,
    // with 500s among them. Output: the connection made clears the count, responses are not
    // counted, and the limit is reached at the second failure in a row.
    #[test]
    fn layer4_counts_connections_only() {
        let o = observing(Observe::Layer4, 2);
        o.saw(Seen::ConnectFailed);
        o.saw(Seen::Connected);
        o.saw(Seen::ConnectFailed);
        o.saw(Seen::Response(500));
        o.saw(Seen::BadResponse);
        assert_eq!(o.take(), None);
        o.saw(Seen::ConnectFailed);
        assert!(
            o.take()
                .unwrap()
                .1
                .starts_with("Detected 2 consecutive errors")
        );
    }

    // Input: no `observe`, then a check without it after one with it. Output: nothing counts.
    #[test]
    fn without_observe_nothing_counts() {
        let o = observing(Observe::Layer7, 1);
        o.configure(Some(&Check::of_kind(CheckKind::Tcp)));
        o.saw(Seen::ConnectFailed);
        o.saw(Seen::Response(500));
        assert_eq!(o.take(), None);
        assert_eq!(o.failures.load(Relaxed), 0);
    }
}
