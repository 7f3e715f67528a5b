//! The round-robin family: `rr` (ip_vs_rr.c) and `wrr` (ip_vs_wrr.c). Both keep a cursor on the
//! last server picked and scan the list from just after it.

use std::net::SocketAddr;

use super::Dest;

/// `rr`: the next server after the last pick that has weight > 0 and is not overloaded.
#[derive(Debug, Default)]
pub(super) struct Rr {
    /// The last pick; `None` is the kernel's list head (nothing picked yet).
    cursor: Option<usize>,
}

impl Rr {
    /// Carries the cursor to the same server's new position. When that server is gone, the kernel
    /// (`ip_vs_rr_del_dest`) steps back to the one before it, so the scan resumes with the server
    /// that followed the removed one; the head if there is none before it.
    pub(super) fn update(&mut self, old: &[SocketAddr], new: &[SocketAddr]) {
        let Some(last) = self.cursor else {
            return;
        };
        self.cursor = old
            .get(..=last)
            .unwrap_or_default()
            .iter()
            .rev()
            .find_map(|addr| new.iter().position(|a| a == addr));
    }

    /// One pass around the list starting after the cursor, the cursor's own server last; the
    /// cursor only moves on a hit, as in `ip_vs_rr_schedule`.
    pub(super) fn schedule(&mut self, dests: &[Dest]) -> Option<usize> {
        let n = dests.len();
        let start = match self.cursor {
            Some(last) if last < n => last + 1,
            _ => 0,
        };
        let pick = (start..n)
            .chain(0..start)
            .find(|&i| dests.get(i).is_some_and(|d| !d.overloaded && d.weight > 0))?;
        self.cursor = Some(pick);
        Some(pick)
    }
}

/// `wrr`: the kernel's `ip_vs_wrr_mark`. Each pass over the list picks the servers whose weight is
/// at least `cw`; after a pass `cw` drops by `di` (the weights' gcd) and wraps back to `mw`.
#[derive(Debug)]
pub(super) struct Wrr {
    /// The last pick (`mark->cl`); `None` is the list head.
    cl: Option<usize>,
    /// Current weight.
    cw: i64,
    /// Maximum weight minus `di - 1`, so that the last pass is at `cw == 1` and still catches a
    /// server whose weight fell below `di` (the kernel's comment on `ip_vs_wrr_mark`).
    mw: i64,
    /// Decreasing interval: the gcd of the positive weights, or 1.
    di: i64,
}

impl Default for Wrr {
    fn default() -> Self {
        Self {
            cl: None,
            cw: 0,
            mw: 0,
            di: 1,
        }
    }
}

impl Wrr {
    /// `ip_vs_wrr_dest_changed`: back to the head, new `di` and `mw`, and `cw` kept where it was
    /// when it still fits (rounded onto the new step, `+ 1` for the shifted last pass).
    pub(super) fn update(&mut self, dests: &[Dest]) {
        self.cl = None;
        self.di = dests
            .iter()
            .map(|d| i64::from(d.weight))
            .filter(|&w| w > 0)
            .reduce(gcd)
            .unwrap_or(1);
        let max = dests.iter().map(|d| i64::from(d.weight)).max().unwrap_or(0);
        self.mw = max - (self.di - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    /// `ip_vs_wrr_schedule`, including where it leaves the cursor and `cw` when every server is
    /// overloaded. Passes that provably pick nothing are skipped in one step (see
    /// [`Wrr::fast_forward`]), so a schedule costs a few list scans whatever the weights.
    pub(super) fn schedule(&mut self, dests: &[Dest]) -> Option<usize> {
        if self.mw <= 0 {
            // No server has a positive weight: "no destination available", cursor untouched.
            return None;
        }
        let n = dests.len();
        let last = self.cl.filter(|&i| i < n);
        // The heaviest server a pass could pick; passes with `cw` above it find nothing.
        let heaviest = dests
            .iter()
            .filter(|d| !d.overloaded)
            .map(|d| i64::from(d.weight))
            .max()
            .unwrap_or(0);
        let mut from = last.map_or(0, |i| i + 1);
        let mut stop = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            for i in from..n {
                let Some(d) = dests.get(i) else { break };
                if !d.overloaded && i64::from(d.weight) >= self.cw {
                    self.cl = Some(i);
                    return Some(i);
                }
                if stop == Some(i) {
                    // Every server was tried down to weight 1: all overloaded.
                    self.cl = Some(i);
                    return None;
                }
            }
            from = 0;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                // A second wrap, or a first one that started from the head, has tried everything.
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                // The first pass only covered the servers after `last`; finish with those up to it.
                stop = last;
            }
            if stop.is_none() {
                self.fast_forward(heaviest);
            }
        }
    }

    /// Before a full pass from the head: while `cw` is above both the heaviest pickable weight
    /// and `2 * di`, the pass picks nothing and only lowers `cw` by `di` (it neither wraps nor
    /// reaches the last pass, so no flag changes). Lowers `cw` past all such passes at once; the
    /// kernel walks them one by one, which with weights like (2^31 - 1, 1) and the heavy server
    /// overloaded is two billion scans.
    fn fast_forward(&mut self, heaviest: i64) {
        let floor = heaviest.max(2 * self.di);
        if self.cw > floor {
            let passes = (self.cw - floor - 1) / self.di + 1;
            self.cw -= passes * self.di;
        }
    }
}

/// Euclid's gcd, for positive weights.
fn gcd(a: i64, b: i64) -> i64 {
    let (mut a, mut b) = (a, b);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
