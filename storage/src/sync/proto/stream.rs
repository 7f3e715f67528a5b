//! Sync messages over an async byte stream, once the handshake has succeeded.
//!
//! The reader reads into a buffer of its own, and hands whole frames over by sharing that
//! buffer (see [`super::recycle`]): the messages' payloads are slices of it. It shares a
//! buffer once it has read all that the stream had for now (or the buffer is full), so that a
//! buffer carries many frames, and moves the partial frame at its end into the next one.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::{
    Message, ProtoError, codec,
    recycle::{BUFFER, READS},
};

/// Reads messages from one half of a link.
pub struct ProtoReader<R> {
    inner: R,
    /// Octets read and not yet handed over: `buf[..end]`, the start of a frame first.
    buf: Vec<u8>,
    end: usize,
    /// Whole frames handed over and not yet decoded.
    ready: Bytes,
    names: codec::OwnerNames,
}

impl<R> fmt::Debug for ProtoReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtoReader")
            .field("buffered", &self.end)
            .field("ready", &self.ready.len())
            .finish()
    }
}

impl<R: AsyncRead + Unpin> ProtoReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            end: 0,
            ready: Bytes::new(),
            names: codec::OwnerNames::LookUp,
        }
    }

    /// Decodes owners without looking their names up (see [`codec::OwnerNames::Ignore`]).
    #[must_use]
    pub fn ignoring_owner_names(mut self) -> Self {
        self.names = codec::OwnerNames::Ignore;
        self
    }

    /// The next message, or `None` if the peer closed the stream between two frames. Cancel
    /// safe: what was read stays buffered.
    pub async fn next(&mut self) -> Result<Option<Message>, ProtoError> {
        loop {
            if let Some(msg) = self.try_next()? {
                return Ok(Some(msg));
            }
            self.make_room()?;
            let n = self.inner.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return if self.end == 0 && self.ready.is_empty() {
                    Ok(None)
                } else {
                    Err(ProtoError::UnexpectedEof)
                };
            }
            self.end += n;
            self.read_what_is_there()?;
        }
    }

    /// Reads on, without waiting, while the stream has octets and the buffer room.
    fn read_what_is_there(&mut self) -> Result<(), ProtoError> {
        let mut cx = Context::from_waker(Waker::noop());
        while self.end < self.buf.len() {
            let mut room = ReadBuf::new(&mut self.buf[self.end..]);
            match Pin::new(&mut self.inner).poll_read(&mut cx, &mut room) {
                Poll::Ready(Ok(())) if !room.filled().is_empty() => {
                    self.end += room.filled().len();
                }
                // The end of the stream: the next read, waiting, sees it too.
                Poll::Ready(Ok(())) | Poll::Pending => break,
                Poll::Ready(Err(e)) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Room to read into: a buffer to begin with, and one large enough for a frame that does
    /// not fit in a standard one.
    fn make_room(&mut self) -> Result<(), ProtoError> {
        let frame = codec::frame_len(&self.buf[..self.end])?.unwrap_or(0);
        if self.end < self.buf.len() && frame <= self.buf.len() {
            return Ok(());
        }
        let mut larger = READS.take(frame.max(self.end + 1));
        larger[..self.end].copy_from_slice(&self.buf[..self.end]);
        self.buf = larger;
        Ok(())
    }
}

impl<R> Drop for ProtoReader<R> {
    fn drop(&mut self) {
        READS.give_back(std::mem::take(&mut self.buf));
    }
}

impl<R> ProtoReader<R> {
    /// The next message if it is already buffered, without reading.
    pub fn try_next(&mut self) -> Result<Option<Message>, ProtoError> {
        if self.ready.is_empty() {
            self.hand_over()?;
        }
        codec::decode_shared(&mut self.ready, self.names)
    }

    /// Shares the whole frames read so far as `ready`, and moves the partial one after them
    /// into a fresh buffer.
    fn hand_over(&mut self) -> Result<(), ProtoError> {
        let mut whole = 0;
        while let Some(frame) = codec::frame_len(&self.buf[whole..self.end])? {
            if whole + frame > self.end {
                break;
            }
            whole += frame;
        }
        if whole == 0 {
            return Ok(());
        }
        let tail = self.end - whole;
        let mut next = READS.take(BUFFER.min(tail.max(1)));
        if next.len() < tail {
            next.resize(tail, 0);
        }
        next[..tail].copy_from_slice(&self.buf[whole..self.end]);
        let full = std::mem::replace(&mut self.buf, next);
        self.ready = READS.share(full, 0..whole);
        self.end = tail;
        Ok(())
    }
}

/// Writes messages to the other half of a link.
#[derive(Debug)]
pub struct ProtoWriter<W> {
    inner: W,
    buf: BytesMut,
}

impl<W: AsyncWrite + Unpin> ProtoWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
        }
    }

    /// Queues `msg` without writing it.
    pub fn feed(&mut self, msg: &Message) -> Result<(), ProtoError> {
        codec::encode(msg, &mut self.buf)
    }

    /// Writes everything queued and flushes.
    pub async fn flush(&mut self) -> Result<(), ProtoError> {
        self.inner.write_all_buf(&mut self.buf).await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// Writes everything queued, then `frames` (whole frames encoded elsewhere, see
    /// [`super::FrameBuf`]), and flushes.
    pub async fn send_frames(&mut self, frames: &[u8]) -> Result<(), ProtoError> {
        if !self.buf.is_empty() {
            self.inner.write_all_buf(&mut self.buf).await?;
        }
        self.inner.write_all(frames).await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// [`feed`](Self::feed) then [`flush`](Self::flush).
    pub async fn send(&mut self, msg: &Message) -> Result<(), ProtoError> {
        self.feed(msg)?;
        self.flush().await
    }

    /// Octets queued and not yet written.
    pub fn queued(&self) -> usize {
        self.buf.len()
    }
}
