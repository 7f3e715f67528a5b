//! The replication engine: a [`Volume`] ties the local disk, the metadata and the peer link
//! together into DRBD's behaviour (connect, resync, replicate writes under protocol A/B/C,
//! split-brain handling, roles) and serves the data over NBD while primary.
//!
//! - [`volume`](Volume): the public face (`start`, `status`, `promote`, `demote`, `connect`,
//!   `disconnect`, `stop`); `roles`: the promotion rules and the NBD server's life; `reach`:
//!   a promotion without the link tries the peer first.
//! - `connect`: dial or accept, authenticate, back off; `handshake`: Hellos, the plan
//!   (`decide`, pure), bitmap exchange; `session`: the connected link's one task; `applier`:
//!   the peer's writes applied in order; `resync`: the SyncTarget's walk (pure).
//! - [`VolumeExport`]: the write path (activity log, local write, replication, acks);
//!   `overlap`: overlapping writes in order; `disk`: the backing file; `detach`: going on
//!   with the peer's copy after a local I/O error; `meta_thread`: the metadata's own thread.
//! - `verify`: online verify against the peer's copy.
//! - [`status`](VolumeStatus): the snapshot, counters and events.

mod applier;
mod connect;
mod counting;
mod decide;
mod detach;
mod direct;
mod disk;
mod error;
mod export;
mod handshake;
mod inner;
mod link;
mod meta_thread;
mod overlap;
mod reach;
mod resync;
mod roles;
mod session;
mod status;
mod verify;
mod volume;
mod writeback;

pub use error::VolumeError;
pub use export::VolumeExport;
pub use status::{
    ConnState, ResyncProgress, VerifyReport, VolumeCounters, VolumeEvent, VolumeStatus,
};
pub use volume::Volume;
