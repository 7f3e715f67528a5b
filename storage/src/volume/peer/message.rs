//! The messages two nodes exchange once the link is authenticated, as values; [`super::wire`]
//! lays them out in bytes.
//!
//! Every value here can be encoded except where a length is over its limit ([`MAX_DATA`],
//! [`MAX_NAME`]), which [`super::encode`] refuses.

use bytes::Bytes;

/// The most data one message carries (a write, a resync block, a bitmap chunk, a checksummed
/// or verified range): larger requests are split by the sender. With the frame limit it
/// bounds what a peer can make us buffer per connection.
pub const MAX_DATA: usize = 1 << 20;

/// The longest volume name, node name or disconnect detail, in bytes of UTF-8.
pub const MAX_NAME: usize = 255;

/// Length of a SHA-256 digest.
pub const DIGEST_LEN: usize = 32;

/// A SHA-256 digest of a range of the volume (checksum-based resync, online verify).
pub type Digest = [u8; DIGEST_LEN];

/// One message on the replication link.
///
/// `seq` numbers are the sender's: one sequence per connection, increasing by one per request
/// (write, flush, trim, write-zeroes), so acks name the request they answer and the receiver
/// can tell a gap. Offsets and lengths are in bytes of the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// First message each way after authentication: who we are and what our copy holds.
    Hello(Hello),
    /// Our role or disk state changed while connected.
    StateChange {
        role: Role,
        disk: DiskState,
    },
    /// Liveness probe; the peer answers [`Message::PingAck`] (the peer timeout runs on these).
    Ping,
    PingAck,
    /// We are closing the link, and why (logged by the peer).
    Disconnect {
        reason: DisconnectReason,
        detail: String,
    },
    /// Both copies changed since they last agreed; how the sender means to resolve it.
    SplitBrain {
        resolution: Resolution,
    },
    /// Replicate a write. Writes are applied in `seq` order.
    Write {
        seq: u64,
        offset: u64,
        flags: WriteFlags,
        data: Bytes,
    },
    /// The peer's answer to a write, trim or write-zeroes (protocol B: `Received`,
    /// protocol C: `Written`; protocol A needs none).
    Ack {
        seq: u64,
        kind: AckKind,
    },
    /// Make every write acked so far durable on the peer's disk.
    Flush {
        seq: u64,
    },
    FlushAck {
        seq: u64,
    },
    /// Trim a range: it must read back as zeroes, its space freed where the backing can.
    Trim {
        seq: u64,
        offset: u64,
        len: u64,
        flags: WriteFlags,
    },
    /// Write zeroes over a range without sending them.
    WriteZeroes {
        seq: u64,
        offset: u64,
        len: u64,
        flags: WriteFlags,
    },
    /// A chunk of the sender's out-of-sync bitmap (one bit per block of the Hello's block
    /// size, bit 0 of byte 0 is block 0), starting `offset` bytes into the bitmap; `last` is
    /// set on the final chunk.
    Bitmap {
        offset: u64,
        last: bool,
        bits: Bytes,
    },
    /// Resync: send me this range (answered by [`Message::ResyncData`]).
    ResyncRequest {
        offset: u64,
        len: u32,
    },
    /// Resync: the content of a range.
    ResyncData {
        offset: u64,
        data: Bytes,
    },
    /// Checksum-based resync: this is my range's digest; send the range only if yours
    /// differs (answered by [`Message::ResyncData`] or [`Message::ChecksumMatch`]).
    ChecksumRequest {
        offset: u64,
        len: u32,
        digest: Digest,
    },
    /// Checksum-based resync: the range is already the same on both sides.
    ChecksumMatch {
        offset: u64,
        len: u32,
    },
    /// Resync: the sender (SyncSource) could not read this range of a request; the target
    /// keeps it out of sync (DRBD's `P_NEG_RS_DREPLY`).
    ResyncFailed {
        offset: u64,
        len: u32,
    },
    /// Resync: every request is answered, but `failed` bytes could not be read on the source;
    /// the sender (SyncTarget) stays Inconsistent, and the blocks stay out of sync on both
    /// nodes until a later resync gets them (DRBD's resync end with `rs_failed`).
    ResyncIncomplete {
        failed: u64,
    },
    /// Online verify: this is my range's digest; compare it with yours.
    VerifyRequest {
        offset: u64,
        len: u32,
        digest: Digest,
    },
    /// Online verify: whether the range was the same.
    VerifyResult {
        offset: u64,
        len: u32,
        equal: bool,
    },
    /// A read served by the peer's copy (this node's disk is detached after an I/O error):
    /// answered by [`Message::ReadData`] or [`Message::ReadFailed`] with the same `id`, after
    /// every write sent before it is applied.
    ReadRequest {
        id: u64,
        offset: u64,
        len: u32,
    },
    /// The content of a [`Message::ReadRequest`]'s range.
    ReadData {
        id: u64,
        data: Bytes,
    },
    /// The peer could not serve a [`Message::ReadRequest`] (its own read failed, or its copy is
    /// not UpToDate).
    ReadFailed {
        id: u64,
    },
}

impl Message {
    /// The message's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello(_) => "Hello",
            Self::StateChange { .. } => "StateChange",
            Self::Ping => "Ping",
            Self::PingAck => "PingAck",
            Self::Disconnect { .. } => "Disconnect",
            Self::SplitBrain { .. } => "SplitBrain",
            Self::Write { .. } => "Write",
            Self::Ack { .. } => "Ack",
            Self::Flush { .. } => "Flush",
            Self::FlushAck { .. } => "FlushAck",
            Self::Trim { .. } => "Trim",
            Self::WriteZeroes { .. } => "WriteZeroes",
            Self::Bitmap { .. } => "Bitmap",
            Self::ResyncRequest { .. } => "ResyncRequest",
            Self::ResyncData { .. } => "ResyncData",
            Self::ChecksumRequest { .. } => "ChecksumRequest",
            Self::ChecksumMatch { .. } => "ChecksumMatch",
            Self::VerifyRequest { .. } => "VerifyRequest",
            Self::VerifyResult { .. } => "VerifyResult",
            Self::ResyncFailed { .. } => "ResyncFailed",
            Self::ResyncIncomplete { .. } => "ResyncIncomplete",
            Self::ReadRequest { .. } => "ReadRequest",
            Self::ReadData { .. } => "ReadData",
            Self::ReadFailed { .. } => "ReadFailed",
        }
    }
}

/// What a node tells its peer on connect; both decide from the two Hellos who syncs from whom
/// (or that it is a split brain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The volume's name, which must be the same on both sides.
    pub volume: String,
    /// The sender's node name, for logs.
    pub node: String,
    /// Usable size of the sender's copy, in bytes.
    pub size: u64,
    /// The granularity of the out-of-sync bitmap, in bytes.
    pub block_size: u32,
    pub protocol: Protocol,
    pub role: Role,
    pub disk: DiskState,
    pub generations: Generations,
    /// The sender was primary when it lost its peer (DRBD's "crashed primary").
    pub was_primary: bool,
    /// The operator told the sender to throw its changes away in a split brain.
    pub discard_my_data: bool,
}

/// Generation identifiers, DRBD's UUIDs: what tells two copies' histories apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generations {
    /// The current data generation.
    pub current: u64,
    /// The generation the out-of-sync bitmap started at (0 when the bitmap is clean).
    pub bitmap: u64,
    /// The two generations before.
    pub history: [u64; 2],
}

/// Flags of a write, trim or write-zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteFlags {
    /// Forced unit access: the peer acks only once this one is on stable storage.
    pub fua: bool,
    /// Flush the peer's disk before applying this one (an ordering barrier).
    pub flush_before: bool,
}

/// An enum carried as one octet, with the code of each variant.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            #[cfg(test)]
            pub(super) const ALL: &'static [Self] = &[$(Self::$variant,)+];

            pub(super) fn code(self) -> u8 {
                match self {
                    $(Self::$variant => $code,)+
                }
            }

            pub(super) fn from_code(code: u8) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

wire_enum! {
    /// When a write is acknowledged to the application.
    Protocol {
        /// Once sent to the peer.
        A = 1,
        /// Once the peer received it.
        B = 2,
        /// Once it is on both disks.
        C = 3,
    }
}

wire_enum! {
    Role {
        Primary = 1,
        Secondary = 2,
    }
}

wire_enum! {
    /// What a node's copy is worth.
    DiskState {
        /// No disk attached (detached after an I/O error).
        Diskless = 1,
        /// A resync into it is under way or was interrupted.
        Inconsistent = 2,
        /// Consistent but known to miss writes the peer has.
        Outdated = 3,
        UpToDate = 4,
    }
}

wire_enum! {
    /// How far a replicated request got on the peer.
    AckKind {
        /// In the peer's memory (protocol B).
        Received = 1,
        /// On the peer's disk (protocol C).
        Written = 2,
        /// The peer could not write it; the range stays out of sync.
        Failed = 3,
    }
}

wire_enum! {
    DisconnectReason {
        /// The node is stopping or the volume is going down.
        Shutdown = 1,
        /// An operator asked for it.
        Admin = 2,
        /// The peer sent something we could not accept.
        ProtocolError = 3,
        /// The two Hellos cannot go together (volume name, block size, protocol).
        Incompatible = 4,
        /// A split brain we do not resolve automatically.
        SplitBrain = 5,
        /// Our disk failed.
        IoError = 6,
        /// The peer stopped answering.
        Timeout = 7,
    }
}

wire_enum! {
    /// How the sender of a [`Message::SplitBrain`] resolves it.
    Resolution {
        /// Not automatically: both stay disconnected until an operator decides.
        Unresolved = 1,
        /// The sender discards its changes and syncs from the receiver.
        SenderDiscards = 2,
        /// The receiver is to discard its changes and sync from the sender.
        ReceiverDiscards = 3,
    }
}
