//! Messages over an async byte stream: a reader and a writer around [`super::decode`] and
//! [`super::encode`], for the link once [`super::authenticate`] has succeeded.
//!
//! tokio-util's `codec` feature is not enabled in the workspace, so these stand in for its
//! `FramedRead`/`FramedWrite`; `decode` and `encode` already have the shape of its `Decoder`
//! and `Encoder`.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::message::Message;
use super::wire::{self, WireError};

/// How much to read at a time when the buffer has no room.
const READ_CHUNK: usize = 64 * 1024;

/// Reads messages from one half of the link.
#[derive(Debug)]
pub struct MessageReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
        }
    }

    /// The next message, or `None` if the peer closed the stream between two frames.
    ///
    /// Cancel safe: bytes read stay buffered for the next call, so it can sit in a `select!`
    /// beside a timer. After an error the stream is out of step; drop the connection.
    pub async fn next(&mut self) -> Result<Option<Message>, WireError> {
        loop {
            if let Some(msg) = wire::decode(&mut self.buf)? {
                return Ok(Some(msg));
            }
            // `decode` reserved room for the rest of a frame whose header it has seen; asking for
            // more while any room is left would reallocate, copying the nearly read frame (most
            // of the secondary's CPU time in `fulcrum-bench nbd` before this).
            if self.buf.capacity() == self.buf.len() {
                self.buf.reserve(READ_CHUNK);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(WireError::UnexpectedEof)
                };
            }
        }
    }
}

/// Writes messages to the other half of the link, batching what is fed between flushes. A
/// message's trailing data (a write's payload) is queued as it is, not copied.
#[derive(Debug)]
pub struct MessageWriter<W> {
    inner: W,
    /// Headers and small messages being gathered.
    buf: BytesMut,
    /// What goes before `buf`, in order: gathered headers and payloads.
    segments: VecDeque<Bytes>,
}

impl<W: AsyncWrite + Unpin> MessageWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            segments: VecDeque::new(),
        }
    }

    /// Queues `msg` without writing it; nothing is queued if it cannot be encoded.
    pub fn feed(&mut self, msg: &Message) -> Result<(), WireError> {
        if let Some(data) = wire::encode_head(msg, &mut self.buf)? {
            self.segments.push_back(self.buf.split().freeze());
            self.segments.push_back(data);
        }
        Ok(())
    }

    /// Writes everything queued and flushes the stream.
    ///
    /// If cancelled, what was not yet written stays queued for the next flush.
    pub async fn flush(&mut self) -> Result<(), WireError> {
        if !self.buf.is_empty() {
            self.segments.push_back(self.buf.split().freeze());
        }
        while let Some(segment) = self.segments.front_mut() {
            // `write_all_buf` advances the segment, so a cancelled flush resumes where it was.
            self.inner.write_all_buf(segment).await?;
            self.segments.pop_front();
        }
        self.inner.flush().await?;
        Ok(())
    }

    /// [`feed`](Self::feed) then [`flush`](Self::flush).
    pub async fn send(&mut self, msg: &Message) -> Result<(), WireError> {
        self.feed(msg)?;
        self.flush().await
    }

    /// Octets queued and not yet written (back-pressure for protocol A).
    pub fn queued(&self) -> usize {
        self.buf.len() + self.segments.iter().map(Bytes::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::volume::peer::message::{MAX_DATA, WriteFlags};

    #[tokio::test]
    async fn messages_cross_a_stream_in_order() {
        let (a, b) = tokio::io::duplex(4096);
        let mut writer = MessageWriter::new(a);
        let mut reader = MessageReader::new(b);
        let big = Message::Write {
            seq: 1,
            offset: 4096,
            flags: WriteFlags {
                fua: true,
                flush_before: false,
            },
            data: Bytes::from(vec![0xA5; MAX_DATA]),
        };
        let sent = vec![Message::Ping, big, Message::Flush { seq: 2 }];
        let send = async {
            for msg in &sent {
                writer.feed(msg)?;
            }
            writer.flush().await?;
            drop(writer);
            Ok::<_, WireError>(())
        };
        let receive = async {
            let mut got = Vec::new();
            while let Some(msg) = reader.next().await? {
                got.push(msg);
            }
            Ok::<_, WireError>(got)
        };
        let (sent_result, received) = tokio::join!(send, receive);
        assert!(sent_result.is_ok());
        assert_eq!(received.ok(), Some(sent));
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_an_error() {
        let (mut a, b) = tokio::io::duplex(4096);
        let mut encoded = BytesMut::new();
        assert!(wire::encode(&Message::Flush { seq: 9 }, &mut encoded).is_ok());
        assert!(a.write_all(&encoded[..encoded.len() - 1]).await.is_ok());
        drop(a);
        let mut reader = MessageReader::new(b);
        assert!(matches!(reader.next().await, Err(WireError::UnexpectedEof)));
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused_from_its_header() {
        let (mut a, b) = tokio::io::duplex(4096);
        // Magic, Write, a length of 4 GiB - 1, and nothing after: refused without waiting.
        let header = [0xF1, 0xC5, 0x20, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(a.write_all(&header).await.is_ok());
        let mut reader = MessageReader::new(b);
        assert!(matches!(
            reader.next().await,
            Err(WireError::TooLarge {
                len: 0xFFFF_FFFF,
                ..
            })
        ));
    }
}
