//! Byte counters around the two halves of the replication socket (DRBD's `ns`/`nr`), so the
//! status counts what really crossed the wire after authentication.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::inner::Inner;
use super::status::Counters;

/// Which counter a [`Counted`] adds to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    Sent,
    Received,
}

/// A stream half that counts its bytes into the volume's counters.
#[derive(Debug)]
pub(crate) struct Counted<T> {
    inner: T,
    volume: Arc<Inner>,
    direction: Direction,
}

impl<T> Counted<T> {
    pub(crate) fn new(inner: T, volume: Arc<Inner>, direction: Direction) -> Self {
        Self {
            inner,
            volume,
            direction,
        }
    }

    fn counter(&self) -> &AtomicU64 {
        match self.direction {
            Direction::Sent => &self.volume.counters.net_sent,
            Direction::Received => &self.volume.counters.net_received,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        Counters::add(self.counter(), n as u64);
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            Counters::add(self.counter(), *n as u64);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &result {
            Counters::add(self.counter(), *n as u64);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
