//! The lingering close and the start of a 101 tunnel against a peer that takes nothing: each
//! ends within its time.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::exchange::linger;
use super::h1::conn::Conn;
use super::session::tunnel;

/// A peer that takes nothing: its writes, flushes and shutdown never complete (a TLS stream's
/// shutdown does not while its close_notify waits behind data a client that never reads will
/// not take), and it sends nothing.
struct NeverShuts;

impl AsyncRead for NeverShuts {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

impl AsyncWrite for NeverShuts {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

// Input: a lingering close with a 10 s client timeout, on a client whose shutdown never
// completes. Output: linger returns once the 10 s are up (on tokio's paused clock), and the
// connection can be dropped: it held its task and its slots for ever before.
#[tokio::test(start_paused = true)]
async fn a_lingering_close_whose_fin_cannot_leave_ends_within_its_time() {
    let mut client = Conn::new(NeverShuts);
    let started = tokio::time::Instant::now();
    let lingered = tokio::time::timeout(
        Duration::from_secs(3600),
        linger(&mut client, Duration::from_secs(10)),
    )
    .await;
    assert!(lingered.is_ok(), "linger still waits after an hour");
    assert_eq!(started.elapsed().as_secs(), 10);
}

// Input: a 101 tunnel with a 10 s idle timeout whose client sent bytes along with its upgrade,
// to a server that takes nothing. Output: the tunnel ends once the 10 s are up: the write of
// those first bytes was not timed, and held the tunnel and its server slot for ever.
#[tokio::test(start_paused = true)]
async fn a_tunnel_whose_first_bytes_cannot_leave_ends_within_its_idle_time() {
    let mut client = Conn::new(NeverShuts);
    client.buf.extend_from_slice(b"first websocket frame");
    let mut server = Conn::new(NeverShuts);
    let started = tokio::time::Instant::now();
    let ended = tokio::time::timeout(
        Duration::from_secs(3600),
        tunnel(&mut client, &mut server, Duration::from_secs(10)),
    )
    .await;
    assert!(ended.is_ok(), "the tunnel still waits after an hour");
    assert_eq!(started.elapsed().as_secs(), 10);
}
