//! The HTTP/1 steps a client's or a server's bytes go through, callable without sockets, for the
//! fuzz targets in `proxy/fuzz`: a request head parsed and written out again for the server, a
//! response head parsed, a body copied with its framing checked.
//!
//! Compiled with the `fuzzing` feature, and for the property tests that check the same
//! [`invariants`] in the normal test suite. The functions here run the code the proxy runs and
//! turn its crate-private types into plain ones; [`invariants`] says what must hold of them.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use bytes::BytesMut;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

pub mod invariants;
#[cfg(test)]
mod tests;

use super::{
    exchange,
    h1::{
        body::{self, CopyTimeouts},
        conn::Conn,
        head::{self, BodyKind},
    },
};

/// The address a request goes to when its client sent no `Host` (HTTP/1.0).
const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// How a message's body is delimited, as the proxy reads and forwards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

impl From<BodyKind> for Framing {
    fn from(kind: BodyKind) -> Self {
        match kind {
            BodyKind::Empty => Self::Empty,
            BodyKind::Length(n) => Self::Length(n),
            BodyKind::Chunked => Self::Chunked,
            BodyKind::UntilClose => Self::UntilClose,
        }
    }
}

impl From<Framing> for BodyKind {
    fn from(framing: Framing) -> Self {
        match framing {
            Framing::Empty => Self::Empty,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::Chunked,
            Framing::UntilClose => Self::UntilClose,
        }
    }
}

/// A client's request head as the proxy took it, and the head it sends the server.
#[derive(Debug)]
pub struct ForwardedRequest {
    /// Bytes of the client's input the head took.
    pub head_len: usize,
    pub method: String,
    /// The target the server is sent (origin form).
    pub target: String,
    /// How the proxy reads the body from the client and sends it on.
    pub body: Framing,
    pub keep_alive: bool,
    /// The head written for the server.
    pub to_server: Vec<u8>,
}

/// Parses a request head from the start of `input` as a client connection does, then writes
/// the head the server gets (with `X-Forwarded-For` when `forward_for`). `Ok(None)`: the head
/// is incomplete. `Err`: the status the client gets.
pub fn forward_request(input: &[u8], forward_for: bool) -> Result<Option<ForwardedRequest>, u16> {
    let mut buf = BytesMut::from(input);
    let Some(head) = head::parse_request(&mut buf).map_err(|e| e.status().as_u16())? else {
        return Ok(None);
    };
    let forwarded = forward_for.then_some((IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), false));
    let mut to_server = Vec::new();
    exchange::write_request_to_server(&head, forwarded, SERVER, &mut to_server);
    Ok(Some(ForwardedRequest {
        head_len: input.len() - buf.len(),
        method: head.method.to_string(),
        target: head.path_and_query().into_owned(),
        body: head.body.into(),
        keep_alive: head.keep_alive,
        to_server,
    }))
}

/// A server's response head as the proxy took it.
#[derive(Debug)]
pub struct ParsedResponse {
    /// Bytes of the server's input the head took.
    pub head_len: usize,
    pub status: u16,
    pub body: Framing,
    pub keep_alive: bool,
}

/// Parses a response head to a request made with `method`, as a server connection does:
/// `None` while incomplete, or when refused (the client then gets a 502).
pub fn parse_response(input: &[u8], method: &str) -> Option<ParsedResponse> {
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let mut buf = BytesMut::from(input);
    let response = head::parse_response(&mut buf, &method).ok()??;
    Some(ParsedResponse {
        head_len: input.len() - buf.len(),
        status: response.status.as_u16(),
        body: response.body.into(),
        keep_alive: response.keep_alive,
    })
}

/// What a body copy did.
#[derive(Debug)]
pub struct CopiedBody {
    /// The body bytes read, or why the copy stopped.
    pub result: Result<u64, String>,
    /// What was written to the other side.
    pub written: Vec<u8>,
    /// What was left unread of the input: the start of the next message.
    pub rest: Vec<u8>,
}

/// Copies a body framed as `framing` from `input` (then end of stream), as the proxy copies one
/// between a client and a server; with `dechunk`, a chunked body goes out as bare data.
pub fn copy_body(input: &[u8], framing: Framing, dechunk: bool) -> CopiedBody {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|rt| rt.block_on(copy(input, framing, dechunk)))
}

async fn copy(input: &[u8], framing: Framing, dechunk: bool) -> CopiedBody {
    let capacity = input.len().max(1) * 2 + 64;
    let (mut feed, src) = duplex(capacity);
    // The pipe holds all of it: the write completes at once.
    let _ = feed.write_all(input).await;
    drop(feed);
    let mut src = Conn::new(src);
    // Re-chunking can at most double a body of one-byte chunks, plus the size lines.
    let (mut dst, mut sink) = duplex(capacity * 4);
    let timeouts = CopyTimeouts {
        read: Duration::from_secs(60),
        write: Duration::from_secs(60),
    };
    let mut out = Vec::new();
    let result = body::forward(
        &mut src,
        &mut dst,
        &mut out,
        framing.into(),
        timeouts,
        dechunk,
    )
    .await
    .map_err(|e| e.to_string());
    drop(dst);
    let mut written = Vec::new();
    let _ = sink.read_to_end(&mut written).await;
    let mut rest = src.buf.to_vec();
    let _ = src.io.read_to_end(&mut rest).await;
    CopiedBody {
        result,
        written,
        rest,
    }
}
