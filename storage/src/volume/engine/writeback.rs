//! Early writeback of the backing file: after every [`KICK_EVERY`] bytes of large buffered
//! writes, the kernel is asked to start writing the file's dirty pages to the disk
//! (`sync_file_range(2)` with `SYNC_FILE_RANGE_WRITE` over the whole file), by a thread of its
//! own.
//!
//! Why: a buffered write otherwise stays dirty in the page cache until the client's FLUSH,
//! the kernel's background threshold (10 % of memory by default, gigabytes on a large node)
//! or its 30 s expiry. The FLUSH's `fdatasync` then writes all of it at once while the client
//! waits, and the disk was idle while the data came in. DRBD has no such pile: it hands each
//! write to its lower device as it arrives. With the kick the disk works alongside the network,
//! and on a disk that keeps up a FLUSH waits only for the last few MiB. In `fulcrum-bench nbd`
//! (1 GiB written by nbdcopy, then FLUSH) the stored runs went from 0.68 × to 0.87 × qemu-nbd's
//! rate for the protocol C pair, and from 1.08 × to 1.45 × for the lone primary
//! (`bench/results/README.md`).
//!
//! Why a thread: `sync_file_range` waits for room in the device's queue, for page locks and,
//! on ext4, for the journal. On the writer thread (or the secondary's applier) a slow or hung
//! disk would then hold up every write behind it, where the page cache would have taken them.
//! The kicker waits instead; kicks asked for meanwhile become one.
//!
//! It does nothing on tmpfs or overlayfs (see [`crate::dirty_pages`]).
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};

use crate::dirty_pages;

/// Buffered bytes written between two kicks. Whole-file kicks cover scattered small writes
/// too; 8 MiB keeps a FLUSH's leftover small and the kicks rare (one per 2,048 4 KiB writes).
/// 32 MiB measured the same.
pub(crate) const KICK_EVERY: u64 = 8 << 20;

/// Writes shorter than this are not counted: scattered small writes kicked out every 8 MiB
/// raised fio's 4 KiB random-write p99 from about 0.5 ms to 1.2–1.6 ms on the VM of the
/// stored results, where the bulk writes that pile up before a FLUSH come in large requests
/// (nbdcopy's 1 MiB, a filesystem's writeback of up to several hundred KiB).
pub(crate) const COUNTED_FROM: u64 = 128 << 10;

/// Counts buffered writes to one file and has its writeback started every [`KICK_EVERY`]
/// bytes. Shared by every thread that writes the file; its kicker thread ends when it is
/// dropped.
#[derive(Debug)]
pub(crate) struct Writeback {
    written: AtomicU64,
    /// One pending kick at most: a kick asked for while one waits adds nothing.
    kick: SyncSender<()>,
}

impl Writeback {
    /// Starts the kicker thread for `file`.
    pub(crate) fn start(file: Arc<File>) -> io::Result<Self> {
        let (kick, kicks) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("volume-writeback".to_owned())
            .spawn(move || {
                while kicks.recv().is_ok() {
                    dirty_pages::start_writeback(&file);
                }
            })?;
        Ok(Self {
            written: AtomicU64::new(0),
            kick,
        })
    }

    /// `len` more bytes were written to the file without a sync. Returns whether that asked
    /// for a kick.
    pub(crate) fn wrote(&self, len: u64) -> bool {
        if len < COUNTED_FROM {
            return false;
        }
        let before = self.written.fetch_add(len, Ordering::Relaxed);
        let crossed = before / KICK_EVERY != before.wrapping_add(len) / KICK_EVERY;
        if crossed {
            // Full: a kick is pending already, and it will cover these pages too.
            let _ = self.kick.try_send(());
        }
        crossed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writeback() -> Writeback {
        let file = tempfile::tempfile().expect("a temp file");
        Writeback::start(Arc::new(file)).expect("the kicker starts")
    }

    #[test]
    fn bulk_writes_ask_for_a_kick_every_8_mib() {
        let writeback = writeback();
        let mib = 1 << 20;
        let kicks: Vec<u64> = (1..=24).filter(|_| writeback.wrote(mib)).collect();
        assert_eq!(kicks, [8, 16, 24]);
    }

    #[test]
    fn small_writes_ask_for_none() {
        let writeback = writeback();
        let small = COUNTED_FROM / 2;
        let asked = (0..4 * KICK_EVERY / small).filter(|_| writeback.wrote(small));
        assert_eq!(asked.count(), 0);
    }
}
