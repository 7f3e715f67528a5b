//! `fulcrum-bench nbd`: Fulcrum's replicated volume, served over its own NBD server, measured
//! beside `qemu-nbd` serving a raw file, for issue 7's goals: sequential 1 MiB writes with the
//! peer absent and with a protocol C peer on loopback, 4 KiB random write latency, and the speed
//! of a 1 GiB resync.
//!
//! [`run_nbd`] runs it (blocking); the files it writes are described in
//! `bench/results/README.md`.

mod load;
mod markdown;
mod process;
mod report;
mod runner;
mod status;
mod tools;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::markdown::render_markdown;
pub use self::report::{
    Goal, LatencyRun, NbdMachine, NbdReport, NbdRun, NbdSettings, NbdSummary, ResyncRun, SCHEMA,
    ServerSummary, WriteRun, mib_per_s,
};
pub use self::runner::run_nbd;
pub use self::tools::{MissingTools, Tools, find_tools};

/// What serves the export in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Server {
    /// `qemu-nbd -f raw --cache=writeback` on a file: the reference of the goals, unreplicated.
    QemuNbd,
    /// `qemu-nbd -f raw --cache=none --aio=native`: `O_DIRECT`, the I/O path of Fulcrum's large
    /// writes (`direct_io`), shown beside the goals' reference.
    QemuNbdDirect,
    /// A Fulcrum primary whose peer never comes (its `peer` is a closed port).
    FulcrumAlone,
    /// A Fulcrum primary with a protocol C secondary on loopback, Connected and UpToDate.
    FulcrumPair,
}

impl Server {
    /// The order of every round: the reference first.
    pub const ALL: [Self; 4] = [
        Self::QemuNbd,
        Self::QemuNbdDirect,
        Self::FulcrumAlone,
        Self::FulcrumPair,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::QemuNbd => "qemu-nbd",
            Self::QemuNbdDirect => "qemu-nbd, cache=none",
            Self::FulcrumAlone => "Fulcrum, peer absent",
            Self::FulcrumPair => "Fulcrum, protocol C pair",
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What a run does and where its programs are.
#[derive(Debug, Clone)]
pub struct NbdOptions {
    pub fulcrum: PathBuf,
    /// The tools, found beforehand (see [`find_tools`]).
    pub tools: Tools,
    pub rounds: usize,
    /// Bytes of each sequential write, of the volume, and of the resync.
    pub size: u64,
    /// nbdcopy's `--request-size`.
    pub request_size: u64,
    /// nbdcopy's `--connections`, the same for every server.
    pub connections: usize,
    /// How long fio writes 4 KiB blocks at queue depth 1, after a 1 s ramp; zero skips it.
    pub latency_duration: Duration,
    /// The volumes' `al_extents`; Fulcrum's default (1237, 4.8 GiB) without.
    pub al_extents: Option<u64>,
    /// Where the backing files go (a disk, not tmpfs).
    pub dir: PathBuf,
    /// Where the pair's secondary keeps its backing file: on two real nodes it has a disk of its
    /// own, which the primary's writes do not compete with; tmpfs stands in for it by default.
    pub secondary_dir: PathBuf,
    /// Where the source file of the writes goes (tmpfs, so reading it costs no disk).
    pub source_dir: PathBuf,
    /// Where the files go; none written without.
    pub out: Option<PathBuf>,
    /// The command line, for the report.
    pub command: String,
    /// Set to stop between steps (Ctrl-C); the run then ends with an error, processes stopped.
    pub cancel: Arc<AtomicBool>,
}

/// The size of a block Fulcrum replicates: the volume's size must be a multiple of it.
pub const BLOCK: u64 = 4096;
