//! The replicated volume (DRBD-like, exported over NBD) and the two-way directory sync.
//!
//! - [`nbd`]: an NBD server (fixed newstyle, structured replies) over any [`nbd::Export`].
//! - [`volume`]: the replicated volume: its config, its on-disk metadata (generation ids, the
//!   out-of-sync bitmap, the activity log), the peer protocol and the replication engine.
//! - [`sync`]: the two-way directory sync (rsync+inotify done right).

mod buffers;
mod config_check;
mod dirty_pages;
pub mod nbd;
mod positional;
pub mod sync;
pub mod volume;

#[cfg(test)]
mod test_support;
