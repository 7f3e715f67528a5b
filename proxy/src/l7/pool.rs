//! Idle keep-alive connections to one server, kept for the next request.
//!
//! A lock-free bounded queue: requests on any worker thread put and take without blocking each
//! other. A connection is checked before reuse, since the server may have closed it while idle.

use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use tokio::{net::TcpStream, time::Instant};

use super::h1::conn::Conn;

/// An idle connection is dropped after this long unused, before servers' own keep-alive
/// timeouts (often 5s in Apache, 75s in nginx) make reuse a race.
const MAX_IDLE: Duration = Duration::from_secs(4);

/// A server's idle connections.
///
/// A connection the server closed while idle is not probed for (that would cost a syscall per
/// request): the exchange notices the close before any response byte and replays the request on a
/// fresh connection, which only requests whose body is in hand may use the pool for.
#[derive(Debug)]
pub struct Pool {
    idle: Option<ArrayQueue<(Conn<TcpStream>, Instant)>>,
}

impl Pool {
    /// A pool holding at most `capacity` idle connections (0 disables reuse).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            idle: (capacity > 0).then(|| ArrayQueue::new(capacity)),
        }
    }

    /// A live idle connection, if one is at hand.
    pub(crate) fn take(&self) -> Option<Conn<TcpStream>> {
        let idle = self.idle.as_ref()?;
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < MAX_IDLE {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for reuse; drops it when the pool is full.
    pub(crate) fn put(&self, conn: Conn<TcpStream>) {
        if let Some(idle) = &self.idle
            && conn.buf.is_empty()
        {
            let _ = idle.push((conn, Instant::now()));
        }
    }

    /// Drops every idle connection (the server went DOWN or into MAINT).
    pub(crate) fn clear(&self) {
        if let Some(idle) = &self.idle {
            while idle.pop().is_some() {}
        }
    }

    /// Idle connections held now.
    pub fn len(&self) -> usize {
        self.idle.as_ref().map_or(0, ArrayQueue::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
