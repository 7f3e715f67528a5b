//! `leastconn`: the server with the fewest active connections relative to its weight, ties
//! shared in rotation.

use std::cmp::Ordering as Cmp;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Candidate;

/// The open candidate with the lowest `(active + 1) / weight`; among equally loaded ones the
/// `cursor`-th in rotation, so equal servers share evenly. `None` when none has room.
pub(crate) fn pick(candidates: &[Candidate], cursor: &AtomicUsize) -> Option<usize> {
    // First pass: the lowest load and how many candidates share it.
    let mut best: Option<&Candidate> = None;
    let mut ties = 0_usize;
    for c in candidates.iter().filter(|c| c.open()) {
        match best.map(|b| load_cmp(c, b)) {
            None | Some(Cmp::Less) => {
                best = Some(c);
                ties = 1;
            }
            Some(Cmp::Equal) => ties += 1,
            Some(Cmp::Greater) => {}
        }
    }
    let best = best?;
    if ties == 1 {
        return Some(best.index);
    }
    // Second pass: rotate among the tied ones (touching the shared counter only when needed).
    let nth = cursor.fetch_add(1, Ordering::Relaxed) % ties;
    candidates
        .iter()
        .filter(|c| c.open() && load_cmp(c, best) == Cmp::Equal)
        .nth(nth)
        .map(|c| c.index)
}

/// Compares `(a.active + 1) / a.weight` with `(b.active + 1) / b.weight` by cross-multiplying:
/// exact, no floats, and no division (weights of 0 never get here, and would only compare as
/// infinitely loaded). Both products are below 2^64: (2^32) * (2^32 - 1).
pub(crate) fn load_cmp(a: &Candidate, b: &Candidate) -> Cmp {
    let lhs = (u64::from(a.active) + 1) * u64::from(b.weight);
    let rhs = (u64::from(b.active) + 1) * u64::from(a.weight);
    lhs.cmp(&rhs)
}
