//! When requests are sent: the run's time window (warm-up, measurement, end or request budget)
//! and each sender's pace, closed-loop or at a fixed rate.
//!
//! In rate mode, request `k` of the run is due at `start + k / rate`, and the `slots` senders (one
//! per HTTP/1.1 connection, one per HTTP/2 stream) take the due times in turn: sender `i` owns
//! requests `i`, `i + slots`, `i + 2 * slots`, ... A sender that is still waiting for an answer
//! when its next request is due sends it late, and its latency is counted from the due time, not
//! from when it was sent. That is the correction for coordinated omission (as in wrk2): a server
//! stall delays every request scheduled during it, and all of those delays are measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::options::Stop;

/// How early a sender wakes for a due request. Tokio timers have millisecond resolution and fire
/// on the tick after their deadline, so sleeping until the due time itself would send every
/// request up to a millisecond late, and that lateness would count as latency. Waking up to this
/// much early instead, latency is measured from the actual send time when that comes first.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// The run's phases, shared by every sender on every thread.
#[derive(Debug)]
pub(crate) struct Window {
    /// Origin of the rate schedule and start of the warm-up.
    start: Instant,
    /// End of the warm-up: requests due from then on are measured.
    measure_from: Instant,
    /// No request due from then on is sent (duration mode).
    end: Option<Instant>,
    /// Measured requests still to send (request-count mode).
    budget: Option<AtomicU64>,
}

impl Window {
    pub(crate) fn new(start: Instant, warmup: Duration, stop: Stop) -> Self {
        let measure_from = start + warmup;
        let (end, budget) = match stop {
            Stop::Duration(duration) => (Some(measure_from + duration), None),
            Stop::Requests(requests) => (None, Some(AtomicU64::new(requests))),
        };
        Self {
            start,
            measure_from,
            end,
            budget,
        }
    }

    pub(crate) fn measure_from(&self) -> Instant {
        self.measure_from
    }

    /// True once `at` is past the warm-up.
    pub(crate) fn is_measured(&self, at: Instant) -> bool {
        at >= self.measure_from
    }

    /// Claims a request due at `at`: false once the run is over, by time or by budget.
    fn claim(&self, at: Instant) -> bool {
        if self.end.is_some_and(|end| at >= end) {
            return false;
        }
        match &self.budget {
            Some(budget) if self.is_measured(at) => budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_ok(),
            _ => true,
        }
    }
}

/// How fast senders go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pacing {
    /// Each sender sends as soon as its previous request is answered.
    Closed,
    /// `rate` requests per second shared by `slots` senders.
    Rate { rate: f64, slots: usize },
}

/// One request's place in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// When it should be sent.
    pub(crate) due: Instant,
    /// When its sender got to it (after `due` if the sender was busy, or up to
    /// [`TIMER_SLACK`] before it).
    pub(crate) started: Instant,
    /// Due after the warm-up, so it counts.
    pub(crate) measured: bool,
}

impl Slot {
    /// What its latency is measured from: the due time, unless it was sent even earlier.
    pub(crate) fn latency_origin(&self) -> Instant {
        self.due.min(self.started)
    }
}

/// One sender's sequence of slots.
#[derive(Debug)]
pub(crate) struct Schedule {
    window: Arc<Window>,
    pace: Pace,
}

#[derive(Debug)]
enum Pace {
    Closed,
    /// Due times are `start + (first + k * every)` seconds for k = 0, 1, ...
    Rate {
        first: f64,
        every: f64,
        k: u64,
    },
}

impl Schedule {
    /// The schedule of sender `index` out of the pacing's `slots`.
    pub(crate) fn new(window: Arc<Window>, pacing: Pacing, index: usize) -> Self {
        let pace = match pacing {
            Pacing::Closed => Pace::Closed,
            Pacing::Rate { rate, slots } => Pace::Rate {
                first: index as f64 / rate,
                every: slots as f64 / rate,
                k: 0,
            },
        };
        Self { window, pace }
    }

    /// Waits for the next slot; `None` once the run is over.
    pub(crate) async fn next(&mut self) -> Option<Slot> {
        match &mut self.pace {
            Pace::Closed => {
                let now = Instant::now();
                self.window.claim(now).then(|| Slot {
                    due: now,
                    started: now,
                    measured: self.window.is_measured(now),
                })
            }
            Pace::Rate { first, every, k } => {
                let offset = Duration::from_secs_f64(*first + *k as f64 * *every);
                let due = self.window.start + offset;
                if !self.window.claim(due) {
                    return None;
                }
                *k += 1;
                let wake = due.checked_sub(TIMER_SLACK).unwrap_or(due);
                if Instant::now() < wake {
                    tokio::time::sleep_until(wake).await;
                }
                Some(Slot {
                    due,
                    started: Instant::now(),
                    measured: self.window.is_measured(due),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{Pacing, Schedule, Stop, Window};

    #[tokio::test(start_paused = true)]
    async fn rate_slots_interleave_senders_and_stop_at_the_end() {
        let start = Instant::now();
        let window = Arc::new(Window::new(
            start,
            Duration::from_millis(100),
            Stop::Duration(Duration::from_millis(300)),
        ));
        let pacing = Pacing::Rate {
            rate: 20.0,
            slots: 2,
        };
        let sender = |index| {
            let mut schedule = Schedule::new(window.clone(), pacing, index);
            async move {
                let mut due = Vec::new();
                while let Some(slot) = schedule.next().await {
                    assert!(slot.started <= slot.due);
                    assert!(slot.started + Duration::from_millis(1) >= slot.due);
                    due.push(((slot.due - start).as_millis(), slot.measured));
                }
                due
            }
        };
        let (first, second) = tokio::join!(sender(0), sender(1));
        let mut due = [first, second].concat();
        due.sort_unstable();
        let expected: Vec<_> = (0..8).map(|k| (k * 50, k >= 2)).collect();
        assert_eq!(due, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_sender_keeps_the_due_times() {
        let start = Instant::now();
        let window = Arc::new(Window::new(
            start,
            Duration::ZERO,
            Stop::Duration(Duration::from_secs(1)),
        ));
        let mut schedule = Schedule::new(
            window,
            Pacing::Rate {
                rate: 10.0,
                slots: 1,
            },
            0,
        );
        schedule.next().await.unwrap();
        // Busy for 350 ms: the next three requests are overdue and go at once.
        tokio::time::advance(Duration::from_millis(350)).await;
        for due_ms in [100, 200, 300] {
            let slot = schedule.next().await.unwrap();
            assert_eq!((slot.due - start).as_millis(), due_ms);
            assert_eq!((slot.started - start).as_millis(), 350);
            assert_eq!(slot.latency_origin(), slot.due);
        }
        let slot = schedule.next().await.unwrap();
        assert_eq!((slot.due - start).as_millis(), 400);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_counts_only_measured_requests() {
        let window = Arc::new(Window::new(
            Instant::now(),
            Duration::from_millis(10),
            Stop::Requests(3),
        ));
        let mut schedule = Schedule::new(window.clone(), Pacing::Closed, 0);
        let warm = schedule.next().await.unwrap();
        assert!(!warm.measured);
        tokio::time::advance(Duration::from_millis(10)).await;
        let mut other = Schedule::new(window, Pacing::Closed, 1);
        assert!(schedule.next().await.unwrap().measured);
        assert!(other.next().await.unwrap().measured);
        assert!(schedule.next().await.is_some());
        assert!(other.next().await.is_none());
        assert!(schedule.next().await.is_none());
    }
}
