//! Messages to frames and back (the frame and the messages are drawn in `mod.rs`).
//!
//! An entry in Entries:
//!
//! ```text
//!   path str32 | deleted u8 | kind u8 (0 file, 1 dir, 2 symlink) | size u64 | mtime_ns i64
//!   mode u32 | owner u8 (0 none, 1: uid u32 | gid u32 | user str16 | group str16 follow)
//!   hash [32] (files only) | target str32 (symlinks only) | modified_by str16
//!   version: u16 count, (node str16, counter u64) each
//! ```
//!
//! An owner's names are empty when the sender's numbers have none. The receiver takes its own
//! number for a name it knows, the sender's number otherwise (see [`crate::sync::owner`]).
//!
//! A path is decoded as the peer sent it: whether it stays inside the root is for the engine to
//! judge (and refuse, loudly), not for the codec to hide.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{Hello, MAGIC, MAX_ENTRIES, MAX_PAYLOAD, MAX_SIGNATURE, Message, Request};
use crate::sync::{
    index::{Entry, Hash, Kind, MAX_PATH, MAX_VERSION_NODES, NO_HASH, VersionVector},
    owner::{self, Owner},
};

pub(super) const HEADER_LEN: usize = 8;

/// The longest user or group name looked up: Linux's LOGIN_NAME_MAX, with its NUL.
const MAX_OWNER_NAME: usize = 255;

const HELLO: u8 = 0x10;
const RESUME: u8 = 0x11;
const ENTRIES: u8 = 0x12;
const ACK: u8 = 0x13;
const GET: u8 = 0x14;
const GET_DELTA: u8 = 0x15;
pub(super) const DATA: u8 = 0x16;
const DELTA: u8 = 0x17;
const END: u8 = 0x18;
const STALE: u8 = 0x19;
const FAILED: u8 = 0x1A;
const REFUSE: u8 = 0x1B;
const PING: u8 = 0x1C;
const PONG: u8 = 0x1D;

/// A frame that is not a valid message, or a stream that ended inside one.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("not the Fulcrum sync protocol (magic {0:#06x})")]
    BadMagic(u16),
    #[error("reserved octet is {0}, not 0")]
    Reserved(u8),
    #[error("frame of {len} octets, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    #[error("malformed {message}: {reason}")]
    Malformed {
        message: &'static str,
        reason: &'static str,
    },
    #[error("the stream ended inside a frame")]
    UnexpectedEof,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Appends `msg` as one frame; nothing is appended if it is too large.
pub fn encode(msg: &Message, dst: &mut BytesMut) -> Result<(), ProtoError> {
    let start = dst.len();
    dst.put_u16(MAGIC);
    dst.put_u8(type_of(msg));
    dst.put_u8(0);
    dst.put_u32(0);
    match msg {
        Message::Hello(h) => {
            dst.put_u16(h.version);
            put_str16(dst, &h.set);
            put_str16(dst, &h.node);
            put_str16(dst, &h.listen);
            dst.put_u64(h.index_id);
            dst.put_u8(h.flags);
        }
        Message::Resume { index_id, from } => {
            dst.put_u64(*index_id);
            dst.put_u64(*from);
        }
        Message::Entries { up_to, entries } => {
            dst.put_u64(*up_to);
            dst.put_u32(entries.len() as u32);
            for entry in entries {
                put_entry(dst, entry);
            }
        }
        Message::Ack { up_to } => dst.put_u64(*up_to),
        Message::Get(request) => put_request(dst, request),
        Message::GetDelta { request, signature } => {
            put_request(dst, request);
            dst.put_u32(signature.len() as u32);
            dst.put_slice(signature);
        }
        Message::Data { id, data: bytes } | Message::Delta { id, delta: bytes } => {
            dst.put_u32(*id);
            dst.put_slice(bytes);
        }
        Message::End { id, hash, sha256 } => {
            dst.put_u32(*id);
            dst.put_slice(hash);
            if let Some(sha256) = sha256 {
                dst.put_slice(sha256);
            }
        }
        Message::Stale { id } => dst.put_u32(*id),
        Message::Failed { id, reason } => {
            dst.put_u32(*id);
            put_str16(dst, reason);
        }
        Message::Refuse { reason } => put_str16(dst, reason),
        Message::Ping { nonce } | Message::Pong { nonce } => dst.put_u64(*nonce),
    }
    let len = dst.len() - start - HEADER_LEN;
    if len > MAX_PAYLOAD {
        dst.truncate(start);
        return Err(ProtoError::TooLarge {
            len,
            max: MAX_PAYLOAD,
        });
    }
    dst[start + 4..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// The length of the frame at the front of `src` (header included), once its header is
/// there; an error if the header is not one (bad magic, reserved octet, a length over the
/// limit: checked before anything waits for the frame's octets).
pub(super) fn frame_len(src: &[u8]) -> Result<Option<usize>, ProtoError> {
    let Some(header) = src.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let [m0, m1, _, reserved, l0, l1, l2, l3] = *header;
    let magic = u16::from_be_bytes([m0, m1]);
    if magic != MAGIC {
        return Err(ProtoError::BadMagic(magic));
    }
    if reserved != 0 {
        return Err(ProtoError::Reserved(reserved));
    }
    let len = usize::try_from(u32::from_be_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
    if len > MAX_PAYLOAD {
        return Err(ProtoError::TooLarge {
            len,
            max: MAX_PAYLOAD,
        });
    }
    Ok(Some(HEADER_LEN + len))
}

/// What decoding does with an owner's user and group names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnerNames {
    /// Looks each up here (NSS: `/etc/passwd`, or LDAP), for this node's numbers.
    LookUp,
    /// Keeps the sender's numbers, looking nothing up: for a node that does not sync owners,
    /// which drops them as entries arrive. A lookup blocks the thread decoding, which is a
    /// tokio worker that the proxy may share.
    Ignore,
}

/// Takes one message off the front of `src`, or `None` while more bytes are needed.
pub fn decode(src: &mut BytesMut) -> Result<Option<Message>, ProtoError> {
    let Some(frame) = frame_len(src)? else {
        return Ok(None);
    };
    if src.len() < frame {
        src.reserve(frame - src.len());
        return Ok(None);
    }
    let ty = src[2];
    src.advance(HEADER_LEN);
    let payload = src.split_to(frame - HEADER_LEN).freeze();
    decode_payload(ty, payload, OwnerNames::LookUp).map(Some)
}

/// [`decode`] from shared octets: the message's payloads are slices of `src`, not copies.
pub(super) fn decode_shared(
    src: &mut Bytes,
    names: OwnerNames,
) -> Result<Option<Message>, ProtoError> {
    let Some(frame) = frame_len(src)? else {
        return Ok(None);
    };
    if src.len() < frame {
        return Ok(None);
    }
    let mut payload = src.split_to(frame);
    let ty = payload[2];
    payload.advance(HEADER_LEN);
    decode_payload(ty, payload, names).map(Some)
}

fn type_of(msg: &Message) -> u8 {
    match msg {
        Message::Hello(_) => HELLO,
        Message::Resume { .. } => RESUME,
        Message::Entries { .. } => ENTRIES,
        Message::Ack { .. } => ACK,
        Message::Get(_) => GET,
        Message::GetDelta { .. } => GET_DELTA,
        Message::Data { .. } => DATA,
        Message::Delta { .. } => DELTA,
        Message::End { .. } => END,
        Message::Stale { .. } => STALE,
        Message::Failed { .. } => FAILED,
        Message::Refuse { .. } => REFUSE,
        Message::Ping { .. } => PING,
        Message::Pong { .. } => PONG,
    }
}

fn decode_payload(ty: u8, payload: Bytes, names: OwnerNames) -> Result<Message, ProtoError> {
    let name = match ty {
        HELLO => "Hello",
        RESUME => "Resume",
        ENTRIES => "Entries",
        ACK => "Ack",
        GET => "Get",
        GET_DELTA => "GetDelta",
        DATA => "Data",
        DELTA => "Delta",
        END => "End",
        STALE => "Stale",
        FAILED => "Failed",
        REFUSE => "Refuse",
        PING => "Ping",
        PONG => "Pong",
        other => return Err(ProtoError::UnknownType(other)),
    };
    let mut r = Reader {
        buf: payload,
        message: name,
        names,
    };
    let msg = match ty {
        HELLO => Message::Hello(Hello {
            version: r.u16()?,
            set: r.str16()?,
            node: r.str16()?,
            listen: r.str16()?,
            index_id: r.u64()?,
            flags: r.u8()?,
        }),
        RESUME => Message::Resume {
            index_id: r.u64()?,
            from: r.u64()?,
        },
        ENTRIES => {
            let up_to = r.u64()?;
            let count = r.u32()? as usize;
            if count > MAX_ENTRIES {
                return Err(r.malformed("too many entries"));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                entries.push(r.entry()?);
            }
            Message::Entries { up_to, entries }
        }
        ACK => Message::Ack { up_to: r.u64()? },
        GET => Message::Get(r.request()?),
        GET_DELTA => {
            let request = r.request()?;
            let len = r.u32()? as usize;
            if len > MAX_SIGNATURE {
                return Err(r.malformed("signature too large"));
            }
            let signature = r.take(len)?;
            Message::GetDelta { request, signature }
        }
        DATA => Message::Data {
            id: r.u32()?,
            data: r.rest(),
        },
        DELTA => Message::Delta {
            id: r.u32()?,
            delta: r.rest(),
        },
        END => Message::End {
            id: r.u32()?,
            hash: r.hash()?,
            sha256: if r.buf.is_empty() {
                None
            } else {
                Some(r.hash()?)
            },
        },
        STALE => Message::Stale { id: r.u32()? },
        FAILED => Message::Failed {
            id: r.u32()?,
            reason: r.str16()?,
        },
        PING => Message::Ping { nonce: r.u64()? },
        PONG => Message::Pong { nonce: r.u64()? },
        _ => Message::Refuse { reason: r.str16()? },
    };
    if !r.buf.is_empty() {
        return Err(r.malformed("octets after the message"));
    }
    Ok(msg)
}

fn put_str16(dst: &mut BytesMut, s: &str) {
    // Names and reasons are short; a longer one is cut at a character boundary.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    dst.put_u16(end as u16);
    dst.put_slice(&s.as_bytes()[..end]);
}

fn put_str32(dst: &mut BytesMut, s: &str) {
    dst.put_u32(s.len() as u32);
    dst.put_slice(s.as_bytes());
}

fn put_request(dst: &mut BytesMut, r: &Request) {
    dst.put_u32(r.id);
    put_str32(dst, &r.path);
    dst.put_u64(r.size);
    dst.put_i64(r.mtime_ns);
    dst.put_slice(&r.hash);
}

fn put_entry(dst: &mut BytesMut, e: &Entry) {
    put_str32(dst, &e.path);
    dst.put_u8(u8::from(e.deleted));
    dst.put_u8(match e.kind {
        Kind::File => 0,
        Kind::Dir => 1,
        Kind::Symlink(_) => 2,
    });
    dst.put_u64(e.size);
    dst.put_i64(e.mtime_ns);
    dst.put_u32(e.mode);
    put_owner(dst, e.owner);
    match &e.kind {
        Kind::File => dst.put_slice(&e.hash),
        Kind::Symlink(target) => put_str32(dst, target),
        Kind::Dir => {}
    }
    put_str16(dst, &e.modified_by);
    dst.put_u16(e.version.len() as u16);
    for (node, counter) in e.version.iter() {
        put_str16(dst, node);
        dst.put_u64(counter);
    }
}

fn put_owner(dst: &mut BytesMut, owner: Option<Owner>) {
    let names = owner.map(|o| (o, owner::user_name(o.uid), owner::group_name(o.gid)));
    let Some((owner, Ok(user), Ok(group))) = names else {
        // None, or names that could not be looked up: no owner rather than a bare number
        // that may name someone else on the peer.
        dst.put_u8(0);
        return;
    };
    dst.put_u8(1);
    dst.put_u32(owner.uid);
    dst.put_u32(owner.gid);
    put_str16(dst, user.as_deref().unwrap_or(""));
    put_str16(dst, group.as_deref().unwrap_or(""));
}

/// Bounds-checked reads of one payload; running out is a malformed message.
struct Reader {
    buf: Bytes,
    message: &'static str,
    names: OwnerNames,
}

impl Reader {
    fn malformed(&self, reason: &'static str) -> ProtoError {
        ProtoError::Malformed {
            message: self.message,
            reason,
        }
    }

    fn need(&self, n: usize) -> Result<(), ProtoError> {
        if self.buf.len() < n {
            Err(self.malformed("ends in the middle of a field"))
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, ProtoError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self) -> Result<u16, ProtoError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    fn u32(&mut self) -> Result<u32, ProtoError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    fn u64(&mut self) -> Result<u64, ProtoError> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }

    fn i64(&mut self) -> Result<i64, ProtoError> {
        self.need(8)?;
        Ok(self.buf.get_i64())
    }

    fn take(&mut self, n: usize) -> Result<Bytes, ProtoError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    fn rest(&mut self) -> Bytes {
        self.buf.split_off(0)
    }

    fn hash(&mut self) -> Result<Hash, ProtoError> {
        let bytes = self.take(32)?;
        let mut hash = NO_HASH;
        hash.copy_from_slice(&bytes);
        Ok(hash)
    }

    fn string(&mut self, len: usize) -> Result<String, ProtoError> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed("a string that is not UTF-8"))
    }

    fn str16(&mut self) -> Result<String, ProtoError> {
        let len = self.u16()? as usize;
        self.string(len)
    }

    fn str32(&mut self) -> Result<String, ProtoError> {
        let len = self.u32()? as usize;
        if len > MAX_PATH {
            return Err(self.malformed("a path longer than 4096 octets"));
        }
        self.string(len)
    }

    fn request(&mut self) -> Result<Request, ProtoError> {
        Ok(Request {
            id: self.u32()?,
            path: self.str32()?,
            size: self.u64()?,
            mtime_ns: self.i64()?,
            hash: self.hash()?,
        })
    }

    fn entry(&mut self) -> Result<Entry, ProtoError> {
        let path = self.str32()?;
        let deleted = match self.u8()? {
            0 => false,
            1 => true,
            _ => return Err(self.malformed("deleted flag not 0 or 1")),
        };
        let kind = self.u8()?;
        let size = self.u64()?;
        let mtime_ns = self.i64()?;
        let mode = self.u32()? & 0o7777;
        let owner = self.owner()?;
        let mut hash = NO_HASH;
        let kind = match kind {
            0 => {
                hash = self.hash()?;
                Kind::File
            }
            1 => Kind::Dir,
            2 => Kind::Symlink(self.str32()?),
            _ => return Err(self.malformed("unknown kind")),
        };
        let modified_by = self.str16()?;
        let count = self.u16()? as usize;
        if count > MAX_VERSION_NODES {
            return Err(self.malformed("too many nodes in a version vector"));
        }
        let mut version = VersionVector::new();
        for _ in 0..count {
            let node = self.str16()?;
            version.set(&node, self.u64()?);
        }
        Ok(Entry {
            path,
            kind,
            size,
            mtime_ns,
            mode,
            owner,
            hash,
            version,
            modified_by,
            deleted,
            sequence: 0,
        })
    }

    /// An entry's owner, in this node's numbers.
    fn owner(&mut self) -> Result<Option<Owner>, ProtoError> {
        match self.u8()? {
            0 => return Ok(None),
            1 => {}
            _ => return Err(self.malformed("owner flag not 0 or 1")),
        }
        let (uid, gid) = (self.u32()?, self.u32()?);
        if uid == u32::MAX || gid == u32::MAX {
            // -1: `chown` would read it as "leave it as it is".
            return Err(self.malformed("owner or group -1"));
        }
        let (user, group) = (self.str16()?, self.str16()?);
        if self.names == OwnerNames::Ignore {
            return Ok(Some(Owner { uid, gid }));
        }
        // This node's number for a name it knows, the sender's otherwise. A name longer than
        // Linux allows (LOGIN_NAME_MAX) is not looked up: no sound peer sends one, and the
        // lookup caches keep what they are asked.
        let ours = |name: &str, number: u32, look_up: fn(&str) -> nix::Result<Option<u32>>| {
            if name.is_empty() || name.len() > MAX_OWNER_NAME {
                return Ok(number);
            }
            look_up(name).map(|found| found.unwrap_or(number))
        };
        Ok(
            match (
                ours(&user, uid, owner::uid_named),
                ours(&group, gid, owner::gid_named),
            ) {
                (Ok(uid), Ok(gid)) => Some(Owner { uid, gid }),
                // A failed lookup: no owner rather than a guess (see `crate::sync::owner`).
                _ => None,
            },
        )
    }
}
