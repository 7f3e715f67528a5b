//! A stream that fails with `TimedOut` once it has made no progress either way for a while:
//! hyper's HTTP/1 server bounds only the reading of request headers, so a client that stops
//! reading the responses (or idles between requests) would otherwise hold its connection for
//! ever.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// `io`, cut after `timeout` without a byte read or written.
#[derive(Debug)]
pub(crate) struct Inactivity<S> {
    io: S,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> Inactivity<S> {
    pub(crate) fn new(io: S, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn progressed(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.timeout);
    }

    /// Called when an operation is pending: an error once the deadline has passed (the task is
    /// woken at the deadline to find out).
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no progress either way",
            )),
            Poll::Pending => Ok(()),
        }
    }

    /// Passes `poll`'s result on, noting progress, or the timeout while it is pending.
    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.progressed();
                Poll::Ready(result)
            }
            Poll::Pending => {
                self.check(cx)?;
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Inactivity<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        this.track(cx, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inactivity<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.track(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.track(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = ready!(Pin::new(&mut this.io).poll_shutdown(cx));
        Poll::Ready(result)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_fails_after_the_timeout() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut stream = Inactivity::new(ours, Duration::from_secs(10));
        let started = Instant::now();
        let error = stream.write_all(&[0; 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_it_alive_and_silence_ends_it() {
        let (ours, mut theirs) = tokio::io::duplex(16);
        let mut stream = Inactivity::new(ours, Duration::from_secs(10));
        let started = Instant::now();
        let peer = async {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                theirs.write_all(b"x").await.unwrap();
            }
            theirs
        };
        let reader = async {
            let mut byte = [0u8; 1];
            loop {
                if let Err(error) = stream.read_exact(&mut byte).await {
                    return error;
                }
            }
        };
        let (_theirs, error) = tokio::join!(peer, reader);
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(34));
    }
}
