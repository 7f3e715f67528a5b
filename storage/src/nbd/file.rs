//! [`FileExport`]: a regular file (or a block device node) served as it is.
//!
//! Reads and writes are `pread`/`pwrite` on a blocking thread, into and out of the request's
//! own buffer; FLUSH and FUA are `fdatasync`. TRIM is accepted as the hint the spec lets it be
//! and does nothing (the replicated volume punches holes for it), WRITE_ZEROES writes zeroes from a
//! static buffer, and block status reports everything as allocated data.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use super::{Export, ExportFlags, NbdError};
use crate::positional::{self, read_at, write_at, write_zeroes_at};

/// A file served as an export. Its size is fixed when it is opened.
#[derive(Debug, Clone)]
pub struct FileExport {
    file: Arc<File>,
    size: u64,
    read_only: bool,
}

impl FileExport {
    /// Opens `path` (read-write unless `read_only`).
    pub fn open(path: impl AsRef<Path>, read_only: bool) -> io::Result<FileExport> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        FileExport::new(file, read_only)
    }

    /// Serves an open file; it must be writable unless `read_only`.
    pub fn new(file: File, read_only: bool) -> io::Result<FileExport> {
        let size = file.metadata()?.len();
        Ok(FileExport {
            file: Arc::new(file),
            size,
            read_only,
        })
    }

    /// Runs `op` on the file on a blocking thread.
    async fn blocking<T, F>(&self, op: F) -> Result<T, NbdError>
    where
        T: Send + 'static,
        F: FnOnce(&File) -> io::Result<T> + Send + 'static,
    {
        match positional::blocking(&self.file, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                warn!(%error, "nbd file export I/O failed");
                Err(error.into())
            }
            Err(error) => {
                warn!(%error, "nbd file export I/O task failed");
                Err(NbdError::Io)
            }
        }
    }
}

impl Export for FileExport {
    fn size(&self) -> u64 {
        self.size
    }

    fn flags(&self) -> ExportFlags {
        ExportFlags {
            read_only: self.read_only,
            can_flush: true,
            can_fua: true,
            can_trim: !self.read_only,
            can_write_zeroes: !self.read_only,
            // Every connection goes through the same kernel page cache, and fdatasync covers
            // what any of them wrote.
            can_multi_conn: true,
            rotational: false,
        }
    }

    async fn read(&self, offset: u64, len: usize) -> Result<Bytes, NbdError> {
        self.blocking(move |file| read_at(file, offset, len)).await
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), NbdError> {
        if self.read_only {
            return Err(NbdError::Perm);
        }
        self.blocking(move |file| write_at(file, offset, &data, fua))
            .await
    }

    async fn flush(&self) -> Result<(), NbdError> {
        if self.read_only {
            return Ok(());
        }
        self.blocking(|file| file.sync_data()).await
    }

    async fn trim(&self, _offset: u64, _len: u64, _fua: bool) -> Result<(), NbdError> {
        // A hint only; nothing was written, so FUA has nothing to persist.
        if self.read_only {
            return Err(NbdError::Perm);
        }
        Ok(())
    }

    async fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<(), NbdError> {
        if self.read_only {
            return Err(NbdError::Perm);
        }
        self.blocking(move |file| write_zeroes_at(file, offset, len, fua))
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_writes_and_zeroes() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(3 << 20).unwrap();
        let export = FileExport::new(file, false).unwrap();
        assert_eq!(export.size(), 3 << 20);
        let data = Bytes::from(vec![0xAB; (2 << 20) + 10]);
        export.write(100, data.clone(), true).await.unwrap();
        assert_eq!(export.read(100, data.len()).await.unwrap(), data);
        export
            .write_zeroes(200, (1 << 20) + 5, false)
            .await
            .unwrap();
        let back = export.read(0, 3 << 20).await.unwrap();
        assert!(back[..100].iter().all(|b| *b == 0));
        assert!(back[100..200].iter().all(|b| *b == 0xAB));
        assert!(back[200..200 + (1 << 20) + 5].iter().all(|b| *b == 0));
        assert!(
            back[205 + (1 << 20)..100 + data.len()]
                .iter()
                .all(|b| *b == 0xAB)
        );
        export.flush().await.unwrap();
        // Past the end of the file: an I/O error, not a panic.
        assert_eq!(export.read(3 << 20, 1).await, Err(NbdError::Io));
    }

    #[tokio::test]
    async fn read_only_refuses_writes() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(4096).unwrap();
        let export = FileExport::open(file.path(), true).unwrap();
        assert!(export.flags().read_only);
        assert!(!export.flags().can_trim);
        let write = export.write(0, Bytes::from_static(b"x"), false).await;
        assert_eq!(write, Err(NbdError::Perm));
    }
}
