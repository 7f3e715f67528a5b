//! What an nbd run reports: every run of every round, the medians per server with their ratios to
//! qemu-nbd, the resync's speed, and issue 7's goals checked. Serialised as the JSON file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Server;
use crate::compare::ratio;
use crate::harness::median_of;
pub use crate::harness::{Goal, mib_per_s};

/// The `schema` of the JSON file.
pub const SCHEMA: &str = "fulcrum-bench/nbd/v1";

/// Issue 7's bounds: Fulcrum/qemu-nbd sequential write throughput with the peer absent and with
/// a protocol C peer, and the resync's MiB/s.
const GOAL_ALONE: f64 = 1.0;
const GOAL_PAIR: f64 = 0.7;
const GOAL_RESYNC_MIB_PER_S: f64 = 500.0;

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NbdReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// When it started, RFC 3339 in UTC.
    pub date: String,
    pub command: String,
    pub machine: NbdMachine,
    pub settings: NbdSettings,
    /// Every server's run in every round, in the order they ran.
    pub runs: Vec<NbdRun>,
    /// One resync per round.
    pub resyncs: Vec<ResyncRun>,
    pub summary: NbdSummary,
    /// The files written, empty without `--out`.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NbdMachine {
    pub cpu_model: String,
    /// The guest's free page reporting, which hands freed memory back to the host (see
    /// [`crate::harness::results::free_page_reporting`]); absent from older reports.
    #[serde(default)]
    pub free_page_reporting: Option<String>,
    pub cores: usize,
    pub kernel: String,
    /// The file system of the backing files' directory, from `/proc/self/mounts`.
    pub filesystem: String,
    /// The same for the pair's secondary's backing file.
    pub secondary_filesystem: String,
    pub fulcrum_version: String,
    pub qemu_nbd_version: String,
    pub nbdcopy_version: String,
    pub fio_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NbdSettings {
    pub rounds: usize,
    pub size_bytes: u64,
    pub request_size_bytes: u64,
    pub connections: usize,
    /// 0 when the latency was not measured.
    pub latency_duration_s: f64,
    pub dir: PathBuf,
    pub secondary_dir: PathBuf,
    pub source_dir: PathBuf,
    pub fulcrum: PathBuf,
    pub qemu_nbd: PathBuf,
    pub nbdcopy: PathBuf,
    pub fio: Option<PathBuf>,
}

/// One server in one round, on fresh backing files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NbdRun {
    pub round: usize,
    pub server: Server,
    pub write: Option<WriteRun>,
    pub latency: Option<LatencyRun>,
    /// Why the run measured nothing, or only part.
    pub error: Option<String>,
}

/// One sequential write with nbdcopy, its final FLUSH included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteRun {
    pub bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
}

/// fio's 4 KiB random writes at queue depth 1: submission to completion, in µs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRun {
    pub ios: u64,
    pub iops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

/// A restarted secondary catching up with what the primary wrote while it was away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResyncRun {
    pub round: usize,
    /// Out of sync on the primary when the secondary was started again.
    pub bytes: Option<u64>,
    /// From starting the secondary's process until both nodes showed Connected and UpToDate.
    pub seconds: Option<f64>,
    /// From the first poll that showed SyncSource on the primary until then (the transfer
    /// alone, without the start and the handshake), to the poll interval of 10 ms.
    pub sync_seconds: Option<f64>,
    pub mib_per_s: Option<f64>,
    pub sync_mib_per_s: Option<f64>,
    pub error: Option<String>,
}

/// The medians over the rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NbdSummary {
    pub servers: Vec<ServerSummary>,
    pub resync_seconds: Option<f64>,
    pub resync_mib_per_s: Option<f64>,
    pub resync_sync_mib_per_s: Option<f64>,
    pub goals: Vec<Goal>,
}

/// One server's medians, and each over qemu-nbd's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSummary {
    pub server: Server,
    pub write_mib_per_s: Option<f64>,
    pub write_ratio: Option<f64>,
    /// Over `qemu-nbd --cache=none`'s median (absent from reports made before it ran).
    #[serde(default)]
    pub write_ratio_direct: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub iops: Option<f64>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
}

impl NbdSummary {
    /// Sums up the runs and resyncs of every round.
    pub fn new(runs: &[NbdRun], resyncs: &[ResyncRun]) -> Self {
        let of = |server: Server, value: fn(&NbdRun) -> Option<f64>| {
            median_of(runs, |r| if r.server == server { value(r) } else { None })
        };
        let write = |r: &NbdRun| r.write.as_ref().map(|w| w.mib_per_s);
        let p50 = |r: &NbdRun| r.latency.as_ref().map(|l| l.p50_us);
        let p99 = |r: &NbdRun| r.latency.as_ref().map(|l| l.p99_us);
        let iops = |r: &NbdRun| r.latency.as_ref().map(|l| l.iops);
        let qemu_direct_write = of(Server::QemuNbdDirect, write);
        let (qemu_write, qemu_p50, qemu_p99) = (
            of(Server::QemuNbd, write),
            of(Server::QemuNbd, p50),
            of(Server::QemuNbd, p99),
        );
        let servers: Vec<ServerSummary> = Server::ALL
            .into_iter()
            .map(|server| {
                let (w, l50, l99) = (of(server, write), of(server, p50), of(server, p99));
                ServerSummary {
                    server,
                    write_mib_per_s: w,
                    write_ratio: ratio(w, qemu_write),
                    write_ratio_direct: ratio(w, qemu_direct_write),
                    p50_us: l50,
                    p99_us: l99,
                    iops: of(server, iops),
                    p50_ratio: ratio(l50, qemu_p50),
                    p99_ratio: ratio(l99, qemu_p99),
                }
            })
            .collect();
        let resync = |value: fn(&ResyncRun) -> Option<f64>| median_of(resyncs, value);
        let resync_mib_per_s = resync(|r| r.mib_per_s);
        let write_ratio = |server: Server| {
            servers
                .iter()
                .find(|s| s.server == server)
                .and_then(|s| s.write_ratio)
        };
        let goals = vec![
            Goal::at_least(
                "write-alone",
                "sequential 1 MiB writes, peer absent: Fulcrum/qemu-nbd",
                write_ratio(Server::FulcrumAlone),
                GOAL_ALONE,
            ),
            Goal::at_least(
                "write-pair",
                "sequential 1 MiB writes, protocol C pair on loopback: Fulcrum/qemu-nbd unreplicated",
                write_ratio(Server::FulcrumPair),
                GOAL_PAIR,
            ),
            Goal::at_least(
                "resync",
                "resync with resync_rate unset, secondary start to both UpToDate: MiB/s",
                resync_mib_per_s,
                GOAL_RESYNC_MIB_PER_S,
            ),
        ];
        Self {
            servers,
            resync_seconds: resync(|r| r.seconds),
            resync_mib_per_s,
            resync_sync_mib_per_s: resync(|r| r.sync_mib_per_s),
            goals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LatencyRun, NbdRun, NbdSummary, ResyncRun, WriteRun, mib_per_s};
    use crate::nbd::Server;

    fn run(round: usize, server: Server, mib_per_s: Option<f64>, p99_us: f64) -> NbdRun {
        NbdRun {
            round,
            server,
            write: mib_per_s.map(|m| WriteRun {
                bytes: 1 << 30,
                seconds: 1024.0 / m,
                mib_per_s: m,
            }),
            latency: Some(LatencyRun {
                ios: 1000,
                iops: 1e6 / p99_us,
                p50_us: p99_us / 4.0,
                p99_us,
                mean_us: p99_us / 2.0,
            }),
            error: mib_per_s.is_none().then(|| "broken".to_owned()),
        }
    }

    fn resync(round: usize, seconds: Option<f64>) -> ResyncRun {
        ResyncRun {
            round,
            bytes: seconds.map(|_| 1 << 30),
            seconds,
            sync_seconds: seconds.map(|s| s - 0.1),
            mib_per_s: seconds.map(|s| mib_per_s(1 << 30, s)),
            sync_mib_per_s: seconds.map(|s| mib_per_s(1 << 30, s - 0.1)),
            error: seconds.is_none().then(|| "broken".to_owned()),
        }
    }

    #[test]
    fn medians_ratios_and_goals_skip_failed_runs() {
        // Input: 3 rounds of qemu-nbd 800 MiB/s, with cache=none 1100; Fulcrum alone at 760,
        // 820, 840; the pair at 600, one failure, 500; resyncs of 1 GiB in 2 s, 1.6 s and a
        // failure.
        let runs = vec![
            run(1, Server::QemuNbd, Some(800.0), 200.0),
            run(1, Server::QemuNbdDirect, Some(1100.0), 200.0),
            run(1, Server::FulcrumAlone, Some(760.0), 100.0),
            run(1, Server::FulcrumPair, Some(600.0), 400.0),
            run(2, Server::QemuNbd, Some(700.0), 200.0),
            run(2, Server::FulcrumAlone, Some(820.0), 100.0),
            run(2, Server::FulcrumPair, None, 400.0),
            run(3, Server::QemuNbd, Some(900.0), 200.0),
            run(3, Server::FulcrumAlone, Some(840.0), 100.0),
            run(3, Server::FulcrumPair, Some(500.0), 400.0),
        ];
        let resyncs = vec![resync(1, Some(2.0)), resync(2, Some(1.6)), resync(3, None)];
        let summary = NbdSummary::new(&runs, &resyncs);

        // Output: medians 800 / 820 / 550 MiB/s, so ratios 1.025 and 0.6875; over cache=none's
        // 1100, 0.5 for the pair.
        let [qemu, direct, alone, pair] = &summary.servers[..] else {
            panic!("four servers expected");
        };
        assert_eq!(direct.write_mib_per_s, Some(1100.0));
        assert_eq!(pair.write_ratio_direct, Some(0.5));
        assert_eq!(qemu.write_mib_per_s, Some(800.0));
        assert_eq!(qemu.write_ratio, Some(1.0));
        assert_eq!(alone.write_ratio, Some(1.025));
        assert_eq!(pair.write_mib_per_s, Some(550.0));
        assert_eq!(pair.write_ratio, Some(0.6875));
        assert_eq!(pair.p99_ratio, Some(2.0));
        assert_eq!(alone.p50_us, Some(25.0));

        // Output: the medians of 2 s and 1.6 s, and of 512 and 640 MiB/s.
        assert_eq!(summary.resync_seconds, Some(1.8));
        assert_eq!(summary.resync_mib_per_s, Some(576.0));

        let met: Vec<(&str, Option<bool>)> = summary
            .goals
            .iter()
            .map(|g| (g.name.as_str(), g.met))
            .collect();
        assert_eq!(
            met,
            vec![
                ("write-alone", Some(true)),
                ("write-pair", Some(false)),
                ("resync", Some(true)),
            ]
        );
    }

    #[test]
    fn nothing_measured_meets_nothing() {
        let summary = NbdSummary::new(&[], &[]);
        assert!(summary.goals.iter().all(|g| g.met.is_none()));
        assert!(summary.servers.iter().all(|s| s.write_ratio.is_none()));
    }
}
