//! Sync messages over an async byte stream, once the handshake has succeeded.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Message, ProtoError, codec};

/// How much to read at a time when the buffer has no room.
const READ_CHUNK: usize = 256 * 1024;

/// Reads messages from one half of a link.
#[derive(Debug)]
pub struct ProtoReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> ProtoReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
        }
    }

    /// The next message, or `None` if the peer closed the stream between two frames. Cancel
    /// safe: what was read stays buffered.
    pub async fn next(&mut self) -> Result<Option<Message>, ProtoError> {
        loop {
            if let Some(msg) = codec::decode(&mut self.buf)? {
                return Ok(Some(msg));
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 8 {
                self.buf.reserve(READ_CHUNK);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ProtoError::UnexpectedEof)
                };
            }
        }
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
