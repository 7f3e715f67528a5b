//! The backing store's second descriptor, opened with `O_DIRECT` (`direct_io`, on by default):
//! large reads and writes of whole blocks go straight between the disk and Fulcrum's buffers,
//! as DRBD's go to its lower device, instead of through a copy in the page cache. That copy was
//! the largest cost of a replicated write in `fulcrum-bench nbd` (30% of all samples on the
//! primary's writer thread), and the client's page cache above the export holds the same data
//! already.
//!
//! Only requests of [`DIRECT_FROM`] or more whose offset and length are whole pages go direct:
//! small writes would each wait for the disk, where the page cache answers at once, and a
//! page-aligned range cannot share a page with a buffered write beside it, whose dirty page a
//! direct write could otherwise fail to invalidate. Writes also need their buffer aligned (see
//! [`crate::buffers::aligned_start`]). The rest, and zeroing, use the page cache, which the
//! kernel keeps coherent with the direct requests: a direct read first writes back the dirty
//! pages of its range, and a direct write drops the cached ones.
//!
//! A file system that refuses `O_DIRECT`, when opened or on a request (`EINVAL`), gets a warning
//! and the page cache from then on.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tracing::warn;

use crate::buffers::ALIGN;
use crate::nbd::buffers::{POOLED_FROM, READS};

/// The smallest request that goes direct: the size from which payloads get a pooled, aligned
/// buffer.
pub(crate) const DIRECT_FROM: usize = POOLED_FROM;

/// Linux's EINVAL: what a file system that cannot do a request directly returns.
const EINVAL: i32 = 22;

#[derive(Debug)]
pub(crate) struct Direct {
    file: Option<File>,
    /// Cleared when the file system refused a request after all.
    usable: AtomicBool,
    /// Offsets and lengths are multiples of this: [`ALIGN`], or the page size where larger.
    block: usize,
    /// For the log lines.
    path: PathBuf,
}

impl Direct {
    /// Opens `path` for direct requests, if `wanted` and the file system allows it.
    pub(crate) fn open(path: &Path, wanted: bool) -> io::Result<Direct> {
        let file = if wanted {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
            {
                Ok(file) => Some(file),
                Err(e) if e.raw_os_error() == Some(EINVAL) => {
                    warn!(path = %path.display(), "the file system does not take O_DIRECT: the volume uses the page cache");
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        Ok(Direct {
            usable: AtomicBool::new(file.is_some()),
            file,
            block: ALIGN.max(rustix::param::page_size()),
            path: path.to_owned(),
        })
    }

    /// Whether the descriptor was opened (test support).
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// The descriptor for `[offset, offset + len)`, if a request there can go direct.
    fn for_range(&self, offset: u64, len: usize) -> Option<&File> {
        let whole = len >= DIRECT_FROM
            && len.is_multiple_of(self.block)
            && offset.is_multiple_of(self.block as u64);
        if whole && self.usable.load(Ordering::Relaxed) {
            self.file.as_ref()
        } else {
            None
        }
    }

    /// Writes `data` at `offset` past the page cache if it can (one `pwrite`): whole pages
    /// from an aligned buffer. Returns how many of its first octets were written: the caller
    /// writes the rest through the page cache (all of it when the write could not go direct;
    /// after a short write, which a full disk gives, the rest reports the error).
    pub(crate) fn write(&self, offset: u64, data: &[u8]) -> io::Result<usize> {
        let Some(file) = self
            .for_range(offset, data.len())
            .filter(|_| data.as_ptr().align_offset(ALIGN) == 0)
        else {
            return Ok(0);
        };
        file.write_at(data, offset)
            .or_else(|e| self.failed(e).map(|()| 0))
    }

    /// Reads `len` octets at `offset` past the page cache if it can, into a pooled buffer;
    /// `None`: the caller reads them through the page cache.
    pub(crate) fn read(&self, offset: u64, len: usize) -> io::Result<Option<Bytes>> {
        let Some(file) = self.for_range(offset, len) else {
            return Ok(None);
        };
        let (mut buf, data) = READS.take_aligned(len, 0);
        let fallback = match file.read_at(&mut buf[data.clone()], offset) {
            Ok(n) if n == len => return Ok(Some(READS.share(buf, data))),
            // Short only at the end of the file: the cache's read reports it.
            Ok(_) => Ok(None),
            Err(e) => self.failed(e).map(|()| None),
        };
        READS.give_back(buf);
        fallback
    }

    /// A request's error: EINVAL means the file system will not do it directly (then stop
    /// trying, and let the caller retry through the cache), EINTR that a signal came first
    /// (retried through the cache, as the cache's calls retry it); anything else is the disk's.
    fn failed(&self, error: io::Error) -> io::Result<()> {
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(());
        }
        if error.raw_os_error() != Some(EINVAL) {
            return Err(error);
        }
        if self.usable.swap(false, Ordering::Relaxed) {
            warn!(path = %self.path.display(), "a direct request was refused (EINVAL): the volume uses the page cache from now on");
        }
        Ok(())
    }
}
