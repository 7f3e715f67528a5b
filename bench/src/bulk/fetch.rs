//! The receiving end: connect, ask for SIZE bytes, read to EOF, and report how long it took.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::CHUNK;

/// The schema name and version of [`BulkReport`].
pub const SCHEMA: &str = "fulcrum-bench/bulk/v1";

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One stream, as `fulcrum-bench bulk fetch --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Where the client connected: the source, or a proxy in front of it.
    pub addr: SocketAddr,
    /// Bytes received; a report is only made when they are all the bytes asked for.
    pub bytes: u64,
    /// From the start of the connect to EOF.
    pub seconds: f64,
    /// `bytes / seconds / 10^6`.
    pub megabytes_per_second: f64,
}

impl BulkReport {
    fn new(addr: SocketAddr, bytes: u64, seconds: f64) -> Self {
        let megabytes_per_second = if seconds > 0.0 {
            bytes as f64 / seconds / 1e6
        } else {
            0.0
        };
        Self {
            schema: SCHEMA.to_owned(),
            addr,
            bytes,
            seconds,
            megabytes_per_second,
        }
    }
}

/// [`fetch_blocking`] on a blocking thread, for async callers.
pub async fn fetch(addr: SocketAddr, size: u64) -> io::Result<BulkReport> {
    tokio::task::spawn_blocking(move || fetch_blocking(addr, size))
        .await
        .map_err(io::Error::other)?
}

/// Asks the source at `addr` (or a proxy in front of it) for `size` bytes and reads them to EOF.
/// Fails if the stream ends short or runs long: a proxy that loses or adds bytes has no
/// throughput worth reporting.
pub fn fetch_blocking(addr: SocketAddr, size: u64) -> io::Result<BulkReport> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.write_all(format!("{size}\n").as_bytes())?;
    let mut buffer = vec![0; CHUNK];
    let mut bytes = 0_u64;
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        bytes += n as u64;
        if bytes > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{addr} sent more than the {size} bytes asked for"),
            ));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if bytes < size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{addr} closed after {bytes} of {size} bytes"),
        ));
    }
    Ok(BulkReport::new(addr, bytes, seconds))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::{self, Read, Write};
    use std::net::TcpListener;

    use super::{BulkReport, SCHEMA, fetch, fetch_blocking};
    use crate::bulk::start_source;

    #[test]
    fn fetches_exactly_what_it_asks_for() {
        let source = start_source("127.0.0.1:0".parse().unwrap()).unwrap();
        // Not a multiple of the chunk size, so the last write is a short one.
        let size = 3 * super::CHUNK as u64 + 7;
        let report = fetch_blocking(source.addr(), size).unwrap();
        assert_eq!(report.schema, SCHEMA);
        assert_eq!(report.addr, source.addr());
        assert_eq!(report.bytes, size);
        assert!(report.seconds > 0.0 && report.megabytes_per_second > 0.0);
        assert_eq!(fetch_blocking(source.addr(), 0).unwrap().bytes, 0);
    }

    #[tokio::test]
    async fn async_callers_fetch_too() {
        let source = start_source("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(fetch(source.addr(), 1000).await.unwrap().bytes, 1000);
    }

    /// A server that answers any request with `answer` and closes.
    fn answering(answer: &'static [u8]) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut line = [0; 3];
            stream.read_exact(&mut line).unwrap();
            stream.write_all(answer).unwrap();
        });
        addr
    }

    #[test]
    fn short_and_long_streams_are_errors() {
        let short = fetch_blocking(answering(b"abc"), 10).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof, "{short}");
        assert!(short.to_string().contains("after 3 of 10 bytes"), "{short}");
        let long = fetch_blocking(answering(b"abcdefghijklmnop"), 10).unwrap_err();
        assert_eq!(long.kind(), io::ErrorKind::InvalidData, "{long}");
    }

    #[test]
    fn rate_in_megabytes_per_second() {
        let report = BulkReport::new("127.0.0.1:1".parse().unwrap(), 2_000_000_000, 0.5);
        assert_eq!(report.megabytes_per_second, 4000.0);
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<BulkReport>(&json).unwrap(), report);
    }
}
