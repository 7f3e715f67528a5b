//! Read buffers that come back. The messages decoded from a buffer point into it (no copy),
//! so it cannot be read into again while any of them lives; when the last one is dropped (the
//! receiver has written the data), the buffer returns to be filled again. Without this, every
//! megabyte read would be fresh memory: mapped, faulted in page by page, unmapped.
//!
//! The buffers go back to one pool for the process, not to the reader that took them: a link
//! that ends leaves its buffers to the next one. Freed to the allocator instead, they would
//! stay in the process all the same (a freed 2 MiB mapping raises glibc's mmap threshold, so
//! later ones come from its arenas and are kept there) while each new link took fresh ones:
//! a node grew by two buffers each time its peer reconnected.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

/// The size of the buffers that come back: a whole-file Data frame (half of
/// [`super::MAX_DATA`]) and more. A larger frame gets a buffer of its own, not kept.
pub(super) const BUFFER: usize = 2 * 1024 * 1024 + 64 * 1024;

/// How many spare buffers the pool keeps at most: the working set of a few busy links.
const KEEP: usize = 8;

/// The spare buffers.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of at least `size` initialized octets: a spare one if it is large enough, else a
/// new one (zeroed by the kernel, not by a pass over it).
pub(super) fn take(size: usize) -> Vec<u8> {
    if size <= BUFFER
        && let Some(buf) = spare().pop()
    {
        return buf;
    }
    vec![0; size.max(BUFFER)]
}

/// `buf[..len]`, shared: `buf` comes back once every slice of it is dropped.
pub(super) fn share(buf: Vec<u8>, len: usize) -> Bytes {
    Bytes::from_owner(Returning { buf, len })
}

/// Returns a buffer no longer used to the pool, if it is a standard one and the pool has room.
pub(super) fn give_back(buf: Vec<u8>) {
    if buf.len() == BUFFER {
        let mut spare = spare();
        if spare.len() < KEEP {
            spare.push(buf);
        }
    }
}

/// The pool; a panic while it was held leaves a list of buffers, still usable.
fn spare() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
    SPARE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A shared buffer's owner, which gives it back when dropped.
struct Returning {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// Whether the pool holds the buffer at `ptr` (other tests of the process share the pool).
    fn spare_holds(ptr: *const u8) -> bool {
        spare().iter().any(|buf| buf.as_ptr() == ptr)
    }

    // Input: a buffer shared and sliced, the slices dropped one after the other. Output: it
    // comes back only after the last, with its octets (nothing is zeroed again); a larger one
    // is not kept, and the pool keeps at most KEEP.
    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        let mut buf = take(10);
        assert_eq!(buf.len(), BUFFER);
        let ptr = buf.as_ptr();
        buf[..3].copy_from_slice(b"abc");
        let shared = share(buf, 3);
        let (a, b) = (shared.slice(0..1), shared.slice(1..3));
        drop(shared);
        drop(a);
        assert!(!spare_holds(ptr));
        assert_eq!(&b[..], b"bc");
        drop(b);
        assert!(spare_holds(ptr));
        let back = std::iter::repeat_with(|| take(10))
            .take(KEEP + 1)
            .find(|buf| buf.as_ptr() == ptr)
            .unwrap();
        assert_eq!(&back[..3], b"abc");

        let large = take(BUFFER + 1);
        assert_eq!(large.len(), BUFFER + 1);
        let ptr = large.as_ptr();
        drop(share(large, 0));
        assert!(!spare_holds(ptr));

        for _ in 0..=KEEP {
            give_back(vec![0; BUFFER]);
        }
        assert_eq!(spare().len(), KEEP);
    }
}
