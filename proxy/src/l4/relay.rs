//! Relaying one L4 connection both ways until both sides are done: a side that finishes sending
//! (EOF) has its direction shut down on the other side while the other direction goes on
//! (half-close, as LVS passes FINs through), and a connection silent both ways for `idle` is
//! closed (`timeout.idle`, like IPVS's TCP established timeout).

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use fulcrum_common::activity::Activity;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Buffer per direction.
const BUFFER: usize = 16 * 1024;

/// Bytes moved each way, and how the relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    pub client_to_server: u64,
    pub server_to_client: u64,
    pub ended: RelayEnd,
}

/// Why a relay stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides sent EOF.
    Closed,
    /// Nothing moved either way for the idle timeout.
    Idle,
    /// A read or write failed (a reset, usually).
    Error,
}

/// Relays between `client` and `server` until both directions are closed, one fails, or the
/// connection is idle for `idle` (zero: no limit).
pub async fn relay<C, S>(client: &mut C, server: &mut S, idle: Duration) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    relay_counted(client, server, idle, &Tally::default()).await
}

/// [`relay`], counting the bytes in `tally` as they move.
pub async fn relay_counted<C, S>(
    client: &mut C,
    server: &mut S,
    idle: Duration,
    tally: &Tally,
) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    // The two directions run side by side in this task: each finishes on its own EOF, so a
    // half-closed connection keeps carrying the other way.
    let both = async {
        tokio::try_join!(
            pump(client_read, server_write, &tally.activity, &tally.up),
            pump(server_read, client_write, &tally.activity, &tally.down),
        )
    };
    tally.until_done(both, idle).await
}

/// What one relay counts, both directions together: bytes each way, and when they last moved.
#[derive(Debug, Default)]
pub struct Tally {
    pub(crate) activity: Activity,
    /// Client to server.
    pub(crate) up: AtomicU64,
    /// Server to client.
    pub(crate) down: AtomicU64,
    /// Set by the first direction to end (its side sent a FIN).
    pub(crate) one_ended: AtomicBool,
    /// Raised by one when a direction first ends: the real server's half-closed connections
    /// (IPVS counts them inactive). The relay's owner lowers it when the connection closes.
    pub(crate) half_closes: Option<Arc<AtomicU32>>,
}

impl Tally {
    /// A tally that counts its connection in `half_closes` once one side has closed.
    pub(crate) fn counting_half_closes(half_closes: Arc<AtomicU32>) -> Tally {
        Tally {
            half_closes: Some(half_closes),
            ..Tally::default()
        }
    }

    /// Whether this relay raised its `half_closes` counter (and must lower it).
    pub(crate) fn counted_half_close(&self) -> bool {
        self.half_closes.is_some() && self.one_ended.load(Relaxed)
    }
}

impl Tally {
    /// Waits for `both` directions to finish, or for the idle timeout, and says how it ended.
    pub(crate) async fn until_done<T>(
        &self,
        both: impl Future<Output = io::Result<T>>,
        idle: Duration,
    ) -> Relayed {
        // `biased`: the branches in order, without drawing a random number per poll (it showed
        // in the profile of short connections, as did the same in the selects of `l4::tcp`).
        let ended = tokio::select! {
            biased;
            result = both => if result.is_ok() { RelayEnd::Closed } else { RelayEnd::Error },
            () = self.activity.idle(idle) => RelayEnd::Idle,
        };
        Relayed {
            client_to_server: self.up.load(Relaxed),
            server_to_client: self.down.load(Relaxed),
            ended,
        }
    }
}

/// Copies `from` to `to` until EOF, then shuts `to`'s write side down (passing the FIN on).
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    activity: &Activity,
    moved: &AtomicU64,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0; BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        activity.touch();
        moved.fetch_add(n as u64, Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use tokio::io::duplex;

    use super::*;

    #[tokio::test]
    async fn bytes_flow_both_ways_and_half_close_keeps_the_other_direction() {
        let (mut client, mut client_side) = duplex(1024);
        let (mut server_side, mut server) = duplex(1024);
        let relay =
            tokio::spawn(
                async move { relay(&mut client_side, &mut server_side, Duration::ZERO).await },
            );

        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap(); // the client is done sending
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap(); // EOF passed on to the server
        assert_eq!(got, b"request");
        // The server still answers after the client's half-close.
        server.write_all(b"response after FIN").await.unwrap();
        server.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"response after FIN");

        let done = relay.await.unwrap();
        assert_eq!(done.ended, RelayEnd::Closed);
        assert_eq!((done.client_to_server, done.server_to_client), (7, 18));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_idle_timeout() {
        let (mut client, mut client_side) = duplex(1024);
        let (mut server_side, _server) = duplex(1024);
        let relay = tokio::spawn(async move {
            relay(&mut client_side, &mut server_side, Duration::from_secs(900)).await
        });
        tokio::time::sleep(Duration::from_secs(600)).await;
        client.write_all(b"x").await.unwrap(); // activity restarts the clock
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(
            !relay.is_finished(),
            "600s after the last byte is within the 900s idle timeout"
        );
        tokio::time::sleep(Duration::from_secs(301)).await;
        // Bounded, so a relay that never times out fails the test instead of hanging it.
        let done = tokio::time::timeout(Duration::from_secs(60), relay)
            .await
            .expect("the relay ended at the idle timeout")
            .unwrap();
        assert_eq!(done.ended, RelayEnd::Idle);
        assert_eq!(done.client_to_server, 1);
    }

    #[tokio::test]
    async fn large_transfers_arrive_intact() {
        let (mut client, mut client_side) = duplex(64 * 1024);
        let (mut server_side, mut server) = duplex(64 * 1024);
        let relay =
            tokio::spawn(
                async move { relay(&mut client_side, &mut server_side, Duration::ZERO).await },
            );
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            client
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
        server.shutdown().await.unwrap();
        drop(writer.await.unwrap());
        assert_eq!(relay.await.unwrap().client_to_server, 5_000_000);
    }
}
