//! The directories the receiver changed, fsynced before the index that records the change is
//! saved. A received file's content is synced before its rename (see [`super::fetch`]), but
//! the rename itself, like a deletion or a new directory, is written in its directory, which
//! the kernel may write back long after. An index saved ahead of that would, after a power
//! loss, take what the disk still shows for a change of this node's, with a newer version than
//! the peer's: the older file would be sent back over the peer's, a deleted one would come
//! back, and a directory lost with its files would be sent as deleted.
//!
//! Only these directories are synced, not the filesystem (`syncfs` flushes every program's
//! dirty data, which on a busy disk takes seconds, and every save, so every change sent,
//! would wait for it).

use std::{
    collections::BTreeSet,
    io,
    path::Path,
    sync::{Mutex, PoisonError},
};

/// Directories (relative to the root, `""` for the root itself) changed since they were last
/// synced.
#[derive(Debug, Default)]
pub(super) struct TouchedDirs(Mutex<BTreeSet<String>>);

impl TouchedDirs {
    /// Notes a change at `rel`: its directory and each one above it, since a change may have
    /// made the directories on its way (each one an entry of its parent). Before the index
    /// records the change, so that a save whose snapshot holds it finds its directories here.
    pub(super) fn note(&self, rel: &str) {
        let mut dirs = self.lock();
        let mut rest = rel;
        while let Some((parent, _)) = rest.rsplit_once('/') {
            dirs.insert(parent.to_owned());
            rest = parent;
        }
        dirs.insert(String::new());
    }

    /// Fsyncs the noted directories under `root` and forgets them. Called after the snapshot
    /// of the index to be saved was taken, and before it is written: every change the snapshot
    /// records was noted before it. A directory gone since (removed, or made a file or a
    /// symlink) is skipped: its removal noted its parent. On failure, what was not synced stays
    /// noted for the next save.
    pub(super) fn sync(&self, root: &Path) -> io::Result<()> {
        let dirs = std::mem::take(&mut *self.lock());
        let mut left = dirs.iter();
        for dir in left.by_ref() {
            if let Err(error) = sync_dir(&root.join(dir)) {
                let mut noted = self.lock();
                noted.insert(dir.clone());
                noted.extend(left.cloned());
                return Err(error);
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn noted(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `fsync(2)` of the directory `path`, not followed if it is a symlink; `Ok` if it is gone.
fn sync_dir(path: &Path) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(dir) => Ok(rustix::fs::fsync(&dir)?),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    // Input: changes at `a/b/f`, `a/g` and `top`. Output: `a/b`, `a` and the root are noted,
    // each once.
    #[test]
    fn a_change_notes_its_directory_and_those_above() {
        let touched = TouchedDirs::default();
        touched.note("a/b/f");
        touched.note("a/g");
        touched.note("top");
        assert_eq!(touched.noted(), ["", "a", "a/b"]);
    }

    // Input: noted directories, one of them removed since. Output: the sync succeeds and
    // forgets them all.
    #[test]
    fn a_sync_forgets_what_it_synced_and_skips_what_is_gone() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("a")).unwrap();
        let touched = TouchedDirs::default();
        touched.note("a/f");
        touched.note("gone/f");
        touched.sync(root.path()).unwrap();
        assert!(touched.noted().is_empty());
    }
}
