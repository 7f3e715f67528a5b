//! The replicated volume, DRBD's semantics in userspace.
//!
//! - [`config`]: `[volume.NAME]` as users write it, validated.
//! - [`meta`]: what a node keeps in `state_dir` about its copy: generation identifiers, the
//!   out-of-sync bitmap and the activity log, persisted crash-safely.
//! - [`peer`]: the replication link between the two nodes: authentication and the wire format.
//! - [`engine`]: the [`Volume`] itself: connection, resync, replicated writes, roles, NBD.

pub mod config;
pub mod engine;
pub mod meta;
pub mod peer;

pub use config::{Protocol, Role};
pub use engine::{
    ConnState, ResyncProgress, VerifyReport, Volume, VolumeCounters, VolumeError, VolumeEvent,
    VolumeExport, VolumeStatus,
};
pub use peer::DiskState;
