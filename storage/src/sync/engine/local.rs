//! This node's own changes: the watcher's batches scanned into the index (each change a new
//! sequence), the index saved when it changed, which publishes the changes to the senders, and
//! old deletions forgotten.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::time::Instant;
use tracing::{info, warn};

use super::{Shared, status::Counters};
use crate::sync::{
    index::{CLOCK_MARGIN_SECS, Index, Rehash, unix_ns},
    watch::Watcher,
};

/// Scans each batch's paths (and rescans) into the index until the set stops.
pub(super) async fn watch(shared: Arc<Shared>, mut watcher: Watcher) {
    loop {
        let batch = tokio::select! {
            () = shared.cancel.cancelled() => return,
            batch = watcher.next_batch() => batch,
        };
        let Some(batch) = batch else {
            warn!(set = %shared.config.name, "sync: the watcher stopped");
            return;
        };
        let stats = watcher.stats();
        let counters = &shared.counters;
        counters
            .overflows
            .store(stats.overflows, std::sync::atomic::Ordering::Relaxed);
        counters
            .rescans
            .store(stats.rescans, std::sync::atomic::Ordering::Relaxed);
        let scanner = Arc::clone(&shared);
        let scanned = tokio::task::spawn_blocking(move || {
            let mut index = scanner.index();
            let (root, exclude) = (&scanner.root, &scanner.config.exclude);
            let subtrees = batch.rescan.iter().chain(batch.paths.iter());
            for rel in subtrees {
                let Some(rel) = rel_str(rel) else { continue };
                if let Err(error) = index.scan_under(root, exclude, &rel, Rehash::IfChanged) {
                    Counters::add(&scanner.counters.errors, 1);
                    warn!(set = %scanner.config.name, path = %rel, %error, "sync: scan failed");
                }
            }
        })
        .await;
        if scanned.is_err() {
            shared.error();
        }
        shared.notify_changed();
    }
}

/// How often deletions past `delete_retention` are forgotten: the retention is at least an
/// hour, and a pass looks at every entry.
pub(super) const FORGET_INTERVAL: Duration = Duration::from_secs(3600);

/// Forgets the deletions older than `delete_retention` every `interval` (the start-up scan
/// forgot them once already), until the set stops.
pub(super) async fn forget(shared: Arc<Shared>, interval: Duration) {
    if shared.config.delete_retention.is_none() {
        return;
    }
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let forgetter = Arc::clone(&shared);
        let forgot = tokio::task::spawn_blocking(move || {
            let mut index = forgetter.index();
            forget_old_deletions(&forgetter, &mut index)
        })
        .await;
        if forgot.is_ok_and(|n| n > 0) {
            shared.unsaved.notify_one();
        }
    }
}

/// Forgets the index's deletions older than `delete_retention` (none without one), logs how
/// many, and returns it.
pub(super) fn forget_old_deletions(shared: &Shared, index: &mut Index) -> usize {
    let Some(retention) = shared.config.delete_retention else {
        return 0;
    };
    let now = SystemTime::now();
    let before = now.checked_sub(retention).map_or(0, unix_ns);
    // The margin is an hour in use (the least retention); tests' shorter retentions shrink it.
    let margin = retention.as_secs().min(CLOCK_MARGIN_SECS);
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let forgotten = index.forget_deletions_before(before, now_secs.saturating_sub(margin));
    if forgotten > 0 {
        info!(set = %shared.config.name, forgotten, retention = %fulcrum_common::Duration(retention),
            "sync: forgot deletions older than delete_retention");
    }
    forgotten
}

/// A batch path as the index's `/`-separated string; `None` if it is not UTF-8 (the scan
/// skips those names too).
fn rel_str(rel: &Path) -> Option<String> {
    let s = rel.to_str()?;
    Some(s.trim_end_matches('/').to_owned())
}

/// How much longer than `interval` a save waits when only peer marks changed (see
/// [`crate::sync::index::Index::only_marks_dirty`]): a sender's index being acknowledged
/// batch by batch would otherwise be saved whole ten times a second for nothing but its marks.
const MARKS_ONLY_FACTOR: u32 = 10;

/// A burst's saves are at least this many times as far apart as a save takes.
const SAVE_SHARE: u32 = 5;

/// Saves the index when it changed, until the set stops (`stop` saves last), and publishes
/// what was saved to the senders (see [`Index::published`]): a change is sent only once it
/// is on disk. A lone change is saved at once; a burst, at most once per `interval / 10` or
/// [`SAVE_SHARE`] times as long as the last save took, whichever is longer (so that saving a
/// large index during a start-up full sync takes a small share of a core); peer marks alone,
/// every `interval` times [`MARKS_ONLY_FACTOR`]. A failed save is retried every `interval`.
pub(super) async fn save(shared: Arc<Shared>, interval: Duration) {
    let mut gap = interval / 10;
    let mut saved = Instant::now();
    let mut started = Instant::now() - gap;
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = shared.unsaved.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = tokio::time::sleep_until(started + gap) => {}
        }
        started = Instant::now();
        let marks_may_wait = saved.elapsed() < interval * MARKS_ONLY_FACTOR;
        let saver = Arc::clone(&shared);
        let result = tokio::task::spawn_blocking(move || {
            // Encoded under the lock, written without it: the receivers and the watcher go on
            // while the file is written and fsynced.
            let (snapshot, sequence) = {
                let mut index = saver.index();
                if marks_may_wait && index.only_marks_dirty() {
                    return Ok(false);
                }
                (index.take_snapshot(), index.sequence())
            };
            let Some(snapshot) = snapshot else {
                return Ok(false);
            };
            let written = saver
                .sync_touched()
                .and_then(|()| Index::write_snapshot(&saver.index_dir, &snapshot));
            let mut index = saver.index();
            match written {
                Ok(()) => index.publish(sequence),
                Err(_) => index.mark_dirty(),
            }
            written.map(|()| true)
        })
        .await;
        match result {
            Ok(Ok(true)) => {
                saved = Instant::now();
                gap = (interval / 10).max(saved.duration_since(started) * SAVE_SHARE);
                shared.notify_published();
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                shared.error();
                warn!(set = %shared.config.name, %error, "sync: cannot save the index");
            }
            Err(_) => shared.error(),
        }
    }
}
