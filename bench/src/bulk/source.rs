//! The sending end: a listener whose every connection reads a size line, writes that many bytes
//! and closes. A connection that closes or sends garbage before its line gets nothing, which is
//! what the readiness probes of the comparison's proxies do.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use tracing::debug;

use super::{CHUNK, MAX_REQUEST_LINE};

/// Binds `listen` (port 0 picks a free port, see [`Source::addr`]) and serves on a thread of its
/// own, one more thread per connection.
pub fn start_source(listen: SocketAddr) -> io::Result<Source> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let stopping = Arc::new(AtomicBool::new(false));
    let accepting = {
        let stopping = Arc::clone(&stopping);
        std::thread::Builder::new()
            .name("bulk-source".to_owned())
            .spawn(move || accept_loop(&listener, &stopping))?
    };
    Ok(Source {
        addr,
        stopping,
        accepting: Some(accepting),
    })
}

/// A running source. Dropping it stops accepting; streams under way finish on their own, or when
/// their client goes away.
#[derive(Debug)]
pub struct Source {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accepting: Option<JoinHandle<()>>,
}

impl Source {
    /// The address it listens on, with the real port when it was started on port 0.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // A blocking `accept` only returns for a connection: make one, so the loop sees the flag.
        if TcpStream::connect(self.addr).is_ok()
            && let Some(accepting) = self.accepting.take()
        {
            let _ = accepting.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                debug!(%error, "bulk source accept failed");
                // EMFILE and friends: back off instead of spinning.
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("bulk-stream".to_owned())
            .spawn(move || {
                if let Err(error) = serve(stream) {
                    debug!(%error, "bulk stream ended early");
                }
            });
        if let Err(error) = spawned {
            debug!(%error, "cannot start a bulk stream thread");
        }
    }
}

/// One connection: the size line, the bytes, the FIN.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let Some(size) = read_request(&mut stream)? else {
        return Ok(());
    };
    let chunk = vec![b'x'; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        stream.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write)
}

/// Reads the size line byte by byte (it is the only thing the client sends, so nothing is read
/// past it). `None` when the client closes or sends something else.
fn read_request(stream: &mut TcpStream) -> io::Result<Option<u64>> {
    let mut line = Vec::with_capacity(MAX_REQUEST_LINE);
    let mut byte = [0; 1];
    while line.len() < MAX_REQUEST_LINE {
        if stream.read(&mut byte)? == 0 {
            return Ok(None);
        }
        if byte[0] == b'\n' {
            return Ok(parse_request(&line));
        }
        line.push(byte[0]);
    }
    Ok(None)
}

/// The size in a request line without its `\n`: decimal digits only.
pub(super) fn parse_request(line: &[u8]) -> Option<u64> {
    if line.is_empty() || !line.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(line).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::{parse_request, start_source};

    #[test]
    fn request_lines() {
        assert_eq!(parse_request(b"0"), Some(0));
        assert_eq!(parse_request(b"1073741824"), Some(1 << 30));
        assert_eq!(parse_request(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b"-1", b"1 ", b"1GiB", b"18446744073709551616"] {
            assert_eq!(parse_request(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn garbage_and_early_close_get_nothing() {
        let source = start_source("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut garbage = TcpStream::connect(source.addr()).unwrap();
        garbage.write_all(b"lots\n").unwrap();
        let mut got = Vec::new();
        garbage.read_to_end(&mut got).unwrap();
        assert!(got.is_empty());
        // A probe that connects and leaves, then a real request on the same source.
        drop(TcpStream::connect(source.addr()).unwrap());
        let mut client = TcpStream::connect(source.addr()).unwrap();
        client.write_all(b"5\n").unwrap();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"xxxxx");
    }
}
