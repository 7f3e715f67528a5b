//! The client of the failover lab: a TCP connect to the VIP every interval, each with its own
//! timeout, so an attempt that hangs does not delay the next one; and the gap a client saw,
//! computed from the attempts afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

/// How one connect attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Accepted: something listened on the address where the client's packets went.
    Ok,
    /// Refused (RST): the address is there, nothing listens (a killed proxy on a node that
    /// still holds the VIP).
    Refused,
    /// No answer within the timeout: the packets went to a node without the VIP (stale ARP)
    /// or nowhere.
    Timeout,
    /// Any other error (unreachable, ...).
    Error,
}

/// One connect attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started, in microseconds since the probe started.
    pub at_us: u64,
    pub outcome: Outcome,
}

impl Attempt {
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    pub fn at(&self) -> Duration {
        Duration::from_micros(self.at_us)
    }
}

/// What `fulcrum-bench probe --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub addr: SocketAddr,
    pub interval_us: u64,
    pub timeout_us: u64,
    /// In the order they started.
    pub attempts: Vec<Attempt>,
}

/// The longest time a client could not connect: from the last success before a run of failures
/// to the first success after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The start of the last successful attempt before the failures.
    pub from: Duration,
    /// The start of the first successful attempt after them.
    pub to: Duration,
    /// The failed attempts in between.
    pub failures: usize,
}

impl Gap {
    pub fn length(&self) -> Duration {
        self.to.saturating_sub(self.from)
    }
}

/// Why a probe's attempts give no gap to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GapError {
    #[error("no connect attempt succeeded")]
    NeverConnected,
    /// The last attempts failed: the backup never answered (within the probe).
    #[error(
        "the client was still failing when the probe ended, {failed_since:?} after the last success"
    )]
    NotRecovered { failed_since: Duration },
}

/// The client-visible gap of a probe whose attempts are in start order: the longest run of
/// failures with a success on each side. `Ok(None)` when every attempt after the first success
/// succeeded; failures before the first success (nothing served yet) do not count.
pub fn client_gap(attempts: &[Attempt]) -> Result<Option<Gap>, GapError> {
    let first_ok = attempts
        .iter()
        .position(Attempt::ok)
        .ok_or(GapError::NeverConnected)?;
    let mut longest: Option<Gap> = None;
    let mut last_ok = attempts[first_ok].at();
    let mut failures = 0;
    for attempt in &attempts[first_ok + 1..] {
        if !attempt.ok() {
            failures += 1;
            continue;
        }
        if failures > 0 {
            let gap = Gap {
                from: last_ok,
                to: attempt.at(),
                failures,
            };
            if longest.is_none_or(|l| gap.length() > l.length()) {
                longest = Some(gap);
            }
        }
        last_ok = attempt.at();
        failures = 0;
    }
    if failures > 0 {
        let end = attempts.last().map_or(last_ok, Attempt::at);
        return Err(GapError::NotRecovered {
            failed_since: end.saturating_sub(last_ok),
        });
    }
    Ok(longest)
}

/// Connects to `addr` every `interval` for `duration`, each attempt given `timeout`, and returns
/// the attempts in start order.
pub async fn probe(
    addr: SocketAddr,
    interval: Duration,
    timeout: Duration,
    duration: Duration,
) -> ProbeReport {
    let start = Instant::now();
    let mut ticks = tokio::time::interval(interval);
    // A stalled probe leaves a hole in the record rather than a burst that hides it.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut running = Vec::new();
    loop {
        let tick = ticks.tick().await;
        if tick.duration_since(start) >= duration {
            break;
        }
        running.push(tokio::spawn(async move {
            let began = Instant::now();
            let outcome = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(_stream)) => Outcome::Ok,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
                Ok(Err(_)) => Outcome::Error,
                Err(_) => Outcome::Timeout,
            };
            Attempt {
                at_us: micros(began.duration_since(start)),
                outcome,
            }
        }));
    }
    let mut attempts = Vec::with_capacity(running.len());
    for task in running {
        // A task only panics if the runtime is shutting down, and then there is no report.
        if let Ok(attempt) = task.await {
            attempts.push(attempt);
        }
    }
    attempts.sort_by_key(|a| a.at_us);
    ProbeReport {
        addr,
        interval_us: micros(interval),
        timeout_us: micros(timeout),
        attempts,
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::{Attempt, Gap, GapError, Outcome, client_gap};

    /// Attempts 10 ms apart from a pattern: `+` ok, `r` refused, `t` timeout, `e` error.
    fn attempts(pattern: &str) -> Vec<Attempt> {
        pattern
            .chars()
            .zip(0u64..)
            .map(|(c, i)| Attempt {
                at_us: i * 10_000,
                outcome: match c {
                    '+' => Outcome::Ok,
                    'r' => Outcome::Refused,
                    't' => Outcome::Timeout,
                    _ => Outcome::Error,
                },
            })
            .collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_gap_runs_from_the_last_success_to_the_next() {
        // Input: successes at 0..=20 ms, failures at 30..=50 ms, successes from 60 ms.
        // Output: 20 ms to 60 ms, 3 failures.
        let gap = client_gap(&attempts("+++ttt++")).unwrap().unwrap();
        assert_eq!(
            gap,
            Gap {
                from: ms(20),
                to: ms(60),
                failures: 3
            }
        );
        assert_eq!(gap.length(), ms(40));
    }

    #[test]
    fn the_longest_run_of_failures_wins() {
        let cases = [
            // Input: pattern. Output: (from, to, failures).
            ("+r++tttt+e+", (30, 80, 4)),
            ("+tttt+r+", (0, 50, 4)),
            ("+t+tt+ttt+", (50, 90, 3)),
            // Mixed kinds of failure make one run.
            ("++rrtte+", (10, 70, 5)),
        ];
        for (pattern, (from, to, failures)) in cases {
            assert_eq!(
                client_gap(&attempts(pattern)).unwrap(),
                Some(Gap {
                    from: ms(from),
                    to: ms(to),
                    failures
                }),
                "{pattern}"
            );
        }
    }

    #[test]
    fn no_failure_after_the_first_success_is_no_gap() {
        for pattern in ["+", "++++", "ttt++++", "rt+"] {
            assert_eq!(client_gap(&attempts(pattern)), Ok(None), "{pattern}");
        }
    }

    #[test]
    fn a_probe_that_never_connects_or_never_recovers_has_no_gap() {
        assert_eq!(client_gap(&[]), Err(GapError::NeverConnected));
        assert_eq!(client_gap(&attempts("ttt")), Err(GapError::NeverConnected));
        assert_eq!(
            client_gap(&attempts("++tt+ttt")),
            Err(GapError::NotRecovered {
                failed_since: ms(30)
            })
        );
    }

    #[test]
    fn the_report_reads_back() {
        let report = super::ProbeReport {
            addr: "10.88.0.50:8080".parse().unwrap(),
            interval_us: 10_000,
            timeout_us: 50_000,
            attempts: attempts("+t+"),
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(
            json.contains(r#"{"at_us":10000,"outcome":"timeout"}"#),
            "{json}"
        );
        let read: super::ProbeReport = serde_json::from_str(&json).unwrap();
        assert_eq!(read, report);
    }

    // Real time, not paused: with the clock paused, the connect timeout could fire before the
    // kernel's refusal is read.
    #[tokio::test]
    async fn a_probe_of_a_closed_port_records_every_attempt_refused() {
        // Bound and released: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let report = super::probe(addr, ms(10), ms(50), ms(100)).await;
        // Ten ticks, fewer if a busy machine made the probe skip some.
        assert!((1..=10).contains(&report.attempts.len()), "{report:?}");
        assert!(
            report
                .attempts
                .iter()
                .all(|a| a.outcome == Outcome::Refused),
            "{:?}",
            report.attempts
        );
        assert_eq!(client_gap(&report.attempts), Err(GapError::NeverConnected));
    }
}
