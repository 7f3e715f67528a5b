//! The directory sync sets of `[sync.NAME]` in this process: started with the other modules,
//! read by the stats page and `fulcrum status sync`, stopped last (their index saved) on exit.

use std::{path::Path, sync::Mutex};

use fulcrum_common::stats;
use fulcrum_storage::sync::{SyncEvent, SyncSet, SyncStatus, config::SyncConfig};
use tokio::sync::broadcast;

/// The running sync sets, in name order. A std mutex is enough: it is taken to read a status
/// for the page or the control socket, and once at stop, never on a data path.
#[derive(Debug, Default)]
pub(crate) struct Syncs {
    sets: Mutex<Vec<SyncSet>>,
}

impl Syncs {
    /// Starts every set; on an error, the ones already started are stopped again.
    pub(crate) async fn start(
        configs: Vec<SyncConfig>,
        state_dir: &Path,
        node: &str,
    ) -> Result<Syncs, String> {
        let mut sets = Vec::with_capacity(configs.len());
        for config in configs {
            match SyncSet::start(config, state_dir, node).await {
                Ok(set) => sets.push(set),
                Err(error) => {
                    for set in sets {
                        let _ = set.stop().await;
                    }
                    // The error names its set already ("sync set NAME: ...").
                    return Err(error.to_string());
                }
            }
        }
        Ok(Syncs {
            sets: Mutex::new(sets),
        })
    }

    /// Every set now, as the stats page and `fulcrum status sync` show it.
    pub(crate) fn stats(&self) -> Vec<stats::SyncSet> {
        let Ok(sets) = self.sets.lock() else {
            return Vec::new();
        };
        sets.iter().map(|s| to_stats(&s.status())).collect()
    }

    /// Each set's name and its events from now on (conflicts, peers lost and back, failed
    /// transfers), for the alerts.
    pub(crate) fn subscribe_all(&self) -> Vec<(String, broadcast::Receiver<SyncEvent>)> {
        let Ok(sets) = self.sets.lock() else {
            return Vec::new();
        };
        sets.iter()
            .map(|s| (s.status().name, s.subscribe()))
            .collect()
    }

    /// Stops every set, saving its index.
    pub(crate) async fn stop(&self) {
        let sets = match self.sets.lock() {
            Ok(mut sets) => std::mem::take(&mut *sets),
            Err(_) => return,
        };
        // Every set is told at once (a set in the middle of its start-up scan takes a moment
        // to stop), then each is awaited.
        let stopping: Vec<_> = sets
            .into_iter()
            .map(|set| (set.status().name, set.stop()))
            .collect();
        for (name, stopped) in stopping {
            if let Err(error) = stopped.await {
                tracing::warn!(sync = %name, %error, "sync set did not stop cleanly");
            }
        }
    }
}

/// A set as the stats page and `fulcrum status sync` show it.
fn to_stats(status: &SyncStatus) -> stats::SyncSet {
    let scan = status.scan.unwrap_or_default();
    let connected = status.peers.iter().filter(|p| p.connected).count();
    let state = match (connected, status.peers.len()) {
        _ if status.scan_failed.is_some() => "scan failed",
        _ if status.scan.is_some() => "scanning",
        (0, _) => "connecting",
        (c, n) if c == n => "connected",
        _ => "partly connected",
    };
    stats::SyncSet {
        name: status.name.clone(),
        path: status.path.display().to_string(),
        state: state.to_owned(),
        peers: status
            .peers
            .iter()
            .map(|p| {
                let node = p
                    .node
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                let link = if p.connected { "up" } else { "down" };
                format!("{}{node} {link}", p.addr)
            })
            .collect(),
        pending: status.peers.iter().map(|p| p.queue).sum(),
        catch_up_done: status
            .peers
            .iter()
            .filter_map(|p| p.catch_up)
            .map(|c| c.done)
            .sum(),
        catch_up_total: status
            .peers
            .iter()
            .filter_map(|p| p.catch_up)
            .map(|c| c.total)
            .sum(),
        conflicts: status.conflicts,
        last_sync_secs: status
            .peers
            .iter()
            .filter_map(|p| p.last_sync)
            .max()
            .and_then(|t| t.elapsed().ok())
            .map(|d| d.as_secs()),
        files_sent: status.counters.files_sent,
        files_received: status.counters.files_received,
        bytes_sent: status.counters.bytes_sent,
        bytes_received: status.counters.bytes_received,
        bytes_saved_by_delta: status.counters.bytes_saved_by_delta,
        overflows: status.counters.overflows,
        errors: status.counters.errors,
        scan_examined: scan.examined,
        scan_hashed: scan.hashed,
        scan_total_paths: scan.total_paths,
        scan_total_bytes: scan.total_bytes,
        scan_error: status.scan_failed.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use fulcrum_storage::sync::index::ScanCounts;

    use super::*;

    fn status(scan: Option<ScanCounts>, scan_failed: Option<&str>) -> SyncStatus {
        SyncStatus {
            name: "web".to_owned(),
            path: PathBuf::from("/data"),
            peers: Vec::new(),
            conflicts: 0,
            counters: Default::default(),
            scan,
            scan_failed: scan_failed.map(str::to_owned),
        }
    }

    // Input: a set scanning (1 of 4 MiB hashed), one whose scan failed, one done. Output: the
    // states `scanning` (with the counts), `scan failed` (with the reason), and the link
    // state once the scan is over.
    #[test]
    fn the_start_up_scan_shows_in_the_state() {
        let counts = ScanCounts {
            examined: 3,
            hashed: 1 << 20,
            total_paths: 10,
            total_bytes: 4 << 20,
        };
        let scanning = to_stats(&status(Some(counts), None));
        assert_eq!(scanning.state, "scanning");
        assert_eq!(
            (scanning.scan_hashed, scanning.scan_total_bytes),
            (1 << 20, 4 << 20)
        );
        let failed = to_stats(&status(Some(counts), Some("disk full")));
        assert_eq!(failed.state, "scan failed");
        assert_eq!(failed.scan_error.as_deref(), Some("disk full"));
        let done = to_stats(&status(None, None));
        assert_eq!(done.state, "connecting");
        assert_eq!(done.scan_error, None);
    }
}
