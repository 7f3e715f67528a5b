//! The HTTP/1.1 sender: one connection, one request at a time, with a client written for this
//! job. Requests are encoded once before the run, responses are read into a buffer owned by the
//! connection and their bodies skipped in place, so a request costs a write, a read or two and no
//! allocation, which keeps one core ahead of a proxy doing tens of thousands of requests a second.
//!
//! Keep-alive connections are opened before the first request, as wrk does, and reopened when the
//! server closes them or a request fails; a reopening is then part of the next request's latency.
//! With `--close` every request opens its own connection, and its latency includes the handshake.

mod chunked;
mod reader;
mod request;
mod response;

use std::io;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use self::reader::{ReadError, ResponseReader};
use self::response::Response;
use super::connect::Connect;
use super::recorder::ErrorKind;
use super::request::RequestSpec;
use super::worker::Worker;

/// What every HTTP/1.1 sender of a run sends.
#[derive(Debug)]
pub(crate) struct Http1 {
    /// One encoded request per path; each connection goes round them, starting at its index.
    requests: Vec<Bytes>,
    /// The method is HEAD, so answers have no body.
    head_request: bool,
    keep_alive: bool,
}

impl Http1 {
    pub(crate) fn new(spec: &RequestSpec, keep_alive: bool) -> Self {
        Self {
            requests: request::encode_all(spec, keep_alive),
            head_request: spec.method == Method::HEAD,
            keep_alive,
        }
    }
}

/// Runs connection `index` until its schedule ends.
pub(crate) async fn send<C: Connect>(
    worker: Rc<Worker>,
    connector: Rc<C>,
    http: Arc<Http1>,
    index: usize,
) {
    let mut schedule = worker.schedule(index);
    let mut reader = ResponseReader::new();
    let mut next = index % http.requests.len();
    let mut stream = None;
    if http.keep_alive {
        match worker.connect(&*connector, index).await {
            Ok(connected) => stream = Some(connected),
            Err(error) => worker.error_now(ErrorKind::Connect, &error),
        }
    }
    while let Some(slot) = schedule.next().await {
        let request = &http.requests[next];
        next = (next + 1) % http.requests.len();
        let exchange = exchange(
            &worker,
            &*connector,
            index,
            &mut stream,
            &mut reader,
            request,
            http.head_request,
        );
        let outcome = tokio::time::timeout(worker.timeout(), exchange).await;
        let done = Instant::now();
        match outcome {
            Ok(Ok((response, bytes))) => {
                worker.record(|recorder| recorder.response(&slot, done, response.status, bytes));
                if response.close || !http.keep_alive {
                    stream = None;
                }
            }
            Ok(Err(failure)) => {
                stream = None;
                let kind = failure.kind();
                worker.record(|recorder| recorder.error(kind, slot.measured, &failure));
                if kind == ErrorKind::Connect {
                    worker.pause().await;
                }
            }
            Err(elapsed) => {
                // The answer may still come, but nothing else can be asked on this connection.
                stream = None;
                worker.record(|recorder| {
                    recorder.error(ErrorKind::Timeout, slot.measured, &elapsed);
                });
            }
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("write failed: {0}")]
    Write(io::Error),
    #[error(transparent)]
    Read(ReadError),
}

impl Failure {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Connect(_) => ErrorKind::Connect,
            Self::Write(_) => ErrorKind::Write,
            Self::Read(ReadError::Io(_) | ReadError::Closed) => ErrorKind::Read,
            Self::Read(ReadError::Protocol(_) | ReadError::HeadTooLarge) => ErrorKind::Protocol,
        }
    }
}

/// Sends one request and reads its answer, connecting first if there is no connection.
async fn exchange<C: Connect>(
    worker: &Worker,
    connector: &C,
    index: usize,
    stream: &mut Option<C::Stream>,
    reader: &mut ResponseReader,
    request: &[u8],
    head_request: bool,
) -> Result<(Response, u64), Failure> {
    let stream = match stream {
        Some(stream) => stream,
        None => {
            let connected = worker
                .connect(connector, index)
                .await
                .map_err(Failure::Connect)?;
            reader.clear();
            stream.insert(connected)
        }
    };
    stream.write_all(request).await.map_err(Failure::Write)?;
    // A no-op for TCP; TLS may hold the last record until flushed.
    stream.flush().await.map_err(Failure::Write)?;
    reader
        .read(stream, head_request)
        .await
        .map_err(Failure::Read)
}
