//! The replication link's messages in bytes: [`encode`] and [`decode`] between a [`Message`] and
//! a frame ([`super::frame`] has the header diagram), for the link after authentication.
//!
//! Decoding is total: any byte sequence gives a message, "more bytes needed" or a
//! [`WireError`], never a panic. It is strict: an unknown type or enum code, a set reserved
//! bit, a short body or a byte left over is an error, so the two sides cannot silently
//! disagree on what was sent. Both sides must speak the same version (checked by the
//! handshake); a new field means a new version.
//!
//! Integers are big-endian. A name is one length octet then that many octets of UTF-8.
//! `data` runs to the end of the payload, up to [`MAX_DATA`] octets. A frame's payload is at
//! most [`MAX_PAYLOAD`] octets.
//!
//! Hello (0x10):
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Size (octets, 64 bits)                   |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Block size                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Protocol    |     Role      |  Disk state   |0 0 0 0 0 0|D|P|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Current generation (64 bits)                        |
//! |           Bitmap generation (64 bits)                         |
//! |           History generation 1 (64 bits)                      |
//! |           History generation 2 (64 bits)                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Volume len   |  Volume name ...                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Node len    |  Node name ...                                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!   P: was primary, D: discard my data. Protocol: A=1 B=2 C=3. Role: Primary=1
//!   Secondary=2. Disk state: Diskless=1 Inconsistent=2 Outdated=3 UpToDate=4.
//! ```
//!
//! Write (0x20):
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Sequence (64 bits)                       |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Offset (64 bits)                         |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0 0 0 0 0|B|F|  Data (to the end of the payload) ...         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!   F: FUA, B: flush before.
//! ```
//!
//! The others, field by field (`u8`/`u32`/`u64` integers, `flags` as in Write, `bool` an
//! octet 0 or 1, `digest` 32 octets of SHA-256):
//! ```text
//!  Type  Message          Body
//!  0x11  StateChange      role u8, disk state u8
//!  0x12  Ping             (empty)
//!  0x13  PingAck          (empty)
//!  0x14  Disconnect       reason u8, detail name
//!  0x15  SplitBrain       resolution u8
//!  0x21  Ack              seq u64, kind u8 (Received=1 Written=2 Failed=3)
//!  0x22  Flush            seq u64
//!  0x23  FlushAck         seq u64
//!  0x24  Trim             seq u64, offset u64, len u64, flags
//!  0x25  WriteZeroes      seq u64, offset u64, len u64, flags
//!  0x30  Bitmap           offset u64, last bool, bits (to the end)
//!  0x31  ResyncRequest    offset u64, len u32 (at most MAX_DATA)
//!  0x32  ResyncData       offset u64, data (to the end)
//!  0x33  ChecksumRequest  offset u64, len u32 (at most MAX_DATA), digest
//!  0x34  ChecksumMatch    offset u64, len u32
//!  0x35  VerifyRequest    offset u64, len u32 (at most MAX_DATA), digest
//!  0x36  VerifyResult     offset u64, len u32, equal bool
//!  0x37  ResyncFailed     offset u64, len u32
//!  0x38  ResyncIncomplete failed u64
//!  0x40  ReadRequest      id u64, offset u64, len u32 (at most MAX_DATA)
//!  0x41  ReadData         id u64, data (to the end)
//!  0x42  ReadFailed       id u64
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::frame;
use super::message::{
    AckKind, DIGEST_LEN, Digest, DisconnectReason, DiskState, Generations, Hello, MAX_DATA,
    MAX_NAME, Message, Protocol, Resolution, Role, WriteFlags,
};

/// The largest payload of a message frame: [`MAX_DATA`] and the longest fixed part before it
/// (Write's 17 octets), rounded up.
pub const MAX_PAYLOAD: usize = MAX_DATA + 64;

/// Why bytes are not a message, or a message cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("bad magic {0:#06x}: the peer does not speak the Fulcrum volume protocol")]
    BadMagic(u16),
    #[error("reserved header octet is {0:#04x}, not 0")]
    Reserved(u8),
    #[error("frame payload of {len} octets is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    #[error("{message} is cut short")]
    Truncated { message: &'static str },
    #[error("{message} has {extra} octets too many")]
    TrailingBytes { message: &'static str, extra: usize },
    #[error("{message}.{field} has the invalid value {value:#x}")]
    InvalidValue {
        message: &'static str,
        field: &'static str,
        value: u64,
    },
    #[error("{message}.{field} is not UTF-8")]
    InvalidUtf8 {
        message: &'static str,
        field: &'static str,
    },
    #[error("{message}.{field} is {len} octets, over the limit of {max}")]
    FieldTooLong {
        message: &'static str,
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("the peer closed the connection in the middle of a frame")]
    UnexpectedEof,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

const HELLO: u8 = 0x10;
const STATE_CHANGE: u8 = 0x11;
const PING: u8 = 0x12;
const PING_ACK: u8 = 0x13;
const DISCONNECT: u8 = 0x14;
const SPLIT_BRAIN: u8 = 0x15;
const WRITE: u8 = 0x20;
const ACK: u8 = 0x21;
const FLUSH: u8 = 0x22;
const FLUSH_ACK: u8 = 0x23;
const TRIM: u8 = 0x24;
const WRITE_ZEROES: u8 = 0x25;
const BITMAP: u8 = 0x30;
const RESYNC_REQUEST: u8 = 0x31;
const RESYNC_DATA: u8 = 0x32;
const CHECKSUM_REQUEST: u8 = 0x33;
const CHECKSUM_MATCH: u8 = 0x34;
const VERIFY_REQUEST: u8 = 0x35;
const VERIFY_RESULT: u8 = 0x36;
const RESYNC_FAILED: u8 = 0x37;
const RESYNC_INCOMPLETE: u8 = 0x38;
const READ_REQUEST: u8 = 0x40;
const READ_DATA: u8 = 0x41;
const READ_FAILED: u8 = 0x42;

const FLAG_FUA: u8 = 0x01;
const FLAG_FLUSH_BEFORE: u8 = 0x02;
const HELLO_WAS_PRIMARY: u8 = 0x01;
const HELLO_DISCARD_MY_DATA: u8 = 0x02;

/// Appends `msg` as one frame to `dst`. Fails, leaving `dst` as it was, only if a length is
/// over its limit (data over [`MAX_DATA`], a name over [`MAX_NAME`]).
pub fn encode(msg: &Message, dst: &mut BytesMut) -> Result<(), WireError> {
    let start = frame::start(dst, type_of(msg));
    if let Err(error) = put_body(msg, dst) {
        dst.truncate(start);
        return Err(error);
    }
    frame::finish(dst, start, 0, MAX_PAYLOAD)
}

/// As [`encode`], except that the data a message ends with (Write, ResyncData, ReadData) is
/// not copied into `dst`: the frame's header counts it, and it is returned for the caller to
/// send right after what `dst` holds. Replication sends each write's megabyte this way without
/// copying it (a copy per write was most of the primary's CPU time in `fulcrum-bench nbd`).
pub(super) fn encode_head(msg: &Message, dst: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
    let trailing = match msg {
        Message::Write { data, .. }
        | Message::ResyncData { data, .. }
        | Message::ReadData { data, .. } => data.clone(),
        _ => return encode(msg, dst).map(|()| None),
    };
    check_len(msg.name(), "data", trailing.len())?;
    let start = frame::start(dst, type_of(msg));
    match msg {
        Message::Write {
            seq, offset, flags, ..
        } => {
            dst.put_u64(*seq);
            dst.put_u64(*offset);
            dst.put_u8(flags_octet(*flags));
        }
        Message::ResyncData { offset, .. } => dst.put_u64(*offset),
        Message::ReadData { id, .. } => dst.put_u64(*id),
        _ => {}
    }
    frame::finish(dst, start, trailing.len(), MAX_PAYLOAD)?;
    Ok(Some(trailing))
}

/// Where the trailing data of a message of type `ty` begins in its body: after a write's
/// sequence number, offset and flags, or a resync block's offset (the fields written above).
/// The reader places a large body so that this data can go to the disk with `O_DIRECT`.
pub(super) fn data_offset(ty: u8) -> usize {
    match ty {
        WRITE => 8 + 8 + 1,
        RESYNC_DATA | READ_DATA => 8,
        _ => 0,
    }
}

/// Takes one message off the front of `src`, or `None` while its frame is incomplete.
///
/// After an error the stream is out of step and the connection is to be dropped.
pub fn decode(src: &mut BytesMut) -> Result<Option<Message>, WireError> {
    match frame::split(src, MAX_PAYLOAD)? {
        Some((ty, payload)) => decode_body(ty, payload).map(Some),
        None => Ok(None),
    }
}

/// The message in a frame of type `ty` whose payload was read apart (a large one, into a
/// buffer of its own).
pub(super) fn decode_payload(ty: u8, payload: Bytes) -> Result<Message, WireError> {
    decode_body(ty, payload)
}

fn type_of(msg: &Message) -> u8 {
    match msg {
        Message::Hello(_) => HELLO,
        Message::StateChange { .. } => STATE_CHANGE,
        Message::Ping => PING,
        Message::PingAck => PING_ACK,
        Message::Disconnect { .. } => DISCONNECT,
        Message::SplitBrain { .. } => SPLIT_BRAIN,
        Message::Write { .. } => WRITE,
        Message::Ack { .. } => ACK,
        Message::Flush { .. } => FLUSH,
        Message::FlushAck { .. } => FLUSH_ACK,
        Message::Trim { .. } => TRIM,
        Message::WriteZeroes { .. } => WRITE_ZEROES,
        Message::Bitmap { .. } => BITMAP,
        Message::ResyncRequest { .. } => RESYNC_REQUEST,
        Message::ResyncData { .. } => RESYNC_DATA,
        Message::ChecksumRequest { .. } => CHECKSUM_REQUEST,
        Message::ChecksumMatch { .. } => CHECKSUM_MATCH,
        Message::VerifyRequest { .. } => VERIFY_REQUEST,
        Message::VerifyResult { .. } => VERIFY_RESULT,
        Message::ResyncFailed { .. } => RESYNC_FAILED,
        Message::ResyncIncomplete { .. } => RESYNC_INCOMPLETE,
        Message::ReadRequest { .. } => READ_REQUEST,
        Message::ReadData { .. } => READ_DATA,
        Message::ReadFailed { .. } => READ_FAILED,
    }
}

fn put_body(msg: &Message, dst: &mut BytesMut) -> Result<(), WireError> {
    let name = msg.name();
    match msg {
        Message::Hello(hello) => put_hello(hello, dst)?,
        Message::StateChange { role, disk } => {
            dst.put_u8(role.code());
            dst.put_u8(disk.code());
        }
        Message::Ping | Message::PingAck => {}
        Message::Disconnect { reason, detail } => {
            dst.put_u8(reason.code());
            put_name(dst, name, "detail", detail)?;
        }
        Message::SplitBrain { resolution } => dst.put_u8(resolution.code()),
        Message::Write {
            seq,
            offset,
            flags,
            data,
        } => {
            check_len(name, "data", data.len())?;
            dst.put_u64(*seq);
            dst.put_u64(*offset);
            dst.put_u8(flags_octet(*flags));
            dst.put_slice(data);
        }
        Message::Ack { seq, kind } => {
            dst.put_u64(*seq);
            dst.put_u8(kind.code());
        }
        Message::Flush { seq } | Message::FlushAck { seq } => dst.put_u64(*seq),
        Message::Trim {
            seq,
            offset,
            len,
            flags,
        }
        | Message::WriteZeroes {
            seq,
            offset,
            len,
            flags,
        } => {
            dst.put_u64(*seq);
            dst.put_u64(*offset);
            dst.put_u64(*len);
            dst.put_u8(flags_octet(*flags));
        }
        Message::Bitmap { offset, last, bits } => {
            check_len(name, "bits", bits.len())?;
            dst.put_u64(*offset);
            dst.put_u8(u8::from(*last));
            dst.put_slice(bits);
        }
        Message::ResyncRequest { offset, len } => {
            check_range(name, *len)?;
            dst.put_u64(*offset);
            dst.put_u32(*len);
        }
        Message::ResyncData { offset, data } => {
            check_len(name, "data", data.len())?;
            dst.put_u64(*offset);
            dst.put_slice(data);
        }
        Message::ChecksumRequest {
            offset,
            len,
            digest,
        }
        | Message::VerifyRequest {
            offset,
            len,
            digest,
        } => {
            check_range(name, *len)?;
            dst.put_u64(*offset);
            dst.put_u32(*len);
            dst.put_slice(digest);
        }
        Message::ChecksumMatch { offset, len } | Message::ResyncFailed { offset, len } => {
            dst.put_u64(*offset);
            dst.put_u32(*len);
        }
        Message::ResyncIncomplete { failed } => dst.put_u64(*failed),
        Message::VerifyResult { offset, len, equal } => {
            dst.put_u64(*offset);
            dst.put_u32(*len);
            dst.put_u8(u8::from(*equal));
        }
        Message::ReadRequest { id, offset, len } => {
            check_range(name, *len)?;
            dst.put_u64(*id);
            dst.put_u64(*offset);
            dst.put_u32(*len);
        }
        Message::ReadData { id, data } => {
            check_len(name, "data", data.len())?;
            dst.put_u64(*id);
            dst.put_slice(data);
        }
        Message::ReadFailed { id } => dst.put_u64(*id),
    }
    Ok(())
}

fn put_hello(hello: &Hello, dst: &mut BytesMut) -> Result<(), WireError> {
    let mut flags = 0;
    if hello.was_primary {
        flags |= HELLO_WAS_PRIMARY;
    }
    if hello.discard_my_data {
        flags |= HELLO_DISCARD_MY_DATA;
    }
    dst.put_u64(hello.size);
    dst.put_u32(hello.block_size);
    dst.put_u8(hello.protocol.code());
    dst.put_u8(hello.role.code());
    dst.put_u8(hello.disk.code());
    dst.put_u8(flags);
    dst.put_u64(hello.generations.current);
    dst.put_u64(hello.generations.bitmap);
    dst.put_u64(hello.generations.history[0]);
    dst.put_u64(hello.generations.history[1]);
    put_name(dst, "Hello", "volume", &hello.volume)?;
    put_name(dst, "Hello", "node", &hello.node)
}

fn put_name(
    dst: &mut BytesMut,
    message: &'static str,
    field: &'static str,
    name: &str,
) -> Result<(), WireError> {
    let len = u8::try_from(name.len()).map_err(|_| WireError::FieldTooLong {
        message,
        field,
        len: name.len(),
        max: MAX_NAME,
    })?;
    dst.put_u8(len);
    dst.put_slice(name.as_bytes());
    Ok(())
}

fn check_len(message: &'static str, field: &'static str, len: usize) -> Result<(), WireError> {
    if len > MAX_DATA {
        return Err(WireError::FieldTooLong {
            message,
            field,
            len,
            max: MAX_DATA,
        });
    }
    Ok(())
}

/// A requested range must be answerable in one message.
fn check_range(message: &'static str, len: u32) -> Result<(), WireError> {
    check_len(message, "len", usize::try_from(len).unwrap_or(usize::MAX))
}

fn flags_octet(flags: WriteFlags) -> u8 {
    let mut octet = 0;
    if flags.fua {
        octet |= FLAG_FUA;
    }
    if flags.flush_before {
        octet |= FLAG_FLUSH_BEFORE;
    }
    octet
}

fn decode_body(ty: u8, payload: Bytes) -> Result<Message, WireError> {
    let mut body = Body::new(payload, ty)?;
    let msg = match ty {
        HELLO => Message::Hello(body.hello()?),
        STATE_CHANGE => Message::StateChange {
            role: body.code("role", Role::from_code)?,
            disk: body.code("disk", DiskState::from_code)?,
        },
        PING => Message::Ping,
        PING_ACK => Message::PingAck,
        DISCONNECT => Message::Disconnect {
            reason: body.code("reason", DisconnectReason::from_code)?,
            detail: body.name("detail")?,
        },
        SPLIT_BRAIN => Message::SplitBrain {
            resolution: body.code("resolution", Resolution::from_code)?,
        },
        WRITE => Message::Write {
            seq: body.u64()?,
            offset: body.u64()?,
            flags: body.flags()?,
            data: body.rest(),
        },
        ACK => Message::Ack {
            seq: body.u64()?,
            kind: body.code("kind", AckKind::from_code)?,
        },
        FLUSH => Message::Flush { seq: body.u64()? },
        FLUSH_ACK => Message::FlushAck { seq: body.u64()? },
        TRIM => Message::Trim {
            seq: body.u64()?,
            offset: body.u64()?,
            len: body.u64()?,
            flags: body.flags()?,
        },
        WRITE_ZEROES => Message::WriteZeroes {
            seq: body.u64()?,
            offset: body.u64()?,
            len: body.u64()?,
            flags: body.flags()?,
        },
        BITMAP => Message::Bitmap {
            offset: body.u64()?,
            last: body.bool("last")?,
            bits: body.rest(),
        },
        RESYNC_REQUEST => Message::ResyncRequest {
            offset: body.u64()?,
            len: body.range_len()?,
        },
        RESYNC_DATA => Message::ResyncData {
            offset: body.u64()?,
            data: body.rest(),
        },
        CHECKSUM_REQUEST => Message::ChecksumRequest {
            offset: body.u64()?,
            len: body.range_len()?,
            digest: body.digest()?,
        },
        CHECKSUM_MATCH => Message::ChecksumMatch {
            offset: body.u64()?,
            len: body.u32()?,
        },
        RESYNC_FAILED => Message::ResyncFailed {
            offset: body.u64()?,
            len: body.u32()?,
        },
        RESYNC_INCOMPLETE => Message::ResyncIncomplete {
            failed: body.u64()?,
        },
        VERIFY_REQUEST => Message::VerifyRequest {
            offset: body.u64()?,
            len: body.range_len()?,
            digest: body.digest()?,
        },
        VERIFY_RESULT => Message::VerifyResult {
            offset: body.u64()?,
            len: body.u32()?,
            equal: body.bool("equal")?,
        },
        READ_REQUEST => Message::ReadRequest {
            id: body.u64()?,
            offset: body.u64()?,
            len: body.range_len()?,
        },
        READ_DATA => Message::ReadData {
            id: body.u64()?,
            data: body.rest(),
        },
        READ_FAILED => Message::ReadFailed { id: body.u64()? },
        _ => return Err(WireError::UnknownType(ty)),
    };
    body.finish()?;
    Ok(msg)
}

/// A payload being read, field by field, each read checked.
struct Body {
    buf: Bytes,
    message: &'static str,
}

impl Body {
    fn new(buf: Bytes, ty: u8) -> Result<Self, WireError> {
        let message = match ty {
            HELLO => "Hello",
            STATE_CHANGE => "StateChange",
            PING => "Ping",
            PING_ACK => "PingAck",
            DISCONNECT => "Disconnect",
            SPLIT_BRAIN => "SplitBrain",
            WRITE => "Write",
            ACK => "Ack",
            FLUSH => "Flush",
            FLUSH_ACK => "FlushAck",
            TRIM => "Trim",
            WRITE_ZEROES => "WriteZeroes",
            BITMAP => "Bitmap",
            RESYNC_REQUEST => "ResyncRequest",
            RESYNC_DATA => "ResyncData",
            CHECKSUM_REQUEST => "ChecksumRequest",
            CHECKSUM_MATCH => "ChecksumMatch",
            VERIFY_REQUEST => "VerifyRequest",
            VERIFY_RESULT => "VerifyResult",
            RESYNC_FAILED => "ResyncFailed",
            RESYNC_INCOMPLETE => "ResyncIncomplete",
            READ_REQUEST => "ReadRequest",
            READ_DATA => "ReadData",
            READ_FAILED => "ReadFailed",
            _ => return Err(WireError::UnknownType(ty)),
        };
        Ok(Self { buf, message })
    }

    fn truncated(&self) -> WireError {
        WireError::Truncated {
            message: self.message,
        }
    }

    fn invalid(&self, field: &'static str, value: u64) -> WireError {
        WireError::InvalidValue {
            message: self.message,
            field,
            value,
        }
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        self.buf.try_get_u8().map_err(|_| self.truncated())
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.buf.try_get_u32().map_err(|_| self.truncated())
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        self.buf.try_get_u64().map_err(|_| self.truncated())
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.invalid(field, other.into())),
        }
    }

    fn code<T>(&mut self, field: &'static str, from: fn(u8) -> Option<T>) -> Result<T, WireError> {
        let code = self.u8()?;
        from(code).ok_or_else(|| self.invalid(field, code.into()))
    }

    fn flags(&mut self) -> Result<WriteFlags, WireError> {
        let octet = self.u8()?;
        if octet & !(FLAG_FUA | FLAG_FLUSH_BEFORE) != 0 {
            return Err(self.invalid("flags", octet.into()));
        }
        Ok(WriteFlags {
            fua: octet & FLAG_FUA != 0,
            flush_before: octet & FLAG_FLUSH_BEFORE != 0,
        })
    }

    fn range_len(&mut self) -> Result<u32, WireError> {
        let len = self.u32()?;
        if usize::try_from(len).is_ok_and(|len| len <= MAX_DATA) {
            Ok(len)
        } else {
            Err(self.invalid("len", len.into()))
        }
    }

    fn digest(&mut self) -> Result<Digest, WireError> {
        let mut digest = [0; DIGEST_LEN];
        self.buf
            .try_copy_to_slice(&mut digest)
            .map_err(|_| self.truncated())?;
        Ok(digest)
    }

    fn name(&mut self, field: &'static str) -> Result<String, WireError> {
        let len = usize::from(self.u8()?);
        if self.buf.len() < len {
            return Err(self.truncated());
        }
        let bytes = self.buf.split_to(len);
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::InvalidUtf8 {
            message: self.message,
            field,
        })
    }

    /// The rest of the payload: at most [`MAX_PAYLOAD`] octets by the frame limit.
    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    fn hello(&mut self) -> Result<Hello, WireError> {
        let size = self.u64()?;
        let block_size = self.u32()?;
        let protocol = self.code("protocol", Protocol::from_code)?;
        let role = self.code("role", Role::from_code)?;
        let disk = self.code("disk", DiskState::from_code)?;
        let flags = self.u8()?;
        if flags & !(HELLO_WAS_PRIMARY | HELLO_DISCARD_MY_DATA) != 0 {
            return Err(self.invalid("flags", flags.into()));
        }
        let generations = Generations {
            current: self.u64()?,
            bitmap: self.u64()?,
            history: [self.u64()?, self.u64()?],
        };
        Ok(Hello {
            volume: self.name("volume")?,
            node: self.name("node")?,
            size,
            block_size,
            protocol,
            role,
            disk,
            generations,
            was_primary: flags & HELLO_WAS_PRIMARY != 0,
            discard_my_data: flags & HELLO_DISCARD_MY_DATA != 0,
        })
    }

    fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes {
                message: self.message,
                extra: self.buf.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests;
