//! The local copy of the volume: the backing file or block device, read and written with
//! `pread`/`pwrite` on blocking threads (tokio's file API would copy every buffer once more).
//! Tests can make ranges of it fail like a dying disk ([`LocalDisk::inject_errors`]).
//!
//! The primary's writes go to one thread of the disk's own, one after another: the kernel
//! serializes buffered writes to a file on its inode lock anyway, and writers from the
//! blocking pool waited for it spinning, a core's worth of CPU taken from the peer and the
//! client in `fulcrum-bench nbd` (a fifth of the primary's time, 18% in `rwsem_spin_on_owner`).
//!
//! Large reads and writes of whole pages go past the page cache, through a second descriptor
//! ([`super::direct`], `direct_io`).
//!
//! Buffered writes are sent on their way to the disk every few MiB ([`super::writeback`]), so
//! that a FLUSH does not find the whole burst still in the page cache.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::positional::{self, punch_hole_at, read_at, write_at, write_zeroes_at};
use crate::volume::config::{Backing, BackingKind};
use crate::volume::peer::Digest;

use super::direct::Direct;
use super::writeback::Writeback;

/// Linux's EIO: what a failing disk returns.
const EIO: i32 = 5;

/// How a range is made to read back as zeroes, on both nodes alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zeroing {
    /// Zeroes written, the space kept allocated (NBD WRITE_ZEROES, which may carry NO_HOLE).
    Allocated,
    /// A hole punched where the backing can, its space freed (NBD TRIM).
    Hole,
}

/// The backing store; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct LocalDisk {
    file: Arc<File>,
    direct: Arc<Direct>,
    faults: Arc<Faults>,
    writeback: Arc<Writeback>,
    /// The writer thread's queue; the thread ends when the last clone is dropped.
    writes: mpsc::UnboundedSender<Write>,
}

/// A write for the writer thread, and where its result goes.
#[derive(Debug)]
struct Write {
    offset: u64,
    data: Bytes,
    done: oneshot::Sender<io::Result<()>>,
}

/// Injected failures (test support): reads and writes touching one of `ranges` fail with EIO.
#[derive(Debug, Default)]
struct Faults {
    /// Whether `ranges` is non-empty: the only cost on the I/O path when no test armed it.
    armed: AtomicBool,
    // A std mutex: only taken once a test armed a fault, never across an await.
    ranges: Mutex<Vec<Range<u64>>>,
    /// Every flush fails.
    flushes: AtomicBool,
}

impl Faults {
    fn check(&self, offset: u64, len: u64) -> io::Result<()> {
        if !self.armed.load(Ordering::Acquire) {
            return Ok(());
        }
        let end = offset.saturating_add(len);
        let ranges = self.ranges.lock().unwrap_or_else(|p| p.into_inner());
        if ranges.iter().any(|r| r.start < end && offset < r.end) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        Ok(())
    }
}

/// The SHA-256 of `data` (checksum-based resync, online verify).
pub(crate) fn digest(data: &[u8]) -> Digest {
    let mut out = [0; crate::volume::peer::DIGEST_LEN];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

impl LocalDisk {
    /// Opens the backing, creating a regular file of `backing.size` zero bytes when it does not
    /// exist. Returns whether it was created: only then are its contents known (all zeroes).
    /// With `direct_io`, large requests of whole pages go past the page cache where the file
    /// system allows.
    pub(crate) fn open_or_create(
        backing: &Backing,
        direct_io: bool,
    ) -> io::Result<(LocalDisk, bool)> {
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&backing.path)
        };
        let (file, created) = match backing.kind {
            BackingKind::BlockDevice => (open()?, false),
            BackingKind::File | BackingKind::NewFile => {
                match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&backing.path)
                {
                    Ok(file) => {
                        file.set_len(backing.size)?;
                        file.sync_all()?;
                        (file, true)
                    }
                    // Created by an earlier start: the config was built before it existed.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (open()?, false),
                    Err(e) => return Err(e),
                }
            }
        };
        if backing.kind != BackingKind::BlockDevice && file.metadata()?.len() < backing.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("smaller than the configured {} bytes", backing.size),
            ));
        }
        let file = Arc::new(file);
        let direct = Arc::new(Direct::open(&backing.path, direct_io)?);
        let (writes, queue) = mpsc::unbounded_channel();
        let disk = LocalDisk {
            direct,
            writeback: Arc::new(Writeback::start(Arc::clone(&file))?),
            file,
            faults: Arc::default(),
            writes,
        };
        let writer = disk.writer();
        std::thread::Builder::new()
            .name("volume-writes".to_owned())
            .spawn(move || writer.run(queue))?;
        Ok((disk, created))
    }

    /// What the writer thread holds: not a [`LocalDisk`], whose queue would keep it alive.
    fn writer(&self) -> Writer {
        Writer {
            file: Arc::clone(&self.file),
            direct: Arc::clone(&self.direct),
            faults: Arc::clone(&self.faults),
            writeback: Arc::clone(&self.writeback),
        }
    }

    /// From now on, reads and writes touching `[offset, offset + len)` fail with EIO, as a
    /// failing disk's would. Test support only (see [`crate::volume::Volume::inject_local_io_errors`]).
    pub(crate) fn inject_errors(&self, offset: u64, len: u64) {
        let mut ranges = self.faults.ranges.lock().unwrap_or_else(|p| p.into_inner());
        ranges.push(offset..offset.saturating_add(len));
        self.faults.armed.store(true, Ordering::Release);
    }

    pub(crate) async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let disk = self.clone();
        self.blocking(move |_| disk.read_now(offset, len)).await
    }

    /// Writes `data` at `offset`; with `sync`, returns once it is on stable storage.
    pub(crate) async fn write(&self, offset: u64, data: Bytes, sync: bool) -> io::Result<()> {
        if sync {
            // Waits for the disk: on the blocking pool, not holding up the writes queued behind.
            let disk = self.clone();
            return self
                .blocking(move |_| disk.write_now(offset, &data, true))
                .await;
        }
        let (done, result) = oneshot::channel();
        let gone = || io::Error::other("the volume's writer thread is gone");
        self.writes
            .send(Write { offset, data, done })
            .map_err(|_| gone())?;
        result.await.unwrap_or_else(|_| Err(gone()))
    }

    pub(crate) async fn zero(
        &self,
        zeroing: Zeroing,
        offset: u64,
        len: u64,
        sync: bool,
    ) -> io::Result<()> {
        let disk = self.clone();
        self.blocking(move |_| disk.zero_now(zeroing, offset, len, sync))
            .await
    }

    /// Reads `[offset, offset + len)` and returns the digest of each `block`-sized piece of it
    /// (the last one may be shorter), hashed on the blocking thread.
    pub(crate) async fn digests(
        &self,
        offset: u64,
        len: usize,
        block: usize,
    ) -> io::Result<Vec<Digest>> {
        let disk = self.clone();
        self.blocking(move |_| disk.digests_now(offset, len, block))
            .await
    }

    /// From now on, every flush fails with EIO, as after a lost writeback. Test support only
    /// (see [`crate::volume::Volume::inject_local_flush_errors`]).
    pub(crate) fn inject_flush_errors(&self) {
        self.faults.flushes.store(true, Ordering::Release);
    }

    pub(crate) async fn sync(&self) -> io::Result<()> {
        if self.faults.flushes.load(Ordering::Acquire) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.blocking(|file| file.sync_data()).await
    }

    // The same, blocking the calling thread: for a thread of its own (the applier), which
    // would otherwise hand every write to the blocking pool and wait to be woken.

    pub(crate) fn read_now(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        self.faults.check(offset, len as u64)?;
        match self.direct.read(offset, len)? {
            Some(data) => Ok(data),
            None => read_at(&self.file, offset, len),
        }
    }

    pub(crate) fn write_now(&self, offset: u64, data: &[u8], sync: bool) -> io::Result<()> {
        self.writer().write(offset, data, sync)
    }

    /// Makes the range read back as zeroes: written, or for a trim punched out where the
    /// backing can, as `zeroing` says.
    pub(crate) fn zero_now(
        &self,
        zeroing: Zeroing,
        offset: u64,
        len: u64,
        sync: bool,
    ) -> io::Result<()> {
        self.faults.check(offset, len)?;
        let dirtied = match zeroing {
            Zeroing::Allocated => write_zeroes_at(&self.file, offset, len, sync).map(|()| true)?,
            // Where no hole could be punched, the zeroes were written after all.
            Zeroing::Hole => !punch_hole_at(&self.file, offset, len, sync)?,
        };
        if dirtied && !sync {
            // Dirty pages, for the kick like any write's.
            self.writeback.wrote(len);
        }
        Ok(())
    }

    pub(crate) fn digests_now(
        &self,
        offset: u64,
        len: usize,
        block: usize,
    ) -> io::Result<Vec<Digest>> {
        let buf = self.read_now(offset, len)?;
        Ok(buf.chunks(block.max(1)).map(digest).collect())
    }

    pub(crate) fn sync_now(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    async fn blocking<T, F>(&self, op: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&File) -> io::Result<T> + Send + 'static,
    {
        positional::blocking(&self.file, op)
            .await
            .map_err(io::Error::other)?
    }
}

/// The writer thread's side of the disk.
struct Writer {
    file: Arc<File>,
    direct: Arc<Direct>,
    faults: Arc<Faults>,
    writeback: Arc<Writeback>,
}

impl Writer {
    /// Writes what is queued, in order, until every [`LocalDisk`] is dropped.
    fn run(self, mut queue: mpsc::UnboundedReceiver<Write>) {
        while let Some(Write { offset, data, done }) = queue.blocking_recv() {
            // Done either way; an error here only means nobody waits for the result any more.
            let _ = done.send(self.write(offset, &data, false));
        }
    }

    fn write(&self, offset: u64, data: &[u8], sync: bool) -> io::Result<()> {
        self.faults.check(offset, data.len() as u64)?;
        let done = self.direct.write(offset, data)?;
        let (offset, rest) = (offset + done as u64, &data[done..]);
        if !rest.is_empty() {
            write_at(&self.file, offset, rest, false)?;
            if !sync {
                // Only what went through the page cache is left for the writeback kick.
                self.writeback.wrote(rest.len() as u64);
            }
        }
        if sync {
            // Either descriptor's fdatasync covers the whole file.
            self.file.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::buffers::ALIGN;
    use crate::volume::engine::writeback::KICK_EVERY;

    /// tmpfs keeps its pages in memory: nothing there is ever written back.
    const TMPFS_MAGIC: rustix::fs::FsWord = 0x0102_1994;
    /// overlayfs keeps a file's pages in the file below, out of the kick's reach.
    const OVERLAYFS_MAGIC: rustix::fs::FsWord = 0x794c_7630;

    /// A temp dir on a filesystem that writes its own pages back to a disk: the system's temp
    /// dir, or /var/tmp where that is not.
    fn disk_backed_dir() -> Option<tempfile::TempDir> {
        [std::env::temp_dir(), "/var/tmp".into()]
            .into_iter()
            .filter_map(|parent| tempfile::tempdir_in(parent).ok())
            .find(|dir| {
                let dir_file = File::open(dir.path()).expect("the temp dir opens");
                let fs = rustix::fs::fstatfs(&dir_file).expect("statfs of the temp dir");
                fs.f_type != TMPFS_MAGIC && fs.f_type != OVERLAYFS_MAGIC
            })
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[tokio::test]
    async fn buffered_writes_are_on_their_way_to_the_disk_before_a_flush() {
        use crate::dirty_pages::cached_and_dirty;

        let Some(dir) = disk_backed_dir() else {
            eprintln!(
                "skipped: no temp dir outside tmpfs and overlayfs, where the kick cannot act"
            );
            return;
        };
        const WRITTEN: u64 = 8 * KICK_EVERY;
        let backing = Backing {
            path: dir.path().join("volume.img"),
            kind: BackingKind::NewFile,
            size: WRITTEN,
        };
        // Buffered: direct writes leave nothing to kick.
        let (disk, created) =
            LocalDisk::open_or_create(&backing, false).expect("the backing opens");
        assert!(created);
        let chunk = Bytes::from(vec![0x5a; 1 << 20]);
        for offset in (0..WRITTEN).step_by(chunk.len()) {
            disk.write(offset, chunk.clone(), false)
                .await
                .expect("write");
        }
        // The kicker thread runs on its own time. Without it, all of the file would stay dirty
        // for the kernel's 30 s expiry: 64 MiB is far below its background threshold.
        let patience = Duration::from_secs(10);
        let deadline = Instant::now() + patience;
        loop {
            let (cached, dirty) = match cached_and_dirty(&disk.file) {
                Ok(counts) => counts,
                Err(error) => {
                    eprintln!("skipped: cachestat(2) (Linux 6.5) counts the dirty pages: {error}");
                    return;
                }
            };
            assert!(cached > 0, "the writes are in the page cache");
            if dirty * 4 <= cached {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{dirty} of {cached} cached pages are still dirty {patience:?} after {WRITTEN} bytes were written"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `data` in a buffer of its own whose first octet is on an [`ALIGN`] boundary.
    fn aligned(data: &[u8]) -> Bytes {
        let mut buf = vec![0; data.len() + ALIGN];
        let start = crate::buffers::aligned_start(&buf, 0);
        buf[start..start + data.len()].copy_from_slice(data);
        Bytes::from(buf).slice(start..start + data.len())
    }

    /// `data` starting one octet past an [`ALIGN`] boundary.
    fn misaligned(data: &[u8]) -> Bytes {
        let buf = aligned(&[&[0][..], data].concat());
        buf.slice(1..)
    }

    // Input: 1 MiB written from an aligned buffer at an aligned offset, with direct_io on and
    // off, on a disk-backed file system; then 1 MiB from a misaligned buffer; then both read.
    // Output: with it on, the page cache holds none of the first write (it went past it), nor
    // of the read; with it off, the write is cached. A misaligned buffer is written through
    // the cache either way, and everything reads back.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[tokio::test]
    async fn whole_aligned_blocks_are_written_past_the_page_cache() {
        use crate::dirty_pages::cached_and_dirty;

        let Some(dir) = disk_backed_dir() else {
            eprintln!(
                "skipped: no temp dir outside tmpfs and overlayfs, whose page cache O_DIRECT does not bypass"
            );
            return;
        };
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        for direct_io in [true, false] {
            let backing = Backing {
                path: dir.path().join(format!("direct-{direct_io}.img")),
                kind: BackingKind::NewFile,
                size: 4 << 20,
            };
            let (disk, _) = LocalDisk::open_or_create(&backing, direct_io).expect("opens");
            disk.write(1 << 20, aligned(&data), false)
                .await
                .expect("write");
            let (cached, _) = match cached_and_dirty(&disk.file) {
                Ok(counts) => counts,
                Err(error) => {
                    eprintln!("skipped: cachestat(2) (Linux 6.5) counts the cached pages: {error}");
                    return;
                }
            };
            if direct_io {
                assert_eq!(cached, 0, "a direct write leaves no page in the cache");
            } else {
                assert_eq!(cached, 256, "a buffered write of 1 MiB caches 256 pages");
            }
            let (before, _) = cached_and_dirty(&disk.file).expect("cachestat");
            disk.write(2 << 20, misaligned(&data), false)
                .await
                .expect("write");
            let (after, _) = cached_and_dirty(&disk.file).expect("cachestat");
            assert_eq!(
                after - before,
                256,
                "a misaligned buffer is written through the cache"
            );
            let read = disk.read(1 << 20, 2 << 20).await.expect("read");
            assert!(read[..1 << 20] == data[..] && read[1 << 20..] == data[..]);
            if direct_io {
                let (cached, _) = cached_and_dirty(&disk.file).expect("cachestat");
                assert_eq!(cached, after, "a large read goes past the page cache too");
            }
        }
    }

    // Input: overlapping writes to one range, alternating between the page cache (small or
    // misaligned) and the direct descriptor (large, whole aligned pages), each read back at
    // once, directly. Output: every read sees the latest write of each octet, as if one
    // descriptor did all.
    #[tokio::test]
    async fn direct_and_cached_writes_to_one_range_read_back_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backing = Backing {
            path: dir.path().join("volume.img"),
            kind: BackingKind::NewFile,
            size: 1 << 20,
        };
        let (disk, _) = LocalDisk::open_or_create(&backing, true).expect("opens");
        if !disk.direct.is_open() {
            eprintln!("skipped: the temp dir's file system does not take O_DIRECT");
            return;
        }
        const S: usize = super::super::direct::DIRECT_FROM;
        let mut model = vec![0u8; 3 * S];
        let writes: [(usize, Bytes); 4] = [
            (0, misaligned(&[1; 3 * S])),
            (S, aligned(&[2; S])),
            (S - 100, Bytes::from(vec![3; 300])),
            (0, aligned(&[4; 2 * S])),
        ];
        for (offset, data) in writes {
            model[offset..offset + data.len()].copy_from_slice(&data);
            disk.write(offset as u64, data, false).await.expect("write");
            let read = disk.read(0, model.len()).await.expect("read");
            assert!(read[..] == model[..], "after the write at {offset}");
        }
    }
}
