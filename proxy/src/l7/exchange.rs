//! One request from an HTTP/1 client: route it, pick a server (persistence, balancing, queue),
//! get a connection (pool, connect, retries, redispatch), send the request, and stream the
//! response back with persistence cookies and hop-by-hop headers handled.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{HeaderMap, HeaderName, Method, StatusCode, Version, header};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    time::Instant,
};

use super::{
    acl::RequestFacts,
    acquire::{Acquired, Attempts, acquire},
    balance::{Algorithm, PickKey},
    cookie::{self, RequestCookie},
    errors,
    h1::{
        body::{self, BodyError, CopyTimeouts},
        conn::{Conn, IoFailure, with_timeout},
        head::{self, BodyKind, RequestHead},
        spare,
    },
    headers::{HopByHop, X_FORWARDED_PROTO, write_forwarded},
    log::{Ended, Phase, Record},
    route::choose_backend,
    select::Slot,
    upstream::{self, Upstream, UpstreamError},
};
use crate::{
    config::{Backend, Frontend, Return},
    runtime::Runtime,
    state::{
        BackendSession, BackendState, FrontendState,
        counters::{FrontendTotal, Total},
    },
    table::{BackendEntry, Table},
};

/// A request body at most this large, already received with its head, is kept until the
/// response arrives so the request can be replayed on a fresh connection if a pooled one fails.
const REPLAY_MAX: u64 = 64 * 1024;

/// The client connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientInfo {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) tls: bool,
}

/// What one exchange needs from its surroundings.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) rt: &'a Runtime,
    pub(crate) table: &'a Table,
    pub(crate) frontend: &'a Frontend,
    pub(crate) fe_state: &'a FrontendState,
    pub(crate) client: ClientInfo,
}

/// What the client connection does after an exchange.
#[derive(Debug)]
pub(crate) enum Next {
    KeepAlive,
    Close,
    /// Close once the client's unread request is drained (see [`linger`]): an answer left part
    /// of it unread.
    Linger,
    /// The server switched protocols: relay bytes both ways from now on, until both sides
    /// have been silent for the duration (zero: no limit).
    Tunnel(Tunnel),
}

/// An upgraded connection (a WebSocket) after its 101, relayed as bytes both ways.
#[derive(Debug)]
pub(crate) struct Tunnel {
    pub(crate) up: Upstream,
    /// The server's slot, held until the tunnel ends.
    pub(crate) slot: Slot,
    /// How long both sides may be silent (zero: no limit).
    pub(crate) idle: Duration,
    /// The backend's session, held for its drop as the slot is: the tunnel counts in the
    /// backend's `scur` until it ends, as in the server's.
    pub(crate) session: BackendSession<Arc<BackendState>>,
}

/// Forwards one request read from `client` and its response. `scratch` is the connection's
/// buffer for serialized heads, reused from one request to the next.
pub(crate) async fn run<S>(
    client: &mut Conn<S>,
    mut head: RequestHead,
    ctx: &Ctx<'_>,
    log: &mut Record,
    scratch: &mut Vec<u8>,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fe = ctx.frontend;
    let facts = RequestFacts {
        method: &head.method,
        path: head.path(),
        query: head.query(),
        headers: &head.headers,
        src: ctx.client.peer.ip(),
        dst_port: ctx.client.local.port(),
        ssl: ctx.client.tls,
    };
    if let Some(answer) = fe.returns.iter().find(|r| r.applies(&facts)) {
        return direct_response(client, &head, answer, ctx, log).await;
    }
    let Some((bcfg, bentry)) = choose_backend(fe, &facts).and_then(|i| ctx.table.backend(i)) else {
        log.end(Ended::Resource, Phase::Request);
        return reply_error(
            client,
            StatusCode::SERVICE_UNAVAILABLE,
            &head.method,
            ctx,
            log,
        )
        .await;
    };
    log.set_backend(&bcfg.name);
    forward(client, &mut head, ctx, bcfg, bentry, log, scratch).await
}

async fn forward<S>(
    client: &mut Conn<S>,
    head: &mut RequestHead,
    ctx: &Ctx<'_>,
    bcfg: &Backend,
    bentry: &BackendEntry,
    log: &mut Record,
    out: &mut Vec<u8>,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fe = ctx.frontend;
    let session = BackendSession::open(&*bentry.state);
    let mut headers = spare::Recycled::new(std::mem::take(&mut head.headers));
    let head = &*head;
    let req_cookie = bentry.request_cookie(bcfg.cookie.as_ref(), &headers);
    log.cookie_req = req_cookie.map_or('-', RequestCookie::log_char);
    let sticky = req_cookie.and_then(RequestCookie::sticky);
    // A clone of a header value shares its bytes; it outlives the cookie rewrite below.
    let hdr_value = match &bcfg.algorithm {
        Algorithm::Hdr(name) => headers.get(name).cloned(),
        _ => None,
    };
    let key = PickKey {
        src: Some(ctx.client.peer.ip()),
        uri_path: Some(head.path()),
        header: hdr_value.as_ref().map(|v| v.as_bytes()),
    };
    if let Some(c) = &bcfg.cookie {
        cookie::rewrite_request(c, &mut headers);
    }
    let hop = HopByHop::of(&headers, head.connection, head.upgrade);
    let forwarded = fe
        .forward_for
        .then_some((ctx.client.peer.ip(), ctx.client.tls));
    let target = head.path_and_query();
    let outgoing = OutgoingRequest::of(head, &target, &headers, &hop, forwarded);
    let replayable = match head.body {
        BodyKind::Empty => true,
        BodyKind::Length(n) => n <= REPLAY_MAX && n <= client.buf.len() as u64,
        BodyKind::Chunked | BodyKind::UntilClose => false,
    };
    let replay_len = match head.body {
        BodyKind::Length(n) if replayable => n as usize,
        _ => 0,
    };
    // A replayable body is in hand already: the client did not wait.
    if !replayable && !send_continue(client, head, fe.timeout_client).await {
        log.end(Ended::ClientAbort, Phase::Request);
        return Next::Close;
    }

    let mut attempts = Attempts::new(key, sticky, replayable);
    // The server answered before it took the whole request body: the rest of the body is not
    // read, so neither connection can carry another request.
    let mut answered_early = false;
    let (slot, mut up, mut response, sent_at) = loop {
        let Acquired { slot, mut up } = match acquire(bcfg, bentry, &mut attempts, log).await {
            Ok(acquired) => acquired,
            Err(status) => return reply_error(client, status, &head.method, ctx, log).await,
        };
        let server = Arc::clone(&slot.server);
        log.conn_counts[2] = bentry.state.counters.sessions.get();
        log.conn_counts[3] = server.counters.sessions.get();
        log.queues = [
            server.counters.queue.get(),
            bentry.state.counters.queue.get(),
        ];
        out.clear();
        outgoing.serialize_into(out, server.addr);
        out.extend_from_slice(&client.buf[..replay_len]);
        let buffered = out.len() as u64;
        // Sends the request, then reads the response head: the phase an operator's `shutdown
        // sessions` cuts is Data until the request is sent, Headers after.
        let mut phase = Phase::Data;
        let exchanging = async {
            // The body bytes read from the client beyond those already buffered.
            let body_read = if replayable {
                up.conn
                    .write_all(out, bcfg.timeout_server)
                    .await
                    .map(|()| 0)
                    .map_err(BodyError::Write)
            } else {
                let timeouts = CopyTimeouts {
                    read: fe.timeout_client,
                    write: bcfg.timeout_server,
                };
                body::forward(client, &mut up.conn.io, out, head.body, timeouts, false).await
            }?;
            let body = replay_len as u64 + body_read;
            count_request_bytes(ctx, &slot, buffered + body_read, body);
            phase = Phase::Headers;
            // The response time (HAProxy's Tr): from the request sent to the response head.
            let sent_at = Instant::now();
            // Interim responses (`103 Early Hints`) go on to an HTTP/1.1 client as they come;
            // an HTTP/1.0 client may not be sent one (RFC 9110 §15.2).
            let interim = if head.version == Version::HTTP_11 {
                upstream::Interim::Return
            } else {
                upstream::Interim::Skip
            };
            let read = loop {
                let read = upstream::read_response_head(
                    &mut up.conn,
                    &head.method,
                    head.upgrade,
                    bcfg.timeout_server,
                    interim,
                )
                .await;
                match read {
                    Ok(response) if is_interim(&response) => {
                        forward_interim(client, &response, out, fe.timeout_client).await?;
                    }
                    read => break read,
                }
            };
            Ok::<_, BodyError>((read, sent_at))
        };
        let Some(exchanged) = slot.unless_shut(exchanging).await else {
            return killed(log, phase);
        };
        let (read, sent_at) = match exchanged {
            Ok(read) => read,
            Err(BodyError::Write(_)) if up.reused && replayable => {
                attempts.fresh_only = true;
                continue;
            }
            Err(BodyError::Write(error)) => {
                if let Some(response) =
                    upstream::read_early_answer(&mut up.conn, &head.method, head.upgrade).await
                {
                    answered_early = true;
                    break (slot, up, response, Instant::now());
                }
                tracing::debug!(server = %server.name, %error, "sending request failed");
                slot.count_resp_error();
                log.end(Ended::ServerAbort, Phase::Headers);
                return reply_error(client, StatusCode::BAD_GATEWAY, &head.method, ctx, log).await;
            }
            Err(BodyError::Read(IoFailure::Timeout)) => {
                log.end(Ended::ClientTimeout, Phase::Data);
                return reply_error(client, StatusCode::REQUEST_TIMEOUT, &head.method, ctx, log)
                    .await;
            }
            Err(BodyError::Read(_)) => {
                log.end(Ended::ClientAbort, Phase::Data);
                return Next::Close;
            }
            Err(BodyError::Malformed(_)) => {
                ctx.fe_state.counters.inc(FrontendTotal::RequestErrors);
                log.end(Ended::Proxy, Phase::Data);
                return reply_error(client, StatusCode::BAD_REQUEST, &head.method, ctx, log).await;
            }
        };
        match read {
            // An HTTP/1.0 client gets a chunked body de-chunked, and a coding besides chunked
            // (`gzip, chunked`) would reach it as content, with no header to say so: 502, as
            // over HTTP/2.
            Ok(response)
                if head.version == Version::HTTP_10
                    && response.body == BodyKind::Chunked
                    && response.foreign_coding =>
            {
                tracing::debug!(server = %server.name, "response in a transfer coding HTTP/1.0 cannot carry");
                slot.count_resp_error_unobserved();
                log.end(Ended::Proxy, Phase::Headers);
                return reply_error(client, StatusCode::BAD_GATEWAY, &head.method, ctx, log).await;
            }
            Ok(response) => break (slot, up, response, sent_at),
            // The server had the whole request: only a method that may be repeated is sent
            // again (RFC 9110, 9.2.2). A POST it may have acted on gets 502, for the client to
            // decide, as HAProxy does.
            Err(UpstreamError::ClosedEarly)
                if up.reused && replayable && head.method.is_idempotent() =>
            {
                attempts.fresh_only = true;
                continue;
            }
            Err(UpstreamError::Timeout) => {
                slot.count_resp_error();
                log.end(Ended::ServerTimeout, Phase::Headers);
                return reply_error(client, StatusCode::GATEWAY_TIMEOUT, &head.method, ctx, log)
                    .await;
            }
            Err(error) => {
                tracing::debug!(server = %server.name, %error, "bad response");
                slot.count_resp_error();
                let who = if matches!(error, UpstreamError::Invalid(_)) {
                    Ended::Proxy
                } else {
                    Ended::ServerAbort
                };
                log.end(who, Phase::Headers);
                return reply_error(client, StatusCode::BAD_GATEWAY, &head.method, ctx, log).await;
            }
        }
    };
    if replay_len > 0 {
        let _ = client.buf.split_to(replay_len);
    }
    let t_response = sent_at.elapsed();
    log.t_response = Some(t_response);
    slot.observe(t_response);

    let server_cfg = &bcfg.servers[slot.index];
    let tunnel = head.upgrade && response.status == StatusCode::SWITCHING_PROTOCOLS;
    // A map only when a header has to be found by name: for the persistence cookie, or for the
    // headers the server's `Connection` header names. Otherwise the fields go out as received.
    let mut res_map = (bcfg.cookie.is_some() || response.connection.names_headers)
        .then(|| head::header_map(std::mem::take(&mut response.fields)));
    let hop = match &mut res_map {
        Some(map) => HopByHop::removed_from(map, response.connection, tunnel),
        None => HopByHop::of(&HeaderMap::new(), response.connection, tunnel),
    };
    if let (Some(c), Some(res_map)) = (&bcfg.cookie, &mut res_map) {
        let had_valid = req_cookie == Some(RequestCookie::Valid(slot.index));
        let outcome = cookie::rewrite_response(c, res_map, &server_cfg.cookie, had_valid);
        log.cookie_res = outcome.log_char();
    }
    let dechunk = head.version == Version::HTTP_10 && response.body == BodyKind::Chunked;
    let keep_alive = head.keep_alive
        && !answered_early
        && response.body != BodyKind::UntilClose
        && !dechunk
        && !tunnel
        && !ctx.rt.shutdown.is_cancelled();
    let status = response.status;
    log.status = Some(status.as_u16());
    out.clear();
    head::write_status_line(out, status);
    let skip = |name: &HeaderName| hop.drops(name) || dechunk && *name == header::TRANSFER_ENCODING;
    match &res_map {
        Some(map) => head::write_headers_except(out, map, skip),
        None => {
            let fields = response.fields.iter().map(|(name, value)| (name, value));
            head::write_fields_except(out, fields, skip);
        }
    }
    out.extend_from_slice(match (tunnel, keep_alive, head.version) {
        (true, _, _) => b"connection: upgrade\r\n",
        (false, false, _) => b"connection: close\r\n",
        (false, true, Version::HTTP_10) => b"connection: keep-alive\r\n",
        (false, true, _) => b"",
    });
    out.extend_from_slice(b"\r\n");
    let head_len = out.len() as u64;
    ctx.fe_state.counters.response(status.as_u16());
    slot.count_response(status.as_u16());

    if tunnel {
        if client.write_all(out, fe.timeout_client).await.is_err() {
            log.end(Ended::ClientAbort, Phase::Data);
            return Next::Close;
        }
        log.bytes_out = head_len;
        return Next::Tunnel(Tunnel {
            up,
            slot,
            idle: tunnel_timeout(fe, bcfg),
            session: session.hold_by(Arc::clone(&bentry.state)),
        });
    }

    let timeouts = CopyTimeouts {
        read: bcfg.timeout_server,
        write: fe.timeout_client,
    };
    let copying = body::forward(
        &mut up.conn,
        &mut client.io,
        out,
        response.body,
        timeouts,
        dechunk,
    );
    let Some(copied) = slot.unless_shut(copying).await else {
        return killed(log, Phase::Data);
    };
    let body_len = match copied {
        Ok(n) => n,
        Err(error) => {
            tracing::debug!(server = %slot.server.name, %error, "response body aborted");
            let who = match error {
                BodyError::Read(IoFailure::Timeout) => Ended::ServerTimeout,
                BodyError::Read(_) | BodyError::Malformed(_) => Ended::ServerAbort,
                BodyError::Write(IoFailure::Timeout) => Ended::ClientTimeout,
                BodyError::Write(_) => Ended::ClientAbort,
            };
            match error {
                BodyError::Malformed(_) => slot.count_resp_error(),
                BodyError::Read(_) => slot.count_resp_error_unobserved(),
                BodyError::Write(_) => {}
            }
            log.end(who, Phase::Data);
            return Next::Close;
        }
    };
    log.bytes_out = head_len + body_len;
    ctx.fe_state
        .counters
        .add(FrontendTotal::BytesOut, log.bytes_out);
    slot.count_bytes(Total::BytesOut, log.bytes_out);
    // An early answer is not (see `upstream::read_early_answer`).
    if response.keep_alive {
        slot.server.pool.put(up.conn);
    }
    if answered_early {
        return Next::Linger;
    }
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// How long, at most, a client's unwanted body is read after an answer that left it unread
/// (nginx's `lingering_time`), and how long a pause in it may be (its `lingering_timeout`).
const LINGER_TIME: Duration = Duration::from_secs(30);
const LINGER_PAUSE: Duration = Duration::from_secs(5);
/// Room made for each read of a lingering client.
const LINGER_READ: usize = 16 * 1024;

/// Ends the client's side after an answer that may have left part of its request unread (an
/// error page, a server's early answer): sends FIN, then reads and drops what the client still
/// sends, until it half-closes, pauses [`LINGER_PAUSE`], or [`LINGER_TIME`] (at most
/// `timeout`) has passed. Closing with unread data resets the connection, and a client still
/// uploading then sees the reset, not the answer: a browser shows "connection reset" instead of
/// the page, as nginx's lingering close and HAProxy's avoid.
///
/// The FIN counts in that time: over TLS it first flushes what rustls holds and its
/// close_notify, which wait for a client that never reads for ever.
pub(super) async fn linger<S>(client: &mut Conn<S>, timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    let total = if timeout.is_zero() {
        LINGER_TIME
    } else {
        timeout.min(LINGER_TIME)
    };
    // The connection's own buffer takes what is dropped: a buffer on the stack would sit in
    // every connection's task, lingering or not, and make an idle one cost 16 KiB more.
    let drain = async {
        if client.io.shutdown().await.is_err() {
            return;
        }
        loop {
            client.buf.clear();
            client.buf.reserve(LINGER_READ);
            match tokio::time::timeout(LINGER_PAUSE, client.io.read_buf(&mut client.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(total, drain).await;
}

/// Sends `100 Continue` if the client waits for it before sending its body; an HTTP/1.0
/// client cannot take an interim response, so its expectation is ignored (RFC 9110, 10.1.1)
/// and the body it sends anyway is read as usual. False if the client is gone.
async fn send_continue<S>(client: &mut Conn<S>, head: &RequestHead, timeout: Duration) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !head.expect_continue || head.version == Version::HTTP_10 || head.body == BodyKind::Empty {
        return true;
    }
    client
        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n", timeout)
        .await
        .is_ok()
}

/// Answers a request with a frontend's `return` rule. The request body, if any, is read and
/// dropped so the connection can carry the next request.
async fn direct_response<S>(
    client: &mut Conn<S>,
    head: &RequestHead,
    answer: &Return,
    ctx: &Ctx<'_>,
    log: &mut Record,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fe = ctx.frontend;
    if head.body != BodyKind::Empty {
        if !send_continue(client, head, fe.timeout_client).await {
            log.end(Ended::ClientAbort, Phase::Request);
            return Next::Close;
        }
        let timeouts = CopyTimeouts {
            read: fe.timeout_client,
            write: fe.timeout_client,
        };
        let drained = body::forward(
            client,
            &mut tokio::io::sink(),
            &mut Vec::new(),
            head.body,
            timeouts,
            false,
        )
        .await;
        match drained {
            Ok(_) => {}
            Err(BodyError::Malformed(_)) => {
                ctx.fe_state.counters.inc(FrontendTotal::RequestErrors);
                log.end(Ended::Proxy, Phase::Data);
                return reply_error(client, StatusCode::BAD_REQUEST, &head.method, ctx, log).await;
            }
            Err(BodyError::Read(IoFailure::Timeout)) => {
                log.end(Ended::ClientTimeout, Phase::Data);
                return reply_error(client, StatusCode::REQUEST_TIMEOUT, &head.method, ctx, log)
                    .await;
            }
            Err(_) => {
                log.end(Ended::ClientAbort, Phase::Data);
                return Next::Close;
            }
        }
    }
    let keep_alive = head.keep_alive && !ctx.rt.shutdown.is_cancelled();
    let mut out = Vec::with_capacity(256 + answer.body.len());
    head::write_status_line(&mut out, answer.status);
    out.extend_from_slice(b"content-type: ");
    out.extend_from_slice(answer.content_type.as_bytes());
    out.extend_from_slice(b"\r\ncache-control: no-cache\r\n");
    // A 204 or 304 has no body and says no length (RFC 9110, 8.6): the config gives it none.
    if !matches!(answer.status.as_u16(), 204 | 304) {
        out.extend_from_slice(format!("content-length: {}\r\n", answer.body.len()).as_bytes());
    }
    match (keep_alive, head.version) {
        (false, _) => out.extend_from_slice(b"connection: close\r\n"),
        (true, Version::HTTP_10) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        (true, _) => {}
    }
    out.extend_from_slice(b"\r\n");
    if head.method != Method::HEAD {
        out.extend_from_slice(&answer.body);
    }
    log.status = Some(answer.status.as_u16());
    ctx.fe_state.counters.response(answer.status.as_u16());
    if client.write_all(&out, fe.timeout_client).await.is_err() {
        log.end(Ended::ClientAbort, Phase::Data);
        return Next::Close;
    }
    log.bytes_out = out.len() as u64;
    ctx.fe_state
        .counters
        .add(FrontendTotal::BytesOut, log.bytes_out);
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// The head of a request as it goes to a server.
#[derive(Debug)]
struct OutgoingRequest<'a> {
    method: &'a Method,
    target: &'a str,
    headers: &'a HeaderMap,
    hop: &'a HopByHop,
    drop_expect: bool,
    /// The client's address and whether it came over TLS, with `forward_for`.
    forwarded: Option<(std::net::IpAddr, bool)>,
    tunnel: bool,
}

impl<'a> OutgoingRequest<'a> {
    /// The request `head` as it goes on: to `target` (its origin form), with `headers` (the
    /// client's, perhaps rewritten) less those `hop` drops.
    fn of(
        head: &'a RequestHead,
        target: &'a str,
        headers: &'a HeaderMap,
        hop: &'a HopByHop,
        forwarded: Option<(std::net::IpAddr, bool)>,
    ) -> Self {
        Self {
            method: &head.method,
            target,
            headers,
            hop,
            // The proxy answers `Expect: 100-continue` itself.
            drop_expect: head.expect_continue,
            forwarded,
            tunnel: head.upgrade,
        }
    }

    /// Always HTTP/1.1 with an origin-form target, hop-by-hop headers left out, and a `Host`
    /// header (the server's address) when an HTTP/1.0 client sent none.
    fn serialize_into(&self, out: &mut Vec<u8>, server: SocketAddr) {
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !self.headers.contains_key(header::HOST) {
            out.extend_from_slice(format!("host: {server}\r\n").as_bytes());
        }
        head::write_headers_except(out, self.headers, |name| {
            self.hop.drops(name)
                || self.drop_expect && *name == header::EXPECT
                || self.forwarded.is_some() && *name == X_FORWARDED_PROTO
        });
        if self.tunnel {
            out.extend_from_slice(b"connection: upgrade\r\n");
        }
        if let Some((client, tls)) = self.forwarded {
            write_forwarded(out, client, tls);
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes the head `head` goes to `server` with, as [`forward`] does when the backend has no
/// persistence cookie: for the fuzz targets and property tests, which check what a server
/// would read of it.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn write_request_to_server(
    head: &RequestHead,
    forwarded: Option<(std::net::IpAddr, bool)>,
    server: SocketAddr,
    out: &mut Vec<u8>,
) {
    let hop = HopByHop::of(&head.headers, head.connection, head.upgrade);
    let target = head.path_and_query();
    OutgoingRequest::of(head, &target, &head.headers, &hop, forwarded).serialize_into(out, server);
}

/// Counts a request sent to a server (HAProxy's `bin`): `sent` bytes, head and body, for the
/// server and its backend; the `body` bytes for the frontend, which counted the head when it
/// parsed it.
fn count_request_bytes(ctx: &Ctx<'_>, slot: &Slot, sent: u64, body: u64) {
    ctx.fe_state.counters.add(FrontendTotal::BytesIn, body);
    slot.count_bytes(Total::BytesIn, sent);
}

/// Ends an exchange an operator's `shutdown sessions` cut: the client connection closes with
/// nothing more sent, as HAProxy kills a stream (`K` in the log).
fn killed(log: &mut Record, phase: Phase) -> Next {
    log.end(Ended::Killed, phase);
    Next::Close
}

/// Whether `response` is an interim one to pass on: a 1xx that does not switch protocols.
fn is_interim(response: &head::ResponseHead) -> bool {
    response.status.is_informational() && response.status != StatusCode::SWITCHING_PROTOCOLS
}

/// Writes an interim response to the client, its hop-by-hop fields left out. A client that
/// does not take it has gone, or stopped reading: the exchange ends as at a client abort.
async fn forward_interim<S>(
    client: &mut Conn<S>,
    response: &head::ResponseHead,
    out: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), BodyError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let map =
        (response.connection.names_headers).then(|| head::header_map(response.fields.clone()));
    let hop = HopByHop::of(
        map.as_ref().unwrap_or(&HeaderMap::new()),
        response.connection,
        false,
    );
    out.clear();
    head::write_status_line(out, response.status);
    let fields = response.fields.iter().map(|(name, value)| (name, value));
    head::write_fields_except(out, fields, |name| hop.drops(name));
    out.extend_from_slice(b"\r\n");
    client
        .write_all(out, timeout)
        .await
        .map_err(|_| BodyError::Read(IoFailure::Closed))
}

/// Answers the client with an error page (to a HEAD, its head only) and closes the connection.
pub(crate) async fn reply_error<S>(
    client: &mut Conn<S>,
    status: StatusCode,
    method: &Method,
    ctx: &Ctx<'_>,
    log: &mut Record,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let page = errors::h1_response_to(method, status);
    log.status = Some(status.as_u16());
    ctx.fe_state.counters.response(status.as_u16());
    if with_timeout(ctx.frontend.timeout_client, client.io.write_all(&page))
        .await
        .is_ok_and(|r| r.is_ok())
    {
        log.bytes_out = page.len() as u64;
        ctx.fe_state
            .counters
            .add(FrontendTotal::BytesOut, log.bytes_out);
        return Next::Linger;
    }
    Next::Close
}

/// How long a tunnel may stay silent both ways: the backend's `timeout.tunnel`, else the larger
/// of the client and server timeouts, as HAProxy falls back on them; zero when either is zero
/// (no limit).
fn tunnel_timeout(fe: &Frontend, bcfg: &Backend) -> Duration {
    bcfg.timeout_tunnel.unwrap_or_else(|| {
        if fe.timeout_client.is_zero() || bcfg.timeout_server.is_zero() {
            Duration::ZERO
        } else {
            fe.timeout_client.max(bcfg.timeout_server)
        }
    })
}
