//! Read buffers that come back. The messages decoded from a buffer point into it (no copy),
//! so it cannot be read into again while any of them lives; when the last one is dropped (the
//! receiver has written the data), the buffer returns to its reader to be filled again. Without
//! this, every megabyte read would be fresh memory: mapped, faulted in page by page, unmapped.

use std::sync::mpsc::{Receiver, Sender, channel};

use bytes::Bytes;

/// The size of the buffers that come back: a whole-file Data frame (half of
/// [`super::MAX_DATA`]) and more. A larger frame gets a buffer of its own, not kept.
pub(super) const BUFFER: usize = 2 * 1024 * 1024 + 64 * 1024;

/// One reader's buffers. Only as many exist as are in use at once (the messages in the
/// session's queues), plus one.
#[derive(Debug)]
pub(super) struct Recycler {
    spent: Receiver<Vec<u8>>,
    home: Sender<Vec<u8>>,
}

impl Recycler {
    pub(super) fn new() -> Self {
        let (home, spent) = channel();
        Self { spent, home }
    }

    /// A buffer of at least `size` initialized octets: one that came back if it is large
    /// enough, else a new one (zeroed by the kernel, not by a pass over it).
    pub(super) fn take(&self, size: usize) -> Vec<u8> {
        if size <= BUFFER
            && let Ok(buf) = self.spent.try_recv()
        {
            return buf;
        }
        vec![0; size.max(BUFFER)]
    }

    /// `buf[..len]`, shared: `buf` comes back once every slice of it is dropped.
    pub(super) fn share(&self, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(Returning {
            buf,
            len,
            home: self.home.clone(),
        })
    }
}

/// A shared buffer's owner, which sends it home when dropped.
struct Returning {
    buf: Vec<u8>,
    len: usize,
    home: Sender<Vec<u8>>,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // Only standard ones are kept; the reader may be gone, and the buffer with it.
        if buf.len() == BUFFER {
            let _ = self.home.send(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: a buffer shared and sliced, the slices dropped one after the other. Output: it
    // comes back only after the last, with its octets (nothing is zeroed again).
    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        let recycler = Recycler::new();
        let mut buf = recycler.take(10);
        assert_eq!(buf.len(), BUFFER);
        buf[..3].copy_from_slice(b"abc");
        let shared = recycler.share(buf, 3);
        let (a, b) = (shared.slice(0..1), shared.slice(1..3));
        drop(shared);
        drop(a);
        assert!(recycler.spent.try_recv().is_err());
        assert_eq!(&b[..], b"bc");
        drop(b);
        let back = recycler.take(10);
        assert_eq!(&back[..3], b"abc");
        // A large one is not kept.
        let large = recycler.take(BUFFER + 1);
        assert_eq!(large.len(), BUFFER + 1);
        drop(recycler.share(large, 0));
        assert!(recycler.spent.try_recv().is_err());
    }
}
