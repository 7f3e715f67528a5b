//! The origin server: the real server behind Fulcrum in every test and benchmark.
//!
//! It answers HTTP/1.1 (and HTTP/2 with prior knowledge, "h2c") with a body that names it, records
//! what reached it so a test can assert on what the proxy forwarded, and stops by closing every open
//! connection at once, which is how tests simulate a server going down.
//!
//! Every response carries `X-Server: NAME`. The default body is `body_size` bytes: the name, then
//! [`BODY_FILLER`] up to the size. A few paths change one thing about the answer:
//!
//! | path          | answer                                                                |
//! |---------------|-----------------------------------------------------------------------|
//! | `/status/NNN` | status NNN (200 to 599)                                               |
//! | `/delay/MS`   | waits MS milliseconds first, instead of the configured delay          |
//! | `/size/N`     | a body of N bytes; N takes units (`1KiB`) and is at most [`MAX_SIZE`] |
//! | anything else | the configured status, delay and body                                 |
//!
//! A malformed special path (`/status/abc`) gets `400` with the reason as body. With `echo` the body
//! is the request body instead; 204 and 304 answers never have one. A request with
//! `Connection: Upgrade` and an `Upgrade` header gets `101 Switching Protocols`, after which the
//! server echoes raw bytes until the client closes its side.

mod files;
mod log;
mod route;
mod server;
mod service;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use self::log::{REQUEST_LOG_CAPACITY, RecordedRequest};
pub use self::route::MAX_SIZE;
use self::server::Tasks;
use self::service::Shared;

/// The byte that pads the default body after the server name. A newline cannot occur in a name
/// (the name is also a header value), so the name is exactly the body up to the first filler.
pub const BODY_FILLER: u8 = b'\n';

/// How an origin answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginOptions {
    /// Sent in `X-Server` and at the start of the default body. Must be a valid header value.
    pub name: String,
    /// Size of the default body in bytes.
    pub body_size: usize,
    /// Answer with the request body instead of the default body.
    pub echo: bool,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Keep HTTP/1 connections open between requests; when off, every answer carries
    /// `Connection: close` and the connection closes after it.
    pub keep_alive: bool,
    /// Status of every answer outside `/status/NNN`; 200 to 599.
    pub status: u16,
    /// A directory to store and serve files in under `/files/NAME` (seed 004's upload and web
    /// servers); `None` leaves `/files/` an ordinary path.
    pub files: Option<PathBuf>,
}

impl Default for OriginOptions {
    fn default() -> Self {
        Self {
            name: "origin".to_owned(),
            body_size: 64,
            echo: false,
            delay: Duration::ZERO,
            keep_alive: true,
            status: 200,
            files: None,
        }
    }
}

/// Binds `listen` (port 0 picks a free port, see [`Origin::addr`]) and starts serving on the
/// current tokio runtime. Fails with `InvalidInput` if the options cannot be served.
pub async fn start(listen: SocketAddr, options: OriginOptions) -> io::Result<Origin> {
    let shared = Arc::new(Shared::new(options)?);
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let tasks = Tasks::new();
    tasks.spawn(server::accept_loop(listener, shared.clone(), tasks.clone()));
    Ok(Origin {
        addr,
        shared,
        tasks,
    })
}

/// A running origin. Dropping it stops it too, without waiting for its connections to close.
#[derive(Debug)]
pub struct Origin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Tasks,
}

impl Origin {
    /// The address it listens on, with the real port when it was started on port 0.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// The last [`REQUEST_LOG_CAPACITY`] requests it received, oldest first. A request is recorded
    /// once its body has been read, before the answer is sent.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.log().snapshot()
    }

    /// How many requests it received since it started or since the last [`Origin::clear`].
    pub fn request_count(&self) -> u64 {
        self.shared.log().count()
    }

    /// Forgets every recorded request and resets the count.
    pub fn clear(&self) {
        self.shared.log().clear();
    }

    /// Stops accepting, closes every open connection (idle keep-alive and upgraded ones included)
    /// and returns once all of them are closed and the port is released.
    pub async fn stop(self) {
        self.tasks.shutdown().await;
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.tasks.cancel();
    }
}
