//! An outgoing buffer of whole frames, for the file server: a Data frame is read from the file
//! straight into its place in the buffer, and many small answers share one buffer so that
//! they leave in one write. Buffers are reused: what lies past the frames stays initialized
//! from earlier use, so a file is read in without zeroing memory first.

use std::io::{self, Read};

use bytes::BytesMut;

use super::{
    MAGIC, MAX_DATA, Message, ProtoError,
    codec::{self, DATA, HEADER_LEN},
};

/// Whole frames waiting to be written.
#[derive(Debug, Default)]
pub struct FrameBuf {
    /// Initialized octets; the frames are `buf[..len]`.
    buf: Vec<u8>,
    len: usize,
}

impl FrameBuf {
    pub fn new() -> Self {
        Self::default()
    }

    /// The frames' octets.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the frames, keeping the memory.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends a Data frame for request `id` holding the next octets of `src`, at most `max`
    /// (and at most [`MAX_DATA`]); returns how many were read. Nothing is appended when `src`
    /// has none left, or on an error.
    pub fn put_data_from(&mut self, id: u32, src: &mut impl Read, max: usize) -> io::Result<usize> {
        let start = self.len;
        let max = max.min(MAX_DATA);
        let mut header = [0u8; HEADER_LEN + 4];
        header[..2].copy_from_slice(&MAGIC.to_be_bytes());
        header[2] = DATA;
        header[HEADER_LEN..].copy_from_slice(&id.to_be_bytes());
        self.push(&header);
        let slot = self.room(max);
        let mut filled = 0;
        while filled < max {
            match src.read(&mut slot[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.len = start;
                    return Err(e);
                }
            }
        }
        if filled == 0 {
            self.len = start;
            return Ok(0);
        }
        self.len += filled;
        let payload = (4 + filled) as u32;
        self.buf[start + 4..start + HEADER_LEN].copy_from_slice(&payload.to_be_bytes());
        Ok(filled)
    }

    /// Appends `msg` as one frame (meant for small ones: it is copied from the codec's buffer).
    pub fn put_message(&mut self, msg: &Message) -> Result<(), ProtoError> {
        let mut frame = BytesMut::new();
        codec::encode(msg, &mut frame)?;
        self.push(&frame);
        Ok(())
    }

    fn push(&mut self, octets: &[u8]) {
        self.room(octets.len()).copy_from_slice(octets);
        self.len += octets.len();
    }

    /// The `n` octets after the frames, initialized (zeroed only the first time the buffer
    /// reaches that far).
    fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.len + n;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        &mut self.buf[self.len..end]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::sync::proto::decode;

    /// A reader that hands out at most 7 octets a call.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn decoded(frames: &FrameBuf) -> Vec<Message> {
        let mut wire = BytesMut::from(frames.as_slice());
        std::iter::from_fn(|| decode(&mut wire).unwrap()).collect()
    }

    // Input: a file read in short reads, capped at 40 of its 50 octets, then a message; then
    // the buffer cleared and reused for a shorter file, and an empty one. Output: each use
    // decodes to exactly its frames (nothing of the earlier, longer content shows through);
    // an empty source appends nothing.
    #[test]
    fn data_frames_read_in_place_decode_and_the_buffer_is_reused() {
        let content: Vec<u8> = (0..50).collect();
        let mut frames = FrameBuf::new();
        let n = frames.put_data_from(3, &mut Trickle(&content), 40).unwrap();
        assert_eq!(n, 40);
        frames.put_message(&Message::Stale { id: 3 }).unwrap();
        let expected = vec![
            Message::Data {
                id: 3,
                data: content[..40].to_vec().into(),
            },
            Message::Stale { id: 3 },
        ];
        assert_eq!(decoded(&frames), expected);

        frames.clear();
        assert_eq!(frames.put_data_from(4, &mut &b"abc"[..], 1000).unwrap(), 3);
        assert_eq!(frames.put_data_from(5, &mut &b""[..], 1000).unwrap(), 0);
        let expected = vec![Message::Data {
            id: 4,
            data: b"abc".to_vec().into(),
        }];
        assert_eq!(decoded(&frames), expected);
    }
}
