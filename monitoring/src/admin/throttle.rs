//! At most a few log lines a minute for refused logins: a client trying passwords in a loop
//! would otherwise write one warning per attempt, as fast as it can send them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Warnings logged per minute; the rest are counted, and the count is logged with the first
/// warning of the next minute that has one.
const PER_MINUTE: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);

/// What to do with one refused login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Log it; `unlogged` refusals of earlier minutes went unlogged.
    Log { unlogged: u32 },
    /// Count it only.
    Skip,
}

#[derive(Debug)]
pub(super) struct LogThrottle(Mutex<Window>);

#[derive(Debug)]
struct Window {
    start: Option<Instant>,
    logged: u32,
    unlogged: u32,
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self(Mutex::new(Window {
            start: None,
            logged: 0,
            unlogged: 0,
        }))
    }
}

impl LogThrottle {
    pub(super) fn admit(&self, now: Instant) -> Admit {
        let Ok(mut w) = self.0.lock() else {
            return Admit::Log { unlogged: 0 };
        };
        if w.start
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW)
        {
            w.start = Some(now);
            w.logged = 0;
        }
        if w.logged < PER_MINUTE {
            w.logged += 1;
            let unlogged = std::mem::take(&mut w.unlogged);
            Admit::Log { unlogged }
        } else {
            w.unlogged = w.unlogged.saturating_add(1);
            Admit::Skip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: 25 refusals within a minute, then one a minute later. Output: the first ten are
    // logged, the next fifteen only counted, and the one of the next minute is logged with the
    // count of fifteen.
    #[test]
    fn ten_a_minute_are_logged_and_the_rest_counted() {
        let throttle = LogThrottle::default();
        let t0 = Instant::now();
        let admitted: Vec<Admit> = (0..25)
            .map(|i| throttle.admit(t0 + Duration::from_millis(i * 100)))
            .collect();
        assert!(
            admitted[..10]
                .iter()
                .all(|a| *a == Admit::Log { unlogged: 0 })
        );
        assert!(admitted[10..].iter().all(|a| *a == Admit::Skip));
        assert_eq!(
            throttle.admit(t0 + WINDOW + Duration::from_secs(1)),
            Admit::Log { unlogged: 15 }
        );
    }
}
