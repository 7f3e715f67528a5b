//! The idle timeout of a connection, measured as time since bytes last moved either way: an
//! L4 relay stamps it itself, and any other stream gets a [`Touching`] wrapper; whoever serves
//! the connection races its work against [`Activity::idle`]. The L4 tier, the HTTP/2 stall
//! timeout and the admin server all use it.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// When bytes last moved either way on a connection, for its idle timeout: shared by both
/// directions of an L4 relay, stamped by a [`Touching`] stream, read by [`Activity::idle`].
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Nanoseconds after `start`. Atomic, not a cell, only so the relay future stays `Send`;
    /// both directions run in one task.
    last: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// Records that bytes moved now.
    pub fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_nanos() as u64, Relaxed);
    }

    /// Returns once nothing has moved for `idle`; never if `idle` is zero (no limit).
    pub async fn idle(&self, idle: Duration) {
        if idle.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let deadline = self.start + Duration::from_nanos(self.last.load(Relaxed)) + idle;
            tokio::time::sleep_until(deadline).await;
            // Activity during the sleep moved the deadline on: sleep again until the new one.
            if self.start + Duration::from_nanos(self.last.load(Relaxed)) + idle <= Instant::now() {
                return;
            }
        }
    }
}

/// A connection's stream that notes in an [`Activity`] every time bytes move.
#[derive(Debug)]
pub struct Touching<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S> Touching<S> {
    pub fn new(io: S, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Touching<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Touching<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_is_idle_after_the_timeout() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let activity = Arc::new(Activity::new());
        let mut stream = Touching::new(ours, Arc::clone(&activity));
        let started = Instant::now();
        tokio::select! {
            _ = stream.write_all(&[0; 1024]) => panic!("the peer took nothing"),
            () = activity.idle(Duration::from_secs(10)) => {}
        }
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_it_alive_and_silence_ends_it() {
        let (ours, mut theirs) = tokio::io::duplex(16);
        let activity = Arc::new(Activity::new());
        let mut stream = Touching::new(ours, Arc::clone(&activity));
        let started = Instant::now();
        let peer = async {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                theirs.write_all(b"x").await.unwrap();
            }
            std::future::pending::<()>().await;
        };
        let reader = async {
            let mut byte = [0u8; 1];
            loop {
                stream.read_exact(&mut byte).await.unwrap();
            }
        };
        tokio::select! {
            () = peer => {}
            () = reader => {}
            () = activity.idle(Duration::from_secs(10)) => {}
        }
        assert_eq!(started.elapsed(), Duration::from_secs(34));
    }
}
