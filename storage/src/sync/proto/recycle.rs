//! The sync reader's buffers (see [`crate::buffers`]): the messages decoded from a buffer are
//! slices of it, and it comes back once the receiver has written the data.

use crate::buffers::Pool;

/// The size of the buffers that come back: a whole-file Data frame (half of
/// [`super::MAX_DATA`]) and more. A larger frame gets a buffer of its own, not kept.
pub(super) const BUFFER: usize = 2 * 1024 * 1024 + 64 * 1024;

/// A busy link's reader keeps several in turn (the fetcher still writes from one while the
/// next fills).
pub(super) static READS: Pool = Pool::new(BUFFER, 8);
