//! The two-way directory sync of `[sync.NAME]`: what rsync+inotify and lsyncd do one way, done
//! both ways, so either web server can take uploads.
//!
//! - [`config`]: `[sync.NAME]` as users write it, validated.
//! - [`index`]: each node's persistent record of its tree (sizes, mtimes, modes, hashes, version
//!   vectors), so a restart knows what changed while it was down and conflicts are detected.
//! - [`watch`]: inotify watching with batching, and a rescan when the kernel's queue overflows.
//! - [`owner`]: files' owners and groups, and their names on the wire.
//! - [`proto`]: the messages between peers (Hello, index deltas, contents and rsync deltas).
//! - [`tls`]: the optional TLS of the peer links.
//! - [`engine`]: a running set ([`SyncSet`]): the watcher into the index, the peer links, and
//!   the application of the peers' changes.

pub mod config;
pub mod engine;
pub mod index;
pub mod owner;
pub mod proto;
pub mod tls;
pub mod watch;

pub use engine::{
    CatchUp, PeerStatus, ScanHook, SyncCounters, SyncError, SyncEvent, SyncOptions, SyncSet,
    SyncStatus, describe_scan,
};
