//! Session rates (`rate`, `rate_max`): the modules only count sessions (`stot`), so while the
//! admin server runs it samples every row's `stot` once a second and derives the rate from the
//! difference, and the highest rate seen. The traffic path pays nothing for it; the rates start
//! when the admin server does.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use fulcrum_common::stats::Snapshot;
use tokio::{
    sync::watch,
    time::{Instant, MissedTickBehavior},
};

use crate::Appliance;

/// The last sample of each row, by proxy then row name (nested so a lookup needs no key to be
/// built).
#[derive(Debug, Default)]
pub(super) struct Rates {
    rows: HashMap<String, HashMap<String, Seen>>,
}

#[derive(Debug)]
struct Seen {
    stot: u64,
    at: Instant,
    rate: u64,
    max: u64,
}

impl Rates {
    /// Takes a sample at `now`. Rows that are gone are forgotten, so a removed server's maximum
    /// does not come back with a new server of the same name.
    pub(super) fn record(&mut self, snapshot: &Snapshot, now: Instant) {
        let mut next: HashMap<String, HashMap<String, Seen>> = HashMap::new();
        for row in snapshot.proxies.iter().flat_map(|p| &p.rows) {
            // The row's previous sample gives back its key, so a known row needs no new one.
            let previous = self
                .rows
                .get_mut(&row.pxname)
                .and_then(|rows| rows.remove_entry(&row.svname));
            let (svname, rate, max) = match previous {
                Some((svname, previous)) => {
                    let elapsed = now.saturating_duration_since(previous.at);
                    // A counter that went back (a row replaced) is a new start, not a negative rate.
                    let rate = per_second(row.stot.saturating_sub(previous.stot), elapsed)
                        .unwrap_or(previous.rate);
                    (svname, rate, previous.max.max(rate))
                }
                None => (row.svname.clone(), 0, 0),
            };
            let seen = Seen {
                stot: row.stot,
                at: now,
                rate,
                max,
            };
            // The proxy name is copied once per proxy, not per row.
            if let Some(rows) = next.get_mut(&row.pxname) {
                rows.insert(svname, seen);
            } else {
                next.insert(row.pxname.clone(), HashMap::from([(svname, seen)]));
            }
        }
        self.rows = next;
    }

    /// Writes the sampled rates into `snapshot`'s rows (keeping any higher value a module set).
    pub(super) fn fill(&self, snapshot: &mut Snapshot) {
        for row in snapshot.proxies.iter_mut().flat_map(|p| &mut p.rows) {
            if let Some(seen) = self
                .rows
                .get(&row.pxname)
                .and_then(|rows| rows.get(&row.svname))
            {
                row.rate = row.rate.max(seen.rate);
                row.rate_max = row.rate_max.max(seen.max).max(row.rate);
            }
        }
    }
}

/// `delta` per second over `elapsed`, rounded; `None` for a too short interval to tell.
fn per_second(delta: u64, elapsed: Duration) -> Option<u64> {
    let millis = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    if millis < 100 {
        return None;
    }
    Some(delta.saturating_mul(1000).saturating_add(millis / 2) / millis)
}

/// Samples `appliance` once a second until the server stops.
pub(super) async fn sample(
    appliance: Arc<dyn Appliance>,
    rates: Arc<Mutex<Rates>>,
    stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stopped = crate::accept::stopped(stop);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = tick.tick() => {}
        }
        let snapshot = appliance.snapshot();
        rates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(&snapshot, Instant::now());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use fulcrum_common::stats::{ProxyKind, ProxyStats, Row, RowKind};

    use super::*;

    fn snapshot(stot: &[(&str, u64)]) -> Snapshot {
        let rows = stot
            .iter()
            .map(|(name, stot)| {
                let mut row = Row::new("web", name, RowKind::Server);
                row.stot = *stot;
                row
            })
            .collect();
        Snapshot {
            proxies: vec![ProxyStats {
                name: "web".into(),
                kind: ProxyKind::Backend,
                mode: "http".into(),
                rows,
            }],
            ..Snapshot::default()
        }
    }

    fn rates_of(rates: &Rates, mut snap: Snapshot) -> Vec<(u64, u64)> {
        rates.fill(&mut snap);
        snap.proxies[0]
            .rows
            .iter()
            .map(|r| (r.rate, r.rate_max))
            .collect()
    }

    #[test]
    fn rate_is_the_stot_delta_per_second_and_max_the_highest() {
        let mut rates = Rates::default();
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        rates.record(&snapshot(&[("s1", 100), ("s2", 0)]), t0);
        assert_eq!(
            rates_of(&rates, snapshot(&[("s1", 0), ("s2", 0)])),
            [(0, 0), (0, 0)]
        );
        rates.record(&snapshot(&[("s1", 150), ("s2", 3)]), t0 + second);
        assert_eq!(
            rates_of(&rates, snapshot(&[("s1", 0), ("s2", 0)])),
            [(50, 50), (3, 3)]
        );
        // Two seconds for 20 sessions: 10/s; the max stays.
        rates.record(&snapshot(&[("s1", 170), ("s2", 3)]), t0 + 3 * second);
        assert_eq!(
            rates_of(&rates, snapshot(&[("s1", 0), ("s2", 0)])),
            [(10, 50), (0, 3)]
        );
    }

    #[test]
    fn rows_that_go_away_are_forgotten() {
        let mut rates = Rates::default();
        let t0 = Instant::now();
        rates.record(&snapshot(&[("s1", 0)]), t0);
        rates.record(&snapshot(&[("s1", 10)]), t0 + Duration::from_secs(1));
        rates.record(&snapshot(&[]), t0 + Duration::from_secs(2));
        rates.record(&snapshot(&[("s1", 500)]), t0 + Duration::from_secs(3));
        assert_eq!(rates_of(&rates, snapshot(&[("s1", 0)])), [(0, 0)]);
        // A counter that went back is no negative rate.
        rates.record(&snapshot(&[("s1", 5)]), t0 + Duration::from_secs(4));
        assert_eq!(rates_of(&rates, snapshot(&[("s1", 0)])), [(0, 0)]);
    }

    #[test]
    fn per_second_rounds_and_refuses_tiny_intervals() {
        assert_eq!(per_second(3, Duration::from_millis(2000)), Some(2));
        assert_eq!(per_second(10, Duration::from_millis(999)), Some(10));
        assert_eq!(per_second(10, Duration::from_millis(10)), None);
        assert_eq!(
            per_second(u64::MAX, Duration::from_secs(1)),
            Some(u64::MAX / 1000)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_sampler_runs_each_second_until_stopped() {
        #[derive(Debug)]
        struct Counting(std::sync::atomic::AtomicU64);
        impl Appliance for Counting {
            fn snapshot(&self) -> Snapshot {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                snapshot(&[("s1", n * 7)])
            }
            fn server_action(
                &self,
                _: &fulcrum_common::action::ServerRef,
                _: fulcrum_common::action::ServerAction,
            ) -> Result<String, String> {
                Err("no".into())
            }
        }
        let rates = Arc::new(Mutex::new(Rates::default()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(sample(
            Arc::new(Counting(0.into())),
            Arc::clone(&rates),
            stopped,
        ));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(
            rates_of(&rates.lock().unwrap(), snapshot(&[("s1", 0)])),
            [(7, 7)]
        );
        stop.send_replace(true);
        task.await.unwrap();
    }
}
