//! Streams a message body from one connection to another as it arrives, checking its framing on
//! the way: a `Content-Length` body is counted, a chunked one is parsed chunk by chunk and
//! re-emitted with clean size lines (extensions dropped), so a malformed chunk stops here instead
//! of reaching the server.
//!
//! Writes are coalesced: small pieces gather in an output buffer (that may already hold the head)
//! and go out in one write just before the copy would wait for more input.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{
    conn::{Conn, IoFailure, with_timeout},
    head::BodyKind,
};

/// Output gathered beyond this is written at once.
const FLUSH_AT: usize = 64 * 1024;
/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;

/// Which side stopped a body copy, so the caller can tell a client abort from a server failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("reading body: {0}")]
    Read(IoFailure),
    #[error("writing body: {0}")]
    Write(IoFailure),
    #[error("malformed chunked body: {0}")]
    Malformed(&'static str),
}

/// Timeouts of one copy: inactivity on the source and on the destination.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CopyTimeouts {
    pub(crate) read: Duration,
    pub(crate) write: Duration,
}

/// Sends `out` followed by the body of `kind` read from `src`; returns the body bytes read.
/// With `dechunk`, a chunked body is sent as bare data (for an HTTP/1.0 client, which does not
/// know chunked coding; the connection must then close to end the body).
pub(crate) async fn forward<R, W>(
    src: &mut Conn<R>,
    dst: &mut W,
    out: &mut Vec<u8>,
    kind: BodyKind,
    timeouts: CopyTimeouts,
    dechunk: bool,
) -> Result<u64, BodyError>
where
    R: AsyncRead + AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut copy = Copy {
        src,
        dst,
        out,
        timeouts,
        read: 0,
        dechunk,
    };
    match kind {
        BodyKind::Empty => {}
        BodyKind::Length(n) => copy.exact(n).await?,
        BodyKind::Chunked => copy.chunked().await?,
        BodyKind::UntilClose => copy.until_close().await?,
    }
    copy.flush().await?;
    Ok(copy.read)
}

struct Copy<'a, R, W> {
    src: &'a mut Conn<R>,
    dst: &'a mut W,
    out: &'a mut Vec<u8>,
    timeouts: CopyTimeouts,
    read: u64,
    dechunk: bool,
}

impl<R, W> Copy<'_, R, W>
where
    R: AsyncRead + AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    async fn exact(&mut self, mut remaining: u64) -> Result<(), BodyError> {
        while remaining > 0 {
            self.ensure_input().await?;
            let take = remaining.min(self.src.buf.len() as u64) as usize;
            let data = self.src.buf.split_to(take);
            self.emit(&data).await?;
            remaining -= take as u64;
            self.read += take as u64;
        }
        Ok(())
    }

    async fn until_close(&mut self) -> Result<(), BodyError> {
        loop {
            match self.ensure_input().await {
                Ok(()) => {}
                Err(BodyError::Read(IoFailure::Closed)) => return Ok(()),
                Err(e) => return Err(e),
            }
            let data = self.src.buf.split();
            self.read += data.len() as u64;
            self.emit(&data).await?;
        }
    }

    async fn chunked(&mut self) -> Result<(), BodyError> {
        loop {
            let line = self.line().await?;
            let size = parse_chunk_size(&line)?;
            self.framing(format!("{size:x}\r\n").as_bytes()).await?;
            if size == 0 {
                break;
            }
            self.exact(size).await?;
            let end = self.line().await?;
            if !end.is_empty() {
                return Err(BodyError::Malformed("chunk data longer than its size"));
            }
            self.framing(b"\r\n").await?;
        }
        // Trailer fields, then the empty line that ends the message.
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                return self.framing(b"\r\n").await;
            }
            check_trailer(&line)?;
            self.framing(&line).await?;
            self.framing(b"\r\n").await?;
        }
    }

    /// Emits chunked framing, unless the body is being de-chunked.
    async fn framing(&mut self, data: &[u8]) -> Result<(), BodyError> {
        if self.dechunk {
            return Ok(());
        }
        self.emit(data).await
    }

    /// Takes one CRLF-terminated line off the input, without its CRLF.
    async fn line(&mut self) -> Result<Vec<u8>, BodyError> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.src.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                let line = self.src.buf.split_to(end + 1);
                self.read += line.len() as u64;
                let content = line
                    .strip_suffix(b"\r\n")
                    .ok_or(BodyError::Malformed("line not ended by CRLF"))?;
                if content.contains(&b'\r') {
                    return Err(BodyError::Malformed("bare CR"));
                }
                return Ok(content.to_vec());
            }
            scanned = self.src.buf.len();
            if scanned > MAX_LINE {
                return Err(BodyError::Malformed("line too long"));
            }
            self.fill().await?;
        }
    }

    /// Makes sure some input is buffered, writing what is gathered before waiting for more.
    async fn ensure_input(&mut self) -> Result<(), BodyError> {
        if self.src.buf.is_empty() {
            self.fill().await?;
        }
        Ok(())
    }

    async fn fill(&mut self) -> Result<(), BodyError> {
        self.flush().await?;
        self.src
            .fill(self.timeouts.read)
            .await
            .map(drop)
            .map_err(BodyError::Read)
    }

    async fn emit(&mut self, data: &[u8]) -> Result<(), BodyError> {
        if self.out.len() + data.len() <= FLUSH_AT {
            self.out.extend_from_slice(data);
            return Ok(());
        }
        self.flush().await?;
        if data.len() >= FLUSH_AT / 4 {
            self.write(data).await
        } else {
            self.out.extend_from_slice(data);
            Ok(())
        }
    }

    async fn flush(&mut self) -> Result<(), BodyError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(self.out);
        let result = self.write(&out).await;
        *self.out = out;
        self.out.clear();
        result
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), BodyError> {
        with_timeout(self.timeouts.write, self.dst.write_all(data))
            .await
            .map_err(BodyError::Write)?
            .map_err(|e| BodyError::Write(e.into()))
    }
}

/// Refuses a trailer line the head's parser would refuse as a header line: a name that is not
/// a token (an obs-fold continuation starts with a space), a value with control bytes (NUL,
/// a bare CR). The framing fields too: a trailer cannot change how the message was framed,
/// and a server that merges trailers into the head (RFC 9110 6.5.1 forbids it) would be
/// misled by a `Content-Length` or `Transfer-Encoding` there.
fn check_trailer(line: &[u8]) -> Result<(), BodyError> {
    let invalid = || BodyError::Malformed("invalid trailer line");
    let colon = line.iter().position(|&b| b == b':').ok_or_else(invalid)?;
    let name = http::HeaderName::from_bytes(&line[..colon]).map_err(|_| invalid())?;
    let value = line[colon + 1..].trim_ascii();
    http::HeaderValue::from_bytes(value).map_err(|_| invalid())?;
    if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
        return Err(BodyError::Malformed("a framing field in the trailer"));
    }
    Ok(())
}

/// Reads the hex size at the start of a chunk-size line, ignoring chunk extensions: after the
/// digits only whitespace, then `;` and an extension (RFC 9112 §7.1.1), may come, as HAProxy
/// reads it. `5 x` is refused, not read as 5: a server that stops at the space would agree, one
/// that refused the line would not.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let hex_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (hex, rest) = line.split_at(hex_end);
    let space = rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    let after_space = &rest[space..];
    let rest_ok = after_space.is_empty() || after_space.starts_with(b";");
    if hex.is_empty() || hex.len() > 15 || !rest_ok {
        return Err(BodyError::Malformed("invalid chunk size"));
    }
    let text = std::str::from_utf8(hex).map_err(|_| BodyError::Malformed("invalid chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| BodyError::Malformed("invalid chunk size"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    const T: CopyTimeouts = CopyTimeouts {
        read: Duration::from_secs(5),
        write: Duration::from_secs(5),
    };

    async fn run(input: &[u8], kind: BodyKind) -> (Result<u64, BodyError>, Vec<u8>, Vec<u8>) {
        let (mut feed, src) = duplex(1 << 20);
        feed.write_all(input).await.unwrap();
        drop(feed);
        let mut src = Conn::new(src);
        let (mut dst, mut sink) = duplex(1 << 20);
        let mut out = b"HEAD".to_vec();
        let result = forward(&mut src, &mut dst, &mut out, kind, T, false).await;
        drop(dst);
        let mut written = Vec::new();
        sink.read_to_end(&mut written).await.unwrap();
        (result, written, src.buf.to_vec())
    }

    #[tokio::test]
    async fn length_body_stops_at_its_length() {
        let (read, written, rest) = run(b"hello, next request", BodyKind::Length(5)).await;
        assert_eq!(read.unwrap(), 5);
        assert_eq!(written, b"HEADhello");
        assert_eq!(rest, b", next request");
    }

    #[tokio::test]
    async fn truncated_length_body_is_a_read_error() {
        let (read, _, _) = run(b"abc", BodyKind::Length(5)).await;
        assert!(matches!(read, Err(BodyError::Read(IoFailure::Closed))));
    }

    #[tokio::test]
    async fn chunked_body_is_re_emitted_without_extensions() {
        let input = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET";
        let (_, written, rest) = run(input, BodyKind::Chunked).await;
        assert_eq!(
            written,
            b"HEAD5\r\nhello\r\na\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n"
        );
        assert_eq!(rest, b"GET");
    }

    // Input: chunked bodies ending in one trailer line each: a NUL in a name, an obs-fold
    // continuation, an empty name, a bare CR in a value, a Content-Length, a Transfer-Encoding.
    // Output: each is refused, and the bad line is not forwarded; a sound trailer (with
    // optional whitespace) still is.
    #[tokio::test]
    async fn a_trailer_the_head_would_refuse_is_refused() {
        let bad: [&[u8]; 6] = [
            b"X\x00y: 1",
            b" folded: x",
            b": empty",
            b"X-A: a\rb",
            b"Content-Length: 5",
            b"transfer-encoding: chunked",
        ];
        for line in bad {
            let input = [b"1\r\na\r\n0\r\n", line, b"\r\n\r\n"].concat();
            let (read, written, _) = run(&input, BodyKind::Chunked).await;
            assert!(
                matches!(read, Err(BodyError::Malformed(_))),
                "{:?}: {read:?}",
                String::from_utf8_lossy(line)
            );
            assert!(
                !written.ends_with(line),
                "{:?} forwarded",
                String::from_utf8_lossy(line)
            );
        }
        let input = b"1\r\na\r\n0\r\nX-Checksum:  abc \t\r\n\r\n";
        let (read, written, _) = run(input, BodyKind::Chunked).await;
        assert!(read.is_ok(), "{read:?}");
        assert!(written.ends_with(b"X-Checksum:  abc \t\r\n\r\n"));
    }

    #[tokio::test]
    async fn dechunking_leaves_bare_data() {
        let (feed_end, src) = duplex(1024);
        let mut feed_end = feed_end;
        feed_end
            .write_all(b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n")
            .await
            .unwrap();
        drop(feed_end);
        let mut src = Conn::new(src);
        let (mut dst, mut sink) = duplex(1024);
        let mut out = Vec::new();
        let n = forward(&mut src, &mut dst, &mut out, BodyKind::Chunked, T, true)
            .await
            .unwrap();
        assert_eq!(n, 23);
        drop(dst);
        let mut written = Vec::new();
        sink.read_to_end(&mut written).await.unwrap();
        assert_eq!(written, b"helloabc");
    }

    #[tokio::test]
    async fn whitespace_may_come_before_an_extension_or_the_line_end() {
        let input = b"5 ;a=1\r\nhello\r\n3\t\r\nabc\r\n0\r\n\r\n";
        let (read, written, _) = run(input, BodyKind::Chunked).await;
        assert_eq!(read.unwrap(), input.len() as u64);
        assert_eq!(written, b"HEAD5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n");
    }

    #[tokio::test]
    async fn malformed_chunks_are_refused() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX\r\n0\r\n\r\n",
            b"5\nhello\r\n",
            b"5\r\nhe\rlo\r\n",
            // After the size, only whitespace and then `;` may come.
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5\tx;a\r\nhello\r\n0\r\n\r\n",
        ] {
            let (read, _, _) = run(bad, BodyKind::Chunked).await;
            assert!(read.is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn until_close_copies_everything() {
        let big = vec![7u8; 300_000];
        let (read, written, _) = run(&big, BodyKind::UntilClose).await;
        assert_eq!(read.unwrap(), 300_000);
        assert_eq!(written.len(), 300_004);
    }

    proptest::proptest! {
        /// Arbitrary bytes as a chunked body end in an error or a copy, never a panic.
        #[test]
        fn arbitrary_chunked_input_never_panics(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let _ = rt.block_on(run(&input, BodyKind::Chunked));
        }
    }
}
