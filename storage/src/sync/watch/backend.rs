//! The one thing the watcher needs from inotify: add or drop the watch on a single directory.

use std::io;
use std::path::Path;

use notify::{ErrorKind, RecursiveMode};

/// Adds and drops single-directory watches.
pub(super) trait Backend: Send {
    /// Watches `dir` (absolute) itself, not what is below it.
    fn watch(&mut self, dir: &Path) -> Result<(), AddError>;
    /// Drops the watch on `dir`; a watch already gone (the kernel drops it with the directory,
    /// notify drops it on a move) is not an error.
    fn unwatch(&mut self, dir: &Path);
}

/// Why a watch could not be added.
#[derive(Debug)]
pub(super) enum AddError {
    /// `ENOSPC`: `fs.inotify.max_user_watches` reached.
    Limit,
    /// The directory vanished (or became a file) before the watch was added.
    Gone,
    /// Anything else, e.g. `EACCES`.
    Other(notify::Error),
}

impl Backend for notify::RecommendedWatcher {
    fn watch(&mut self, dir: &Path) -> Result<(), AddError> {
        notify::Watcher::watch(self, dir, RecursiveMode::NonRecursive).map_err(classify)
    }

    fn unwatch(&mut self, dir: &Path) {
        let _ = notify::Watcher::unwatch(self, dir);
    }
}

fn classify(error: notify::Error) -> AddError {
    match &error.kind {
        ErrorKind::MaxFilesWatch => AddError::Limit,
        ErrorKind::PathNotFound => AddError::Gone,
        ErrorKind::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            AddError::Gone
        }
        _ => AddError::Other(error),
    }
}

/// A backend that can add only as many watches as its shared budget allows, then fails like a
/// full `max_user_watches`: the watch limit without touching the system's.
#[cfg(test)]
pub(super) struct Budgeted {
    inner: Box<dyn Backend>,
    left: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(test)]
impl Budgeted {
    pub(super) fn new(
        inner: Box<dyn Backend>,
        left: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> Self {
        Self { inner, left }
    }
}

#[cfg(test)]
impl Backend for Budgeted {
    fn watch(&mut self, dir: &Path) -> Result<(), AddError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self
            .left
            .fetch_update(SeqCst, SeqCst, |left| left.checked_sub(1))
            .is_err()
        {
            return Err(AddError::Limit);
        }
        self.inner.watch(dir)
    }

    fn unwatch(&mut self, dir: &Path) {
        self.inner.unwatch(dir);
    }
}
