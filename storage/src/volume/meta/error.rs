//! Errors of the metadata store; each names the file it concerns, so an operator knows what to
//! inspect, and none is ever resolved by silently resetting metadata.

use std::io;
use std::path::PathBuf;

/// A metadata operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file (or directory) concerned.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No metadata here: the volume was never created (see `Meta::create`).
    #[error("{}: no metadata (the volume was never created)", file.display())]
    Missing {
        /// The superblock path that does not exist.
        file: PathBuf,
    },
    /// `Meta::create` found metadata already there; it never overwrites.
    #[error("{}: metadata already exists", file.display())]
    Exists {
        /// The superblock path that exists.
        file: PathBuf,
    },
    /// The file's content is not valid (bad magic, checksum, length or field).
    #[error("{}: corrupt: {reason}", file.display())]
    Corrupt {
        /// The file concerned.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by a newer, incompatible Fulcrum.
    #[error("{}: unsupported format version {version}", file.display())]
    Version {
        /// The file concerned.
        file: PathBuf,
        /// The version found.
        version: u32,
    },
    /// A write spans more activity-log extents than the log may hold at once.
    #[error("a write spanning {extents} activity-log extents exceeds the {capacity} the log holds")]
    WriteTooLarge {
        /// Extents the write touches.
        extents: u64,
        /// The log's capacity in extents.
        capacity: usize,
    },
    /// Every active extent has writes in flight, so none can be evicted; retry after an
    /// `end_write`.
    #[error("activity log full: all {capacity} extents have writes in flight")]
    ActivityLogBusy {
        /// The log's capacity in extents.
        capacity: usize,
    },
    /// The log is full and its idle extents hold writes no flush of both nodes has covered
    /// yet; retry after a flush between `begin_flush` and `end_flush`.
    #[error("activity log full: its idle extents hold writes not yet flushed on both nodes")]
    ActivityLogUnflushed {
        /// The log's capacity in extents.
        capacity: usize,
    },
    /// A peer's bitmap does not fit this volume.
    #[error("peer bitmap: {0}")]
    PeerBitmap(#[from] super::bitmap::LengthMismatch),
    /// `close` with writes still in flight (between `begin_write` and `end_write`).
    #[error("close with {0} writes in flight")]
    WritesInFlight(u64),
}

impl MetaError {
    pub(super) fn io(file: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let file = file.into();
        move |source| Self::Io { file, source }
    }

    pub(super) fn corrupt(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            file: file.into(),
            reason: reason.into(),
        }
    }
}
