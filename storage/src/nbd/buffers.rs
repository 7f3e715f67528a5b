//! The volume's megabyte buffers (see [`crate::buffers`]): an NBD write's payload, and the
//! replication link's frame that carries it to the peer, handed on to the disk, the socket and
//! the applier without a copy.

use crate::buffers::{ALIGN, Pool};

/// Payloads below this are allocated as they come: a small write taking a whole buffer from an
/// empty pool would have it zeroed from the arena.
pub(crate) const POOLED_FROM: usize = 128 << 10;

/// A 1 MiB write and a replication frame's fixed part, placed to be written with `O_DIRECT`
/// (see [`crate::buffers::aligned_start`]); a stream of megabyte writes takes one as another
/// comes back, so few spares are needed (each stays resident).
pub(crate) static WRITES: Pool = Pool::new((1 << 20) + 4096 + ALIGN, 4);

/// A large read's data, read from the disk with `O_DIRECT` (see
/// [`crate::volume::engine::direct`]) and handed to the socket without a copy.
pub(crate) static READS: Pool = Pool::new((1 << 20) + ALIGN, 4);
