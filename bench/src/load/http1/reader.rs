//! Reading responses from a connection into one buffer that lives as long as the connection, so
//! reading a response allocates nothing: bodies are skipped where they land, and only an
//! incomplete head is kept (and moved to the front) until the rest of it arrives.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::response::{Response, ResponseDecoder, ResponseError};

/// The buffer a connection starts with: one read of a typical response, as wrk reads.
const INITIAL_BUFFER: usize = 8 << 10;

/// The largest response head accepted; the buffer grows up to this only for a head that needs it.
pub(crate) const MAX_HEAD: usize = 64 << 10;

/// Why no response was read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed before the response ended")]
    Closed,
    #[error(transparent)]
    Protocol(#[from] ResponseError),
    #[error("response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
}

/// One connection's read side.
#[derive(Debug)]
pub(crate) struct ResponseReader {
    buffer: Vec<u8>,
    /// Received bytes not consumed yet are `buffer[start..end]`.
    start: usize,
    end: usize,
}

impl ResponseReader {
    pub(crate) fn new() -> Self {
        Self {
            buffer: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// Forgets unread bytes, for a new connection.
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads one response to its end; returns it with the bytes it took (head and body). Bytes
    /// past its end are kept for the next one.
    pub(crate) async fn read<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        head_request: bool,
    ) -> Result<(Response, u64), ReadError> {
        let mut decoder = ResponseDecoder::new(head_request);
        let mut total = 0u64;
        loop {
            if self.start < self.end {
                let consumed = decoder.decode(&self.buffer[self.start..self.end])?;
                self.start += consumed;
                total += consumed as u64;
                if self.start == self.end {
                    self.clear();
                }
                if let Some(response) = decoder.response() {
                    return Ok((response, total));
                }
            }
            self.make_room()?;
            let read = stream.read(&mut self.buffer[self.end..]).await?;
            if read == 0 {
                let response = decoder.end_of_input().ok_or(ReadError::Closed)?;
                // A body read until the close: what is left is all of it.
                total += (self.end - self.start) as u64;
                self.clear();
                return Ok((response, total));
            }
            self.end += read;
        }
    }

    /// Ensures there is space after `end`. Only an incomplete head can leave the buffer full: a
    /// body consumes everything it is given.
    fn make_room(&mut self) -> Result<(), ReadError> {
        if self.end < self.buffer.len() {
            return Ok(());
        }
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        } else if self.buffer.len() < MAX_HEAD {
            let len = (self.buffer.len() * 2).min(MAX_HEAD);
            self.buffer.resize(len, 0);
        } else {
            return Err(ReadError::HeadTooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::collections::VecDeque;
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, ReadBuf};

    use super::{MAX_HEAD, ReadError, ResponseReader};

    /// A stream that hands out its data in the given pieces, one per read, then end of stream.
    struct Pieces(VecDeque<Vec<u8>>);

    impl Pieces {
        fn new(data: &[u8], piece: usize) -> Self {
            Self(data.chunks(piece).map(<[u8]>::to_vec).collect())
        }
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut piece) = self.0.pop_front() {
                let take = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..take]);
                if take < piece.len() {
                    self.0.push_front(piece.split_off(take));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    const RESPONSES: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end";

    #[tokio::test]
    async fn reads_successive_responses_however_they_arrive() {
        for piece in 1..=RESPONSES.len() {
            let mut stream = Pieces::new(RESPONSES, piece);
            let mut reader = ResponseReader::new();
            let mut seen = Vec::new();
            let mut total = 0;
            for _ in 0..3 {
                let (response, len) = reader.read(&mut stream, false).await.unwrap();
                seen.push((response.status, response.close));
                total += len;
            }
            assert_eq!(seen, [(200, false), (404, false), (200, true)], "{piece}");
            assert_eq!(total, RESPONSES.len() as u64, "{piece}");
            assert!(matches!(
                reader.read(&mut stream, false).await,
                Err(ReadError::Closed)
            ));
        }
    }

    #[tokio::test]
    async fn a_truncated_body_is_an_early_close() {
        let mut stream = Pieces::new(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 4);
        let result = ResponseReader::new().read(&mut stream, false).await;
        assert!(matches!(result, Err(ReadError::Closed)));
    }

    #[tokio::test]
    async fn large_heads_grow_the_buffer_up_to_a_limit() {
        let filler = "x".repeat(1000);
        let mut head = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..40 {
            head.push_str(&format!("X-{i}: {filler}\r\n"));
        }
        head.push_str("Content-Length: 0\r\n\r\n");
        let mut stream = Pieces::new(head.as_bytes(), 3000);
        let (response, len) = ResponseReader::new()
            .read(&mut stream, false)
            .await
            .unwrap();
        assert_eq!((response.status, len), (200, head.len() as u64));

        let endless = vec![b'x'; MAX_HEAD + 1];
        let mut stream = Pieces::new(&[b"HTTP/1.1 200 OK\r\nX: ", &endless[..]].concat(), 4096);
        let result = ResponseReader::new().read(&mut stream, false).await;
        assert!(matches!(result, Err(ReadError::HeadTooLarge)));
    }
}
