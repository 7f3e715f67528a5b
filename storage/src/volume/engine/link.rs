//! What the write path hands the replication session, and what it gets back.

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::volume::peer::{DiskState, Role};

/// A request for the session, queued in the order the session must send it.
#[derive(Debug)]
pub(crate) enum Request {
    Write {
        offset: u64,
        data: Bytes,
        fua: bool,
        done: oneshot::Sender<Delivery>,
    },
    WriteZeroes {
        offset: u64,
        len: u64,
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
}

/// How far a request got; a dropped sender means the link was lost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// As far as the protocol requires (sent, received, or written).
    Done,
    /// The peer could not write it.
    Failed,
}
