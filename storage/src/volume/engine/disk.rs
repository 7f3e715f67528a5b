//! The local copy of the volume: the backing file or block device, read and written with
//! `pread`/`pwrite` on blocking threads (tokio's file API would copy every buffer once more).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

use crate::volume::config::{Backing, BackingKind};

/// Zeroes for WRITE_ZEROES, a chunk at a time (in `.bss`: no memory until read).
static ZEROES: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];
const ZERO_CHUNK: usize = 1 << 20;

/// The backing store; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct LocalDisk {
    file: Arc<File>,
}

impl LocalDisk {
    /// Opens the backing, creating a regular file of `backing.size` zero bytes when it does not
    /// exist. Returns whether it was created: only then are its contents known (all zeroes).
    pub(crate) fn open_or_create(backing: &Backing) -> io::Result<(LocalDisk, bool)> {
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
        Ok((
            LocalDisk {
                file: Arc::new(file),
            },
            created,
        ))
    }

    pub(crate) async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        self.blocking(move |file| {
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    /// Writes `data` at `offset`; with `sync`, returns once it is on stable storage.
    pub(crate) async fn write(&self, offset: u64, data: Bytes, sync: bool) -> io::Result<()> {
        self.blocking(move |file| {
            file.write_all_at(&data, offset)?;
            if sync {
                file.sync_data()?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn write_zeroes(&self, offset: u64, len: u64, sync: bool) -> io::Result<()> {
        self.blocking(move |file| {
            let mut done = 0;
            while done < len {
                let chunk = (len - done).min(ZERO_CHUNK as u64);
                let chunk_len = usize::try_from(chunk).unwrap_or(ZERO_CHUNK);
                file.write_all_at(&ZEROES[..chunk_len], offset + done)?;
                done += chunk;
            }
            if sync {
                file.sync_data()?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn sync(&self) -> io::Result<()> {
        self.blocking(|file| file.sync_data()).await
    }

    async fn blocking<T, F>(&self, op: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&File) -> io::Result<T> + Send + 'static,
    {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || op(&file))
            .await
            .map_err(io::Error::other)?
    }
}
