//! What the write path hands the replication session, and what it gets back.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::disk::Zeroing;
use crate::volume::peer::{Digest, DiskState, Role};

/// A request for the session, queued in the order the session must send it.
#[derive(Debug)]
pub(crate) enum Request {
    Write {
        offset: u64,
        data: Bytes,
        fua: bool,
        done: oneshot::Sender<Delivery>,
    },
    /// A write-zeroes, or a trim with [`Zeroing::Hole`].
    WriteZeroes {
        offset: u64,
        len: u64,
        zeroing: Zeroing,
        fua: bool,
        done: oneshot::Sender<Delivery>,
    },
    Flush {
        done: oneshot::Sender<Delivery>,
    },
    /// Tell the peer our role or disk changed.
    State {
        role: Role,
        disk: DiskState,
    },
    /// Online verify: compare our digest of a range with the peer's copy; `done` gets whether
    /// they are equal.
    Verify {
        offset: u64,
        len: u32,
        digest: Digest,
        done: oneshot::Sender<bool>,
    },
    /// Read a range (at most `MAX_DATA`) from the peer's copy (our disk is detached); `done`
    /// gets the data, or `None` when the peer could not read it.
    Read {
        offset: u64,
        len: u32,
        done: oneshot::Sender<Option<Bytes>>,
    },
}

/// How far a request got; a dropped sender means the link was lost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// As far as the protocol requires (sent, received, or written).
    Done,
    /// The peer could not write it.
    Failed,
}
