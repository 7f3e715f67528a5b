//! One client connection speaking HTTP/1: read request heads under `timeout http-request` (408
//! past it, the slowloris guard), refuse malformed ones, run each exchange, and keep the
//! connection for the next request while both sides agree, up to `timeout keep-alive`.

use std::{pin::Pin, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    time::Instant,
};

use super::listener::FrontendName;
use super::{
    exchange::{self, ClientInfo, Ctx, Next},
    h1::{
        conn::{Conn, IoFailure, WaitReadable},
        head, spare,
    },
    log::{Ended, Phase, Record},
};
use crate::{runtime::Runtime, state::counters::FrontendTotal};

/// Serves HTTP/1 requests on `conn` until either side closes, each for the frontend the listener
/// serves at the time (a reload may rename it).
///
/// An `async` block, not an `async fn`: an `async fn` keeps each argument twice in its state,
/// as it came and as the local it is moved into (rust-lang/rust#62958), and a TLS `conn` is
/// 1,256 bytes that every idle client would carry twice.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice"
)]
pub(crate) fn serve_h1<S>(
    rt: Arc<Runtime>,
    frontend: &FrontendName,
    client: ClientInfo,
    mut conn: Conn<S>,
    accepted: Instant,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + WaitReadable,
{
    async move {
        let mut first = true;
        let mut scratch = Vec::new();
        // The timer of every idle wait, set again for each (see `Conn::fill_idle`).
        let mut idle_timer = std::pin::pin!(tokio::time::sleep(std::time::Duration::ZERO));
        loop {
            let table = rt.table.load_full();
            let Some((fe_index, fe)) = frontend.find(&table) else {
                return; // the frontend was removed by a reload
            };
            let name = fe.name.as_str();
            let fe_state = Arc::clone(&table.frontends[fe_index].state);

            // Idle until the next request starts; only a first request owes us anything.
            if conn.buf.is_empty() {
                // An idle keep-alive connection holds no buffers: its head buffer goes back to the
                // thread's spares now, its read buffer in `fill_idle`.
                spare::put_head(std::mem::take(&mut scratch));
                // A first request's whole head is due `http_request` after accept, including any
                // time the listener spent sniffing for an h2c preface.
                let idle = if first {
                    fe.timeout_http_request.saturating_sub(accepted.elapsed())
                } else {
                    fe.timeout_keep_alive
                };
                let read = if first && idle.is_zero() && !fe.timeout_http_request.is_zero() {
                    Err(IoFailure::Timeout)
                } else {
                    tokio::select! {
                        read = conn.fill_idle(idle, idle_timer.as_mut()) => read,
                        () = rt.shutdown.cancelled() => return,
                    }
                };
                match read {
                    Ok(_) => {}
                    Err(IoFailure::Timeout) if first => {
                        let mut log = Record::new(client.peer, name, client.tls, accepted);
                        log.json = table.config.json_log;
                        refuse_head(
                            &mut conn,
                            http::StatusCode::REQUEST_TIMEOUT,
                            Ended::ClientTimeout,
                            &fe_state,
                            &mut log,
                            fe.timeout_client,
                        )
                        .await;
                        return;
                    }
                    Err(_) => return,
                }
            }
            let start = if first { accepted } else { Instant::now() };
            let mut log = Record::new(client.peer, name, client.tls, start);
            log.json = table.config.json_log;
            let deadline = start + fe.timeout_http_request;
            // Whether the head took more than the read that ended the idle wait.
            let mut waited = false;

            let head = loop {
                let buffered = conn.buf.len();
                match head::parse_request(&mut conn.buf) {
                    Ok(Some(head)) => {
                        let len = buffered - conn.buf.len();
                        fe_state.counters.add(FrontendTotal::BytesIn, len as u64);
                        break head;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::debug!(client = %client.peer, %error, "request refused");
                        log.request_line = "<BADREQ>".to_owned();
                        refuse_head(
                            &mut conn,
                            error.status(),
                            Ended::Proxy,
                            &fe_state,
                            &mut log,
                            fe.timeout_client,
                        )
                        .await;
                        return;
                    }
                }
                // Zero `http_request` means no limit, as in HAProxy; `fill` reads zero the same way.
                let remaining = deadline.saturating_duration_since(Instant::now());
                let read = if remaining.is_zero() && !fe.timeout_http_request.is_zero() {
                    Err(IoFailure::Timeout)
                } else {
                    waited = true;
                    conn.fill(remaining).await
                };
                match read {
                    Ok(_) => {}
                    Err(IoFailure::Timeout) => {
                        refuse_head(
                            &mut conn,
                            http::StatusCode::REQUEST_TIMEOUT,
                            Ended::ClientTimeout,
                            &fe_state,
                            &mut log,
                            fe.timeout_client,
                        )
                        .await;
                        return;
                    }
                    Err(_) => {
                        log.end(Ended::ClientAbort, Phase::Request);
                        log.emit();
                        return;
                    }
                }
            };
            // A keep-alive request whose head came whole in one read took no time to receive, at
            // the log's millisecond resolution: no clock read for it.
            log.t_request = Some(if first || waited {
                start.elapsed()
            } else {
                Duration::ZERO
            });
            // The request is routed on the newest table: a reload that happened while this
            // connection sat idle applies to its next request.
            let table = rt.table.load_full();
            let Some((fe_index, fe)) = frontend.find(&table) else {
                // A reload removed this frontend while the head arrived: nothing routes it. A 503
                // tells the client the request was not acted on, so it may send it again, rather
                // than a close it could not tell from a lost response.
                log.end(Ended::Proxy, Phase::Request);
                let unavailable = http::StatusCode::SERVICE_UNAVAILABLE;
                let timeout = fe.timeout_client;
                refuse(
                    &mut conn,
                    unavailable,
                    Some(&head.method),
                    &fe_state,
                    &mut log,
                    timeout,
                )
                .await;
                return;
            };
            log.set_frontend(&fe.name);
            let fe_state = Arc::clone(&table.frontends[fe_index].state);
            if log.enabled {
                log.request_line = format!(
                    "{} {} {}",
                    head.method,
                    head.target(),
                    version_str(head.version)
                );
            }
            fe_state.counters.inc(FrontendTotal::Requests);

            let ctx = Ctx {
                rt: &rt,
                table: &table,
                frontend: fe,
                fe_state: &fe_state,
                client,
            };
            if scratch.capacity() == 0 {
                scratch = spare::take_head();
            }
            // Boxed: the exchange's state lives only while a request is under way, so an idle
            // connection's task stays small.
            let next = Box::pin(exchange::run(&mut conn, head, &ctx, &mut log, &mut scratch)).await;
            log.conn_counts[0] = rt.active.get();
            log.conn_counts[1] = fe_state.counters.sessions.get();
            log.emit();
            match next {
                Next::KeepAlive => first = false,
                Next::Close => return,
                Next::Linger => {
                    Box::pin(exchange::linger(&mut conn, fe.timeout_client)).await;
                    return;
                }
                Next::Tunnel(exchange::Tunnel {
                    mut up,
                    slot,
                    idle,
                    session,
                }) => {
                    // An operator's `shutdown sessions` on the server ends the tunnel too. Boxed,
                    // as the exchange is: a relay's state would make every connection's task
                    // larger, tunnel or not.
                    let relay = slot.unless_shut(tunnel(&mut conn, &mut up.conn, idle));
                    let _ = Box::pin(relay).await;
                    drop((slot, session));
                    return;
                }
            }
        }
    }
}

/// Relays bytes both ways after a 101, starting with what each side already sent, until both
/// sides are done or silent for `idle` (zero: no limit). What each side sent first is written
/// within `idle` too: a peer that reads nothing would otherwise hold the tunnel (and its
/// server slot) before the relay's own idle timer starts.
pub(super) async fn tunnel<A, B>(client: &mut Conn<A>, server: &mut Conn<B>, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    use super::h1::conn::with_timeout;
    if !client.buf.is_empty() {
        let pending = client.buf.split();
        if !matches!(
            with_timeout(idle, server.io.write_all(&pending)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
    if !server.buf.is_empty() {
        let pending = server.buf.split();
        if !matches!(
            with_timeout(idle, client.io.write_all(&pending)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
    let relayed = crate::l4::relay::relay(&mut client.io, &mut server.io, idle).await;
    if relayed.ended == crate::l4::relay::RelayEnd::Idle {
        tracing::debug!(?idle, "tunnel idle: closed");
    }
}

/// Refuses a request whose head was not read (malformed, or too slow to come): one more
/// request error for the frontend, the log ended by `who` in the request phase, then `status`
/// sent as [`refuse`] sends it.
fn refuse_head<'a, S>(
    conn: &'a mut Conn<S>,
    status: http::StatusCode,
    who: Ended,
    fe_state: &'a crate::state::FrontendState,
    log: &'a mut Record,
    timeout: std::time::Duration,
) -> Pin<Box<impl Future<Output = ()> + 'a>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fe_state.counters.inc(FrontendTotal::RequestErrors);
    log.end(who, Phase::Request);
    refuse(conn, status, None, fe_state, log, timeout)
}

/// Sends an error page for a request the proxy refused (made with `method`, when its head was
/// read), then the caller closes. Boxed: its state, at 432 bytes the largest of [`serve_h1`]'s
/// awaits, would otherwise be room that every idle connection keeps, and it is paid for once,
/// as the connection ends.
fn refuse<'a, S>(
    conn: &'a mut Conn<S>,
    status: http::StatusCode,
    method: Option<&'a http::Method>,
    fe_state: &'a crate::state::FrontendState,
    log: &'a mut Record,
    timeout: std::time::Duration,
) -> Pin<Box<impl Future<Output = ()> + 'a>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Box::pin(async move {
        let page = match method {
            Some(method) => super::errors::h1_response_to(method, status),
            // No request head was read: no method to answer to.
            None => super::errors::h1_response(status),
        };
        log.status = Some(status.as_u16());
        fe_state.counters.response(status.as_u16());
        if conn.write_all(&page, timeout).await.is_ok() {
            log.bytes_out = page.len() as u64;
            fe_state
                .counters
                .add(FrontendTotal::BytesOut, log.bytes_out);
            log.emit();
            super::exchange::linger(conn, timeout).await;
            return;
        }
        log.emit();
    })
}

fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}
