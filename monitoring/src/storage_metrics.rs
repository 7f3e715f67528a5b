//! Prometheus metrics of the replicated volumes (`fulcrum_volume_*`) and the directory sync sets
//! (`fulcrum_sync_*`), read at scrape time from their status as the stats page shows it, so
//! `/metrics`, the page and `fulcrum status` never disagree.
//!
//! States are one-hot gauges (`fulcrum_volume_connection{volume,state} 1` for the state the
//! volume is in, 0 for the others) so an alert rule can say `== 0` without matching strings.

use std::sync::{Arc, Mutex};

use fulcrum_common::stats;
use prometheus::{
    IntCounterVec, IntGaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

/// DRBD's connection states, as the volumes report them.
const CONNECTION_STATES: [&str; 5] = [
    "StandAlone",
    "WFConnection",
    "Connected",
    "SyncSource",
    "SyncTarget",
];
/// DRBD's disk states, as the volumes report them.
const DISK_STATES: [&str; 4] = ["UpToDate", "Inconsistent", "Outdated", "Diskless"];
const ROLES: [&str; 2] = ["Primary", "Secondary"];

/// Where the collector reads the volumes and sync sets from.
pub type Source<T> = Arc<dyn Fn() -> Vec<T> + Send + Sync>;

/// The families, kept between scrapes for their descriptions; the mutex keeps two scrapes from
/// interleaving their reset-and-fill.
pub struct StorageCollector {
    volumes: Source<stats::Volume>,
    syncs: Source<stats::SyncSet>,
    families: Mutex<Families>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for StorageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageCollector").finish_non_exhaustive()
    }
}

struct Families {
    volume_role: IntGaugeVec,
    volume_connection: IntGaugeVec,
    volume_disk: IntGaugeVec,
    volume_out_of_sync: IntGaugeVec,
    volume_bytes: IntCounterVec,
    sync_peers: IntGaugeVec,
    sync_connected_peers: IntGaugeVec,
    sync_pending: IntGaugeVec,
    sync_last_sync_age: IntGaugeVec,
    sync_conflicts: IntCounterVec,
    sync_files: IntCounterVec,
    sync_bytes: IntCounterVec,
    sync_overflows: IntCounterVec,
    sync_errors: IntCounterVec,
}

impl Families {
    fn new() -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        Ok(Self {
            volume_role: gauge(
                "fulcrum_volume_role",
                "1 for the volume's role (Primary, Secondary), else 0.",
                &["volume", "role"],
            )?,
            volume_connection: gauge(
                "fulcrum_volume_connection",
                "1 for the replication link's DRBD connection state, else 0.",
                &["volume", "state"],
            )?,
            volume_disk: gauge(
                "fulcrum_volume_disk",
                "1 for the local disk's DRBD disk state, else 0.",
                &["volume", "state"],
            )?,
            volume_out_of_sync: gauge(
                "fulcrum_volume_out_of_sync_bytes",
                "Bytes marked as differing from the peer (DRBD's oos).",
                &["volume"],
            )?,
            volume_bytes: counter(
                "fulcrum_volume_bytes_total",
                "Bytes sent to and received from the peer, written to and read from the local disk (DRBD's ns, nr, dw, dr).",
                &["volume", "direction"],
            )?,
            sync_peers: gauge(
                "fulcrum_sync_peers",
                "Peers configured for the sync set.",
                &["sync"],
            )?,
            sync_connected_peers: gauge(
                "fulcrum_sync_connected_peers",
                "Peers the sync set is connected to.",
                &["sync"],
            )?,
            sync_pending: gauge(
                "fulcrum_sync_pending_changes",
                "Changes made here that a peer has not acknowledged yet.",
                &["sync"],
            )?,
            sync_last_sync_age: gauge(
                "fulcrum_sync_last_sync_age_seconds",
                "Seconds since a peer last had everything (absent if never).",
                &["sync"],
            )?,
            sync_conflicts: counter(
                "fulcrum_sync_conflicts_total",
                "Conflicts resolved (both sides changed a path).",
                &["sync"],
            )?,
            sync_files: counter(
                "fulcrum_sync_files_total",
                "Files whose content was sent to or received from a peer.",
                &["sync", "direction"],
            )?,
            sync_bytes: counter(
                "fulcrum_sync_bytes_total",
                "Content bytes sent, received, and saved by rsync deltas.",
                &["sync", "direction"],
            )?,
            sync_overflows: counter(
                "fulcrum_sync_watch_overflows_total",
                "Times the watcher lost events and rescanned.",
                &["sync"],
            )?,
            sync_errors: counter(
                "fulcrum_sync_errors_total",
                "Transfers or entries that failed.",
                &["sync"],
            )?,
        })
    }

    fn collectors(&self) -> [&dyn Collector; 14] {
        [
            &self.volume_role,
            &self.volume_connection,
            &self.volume_disk,
            &self.volume_out_of_sync,
            &self.volume_bytes,
            &self.sync_peers,
            &self.sync_connected_peers,
            &self.sync_pending,
            &self.sync_last_sync_age,
            &self.sync_conflicts,
            &self.sync_files,
            &self.sync_bytes,
            &self.sync_overflows,
            &self.sync_errors,
        ]
    }

    fn reset(&self) {
        for g in [
            &self.volume_role,
            &self.volume_connection,
            &self.volume_disk,
            &self.volume_out_of_sync,
            &self.sync_peers,
            &self.sync_connected_peers,
            &self.sync_pending,
            &self.sync_last_sync_age,
        ] {
            g.reset();
        }
        for c in [
            &self.volume_bytes,
            &self.sync_conflicts,
            &self.sync_files,
            &self.sync_bytes,
            &self.sync_overflows,
            &self.sync_errors,
        ] {
            c.reset();
        }
    }

    fn fill_volume(&self, v: &stats::Volume) {
        let one_hot = |vec: &IntGaugeVec, states: &[&str], now: &str| {
            for state in states {
                vec.with_label_values(&[v.name.as_str(), state])
                    .set(i64::from(*state == now));
            }
        };
        one_hot(&self.volume_role, &ROLES, &v.role);
        one_hot(&self.volume_connection, &CONNECTION_STATES, &v.connection);
        one_hot(&self.volume_disk, &DISK_STATES, &v.disk);
        self.volume_out_of_sync
            .with_label_values(&[v.name.as_str()])
            .set(saturating(v.out_of_sync_bytes));
        for (direction, n) in [
            ("sent", v.net_sent_bytes),
            ("received", v.net_received_bytes),
            ("written", v.disk_written_bytes),
            ("read", v.disk_read_bytes),
        ] {
            self.volume_bytes
                .with_label_values(&[v.name.as_str(), direction])
                .inc_by(n);
        }
    }

    fn fill_sync(&self, s: &stats::SyncSet) {
        let name = [s.name.as_str()];
        let connected = s.peers.iter().filter(|p| p.ends_with(" up")).count();
        self.sync_peers
            .with_label_values(&name)
            .set(saturating(s.peers.len() as u64));
        self.sync_connected_peers
            .with_label_values(&name)
            .set(saturating(connected as u64));
        self.sync_pending
            .with_label_values(&name)
            .set(saturating(s.pending));
        if let Some(age) = s.last_sync_secs {
            self.sync_last_sync_age
                .with_label_values(&name)
                .set(saturating(age));
        }
        self.sync_conflicts
            .with_label_values(&name)
            .inc_by(s.conflicts);
        for (direction, n) in [("sent", s.files_sent), ("received", s.files_received)] {
            self.sync_files
                .with_label_values(&[s.name.as_str(), direction])
                .inc_by(n);
        }
        for (direction, n) in [
            ("sent", s.bytes_sent),
            ("received", s.bytes_received),
            ("saved_by_delta", s.bytes_saved_by_delta),
        ] {
            self.sync_bytes
                .with_label_values(&[s.name.as_str(), direction])
                .inc_by(n);
        }
        self.sync_overflows
            .with_label_values(&name)
            .inc_by(s.overflows);
        self.sync_errors.with_label_values(&name).inc_by(s.errors);
    }
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl StorageCollector {
    /// A collector reading `volumes` and `syncs` at each scrape.
    pub fn new(
        volumes: Source<stats::Volume>,
        syncs: Source<stats::SyncSet>,
    ) -> prometheus::Result<Self> {
        let families = Families::new()?;
        let descs = families
            .collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Ok(Self {
            volumes,
            syncs,
            families: Mutex::new(families),
            descs,
        })
    }
}

impl Collector for StorageCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(families) = self.families.lock() else {
            return Vec::new();
        };
        families.reset();
        for volume in (self.volumes)() {
            families.fill_volume(&volume);
        }
        for set in (self.syncs)() {
            families.fill_sync(&set);
        }
        families
            .collectors()
            .iter()
            .flat_map(|c| c.collect())
            .filter(|f| !f.get_metric().is_empty())
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn render(collector: StorageCollector) -> String {
        let registry = prometheus::Registry::new();
        registry.register(Box::new(collector)).unwrap();
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap()
    }

    #[test]
    fn a_volume_reports_its_states_one_hot_and_its_counters() {
        let volume = stats::Volume {
            name: "r0".into(),
            role: "Primary".into(),
            connection: "SyncSource".into(),
            disk: "UpToDate".into(),
            out_of_sync_bytes: 8192,
            net_sent_bytes: 100,
            ..Default::default()
        };
        let text = render(
            StorageCollector::new(Arc::new(move || vec![volume.clone()]), Arc::new(Vec::new))
                .unwrap(),
        );
        assert!(
            text.contains("fulcrum_volume_role{role=\"Primary\",volume=\"r0\"} 1"),
            "{text}"
        );
        assert!(text.contains("fulcrum_volume_role{role=\"Secondary\",volume=\"r0\"} 0"));
        assert!(text.contains("fulcrum_volume_connection{state=\"SyncSource\",volume=\"r0\"} 1"));
        assert!(text.contains("fulcrum_volume_connection{state=\"Connected\",volume=\"r0\"} 0"));
        assert!(text.contains("fulcrum_volume_out_of_sync_bytes{volume=\"r0\"} 8192"));
        assert!(text.contains("fulcrum_volume_bytes_total{direction=\"sent\",volume=\"r0\"} 100"));
        assert!(
            !text.contains("fulcrum_sync_"),
            "no sync set, no sync series"
        );
    }

    #[test]
    fn a_sync_set_counts_its_connected_peers_and_its_queue() {
        let set = stats::SyncSet {
            name: "uploads".into(),
            peers: vec![
                "10.0.0.2:7790 (web2) up".into(),
                "10.0.0.3:7790 down".into(),
            ],
            pending: 12,
            last_sync_secs: Some(3),
            conflicts: 2,
            ..Default::default()
        };
        let text = render(
            StorageCollector::new(Arc::new(Vec::new), Arc::new(move || vec![set.clone()])).unwrap(),
        );
        assert!(
            text.contains("fulcrum_sync_peers{sync=\"uploads\"} 2"),
            "{text}"
        );
        assert!(text.contains("fulcrum_sync_connected_peers{sync=\"uploads\"} 1"));
        assert!(text.contains("fulcrum_sync_pending_changes{sync=\"uploads\"} 12"));
        assert!(text.contains("fulcrum_sync_last_sync_age_seconds{sync=\"uploads\"} 3"));
        assert!(text.contains("fulcrum_sync_conflicts_total{sync=\"uploads\"} 2"));
    }
}
