//! A fault window: from the injection until the site is healthy again (both VIPs on their own
//! masters, every backend UP, the volume connected and UpToDate, the sync connected; see
//! `Seed004::health`), or until the cap. While it is open, the VIPs' holders are polled, so the
//! report can say which VIP moved where and when.

use std::time::{Duration, Instant};

use fulcrum_lab::seed004::{Seed004, VIP1, VIP2};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::faults::{self, Injected};
use super::{DIRECTOR_RESTART, FaultKind};

/// Time between two health checks once the fault is undone: each costs a dozen `fulcrum
/// status` and `curl` runs.
const HEALTH_EVERY: Duration = Duration::from_millis(500);

/// A change of a VIP's holders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipMove {
    /// `VIP1` or `VIP2`.
    pub vip: String,
    /// The L7 nodes holding it from then on (both, while a cut-off node still holds it on its
    /// side; none, between a release and a takeover).
    pub holders: Vec<String>,
    /// Seconds after the injection.
    pub after_s: f64,
}

/// An open or closed window.
#[derive(Debug)]
pub(crate) struct Window {
    pub(crate) n: usize,
    pub(crate) fault: Injected,
    pub(crate) injected: Instant,
    hold: Duration,
    cap: Duration,
    pub(crate) undone: Option<Instant>,
    /// When the site was healthy again, or the cap passed.
    pub(crate) closed: Option<Instant>,
    pub(crate) recovered: bool,
    /// The part of the health that was still missing at the cap.
    pub(crate) unhealthy: Option<String>,
    holders: [Vec<&'static str>; 2],
    pub(crate) moves: Vec<VipMove>,
    pub(crate) notes: Vec<String>,
    next_health: Instant,
}

impl Window {
    /// Injects `kind` on `node` and opens the window.
    pub(crate) fn open(
        site: &mut Seed004,
        n: usize,
        kind: FaultKind,
        node: &'static str,
        hold: Duration,
        cap: Duration,
    ) -> Self {
        let holders = [site.holders(VIP1), site.holders(VIP2)];
        let injected = Instant::now();
        info!(n, %kind, node, "fault injected");
        let fault = faults::inject(site, kind, node);
        let hold = if kind == FaultKind::Director {
            DIRECTOR_RESTART
        } else {
            hold
        };
        Self {
            n,
            fault,
            injected,
            hold,
            cap,
            undone: None,
            closed: None,
            recovered: false,
            unhealthy: None,
            holders,
            moves: Vec::new(),
            notes: Vec::new(),
            next_health: injected,
        }
    }

    /// One step: watch the VIPs, undo the fault once its hold is over, and close the window
    /// once the site is healthy (or the cap has passed). Returns whether it is closed.
    pub(crate) fn step(&mut self, site: &mut Seed004) -> bool {
        if self.closed.is_some() {
            return true;
        }
        self.watch_vips(site);
        let now = Instant::now();
        if self.undone.is_none() && now >= self.injected + self.hold {
            match faults::undo(site, &self.fault) {
                Ok(notes) => self.notes.extend(notes),
                Err(error) => {
                    warn!(n = self.n, %error, "undoing the fault failed");
                    self.notes.push(format!("undoing failed: {error}"));
                }
            }
            self.undone = Some(Instant::now());
            self.watch_vips(site);
        }
        let now = Instant::now();
        if self.undone.is_some() && now >= self.next_health {
            self.next_health = now + HEALTH_EVERY;
            match site.health() {
                Ok(()) => {
                    self.close(now, true);
                    info!(n = self.n, window_s = self.seconds(), "site healthy again");
                }
                Err(part) => self.unhealthy = Some(part.to_owned()),
            }
        }
        if self.closed.is_none() && now >= self.injected + self.cap {
            self.close(now, false);
            warn!(n = self.n, missing = ?self.unhealthy, "fault window capped: the site did not recover");
        }
        self.closed.is_some()
    }

    fn close(&mut self, at: Instant, recovered: bool) {
        self.closed = Some(at);
        self.recovered = recovered;
        if recovered {
            self.unhealthy = None;
        }
    }

    /// The window's length so far, in seconds.
    pub(crate) fn seconds(&self) -> f64 {
        let end = self.closed.unwrap_or_else(Instant::now);
        (end - self.injected).as_secs_f64()
    }

    /// The window as an interval, open ones ending now.
    pub(crate) fn span(&self) -> (Instant, Instant) {
        (self.injected, self.closed.unwrap_or_else(Instant::now))
    }

    fn watch_vips(&mut self, site: &Seed004) {
        let after_s = self.injected.elapsed().as_secs_f64();
        for (i, (vip, addr)) in [("VIP1", VIP1), ("VIP2", VIP2)].into_iter().enumerate() {
            let now = site.holders(addr);
            if now != self.holders[i] {
                self.moves.push(VipMove {
                    vip: vip.to_owned(),
                    holders: now.iter().map(|h| (*h).to_owned()).collect(),
                    after_s,
                });
                self.holders[i] = now;
            }
        }
    }
}

/// The takeover of each VIP that moved: the first time a node other than its own master
/// (VIP1's A, VIP2's B) held it, as `(vip, node, seconds after the injection)`.
pub(crate) fn takeovers(moves: &[VipMove]) -> Vec<(String, String, f64)> {
    let mut found = Vec::new();
    for (vip, home) in [("VIP1", "A"), ("VIP2", "B")] {
        if let Some((node, after)) = moves.iter().filter(|m| m.vip == vip).find_map(|m| {
            m.holders
                .iter()
                .find(|h| *h != home)
                .map(|h| (h.clone(), m.after_s))
        }) {
            found.push((vip.to_owned(), node, after));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::{VipMove, takeovers};

    fn moved(vip: &str, holders: &[&str], after_s: f64) -> VipMove {
        VipMove {
            vip: vip.to_owned(),
            holders: holders.iter().map(|h| (*h).to_owned()).collect(),
            after_s,
        }
    }

    #[test]
    fn a_takeover_is_the_first_foreign_holder() {
        let moves = [
            moved("VIP1", &[], 0.01),
            moved("VIP1", &["B"], 3.4),
            moved("VIP1", &["A"], 14.0),
            moved("VIP2", &["B"], 20.0),
        ];
        assert_eq!(
            takeovers(&moves),
            vec![("VIP1".to_owned(), "B".to_owned(), 3.4)]
        );
        // A cut-off A still holds VIP1 on its side while B takes it.
        let moves = [moved("VIP1", &["A", "B"], 3.6)];
        assert_eq!(takeovers(&moves)[0].1, "B");
    }
}
