//! Positional I/O on a shared file, for the NBD file export and the volume's local disk:
//! `pread`/`pwrite` on a blocking thread (tokio's file API would copy every buffer once more),
//! into and out of the request's own buffer, with `fdatasync` when asked; zeroes written or
//! holes punched for WRITE_ZEROES and TRIM.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinError;

/// Zeroes written by WRITE_ZEROES, a chunk at a time (in `.bss`, so it costs no memory until
/// it is read).
static ZEROES: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];
const ZERO_CHUNK: usize = 1 << 20;

/// Runs `op` on `file` on a blocking thread; the outer error is the task's (a panic).
pub(crate) async fn blocking<T, F>(file: &Arc<File>, op: F) -> Result<io::Result<T>, JoinError>
where
    T: Send + 'static,
    F: FnOnce(&File) -> io::Result<T> + Send + 'static,
{
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || op(&file)).await
}

/// The `len` bytes at `offset`.
pub(crate) fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    // A fresh allocation: large ones come from the kernel already zeroed, and the buffer goes
    // to the socket without a copy.
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

/// Writes `data` at `offset`; with `sync`, returns once it is on stable storage.
pub(crate) fn write_at(file: &File, offset: u64, data: &[u8], sync: bool) -> io::Result<()> {
    file.write_all_at(data, offset)?;
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// Writes `len` zero bytes at `offset`; with `sync`, returns once they are on stable storage.
pub(crate) fn write_zeroes_at(file: &File, offset: u64, len: u64, sync: bool) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        let chunk = (len - done).min(ZERO_CHUNK as u64);
        // `chunk` is at most ZERO_CHUNK, which fits in usize.
        let chunk_len = usize::try_from(chunk).unwrap_or(ZERO_CHUNK);
        file.write_all_at(&ZEROES[..chunk_len], offset + done)?;
        done += chunk;
    }
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// Makes `[offset, offset + len)` read back as zeroes and frees its space where the file
/// system or device can (`fallocate` punching a hole, which reads back as zeroes on every file
/// system that offers it and on block devices); elsewhere writes the zeroes. With `sync`,
/// returns once the result is on stable storage. Returns whether the hole was punched (false:
/// the zeroes were written).
pub(crate) fn punch_hole_at(file: &File, offset: u64, len: u64, sync: bool) -> io::Result<bool> {
    use rustix::fs::{FallocateFlags, fallocate};
    match fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    ) {
        Ok(()) if sync => file.sync_data().map(|()| true),
        Ok(()) => Ok(true),
        // No hole punching here (an old file system, a device with unaligned bounds): the
        // range must still read back as zeroes, as on the peer.
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS | rustix::io::Errno::INVAL) => {
            write_zeroes_at(file, offset, len, sync).map(|()| false)
        }
        Err(errno) => Err(errno.into()),
    }
}
