//! The directory sync sets of `[sync.NAME]` in this process: started with the other modules,
//! restarted by a reload that changes their section, read by the stats page and `fulcrum
//! status sync`, stopped last (their index saved) on exit.

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use fulcrum_common::stats;
use fulcrum_storage::sync::{SyncEvent, SyncSet, SyncStatus, config::SyncConfig};
use tokio::sync::broadcast;

/// The running sync sets, in name order. A std mutex is enough: it is taken to read a status
/// for the page or the control socket, and at a reload or the stop, never on a data path, and
/// never held across an await.
#[derive(Debug)]
pub(crate) struct Syncs {
    sets: Mutex<Vec<Running>>,
    /// `[global]`'s, read at start: a reload does not move an index or rename the node.
    state_dir: PathBuf,
    node: String,
}

/// A set and the section it runs on.
#[derive(Debug)]
struct Running {
    config: SyncConfig,
    set: SyncSet,
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
            match SyncSet::start(config.clone(), state_dir, node).await {
                Ok(set) => sets.push(Running { config, set }),
                Err(error) => {
                    stop_all(sets).await;
                    // The error names its set already ("sync set NAME: ...").
                    return Err(error.to_string());
                }
            }
        }
        Ok(Syncs {
            sets: Mutex::new(sets),
            state_dir: state_dir.to_owned(),
            node: node.to_owned(),
        })
    }

    /// Follows a reload: a set whose section is unchanged keeps running untouched; one whose
    /// section changed is stopped (its index saved) and started on the new one, as a restart
    /// of Fulcrum would; one whose section is gone is stopped; a new one is started. Its
    /// start-up scan then catches up with whatever changed meanwhile, and its peers reconnect.
    /// A changed set that cannot start on its new section (its port held by another process,
    /// say) starts again on its previous one; a set that cannot start at all is logged and left
    /// stopped (a later reload tries it again).
    /// Returns the events of each set started, subscribed at its start, for the alerts to
    /// follow.
    pub(crate) async fn follow(
        &self,
        configs: Vec<SyncConfig>,
    ) -> Vec<(String, broadcast::Receiver<SyncEvent>)> {
        let (stopping, to_start) = {
            let mut sets = self.sets();
            let (keep, stop): (Vec<_>, Vec<_>) = std::mem::take(&mut *sets)
                .into_iter()
                .partition(|running| configs.contains(&running.config));
            *sets = keep;
            let to_start: Vec<_> = configs
                .into_iter()
                .filter(|config| !sets.iter().any(|running| running.config == *config))
                .collect();
            (stop, to_start)
        };
        for running in &stopping {
            tracing::info!(sync = %running.config.name, "[sync] section changed or removed: stopping the set");
        }
        let previous: Vec<SyncConfig> = stopping.iter().map(|r| r.config.clone()).collect();
        // All stopped before any starts, so an address or a path a changed section hands on is
        // free by then.
        stop_all(stopping).await;
        let mut started = Vec::new();
        for config in to_start {
            let name = config.name.clone();
            let previous = previous.iter().find(|p| p.name == name).cloned();
            let start = |config: SyncConfig| async move {
                let set = SyncSet::start(config.clone(), &self.state_dir, &self.node).await?;
                Ok::<_, fulcrum_storage::sync::SyncError>(Running { config, set })
            };
            let reloaded = config.clone();
            let what = format!("the sync set `{name}`");
            let section = format!("[sync.{name}]");
            let Some(running) =
                crate::restart::start_or_restore(&what, &section, config, previous, start).await
            else {
                continue;
            };
            if running.config == reloaded {
                tracing::info!(sync = %name, "sync set started on the reloaded [sync] section");
            }
            started.push((name, running.set.subscribe()));
            let mut sets = self.sets();
            sets.push(running);
            sets.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        }
        started
    }

    /// Every set now, as the stats page and `fulcrum status sync` show it.
    pub(crate) fn stats(&self) -> Vec<stats::SyncSet> {
        self.sets()
            .iter()
            .map(|r| to_stats(&r.set.status()))
            .collect()
    }

    /// The events from now on (conflicts, peers lost and back, failed transfers) of each set,
    /// with the set's name, for the alerts.
    pub(crate) fn subscribe(&self) -> Vec<(String, broadcast::Receiver<SyncEvent>)> {
        self.sets()
            .iter()
            .map(|r| (r.config.name.clone(), r.set.subscribe()))
            .collect()
    }

    /// Stops every set, saving its index.
    pub(crate) async fn stop(&self) {
        let sets = std::mem::take(&mut *self.sets());
        stop_all(sets).await;
    }

    /// A panic while the list was held leaves a list of running sets, still usable.
    fn sets(&self) -> MutexGuard<'_, Vec<Running>> {
        self.sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Stops `sets`: every one is told at once (a set in the middle of its start-up scan takes a
/// moment to stop), then each is awaited.
async fn stop_all(sets: Vec<Running>) {
    let stopping: Vec<_> = sets
        .into_iter()
        .map(|r| (r.config.name, r.set.stop()))
        .collect();
    for (name, stopped) in stopping {
        if let Err(error) = stopped.await {
            tracing::warn!(sync = %name, %error, "sync set did not stop cleanly");
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
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::net::{SocketAddr, TcpListener};
    use std::path::PathBuf;
    use std::time::Duration;

    use fulcrum_storage::sync::config::{ConflictPolicy, Direction, SharedSecret};
    use fulcrum_storage::sync::index::ScanCounts;

    use super::*;

    /// A set called `web` syncing `dir/root`, listening on `listen`, with `peer`.
    fn set_config(dir: &Path, listen: SocketAddr, peer: SocketAddr) -> SyncConfig {
        let path = dir.join("root");
        std::fs::create_dir_all(&path).unwrap();
        SyncConfig {
            name: "web".to_owned(),
            path,
            listen,
            peers: vec![peer],
            shared_secret: SharedSecret::new("a test secret"),
            direction: Direction::Both,
            exclude: Vec::new(),
            delay: Duration::from_millis(20),
            conflict: ConflictPolicy::NewestWins,
            delete: true,
            delete_retention: None,
            owners: false,
            tls: None,
        }
    }

    /// A loopback address with a port free now.
    fn free_addr() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    // Input: a reload adds a set whose peer is running; the reload goes on (here: waits) until
    // the link is up. Output: the events `follow` returned hold the link's coming up, which an
    // alerter subscribing once the reload is done would miss.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_hands_the_alerts_each_started_sets_events_from_its_start() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (free_addr(), free_addr());
        let peer = SyncSet::start(set_config(b_dir.path(), b, a), b_dir.path(), "b")
            .await
            .unwrap();
        let syncs = Syncs::start(Vec::new(), a_dir.path(), "a").await.unwrap();

        let mut started = syncs.follow(vec![set_config(a_dir.path(), a, b)]).await;
        for _ in 0..500 {
            if syncs.stats()[0].state == "connected" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(syncs.stats()[0].state, "connected");

        assert_eq!(started.len(), 1);
        let (name, events) = &mut started[0];
        assert_eq!(name, "web");
        let event = events.try_recv().unwrap();
        assert!(
            matches!(&event, SyncEvent::PeerConnected { addr, node } if *addr == b && node == "b"),
            "{event:?}"
        );
        syncs.stop().await;
        peer.stop().await.unwrap();
    }

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
