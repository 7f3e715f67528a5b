//! The flap limiter: at most `max` alerts per object in any `window`, without ever losing the
//! object's last state.
//!
//! Past the limit an alert is held, not dropped; a newer alert for the same object replaces it
//! (the replaced one is "suppressed"), and the held one goes out as soon as the window lets it,
//! saying how many changes it stands for. So a server flapping for an hour costs `max` mails per
//! window, and if it ends DOWN the last mail says DOWN. Pure: the caller passes the time in and
//! sleeps until [`FlapLimiter::next_deadline`].

use std::collections::{HashMap, VecDeque};

use tokio::time::{Duration, Instant};

/// Per-object rate limiting of alerts of type `T`.
#[derive(Debug)]
pub(super) struct FlapLimiter<T> {
    max: usize,
    window: Duration,
    slots: HashMap<String, Slot<T>>,
}

/// An alert let through, with the number of older alerts for its object it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Released<T> {
    pub(super) item: T,
    pub(super) suppressed: u32,
}

/// What [`FlapLimiter::offer`] did with an alert.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Offered<T> {
    /// The alert, if it may go out now.
    pub(super) released: Option<Released<T>>,
    /// True when an older held alert was replaced, and so will never be sent.
    pub(super) replaced: bool,
}

#[derive(Debug)]
struct Slot<T> {
    /// When the alerts still inside the window went out, oldest first; at most `max`.
    sent: VecDeque<Instant>,
    held: Option<T>,
    /// Alerts replaced since the last one released.
    folded: u32,
}

impl<T> FlapLimiter<T> {
    /// `max` alerts per object per `window`; `max` is at least 1 (the config refuses 0).
    pub(super) fn new(max: u32, window: Duration) -> Self {
        Self {
            max: usize::try_from(max.max(1)).unwrap_or(usize::MAX),
            window,
            slots: HashMap::new(),
        }
    }

    /// An alert for `key` at `now`: released at once if the object is under its limit, else
    /// held in place of any older held one.
    pub(super) fn offer(&mut self, now: Instant, key: String, item: T) -> Offered<T> {
        let (max, window) = (self.max, self.window);
        let slot = self.slots.entry(key).or_insert_with(|| Slot {
            sent: VecDeque::new(),
            held: None,
            folded: 0,
        });
        slot.prune(now, window);
        // A held alert is older than this one, so this one replaces it even when the window has
        // room again: sending both would spend the room on a state that is already stale.
        let replaced = slot.held.take().is_some();
        if replaced {
            slot.folded = slot.folded.saturating_add(1);
        }
        let released = if slot.sent.len() < max {
            Some(slot.release(now, item))
        } else {
            slot.held = Some(item);
            None
        };
        Offered { released, replaced }
    }

    /// The held alerts whose window has room again at `now`.
    pub(super) fn due(&mut self, now: Instant) -> Vec<Released<T>> {
        let (max, window) = (self.max, self.window);
        let mut out = Vec::new();
        self.slots.retain(|_, slot| {
            slot.prune(now, window);
            if slot.sent.len() < max
                && let Some(item) = slot.held.take()
            {
                out.push(slot.release(now, item));
            }
            // An object with nothing held and nothing in its window is just like a new one.
            slot.held.is_some() || !slot.sent.is_empty()
        });
        out
    }

    /// When [`Self::due`] will next release something, if anything is held.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| s.held.is_some())
            .filter_map(|s| s.sent.front())
            .map(|t| *t + self.window)
            .min()
    }

    /// Every held alert, limit or not: on shutdown the last states matter more than the limit.
    pub(super) fn drain(&mut self) -> Vec<Released<T>> {
        self.slots
            .drain()
            .filter_map(|(_, mut slot)| {
                let folded = slot.folded;
                slot.held.take().map(|item| Released {
                    item,
                    suppressed: folded,
                })
            })
            .collect()
    }
}

impl<T> Slot<T> {
    fn prune(&mut self, now: Instant, window: Duration) {
        while self.sent.front().is_some_and(|t| *t + window <= now) {
            self.sent.pop_front();
        }
    }

    fn release(&mut self, now: Instant, item: T) -> Released<T> {
        self.sent.push_back(now);
        Released {
            item,
            suppressed: std::mem::take(&mut self.folded),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const W: Duration = Duration::from_secs(60);

    #[test]
    fn under_the_limit_everything_goes_at_once() {
        let t0 = Instant::now();
        let mut l = FlapLimiter::new(2, W);
        let a = l.offer(t0, "k".into(), "DOWN");
        assert_eq!(
            a.released,
            Some(Released {
                item: "DOWN",
                suppressed: 0
            })
        );
        assert!(!a.replaced);
        assert!(l.offer(t0, "other".into(), "DOWN").released.is_some());
        assert!(l.offer(t0 + W / 2, "k".into(), "UP").released.is_some());
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn a_flap_ends_with_its_last_state_at_the_window_end() {
        // Input: DOWN UP DOWN UP DOWN within 10s, max 2 per minute.
        // Output: DOWN and UP at once; DOWN at t0+60s saying 2 changes were suppressed.
        let t0 = Instant::now();
        let mut l = FlapLimiter::new(2, W);
        let states = ["DOWN", "UP", "DOWN", "UP", "DOWN"];
        let mut sent = Vec::new();
        let mut replaced = 0;
        for (i, s) in states.into_iter().enumerate() {
            let o = l.offer(t0 + Duration::from_secs(2 * i as u64), "k".into(), s);
            replaced += u32::from(o.replaced);
            sent.extend(o.released);
        }
        assert_eq!(sent.len(), 2);
        assert_eq!(replaced, 2);
        assert_eq!(l.next_deadline(), Some(t0 + W));
        assert!(l.due(t0 + W - Duration::from_millis(1)).is_empty());
        let last = l.due(t0 + W);
        assert_eq!(
            last,
            vec![Released {
                item: "DOWN",
                suppressed: 2
            }]
        );
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn drain_releases_what_is_held() {
        let t0 = Instant::now();
        let mut l = FlapLimiter::new(1, W);
        l.offer(t0, "k".into(), "MASTER");
        assert!(l.offer(t0, "k".into(), "STOP").released.is_none());
        assert_eq!(
            l.drain(),
            vec![Released {
                item: "STOP",
                suppressed: 0
            }]
        );
    }

    proptest! {
        // Input: random alerts on 3 objects at random times; the caller releases at each
        // deadline as the dispatcher does.
        // Output: no object gets more than `max` alerts in any window, each object's last
        // delivered alert is its last offered one, and every alert is delivered or counted as
        // suppressed.
        #[test]
        fn at_most_max_per_window_and_the_last_state_wins(
            max in 1u32..4,
            steps in proptest::collection::vec((0u64..30_000, 0u8..3), 1..60),
        ) {
            let t0 = Instant::now();
            let mut l = FlapLimiter::new(max, W);
            let mut now = t0;
            let mut delivered: BTreeMap<u8, Vec<(Instant, usize)>> = BTreeMap::new();
            let mut last_offered = BTreeMap::new();
            let (mut suppressed, mut folded) = (0u32, 0u32);
            let mut deliver = |at: Instant, key: u8, r: Released<usize>, delivered: &mut BTreeMap<u8, Vec<(Instant, usize)>>| {
                folded += r.suppressed;
                delivered.entry(key).or_default().push((at, r.item));
            };
            for (seq, (dt, key)) in steps.iter().enumerate() {
                let next = now + Duration::from_millis(*dt);
                while let Some(d) = l.next_deadline().filter(|d| *d <= next) {
                    for r in l.due(d) {
                        let k = key_of(&r.item, &steps);
                        deliver(d, k, r, &mut delivered);
                    }
                }
                now = next;
                last_offered.insert(*key, seq);
                let o = l.offer(now, format!("k{key}"), seq);
                suppressed += u32::from(o.replaced);
                if let Some(r) = o.released {
                    deliver(now, *key, r, &mut delivered);
                }
            }
            while let Some(d) = l.next_deadline() {
                for r in l.due(d) {
                    let k = key_of(&r.item, &steps);
                    deliver(d, k, r, &mut delivered);
                }
            }
            let total: usize = delivered.values().map(Vec::len).sum();
            prop_assert_eq!(total + suppressed as usize, steps.len());
            prop_assert_eq!(folded, suppressed);
            for (key, list) in &delivered {
                prop_assert_eq!(Some(&list.last().unwrap().1), last_offered.get(key));
                for (i, (start, _)) in list.iter().enumerate() {
                    let in_window = list[i..].iter().take_while(|(t, _)| *t < *start + W).count();
                    prop_assert!(in_window <= max as usize, "{} alerts in a window", in_window);
                }
            }
        }
    }

    /// The key of the alert offered at step `seq`.
    fn key_of(seq: &usize, steps: &[(u64, u8)]) -> u8 {
        steps[*seq].1
    }
}
