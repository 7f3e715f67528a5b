//! The directory sync's messages between two peers, after the shared HMAC handshake
//! ([`crate::volume::peer::authenticate_labelled`] with [`AUTH_LABEL`]): Hellos, index deltas
//! and acks, and file contents (whole, or as an rsync delta against the receiver's copy).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Magic (0xF1C6)        |     Type      | Reserved (0)  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Payload length (octets)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Payload (length octets)                 ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Integers big-endian; str16/str32 = u16/u32 length + UTF-8; bytes32 = u32 length + octets.
//!   0x10 Hello    version u16 | set str16 | node str16 | listen str16 | index_id u64 | flags u8
//!                 (flags: 1 = sends its changes, 2 = applies the peer's)
//!   0x11 Resume   index_id u64 | from u64         "send me your index after `from`"
//!   0x12 Entries  up_to u64 | count u32 | entry*  (see `codec.rs` for an entry)
//!   0x13 Ack      up_to u64                       "applied everything up to `up_to`"
//!   0x14 Get      id u32 | path str32 | size u64 | mtime_ns i64 | hash [32]
//!   0x15 GetDelta id u32 | path str32 | size u64 | mtime_ns i64 | hash [32] | signature bytes32
//!   0x16 Data     id u32 | octets (the rest)      a piece of the file, in order
//!   0x17 Delta    id u32 | octets (the rest)      an rsync delta of the next window
//!   0x18 End      id u32 | hash [32] | sha256 [32] (after Deltas only)
//!                 content hash of the version sent; SHA-256 of the whole file rebuilt
//!   0x19 Stale    id u32                          the file is no longer that version
//!   0x1A Failed   id u32 | reason str16           the sender could not read it
//!   0x1B Refuse   reason str16                    the Hello was not accepted
//!   0x1C Ping     nonce u64                       "still there?" (sent when idle)
//!   0x1D Pong     nonce u64                       the answer, with the Ping's nonce
//! ```
//!
//! Each side sends a Hello; the side that will receive answers the other's with Resume (from
//! its persisted mark of the sender's index), then the sender sends Entries batches, at most
//! two not yet acked (a receiver queues up to four), each acked once applied, in order.
//! Contents are requested by the receiver (Get, or GetDelta with its rsync signature when it
//! has an older copy), several at a time, and answered in request order; the End of an answer
//! carries the content hash (BLAKE3) the sender's index holds for the version asked for, which the receiver
//! checks every octet against. An answer made of Deltas also carries the SHA-256 of the whole
//! file as the sender read it to make them, which the receiver checks the file it rebuilt
//! against: the deltas' MD4 block hashes alone are not a proof.
//!
//! Nothing here panics on what a peer sends, and no frame longer than [`MAX_PAYLOAD`] is
//! buffered: the length is checked from the header.

mod codec;
mod frames;
mod recycle;
mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use super::index::{Entry, Hash};

pub use codec::{ProtoError, decode, encode};
pub use frames::FrameBuf;
pub use stream::{ProtoReader, ProtoWriter};

/// The first two octets of every frame (the volume's is 0xF1C5).
pub const MAGIC: u16 = 0xF1C6;

/// The protocol version in the Hello (2: Ping and Pong, which version 1 did not know; 3:
/// content hashes are BLAKE3, not SHA-256, so a version 2 peer would fail every check; 4:
/// entries carry their owner; 5: the End of a delta answer carries the whole file's SHA-256,
/// which a version 5 receiver requires).
pub const VERSION: u16 = 5;

/// What starts the handshake's MACs, so that a volume's response never verifies here.
pub const AUTH_LABEL: &[u8] = b"fulcrum-sync v1";

/// The largest payload: a delta of one window ([`MAX_DATA`]) with its overhead, or a
/// signature of at most [`MAX_SIGNATURE`].
pub const MAX_PAYLOAD: usize = 4 * 1024 * 1024 + 4096;

/// The largest piece of content in a Data or Delta message's window.
pub const MAX_DATA: usize = 2 * 1024 * 1024;

/// The largest rsync signature a receiver may send.
pub const MAX_SIGNATURE: usize = 2 * 1024 * 1024;

/// The most entries in one Entries message.
pub const MAX_ENTRIES: usize = 512;

/// Hello flag: the node sends its changes.
pub const FLAG_SENDS: u8 = 1;
/// Hello flag: the node applies its peers' changes.
pub const FLAG_RECEIVES: u8 = 2;

/// Who a node is, sent first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    /// The sync set's name: both ends must agree.
    pub set: String,
    /// The node's name in version vectors; never ours.
    pub node: String,
    /// The node's `listen` address, as it is in our `peers`.
    pub listen: String,
    /// The node's index id (see [`crate::sync::index::PeerMark`]).
    pub index_id: u64,
    pub flags: u8,
}

/// One message after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Resume {
        index_id: u64,
        from: u64,
    },
    Entries {
        up_to: u64,
        entries: Vec<Entry>,
    },
    Ack {
        up_to: u64,
    },
    Get(Request),
    GetDelta {
        request: Request,
        signature: Bytes,
    },
    Data {
        id: u32,
        data: Bytes,
    },
    Delta {
        id: u32,
        delta: Bytes,
    },
    /// `sha256`: of the whole file, after Deltas (see the module's header).
    End {
        id: u32,
        hash: Hash,
        sha256: Option<Hash>,
    },
    Stale {
        id: u32,
    },
    Failed {
        id: u32,
        reason: String,
    },
    Refuse {
        reason: String,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
}

/// A request for one version of a file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u32,
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub hash: Hash,
}

impl Message {
    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello(_) => "Hello",
            Self::Resume { .. } => "Resume",
            Self::Entries { .. } => "Entries",
            Self::Ack { .. } => "Ack",
            Self::Get(_) => "Get",
            Self::GetDelta { .. } => "GetDelta",
            Self::Data { .. } => "Data",
            Self::Delta { .. } => "Delta",
            Self::End { .. } => "End",
            Self::Stale { .. } => "Stale",
            Self::Failed { .. } => "Failed",
            Self::Refuse { .. } => "Refuse",
            Self::Ping { .. } => "Ping",
            Self::Pong { .. } => "Pong",
        }
    }
}
