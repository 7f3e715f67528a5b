//! Idle keep-alive connections to one server, kept for the next request.
//!
//! The most recently used connection is reused first, so that after a burst the connections
//! the load no longer needs sink to the bottom, expire there and are closed: the pool follows
//! the load down again, as HAProxy's idle-connection purge does. It holds memory only for the
//! connections it keeps, so its bound can be as high as a burst needs (HTTP/2 clients
//! multiplex many requests per connection, and each needs a server connection of its own).
//! The lock is held for a push or a pop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::{net::TcpStream, time::Instant};

use super::h1::conn::Conn;

/// An idle connection is dropped after this long unused, before servers' own keep-alive
/// timeouts (often 5s in Apache, 75s in nginx) make reuse a race.
const MAX_IDLE: Duration = Duration::from_secs(4);

/// A server's idle connections, the least recently used at the front.
///
/// The server may have closed one while it was idle, or written to it unasked. A request whose
/// body is in hand takes it checked only when the runtime saw it become readable (no syscall):
/// if the server closes it meanwhile, the request is replayed on a fresh connection. A request
/// whose body is still streaming from the client cannot be replayed, so it asks for a probed
/// connection (a syscall). Bytes a server sent unasked would otherwise be read as the next
/// request's response; HAProxy likewise closes an idle connection on which data arrives.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<VecDeque<(Conn<TcpStream>, Instant)>>,
    /// At most this many are kept (0 disables reuse); a reload may change it.
    capacity: AtomicUsize,
}

impl Pool {
    /// A pool holding at most `capacity` idle connections (0 disables reuse).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            idle: Mutex::new(VecDeque::new()),
            capacity: AtomicUsize::new(capacity),
        }
    }

    /// The most recently used idle connection, if one is at hand, that the server has neither
    /// written to nor (as far as the runtime saw, or for sure with `probe`) closed.
    pub(crate) fn take(&self, probe: bool) -> Option<Conn<TcpStream>> {
        loop {
            let (conn, since) = self.idle().pop_back()?;
            let check = probe || seen_readable(&conn);
            if since.elapsed() < MAX_IDLE && (!check || is_open(&conn)) {
                return Some(conn);
            }
        }
    }

    /// Keeps `conn` for reuse; drops it when the pool is full. The connections that expired
    /// at the bottom are closed first.
    pub(crate) fn put(&self, mut conn: Conn<TcpStream>) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        if capacity == 0 || !conn.buf.is_empty() {
            return;
        }
        // An idle connection holds no read buffer (16 KiB each, for as many connections as a
        // burst left here): it goes back to the thread's spares, and the next read takes one.
        super::h1::spare::put_read(std::mem::take(&mut conn.buf));
        // One clock read serves both the expiry check and the new connection's time.
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut idle = self.idle();
            while idle
                .front()
                .is_some_and(|(_, since)| now.duration_since(*since) >= MAX_IDLE)
            {
                expired.extend(idle.pop_front());
            }
            if idle.len() < capacity {
                idle.push_back((conn, now));
            }
        }
        // Closed outside the lock.
        drop(expired);
    }

    /// Holds at most `capacity` idle connections from now on (a reload changed
    /// `pool_max_idle`): the least recently used beyond it are closed.
    pub(crate) fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::Relaxed);
        let excess = {
            let mut idle = self.idle();
            let excess = idle.len().saturating_sub(capacity);
            idle.drain(..excess).collect::<Vec<_>>()
        };
        // Closed outside the lock.
        drop(excess);
    }

    /// Drops every idle connection (the server went DOWN or into MAINT).
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *self.idle());
        drop(all);
    }

    /// The most idle connections it holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Idle connections held now.
    pub fn len(&self) -> usize {
        self.idle().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A panic while the list was held leaves a list of connections, still usable.
    fn idle(&self) -> MutexGuard<'_, VecDeque<(Conn<TcpStream>, Instant)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether the runtime saw an idle connection become readable (bytes, or the server's FIN)
/// since its last read left it drained: its cached readiness, read without a syscall. A task
/// out of its cooperative budget is told "not ready" whatever the socket's state, so then the
/// answer is yes, and the caller probes.
fn seen_readable(conn: &Conn<TcpStream>) -> bool {
    if !tokio::task::coop::has_budget_remaining() {
        return true;
    }
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    conn.io.poll_read_ready(&mut cx).is_ready()
}

/// Whether an idle connection is still open: a read that would block means the server has
/// neither closed it nor sent anything unasked.
fn is_open(conn: &Conn<TcpStream>) -> bool {
    let mut probe = [0u8; 1];
    matches!(conn.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tokio::net::TcpListener;

    use super::*;

    /// `n` connections to a listener that accepts them and keeps them open.
    async fn conns(n: usize) -> (Vec<Conn<TcpStream>>, Vec<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let (conn, (accepted, _)) =
                tokio::try_join!(TcpStream::connect(addr), listener.accept()).unwrap();
            ours.push(Conn::new(conn));
            theirs.push(accepted);
        }
        (ours, theirs)
    }

    #[tokio::test]
    async fn it_keeps_up_to_its_capacity_and_gives_back_the_most_recent_first() {
        let (ours, _theirs) = conns(5).await;
        let ports: Vec<u16> = ours
            .iter()
            .map(|c| c.io.local_addr().unwrap().port())
            .collect();
        let pool = Pool::new(3);
        for mut conn in ours {
            conn.buf.reserve(16 * 1024); // as after a response was read
            pool.put(conn);
        }
        assert_eq!(pool.len(), 3, "the last two are dropped");
        assert!(
            pool.idle().iter().all(|(c, _)| c.buf.capacity() == 0),
            "idle connections hold no read buffer"
        );
        let taken: Vec<u16> = std::iter::from_fn(|| pool.take(true))
            .map(|c| c.io.local_addr().unwrap().port())
            .collect();
        assert_eq!(taken, [ports[2], ports[1], ports[0]]);
        assert!(pool.is_empty());

        let (ours, _theirs) = conns(1).await;
        let off = Pool::new(0);
        off.put(ours.into_iter().next().unwrap());
        assert!(off.take(false).is_none(), "capacity 0 disables reuse");
    }

    // Input: a pool of 3 holding 3, its capacity lowered to 1 (a reload's `pool_max_idle`),
    // then raised to 2. Output: the most recent one is kept, and then two are. (A reload left
    // the running servers' pools at their old size.)
    #[tokio::test]
    async fn a_new_capacity_closes_the_oldest_beyond_it_and_holds_from_then_on() {
        let (ours, _theirs) = conns(5).await;
        let ports: Vec<u16> = (ours.iter())
            .map(|c| c.io.local_addr().unwrap().port())
            .collect();
        let pool = Pool::new(3);
        let mut ours = ours.into_iter();
        for conn in ours.by_ref().take(3) {
            pool.put(conn);
        }
        pool.set_capacity(1);
        assert_eq!(pool.len(), 1);
        pool.set_capacity(2);
        for conn in ours {
            pool.put(conn);
        }
        let kept: Vec<u16> = std::iter::from_fn(|| pool.take(true))
            .map(|c| c.io.local_addr().unwrap().port())
            .collect();
        assert_eq!(kept, [ports[3], ports[2]]);
    }

    // Input: an idle connection whose server wrote to it unasked, once the runtime saw it.
    // Output: a request that needs no probe does not get it (the bytes would be read as its
    // response); a quiet one it does get.
    #[tokio::test]
    async fn a_connection_the_server_wrote_to_while_idle_is_not_reused() {
        use tokio::io::AsyncWriteExt;
        let (mut ours, mut theirs) = conns(2).await;
        let pool = Pool::new(4);
        let quiet = ours.pop().unwrap();
        pool.put(quiet);
        let written = ours.pop().unwrap();
        theirs[0].write_all(b"HTTP/1.1 418 \r\n\r\n").await.unwrap();
        written.io.readable().await.unwrap();
        pool.put(written);
        let taken = pool.take(false).unwrap();
        assert_eq!(
            taken.io.peer_addr().unwrap(),
            theirs[1].local_addr().unwrap(),
            "the quiet connection"
        );
        assert!(pool.take(false).is_none());
    }

    // Input: a burst leaves 4 idle connections; then the load needs one at a time for 6 s,
    // a connection taken and put back every 100 ms. Output: the 3 the load does not use expire
    // and are closed by the puts; the one in use stays.
    #[tokio::test(start_paused = true)]
    async fn after_a_burst_the_unused_connections_expire_and_close() {
        let (ours, _theirs) = conns(4).await;
        let pool = Pool::new(64);
        for conn in ours {
            pool.put(conn);
        }
        assert_eq!(pool.len(), 4);
        for _ in 0..60 {
            tokio::time::advance(Duration::from_millis(100)).await;
            let conn = pool.take(false).unwrap();
            pool.put(conn);
        }
        assert_eq!(pool.len(), 1, "only the connection in use is left");
    }
}
