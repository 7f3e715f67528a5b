//! The NBD wire format (NetworkBlockDevice/nbd `doc/proto.md`): constants, the parsers of what
//! a client sends and the encoders of what the server answers, plus the validation of a
//! transmission request. Pure functions over byte slices, no I/O, so that they can be fuzzed.
//!
//! Every integer is big-endian.
//!
//! ```text
//! Handshake (fixed newstyle)
//!   S: u64 NBDMAGIC 0x4e42444d41474943 ("NBDMAGIC")
//!   S: u64 IHAVEOPT 0x49484156454f5054 ("IHAVEOPT")
//!   S: u16 handshake flags              FIXED_NEWSTYLE (bit 0) | NO_ZEROES (bit 1)
//!   C: u32 client flags                 C_FIXED_NEWSTYLE (bit 0) | C_NO_ZEROES (bit 1), no other
//!
//! Option request (repeated until EXPORT_NAME, or a GO answered ACK, or ABORT)
//!    0                   1                   2                   3
//!    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!   |                     IHAVEOPT (64 bits)                        |
//!   +                                                               +
//!   |                                                               |
//!   +---------------------------------------------------------------+
//!   |                         option                                |
//!   +---------------------------------------------------------------+
//!   |                       data length                             |
//!   +---------------------------------------------------------------+
//!   |                    data (length bytes) ...                    |
//!
//! Option reply (any number per option; the last is ACK or an error)
//!   +---------------------------------------------------------------+
//!   |              REPLY MAGIC 0x0003e889045565a9 (64 bits)         |
//!   +                                                               +
//!   |                                                               |
//!   +---------------------------------------------------------------+
//!   |                 option (as the client sent it)                |
//!   +---------------------------------------------------------------+
//!   |            reply type (bit 31 set: an error)                  |
//!   +---------------------------------------------------------------+
//!   |                       data length                             |
//!   +---------------------------------------------------------------+
//!   |                    data (length bytes) ...                    |
//!
//! Option data
//!   EXPORT_NAME        name (the whole data); answered u64 size, u16 transmission flags,
//!                      124 zero bytes unless NO_ZEROES was agreed (no option reply header)
//!   INFO, GO           u32 name length, name, u16 n, n x u16 info requested
//!     REP_INFO         u16 INFO_EXPORT      u64 size, u16 transmission flags
//!                      u16 INFO_NAME        name
//!                      u16 INFO_BLOCK_SIZE  u32 minimum, u32 preferred, u32 maximum
//!   LIST               (none); answered REP_SERVER: u32 name length, name; then ACK
//!   LIST/SET_META_CONTEXT  u32 name length, name, u32 n, n x (u32 length, query)
//!     REP_META_CONTEXT u32 context id, context name
//!
//! Request (transmission phase), 28 bytes, then `length` bytes of data for WRITE
//!    0                   1                   2                   3
//!    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!   |                  REQUEST MAGIC 0x25609513                     |
//!   +-------------------------------+-------------------------------+
//!   |        command flags          |           type                |
//!   +-------------------------------+-------------------------------+
//!   |                  cookie (handle, 64 bits)                     |
//!   +                                                               +
//!   |                                                               |
//!   +---------------------------------------------------------------+
//!   |                      offset (64 bits)                         |
//!   +                                                               +
//!   |                                                               |
//!   +---------------------------------------------------------------+
//!   |                          length                               |
//!   +---------------------------------------------------------------+
//!
//! Simple reply, 16 bytes, then `length` bytes of data for a successful READ
//!   | SIMPLE REPLY MAGIC 0x67446698 | error | cookie (64 bits) |
//!
//! Structured reply chunk, 20 bytes, then `length` bytes of payload
//!   | STRUCTURED MAGIC 0x668e33ef | u16 flags (DONE = bit 0) | u16 type | cookie (64) | length |
//!   OFFSET_DATA (1)    u64 offset, data
//!   BLOCK_STATUS (5)   u32 context id, n x (u32 extent length, u32 status flags)
//!   ERROR (0x8001)     u32 error, u16 message length, message
//! ```
//!
//! | Command (type)     | Flags accepted             | Out of range | Read-only |
//! |--------------------|----------------------------|--------------|-----------|
//! | READ (0)           | FUA*, DF (structured only) | EINVAL       |           |
//! | WRITE (1)          | FUA*                       | ENOSPC       | EPERM     |
//! | DISC (2)           | (ignored, no reply)        |              |           |
//! | FLUSH (3)          | FUA*                       |              |           |
//! | TRIM (4)           | FUA*                       | EINVAL       | EPERM     |
//! | WRITE_ZEROES (6)   | FUA*, NO_HOLE              | ENOSPC       | EPERM     |
//! | BLOCK_STATUS (7)   | FUA*, REQ_ONE              | EINVAL       |           |
//!
//! `*` FUA is valid on every command once `SEND_FUA` is advertised. Any other command (CACHE
//! included, which is not advertised), flag, or a command whose transmission flag was not
//! advertised, is answered `EINVAL`, as the spec's "Error values" section asks; so is a READ
//! or WRITE longer than [`MAX_REQUEST_LEN`] (the data of a rejected WRITE is read and dropped,
//! so the connection stays in step). TRIM and WRITE_ZEROES carry no data and may be longer,
//! as the spec allows and qemu-nbd and nbdkit accept.

use super::{ExportFlags, MAX_REQUEST_LEN, NbdError};

/// "NBDMAGIC", the first thing the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": after NBDMAGIC, and in front of every option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// In front of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// In front of every transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// In front of every simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// In front of every structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flag: the server speaks fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: the server can skip the 124 zero bytes after `EXPORT_NAME`.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag: the client speaks fixed newstyle.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: no 124 zero bytes after `EXPORT_NAME`, please.
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Transmission flag: always set.
pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
/// Transmission flag: the export refuses writes.
pub const FLAG_READ_ONLY: u16 = 1 << 1;
/// Transmission flag: `NBD_CMD_FLUSH` is supported.
pub const FLAG_SEND_FLUSH: u16 = 1 << 2;
/// Transmission flag: `NBD_CMD_FLAG_FUA` is supported.
pub const FLAG_SEND_FUA: u16 = 1 << 3;
/// Transmission flag: the export behaves like a spinning disk.
pub const FLAG_ROTATIONAL: u16 = 1 << 4;
/// Transmission flag: `NBD_CMD_TRIM` is supported.
pub const FLAG_SEND_TRIM: u16 = 1 << 5;
/// Transmission flag: `NBD_CMD_WRITE_ZEROES` (and `NO_HOLE`) is supported.
pub const FLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// Transmission flag: `NBD_CMD_FLAG_DF` is supported (structured replies only).
pub const FLAG_SEND_DF: u16 = 1 << 7;
/// Transmission flag: flush and FUA cover every connection to the export.
pub const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;
/// Transmission flag: `NBD_CMD_CACHE` is supported (never set here).
pub const FLAG_SEND_CACHE: u16 = 1 << 10;
/// Transmission flag: `NBD_CMD_FLAG_FAST_ZERO` is supported (never set here).
pub const FLAG_SEND_FAST_ZERO: u16 = 1 << 11;

/// Option: pick the export and enter transmission (old style, cannot fail politely).
pub const OPT_EXPORT_NAME: u32 = 1;
/// Option: the client gives up.
pub const OPT_ABORT: u32 = 2;
/// Option: list the exports.
pub const OPT_LIST: u32 = 3;
/// Option: upgrade to TLS (refused: no TLS here).
pub const OPT_STARTTLS: u32 = 5;
/// Option: describe an export.
pub const OPT_INFO: u32 = 6;
/// Option: describe an export and enter transmission.
pub const OPT_GO: u32 = 7;
/// Option: use structured replies.
pub const OPT_STRUCTURED_REPLY: u32 = 8;
/// Option: list metadata contexts.
pub const OPT_LIST_META_CONTEXT: u32 = 9;
/// Option: select metadata contexts for `NBD_CMD_BLOCK_STATUS`.
pub const OPT_SET_META_CONTEXT: u32 = 10;

/// Option reply: done, success.
pub const REP_ACK: u32 = 1;
/// Option reply: one export, in answer to `LIST`.
pub const REP_SERVER: u32 = 2;
/// Option reply: one piece of information, in answer to `INFO`/`GO`.
pub const REP_INFO: u32 = 3;
/// Option reply: one metadata context.
pub const REP_META_CONTEXT: u32 = 4;
/// Option error: unknown option.
pub const REP_ERR_UNSUP: u32 = 0x8000_0001;
/// Option error: known, but refused by policy.
pub const REP_ERR_POLICY: u32 = 0x8000_0002;
/// Option error: malformed or out of place.
pub const REP_ERR_INVALID: u32 = 0x8000_0003;
/// Option error: no such export.
pub const REP_ERR_UNKNOWN: u32 = 0x8000_0006;
/// Option error: the server is shutting down.
pub const REP_ERR_SHUTDOWN: u32 = 0x8000_0007;
/// Option error: the request is too large to process.
pub const REP_ERR_TOO_BIG: u32 = 0x8000_0009;

/// Information type: size and transmission flags.
pub const INFO_EXPORT: u16 = 0;
/// Information type: the canonical export name.
pub const INFO_NAME: u16 = 1;
/// Information type: a human-readable description.
pub const INFO_DESCRIPTION: u16 = 2;
/// Information type: minimum, preferred and maximum block sizes.
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Command: read.
pub const CMD_READ: u16 = 0;
/// Command: write (data follows the header).
pub const CMD_WRITE: u16 = 1;
/// Command: disconnect once in-flight requests are done; no reply.
pub const CMD_DISC: u16 = 2;
/// Command: flush.
pub const CMD_FLUSH: u16 = 3;
/// Command: trim (discard).
pub const CMD_TRIM: u16 = 4;
/// Command: cache (not supported).
pub const CMD_CACHE: u16 = 5;
/// Command: write zeroes.
pub const CMD_WRITE_ZEROES: u16 = 6;
/// Command: block status.
pub const CMD_BLOCK_STATUS: u16 = 7;

/// Command flag: force unit access.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
/// Command flag: write zeroes must allocate.
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
/// Command flag: answer a read with a single content chunk.
pub const CMD_FLAG_DF: u16 = 1 << 2;
/// Command flag: one extent per context, please.
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// Command flag: fail write zeroes unless it is fast (not supported).
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;

/// Structured reply flag: the last chunk of the reply.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
/// Chunk type: no payload (only as the last chunk).
pub const REPLY_TYPE_NONE: u16 = 0;
/// Chunk type: read data at an offset.
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// Chunk type: extents of one metadata context.
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
/// Chunk type: an error with a message.
pub const REPLY_TYPE_ERROR: u16 = 0x8001;

/// `base:allocation` status: not allocated.
pub const STATE_HOLE: u32 = 1 << 0;
/// `base:allocation` status: reads as zeroes.
pub const STATE_ZERO: u32 = 1 << 1;

/// The one metadata context served.
pub const BASE_ALLOCATION: &str = "base:allocation";

/// Length of a request header.
pub const REQUEST_HEADER_LEN: usize = 28;
/// Length of an option request header.
pub const OPTION_HEADER_LEN: usize = 16;
/// Length of a simple reply header.
pub const SIMPLE_REPLY_LEN: usize = 16;
/// Length of a structured reply chunk header.
pub const CHUNK_HEADER_LEN: usize = 20;

/// Longest string (export name, query, message) the spec allows.
pub const MAX_STRING_LEN: usize = 4096;

/// The advertised block sizes: any alignment works (a file or memory behind), 4 KiB is
/// efficient, [`MAX_REQUEST_LEN`] is the most one request may move.
pub const BLOCK_SIZE_MIN: u32 = 1;
/// See [`BLOCK_SIZE_MIN`].
pub const BLOCK_SIZE_PREFERRED: u32 = 4096;

/// The option data was not what its option requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed option data")]
pub struct Malformed;

/// The request header did not start with [`REQUEST_MAGIC`]: the stream is out of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad request magic {0:#010x}")]
pub struct BadMagic(pub u32);

/// An option request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    /// The option (`OPT_*`).
    pub option: u32,
    /// Length of the data that follows.
    pub length: u32,
}

/// Parses an option request header; `Err` carries the magic that was there instead.
pub fn parse_option_header(bytes: &[u8; OPTION_HEADER_LEN]) -> Result<OptionHeader, u64> {
    let mut r = Reader(bytes);
    let magic = r.u64().unwrap_or(0);
    if magic != IHAVEOPT {
        return Err(magic);
    }
    Ok(OptionHeader {
        option: r.u32().unwrap_or(0),
        length: r.u32().unwrap_or(0),
    })
}

/// The data of `NBD_OPT_INFO` and `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest<'a> {
    /// The export asked about (empty: the default one).
    pub export: &'a [u8],
    /// The `INFO_*` items asked for.
    pub requests: Vec<u16>,
}

/// Parses the data of `NBD_OPT_INFO` or `NBD_OPT_GO`; every byte must be accounted for.
pub fn parse_info_request(data: &[u8]) -> Result<InfoRequest<'_>, Malformed> {
    let mut r = Reader(data);
    let export = r.string()?;
    let count = r.u16().ok_or(Malformed)?;
    let mut requests = Vec::with_capacity(usize::from(count).min(r.0.len() / 2));
    for _ in 0..count {
        requests.push(r.u16().ok_or(Malformed)?);
    }
    r.end()?;
    Ok(InfoRequest { export, requests })
}

/// The data of `NBD_OPT_LIST_META_CONTEXT` and `NBD_OPT_SET_META_CONTEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaContextRequest<'a> {
    /// The export the contexts are for (empty: the default one).
    pub export: &'a [u8],
    /// The queries, such as `base:allocation` or `base:`.
    pub queries: Vec<&'a [u8]>,
}

/// Parses the data of the two meta context options; every byte must be accounted for.
pub fn parse_meta_context_request(data: &[u8]) -> Result<MetaContextRequest<'_>, Malformed> {
    let mut r = Reader(data);
    let export = r.string()?;
    let count = r.u32().ok_or(Malformed)?;
    // Each query takes at least its 4-byte length, which bounds a lying count.
    let mut queries = Vec::with_capacity((count as usize).min(r.0.len() / 4));
    for _ in 0..count {
        queries.push(r.string()?);
    }
    r.end()?;
    Ok(MetaContextRequest { export, queries })
}

/// A transmission request header, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// Command flags (`CMD_FLAG_*`).
    pub flags: u16,
    /// The command (`CMD_*`).
    pub command: u16,
    /// Opaque to the server, echoed in the reply.
    pub cookie: u64,
    /// Byte offset into the export.
    pub offset: u64,
    /// Byte length; for `WRITE`, the length of the data that follows.
    pub length: u32,
}

impl RequestHeader {
    /// Parses a request header.
    pub fn parse(bytes: &[u8; REQUEST_HEADER_LEN]) -> Result<RequestHeader, BadMagic> {
        let mut r = Reader(bytes);
        let magic = r.u32().unwrap_or(0);
        if magic != REQUEST_MAGIC {
            return Err(BadMagic(magic));
        }
        Ok(RequestHeader {
            flags: r.u16().unwrap_or(0),
            command: r.u16().unwrap_or(0),
            cookie: r.u64().unwrap_or(0),
            offset: r.u64().unwrap_or(0),
            length: r.u32().unwrap_or(0),
        })
    }

    /// Encodes the header (for clients and tests).
    pub fn encode(&self) -> [u8; REQUEST_HEADER_LEN] {
        let mut out = [0; REQUEST_HEADER_LEN];
        out[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&self.flags.to_be_bytes());
        out[6..8].copy_from_slice(&self.command.to_be_bytes());
        out[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        out[16..24].copy_from_slice(&self.offset.to_be_bytes());
        out[24..28].copy_from_slice(&self.length.to_be_bytes());
        out
    }

    /// The bytes of data that follow this header on the wire, valid or not.
    pub fn payload_len(&self) -> u32 {
        if self.command == CMD_WRITE {
            self.length
        } else {
            0
        }
    }
}

/// What the handshake settled for the transmission phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmission {
    /// Export size in bytes.
    pub size: u64,
    /// The transmission flags sent to the client (`FLAG_*`).
    pub flags: u16,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// The id of `base:allocation` if the client selected it for this export.
    pub meta_context: Option<u32>,
}

/// The transmission flags for an export's capabilities; `SEND_DF` only with structured
/// replies, as the spec requires (every read is answered with one chunk anyway).
pub fn transmission_flags(flags: ExportFlags, structured: bool) -> u16 {
    let mut bits = FLAG_HAS_FLAGS;
    for (set, bit) in [
        (flags.read_only, FLAG_READ_ONLY),
        (flags.can_flush, FLAG_SEND_FLUSH),
        (flags.can_fua, FLAG_SEND_FUA),
        (flags.rotational, FLAG_ROTATIONAL),
        (flags.can_trim, FLAG_SEND_TRIM),
        (flags.can_write_zeroes, FLAG_SEND_WRITE_ZEROES),
        (structured, FLAG_SEND_DF),
        (flags.can_multi_conn, FLAG_CAN_MULTI_CONN),
    ] {
        if set {
            bits |= bit;
        }
    }
    bits
}

/// A request that passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Read `length` bytes at `offset`.
    Read {
        /// Byte offset.
        offset: u64,
        /// Byte length, at most [`MAX_REQUEST_LEN`].
        length: u32,
    },
    /// Write the `length` bytes that follow the header at `offset`.
    Write {
        /// Byte offset.
        offset: u64,
        /// Byte length, at most [`MAX_REQUEST_LEN`].
        length: u32,
        /// Reply only once durable.
        fua: bool,
    },
    /// Finish in-flight requests, then close.
    Disconnect,
    /// Make acknowledged writes durable.
    Flush,
    /// Discard a range (a hint).
    Trim {
        /// Byte offset.
        offset: u64,
        /// Byte length.
        length: u32,
        /// Reply only once durable.
        fua: bool,
    },
    /// Zero a range.
    WriteZeroes {
        /// Byte offset.
        offset: u64,
        /// Byte length, any (no data comes with it).
        length: u32,
        /// Reply only once durable.
        fua: bool,
    },
    /// Report `base:allocation` for a range.
    BlockStatus {
        /// Byte offset.
        offset: u64,
        /// Byte length.
        length: u32,
        /// At most one extent, no longer than `length`.
        req_one: bool,
        /// The id of the context to answer with.
        context: u32,
    },
}

/// Why a request is refused, and the message sent along in a structured error chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The error value of the reply.
    pub error: NbdError,
    /// For the human reading the client's log.
    pub message: &'static str,
}

fn reject(error: NbdError, message: &'static str) -> Rejection {
    Rejection { error, message }
}

/// Validates a request against what the handshake agreed, per the table at the top of this
/// module. The caller must still read and drop the data of a refused `WRITE`
/// ([`RequestHeader::payload_len`]).
pub fn validate(header: &RequestHeader, session: &Transmission) -> Result<Command, Rejection> {
    use NbdError::{Invalid, NoSpace, Perm};

    let advertised = |bit: u16| session.flags & bit != 0;
    let offset = header.offset;
    let length = header.length;
    let fua = header.flags & CMD_FLAG_FUA != 0;
    let in_range = offset
        .checked_add(u64::from(length))
        .is_some_and(|end| end <= session.size);

    if header.command == CMD_DISC {
        return Ok(Command::Disconnect);
    }
    // FUA is valid on every command once advertised; each command adds its own.
    let mut allowed = if advertised(FLAG_SEND_FUA) {
        CMD_FLAG_FUA
    } else {
        0
    };
    let (needed_flag, writes) = match header.command {
        CMD_READ => {
            if advertised(FLAG_SEND_DF) {
                allowed |= CMD_FLAG_DF;
            }
            (None, false)
        }
        CMD_WRITE => (None, true),
        CMD_FLUSH => (Some(FLAG_SEND_FLUSH), false),
        CMD_TRIM => (Some(FLAG_SEND_TRIM), true),
        CMD_WRITE_ZEROES => {
            allowed |= CMD_FLAG_NO_HOLE;
            (Some(FLAG_SEND_WRITE_ZEROES), true)
        }
        CMD_BLOCK_STATUS => {
            allowed |= CMD_FLAG_REQ_ONE;
            (None, false)
        }
        _ => return Err(reject(Invalid, "unknown command")),
    };
    if header.flags & !allowed != 0 {
        return Err(reject(Invalid, "unknown or unexpected command flag"));
    }
    // Before the advertisement check: a read-only export need not advertise TRIM, and the
    // spec still asks for EPERM.
    if writes && advertised(FLAG_READ_ONLY) {
        return Err(reject(Perm, "export is read-only"));
    }
    if needed_flag.is_some_and(|bit| !advertised(bit)) {
        return Err(reject(Invalid, "command not advertised"));
    }

    match header.command {
        CMD_READ => {
            if length > MAX_REQUEST_LEN {
                return Err(reject(Invalid, "read longer than the maximum block size"));
            }
            if !in_range {
                return Err(reject(Invalid, "read past the end of the export"));
            }
            Ok(Command::Read { offset, length })
        }
        CMD_WRITE => {
            if length > MAX_REQUEST_LEN {
                return Err(reject(Invalid, "write longer than the maximum block size"));
            }
            if !in_range {
                return Err(reject(NoSpace, "write past the end of the export"));
            }
            Ok(Command::Write {
                offset,
                length,
                fua,
            })
        }
        CMD_FLUSH => Ok(Command::Flush),
        CMD_TRIM => {
            if !in_range {
                return Err(reject(Invalid, "trim past the end of the export"));
            }
            Ok(Command::Trim {
                offset,
                length,
                fua,
            })
        }
        CMD_WRITE_ZEROES => {
            // No length limit: the maximum block size bounds requests that carry data
            // (proto.md), and nbdcopy zeroes a sparse source's holes up to 128 MiB at a time.
            if !in_range {
                return Err(reject(NoSpace, "write zeroes past the end of the export"));
            }
            Ok(Command::WriteZeroes {
                offset,
                length,
                fua,
            })
        }
        CMD_BLOCK_STATUS => {
            let Some(context) = session.meta_context else {
                return Err(reject(Invalid, "no metadata context was selected"));
            };
            if length == 0 {
                return Err(reject(Invalid, "block status of an empty range"));
            }
            if !in_range {
                return Err(reject(Invalid, "block status past the end of the export"));
            }
            Ok(Command::BlockStatus {
                offset,
                length,
                req_one: header.flags & CMD_FLAG_REQ_ONE != 0,
                context,
            })
        }
        _ => Err(reject(Invalid, "unknown command")),
    }
}

/// Appends an option reply.
pub fn put_option_reply(out: &mut Vec<u8>, option: u32, reply: u32, data: &[u8]) {
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&len_u32(data.len()).to_be_bytes());
    out.extend_from_slice(data);
}

/// A simple reply header.
pub fn simple_reply(cookie: u64, error: u32) -> [u8; SIMPLE_REPLY_LEN] {
    let mut out = [0; SIMPLE_REPLY_LEN];
    out[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out
}

/// Appends a structured reply chunk header.
pub fn put_chunk_header(out: &mut Vec<u8>, flags: u16, kind: u16, cookie: u64, length: u32) {
    out.extend_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
}

/// Appends a final `OFFSET_DATA` chunk header for `length` bytes read at `offset`; the data
/// itself follows it on the wire.
pub fn put_read_chunk_header(out: &mut Vec<u8>, cookie: u64, offset: u64, length: u32) {
    put_chunk_header(
        out,
        REPLY_FLAG_DONE,
        REPLY_TYPE_OFFSET_DATA,
        cookie,
        length.saturating_add(8),
    );
    out.extend_from_slice(&offset.to_be_bytes());
}

/// Appends a final `ERROR` chunk carrying `message` (cut to the spec's string limit).
pub fn put_error_chunk(out: &mut Vec<u8>, cookie: u64, error: u32, message: &str) {
    let message = truncate_utf8(message, MAX_STRING_LEN);
    let message_len = u16::try_from(message.len()).unwrap_or(0);
    let message = &message[..usize::from(message_len)];
    put_chunk_header(
        out,
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        cookie,
        6 + u32::from(message_len),
    );
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&message_len.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
}

/// Appends a final `BLOCK_STATUS` chunk: `(length, status)` descriptors for one context.
pub fn put_block_status_chunk(
    out: &mut Vec<u8>,
    cookie: u64,
    context: u32,
    extents: &[(u32, u32)],
) {
    let length = len_u32(4 + extents.len().saturating_mul(8));
    put_chunk_header(
        out,
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        cookie,
        length,
    );
    out.extend_from_slice(&context.to_be_bytes());
    for (len, status) in extents {
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&status.to_be_bytes());
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Lengths the server builds are bounded far below 4 GiB; saturate rather than wrap if not.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Reads big-endian integers and length-prefixed strings from the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// A u32 length then that many bytes, no longer than the spec's string limit.
    fn string(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.u32().ok_or(Malformed)? as usize;
        if len > MAX_STRING_LEN {
            return Err(Malformed);
        }
        self.take(len).ok_or(Malformed)
    }

    fn end(&self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn session(flags: u16) -> Transmission {
        Transmission {
            size: 1 << 20,
            flags: FLAG_HAS_FLAGS | flags,
            structured: true,
            meta_context: Some(1),
        }
    }

    fn header(command: u16, flags: u16, offset: u64, length: u32) -> RequestHeader {
        RequestHeader {
            flags,
            command,
            cookie: 7,
            offset,
            length,
        }
    }

    #[test]
    fn request_header_round_trips() {
        let h = header(CMD_WRITE, CMD_FLAG_FUA, 4096, 512);
        assert_eq!(RequestHeader::parse(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[0] = 0;
        assert_eq!(RequestHeader::parse(&bad), Err(BadMagic(0x0060_9513)));
    }

    #[test]
    fn out_of_range_errors_follow_the_spec() {
        let all = FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FUA;
        let s = session(all);
        let past = |command| validate(&header(command, 0, (1 << 20) - 1, 2), &s);
        assert_eq!(past(CMD_READ).map_err(|r| r.error), Err(NbdError::Invalid));
        assert_eq!(past(CMD_WRITE).map_err(|r| r.error), Err(NbdError::NoSpace));
        assert_eq!(past(CMD_TRIM).map_err(|r| r.error), Err(NbdError::Invalid));
        assert_eq!(
            past(CMD_WRITE_ZEROES).map_err(|r| r.error),
            Err(NbdError::NoSpace)
        );
        assert_eq!(
            past(CMD_BLOCK_STATUS).map_err(|r| r.error),
            Err(NbdError::Invalid)
        );
        // An offset near u64::MAX must not wrap into range.
        let wrap = validate(&header(CMD_READ, 0, u64::MAX, 2), &s);
        assert_eq!(wrap.map_err(|r| r.error), Err(NbdError::Invalid));
    }

    #[test]
    fn flags_and_commands_must_be_advertised() {
        let plain = session(0);
        let invalid = |h: RequestHeader, s: &Transmission| {
            validate(&h, s).map_err(|r| r.error) == Err(NbdError::Invalid)
        };
        assert!(invalid(header(CMD_FLUSH, 0, 0, 0), &plain));
        assert!(invalid(header(CMD_TRIM, 0, 0, 1), &plain));
        assert!(invalid(header(CMD_READ, CMD_FLAG_FUA, 0, 1), &plain));
        assert!(invalid(header(CMD_READ, CMD_FLAG_REQ_ONE, 0, 1), &plain));
        assert!(invalid(header(CMD_CACHE, 0, 0, 1), &plain));
        assert!(invalid(header(99, 0, 0, 1), &plain));
        assert!(invalid(header(CMD_READ, 0, 0, MAX_REQUEST_LEN + 1), &plain));
        // Requests without data may be longer than the maximum block size.
        let mut zeroes = session(FLAG_SEND_WRITE_ZEROES | FLAG_SEND_TRIM);
        zeroes.size = 1 << 30;
        for command in [CMD_WRITE_ZEROES, CMD_TRIM] {
            assert!(validate(&header(command, 0, 0, MAX_REQUEST_LEN + 1), &zeroes).is_ok());
        }
        let fua = session(FLAG_SEND_FUA);
        assert!(validate(&header(CMD_READ, CMD_FLAG_FUA, 0, 1), &fua).is_ok());
        let read_only = session(FLAG_READ_ONLY);
        for command in [CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES] {
            let write = validate(&header(command, 0, 0, 1), &read_only);
            assert_eq!(write.map_err(|r| r.error), Err(NbdError::Perm));
        }
        let mut no_meta = session(0);
        no_meta.meta_context = None;
        assert!(invalid(header(CMD_BLOCK_STATUS, 0, 0, 1), &no_meta));
    }

    #[test]
    fn option_data_must_be_exact() {
        let mut go = Vec::new();
        go.extend_from_slice(&3u32.to_be_bytes());
        go.extend_from_slice(b"vol");
        go.extend_from_slice(&1u16.to_be_bytes());
        go.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        let parsed = parse_info_request(&go);
        assert_eq!(
            parsed,
            Ok(InfoRequest {
                export: b"vol",
                requests: vec![INFO_BLOCK_SIZE],
            })
        );
        go.push(0);
        assert_eq!(parse_info_request(&go), Err(Malformed));

        let mut meta = Vec::new();
        meta.extend_from_slice(&0u32.to_be_bytes());
        meta.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse_meta_context_request(&meta), Err(Malformed));
    }

    #[test]
    fn error_chunk_message_is_bounded() {
        let mut out = Vec::new();
        put_error_chunk(&mut out, 1, 22, &"é".repeat(5000));
        let message_len = u16::from_be_bytes([out[24], out[25]]);
        assert_eq!(usize::from(message_len), MAX_STRING_LEN);
        assert_eq!(out.len(), CHUNK_HEADER_LEN + 6 + MAX_STRING_LEN);
    }
}
