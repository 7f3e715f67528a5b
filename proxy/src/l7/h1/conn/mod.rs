//! A byte stream with its read buffer: what both the client and the server side of an HTTP/1
//! exchange read heads and bodies from.

use std::{io, pin::Pin, task::Poll, time::Duration};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::Sleep,
};

use super::timer::{self, First, Timer};

/// Bytes read per `read` call at least; a request head and a small body usually fit in one.
const READ_CHUNK: usize = 16 * 1024;

/// Why reading from or writing to a peer stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IoFailure {
    #[error("peer closed the connection")]
    Closed,
    #[error("timed out")]
    Timeout,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A stream plus the bytes read from it but not consumed yet.
#[derive(Debug)]
pub(crate) struct Conn<S> {
    pub(crate) io: S,
    pub(crate) buf: BytesMut,
    /// Times the reads that have to wait.
    timer: Timer,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// A connection with no buffer yet: the first read allocates it.
    pub(crate) fn new(io: S) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            timer: Timer::default(),
        }
    }

    /// Waits for the next bytes of an idle connection without holding a read buffer meanwhile:
    /// an idle keep-alive client then costs a socket and a small task, not 16 KiB of buffer.
    /// Input that is already there is read at once, keeping the buffer of a busy connection;
    /// otherwise the buffer goes back to the thread's spares until input arrives.
    ///
    /// The wait is timed with `idle_timer`, which the caller keeps for all of a connection's
    /// idle waits (see [`timer::run_pinned`]).
    pub(crate) async fn fill_idle(
        &mut self,
        timeout: Duration,
        idle_timer: Pin<&mut Sleep>,
    ) -> Result<usize, IoFailure>
    where
        S: WaitReadable,
    {
        if self.buf.is_empty() {
            let mut read = std::pin::pin!(self.io.read_buf(&mut self.buf));
            let ready = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
            match ready {
                Poll::Ready(Ok(0)) => return Err(IoFailure::Closed),
                Poll::Ready(Ok(n)) => return Ok(n),
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => {}
            }
            super::spare::put_read(std::mem::take(&mut self.buf));
            timer::run_pinned(idle_timer, timeout, self.io.wait_readable()).await??;
        }
        self.fill(timeout).await
    }

    /// Reads more bytes into the buffer; `Closed` at end of stream.
    pub(crate) async fn fill(&mut self, timeout: Duration) -> Result<usize, IoFailure> {
        if self.buf.capacity() == 0 {
            self.buf = super::spare::take_read();
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let read = self
            .timer
            .run(timeout, self.io.read_buf(&mut self.buf))
            .await??;
        if read == 0 {
            return Err(IoFailure::Closed);
        }
        Ok(read)
    }

    /// Writes all of `data`.
    pub(crate) async fn write_all(
        &mut self,
        data: &[u8],
        timeout: Duration,
    ) -> Result<(), IoFailure> {
        with_timeout(timeout, self.io.write_all(data))
            .await?
            .map_err(IoFailure::from)
    }
}

/// Waiting until a stream has input, for [`Conn::fill_idle`].
pub(crate) trait WaitReadable {
    /// Resolves when a read would not block (or as soon as that cannot be told).
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> + Send;
}

impl WaitReadable for tokio::net::TcpStream {
    /// Polls the socket's own read readiness (the slot the read after it uses too) rather than
    /// `readable()`, whose waiter goes into and out of the socket's shared waiter list, under a
    /// lock, on every idle wait.
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        std::future::poll_fn(|cx| self.poll_read_ready(cx))
    }
}

impl<S: WaitReadable + Sync> WaitReadable for tokio_rustls::server::TlsStream<S> {
    /// Waits on the socket when rustls has nothing for the reader: an idle TLS client then
    /// holds no read buffer either (it held 16 KiB, most of its memory). A partial record waits
    /// for the rest of it on the socket. What rustls keeps (decrypted bytes, or the peer's
    /// `close_notify`) is not signalled by the socket, so then the read goes ahead at once:
    /// `fill_idle`'s first read takes those already, so this is a guard for other callers.
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        let (io, session) = self.get_ref();
        let held = !session.wants_read();
        async move {
            if held {
                return Ok(());
            }
            io.wait_readable().await
        }
    }
}

/// Runs `fut` with a timeout where zero means none, as in HAProxy's `timeout` keywords.
///
/// Most reads and writes of a busy proxy complete at once (the bytes are already there, the
/// socket buffer has room), so `fut` is polled once before a timer is armed: a timer costs a
/// clock read and a wheel insertion that such an operation never needs.
pub(crate) async fn with_timeout<F: Future>(
    timeout: Duration,
    fut: F,
) -> Result<F::Output, IoFailure> {
    // The task's own waker stays registered when `fut` is not ready, which is what the timed
    // wait needs anyway.
    let mut fut = std::pin::pin!(fut);
    match timer::first_poll(timeout, fut.as_mut()).await {
        First::Done(output) => Ok(output),
        First::Untimed => Ok(fut.await),
        First::Wait(deadline) => tokio::time::timeout_at(deadline, fut)
            .await
            .map_err(|_| IoFailure::Timeout),
    }
}

#[cfg(test)]
mod tests;
