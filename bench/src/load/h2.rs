//! The HTTP/2 sender: one connection carrying `streams` senders at once, each with its own
//! schedule, on hyper's client. TLS connections offer only `h2` by ALPN; plain ones speak it with
//! prior knowledge (h2c).
//!
//! When the connection fails, its senders stop, and once all have, the connection is reopened and
//! they carry on where their schedules left off.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::debug;

use super::connect::Connect;
use super::recorder::ErrorKind;
use super::request::RequestSpec;
use super::schedule::{Schedule, Slot};
use super::worker::Worker;

/// What every HTTP/2 sender of a run sends.
#[derive(Debug)]
pub(crate) struct H2 {
    method: Method,
    /// Absolute URIs, one per path: HTTP/2 carries the scheme and authority in every request.
    uris: Vec<Uri>,
    headers: HeaderMap,
    body: Bytes,
    streams: usize,
}

impl H2 {
    pub(crate) fn new(spec: &RequestSpec, tls: bool, streams: usize) -> anyhow::Result<Self> {
        let scheme = if tls { "https" } else { "http" };
        let uris = spec
            .paths
            .iter()
            .map(|path| {
                Uri::builder()
                    .scheme(scheme)
                    .authority(spec.authority.as_str())
                    .path_and_query(path.clone())
                    .build()
            })
            .collect::<Result<_, _>>()?;
        let headers = spec.headers.iter().cloned().collect();
        Ok(Self {
            method: spec.method.clone(),
            uris,
            headers,
            body: spec.body.clone(),
            streams,
        })
    }

    fn request(&self, path: usize) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uris[path].clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// One stream sender's state, kept across reconnections.
#[derive(Debug)]
struct Sender {
    schedule: Schedule,
    /// Index of the next path to request.
    path: usize,
    /// A slot claimed for reconnecting, to be used by the first request on the new connection.
    pending: Option<Slot>,
}

/// Why a stream sender returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Its schedule is over.
    Done,
    /// The connection failed under it.
    Broken,
}

/// Runs connection `index` and its streams until their schedules end.
///
/// The first connection is opened before any request, as for HTTP/1.1. A reconnection claims the
/// next slot of a waiting stream first, so that with the server down the attempts still use up
/// the run (its duration or its request budget), and so that a successful reconnection counts in
/// the latency of the request that waited for it.
pub(crate) async fn send<C: Connect>(
    worker: Rc<Worker>,
    connector: Rc<C>,
    h2: Arc<H2>,
    index: usize,
) {
    let mut waiting: Vec<Sender> = (0..h2.streams)
        .map(|stream| {
            let slot = index * h2.streams + stream;
            Sender {
                schedule: worker.schedule(slot),
                path: slot % h2.uris.len(),
                pending: None,
            }
        })
        .collect();
    let mut reconnecting = false;
    while let Some(first) = waiting.first_mut() {
        let slot = if reconnecting {
            let Some(slot) = first.schedule.next().await else {
                waiting.swap_remove(0);
                continue;
            };
            Some(slot)
        } else {
            None
        };
        reconnecting = true;
        let received = Arc::new(AtomicU64::new(0));
        let sender = match handshake(&worker, &*connector, index, received.clone()).await {
            Ok(sender) => sender,
            Err(error) => {
                match slot {
                    Some(slot) => worker.record(|recorder| {
                        recorder.error(ErrorKind::Connect, slot.measured, &error);
                    }),
                    None => worker.error_now(ErrorKind::Connect, &error),
                }
                worker.pause().await;
                continue;
            }
        };
        first.pending = slot;
        let mut streams = JoinSet::new();
        for state in waiting.drain(..) {
            streams.spawn_local(stream(
                worker.clone(),
                sender.clone(),
                h2.clone(),
                received.clone(),
                state,
            ));
        }
        // Only the streams hold the connection now, so it closes once they are done.
        drop(sender);
        while let Some(joined) = streams.join_next().await {
            // A stream task ends only by returning: the set is never aborted.
            if let Ok((state, Ended::Broken)) = joined {
                waiting.push(state);
            }
        }
    }
}

/// Opens a connection and starts HTTP/2 on it; its reads are counted into `received`.
async fn handshake<C: Connect>(
    worker: &Worker,
    connector: &C,
    index: usize,
    received: Arc<AtomicU64>,
) -> io::Result<SendRequest<Full<Bytes>>> {
    let stream = worker.connect(connector, index).await?;
    let io = TokioIo::new(Counted {
        inner: stream,
        received,
    });
    let handshake = http2::handshake(TokioExecutor::new(), io);
    let (sender, connection) = tokio::time::timeout(worker.timeout(), handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "HTTP/2 handshake timed out"))?
        .map_err(io::Error::other)?;
    tokio::task::spawn_local(async move {
        if let Err(error) = connection.await {
            debug!(%error, "HTTP/2 connection failed");
        }
    });
    Ok(sender)
}

/// One stream sender: requests one at a time until its schedule ends or the connection fails.
async fn stream(
    worker: Rc<Worker>,
    mut sender: SendRequest<Full<Bytes>>,
    h2: Arc<H2>,
    received: Arc<AtomicU64>,
    mut state: Sender,
) -> (Sender, Ended) {
    loop {
        let slot = match state.pending.take() {
            Some(slot) => slot,
            None => match state.schedule.next().await {
                Some(slot) => slot,
                None => return (state, Ended::Done),
            },
        };
        let request = h2.request(state.path);
        state.path = (state.path + 1) % h2.uris.len();
        let outcome = tokio::time::timeout(worker.timeout(), exchange(&mut sender, request)).await;
        let done = Instant::now();
        match outcome {
            Ok(Ok(status)) => {
                // Whatever the connection read since the last answer: this answer's frames,
                // and any framing between answers.
                let bytes = received.swap(0, Ordering::Relaxed);
                worker.record(|recorder| recorder.response(&slot, done, status, bytes));
            }
            Ok(Err(error)) => {
                let kind = if error.is_parse() || error.is_user() {
                    ErrorKind::Protocol
                } else {
                    ErrorKind::Read
                };
                worker.record(|recorder| recorder.error(kind, slot.measured, &error));
                if sender.is_closed() {
                    return (state, Ended::Broken);
                }
            }
            Err(elapsed) => {
                // Dropping the request reset its stream; the connection stays usable.
                worker.record(|recorder| {
                    recorder.error(ErrorKind::Timeout, slot.measured, &elapsed);
                });
            }
        }
    }
}

/// Sends one request and reads its body to the end; returns the status.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<u16, hyper::Error> {
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(status)
}

/// A stream that counts the bytes read from it: hyper does not say how many bytes an HTTP/2
/// answer took on the wire.
#[derive(Debug)]
struct Counted<S> {
    inner: S,
    received: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.received.fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
