//! The replicated volume (DRBD-like, exported over NBD) and, later, the two-way directory sync.
//!
//! - [`nbd`]: an NBD server (fixed newstyle, structured replies) over any [`nbd::Export`].
//! - [`volume`]: the replicated volume: its config, its on-disk metadata (generation ids, the
//!   out-of-sync bitmap, the activity log) and the peer protocol.

pub mod nbd;
pub mod volume;
