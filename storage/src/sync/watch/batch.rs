//! What a batch holds and how changes accumulate into one: deduplicated paths, and subtrees to
//! rescan that swallow the paths beneath them.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// The changes seen under the root since the previous batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Paths, relative to the root, to look at again: each may exist now or not. A directory
    /// that vanished stands for everything that was below it; a directory that appeared (created
    /// or moved in) has everything in it listed too. None lies inside a `rescan` subtree.
    pub paths: BTreeSet<PathBuf>,
    /// Subtrees, relative to the root (`""` is the whole tree), whose events were lost: compare
    /// them in full against the index. Sorted; none lies inside another.
    pub rescan: Vec<PathBuf>,
}

/// A batch being gathered, with a bound on how many paths it may hold.
#[derive(Debug)]
pub(super) struct Pending {
    paths: BTreeSet<PathBuf>,
    rescan: BTreeSet<PathBuf>,
    max_paths: usize,
    /// Set when the paths overflowed `max_paths` and became a rescan of everything, until taken.
    collapsed: bool,
}

impl Pending {
    pub(super) fn new(max_paths: usize) -> Self {
        Self {
            paths: BTreeSet::new(),
            rescan: BTreeSet::new(),
            max_paths,
            collapsed: false,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.rescan.is_empty()
    }

    /// Records a changed path, unless a pending rescan already covers it.
    pub(super) fn add_path(&mut self, path: PathBuf) {
        if covered(&self.rescan, &path) {
            return;
        }
        self.paths.insert(path);
        if self.paths.len() > self.max_paths {
            self.paths.clear();
            self.rescan.clear();
            self.rescan.insert(PathBuf::new());
            self.collapsed = true;
        }
    }

    /// Records a subtree to rescan; it swallows the paths and rescans below it.
    pub(super) fn add_rescan(&mut self, subtree: PathBuf) {
        if covered(&self.rescan, &subtree) {
            return;
        }
        remove_subtree(&mut self.paths, &subtree);
        remove_subtree(&mut self.rescan, &subtree);
        self.rescan.insert(subtree);
    }

    /// Folds a later batch into this one.
    pub(super) fn merge(&mut self, later: Pending) {
        self.collapsed |= later.collapsed;
        for subtree in later.rescan {
            self.add_rescan(subtree);
        }
        for path in later.paths {
            self.add_path(path);
        }
    }

    /// Whether the paths overflowed into a rescan of everything since the last call.
    pub(super) fn take_collapsed(&mut self) -> bool {
        std::mem::take(&mut self.collapsed)
    }

    pub(super) fn into_batch(self) -> Batch {
        Batch {
            paths: self.paths,
            rescan: self.rescan.into_iter().collect(),
        }
    }
}

/// Whether `path` is `set`'s member or lies below one.
pub(super) fn covered(set: &BTreeSet<PathBuf>, path: &Path) -> bool {
    !set.is_empty() && path.ancestors().any(|ancestor| set.contains(ancestor))
}

/// Removes `top` and everything below it from `set`.
///
/// Paths order component by component, so a subtree is one contiguous run starting at `top`.
pub(super) fn remove_subtree(set: &mut BTreeSet<PathBuf>, top: &Path) {
    if top.as_os_str().is_empty() {
        set.clear();
        return;
    }
    let doomed: Vec<PathBuf> = set
        .range::<Path, _>((Bound::Included(top), Bound::Unbounded))
        .take_while(|path| path.starts_with(top))
        .cloned()
        .collect();
    for path in doomed {
        set.remove(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Path(PathBuf),
        Rescan(PathBuf),
    }

    fn rel_path() -> impl Strategy<Value = PathBuf> {
        // Few names, so paths nest and collide; "a b" sorts between "a" and "a/x" naively.
        prop::collection::vec(prop_oneof!["a", "b", "a b", "a0"], 0..4)
            .prop_map(|parts| parts.iter().collect())
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => rel_path().prop_map(Op::Path),
            1 => rel_path().prop_map(Op::Rescan),
        ]
    }

    proptest! {
        // Input: any mix of paths and rescans, some split across two merged batches.
        // Output: every input is covered (kept as a path or under a rescan), no path lies under a
        // rescan, and no rescan lies under another.
        #[test]
        fn everything_recorded_nothing_redundant(
            ops in prop::collection::vec(op(), 0..40),
            split in 0usize..40,
        ) {
            let mut first = Pending::new(usize::MAX);
            let mut second = Pending::new(usize::MAX);
            for (i, op) in ops.iter().cloned().enumerate() {
                let pending = if i < split { &mut first } else { &mut second };
                match op {
                    Op::Path(p) => pending.add_path(p),
                    Op::Rescan(p) => pending.add_rescan(p),
                }
            }
            first.merge(second);
            let batch = first.into_batch();
            let rescan: BTreeSet<PathBuf> = batch.rescan.iter().cloned().collect();
            for op in &ops {
                match op {
                    Op::Path(p) => prop_assert!(batch.paths.contains(p) || covered(&rescan, p)),
                    Op::Rescan(p) => prop_assert!(covered(&rescan, p)),
                }
            }
            for p in &batch.paths {
                prop_assert!(!covered(&rescan, p), "{p:?} under a rescan");
            }
            for r in &rescan {
                let others: BTreeSet<PathBuf> = rescan.iter().filter(|o| *o != r).cloned().collect();
                prop_assert!(!covered(&others, r), "{r:?} nested");
            }
        }
    }

    #[test]
    fn too_many_paths_collapse_into_a_full_rescan() {
        let mut pending = Pending::new(2);
        pending.add_path("a".into());
        pending.add_path("b".into());
        assert!(!pending.take_collapsed());
        pending.add_path("c".into());
        assert!(pending.take_collapsed());
        pending.add_path("d".into());
        let batch = pending.into_batch();
        assert!(batch.paths.is_empty());
        assert_eq!(batch.rescan, vec![PathBuf::new()]);
    }
}
