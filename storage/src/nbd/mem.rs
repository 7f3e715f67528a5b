//! [`MemExport`]: an export held in memory, for tests and fuzzing.

use bytes::Bytes;
use tokio::sync::RwLock;

use super::{Export, ExportFlags, Extent, NbdError};

/// Granularity of the zero detection in block status.
const BLOCK: usize = 4096;

/// An export held in memory; all-zero 4 KiB blocks are reported as zero in block status.
#[derive(Debug)]
pub struct MemExport {
    data: RwLock<Vec<u8>>,
    size: u64,
    flags: ExportFlags,
}

impl MemExport {
    /// `size` zero bytes, with every capability.
    pub fn new(size: usize) -> MemExport {
        MemExport {
            data: RwLock::new(vec![0; size]),
            size: size as u64,
            flags: ExportFlags {
                read_only: false,
                can_flush: true,
                can_fua: true,
                can_trim: true,
                can_write_zeroes: true,
                can_multi_conn: true,
                rotational: false,
            },
        }
    }

    /// The same, advertising `flags` instead (`read_only` refuses writes).
    pub fn with_flags(mut self, flags: ExportFlags) -> MemExport {
        self.flags = flags;
        self
    }

    /// A copy of the contents.
    pub async fn contents(&self) -> Vec<u8> {
        self.data.read().await.clone()
    }

    fn range(
        &self,
        offset: u64,
        len: u64,
        size: usize,
    ) -> Result<std::ops::Range<usize>, NbdError> {
        let start = usize::try_from(offset).map_err(|_| NbdError::Invalid)?;
        let len = usize::try_from(len).map_err(|_| NbdError::Invalid)?;
        let end = start.checked_add(len).ok_or(NbdError::Invalid)?;
        if end > size {
            return Err(NbdError::NoSpace);
        }
        Ok(start..end)
    }

    fn writable(&self) -> Result<(), NbdError> {
        if self.flags.read_only {
            Err(NbdError::Perm)
        } else {
            Ok(())
        }
    }
}

impl Export for MemExport {
    fn size(&self) -> u64 {
        self.size
    }

    fn flags(&self) -> ExportFlags {
        self.flags
    }

    async fn read(&self, offset: u64, len: usize) -> Result<Bytes, NbdError> {
        let data = self.data.read().await;
        let range = self.range(offset, len as u64, data.len())?;
        Ok(Bytes::copy_from_slice(&data[range]))
    }

    async fn write(&self, offset: u64, bytes: Bytes, _fua: bool) -> Result<(), NbdError> {
        self.writable()?;
        let mut data = self.data.write().await;
        let range = self.range(offset, bytes.len() as u64, data.len())?;
        data[range].copy_from_slice(&bytes);
        Ok(())
    }

    async fn flush(&self) -> Result<(), NbdError> {
        Ok(())
    }

    async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), NbdError> {
        self.write_zeroes(offset, len, fua).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, _fua: bool) -> Result<(), NbdError> {
        self.writable()?;
        let mut data = self.data.write().await;
        let range = self.range(offset, len, data.len())?;
        data[range].fill(0);
        Ok(())
    }

    async fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, NbdError> {
        let data = self.data.read().await;
        let range = self.range(offset, len, data.len())?;
        let mut extents: Vec<Extent> = Vec::new();
        let mut start = range.start;
        while start < range.end {
            // Up to the next block boundary, so that later blocks stay aligned.
            let end = ((start / BLOCK + 1) * BLOCK).min(range.end);
            let zero = data[start..end].iter().all(|b| *b == 0);
            let length = (end - start) as u64;
            match extents.last_mut() {
                Some(last) if last.zero == zero => last.length += length,
                _ => extents.push(Extent {
                    length,
                    hole: false,
                    zero,
                }),
            }
            start = end;
        }
        Ok(extents)
    }
}
