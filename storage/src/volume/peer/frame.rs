//! The frame every byte on the replication link travels in, from the first byte of the
//! handshake on: a fixed 8-octet header, then the payload.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Magic (0xF1C5)        |     Type      | Reserved (0)  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Payload length (octets)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Payload (length octets)                 ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Integers are big-endian. The magic is on every frame, not only the first, so that a peer
//! that is not Fulcrum is told apart at once and a framing bug shows at the next frame rather
//! than as a misread write. Types 0x01-0x0F are the handshake's, 0x10 on the messages'. The
//! length is checked against the limit of the phase (tiny during the handshake, about 1 MiB
//! after) before anything is buffered, so a peer cannot make us allocate more.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::WireError;

/// The first two octets of every frame.
pub(super) const MAGIC: u16 = 0xF1C5;

/// Length of the frame header.
pub(super) const HEADER_LEN: usize = 8;

/// A frame header, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) ty: u8,
    pub(super) len: usize,
}

impl Header {
    /// Reads a header, refusing a wrong magic, a reserved octet that is not 0 and a payload
    /// longer than `max_payload`.
    pub(super) fn parse(bytes: [u8; HEADER_LEN], max_payload: usize) -> Result<Self, WireError> {
        let [m0, m1, ty, reserved, l0, l1, l2, l3] = bytes;
        let magic = u16::from_be_bytes([m0, m1]);
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        if reserved != 0 {
            return Err(WireError::Reserved(reserved));
        }
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        // A u32 always fits in the usize of the 32- and 64-bit targets Fulcrum runs on; if
        // it did not, it would be over any limit anyway.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > max_payload {
            return Err(WireError::TooLarge {
                len,
                max: max_payload,
            });
        }
        Ok(Self { ty, len })
    }
}

/// Appends a header for a payload the caller appends next; [`finish`] fills the length in.
pub(super) fn start(dst: &mut BytesMut, ty: u8) -> usize {
    let start = dst.len();
    dst.put_u16(MAGIC);
    dst.put_u8(ty);
    dst.put_u8(0);
    dst.put_u32(0);
    start
}

/// Writes the length of the frame begun at `start` (by [`start`]), counting `trailing` octets
/// the caller sends after `dst`, or takes the frame back off `dst` if its payload is over
/// `max_payload`.
pub(super) fn finish(
    dst: &mut BytesMut,
    start: usize,
    trailing: usize,
    max_payload: usize,
) -> Result<(), WireError> {
    let len = dst.len() - start - HEADER_LEN + trailing;
    match u32::try_from(len) {
        Ok(wire_len) if len <= max_payload => {
            dst[start + 4..start + HEADER_LEN].copy_from_slice(&wire_len.to_be_bytes());
            Ok(())
        }
        _ => {
            dst.truncate(start);
            Err(WireError::TooLarge {
                len,
                max: max_payload,
            })
        }
    }
}

/// Takes one whole frame off the front of `src`: its type and payload, or `None` while more
/// bytes are needed (having reserved room for the rest of the frame).
pub(super) fn split(
    src: &mut BytesMut,
    max_payload: usize,
) -> Result<Option<(u8, Bytes)>, WireError> {
    let Some(header) = src.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = Header::parse(*header, max_payload)?;
    let total = HEADER_LEN + header.len;
    if src.len() < total {
        src.reserve(total - src.len());
        return Ok(None);
    }
    let mut frame = src.split_to(total);
    let payload = frame.split_off(HEADER_LEN).freeze();
    Ok(Some((header.ty, payload)))
}
