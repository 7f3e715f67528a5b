//! The server side of one exchange: getting a connection (pooled or new, with `timeout connect`
//! and retries) and reading the response head (with `timeout server`).

use std::{io, net::SocketAddr, time::Duration};

use http::Method;
use tokio::net::TcpStream;

use crate::net::server_socket;

use super::h1::{
    conn::{Conn, IoFailure, with_timeout},
    head::{self, HeadError, ResponseHead},
};

/// A connection to a server and whether it came from the pool.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) conn: Conn<TcpStream>,
    pub(crate) reused: bool,
}

/// Why a server exchange failed, which decides the status and whether a retry is safe.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect: {0}")]
    Connect(IoFailure),
    #[error("server closed before responding")]
    ClosedEarly,
    #[error("server timeout")]
    Timeout,
    #[error("invalid response: {0}")]
    Invalid(HeadError),
    #[error(transparent)]
    Io(io::Error),
}

/// Opens a new connection to `addr`.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Upstream, UpstreamError> {
    // Nagle off: heads and small bodies go out in one write each, and Nagle would only delay
    // them.
    let socket = server_socket(addr, None).map_err(|e| UpstreamError::Connect(e.into()))?;
    let stream = with_timeout(timeout, crate::net::connect(socket, addr))
        .await
        .map_err(UpstreamError::Connect)?
        .map_err(|e| UpstreamError::Connect(e.into()))?;
    Ok(Upstream {
        conn: Conn::new(stream),
        reused: false,
    })
}

impl UpstreamError {
    /// Why a connection could not be made, when it was for want of this host's own resources
    /// (see [`crate::net::is_local_failure`]): not the server's failure.
    pub(crate) fn local_failure(&self) -> Option<&io::Error> {
        match self {
            Self::Connect(IoFailure::Io(e)) if crate::net::is_local_failure(e) => Some(e),
            _ => None,
        }
    }
}

/// How long a server whose connection failed while the request body was sent has to have
/// its early answer read.
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(1);

/// The answer of a server whose connection failed while the request (its body) was being sent,
/// if it left one: a server may refuse a body before taking it all (413, 401) and close. Its
/// answer is relayed, as HAProxy does, rather than replaced by a 502. The connection is
/// mid-request either way: the answer says it cannot go back to the pool.
pub(crate) async fn read_early_answer(
    conn: &mut Conn<TcpStream>,
    method: &Method,
    upgrade: bool,
) -> Option<ResponseHead> {
    let mut answer = read_response_head(conn, method, upgrade, EARLY_ANSWER_WAIT, Interim::Skip)
        .await
        .ok()?;
    answer.keep_alive = false;
    Some(answer)
}

/// What [`read_response_head`] does with an interim response (1xx other than 101).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interim {
    /// Reads past it to the final response.
    Skip,
    /// Returns it, for the caller to forward, except a `100 Continue`: the proxy answers a
    /// client's `Expect` itself and does not pass it on, so a server's 100 is for the proxy.
    Return,
}

/// Reads a response head: the final one, or an interim 1xx other than 101 and 100 when
/// `interim` asks for it (`103 Early Hints`, which a proxy must forward, RFC 9110 §15.2). A 101
/// to a request that asked for no upgrade (`upgrade` false) is invalid (RFC 9110 §15.2.2): the
/// server would speak another protocol on a connection that goes back to the pool.
pub(crate) async fn read_response_head(
    conn: &mut Conn<TcpStream>,
    method: &Method,
    upgrade: bool,
    timeout: Duration,
    interim: Interim,
) -> Result<ResponseHead, UpstreamError> {
    let mut received_any = !conn.buf.is_empty();
    loop {
        // A pooled connection's buffer is empty when the request goes out: nothing to parse yet.
        let parsed = if conn.buf.is_empty() {
            Ok(None)
        } else {
            head::parse_response(&mut conn.buf, method)
        };
        match parsed {
            Ok(Some(head)) => {
                if head.status == http::StatusCode::SWITCHING_PROTOCOLS && !upgrade {
                    return Err(UpstreamError::Invalid(HeadError::Malformed(
                        "101 Switching Protocols to a request that asked for no upgrade",
                    )));
                }
                let skipped = match head.status {
                    http::StatusCode::SWITCHING_PROTOCOLS => false,
                    http::StatusCode::CONTINUE => true,
                    status => status.is_informational() && interim == Interim::Skip,
                };
                if skipped {
                    continue;
                }
                return Ok(head);
            }
            Ok(None) => {}
            Err(e) => return Err(UpstreamError::Invalid(e)),
        }
        match conn.fill(timeout).await {
            Ok(_) => received_any = true,
            Err(IoFailure::Closed) if !received_any => return Err(UpstreamError::ClosedEarly),
            Err(IoFailure::Closed) => {
                return Err(UpstreamError::Invalid(HeadError::Malformed(
                    "truncated head",
                )));
            }
            Err(IoFailure::Timeout) => return Err(UpstreamError::Timeout),
            Err(IoFailure::Io(e)) if !received_any && is_reset(&e) => {
                return Err(UpstreamError::ClosedEarly);
            }
            Err(IoFailure::Io(e)) => return Err(UpstreamError::Io(e)),
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}
