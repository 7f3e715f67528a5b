//! The receiving side of replication: applies the peer's writes, flushes and resync data to the
//! local disk strictly in the order they arrived, on a thread of its own so the session keeps
//! answering pings meanwhile, and reports each completion (the session acks it).
//!
//! A thread, not a task: its work is one blocking call after another, and a task would hand
//! each to the blocking pool and sleep until woken, two thread switches per megabyte written.
//! While writes keep coming the thread does not sleep at all.
//!
//! Reads that must see every write received before them go through here too, in the same
//! order: the peer's verify and remote-read requests, and a SyncTarget's checksums.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::warn;

use super::disk::{Zeroing, digest};
use super::inner::Inner;
use super::status::{Counters, VolumeEvent};
use crate::volume::config::BLOCK_SIZE;
use crate::volume::peer::{Digest, DiskState, WriteFlags};

/// Requests queued ahead of the disk: at most this many (each at most 1 MiB) are buffered,
/// after which the session stops reading the socket (back-pressure on the peer).
pub(crate) const QUEUE: usize = 64;

/// Something to apply.
#[derive(Debug)]
pub(crate) enum Apply {
    Write {
        seq: u64,
        offset: u64,
        data: Bytes,
        flags: WriteFlags,
    },
    /// A write-zeroes, or a trim with [`Zeroing::Hole`].
    Zeroes {
        seq: u64,
        offset: u64,
        len: u64,
        zeroing: Zeroing,
        flags: WriteFlags,
    },
    Flush {
        seq: u64,
    },
    Resync {
        offset: u64,
        data: Bytes,
    },
    /// The peer's online verify: compare its digest with our copy of the range.
    Verify {
        offset: u64,
        len: u32,
        digest: Digest,
    },
    /// Checksum-based resync (SyncTarget): the digests of the range's 4 KiB blocks.
    Digests {
        offset: u64,
        len: u32,
    },
    /// The peer's disk is detached: read the range for it.
    Read {
        id: u64,
        offset: u64,
        len: u32,
    },
}

impl Apply {
    /// The octets of the volume it touches, as `(offset, len)`; `None` for a flush.
    pub(crate) fn range(&self) -> Option<(u64, u64)> {
        match self {
            Apply::Write { offset, data, .. } | Apply::Resync { offset, data } => {
                Some((*offset, data.len() as u64))
            }
            Apply::Zeroes { offset, len, .. } => Some((*offset, *len)),
            Apply::Verify { offset, len, .. }
            | Apply::Digests { offset, len }
            | Apply::Read { offset, len, .. } => Some((*offset, u64::from(*len))),
            Apply::Flush { .. } => None,
        }
    }
}

/// Something applied.
#[derive(Debug, Clone)]
pub(crate) enum Applied {
    Write {
        seq: u64,
        offset: u64,
        len: u64,
        ok: bool,
    },
    Flush {
        seq: u64,
        ok: bool,
    },
    Resync {
        offset: u64,
        len: u64,
        ok: bool,
    },
    Verify {
        offset: u64,
        len: u32,
        equal: bool,
    },
    /// `None` when the local read failed.
    Digests {
        offset: u64,
        len: u32,
        digests: Option<Vec<Digest>>,
    },
    /// `None` when the read failed or our copy is not UpToDate.
    Read {
        id: u64,
        data: Option<Bytes>,
    },
}

/// Starts the applier; it ends when the sender is dropped, or once the receiver is and a
/// request is applied.
pub(crate) fn spawn(
    inner: Arc<Inner>,
) -> std::io::Result<(mpsc::Sender<Apply>, mpsc::UnboundedReceiver<Applied>)> {
    let (tx, mut rx) = mpsc::channel::<Apply>(QUEUE);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name(format!("apply-{}", inner.config.name))
        .spawn(move || {
            while let Some(apply) = rx.blocking_recv() {
                let applied = apply_one(&inner, apply);
                if done_tx.send(applied).is_err() {
                    return;
                }
            }
        })?;
    Ok((tx, done_rx))
}

fn apply_one(inner: &Inner, apply: Apply) -> Applied {
    let disk = &inner.disk;
    let report = |what: &str, result: &std::io::Result<()>| {
        if let Err(error) = result {
            warn!(volume = %inner.config.name, %error, what, "applying the peer's request failed");
            inner.emit(VolumeEvent::IoError);
        }
    };
    match apply {
        Apply::Write {
            seq,
            offset,
            data,
            flags,
        } => {
            let len = data.len() as u64;
            let mut result = Ok(());
            if flags.flush_before {
                result = disk.sync_now();
            }
            if result.is_ok() {
                result = disk.write_now(offset, &data, flags.fua);
            }
            report("write", &result);
            if result.is_ok() {
                Counters::add(&inner.counters.disk_written, len);
            }
            Applied::Write {
                seq,
                offset,
                len,
                ok: result.is_ok(),
            }
        }
        Apply::Zeroes {
            seq,
            offset,
            len,
            zeroing,
            flags,
        } => {
            let result = disk.zero_now(zeroing, offset, len, flags.fua);
            report(
                match zeroing {
                    Zeroing::Allocated => "write zeroes",
                    Zeroing::Hole => "trim",
                },
                &result,
            );
            Applied::Write {
                seq,
                offset,
                len,
                ok: result.is_ok(),
            }
        }
        Apply::Flush { seq } => {
            let result = disk.sync_now();
            report("flush", &result);
            Applied::Flush {
                seq,
                ok: result.is_ok(),
            }
        }
        Apply::Resync { offset, data } => {
            let len = data.len() as u64;
            let result = disk.write_now(offset, &data, false);
            report("resync write", &result);
            if result.is_ok() {
                Counters::add(&inner.counters.disk_written, len);
            }
            Applied::Resync {
                offset,
                len,
                ok: result.is_ok(),
            }
        }
        Apply::Verify {
            offset,
            len,
            digest: theirs,
        } => {
            let data = read(inner, offset, len, "verify read");
            let equal = data.is_some_and(|data| digest(&data) == theirs);
            Applied::Verify { offset, len, equal }
        }
        Apply::Digests { offset, len } => {
            let result = disk.digests_now(offset, len as usize, BLOCK_SIZE as usize);
            let result =
                result.inspect(|_| Counters::add(&inner.counters.disk_read, u64::from(len)));
            if let Err(error) = &result {
                warn!(volume = %inner.config.name, %error, offset, len, "checksum read failed");
                inner.emit(VolumeEvent::IoError);
            }
            Applied::Digests {
                offset,
                len,
                digests: result.ok(),
            }
        }
        Apply::Read { id, offset, len } => {
            // Only an UpToDate copy may stand in for the peer's.
            let data = if inner.control().disk == DiskState::UpToDate {
                read(inner, offset, len, "read for the peer")
            } else {
                None
            };
            Applied::Read { id, data }
        }
    }
}

/// Reads a range for the peer; `None` (logged) when it is out of the volume or the read fails.
fn read(inner: &Inner, offset: u64, len: u32, what: &str) -> Option<Bytes> {
    if offset.saturating_add(u64::from(len)) > inner.config.backing.size {
        return None;
    }
    match inner.disk.read_now(offset, len as usize) {
        Ok(data) => {
            Counters::add(&inner.counters.disk_read, u64::from(len));
            Some(data)
        }
        Err(error) => {
            warn!(volume = %inner.config.name, %error, offset, len, what, "local read failed");
            inner.emit(VolumeEvent::IoError);
            None
        }
    }
}
