//! HTTP/2 from clients (over TLS with ALPN `h2`, or h2c with prior knowledge), served by hyper and
//! forwarded to servers over HTTP/1.1 like every other request: same routing, persistence,
//! balancing, queueing and retries as [`super::exchange`], with the body streamed both ways.

use std::{
    convert::Infallible,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes};
use fulcrum_common::activity::{Activity, Touching};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

use super::{
    acl::RequestFacts,
    acquire::{Acquired, Attempts, acquire},
    balance::{Algorithm, PickKey},
    cookie::{self, RequestCookie},
    errors,
    exchange::ClientInfo,
    h1::{
        body::{self, BodyError, CopyTimeouts},
        conn::{IoFailure, with_timeout},
        head::{self, BodyKind},
    },
    h2_body::{Finish, LengthBody, count_bytes_out},
    h2_idle::{CutMark, ResponseBody, Streams},
    h2_request,
    headers::{HopByHop, add_forwarded, strip_hop_by_hop},
    listener::FrontendName,
    log::{Ended, Phase, Record},
    route::choose_backend,
    upstream::{self, UpstreamError},
};
use crate::{
    runtime::Runtime,
    state::{
        BackendSession, FrontendState,
        counters::{FrontendTotal, Total},
    },
};

/// Serves one HTTP/2 connection until the client closes it or shutdown asks for a graceful end.
pub(crate) async fn serve<S>(rt: Arc<Runtime>, frontend: &FrontendName, client: ClientInfo, io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let frontend = Arc::clone(frontend);
    let shutdown = rt.shutdown.clone();
    let Timeouts {
        first,
        between,
        stall,
    } = Timeouts::of(&rt.table.load(), &frontend);
    let streams = Arc::new(Streams::default());
    let activity = Arc::new(Activity::new());
    let service = {
        let streams = Arc::clone(&streams);
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let rt = Arc::clone(&rt);
            let frontend = Arc::clone(&frontend);
            let open = streams.open();
            // Boxed: hyper moves each stream's future several times (into its stream task,
            // into the task's cell) before and after running it, and the handler's state is
            // kilobytes.
            async move {
                let head = req.method() == http::Method::HEAD;
                let mark = open.cut_mark();
                let mut response = Box::pin(handle(&rt, &frontend, client, req, mark)).await;
                // An error page answers a HEAD with its head alone (RFC 9110, 9.3.2): hyper
                // would send its body, and an h2 client resets a stream whose HEAD response
                // carries DATA. A relayed answer to a HEAD has no body already.
                if head && !response.body().is_end_stream() {
                    *response.body_mut() = Full::new(Bytes::new())
                        .map_err(|never| match never {})
                        .boxed();
                }
                // The stream stays open until hyper drops the body, after its last frame; from
                // now on its body must keep moving (see `Streams::cut_stuck`).
                open.moved();
                Ok::<_, Infallible>(response.map(|body| open.body(body)))
            }
        })
    };
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // Response data buffered per stream ahead of the client's reads: hyper's 400 KiB default
    // let a client that grants huge windows and reads slowly park 100 MiB per connection.
    // Request headers up to the size an HTTP/1 head may have, rather than hyper's 16 KiB: a
    // large cookie that passes over HTTP/1 passes over HTTP/2 too.
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_send_buf_size(H2_SEND_BUFFER)
        .max_header_list_size(head::MAX_HEAD_BYTES as u32);
    let io = Touching::new(io, Arc::clone(&activity));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(client = %client.peer, %error, "h2 connection ended");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        () = streams.idle(first, between) => {
            tracing::debug!(client = %client.peer, "h2 connection idle: closed");
            // GOAWAY, then the end; a client that does not take part gets no longer than this.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(IDLE_CLOSE_GRACE, conn).await;
        }
        () = streams.stalled(&activity, stall) => {
            // Nothing moves: no GOAWAY exchange to wait for either. Its streams end by timeout,
            // and are logged so (`c`), not as their clients' aborts.
            streams.cut_all();
            tracing::debug!(client = %client.peer, ?stall, "h2 connection stalled: closed");
        }
        // Never returns: it cuts stuck streams for as long as the connection lasts.
        () = streams.cut_stuck(stall, client.peer) => {}
    }
}

/// The connection timeouts of an HTTP/2 client connection (see [`super::h2_idle`]).
struct Timeouts {
    /// Idle before the first request: `timeout.http_request`.
    first: Duration,
    /// Idle between requests: `timeout.keep_alive`.
    between: Duration,
    /// No byte either way with a stream held, or no frame of one stream's response: the
    /// larger of `timeout.client` and the longest `timeout.server`; zero (no limit) if any of
    /// them is zero. Past it the connection is closed, or the stream cut.
    stall: Duration,
}

impl Timeouts {
    fn of(table: &crate::table::Table, frontend: &FrontendName) -> Self {
        let Some((_, fe)) = frontend.find(table) else {
            return Self {
                first: Duration::ZERO,
                between: Duration::ZERO,
                stall: Duration::ZERO,
            };
        };
        let servers = table.config.backends.iter().map(|b| b.timeout_server);
        let all = std::iter::once(fe.timeout_client).chain(servers);
        let stall = if all.clone().any(|t| t.is_zero()) {
            Duration::ZERO
        } else {
            all.max().unwrap_or_default()
        };
        Self {
            first: fe.timeout_http_request,
            between: fe.timeout_keep_alive,
            stall,
        }
    }
}

/// How long an idle connection's GOAWAY exchange may take before the socket is closed.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Response data hyper buffers per stream ahead of the client's reads: four frames.
const H2_SEND_BUFFER: usize = 64 * 1024;

async fn handle(
    rt: &Runtime,
    frontend: &FrontendName,
    client: ClientInfo,
    req: Request<Incoming>,
    cut: CutMark,
) -> Response<ResponseBody> {
    let start = Instant::now();
    let table = rt.table.load_full();
    let Some((fe_index, fe)) = frontend.find(&table) else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE);
    };
    let fe_state = &table.frontends[fe_index].state;
    fe_state.counters.inc(FrontendTotal::Requests);
    let mut log = Record::new(client.peer, &fe.name, client.tls, start);
    log.json = table.config.json_log;
    log.written_if_dropped(cut.clone());
    // An error page answers a HEAD with no body (see `serve`), and counts none.
    let head = req.method() == http::Method::HEAD;
    let (parts, body) = req.into_parts();
    if log.enabled {
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        log.request_line = format!("{} {} HTTP/2.0", parts.method, target);
    }
    log.t_request = Some(start.elapsed());
    let mut headers = parts.headers;
    join_cookies(&mut headers);
    let path_and_query = match h2_request::target_and_host(&parts.method, &parts.uri, &mut headers)
    {
        Ok(target) => target,
        Err(status) => {
            fe_state.counters.inc(FrontendTotal::RequestErrors);
            log.end(Ended::Proxy, Phase::Request);
            return finish_error(&mut log, head, status, fe_state);
        }
    };
    let path = parts.uri.path();
    let facts = RequestFacts {
        method: &parts.method,
        path,
        query: parts.uri.query(),
        headers: &headers,
        src: client.peer.ip(),
        dst_port: client.local.port(),
        ssl: client.tls,
    };
    if let Some(answer) = fe.returns.iter().find(|r| r.applies(&facts)) {
        log.status = Some(answer.status.as_u16());
        fe_state.counters.response(answer.status.as_u16());
        let body = if parts.method == http::Method::HEAD {
            Bytes::new()
        } else {
            answer.body.clone()
        };
        log.bytes_out = body.len() as u64;
        fe_state
            .counters
            .add(FrontendTotal::BytesOut, log.bytes_out);
        log.emit();
        let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
        *response.status_mut() = answer.status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, answer.content_type.clone());
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return response;
    }
    let Some((bcfg, bentry)) = choose_backend(fe, &facts).and_then(|i| table.backend(i)) else {
        log.end(Ended::Resource, Phase::Request);
        return finish_error(&mut log, head, StatusCode::SERVICE_UNAVAILABLE, fe_state);
    };
    log.set_backend(&bcfg.name);
    let backend_session = BackendSession::open(Arc::clone(&bentry.state));

    let req_cookie = bentry.request_cookie(bcfg.cookie.as_ref(), &headers);
    log.cookie_req = req_cookie.map_or('-', RequestCookie::log_char);
    let sticky = req_cookie.and_then(RequestCookie::sticky);
    let hdr_value = match &bcfg.algorithm {
        Algorithm::Hdr(name) => headers.get(name).map(|v| v.as_bytes().to_vec()),
        _ => None,
    };
    let key = PickKey {
        src: Some(client.peer.ip()),
        uri_path: Some(path),
        header: hdr_value.as_deref(),
    };

    strip_hop_by_hop(&mut headers, false);
    // As over HTTP/1, a `100-continue` expectation is Fulcrum's to answer, not the server's (whose
    // 100 would be skipped). HTTP/2 lets a client send its body without one; hyper sends none.
    if headers
        .get(header::EXPECT)
        .is_some_and(|e| e.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        headers.remove(header::EXPECT);
    }
    if let Some(c) = &bcfg.cookie {
        cookie::rewrite_request(c, &mut headers);
    }
    if fe.forward_for {
        add_forwarded(&mut headers, client.peer.ip(), client.tls);
    }
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let framing = if body.is_end_stream() {
        // An empty body still says so where it was said, or where the method expects content
        // (RFC 9110 §8.6): servers such as IIS answer 411 to a POST without a length.
        if declared_length == Some(0) || expects_content(&parts.method) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        } else {
            headers.remove(header::CONTENT_LENGTH);
        }
        BodyKind::Empty
    } else if let Some(n) = declared_length {
        // One field, whatever the client repeated (h2 refuses only differing values): servers
        // such as nginx answer 400 to two, as the HTTP/1 path folds them.
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        BodyKind::Length(n)
    } else {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        BodyKind::Chunked
    };
    let replayable = framing == BodyKind::Empty;
    let mut body = Some(body);

    let mut attempts = Attempts::new(key, sticky, replayable);
    let (slot, mut up, response, sent_at) = loop {
        let Acquired { slot, mut up } = match acquire(bcfg, bentry, &mut attempts, &mut log).await {
            Ok(acquired) => acquired,
            Err(status) => return finish_error(&mut log, head, status, fe_state),
        };
        log.conn_counts = [
            rt.active.get(),
            fe_state.counters.sessions.get(),
            bentry.state.counters.sessions.get(),
            slot.server.counters.sessions.get(),
        ];
        log.queues = [
            slot.server.counters.queue.get(),
            bentry.state.counters.queue.get(),
        ];
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(parts.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(path_and_query.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        // HTTP/1.1 requires a Host; without `:authority` or `host`, the server's address, as
        // for an HTTP/1.0 client.
        if !headers.contains_key(header::HOST) {
            out.extend_from_slice(format!("host: {}\r\n", slot.server.addr).as_bytes());
        }
        head::write_headers(&mut out, &headers);
        out.extend_from_slice(b"\r\n");
        // Sends the request, then reads the response head: the phase an operator's `shutdown
        // sessions` or the client's reset cuts is Data until the request is sent, Headers after.
        log.reached(Phase::Data);
        let exchanging = async {
            let sent = match body.take() {
                Some(incoming) if !replayable => {
                    send_body(
                        &mut up.conn.io,
                        out,
                        incoming,
                        framing,
                        bcfg.timeout_server,
                        fe.timeout_client,
                    )
                    .await
                }
                _ => up
                    .conn
                    .write_all(&out, bcfg.timeout_server)
                    .await
                    .map(|()| Sent {
                        total: out.len() as u64,
                        body: 0,
                    })
                    .map_err(SendError::Server),
            }?;
            // HAProxy's `bin`: what went to the server, head and body, for it and its backend;
            // the body for the frontend, whose head came HPACK-coded and is not counted.
            fe_state.counters.add(FrontendTotal::BytesIn, sent.body);
            slot.count_bytes(Total::BytesIn, sent.total);
            log.reached(Phase::Headers);
            // The response time (HAProxy's Tr): from the request sent to the response head.
            let sent_at = Instant::now();
            // Interim responses are not passed on: hyper's server cannot send them.
            let read = upstream::read_response_head(
                &mut up.conn,
                &parts.method,
                false,
                bcfg.timeout_server,
                upstream::Interim::Skip,
            )
            .await;
            Ok::<_, SendError>((read, sent_at))
        };
        let Some(exchanged) = slot.unless_shut(exchanging).await else {
            let phase = log.phase;
            return killed(&mut log, head, phase, fe_state);
        };
        let (read, sent_at) = match exchanged {
            Ok(read) => read,
            Err(SendError::Server(_)) if up.reused && replayable => {
                attempts.fresh_only = true;
                continue;
            }
            Err(SendError::Server(error)) => {
                // As over HTTP/1 (see `exchange`): the rest of the client's body is left
                // unread, and hyper resets its stream once the answer is sent (RFC 9113 §8.1).
                if let Some(response) =
                    upstream::read_early_answer(&mut up.conn, &parts.method, false).await
                {
                    break (slot, up, response, Instant::now());
                }
                tracing::debug!(server = %slot.server.name, %error, "sending request failed");
                slot.count_resp_error();
                log.end(Ended::ServerAbort, Phase::Headers);
                return finish_error(&mut log, head, StatusCode::BAD_GATEWAY, fe_state);
            }
            Err(SendError::Client) => {
                log.end(Ended::ClientAbort, Phase::Data);
                return finish_error(&mut log, head, StatusCode::BAD_REQUEST, fe_state);
            }
            // As over HTTP/1 (termination `cD`).
            Err(SendError::ClientTimeout) => {
                log.end(Ended::ClientTimeout, Phase::Data);
                return finish_error(&mut log, head, StatusCode::REQUEST_TIMEOUT, fe_state);
            }
        };
        match read {
            Ok(response) => break (slot, up, response, sent_at),
            // As over HTTP/1: only a method that may be repeated is sent again.
            Err(UpstreamError::ClosedEarly)
                if up.reused && replayable && parts.method.is_idempotent() =>
            {
                attempts.fresh_only = true;
            }
            Err(UpstreamError::Timeout) => {
                slot.count_resp_error();
                log.end(Ended::ServerTimeout, Phase::Headers);
                return finish_error(&mut log, head, StatusCode::GATEWAY_TIMEOUT, fe_state);
            }
            Err(error) => {
                tracing::debug!(server = %slot.server.name, %error, "bad response");
                slot.count_resp_error();
                // As over HTTP/1: a response the proxy refused is `PH`, not the server's abort.
                let who = if matches!(error, UpstreamError::Invalid(_)) {
                    Ended::Proxy
                } else {
                    Ended::ServerAbort
                };
                log.end(who, Phase::Headers);
                return finish_error(&mut log, head, StatusCode::BAD_GATEWAY, fe_state);
            }
        }
    };
    // HTTP/2 has no transfer codings: a body still coded once de-chunked (`gzip, chunked`)
    // cannot be relayed as the server meant it, and the client gets 502 rather than the coded
    // bytes as content. An early answer (the server refused the body midway) too.
    if response.foreign_coding {
        tracing::debug!(server = %slot.server.name, "response in a transfer coding HTTP/2 cannot carry");
        slot.count_resp_error_unobserved();
        log.end(Ended::Proxy, Phase::Headers);
        return finish_error(&mut log, head, StatusCode::BAD_GATEWAY, fe_state);
    }
    let t_response = sent_at.elapsed();
    log.t_response = Some(t_response);
    log.reached(Phase::Data);
    slot.observe(t_response);

    // HTTP/2 frames the body itself: no hop-by-hop header and no Transfer-Encoding goes on.
    // They are left out as the map is built rather than looked up and removed after, unless
    // the server's `Connection` header names some, which needs the map to find them.
    let mut res_headers = if response.connection.names_headers {
        let mut map = head::header_map(response.fields);
        strip_hop_by_hop(&mut map, false);
        map.remove(header::TRANSFER_ENCODING);
        map
    } else {
        let hop = HopByHop::of(&HeaderMap::new(), response.connection, false);
        response
            .fields
            .into_iter()
            .filter(|(name, _)| !hop.drops(name) && *name != header::TRANSFER_ENCODING)
            .collect()
    };
    if let Some(c) = &bcfg.cookie {
        let had_valid = req_cookie == Some(RequestCookie::Valid(slot.index));
        let outcome = cookie::rewrite_response(
            c,
            &mut res_headers,
            &bcfg.servers[slot.index].cookie,
            had_valid,
        );
        log.cookie_res = outcome.log_char();
    }
    log.status = Some(response.status.as_u16());
    let status = response.status.as_u16();
    fe_state.counters.response(status);
    slot.count_response(status);

    let mut builder = Response::builder().status(response.status);
    if let Some(h) = builder.headers_mut() {
        *h = res_headers;
    }
    // A body of known length is read by hyper straight from the server connection.
    let length = match response.body {
        BodyKind::Empty => Some(0),
        BodyKind::Length(n) => Some(n),
        BodyKind::Chunked | BodyKind::UntilClose => None,
    };
    if let Some(length) = length {
        let finish = Finish {
            slot,
            frontend: Arc::clone(&table.frontends[fe_index].state),
            guard: backend_session,
            log,
            cut,
        };
        let body = LengthBody::new(
            up.conn,
            length,
            response.keep_alive,
            bcfg.timeout_server,
            finish,
        );
        return builder
            .body(body.boxed())
            .unwrap_or_else(|_| error_response(StatusCode::INTERNAL_SERVER_ERROR));
    }

    // Other bodies are relayed by a task of their own through a pipe, so the response can be
    // returned to hyper now; the task gives the connection back to the pool when it is done.
    let (pipe_read, mut pipe_write) = tokio::io::duplex(64 * 1024);
    let aborted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let relay_aborted = Arc::clone(&aborted);
    let server_timeout = bcfg.timeout_server;
    let client_timeout = fe.timeout_client;
    let body_kind = response.body;
    let server_keep_alive = response.keep_alive;
    let frontend = Arc::clone(&table.frontends[fe_index].state);
    // Cancelled when hyper drops the body: the client reset its stream, or it was cut.
    let client_gone = tokio_util::sync::CancellationToken::new();
    let gone = client_gone.clone();
    tokio::spawn(async move {
        let mut out = Vec::new();
        let timeouts = CopyTimeouts {
            read: server_timeout,
            write: client_timeout,
        };
        let copying = body::forward(
            &mut up.conn,
            &mut pipe_write,
            &mut out,
            body_kind,
            timeouts,
            true,
        );
        let relayed = tokio::select! {
            biased;
            relayed = slot.unless_shut(copying) => Some(relayed),
            // A client that went away frees the server connection and the slot at once, as
            // HAProxy closes the server side of an aborted stream, rather than when the server
            // next sends (a long poll, an event stream) or `timeout.server` ends.
            () = gone.cancelled() => None,
        };
        match relayed {
            None if super::log::hard_stopped() => log.end(Ended::Killed, Phase::Data),
            None => log.end(Ended::ClientAbort, Phase::Data),
            Some(None) => {
                log.end(Ended::Killed, Phase::Data);
                relay_aborted.store(true, std::sync::atomic::Ordering::Release);
            }
            Some(Some(Ok(n))) => {
                log.bytes_out = n;
                if server_keep_alive {
                    slot.server.pool.put(up.conn);
                }
            }
            Some(Some(Err(error))) => {
                tracing::debug!(server = %slot.server.name, %error, "h2 response body aborted");
                // As over HTTP/1: a malformed body counts against the server, one it cut short
                // only as an error.
                match error {
                    BodyError::Malformed(_) => slot.count_resp_error(),
                    BodyError::Read(_) => slot.count_resp_error_unobserved(),
                    BodyError::Write(_) => {}
                }
                log.end(body_error_end(&error), Phase::Data);
                // Set before the pipe closes, so the client's stream ends in an error (a
                // RST_STREAM), not in what would look like a complete body.
                relay_aborted.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        // Counted before the pipe closes: a client that has the whole body finds it counted.
        count_bytes_out(&frontend, &slot, &log);
        drop(pipe_write);
        drop(slot);
        drop(backend_session);
        log.emit();
    });
    let body = PipeBody {
        reader: pipe_read,
        buf: bytes::BytesMut::new(),
        aborted,
        _client_gone: client_gone.drop_guard(),
    }
    .boxed();
    builder
        .body(body)
        .unwrap_or_else(|_| error_response(StatusCode::INTERNAL_SERVER_ERROR))
}

/// Which side ended a response body relayed through the pipe: the pipe's reader is the
/// client's stream, gone when the client reset it or its stream was cut for not reading, and
/// slow when the client reads too little.
fn body_error_end(error: &BodyError) -> Ended {
    match error {
        BodyError::Write(IoFailure::Timeout) => Ended::ClientTimeout,
        BodyError::Write(_) => Ended::ClientAbort,
        BodyError::Read(IoFailure::Timeout) => Ended::ServerTimeout,
        BodyError::Read(_) | BodyError::Malformed(_) => Ended::ServerAbort,
    }
}

enum SendError {
    /// The client's body failed (a reset stream, a length it did not keep).
    Client,
    /// The client sent none of its body for `timeout.client`.
    ClientTimeout,
    Server(IoFailure),
}

/// What a request sent to a server came to: all its bytes, and those of the client's body.
struct Sent {
    total: u64,
    body: u64,
}

/// Sends the head in `out` and then the client's body frames, chunk-encoded when the client gave
/// no length.
async fn send_body<W: AsyncWrite + Unpin>(
    server: &mut W,
    mut out: Vec<u8>,
    mut incoming: Incoming,
    framing: BodyKind,
    timeout: std::time::Duration,
    client_timeout: std::time::Duration,
) -> Result<Sent, SendError> {
    use tokio::io::AsyncWriteExt;
    let chunked = framing == BodyKind::Chunked;
    let mut sent = Sent { total: 0, body: 0 };
    loop {
        let frame = match with_timeout(client_timeout, incoming.frame()).await {
            Err(_) => return Err(SendError::ClientTimeout),
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(_))) => return Err(SendError::Client),
        };
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers are not forwarded
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        sent.body += data.remaining() as u64;
        while data.has_remaining() {
            let piece = data.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            data.advance(n);
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        with_timeout(timeout, server.write_all(&out))
            .await
            .map_err(SendError::Server)?
            .map_err(|e| SendError::Server(e.into()))?;
        sent.total += out.len() as u64;
        out.clear();
    }
    // hyper ends the body of a stream the client reset with NO_ERROR as it ends a whole one,
    // and h2 checks a declared length only at END_STREAM. Sent as ended, the short body would
    // leave the server waiting for the rest, which it would read from the next request on the
    // connection (RFC 9113 §8.1: only a server's NO_ERROR keeps a request standing).
    if let BodyKind::Length(n) = framing
        && sent.body != n
    {
        return Err(SendError::Client);
    }
    if chunked {
        // Nothing tells a chunked body's end from a reset but the stream: one yield lets
        // hyper, which looks for a reset whenever this future waits, drop it before the last
        // chunk would say the body is whole.
        tokio::task::yield_now().await;
        out.extend_from_slice(b"0\r\n\r\n");
    }
    with_timeout(timeout, server.write_all(&out))
        .await
        .map_err(SendError::Server)?
        .map_err(|e| SendError::Server(e.into()))?;
    sent.total += out.len() as u64;
    Ok(sent)
}

fn finish_error(
    log: &mut Record,
    head: bool,
    status: StatusCode,
    fe_state: &FrontendState,
) -> Response<ResponseBody> {
    log.status = Some(status.as_u16());
    fe_state.counters.response(status.as_u16());
    let response = error_response(status);
    // The error page, as HTTP/1 counts its own; none goes with the answer to a HEAD.
    if !head {
        log.bytes_out = response.body().size_hint().exact().unwrap_or(0);
    }
    fe_state
        .counters
        .add(FrontendTotal::BytesOut, log.bytes_out);
    log.emit();
    response
}

/// Ends a request whose server's sessions an operator shut down before the response came: the
/// client gets a 503, the log a `K`.
fn killed(
    log: &mut Record,
    head: bool,
    phase: Phase,
    fe_state: &FrontendState,
) -> Response<ResponseBody> {
    log.end(Ended::Killed, phase);
    finish_error(log, head, StatusCode::SERVICE_UNAVAILABLE, fe_state)
}

/// Whether requests with `method` are meant to carry content, so that an empty one is sent with
/// `content-length: 0`, as HTTP/1 clients send it.
fn expects_content(method: &http::Method) -> bool {
    [http::Method::POST, http::Method::PUT, http::Method::PATCH].contains(method)
}

/// Joins the `cookie` fields of an HTTP/2 request into one, `; ` between them, before it goes
/// out as HTTP/1.1 (RFC 9113, 8.2.3): HTTP/2 clients send each cookie as a field of its own,
/// and HTTP/1 servers read only one `Cookie` line.
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let joined = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

fn error_response(status: StatusCode) -> Response<ResponseBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(errors::html_body(status)))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Bytes already read from a connection, served again before the rest of the stream: the h2c
/// preface sniffed by the listener goes back in front of hyper.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
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
}

/// A response body read from the pipe the relay task writes into.
#[derive(Debug)]
struct PipeBody {
    reader: tokio::io::DuplexStream,
    buf: bytes::BytesMut,
    /// The relay failed: end of pipe is an error, not the end of the body.
    aborted: Arc<std::sync::atomic::AtomicBool>,
    /// Tells the relay, once hyper drops the body, that no one reads it any more.
    _client_gone: tokio_util::sync::DropGuard,
}

impl hyper::body::Body for PipeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        this.buf.reserve(16 * 1024);
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.reader), cx, &mut this.buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) if this.aborted.load(std::sync::atomic::Ordering::Acquire) => {
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server aborted the response body",
                ))))
            }
            Poll::Ready(Ok(0)) => Poll::Ready(None),
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze())))),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }
}
