//! `first`: fill servers in order — the lowest-indexed server with room takes the request, so
//! the others can be powered down while idle.

use super::Candidate;

/// The open candidate with the lowest `index`, whatever the slice order; `None` if all are full.
pub(crate) fn pick(candidates: &[Candidate]) -> Option<usize> {
    candidates
        .iter()
        .filter(|c| c.open())
        .map(|c| c.index)
        .min()
}
