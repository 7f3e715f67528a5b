//! What a node keeps in `state_dir/volume/NAME/` about its copy of a replicated volume, after
//! DRBD 8.4's metadata: generation identifiers, the out-of-sync bitmap and the activity log,
//! persisted so that a crash never forgets a block that differs from the peer.
//!
//! - [`generation`] (pure): [`GenerationIds`] and their transitions (new generation on
//!   promotion while disconnected or `--force`, resync start and finish, skipping the initial
//!   sync of a brand-new pair) and [`compare`], DRBD's `drbd_uuid_compare` plus the disk-state
//!   step of `drbd_sync_handshake`: [`SyncDecision`] `NoSync`, `BecomeSyncSource { full }`,
//!   `BecomeSyncTarget { full }`, `SplitBrain` (with what split-brain policies need),
//!   `Unrelated`, `SourceInconsistent`.
//! - [`bitmap`] (pure): [`Bitmap`], one bit per 4 KiB block: `set_range` rounds out,
//!   `clear_range` rounds in, `dirty_ranges` in disk order for the resync, `union_bytes` with the
//!   peer's, `to_bytes`/`from_bytes`.
//! - [`activity_log`]: [`ActivityLog`], the 4 MiB extents that may hold writes in flight,
//!   logged durably before a write proceeds (`begin_write`/`end_write`, bounded, LRU eviction
//!   behind a hook), and `recover` after a crash; [`HotExtents`] starts writes into extents
//!   already logged from any thread.
//! - [`store`]: [`Meta`], the directory: `create(dir, size, disk)`, `open(dir)` (detects an
//!   unclean shutdown and marks the logged extents out of sync), `begin_write`/`end_write`,
//!   `mark_out_of_sync`/`mark_in_sync`, `merge_peer_bitmap`, `set_all_out_of_sync`,
//!   `update(|state| ..)` for ids, roles and disk states, `checkpoint`, `close`.
//!
//! All I/O is synchronous `std::fs` with fsync: the volume task owns its `Meta` and calls it
//! from a blocking context (`spawn_blocking` or a dedicated thread). Errors are [`MetaError`],
//! naming the file; corrupt metadata is refused, never silently reset.

pub mod activity_log;
pub mod bitmap;
pub(crate) mod durable;
pub mod error;
pub mod generation;
pub mod store;

pub use activity_log::{ActivityLog, HotExtents};
pub use bitmap::Bitmap;
pub use error::MetaError;
pub use generation::{DiskState, GenerationIds, Side, SplitBrain, SyncDecision, compare};
pub use store::{Meta, Recovery, State};
