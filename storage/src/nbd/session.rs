//! One NBD connection over any byte stream: the handshake (driving [`Negotiation`]), then the
//! transmission phase, where a reader validates requests and starts each as a task, and a
//! writer sends the replies in the order they complete.
//!
//! Memory is bounded per connection: at most [`MAX_IN_FLIGHT`] requests, and at most
//! [`MAX_IN_FLIGHT_BYTES`] of read and write data, held from before a write's data is read
//! until its reply is on the wire.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::buffers;
use super::handshake::{BadClientFlags, MAX_OPTION_DATA, Negotiation, Next};
use super::proto::{
    self, Command, OPTION_HEADER_LEN, REPLY_FLAG_DONE, REPLY_TYPE_NONE, REQUEST_HEADER_LEN,
    RequestHeader, STATE_HOLE, STATE_ZERO, Transmission,
};
use super::server::Counters;
use super::{Export, Extent, MAX_IN_FLIGHT, MAX_REQUEST_LEN, NbdError};

/// Read and write data one connection may hold at once (two maximum-length requests).
pub(crate) const MAX_IN_FLIGHT_BYTES: u32 = 2 * MAX_REQUEST_LEN;

/// How long a client may take to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most extents one block status reply carries.
const MAX_EXTENTS: usize = 1 << 16;

/// Buffered bytes on each side of the stream.
const READ_BUFFER: usize = 64 << 10;
/// How long a reply may wait for the client to take any of it: a client that stops reading
/// must not hold its requests' memory, nor a demotion waiting for the sessions to end, for
/// ever.
const REPLY_STALL: Duration = Duration::from_secs(60);
/// How long, once the server stops (a demotion), the sessions still get to deliver replies
/// or to send a refused write's data before they are closed.
const STOP_GRACE: Duration = Duration::from_secs(5);
const WRITE_BUFFER: usize = 256 << 10;

/// Why a session ended other than by the client's choice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The client broke the protocol; the server hung up.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The client did not finish the handshake in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
}

/// Serves one already-connected stream (a Unix socket, a test's in-memory pipe) until the
/// client disconnects. [`NbdServer`](super::NbdServer) does this for each TCP connection.
pub async fn serve_stream<S, E>(
    stream: S,
    export_name: &str,
    export: Arc<E>,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Send,
    E: Export,
{
    let counters = Arc::new(Counters::default());
    run(
        stream,
        export_name,
        export,
        &counters,
        &CancellationToken::new(),
    )
    .await
}

/// Runs a session; `shutdown` stops it between requests, once in-flight ones are answered.
pub(crate) async fn run<S, E>(
    stream: S,
    export_name: &str,
    export: Arc<E>,
    counters: &Arc<Counters>,
    shutdown: &CancellationToken,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Send,
    E: Export,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let handshake = handshake(&mut reader, &mut writer, export_name, export.as_ref());
    let transmission = tokio::select! {
        biased;
        () = shutdown.cancelled() => return Ok(()),
        result = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => match result {
            Err(_) => return Err(SessionError::HandshakeTimeout),
            Ok(Ok(Some(transmission))) => transmission,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(error)) => return Err(counted(error, counters)),
        },
    };
    debug!(
        size = transmission.size,
        flags = transmission.flags,
        structured = transmission.structured,
        "nbd transmission started"
    );
    transmit(reader, writer, transmission, export, counters, shutdown).await
}

/// Counts a broken protocol while the connection is still open: a client that sees the
/// hang-up finds it counted.
fn counted(error: SessionError, counters: &Counters) -> SessionError {
    if matches!(error, SessionError::Protocol(_)) {
        counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
    }
    error
}

/// The handshake phase; `None` when the client aborted.
async fn handshake<R, W, E>(
    reader: &mut R,
    writer: &mut W,
    export_name: &str,
    export: &E,
) -> Result<Option<Transmission>, SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    E: Export,
{
    writer.write_all(&Negotiation::greeting()).await?;
    writer.flush().await?;
    let mut negotiation = Negotiation::new(export_name, export.size(), export.flags());
    let client_flags = reader.read_u32().await?;
    negotiation
        .client_flags(client_flags)
        .map_err(|BadClientFlags(_)| SessionError::Protocol("unknown client flags"))?;

    let mut out = Vec::new();
    let mut data = Vec::new();
    loop {
        let mut header = [0; OPTION_HEADER_LEN];
        reader.read_exact(&mut header).await?;
        let header = proto::parse_option_header(&header)
            .map_err(|_| SessionError::Protocol("bad option magic"))?;
        out.clear();
        let next = if header.length > MAX_OPTION_DATA {
            discard(reader, u64::from(header.length)).await?;
            negotiation.oversize_option(header.option, &mut out)
        } else {
            data.resize(header.length as usize, 0);
            reader.read_exact(&mut data).await?;
            negotiation.option(header.option, &data, &mut out)
        };
        if let Next::Disconnect(why) = next {
            return Err(SessionError::Protocol(why));
        }
        writer.write_all(&out).await?;
        writer.flush().await?;
        match next {
            Next::Continue | Next::Disconnect(_) => {}
            Next::Abort => return Ok(None),
            Next::Transmit(transmission) => return Ok(Some(transmission)),
        }
    }
}

/// A reply ready to go out, with the permits it holds until it has.
struct Outgoing {
    head: Vec<u8>,
    data: Option<Bytes>,
    _permits: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

/// The transmission phase: read, validate, run concurrently, reply.
async fn transmit<R, W, E>(
    reader: BufReader<R>,
    writer: W,
    session: Transmission,
    export: Arc<E>,
    counters: &Arc<Counters>,
    shutdown: &CancellationToken,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    E: Export,
{
    let (replies, outgoing) = mpsc::unbounded_channel();
    // Cancelled when the writer fails, so that the reader stops too.
    let broken = CancellationToken::new();
    let tasks = TaskTracker::new();
    let read = read_requests(
        reader, &session, &export, counters, shutdown, &broken, &tasks, replies,
    );
    let write = write_replies(writer, outgoing, &broken, shutdown);
    let (read, write) = tokio::join!(read, write);
    read.and(write.map_err(SessionError::Io))
}

/// Reads requests until the client disconnects (or breaks the protocol), then waits for the
/// requests still in flight. Dropping the last reply sender lets the writer finish.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, the session's parts"
)]
async fn read_requests<R, E>(
    mut reader: BufReader<R>,
    session: &Transmission,
    export: &Arc<E>,
    counters: &Arc<Counters>,
    shutdown: &CancellationToken,
    broken: &CancellationToken,
    tasks: &TaskTracker,
    replies: mpsc::UnboundedSender<Outgoing>,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin,
    E: Export,
{
    let requests = Arc::new(Semaphore::new(MAX_IN_FLIGHT as usize));
    let bytes = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES as usize));
    let result = loop {
        let mut header = [0; REQUEST_HEADER_LEN];
        let read = tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            () = broken.cancelled() => break Ok(()),
            read = reader.read_exact(&mut header) => read,
        };
        match read {
            Ok(_) => {}
            // The client hung up between requests: not an error.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => break Ok(()),
            Err(error) => break Err(error.into()),
        }
        let header = match RequestHeader::parse(&header) {
            Ok(header) => header,
            Err(_) => break Err(SessionError::Protocol("bad request magic")),
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);

        let command = match proto::validate(&header, session) {
            Ok(Command::Disconnect) => break Ok(()),
            Ok(command) => command,
            Err(rejection) => {
                // A refusal's reply counts against the requests in flight like any other, so a
                // client that sends bad requests without reading the answers is held back.
                let permits = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break Ok(()),
                    () = broken.cancelled() => break Ok(()),
                    permits = acquire(&requests, &bytes, 0) => permits,
                };
                // A refused write's data is still on the wire: drop it to stay in step.
                let discarded = tokio::select! {
                    biased;
                    () = stopped_for(shutdown, STOP_GRACE) => break Ok(()),
                    discarded = discard(&mut reader, u64::from(header.payload_len())) => discarded,
                };
                if let Err(error) = discarded {
                    break Err(error.into());
                }
                counters.request_errors.fetch_add(1, Ordering::Relaxed);
                debug!(
                    command = header.command,
                    error = %rejection.error,
                    reason = rejection.message,
                    "nbd request refused"
                );
                let head = error_reply(session, header.cookie, rejection.error, rejection.message);
                let _ = replies.send(Outgoing {
                    head,
                    data: None,
                    _permits: permits,
                });
                continue;
            }
        };

        // Hold the permits from before a write's data is read until its reply is sent.
        let data_len = match command {
            Command::Read { length, .. } | Command::Write { length, .. } => length,
            _ => 0,
        };
        // A request whose header was read is answered even when the server stops before it can
        // be carried out: ESHUTDOWN, as the spec asks, before the session ends (a write's data
        // still on the wire is left unread: nothing follows on this connection).
        let shut_down = |permits| Outgoing {
            head: error_reply(
                session,
                header.cookie,
                NbdError::Shutdown,
                "server stopping",
            ),
            data: None,
            _permits: permits,
        };
        let permits = tokio::select! {
            biased;
            () = broken.cancelled() => break Ok(()),
            permits = acquire(&requests, &bytes, data_len) => permits,
            () = shutdown.cancelled() => {
                let _ = replies.send(shut_down(None));
                break Ok(());
            }
        };
        let payload = match command {
            Command::Write { length, .. } => {
                let read = tokio::select! {
                    biased;
                    () = broken.cancelled() => break Ok(()),
                    read = read_payload(&mut reader, length) => Some(read),
                    () = shutdown.cancelled() => None,
                };
                match read {
                    Some(Ok(payload)) => Some(payload),
                    Some(Err(error)) => break Err(error.into()),
                    None => {
                        let _ = replies.send(shut_down(permits));
                        break Ok(());
                    }
                }
            }
            _ => None,
        };

        let export = Arc::clone(export);
        let counters = Arc::clone(counters);
        let replies = replies.clone();
        let session = *session;
        tasks.spawn(async move {
            let (head, data) = execute(
                export.as_ref(),
                &session,
                &counters,
                header.cookie,
                command,
                payload,
            )
            .await;
            let _ = replies.send(Outgoing {
                head,
                data,
                _permits: permits,
            });
        });
    };
    let result = result.map_err(|error| counted(error, counters));
    // DISC, EOF, shutdown or a violation: answer what is in flight, then close.
    drop(replies);
    tasks.close();
    tasks.wait().await;
    result
}

/// One permit for the request, and one per byte of data it will hold (none without data).
async fn acquire(
    requests: &Arc<Semaphore>,
    bytes: &Arc<Semaphore>,
    data_len: u32,
) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
    // The semaphores are never closed, so acquiring only fails if that changes.
    let request = Arc::clone(requests).acquire_owned().await.ok()?;
    let data = Arc::clone(bytes).acquire_many_owned(data_len).await.ok()?;
    Some((request, data))
}

/// Reads a write's data straight into its own buffer (no zeroing, no copy afterwards); a large
/// one into a buffer that comes back when the write is done (see [`super::buffers`]), at an
/// address the disk can write from with `O_DIRECT`.
async fn read_payload<R: AsyncRead + Unpin>(reader: &mut R, length: u32) -> io::Result<Bytes> {
    let length = length as usize;
    if length >= buffers::POOLED_FROM {
        let (mut buf, data) = buffers::WRITES.take_aligned(length, 0);
        reader.read_exact(&mut buf[data.clone()]).await?;
        return Ok(buffers::WRITES.share(buf, data));
    }
    let mut buf = BytesMut::with_capacity(length);
    while buf.len() < length {
        let want = length - buf.len();
        if reader.read_buf(&mut (&mut buf).limit(want)).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf.freeze())
}

/// Reads and drops `len` bytes.
async fn discard<R: AsyncRead + Unpin>(reader: &mut R, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let copied = tokio::io::copy(&mut reader.take(len), &mut tokio::io::sink()).await?;
    if copied < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Sends replies as they come, batching what is queued into one flush. Fails when the client
/// takes nothing for [`REPLY_STALL`], or for [`STOP_GRACE`] once the server stops.
async fn write_replies<W: AsyncWrite + Unpin>(
    writer: W,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    broken: &CancellationToken,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, writer);
    let result: io::Result<()> = async {
        while let Some(first) = outgoing.recv().await {
            send(&mut writer, first, shutdown).await?;
            while let Ok(next) = outgoing.try_recv() {
                send(&mut writer, next, shutdown).await?;
            }
            progressing(writer.flush(), shutdown).await?;
        }
        progressing(writer.shutdown(), shutdown).await
    }
    .await;
    if result.is_err() {
        broken.cancel();
    }
    result
}

async fn send<W: AsyncWrite + Unpin>(
    writer: &mut W,
    reply: Outgoing,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    write_all(writer, &reply.head, shutdown).await?;
    if let Some(data) = &reply.data {
        write_all(writer, data, shutdown).await?;
    }
    Ok(())
}

/// `write_all`, one write at a time, each within [`progressing`]: a slow client that keeps
/// taking bytes is never cut, one that takes none is.
async fn write_all<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut buf: &[u8],
    shutdown: &CancellationToken,
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = progressing(writer.write(buf), shutdown).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// `io`, unless it makes no progress for [`REPLY_STALL`], or the server has been stopping for
/// [`STOP_GRACE`].
async fn progressing<T>(
    io: impl Future<Output = io::Result<T>>,
    shutdown: &CancellationToken,
) -> io::Result<T> {
    tokio::select! {
        done = io => done,
        () = tokio::time::sleep(REPLY_STALL) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took no reply data for a minute",
        )),
        () = stopped_for(shutdown, STOP_GRACE) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the server stopped and the client does not take its replies",
        )),
    }
}

/// Resolves `grace` after `shutdown` is cancelled.
async fn stopped_for(shutdown: &CancellationToken, grace: Duration) {
    shutdown.cancelled().await;
    tokio::time::sleep(grace).await;
}

/// Runs one validated command and builds its reply.
async fn execute<E: Export>(
    export: &E,
    session: &Transmission,
    counters: &Counters,
    cookie: u64,
    command: Command,
    payload: Option<Bytes>,
) -> (Vec<u8>, Option<Bytes>) {
    let result = match command {
        Command::Read { offset, length } => {
            return read(export, session, counters, cookie, offset, length).await;
        }
        Command::BlockStatus {
            offset,
            length,
            req_one,
            context,
        } => match export.block_status(offset, u64::from(length)).await {
            Ok(extents) => {
                let descriptors = descriptors(&extents, length, req_one);
                let mut head =
                    Vec::with_capacity(proto::CHUNK_HEADER_LEN + 4 + 8 * descriptors.len());
                proto::put_block_status_chunk(&mut head, cookie, context, &descriptors);
                return (head, None);
            }
            Err(error) => Err(error),
        },
        Command::Write {
            offset,
            length,
            fua,
        } => {
            let data = payload.unwrap_or_default();
            if data.len() != length as usize {
                Err(NbdError::Io)
            } else if length == 0 {
                Ok(())
            } else {
                let result = export.write(offset, data, fua).await;
                if result.is_ok() {
                    counters
                        .bytes_written
                        .fetch_add(u64::from(length), Ordering::Relaxed);
                }
                result
            }
        }
        Command::Flush => export.flush().await,
        Command::Trim {
            offset,
            length,
            fua,
        } => export.trim(offset, u64::from(length), fua).await,
        Command::WriteZeroes {
            offset,
            length,
            fua,
        } => export.write_zeroes(offset, u64::from(length), fua).await,
        // Handled by the reader; never spawned.
        Command::Disconnect => Ok(()),
    };
    match result {
        Ok(()) => (proto::simple_reply(cookie, 0).to_vec(), None),
        Err(error) => {
            counters.request_errors.fetch_add(1, Ordering::Relaxed);
            debug!(?command, %error, "nbd request failed");
            (
                error_reply(session, cookie, error, "export operation failed"),
                None,
            )
        }
    }
}

async fn read<E: Export>(
    export: &E,
    session: &Transmission,
    counters: &Counters,
    cookie: u64,
    offset: u64,
    length: u32,
) -> (Vec<u8>, Option<Bytes>) {
    if length == 0 {
        // Unspecified by the spec, but must not disconnect: succeed with no data.
        return if session.structured {
            let mut head = Vec::with_capacity(proto::CHUNK_HEADER_LEN);
            proto::put_chunk_header(&mut head, REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0);
            (head, None)
        } else {
            (proto::simple_reply(cookie, 0).to_vec(), None)
        };
    }
    let data = match export.read(offset, length as usize).await {
        Ok(data) if data.len() == length as usize => data,
        Ok(data) => {
            warn!(
                expected = length,
                got = data.len(),
                "nbd export returned a short read"
            );
            return failed(session, counters, cookie, NbdError::Io);
        }
        Err(error) => return failed(session, counters, cookie, error),
    };
    counters
        .bytes_read
        .fetch_add(u64::from(length), Ordering::Relaxed);
    // The whole read is in hand, so no error can follow: one final chunk (which also makes
    // every read "don't fragment").
    let head = if session.structured {
        let mut head = Vec::with_capacity(proto::CHUNK_HEADER_LEN + 8);
        proto::put_read_chunk_header(&mut head, cookie, offset, length);
        head
    } else {
        proto::simple_reply(cookie, 0).to_vec()
    };
    (head, Some(data))
}

fn failed(
    session: &Transmission,
    counters: &Counters,
    cookie: u64,
    error: NbdError,
) -> (Vec<u8>, Option<Bytes>) {
    counters.request_errors.fetch_add(1, Ordering::Relaxed);
    debug!(%error, "nbd read failed");
    (error_reply(session, cookie, error, "read failed"), None)
}

/// An error reply: an `ERROR` chunk with a message when structured replies were agreed (the
/// spec's preference, and the only choice for a read), else a simple reply.
fn error_reply(session: &Transmission, cookie: u64, error: NbdError, message: &str) -> Vec<u8> {
    if session.structured {
        let mut head = Vec::with_capacity(proto::CHUNK_HEADER_LEN + 6 + message.len());
        proto::put_error_chunk(&mut head, cookie, error.code(), message);
        head
    } else {
        proto::simple_reply(cookie, error.code()).to_vec()
    }
}

/// Turns what the export reported into valid descriptors: no empty extents, neighbours with
/// the same status merged, none past the requested `length` (so that `REQ_ONE`'s bound holds
/// too), at least one, at most one with `req_one`.
fn descriptors(extents: &[Extent], length: u32, req_one: bool) -> Vec<(u32, u32)> {
    let limit = if req_one { 1 } else { MAX_EXTENTS };
    let mut out: Vec<(u32, u32)> = Vec::new();
    let mut covered: u32 = 0;
    for extent in extents {
        if covered >= length {
            break;
        }
        let status = (u32::from(extent.hole) * STATE_HOLE) | (u32::from(extent.zero) * STATE_ZERO);
        let len = u32::try_from(extent.length)
            .unwrap_or(u32::MAX)
            .min(length - covered);
        if len == 0 {
            continue;
        }
        covered += len;
        let full = out.len() == limit;
        match out.last_mut() {
            Some(last) if last.1 == status => last.0 += len,
            _ if full => break,
            _ => out.push((len, status)),
        }
    }
    if out.is_empty() {
        out.push((length, 0));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn extent(length: u64, hole: bool, zero: bool) -> Extent {
        Extent { length, hole, zero }
    }

    // Input: a large and a small write's payload. Output: both arrive whole; the large one at
    // an address the volume's disk can write from with O_DIRECT.
    #[tokio::test]
    async fn a_large_payload_is_read_into_an_aligned_buffer() {
        let sent: Vec<u8> = (0..256 << 10).map(|i: u32| (i % 253) as u8).collect();
        let mut reader = &sent[..];
        let large = read_payload(&mut reader, 256 << 10).await.expect("read");
        assert_eq!(large[..], sent[..]);
        assert_eq!(large.as_ptr().align_offset(crate::buffers::ALIGN), 0);
        let mut reader = &sent[..512];
        let small = read_payload(&mut reader, 512).await.expect("read");
        assert_eq!(small[..], sent[..512]);
    }

    #[test]
    fn descriptors_are_merged_bounded_and_never_empty() {
        let extents = [
            extent(0, true, true),
            extent(100, false, false),
            extent(50, false, false),
            extent(1 << 40, true, true),
        ];
        assert_eq!(
            descriptors(&extents, 4096, false),
            [(150, 0), (3946, STATE_HOLE | STATE_ZERO)]
        );
        assert_eq!(descriptors(&extents, 4096, true), [(150, 0)]);
        assert_eq!(descriptors(&extents, 120, true), [(120, 0)]);
        assert_eq!(descriptors(&[], 512, false), [(512, 0)]);
    }
}
