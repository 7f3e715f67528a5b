//! An NBD server (our own implementation of the Network Block Device protocol) over any
//! [`Export`]: the replicated volume, a plain file ([`FileExport`]) or memory ([`MemExport`]).
//!
//! What it speaks, per NetworkBlockDevice/nbd `doc/proto.md`:
//!
//! - the fixed newstyle handshake with `NO_ZEROES`; the options `EXPORT_NAME`, `ABORT`, `LIST`,
//!   `INFO`, `GO` (with `NBD_INFO_EXPORT`, `NAME` and `BLOCK_SIZE`), `STRUCTURED_REPLY`,
//!   `LIST_META_CONTEXT` and `SET_META_CONTEXT` (the one context `base:allocation`); any other
//!   option is answered `NBD_REP_ERR_UNSUP`.
//! - **No TLS**: `NBD_OPT_STARTTLS` is answered `NBD_REP_ERR_UNSUP` (the spec's NOTLS mode), so
//!   the port must only be reachable from trusted hosts.
//! - the commands `READ`, `WRITE`, `FLUSH`, `TRIM`, `WRITE_ZEROES`, `DISC` and `BLOCK_STATUS`,
//!   with `FUA`, `NO_HOLE`, `DF` and `REQ_ONE`; structured replies when negotiated, simple
//!   replies otherwise. Requests run concurrently (up to [`MAX_IN_FLIGHT`] per connection) and
//!   replies go out in completion order.
//!
//! The layers: [`proto`] is the wire format and the validation of a request (pure, fuzzed),
//! [`handshake`] the option haggling as a state machine (pure, fuzzed), `session` drives both
//! over one byte stream, and [`NbdServer`] accepts TCP connections and counts.

pub mod handshake;
pub mod proto;

pub(crate) mod buffers;
mod file;
mod mem;
mod server;
mod session;

use std::future::Future;
use std::io;

use bytes::Bytes;

pub use file::FileExport;
pub use mem::MemExport;
pub use server::{NbdServer, NbdStats};
pub use session::{SessionError, serve_stream};

/// The longest `READ` or `WRITE` the server accepts (and advertises as its maximum block size):
/// the 32 MiB the spec says no client should exceed without asking. Longer ones get `EINVAL`.
pub const MAX_REQUEST_LEN: u32 = 32 << 20;

/// Requests one connection may have in flight; the reader stops reading past that.
pub const MAX_IN_FLIGHT: u32 = 64;

/// Connections served at once; more wait in the listen backlog. Each may hold
/// [`MAX_IN_FLIGHT`] requests and 64 MiB of data, so this bounds what the clients together can
/// hold (a volume's clients are few: a file system's kernel client, `nbdcopy`'s 4 connections).
pub const MAX_CONNECTIONS: usize = 64;

/// What an [`NbdServer`] serves: a range of `size()` bytes.
///
/// The server validates every request before calling these (the range lies within `size()`,
/// lengths are at most [`MAX_REQUEST_LEN`] for `read`/`write`, the operation is one `flags()`
/// advertises), so an implementation only has to do the I/O. Several calls may run at once.
pub trait Export: Send + Sync + 'static {
    /// The size in bytes, read once per connection when the client picks the export.
    fn size(&self) -> u64;

    /// What the export supports, read once per connection when the client picks the export.
    fn flags(&self) -> ExportFlags;

    /// Reads exactly `len` bytes at `offset`. Returning a buffer lets the export hand out one
    /// it owns (a cache page, a pooled buffer) without a copy.
    fn read(&self, offset: u64, len: usize)
    -> impl Future<Output = Result<Bytes, NbdError>> + Send;

    /// Writes `data` at `offset`; with `fua`, replies only once the data is on stable storage.
    fn write(
        &self,
        offset: u64,
        data: Bytes,
        fua: bool,
    ) -> impl Future<Output = Result<(), NbdError>> + Send;

    /// Makes every write already acknowledged durable.
    fn flush(&self) -> impl Future<Output = Result<(), NbdError>> + Send;

    /// A hint that `len` bytes at `offset` are no longer needed; doing nothing is allowed.
    fn trim(
        &self,
        offset: u64,
        len: u64,
        fua: bool,
    ) -> impl Future<Output = Result<(), NbdError>> + Send;

    /// Makes `len` bytes at `offset` read back as zeroes.
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        fua: bool,
    ) -> impl Future<Output = Result<(), NbdError>> + Send;

    /// The `base:allocation` status of the range, as consecutive extents from `offset`. The
    /// server merges, trims and bounds what it gets, so any list is safe; the default reports
    /// everything as allocated data, which the spec allows.
    fn block_status(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Vec<Extent>, NbdError>> + Send {
        let _ = offset;
        async move {
            Ok(vec![Extent {
                length: len,
                hole: false,
                zero: false,
            }])
        }
    }
}

/// What an export supports; each `true` becomes an NBD transmission flag. Advertise only what
/// is true: `can_multi_conn` promises that a flush on one connection covers writes made on all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportFlags {
    /// Writes, trims and write-zeroes are refused with `EPERM`.
    pub read_only: bool,
    /// `NBD_CMD_FLUSH` is supported.
    pub can_flush: bool,
    /// `NBD_CMD_FLAG_FUA` is honoured.
    pub can_fua: bool,
    /// `NBD_CMD_TRIM` is accepted (possibly as a no-op hint).
    pub can_trim: bool,
    /// `NBD_CMD_WRITE_ZEROES` is supported.
    pub can_write_zeroes: bool,
    /// Every connection sees the same cache, so a flush or FUA on one covers all of them.
    pub can_multi_conn: bool,
    /// The storage behaves like a spinning disk (a scheduling hint).
    pub rotational: bool,
}

/// A run of bytes with one `base:allocation` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Its length in bytes; empty extents are dropped.
    pub length: u64,
    /// Not allocated in the backing store (`NBD_STATE_HOLE`).
    pub hole: bool,
    /// Known to read as zeroes (`NBD_STATE_ZERO`).
    pub zero: bool,
}

/// Why an export operation failed, as one of the error values NBD defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NbdError {
    /// `NBD_EPERM`: a write to a read-only export, or to a volume that is not primary.
    #[error("operation not permitted")]
    Perm,
    /// `NBD_EIO`: the storage failed.
    #[error("input/output error")]
    Io,
    /// `NBD_ENOMEM`: out of memory (the spec asks servers to avoid it).
    #[error("cannot allocate memory")]
    NoMem,
    /// `NBD_EINVAL`: a request the server will not carry out as sent.
    #[error("invalid argument")]
    Invalid,
    /// `NBD_ENOSPC`: a write past the end, or the storage is full.
    #[error("no space left on device")]
    NoSpace,
    /// `NBD_EOVERFLOW`: a don't-fragment read too long for one chunk.
    #[error("value too large")]
    Overflow,
    /// `NBD_ENOTSUP`: a fast zero that would not be fast.
    #[error("operation not supported")]
    NotSupported,
    /// `NBD_ESHUTDOWN`: the server is shutting down.
    #[error("server is shutting down")]
    Shutdown,
}

impl NbdError {
    /// The value sent in the error field of a reply.
    pub fn code(self) -> u32 {
        match self {
            NbdError::Perm => 1,
            NbdError::Io => 5,
            NbdError::NoMem => 12,
            NbdError::Invalid => 22,
            NbdError::NoSpace => 28,
            NbdError::Overflow => 75,
            NbdError::NotSupported => 95,
            NbdError::Shutdown => 108,
        }
    }

    /// The error a reply's error field names, if NBD defines it.
    pub fn from_code(code: u32) -> Option<NbdError> {
        Some(match code {
            1 => NbdError::Perm,
            5 => NbdError::Io,
            12 => NbdError::NoMem,
            22 => NbdError::Invalid,
            28 => NbdError::NoSpace,
            75 => NbdError::Overflow,
            95 => NbdError::NotSupported,
            108 => NbdError::Shutdown,
            _ => return None,
        })
    }
}

impl From<io::Error> for NbdError {
    /// As the spec asks: a full disk, a quota or a too-big file is `ENOSPC`, a refusal `EPERM`,
    /// anything else `EIO`.
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge => NbdError::NoSpace,
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => NbdError::Perm,
            io::ErrorKind::OutOfMemory => NbdError::NoMem,
            _ => NbdError::Io,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod proptests;
