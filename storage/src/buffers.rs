//! Buffers that come back. A large message is read into a buffer and handed on as [`Bytes`]
//! slices of it (to the disk, to the socket, to the fetcher), without a copy; when the last
//! slice is dropped, the buffer returns to its [`Pool`] instead of to the allocator. Without
//! this every megabyte read was fresh memory, faulted in page by page and zeroed (a fifth of
//! the volume secondary's CPU in `fulcrum-bench nbd`).
//!
//! A buffer can hold its data at an offset ([`aligned_start`]), so that the data the disk writes
//! starts on an [`ALIGN`] boundary, as `O_DIRECT` needs.
//!
//! A pool is a `static`, one for the process: a connection that ends leaves its buffers to the
//! next one. It keeps few: each spare buffer stays resident for the life of the process (the
//! soak saw a node's RSS step up by megabytes when a pool kept eight 2 MiB buffers).

use std::ops::Range;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

/// What `O_DIRECT` asks of a write's buffer address, file offset and length: a multiple of the
/// disk's logical block size, 512 or 4096 octets on the disks a volume sits on.
pub(crate) const ALIGN: usize = 4096;

/// Where in `buf` to put a message whose data begins `lead` octets into it, so that the data
/// starts on an [`ALIGN`] boundary; less than [`ALIGN`], which a buffer taken for the message
/// must leave room for.
pub(crate) fn aligned_start(buf: &[u8], lead: usize) -> usize {
    buf.as_ptr().wrapping_add(lead).align_offset(ALIGN)
}

/// Spare buffers of one size.
#[derive(Debug)]
pub(crate) struct Pool {
    /// The size of the buffers kept: a smaller request gets one of these, a larger one a
    /// buffer of its own that is not kept.
    size: usize,
    /// How many spare buffers are kept at most.
    keep: usize,
    spare: Mutex<Vec<Vec<u8>>>,
}

impl Pool {
    pub(crate) const fn new(size: usize, keep: usize) -> Self {
        Self {
            size,
            keep,
            spare: Mutex::new(Vec::new()),
        }
    }

    /// A buffer of at least `size` initialized octets: a spare one if it is large enough, else
    /// a new one (zeroed by the kernel when it is fresh memory, not by a pass over it).
    pub(crate) fn take(&self, size: usize) -> Vec<u8> {
        if size <= self.size
            && let Some(buf) = self.spare().pop()
        {
            return buf;
        }
        vec![0; size.max(self.size)]
    }

    /// A buffer for a message of `len` octets whose data begins `lead` octets into it, and
    /// the range to put the message at so that its data starts on an [`ALIGN`] boundary.
    pub(crate) fn take_aligned(&self, len: usize, lead: usize) -> (Vec<u8>, Range<usize>) {
        let buf = self.take(len + ALIGN);
        let start = aligned_start(&buf, lead);
        (buf, start..start + len)
    }

    /// `buf[range]`, shared: `buf` comes back once every slice of it is dropped.
    pub(crate) fn share(&'static self, buf: Vec<u8>, range: Range<usize>) -> Bytes {
        Bytes::from_owner(Returning {
            buf,
            range,
            pool: self,
        })
    }

    /// Takes back a buffer no longer used, if it is of the size kept and there is room.
    pub(crate) fn give_back(&self, buf: Vec<u8>) {
        if buf.len() == self.size {
            let mut spare = self.spare();
            if spare.len() < self.keep {
                spare.push(buf);
            }
        }
    }

    /// A panic while the list was held leaves a list of buffers, still usable.
    fn spare(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        self.spare.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A shared buffer's owner, which gives it back when dropped.
struct Returning {
    buf: Vec<u8>,
    range: Range<usize>,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    static POOL: Pool = Pool::new(1024, 2);

    fn spare_holds(ptr: *const u8) -> bool {
        POOL.spare().iter().any(|buf| buf.as_ptr() == ptr)
    }

    // Input: a buffer shared and sliced, the slices dropped one after the other. Output: it
    // comes back only after the last, with its octets (nothing is zeroed again); a larger one
    // is not kept, and the pool keeps at most `keep`.
    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        let mut buf = POOL.take(10);
        assert_eq!(buf.len(), 1024);
        let ptr = buf.as_ptr();
        buf[..3].copy_from_slice(b"abc");
        let shared = POOL.share(buf, 0..3);
        let (a, b) = (shared.slice(0..1), shared.slice(1..3));
        drop(shared);
        drop(a);
        assert!(!spare_holds(ptr));
        assert_eq!(&b[..], b"bc");
        drop(b);
        assert!(spare_holds(ptr));
        let back = POOL.take(10);
        assert_eq!((back.as_ptr(), &back[..3]), (ptr, &b"abc"[..]));

        let large = POOL.take(1025);
        assert_eq!(large.len(), 1025);
        let ptr = large.as_ptr();
        drop(POOL.share(large, 0..0));
        assert!(!spare_holds(ptr));

        for _ in 0..3 {
            POOL.give_back(vec![0; 1024]);
        }
        assert_eq!(POOL.spare().len(), 2);
    }

    // Input: buffers at every address modulo ALIGN that matters, and leads of 0, 8 and 17
    // octets. Output: the data placed at the returned start plus the lead sits on an ALIGN
    // boundary, and the start leaves it inside a buffer ALIGN octets longer than the message.
    #[test]
    fn data_placed_at_the_aligned_start_is_aligned() {
        let buf = vec![0u8; 3 * ALIGN];
        for skew in [0, 1, 8, 17, ALIGN - 1] {
            let slice = &buf[skew..];
            for lead in [0, 8, 17] {
                let start = aligned_start(slice, lead);
                assert!(start < ALIGN, "skew {skew}, lead {lead}: start {start}");
                let data = slice[start + lead..].as_ptr();
                assert_eq!(data.align_offset(ALIGN), 0, "skew {skew}, lead {lead}");
            }
        }
    }
}
