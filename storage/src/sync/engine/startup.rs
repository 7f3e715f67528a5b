//! The start-up scan in the background: [`super::SyncSet::start`] returns once the index is
//! open, the watcher watching and the listener bound, so that a first start that hashes a
//! large tree holds up neither the rest of the appliance nor `fulcrum status sync`, which
//! shows the scan's progress. The links, the watcher's batches and the saves begin once the
//! scan is done: peers are sent an index that describes the disk.

use std::{
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime},
};

use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, error, info, warn};

use super::{Shared, link, local};
use crate::sync::{
    index::{Rehash, ScanCounts, unix_ns},
    watch::Watcher,
};

/// How often a running start-up scan logs its progress.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// How long after a failed start-up scan it is tried again.
pub(super) const SCAN_RETRY: Duration = Duration::from_secs(30);

/// A test's hold on the start-up scan: called on the scan's thread after the tree was measured
/// and before it is scanned.
#[derive(Clone)]
pub struct ScanHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for ScanHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScanHook")
    }
}

/// What the set runs once its scan is done.
pub(super) struct Startup {
    pub(super) watcher: Watcher,
    pub(super) listener: TcpListener,
    pub(super) save_interval: Duration,
    pub(super) forget_interval: Duration,
    pub(super) scan_retry: Duration,
    pub(super) before_scan: Option<ScanHook>,
}

impl Startup {
    /// Scans, then runs the set's tasks until it stops. A scan stopped by
    /// [`super::SyncSet::stop`] starts nothing. A failed one (the root gone since the start
    /// checked it, the state directory full) is logged, counted, shown in the status, and
    /// tried again every `scan_retry` ([`SCAN_RETRY`]): the set has no links meanwhile.
    pub(super) async fn run(self, shared: Arc<Shared>) {
        let mut last_failure = None;
        loop {
            let scan = {
                let shared = Arc::clone(&shared);
                let hook = self.before_scan.clone();
                tokio::task::spawn_blocking(move || scan(&shared, hook))
            };
            match log_progress(&shared, scan).await {
                Ok(true) => break,
                Ok(false) => return,
                Err(reason) => {
                    shared.error();
                    // Once per reason at ERROR: a state directory that stays full must not
                    // write a line every 30 s.
                    if last_failure.as_ref() == Some(&reason) {
                        debug!(set = %shared.config.name, %reason, "sync: start-up scan failed again");
                    } else {
                        error!(set = %shared.config.name, %reason, retry_in = ?self.scan_retry,
                            "sync: start-up scan failed, will retry");
                    }
                    *shared.scan_failed() = Some(reason.clone());
                    last_failure = Some(reason);
                    tokio::select! {
                        () = shared.cancel.cancelled() => return,
                        () = tokio::time::sleep(self.scan_retry) => {}
                    }
                    // Scanning again: the status shows the new scan's progress.
                    *shared.scan_failed() = None;
                    shared.scan.restart();
                }
            }
        }
        shared.scanning.store(false, Ordering::Release);
        shared.notify_changed();
        let mut tasks = vec![
            tokio::spawn(local::watch(Arc::clone(&shared), self.watcher)),
            tokio::spawn(local::save(Arc::clone(&shared), self.save_interval)),
            tokio::spawn(local::forget(Arc::clone(&shared), self.forget_interval)),
            tokio::spawn(link::accept(Arc::clone(&shared), self.listener)),
        ];
        for i in 0..shared.peers.len() {
            if shared.config.listen < shared.peers[i].addr {
                tasks.push(tokio::spawn(link::dial(Arc::clone(&shared), i)));
            }
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// The scan, on a blocking thread: a first start (an empty index) measures the tree first, so
/// that its progress has a total; a restart expects the paths its index holds. Saves the
/// index. `Ok(false)`: stopped before the end.
fn scan(shared: &Shared, hook: Option<ScanHook>) -> Result<bool, String> {
    // No transfer runs before the scan is done; a temporary file older than its start is a
    // leftover.
    let began = SystemTime::now();
    let (root, exclude, progress) = (&shared.root, &shared.config.exclude, &shared.scan);
    let mut index = shared.index();
    if index.is_empty() {
        index
            .measure(root, exclude, progress)
            .map_err(|e| e.to_string())?;
    } else {
        progress.expect_paths(index.entries().filter(|e| !e.deleted).count() as u64);
    }
    if let Some(ScanHook(hook)) = hook {
        hook();
    }
    let report = index
        .scan_with(root, exclude, Rehash::IfChanged, progress)
        .map_err(|e| e.to_string())?;
    let counts = progress.counts();
    if report.stopped {
        info!(set = %shared.config.name, examined = counts.examined, "sync: start-up scan stopped");
        return Ok(false);
    }
    remove_leftovers(&shared.config.name, &report.temporary, began);
    local::forget_old_deletions(shared, &mut index);
    shared.sync_touched().map_err(|e| e.to_string())?;
    index.save(&shared.index_dir).map_err(|e| e.to_string())?;
    info!(set = %shared.config.name, changes = report.changes.len(), entries = index.len(),
        examined = counts.examined, hashed_bytes = counts.hashed, "sync: start-up scan done");
    Ok(true)
}

/// Removes the temporary files a transfer cut short left beside their targets (those written
/// in the staging directory are gone with it; these are the ones on another filesystem
/// mounted inside the root, or all of them when the staging directory cannot be made). Only
/// those whose inode last changed 100 ms or more before `began`: by the ctime, which a
/// transfer cannot date back as it does the mtime (to the sender's), and which comes from the
/// kernel's coarse clock, up to a tick behind, so one made just after `began` can look older.
fn remove_leftovers(set: &str, temporary: &[PathBuf], began: SystemTime) {
    let cutoff = unix_ns(began - Duration::from_millis(100));
    let mut removed = 0;
    for path in temporary {
        let older = std::fs::symlink_metadata(path)
            .is_ok_and(|m| m.ctime() * 1_000_000_000 + m.ctime_nsec() < cutoff);
        if !older {
            continue;
        }
        match std::fs::remove_file(path) {
            Ok(()) => removed += 1,
            Err(error) => {
                warn!(set, path = %path.display(), %error, "sync: cannot remove a leftover temporary file");
            }
        }
    }
    if removed > 0 {
        info!(
            set,
            removed, "sync: removed temporary files left by transfers cut short"
        );
    }
}

/// Waits for the scan, logging its progress every [`LOG_EVERY`].
async fn log_progress(
    shared: &Shared,
    mut scan: JoinHandle<Result<bool, String>>,
) -> Result<bool, String> {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + LOG_EVERY, LOG_EVERY);
    loop {
        tokio::select! {
            done = &mut scan => return done.map_err(|e| e.to_string())?,
            _ = tick.tick() => {
                let counts = shared.scan.counts();
                let percent = counts.fraction().map(|(done, total)| done.min(total) * 100 / total.max(1));
                info!(set = %shared.config.name, percent, progress = %describe(&counts),
                    "sync: start-up scan running");
            }
        }
    }
}

/// What the scan has done, against its total when there is one: `2150 of 4710 MiB hashed`,
/// `1200 of 10000 paths examined`, or `1200 paths examined, 3 MiB hashed`.
pub fn describe(counts: &ScanCounts) -> String {
    const MIB: u64 = 1024 * 1024;
    match counts.fraction() {
        Some((done, total)) if counts.total_bytes > 0 => {
            format!("{} of {} MiB hashed", done / MIB, total / MIB)
        }
        Some((done, total)) => format!("{done} of {total} paths examined"),
        None => format!(
            "{} paths examined, {} MiB hashed",
            counts.examined,
            counts.hashed / MIB
        ),
    }
}
