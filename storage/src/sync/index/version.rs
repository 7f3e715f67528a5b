//! Version vectors: per path, a counter per node that grows with each change the node makes to
//! it, so that two versions can be ordered (one saw the other) or found concurrent (a
//! conflict) without trusting clocks. (A counter jumps to the clock's seconds when those are
//! larger, see [`VersionVector::bump`], but only the counters are compared.)

use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

/// The most nodes one version vector may hold: what a peer may send, and what this node
/// records. A cluster has a handful; the bound keeps a peer from growing a vector (by merges
/// with made-up node names) past what the wire format and the saved index can carry.
pub const MAX_VERSION_NODES: usize = 1024;

/// Node name -> how many versions of the path that node made. A missing node counts 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionVector(BTreeMap<String, u64>);

/// How one version vector relates to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Causality {
    /// The same history.
    Equal,
    /// This version has seen everything the other has, and more: it replaces the other.
    Dominates,
    /// The other version has seen everything this one has, and more.
    DominatedBy,
    /// Each has changes the other has not seen: a conflict.
    Concurrent,
}

impl VersionVector {
    /// The empty vector: a path no node has changed (everything dominates it).
    pub fn new() -> Self {
        Self::default()
    }

    /// `node`'s counter (0 if it never changed the path).
    pub fn get(&self, node: &str) -> u64 {
        self.0.get(node).copied().unwrap_or(0)
    }

    /// Records a change made by `node`: its counter becomes one more than it was, or the Unix
    /// time in seconds if that is more (Syncthing's rule). The clock makes a path whose history
    /// this node forgot (its deletion record collected, see [`super::Index::forget_deletions_before`])
    /// and then made again start above every counter the node gave the path before: a peer
    /// that still holds the old deletion finds the new version concurrent with it, not older,
    /// and a modification beats a deletion. Saturates at `u64::MAX`; a peer sending that gains
    /// nothing but a stuck path.
    pub fn bump(&mut self, node: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.bump_from(node, now);
    }

    /// [`VersionVector::bump`] with the clock (Unix seconds) read by the caller.
    pub fn bump_from(&mut self, node: &str, now: u64) {
        let counter = self.0.entry(node.to_owned()).or_insert(0);
        *counter = counter.saturating_add(1).max(now);
    }

    /// Sets `node`'s counter (decoding, tests).
    pub fn set(&mut self, node: &str, counter: u64) {
        if counter == 0 {
            self.0.remove(node);
        } else {
            self.0.insert(node.to_owned(), counter);
        }
    }

    /// The least vector that dominates or equals both: what a node has seen after taking in
    /// both versions.
    pub fn merge(&self, other: &Self) -> Self {
        let mut merged = self.clone();
        for (node, &counter) in &other.0 {
            let slot = merged.0.entry(node.clone()).or_insert(0);
            *slot = (*slot).max(counter);
        }
        merged
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &Self) -> Causality {
        let mut greater = false;
        let mut less = false;
        for node in self.0.keys().chain(other.0.keys()) {
            let (a, b) = (self.get(node), other.get(node));
            greater |= a > b;
            less |= a < b;
        }
        match (greater, less) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Dominates,
            (false, true) => Causality::DominatedBy,
            (true, true) => Causality::Concurrent,
        }
    }

    /// (node, counter) in node order, counters above 0.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0
            .iter()
            .map(|(node, &counter)| (node.as_str(), counter))
    }

    /// How many nodes have a counter.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `node` can still change the path within [`MAX_VERSION_NODES`]: the vector is
    /// within the bound, with a counter for `node` or room for one.
    pub fn has_room_for(&self, node: &str) -> bool {
        self.0.len() < MAX_VERSION_NODES
            || self.0.len() == MAX_VERSION_NODES && self.0.contains_key(node)
    }

    /// Whether no node changed the path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> FromIterator<(&'a str, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (&'a str, u64)>>(iter: I) -> Self {
        let mut vector = Self::new();
        for (node, counter) in iter {
            vector.set(node, counter);
        }
        vector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(pairs: &[(&str, u64)]) -> VersionVector {
        pairs.iter().copied().collect()
    }

    /// A vector as (node, counter) pairs.
    type Pairs = &'static [(&'static str, u64)];

    #[test]
    fn the_rules() {
        use Causality::*;
        // (a, b, a.compare(b))
        let table: &[(Pairs, Pairs, Causality)] = &[
            (&[], &[], Equal),
            (&[("a", 1)], &[("a", 1)], Equal),
            (&[("a", 1), ("b", 0)], &[("a", 1)], Equal),
            (&[("a", 1)], &[], Dominates),
            (&[], &[("a", 1)], DominatedBy),
            (&[("a", 2)], &[("a", 1)], Dominates),
            (&[("a", 2), ("b", 1)], &[("a", 1), ("b", 1)], Dominates),
            (&[("a", 1), ("b", 1)], &[("a", 1)], Dominates),
            (&[("a", 1)], &[("a", 1), ("b", 1)], DominatedBy),
            (&[("a", 2)], &[("a", 1), ("b", 1)], Concurrent),
            (&[("a", 1)], &[("b", 1)], Concurrent),
            (
                &[("a", 3), ("b", 1), ("c", 2)],
                &[("a", 3), ("b", 2), ("c", 1)],
                Concurrent,
            ),
        ];
        for (a, b, expected) in table {
            assert_eq!(vv(a).compare(&vv(b)), *expected, "{a:?} vs {b:?}");
            let mirrored = match expected {
                Dominates => DominatedBy,
                DominatedBy => Dominates,
                other => *other,
            };
            assert_eq!(vv(b).compare(&vv(a)), mirrored, "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn merge_dominates_or_equals_both_and_a_bump_dominates_the_merge() {
        let a = vv(&[("a", 2), ("b", 1)]);
        let b = vv(&[("a", 1), ("b", 3), ("c", 1)]);
        let merged = a.merge(&b);
        assert_eq!(merged, vv(&[("a", 2), ("b", 3), ("c", 1)]));
        assert_eq!(merged.compare(&a), Causality::Dominates);
        assert_eq!(merged.compare(&b), Causality::Dominates);
        let mut bumped = merged.clone();
        bumped.bump_from("a", 0);
        assert_eq!(bumped.get("a"), 3);
        assert_eq!(bumped.compare(&merged), Causality::Dominates);
    }

    // Input: counters bumped with the clock behind them, then ahead of them. Output: one more
    // while the counter is ahead; the clock's seconds once they are more; never less than
    // one more, whatever the clock says.
    #[test]
    fn a_bump_jumps_to_the_clock_when_it_is_ahead() {
        let mut v = vv(&[("a", 5)]);
        v.bump_from("a", 3);
        assert_eq!(v.get("a"), 6);
        v.bump_from("a", 1_700_000_000);
        assert_eq!(v.get("a"), 1_700_000_000);
        v.bump_from("a", 1_700_000_000);
        assert_eq!(v.get("a"), 1_700_000_001);
        let mut fresh = VersionVector::new();
        fresh.bump("b");
        assert!(fresh.get("b") > 1_700_000_000, "{fresh:?}");
    }

    #[test]
    fn a_bump_saturates() {
        let mut v = vv(&[("a", u64::MAX)]);
        v.bump_from("a", 7);
        assert_eq!(v.get("a"), u64::MAX);
    }
}
