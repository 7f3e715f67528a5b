//! Zero-copy TCP relaying for the L4 tier: the relay of [`super::relay`] (half-close passed
//! through, one idle timeout over both directions, the same [`Relayed`]), but on Linux a
//! direction that carries a bulk transfer moves its bytes from socket to socket through a pipe
//! with `splice(2)`, never entering userspace. Short exchanges stay on a buffer, where a pipe
//! would cost more syscalls than the copy it saves (HAProxy's `splice-auto` makes the same call).
//!
//! LVS forwards in the kernel, so its users expect an L4 virtual service to cost next to no CPU
//! per byte; a userspace relay adds two copies of every byte, which splice takes away. Where
//! splice is unavailable (no file descriptors left for pipes, a seccomp filter or sandbox that
//! refuses it, another OS) the buffered relay runs instead, with the same result.

use std::time::Duration;

use tokio::net::TcpStream;

use super::relay::{self, Relayed, Tally};

/// Relays between `client` and `server` until both directions are closed, one fails, or the
/// connection is idle for `idle` (zero: no limit), splicing where the kernel allows it, and
/// counts the bytes in `tally` as they move (so that a relay cut off still counts them). The
/// caller closes both sockets once this returns: the direction that ends last leaves its FIN to
/// that close rather than spend a `shutdown` on it.
#[cfg(target_os = "linux")]
pub async fn relay_tcp(
    client: &mut TcpStream,
    server: &mut TcpStream,
    idle: Duration,
    tally: &Tally,
) -> Relayed {
    linux::relay_with(client, server, idle, true, tally).await
}

/// Relays between `client` and `server` until both directions are closed, one fails, or the
/// connection is idle for `idle` (zero: no limit); splice is Linux's, so this is the buffered
/// relay.
#[cfg(not(target_os = "linux"))]
pub async fn relay_tcp(
    client: &mut TcpStream,
    server: &mut TcpStream,
    idle: Duration,
    tally: &Tally,
) -> Relayed {
    relay::relay_counted(client, server, idle, tally).await
}

#[cfg(target_os = "linux")]
mod linux {
    use std::{
        io,
        net::Shutdown,
        os::fd::OwnedFd,
        sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed},
        task::{Context, Waker},
        time::Duration,
    };

    use rustix::{
        io::Errno,
        net::{RecvFlags, SendFlags, recv, send},
        pipe::{PipeFlags, SpliceFlags, pipe_with, splice},
    };
    use socket2::SockRef;
    use tokio::{
        io::{AsyncReadExt, Interest},
        net::{TcpStream, tcp::ReadHalf},
    };
    use tracing::debug;

    use super::relay::{Relayed, Tally};
    use crate::l7::h1::spare;
    use bytes::BytesMut;
    use fulcrum_common::activity::Activity;

    /// Most bytes asked for per splice: the default pipe capacity (16 pages), so a splice into
    /// an empty pipe is bounded by what the socket has rather than by the pipe.
    const CHUNK: usize = 64 * 1024;

    /// The buffer a direction starts with; a read that fills it switches the direction to
    /// splice.
    const BUFFER: usize = 16 * 1024;

    /// Never block (tokio says when a socket is ready); MOVE asks for pages to be moved rather
    /// than copied, where the kernel can.
    const FLAGS: SpliceFlags = SpliceFlags::NONBLOCK.union(SpliceFlags::MOVE);

    /// Relays through a buffer per direction, switching a direction to splice once it shows a
    /// bulk transfer (`splice` set); tests clear `splice` to pin the buffered path.
    pub(super) async fn relay_with(
        client: &mut TcpStream,
        server: &mut TcpStream,
        idle: Duration,
        splice: bool,
        tally: &Tally,
    ) -> Relayed {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = Direction {
            to: server_write.as_ref(),
            may_splice: splice,
            activity: &tally.activity,
            moved: &tally.up,
            one_ended: &tally.one_ended,
            half_closes: tally.half_closes.as_deref(),
        };
        let down = Direction {
            to: client_write.as_ref(),
            moved: &tally.down,
            ..up
        };
        // The thread's spare read buffers (those of the L7 tier), given back when the relay
        // ends: a short connection then costs no allocation and no free of 2 × 16 KiB, and
        // the memory it reads into is warm.
        let (mut up_buf, mut down_buf) = (spare::take_read(), spare::take_read());
        // Both directions in this task, each finishing on its own EOF, so a half-closed
        // connection keeps carrying the other way.
        let both = async {
            tokio::try_join!(
                pump(client_read, up, &mut up_buf),
                pump(server_read, down, &mut down_buf)
            )
        };
        let relayed = tally.until_done(both, idle).await;
        spare::put_read(up_buf);
        spare::put_read(down_buf);
        relayed
    }

    /// Where one direction's bytes go, and what it shares with the other direction.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct Direction<'a> {
        pub(super) to: &'a TcpStream,
        pub(super) may_splice: bool,
        pub(super) activity: &'a Activity,
        pub(super) moved: &'a AtomicU64,
        /// Set by the first direction to end.
        pub(super) one_ended: &'a AtomicBool,
        /// Raised by the first direction to end (see [`Tally::half_closes`]).
        pub(super) half_closes: Option<&'a AtomicU32>,
    }

    impl Direction<'_> {
        /// Sends `bytes` on (see [`send_all`] for `last`), and counts them as moved.
        async fn send(&self, bytes: &[u8], last: bool) -> io::Result<()> {
            send_all(self.to, bytes, last).await?;
            self.moved.fetch_add(bytes.len() as u64, Relaxed);
            self.activity.touch();
            Ok(())
        }

        /// Passes the EOF on. Only while the other direction is open: the last one to end
        /// leaves its FIN to the close that follows the relay, one syscall fewer per
        /// connection. Nothing is left unread by then, so that close sends a FIN, not a reset.
        fn end(&self) -> io::Result<()> {
            if self.one_ended.swap(true, Relaxed) {
                return Ok(());
            }
            if let Some(half_closes) = self.half_closes {
                half_closes.fetch_add(1, Relaxed);
            }
            SockRef::from(self.to).shutdown(Shutdown::Write)
        }
    }

    /// One direction's pipe: the source socket is spliced into `write`, `read` into the
    /// destination.
    #[derive(Debug)]
    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Pipe {
        fn new() -> io::Result<Self> {
            // Nonblocking, so no splice ever parks the runtime's thread on the pipe.
            let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
            Ok(Self { read, write })
        }
    }

    /// How a direction ended up moving its bytes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Mode {
        Buffered,
        Spliced,
    }

    /// Moves `from` to `to` until EOF, then shuts `to`'s write side down (passing the FIN on).
    ///
    /// It starts with a buffer, as HAProxy's `splice-auto` does: a short exchange costs a read
    /// and a write, where splice would add a pipe (two descriptors to open and close) and two
    /// syscalls per chunk. A read that fills the whole buffer means more is coming, and from
    /// then on this direction splices. A kernel or sandbox that refuses splice (EINVAL, ENOSYS
    /// before any byte moved) leaves it on the buffer. A peer gone away shows as EPIPE, not
    /// SIGPIPE: the Rust runtime ignores that signal. Bytes that end the stream (a server that
    /// answers and closes) go on in one segment with the FIN passed on, as HAProxy sends them.
    pub(super) async fn pump(
        mut from: ReadHalf<'_>,
        direction: Direction<'_>,
        buf: &mut BytesMut,
    ) -> io::Result<Mode> {
        let mut may_splice = direction.may_splice;
        // Read into spare capacity: zeroing 16 KiB per direction and connection showed in the
        // profile of short connections (bench tcp-close), and the bytes are overwritten anyway.
        buf.clear();
        buf.reserve(BUFFER);
        loop {
            buf.clear();
            // Through `AsyncRead`, which takes a short read as the socket drained (as HAProxy
            // does) and waits for readiness next, rather than spending a read on the EAGAIN.
            let n = from.read_buf(buf).await?;
            if n == 0 {
                direction.end()?;
                return Ok(Mode::Buffered);
            }
            let after = if n < buf.capacity() && readable_again(from.as_ref()) {
                read_rest(from.as_ref(), buf)
            } else {
                After::Open
            };
            direction.send(buf, matches!(after, After::Eof)).await?;
            match after {
                After::Eof => {
                    direction.end()?;
                    return Ok(Mode::Buffered);
                }
                After::Failed(error) => return Err(error),
                After::Open => {}
            }
            if n == buf.capacity() && may_splice {
                match Pipe::new() {
                    Ok(pipe) => match spliced(from.as_ref(), direction, &pipe, buf).await? {
                        Some(()) => return Ok(Mode::Spliced),
                        None => may_splice = false,
                    },
                    Err(error) => {
                        debug!(%error, "no pipe for splice, relaying through buffers");
                        may_splice = false;
                    }
                }
            }
        }
    }

    /// What follows the bytes of a short read from a source readable again.
    #[derive(Debug)]
    enum After {
        /// The FIN: these bytes are the last.
        Eof,
        /// More bytes, or none yet: the read loop goes on.
        Open,
        /// The source failed after these bytes; they go on first.
        Failed(io::Error),
    }

    /// Whether `from` has more to give right after a short read, which took all it had: its FIN
    /// came in (EPOLLRDHUP), or bytes since. It asks tokio's readiness without waiting for it:
    /// the waker left behind does nothing, and the next read registers the task's own.
    fn readable_again(from: &TcpStream) -> bool {
        let mut probe = Context::from_waker(Waker::noop());
        from.poll_read_ready(&mut probe).is_ready()
    }

    /// Reads on after a short read from a source readable again, to learn whether the FIN is
    /// next. Once the FIN is in, it nearly always is (the queue ahead of a FIN is whole by then,
    /// and a short read took all of it), but a read also stops short at TCP urgent data, and
    /// bytes may have come in since; one more read says it for sure. Bytes it finds join `buf`.
    fn read_rest(from: &TcpStream, buf: &mut BytesMut) -> After {
        match from.try_read_buf(buf) {
            Ok(0) => After::Eof,
            Ok(_) => After::Open,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => After::Open,
            Err(error) => After::Failed(error),
        }
    }

    /// After a splice that found nothing (EAGAIN) or the end (0): splice stops at TCP urgent
    /// data and cannot step past it, so there it says one of those with bytes still behind the
    /// mark, and a stream would stall or be cut short. A read steps past the urgent byte (out of
    /// band, as without SO_OOBINLINE) and takes what follows into `buf`; at a real end or an
    /// empty socket it says so, and EAGAIN lets tokio wait for the next bytes. One more system
    /// call each time the source runs dry, for a spliced (bulk) direction only. HAProxy's splice
    /// has the same blind spot and no such read.
    fn read_past_mark(from: &TcpStream, buf: &mut BytesMut) -> io::Result<Filled> {
        let mut past = [0u8; PAST_MARK];
        let (read, _) = recv(from, &mut past[..], RecvFlags::empty())?;
        if read == 0 {
            return Ok(Filled::End);
        }
        buf.clear();
        buf.extend_from_slice(&past[..read]);
        Ok(Filled::Read)
    }

    /// The most [`read_past_mark`] takes at once: the bytes after urgent data go on through
    /// this small buffer, then splicing resumes.
    const PAST_MARK: usize = 4096;

    /// Writes all of `bytes` to `to`. The `last` bytes before a FIN go with MSG_MORE, which
    /// holds them for the shutdown or close that follows at once, so they leave in one segment
    /// with the FIN: the peer then acknowledges both with one ACK. On loopback, where this
    /// process pays for the peer's side of every segment it sends, a short connection costs two
    /// segments fewer (bench tcp-close; HAProxy does the same).
    async fn send_all(to: &TcpStream, bytes: &[u8], last: bool) -> io::Result<()> {
        let flags = if last {
            SendFlags::NOSIGNAL | SendFlags::MORE
        } else {
            SendFlags::NOSIGNAL
        };
        let mut sent = 0;
        while sent < bytes.len() {
            sent += to
                .async_io(Interest::WRITABLE, || {
                    send(to, &bytes[sent..], flags).map_err(io::Error::from)
                })
                .await?;
        }
        Ok(())
    }

    /// What one turn of [`spliced`] took from the source.
    enum Filled {
        /// Bytes now in the pipe.
        Piped(usize),
        /// Bytes past TCP urgent data, read into the buffer (see [`read_past_mark`]).
        Read,
        /// The FIN, with nothing left before it.
        End,
    }

    /// The splicing rest of [`pump`]: `Some(())` at EOF, `None` if the kernel refused the very
    /// first splice, so the caller goes on with its buffer, which this uses only past TCP
    /// urgent data.
    async fn spliced(
        from: &TcpStream,
        direction: Direction<'_>,
        pipe: &Pipe,
        buf: &mut BytesMut,
    ) -> io::Result<Option<()>> {
        let Direction {
            to,
            activity,
            moved,
            ..
        } = direction;
        let mut first = true;
        loop {
            // The pipe is filled only once empty, so it always has room and an EAGAIN can only
            // be the socket's (nothing to read). That matters: tokio takes EAGAIN as the socket
            // no longer readable, and a full pipe's EAGAIN would leave this waiting for an edge
            // that never comes while the socket still holds data.
            let filled = from
                .async_io(Interest::READABLE, || {
                    match splice(from, None, &pipe.write, None, CHUNK, FLAGS) {
                        Ok(0) | Err(Errno::AGAIN) => read_past_mark(from, buf),
                        Ok(n) => Ok(Filled::Piped(n)),
                        Err(e) => Err(e.into()),
                    }
                })
                .await;
            let mut in_pipe = match filled {
                Ok(Filled::Piped(n)) => n,
                Ok(Filled::Read) => {
                    direction.send(buf, false).await?;
                    first = false;
                    continue;
                }
                Ok(Filled::End) => {
                    // EOF with the pipe empty: all that came has gone on.
                    direction.end()?;
                    return Ok(Some(()));
                }
                Err(e) if first && refused(&e) => {
                    debug!(error = %e, "splice refused, relaying through buffers");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            first = false;
            // Likewise the pipe holds data here, so EAGAIN is `to`'s send buffer being full.
            while in_pipe > 0 {
                let n = to
                    .async_io(Interest::WRITABLE, || {
                        splice(&pipe.read, None, to, None, in_pipe, FLAGS).map_err(io::Error::from)
                    })
                    .await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                in_pipe -= n;
                moved.fetch_add(n as u64, Relaxed);
                activity.touch();
            }
        }
    }

    /// The errors of a kernel or sandbox without splice for these descriptors: nothing moved.
    fn refused(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error().map(Errno::from_raw_os_error),
            Some(Errno::INVAL | Errno::NOSYS | Errno::PERM)
        )
    }
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
        task::JoinHandle,
        time::{Instant, timeout},
    };

    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

    use super::{linux::*, *};
    use crate::l4::relay::RelayEnd;
    use fulcrum_common::activity::Activity;

    /// Bounds every wait on the relay, so a relay that hangs fails the test instead.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// Two connected loopback sockets.
    async fn connected() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap());
        let (near, (far, _)) = tokio::try_join!(near, listener.accept()).unwrap();
        (near, far)
    }

    /// A client and a server with a relay between them (splicing unless `splice` is false).
    async fn relayed(idle: Duration, splice: bool) -> (TcpStream, TcpStream, JoinHandle<Relayed>) {
        let (client, mut client_side) = connected().await;
        let (mut server_side, server) = connected().await;
        let relay = tokio::spawn(async move {
            let tally = Tally::default();
            relay_with(&mut client_side, &mut server_side, idle, splice, &tally).await
        });
        (client, server, relay)
    }

    async fn finished(relay: JoinHandle<Relayed>) -> Relayed {
        timeout(PATIENCE, relay)
            .await
            .expect("the relay ended")
            .unwrap()
    }

    /// Pumps `bytes` from one end through a single direction and reports its mode.
    async fn pumped(bytes: usize) -> Mode {
        let (mut sender, mut from) = connected().await;
        let (to, mut receiver) = connected().await;
        let pump = tokio::spawn(async move {
            let (activity, moved, one_ended) =
                (Activity::new(), AtomicU64::new(0), AtomicBool::new(false));
            let direction = Direction {
                to: &to,
                may_splice: true,
                activity: &activity,
                moved: &moved,
                one_ended: &one_ended,
                half_closes: None,
            };
            let mode = pump(from.split().0, direction, &mut bytes::BytesMut::new())
                .await
                .unwrap();
            assert_eq!(moved.load(Relaxed), bytes as u64);
            mode
        });
        let send = async move {
            sender.write_all(&vec![7u8; bytes]).await.unwrap();
            sender.shutdown().await.unwrap();
        };
        let receive = async move {
            let mut got = Vec::new();
            receiver.read_to_end(&mut got).await.unwrap();
            assert_eq!(got.len(), bytes);
        };
        tokio::join!(send, receive);
        finished_pump(pump).await
    }

    async fn finished_pump(pump: JoinHandle<Mode>) -> Mode {
        timeout(PATIENCE, pump)
            .await
            .expect("the pump ended")
            .unwrap()
    }

    #[tokio::test]
    async fn a_short_exchange_stays_buffered_and_a_bulk_one_splices() {
        assert_eq!(pumped(100).await, Mode::Buffered, "no pipe for a request");
        assert_eq!(
            pumped(4 << 20).await,
            Mode::Spliced,
            "this kernel splices TCP"
        );
    }

    /// Segments the loopback socket `local` has received from `peer`, as `ss`
    /// reports the kernel's count (tcp_info's segs_in).
    fn segments_received(local: std::net::SocketAddr, peer: std::net::SocketAddr) -> u64 {
        let filter = format!("( sport = :{} and dport = :{} )", local.port(), peer.port());
        let out = std::process::Command::new("ss")
            .args(["-Htin", "state", "all", &filter])
            .output()
            .expect("ss (iproute2) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let count = text
            .split_whitespace()
            .find_map(|field| field.strip_prefix("segs_in:"))
            .unwrap_or_else(|| panic!("no segs_in in ss output: {text:?}"));
        count.parse().unwrap()
    }

    /// Pumps one direction from `from` to `to` until EOF, once `from` has its FIN in.
    async fn pump_closed(mut from: TcpStream, to: &TcpStream) {
        while !from
            .ready(tokio::io::Interest::READABLE)
            .await
            .unwrap()
            .is_read_closed()
        {
            tokio::task::yield_now().await;
        }
        let (activity, moved, one_ended) =
            (Activity::new(), AtomicU64::new(0), AtomicBool::new(false));
        let direction = Direction {
            to,
            may_splice: true,
            activity: &activity,
            moved: &moved,
            one_ended: &one_ended,
            half_closes: None,
        };
        timeout(
            PATIENCE,
            pump(from.split().0, direction, &mut bytes::BytesMut::new()),
        )
        .await
        .expect("the pump ended")
        .unwrap();
    }

    async fn read_all(from: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        timeout(PATIENCE, from.read_to_end(&mut got))
            .await
            .expect("EOF reached the receiver")
            .unwrap();
        got
    }

    #[tokio::test]
    async fn the_last_bytes_leave_with_the_fin_in_one_segment() {
        let (mut sender, from) = connected().await;
        let (to, mut receiver) = connected().await;
        // The answer and its FIN are both in before the pump first reads, as when a server
        // answers and closes at once.
        sender.write_all(b"answer").await.unwrap();
        sender.shutdown().await.unwrap();
        let (local, peer) = (receiver.local_addr().unwrap(), to.local_addr().unwrap());
        let before = segments_received(local, peer);
        pump_closed(from, &to).await;
        assert_eq!(read_all(&mut receiver).await, b"answer");
        assert_eq!(
            segments_received(local, peer) - before,
            1,
            "the answer and the FIN came in one segment"
        );
    }

    /// What one direction relays of `before`, an urgent byte, `after` and the FIN, all in
    /// before it first reads.
    async fn relayed_around_urgent_data(before: &[u8], after: &[u8]) -> Vec<u8> {
        let (mut sender, from) = connected().await;
        let (to, mut receiver) = connected().await;
        sender.write_all(before).await.unwrap();
        socket2::SockRef::from(&sender)
            .send_out_of_band(b"!")
            .unwrap();
        sender.write_all(after).await.unwrap();
        sender.shutdown().await.unwrap();
        pump_closed(from, &to).await;
        read_all(&mut receiver).await
    }

    #[tokio::test]
    async fn bytes_past_urgent_data_are_not_taken_for_the_end() {
        // A read stops short at the urgent mark although the FIN is in: what follows the mark
        // must still go on. The urgent byte itself is out of band, not in the stream, so it is
        // not relayed.
        assert_eq!(
            relayed_around_urgent_data(b"before", b"after").await,
            b"beforeafter"
        );
    }

    // Input: a direction that splices (its first read filled the buffer), then twice urgent
    // data followed by bytes and no FIN, then the FIN. Output: the bytes after each urgent byte
    // arrive, then the end. (Splice stops at the urgent mark and cannot step past it: the
    // direction stalled there for good. The FIN case is the next test.)
    #[tokio::test]
    async fn a_spliced_direction_carries_the_bytes_past_urgent_data() {
        let (mut client, mut server, relay) = relayed(Duration::ZERO, true).await;
        let bulk = vec![7u8; 64 * 1024]; // past the 16 KiB buffer: the direction splices
        client.write_all(&bulk).await.unwrap();
        let mut got = vec![0; bulk.len()];
        timeout(PATIENCE, server.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        for (urgent, after) in [(b"!", &b"after the mark"[..]), (b"?", b"and the end")] {
            socket2::SockRef::from(&client)
                .send_out_of_band(urgent)
                .unwrap();
            client.write_all(after).await.unwrap();
            let mut got = vec![0; after.len()];
            let read = timeout(PATIENCE, server.read_exact(&mut got)).await;
            assert!(read.is_ok(), "the bytes past the mark never came");
            assert_eq!(got, after);
        }
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        timeout(PATIENCE, server.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty());
        drop((client, server));
        finished(relay).await;
    }

    // Input: a spliced direction, then urgent data, bytes and the FIN, all in before the relay
    // reads on. Output: the bytes past the mark arrive before the end. (Splice said 0 at the
    // mark with the FIN in, and the stream ended there.)
    #[tokio::test]
    async fn a_spliced_direction_does_not_end_at_urgent_data() {
        let bulk = vec![7u8; 64 * 1024]; // past the 16 KiB buffer: the direction splices
        let got = relayed_around_urgent_data(&bulk, b"after").await;
        assert_eq!(got.len(), bulk.len() + 5, "the stream ended at the mark");
        assert_eq!(&got[bulk.len()..], b"after");
    }

    #[tokio::test]
    async fn bytes_are_counted_both_ways() {
        let (mut client, mut server, relay) = relayed(Duration::ZERO, true).await;
        client.write_all(b"hello").await.unwrap();
        let mut got = [0; 5];
        server.read_exact(&mut got).await.unwrap();
        server.write_all(b"welcome").await.unwrap();
        client.read_exact(&mut [0; 7]).await.unwrap();
        drop((client, server));
        let done = finished(relay).await;
        assert_eq!(&got, b"hello");
        assert_eq!(done.ended, RelayEnd::Closed);
        assert_eq!((done.client_to_server, done.server_to_client), (5, 7));
    }

    /// Writes `SIZE` pseudo-random bytes from `seed` to `to`, then shuts it down.
    async fn send_stream(mut to: tokio::net::tcp::OwnedWriteHalf, seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut chunk = vec![0; STREAM_CHUNK];
        for _ in 0..SIZE / STREAM_CHUNK {
            rng.fill(&mut chunk);
            to.write_all(&chunk).await.unwrap();
        }
        to.shutdown().await.unwrap();
    }

    /// Reads what [`send_stream`] sent with `seed` and checks it byte for byte, then EOF.
    async fn check_stream(mut from: tokio::net::tcp::OwnedReadHalf, seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut got, mut expected) = (vec![0; STREAM_CHUNK], vec![0; STREAM_CHUNK]);
        for _ in 0..SIZE / STREAM_CHUNK {
            from.read_exact(&mut got).await.unwrap();
            rng.fill(&mut expected);
            assert!(
                got == expected,
                "the relayed stream differs from what was sent"
            );
        }
        assert_eq!(
            from.read(&mut got).await.unwrap(),
            0,
            "EOF after the stream"
        );
    }

    const SIZE: usize = 64 << 20;
    const STREAM_CHUNK: usize = 64 * 1024;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sixty_four_mib_each_way_arrive_intact() {
        let (client, server, relay) = relayed(Duration::ZERO, true).await;
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let streams = tokio::spawn(async move {
            tokio::join!(
                send_stream(client_write, 1),
                check_stream(server_read, 1),
                send_stream(server_write, 2),
                check_stream(client_read, 2),
            )
        });
        timeout(PATIENCE, streams).await.unwrap().unwrap();
        let done = finished(relay).await;
        assert_eq!(done.ended, RelayEnd::Closed);
        assert_eq!(done.client_to_server, SIZE as u64);
        assert_eq!(done.server_to_client, SIZE as u64);
    }

    #[tokio::test]
    async fn the_server_answers_after_the_client_half_closes() {
        let (mut client, mut server, relay) = relayed(Duration::ZERO, true).await;
        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap(); // the client is done sending
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap(); // EOF passed on to the server
        assert_eq!(got, b"request");
        server.write_all(b"response after FIN").await.unwrap();
        server.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"response after FIN");
        let done = finished(relay).await;
        assert_eq!(done.ended, RelayEnd::Closed);
        assert_eq!((done.client_to_server, done.server_to_client), (7, 18));
    }

    // Real time, not a paused clock: the kernel moves the bytes, and a paused clock jumps ahead
    // whenever the runtime waits on it. Hence a short timeout and loose bounds.
    #[tokio::test]
    async fn a_silent_connection_ends_idle() {
        let idle = Duration::from_millis(200);
        let (mut client, mut server, relay) = relayed(idle, true).await;
        client.write_all(b"x").await.unwrap();
        server.read_exact(&mut [0; 1]).await.unwrap();
        let silent_since = Instant::now();
        let done = finished(relay).await;
        assert!(
            silent_since.elapsed() >= idle / 2,
            "not before the idle timeout"
        );
        assert_eq!(done.ended, RelayEnd::Idle);
        assert_eq!(done.client_to_server, 1);
    }

    #[tokio::test]
    async fn a_server_reset_ends_the_relay() {
        let (mut client, mut server, relay) = relayed(Duration::ZERO, true).await;
        client.write_all(b"ping").await.unwrap();
        server.read_exact(&mut [0; 4]).await.unwrap();
        // SO_LINGER zero: close sends a RST rather than a FIN.
        socket2::SockRef::from(&server)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(server);
        // The client stays open: the relay must end on the reset alone.
        let done = finished(relay).await;
        assert!(
            matches!(done.ended, RelayEnd::Error | RelayEnd::Closed),
            "{done:?}"
        );
        drop(client);
    }

    #[tokio::test]
    async fn the_buffered_fallback_relays_the_same() {
        let (mut client, mut server, relay) = relayed(Duration::ZERO, false).await;
        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        server.write_all(b"answer").await.unwrap();
        server.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(
            (got.as_slice(), answer.as_slice()),
            (&b"request"[..], &b"answer"[..])
        );
        let done = finished(relay).await;
        assert_eq!(done.ended, RelayEnd::Closed);
        assert_eq!((done.client_to_server, done.server_to_client), (7, 6));
    }
}
