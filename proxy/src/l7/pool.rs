//! Idle keep-alive connections to one server, kept for the next request.
//!
//! A lock-free bounded queue: requests on any worker thread put and take without blocking each
//! other.

use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use tokio::{net::TcpStream, time::Instant};

use super::h1::conn::Conn;

/// An idle connection is dropped after this long unused, before servers' own keep-alive
/// timeouts (often 5s in Apache, 75s in nginx) make reuse a race.
const MAX_IDLE: Duration = Duration::from_secs(4);

/// A server's idle connections.
///
/// The server may have closed one while it was idle. A request whose body is in hand takes it
/// unchecked (a check costs a syscall): if the server turns out to have closed it, the request is
/// replayed on a fresh connection. A request whose body is still streaming from the client cannot
/// be replayed, so it asks for a probed connection.
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

    /// An idle connection, if one is at hand; with `probe`, only one the server has neither
    /// closed nor written to.
    pub(crate) fn take(&self, probe: bool) -> Option<Conn<TcpStream>> {
        let idle = self.idle.as_ref()?;
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < MAX_IDLE && (!probe || is_open(&conn)) {
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

/// Whether an idle connection is still open: a read that would block means the server has
/// neither closed it nor sent anything unasked.
fn is_open(conn: &Conn<TcpStream>) -> bool {
    let mut probe = [0u8; 1];
    matches!(conn.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
