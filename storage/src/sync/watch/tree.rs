//! The directories under the root that carry an inotify watch, kept by hand: walked at start,
//! grown as directories appear, shrunk as they go, never entering an excluded one; and the
//! subtrees the watch limit left unwatched, which are polled instead.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::backend::{AddError, Backend};
use super::batch::{Pending, covered, remove_subtree};
use super::is_temp;

/// The exclude matcher: `(relative path, is_dir) -> excluded`.
pub(super) type Exclude = Box<dyn Fn(&Path, bool) -> bool + Send + Sync>;

pub(super) struct Tree {
    root: PathBuf,
    exclude: Exclude,
    backend: Box<dyn Backend>,
    /// Watched directories (relative) and their inode, to tell a directory replaced in place.
    watched: BTreeMap<PathBuf, u64>,
    /// Subtrees left unwatched by the watch limit; none lies inside another.
    polled: BTreeSet<PathBuf>,
}

impl Tree {
    pub(super) fn new(root: PathBuf, exclude: Exclude, backend: Box<dyn Backend>) -> Self {
        Self {
            root,
            exclude,
            backend,
            watched: BTreeMap::new(),
            polled: BTreeSet::new(),
        }
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of `rel` (the root itself for `""`).
    pub(super) fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// `abs` relative to the root, if it is under it.
    pub(super) fn rel(&self, abs: &Path) -> Option<PathBuf> {
        abs.strip_prefix(&self.root).ok().map(Path::to_path_buf)
    }

    /// Whether `rel` (not the root) is left out: one of the sync's temporary files, or excluded.
    pub(super) fn is_excluded(&self, rel: &Path, is_dir: bool) -> bool {
        is_temp(rel) || (self.exclude)(rel, is_dir)
    }

    pub(super) fn watched_len(&self) -> usize {
        self.watched.len()
    }

    pub(super) fn polled_len(&self) -> usize {
        self.polled.len()
    }

    /// Whether `rel` is a directory known here (watched, or polled for the watch limit).
    pub(super) fn knows_dir(&self, rel: &Path) -> bool {
        self.watched.contains_key(rel) || self.polled.contains(rel)
    }

    /// Adds the watch on the directory `rel` alone.
    pub(super) fn add(&mut self, rel: &Path) -> Result<(), AddError> {
        let abs = self.abs(rel);
        self.backend.watch(&abs)?;
        // Stat after the watch: the watch is on whatever was there when it was added.
        let inode = fs::symlink_metadata(&abs).map_or(0, |meta| meta.ino());
        self.watched.insert(rel.to_path_buf(), inode);
        Ok(())
    }

    /// Watches `top` and every directory below it that is not excluded; each is watched first
    /// and listed second, so nothing created in between is missed. With `report`, every entry
    /// found goes into it (a directory that just appeared is news in full).
    ///
    /// Returns the subtrees the watch limit left unwatched; their contents are not reported.
    pub(super) fn watch_tree(
        &mut self,
        top: &Path,
        mut report: Option<&mut Pending>,
    ) -> Vec<PathBuf> {
        let mut stack = vec![top.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if !self.watched.contains_key(&dir) {
                match self.add(&dir) {
                    Ok(()) => {}
                    Err(AddError::Limit) => {
                        // Every further add fails the same way: what is left is unwatched.
                        stack.push(dir);
                        return stack;
                    }
                    Err(AddError::Gone) => continue,
                    Err(AddError::Other(error)) => {
                        warn!(
                            root = %self.root.display(),
                            dir = %dir.display(),
                            %error,
                            "cannot watch directory, its changes will not be seen"
                        );
                        continue;
                    }
                }
            }
            let entries = match fs::read_dir(self.abs(&dir)) {
                Ok(entries) => entries,
                Err(error) if is_gone(&error) => continue,
                Err(error) => {
                    warn!(root = %self.root.display(), dir = %dir.display(), %error, "cannot list directory");
                    continue;
                }
            };
            for entry in entries.flatten() {
                let rel = dir.join(entry.file_name());
                // `file_type` does not follow symlinks: a link to a directory is a link.
                let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
                if self.is_excluded(&rel, is_dir) {
                    continue;
                }
                if let Some(pending) = report.as_deref_mut() {
                    pending.add_path(rel.clone());
                }
                if is_dir {
                    stack.push(rel);
                }
            }
        }
        Vec::new()
    }

    /// Drops the watches on `top` and below, and stops polling there: it vanished or moved out.
    pub(super) fn forget(&mut self, top: &Path) {
        let doomed: Vec<PathBuf> = self
            .watched
            .range::<Path, _>((Bound::Included(top), Bound::Unbounded))
            .map(|(dir, _)| dir)
            .take_while(|dir| dir.starts_with(top))
            .cloned()
            .collect();
        for dir in doomed {
            self.watched.remove(&dir);
            let abs = self.abs(&dir);
            self.backend.unwatch(&abs);
        }
        remove_subtree(&mut self.polled, top);
    }

    /// Drops the watches whose directory is gone or was replaced by another (a watch follows its
    /// inode, not its path): after lost events, the bookkeeping may no longer match the disk.
    pub(super) fn prune(&mut self) {
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(dir, inode)| {
                fs::symlink_metadata(self.abs(dir))
                    .map_or(true, |meta| !meta.is_dir() || meta.ino() != **inode)
            })
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in stale {
            self.watched.remove(&dir);
            let abs = self.abs(&dir);
            self.backend.unwatch(&abs);
        }
    }

    /// Marks `subtree` as unwatched, to be polled. Returns whether it was news (not already
    /// polled, nor inside a polled subtree).
    pub(super) fn poll_subtree(&mut self, subtree: PathBuf) -> bool {
        if covered(&self.polled, &subtree) {
            return false;
        }
        remove_subtree(&mut self.polled, &subtree);
        self.polled.insert(subtree);
        true
    }

    /// Takes the polled subtrees, to rescan them and retry their watches.
    pub(super) fn take_polled(&mut self) -> BTreeSet<PathBuf> {
        std::mem::take(&mut self.polled)
    }
}

/// Whether an I/O error means the path is simply no longer there (or no longer a directory).
pub(super) fn is_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}
