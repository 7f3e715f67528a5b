//! Messages over an async byte stream: a reader and a writer around [`super::decode`] and
//! [`super::encode`], for the link once [`super::authenticate`] has succeeded.
//!
//! tokio-util's `codec` feature is not enabled in the workspace, so these stand in for its
//! `FramedRead`/`FramedWrite`; `decode` and `encode` already have the shape of its `Decoder`
//! and `Encoder`.

use std::collections::VecDeque;

use std::io::IoSlice;
use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::{HEADER_LEN, Header};
use super::message::Message;
use super::wire::{self, MAX_PAYLOAD, WireError};
use crate::nbd::buffers;

/// How much to read at a time when the buffer has no room.
const READ_CHUNK: usize = 64 * 1024;

/// Most queued segments one write hands the kernel.
const MAX_SLICES: usize = 64;

/// Reads messages from one half of the link.
#[derive(Debug)]
pub struct MessageReader<R> {
    inner: R,
    buf: BytesMut,
    /// A large frame being read straight into a buffer of its own, which comes back when the
    /// message's data is dropped (see [`crate::nbd::buffers`]).
    large: Option<Large>,
}

/// A large frame's payload, partly read.
#[derive(Debug)]
struct Large {
    ty: u8,
    payload: Vec<u8>,
    /// Where in `payload` the body goes (placed for its data, see [`wire::data_offset`]).
    body: Range<usize>,
    filled: usize,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            large: None,
        }
    }

    /// The next message, or `None` if the peer closed the stream between two frames.
    ///
    /// Cancel safe: bytes read stay buffered for the next call, so it can sit in a `select!`
    /// beside a timer. After an error the stream is out of step; drop the connection.
    pub async fn next(&mut self) -> Result<Option<Message>, WireError> {
        loop {
            if self.large.is_none() {
                self.large = self.start_large()?;
            }
            // Kept in `self` while it fills, so that a cancelled call loses nothing.
            while let Some(large) = self.large.as_mut()
                && large.filled < large.body.len()
            {
                let n = self
                    .inner
                    .read(&mut large.payload[large.body.start + large.filled..large.body.end])
                    .await?;
                if n == 0 {
                    return Err(WireError::UnexpectedEof);
                }
                large.filled += n;
            }
            if let Some(Large {
                ty, payload, body, ..
            }) = self.large.take()
            {
                return wire::decode_payload(ty, buffers::WRITES.share(payload, body)).map(Some);
            }
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

    /// A frame whose header is buffered and whose payload is large and not all buffered yet:
    /// taken off `buf` with what of the payload it holds, the rest to be read into its own
    /// buffer. (A short read leaves only the rest of that frame unread: no copy after.)
    fn start_large(&mut self) -> Result<Option<Large>, WireError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = Header::parse(*header, MAX_PAYLOAD)?;
        if header.len < buffers::POOLED_FROM || self.buf.len() >= HEADER_LEN + header.len {
            return Ok(None);
        }
        let (mut payload, body) =
            buffers::WRITES.take_aligned(header.len, wire::data_offset(header.ty));
        let have = self.buf.len() - HEADER_LEN;
        payload[body.start..body.start + have].copy_from_slice(&self.buf[HEADER_LEN..]);
        self.buf.clear();
        Ok(Some(Large {
            ty: header.ty,
            payload,
            body,
            filled: have,
        }))
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
    /// Octets in `segments`, kept as they change: the session asks on every turn.
    in_segments: usize,
}

impl<W: AsyncWrite + Unpin> MessageWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            segments: VecDeque::new(),
            in_segments: 0,
        }
    }

    /// Queues `msg` without writing it; nothing is queued if it cannot be encoded.
    pub fn feed(&mut self, msg: &Message) -> Result<(), WireError> {
        if let Some(data) = wire::encode_head(msg, &mut self.buf)? {
            let head = self.buf.split().freeze();
            self.push(head);
            if !data.is_empty() {
                self.push(data);
            }
        }
        Ok(())
    }

    /// Writes everything queued and flushes the stream.
    ///
    /// If cancelled, what was not yet written stays queued for the next flush.
    pub async fn flush(&mut self) -> Result<(), WireError> {
        if !self.buf.is_empty() {
            let gathered = self.buf.split().freeze();
            self.push(gathered);
        }
        while !self.segments.is_empty() {
            // A write's header and payload, and whatever follows, in one system call: a header
            // sent alone would cross loopback as a packet of its own.
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self.segments.len().min(MAX_SLICES);
            for (slice, segment) in slices.iter_mut().zip(&self.segments) {
                *slice = IoSlice::new(segment);
            }
            let written = self.inner.write_vectored(&slices[..count]).await?;
            if written == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            // Consumed as written, so a cancelled flush resumes where it was.
            self.advance(written);
        }
        self.inner.flush().await?;
        Ok(())
    }

    fn push(&mut self, segment: Bytes) {
        self.in_segments += segment.len();
        self.segments.push_back(segment);
    }

    /// Drops `n` written octets off the front of the queue.
    fn advance(&mut self, mut n: usize) {
        self.in_segments -= n.min(self.in_segments);
        while let Some(segment) = self.segments.front_mut() {
            if n < segment.len() {
                segment.advance(n);
                return;
            }
            n -= segment.len();
            self.segments.pop_front();
        }
    }

    /// [`feed`](Self::feed) then [`flush`](Self::flush).
    pub async fn send(&mut self, msg: &Message) -> Result<(), WireError> {
        self.feed(msg)?;
        self.flush().await
    }

    /// Octets queued and not yet written (back-pressure for protocol A).
    pub fn queued(&self) -> usize {
        self.buf.len() + self.in_segments
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

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

    // Input: a large Write and a large ResyncData through a small pipe. Output: the data of
    // each arrives at an address the disk can write from with O_DIRECT.
    #[tokio::test]
    async fn large_write_data_arrives_aligned_for_direct_writes() {
        let (a, b) = tokio::io::duplex(4096);
        let mut writer = MessageWriter::new(a);
        let mut reader = MessageReader::new(b);
        let data = Bytes::from(vec![0x5A; 1 << 20]);
        let sent = [
            Message::Write {
                seq: 1,
                offset: 0,
                flags: WriteFlags::default(),
                data: data.clone(),
            },
            Message::ResyncData {
                offset: 1 << 20,
                data: data.clone(),
            },
        ];
        let send = async {
            for msg in &sent {
                writer.feed(msg)?;
            }
            writer.flush().await
        };
        let receive = async {
            let mut got = Vec::new();
            for _ in 0..sent.len() {
                got.push(reader.next().await?.unwrap());
            }
            Ok::<_, WireError>(got)
        };
        let (sent_result, received) = tokio::join!(send, receive);
        sent_result.unwrap();
        for msg in received.unwrap() {
            let (Message::Write { data: got, .. } | Message::ResyncData { data: got, .. }) = msg
            else {
                panic!("unexpected {msg:?}");
            };
            assert_eq!(got, data);
            assert_eq!(got.as_ptr().align_offset(crate::buffers::ALIGN), 0);
        }
    }

    #[tokio::test]
    async fn a_large_frame_survives_a_cancelled_read() {
        // Input: a 1 MiB write's frame, its first half, a `next` dropped while waiting for the
        // rest, then the rest. Output: the whole write, then the ping after it.
        let (mut a, b) = tokio::io::duplex(4 << 20);
        let data = Bytes::from((0..MAX_DATA).map(|i| i as u8).collect::<Vec<_>>());
        let write = Message::Write {
            seq: 7,
            offset: 1 << 20,
            flags: WriteFlags::default(),
            data,
        };
        let mut encoded = BytesMut::new();
        wire::encode(&write, &mut encoded).unwrap();
        wire::encode(&Message::Ping, &mut encoded).unwrap();
        let half = encoded.len() / 2;
        a.write_all(&encoded[..half]).await.unwrap();
        let mut reader = MessageReader::new(b);
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(20), reader.next()).await;
        assert!(waited.is_err(), "the frame is not complete yet");
        a.write_all(&encoded[half..]).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Some(write));
        assert_eq!(reader.next().await.unwrap(), Some(Message::Ping));
    }

    /// A sink that takes everything and counts the system calls it would have made.
    #[derive(Default)]
    struct Calls {
        writes: usize,
        bytes: usize,
    }

    impl tokio::io::AsyncWrite for Calls {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.writes += 1;
            self.bytes += buf.len();
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = bufs.iter().map(|b| b.len()).sum();
            self.writes += 1;
            self.bytes += n;
            std::task::Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_and_their_headers_go_out_in_one_call() {
        // Input: two 1 MiB writes and an ack fed, then one flush, to a sink that takes all.
        // Output: one write call with every octet (headers and payloads are not sent apart).
        let mut writer = MessageWriter::new(Calls::default());
        let mut expected = BytesMut::new();
        for seq in 1..=2 {
            let write = Message::Write {
                seq,
                offset: seq << 20,
                flags: WriteFlags::default(),
                data: Bytes::from(vec![seq as u8; MAX_DATA]),
            };
            writer.feed(&write).unwrap();
            wire::encode(&write, &mut expected).unwrap();
        }
        let ack = Message::Ack {
            seq: 9,
            kind: crate::volume::peer::AckKind::Written,
        };
        writer.feed(&ack).unwrap();
        wire::encode(&ack, &mut expected).unwrap();
        writer.flush().await.unwrap();
        assert_eq!(writer.queued(), 0);
        assert_eq!(writer.inner.bytes, expected.len());
        assert_eq!(writer.inner.writes, 1);
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
