//! The body of a response relayed to an HTTP/2 client, read straight from the server connection
//! when its length is known: no task, no pipe, no copy beyond the read. When the body is complete
//! the connection goes back to the pool, the server slot is freed and the request is logged. An
//! operator's `shutdown sessions` on the server cuts it short.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::{net::TcpStream, time::Sleep};

use super::{
    h1::conn::Conn,
    h2_idle::CutMark,
    log::{Ended, Phase, Record},
    select::Slot,
};
use crate::state::{
    FrontendState,
    counters::{FrontendTotal, Total},
};

/// Counts a response body relayed to an HTTP/2 client (HAProxy's `bout`): the bytes the log
/// gives, for the frontend, the backend and the server. The head went out HPACK-coded and is
/// not counted.
pub(crate) fn count_bytes_out(frontend: &FrontendState, slot: &Slot, log: &Record) {
    frontend
        .counters
        .add(FrontendTotal::BytesOut, log.bytes_out);
    slot.count_bytes(Total::BytesOut, log.bytes_out);
}

/// Largest frame handed to hyper at once.
const MAX_FRAME: usize = 16 * 1024;

/// What is released when the body ends: the server slot, the backend session count and the log
/// record, which is written then.
pub(crate) struct Finish<G> {
    pub(crate) slot: Slot,
    /// The frontend the request came in by, whose `bout` counts the body.
    pub(crate) frontend: Arc<FrontendState>,
    #[allow(
        dead_code,
        reason = "held for its drop, which ends the backend session with the body"
    )]
    pub(crate) guard: G,
    pub(crate) log: Record,
    /// Whether the stream was cut for being stuck, which a drop before the end then logs.
    pub(crate) cut: CutMark,
}

/// A `Content-Length` response body read from the server connection as hyper asks for it.
pub(crate) struct LengthBody<G> {
    conn: Option<Conn<TcpStream>>,
    remaining: u64,
    keep_alive: bool,
    /// `timeout server`, restarted at every read that has to wait.
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Resolves when an operator shuts the server's sessions down.
    shut: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    finish: Option<Finish<G>>,
}

impl<G> std::fmt::Debug for LengthBody<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LengthBody")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl<G> LengthBody<G> {
    pub(crate) fn new(
        conn: Conn<TcpStream>,
        length: u64,
        keep_alive: bool,
        timeout: Duration,
        finish: Finish<G>,
    ) -> Self {
        Self {
            conn: Some(conn),
            remaining: length,
            keep_alive,
            timeout,
            sleep: None,
            shut: Box::pin(finish.slot.shut()),
            finish: Some(finish),
        }
    }

    /// Ends the body: a complete one returns its connection to the pool; `cut` says who cut an
    /// incomplete one short.
    fn end(&mut self, cut: Option<Ended>) {
        let Some(mut finish) = self.finish.take() else {
            return;
        };
        if let Some(conn) = self.conn.take()
            && cut.is_none()
            && self.keep_alive
        {
            finish.slot.server.pool.put(conn);
        }
        if let Some(who) = cut {
            finish.log.end(who, Phase::Data);
        }
        count_bytes_out(&finish.frontend, &finish.slot, &finish.log);
        finish.log.emit();
    }

    fn fail(&mut self, message: &'static str) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.cut(Ended::ServerAbort, message)
    }

    fn cut(
        &mut self,
        who: Ended,
        message: &'static str,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.end(Some(who));
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            message,
        ))))
    }
}

impl<G> Drop for LengthBody<G> {
    fn drop(&mut self) {
        // An empty body (HEAD, 204, 304, length 0) is complete: hyper ends the stream without
        // polling it. Any other dropped before its end means the client went away, or read
        // nothing of it for too long (the stream was cut): the connection is mid-body, so it is
        // not reused.
        let timed_out = self.finish.as_ref().is_some_and(|f| f.cut.is_cut());
        let cut = (self.remaining > 0).then_some(if super::log::hard_stopped() {
            Ended::Killed
        } else if timed_out {
            Ended::ClientTimeout
        } else {
            Ended::ClientAbort
        });
        self.end(cut);
    }
}

impl<G: Unpin> Body for LengthBody<G> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            this.end(None);
            return Poll::Ready(None);
        }
        if this.finish.is_some() && this.shut.as_mut().poll(cx).is_ready() {
            return this.cut(Ended::Killed, "the server's sessions were shut down");
        }
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if conn.buf.is_empty() {
            conn.buf.reserve(MAX_FRAME);
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf) {
                Poll::Ready(Ok(0)) => return this.fail("server closed before the end of the body"),
                Poll::Ready(Ok(_)) => this.sleep = None,
                Poll::Ready(Err(_)) => return this.fail("reading the server's body failed"),
                Poll::Pending => {
                    if this.timeout.is_zero() {
                        return Poll::Pending;
                    }
                    let timeout = this.timeout;
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        return this.fail("server timeout in the body");
                    }
                    return Poll::Pending;
                }
            }
        }
        let take = (this.remaining.min(conn.buf.len() as u64) as usize).min(MAX_FRAME);
        let data = conn.buf.split_to(take).freeze();
        this.remaining -= take as u64;
        if let Some(finish) = this.finish.as_mut() {
            finish.log.bytes_out += take as u64;
        }
        if this.remaining == 0 {
            this.end(None);
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}
