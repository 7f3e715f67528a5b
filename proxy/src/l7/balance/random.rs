//! `random`: HAProxy's `random(2)` — draw two servers at random by weight and send the request to
//! the less loaded one ("power of two choices").

use super::Candidate;
use super::leastconn::load_cmp;

/// Two weighted draws among the open candidates; the one with the lower `(active + 1) / weight`
/// wins, the first draw on a tie. `draw(bound)` returns a uniform value in `0..bound` (`bound`
/// is at least 1); tests pass a seeded generator. `None` when no candidate has room.
pub(crate) fn pick(candidates: &[Candidate], mut draw: impl FnMut(u64) -> u64) -> Option<usize> {
    let total: u64 = candidates
        .iter()
        .filter(|c| c.open())
        .map(|c| u64::from(c.weight))
        .sum();
    if total == 0 {
        return None;
    }
    let first = weighted(candidates, draw(total) % total)?;
    let second = weighted(candidates, draw(total) % total)?;
    Some(if load_cmp(second, first).is_lt() {
        second.index
    } else {
        first.index
    })
}

/// The open candidate whose weight range holds `point` (in slice order).
fn weighted(candidates: &[Candidate], point: u64) -> Option<&Candidate> {
    let mut below = 0_u64;
    candidates.iter().filter(|c| c.open()).find(|c| {
        below += u64::from(c.weight);
        point < below
    })
}
