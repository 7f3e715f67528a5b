//! `fulcrum-bench sync`: Fulcrum's two-way directory sync (`[sync.NAME]`) measured beside the
//! tools it replaces, for issue 8's goals: the propagation latency of a 4 KiB change against
//! lsyncd driving rsync, the initial sync of a 10,000-file tree against `rsync -a`, and the bytes
//! sent for a 1% change in a 100 MiB file against rsync's delta. The references write to an
//! rsync daemon on loopback.
//!
//! [`run_sync`] runs it (blocking); the files it writes are described in
//! `bench/results/README.md`.

mod markdown;
mod process;
mod report;
mod runner;
mod tools;
mod tree;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub use self::markdown::render_markdown;
pub use self::report::{
    DeltaRun, Goal, InitialRun, LatencyRun, SCHEMA, SyncMachine, SyncReport, SyncSettings,
    SyncSummary, Tool, percentile,
};
pub use self::runner::run_sync;
pub use self::tools::{MissingTools, Tools, find_tools};

/// What a run does and where its programs are.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub fulcrum: PathBuf,
    pub tools: Tools,
    pub rounds: usize,
    /// `delay` of both Fulcrum nodes and of lsyncd.
    pub delay: Duration,
    /// 4 KiB changes per latency run.
    pub changes: usize,
    /// Files and bytes of the initial sync's tree.
    pub files: usize,
    pub tree_bytes: u64,
    /// The delta's file, and how many of its bytes change (in [`DELTA_REGIONS`] regions).
    pub delta_file_bytes: u64,
    pub delta_change_bytes: u64,
    /// Where the trees go (tmpfs).
    pub dir: PathBuf,
    /// Where the files go; none written without.
    pub out: Option<PathBuf>,
    /// The command line, for the report.
    pub command: String,
    /// Set to stop between steps (Ctrl-C).
    pub cancel: Arc<AtomicBool>,
}

/// The changed regions of the delta's file, spread evenly over it.
pub const DELTA_REGIONS: u64 = 8;

/// The size of each latency change.
pub const CHANGE_BYTES: usize = 4096;
