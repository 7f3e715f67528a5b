//! Answering one request: recording it, applying the special paths, echoing, and upgrades.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HeaderName, HeaderValue, UPGRADE};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tracing::debug;

use super::files::{self, Files};
use super::log::{REQUEST_LOG_CAPACITY, RecordedRequest, RequestLog};
use super::route::{Route, final_status};
use super::server::Tasks;
use super::{BODY_FILLER, OriginOptions};

const X_SERVER: HeaderName = HeaderName::from_static("x-server");

/// What every connection of one origin shares: its options in ready-to-send form, and its log.
#[derive(Debug)]
pub(super) struct Shared {
    name: String,
    server_header: HeaderValue,
    /// The default body, built once; each answer sends a cheap reference-counted slice of it.
    body: Bytes,
    echo: bool,
    delay: Duration,
    keep_alive: bool,
    status: StatusCode,
    files: Option<Files>,
    log: RequestLog,
}

impl Shared {
    pub(super) fn new(options: OriginOptions) -> io::Result<Self> {
        let server_header = HeaderValue::from_str(&options.name).map_err(|_| {
            invalid_input(format!(
                "origin name {:?} is not a valid header value",
                options.name
            ))
        })?;
        let status = final_status(options.status).ok_or_else(|| {
            invalid_input(format!(
                "origin status {} is not from 200 to 599",
                options.status
            ))
        })?;
        Ok(Self {
            body: filled_body(&options.name, options.body_size),
            name: options.name,
            server_header,
            echo: options.echo,
            delay: options.delay,
            keep_alive: options.keep_alive,
            status,
            files: options.files.map(Files::new),
            log: RequestLog::new(REQUEST_LOG_CAPACITY),
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    pub(super) fn log(&self) -> &RequestLog {
        &self.log
    }

    /// The name padded to `size` bytes; a prefix of the prebuilt body when it is long enough.
    fn body_of_size(&self, size: usize) -> Bytes {
        if size <= self.body.len() {
            self.body.slice(..size)
        } else {
            filled_body(&self.name, size)
        }
    }

    fn response(&self, status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
        // hyper would drop a body on these statuses anyway, but would still count it in
        // Content-Length, which is wrong for them.
        let body = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Bytes::new()
        } else {
            body
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(X_SERVER, self.server_header.clone());
        response
    }
}

/// Answers one request. hyper sets `Content-Length` from the full body and, with keep-alive off,
/// adds `Connection: close` and closes after the answer.
pub(super) async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    tasks: Tasks,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if wants_upgrade(&request) {
        return Ok(upgrade(&shared, peer, &tasks, request).await);
    }
    if let Some(store) = &shared.files
        && let Some(name) = request.uri().path().strip_prefix(files::PREFIX)
    {
        let name = name.to_owned();
        let (parts, body) = request.into_parts();
        let outcome = store.handle(&parts.method, &name, body).await?;
        shared.log.record(RecordedRequest {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body_len: outcome.body_len,
            peer,
        });
        return Ok(shared.response(outcome.status, outcome.body));
    }
    let route = Route::parse(request.uri().path());
    let (parts, body) = request.into_parts();
    // The body is always read to its end: the request is only recorded complete, and an unread
    // body would stop hyper from reusing the connection.
    let (body_len, echoed) = if shared.echo {
        let body = body.collect().await?.to_bytes();
        (body.len(), Some(body))
    } else {
        (drain(body).await?, None)
    };
    shared.log.record(RecordedRequest {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body_len,
        peer,
    });

    let (status, delay, size) = match route {
        Route::Default => (shared.status, shared.delay, shared.body.len()),
        Route::Status(status) => (status, shared.delay, shared.body.len()),
        Route::Delay(delay) => (shared.status, delay, shared.body.len()),
        Route::Size(size) => (shared.status, shared.delay, size),
        Route::Invalid(reason) => {
            let body = Bytes::from_static(reason.as_bytes());
            return Ok(shared.response(StatusCode::BAD_REQUEST, body));
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let body = echoed.unwrap_or_else(|| shared.body_of_size(size));
    Ok(shared.response(status, body))
}

/// Answers an Upgrade with 101 and echoes the raw bytes of the upgraded connection, whatever the
/// protocol asked for: a test only needs to see that bytes pass through the proxy both ways.
async fn upgrade(
    shared: &Shared,
    peer: SocketAddr,
    tasks: &Tasks,
    mut request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let upgraded = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    let protocol = parts.headers.get(UPGRADE).cloned();
    shared.log.record(RecordedRequest {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body_len: 0,
        peer,
    });
    tasks.spawn(async move {
        // Resolves once hyper has written the 101 and handed over the connection.
        match upgraded.await {
            Ok(upgraded) => echo(upgraded, peer).await,
            Err(error) => debug!(%peer, %error, "origin upgrade failed"),
        }
    });
    if !shared.delay.is_zero() {
        tokio::time::sleep(shared.delay).await;
    }

    let mut response = shared.response(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(protocol) = protocol {
        headers.insert(UPGRADE, protocol);
    }
    response
}

async fn echo(upgraded: Upgraded, peer: SocketAddr) {
    let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
    if let Err(error) = tokio::io::copy(&mut reader, &mut writer).await {
        debug!(%peer, %error, "origin upgraded echo failed");
        return;
    }
    // The client closed its side; close ours so it sees the end of the echo too.
    if let Err(error) = writer.shutdown().await {
        debug!(%peer, %error, "origin upgraded shutdown failed");
    }
}

/// HTTP/1.1 `Connection: upgrade` (a token in a comma-separated list) together with `Upgrade`.
fn wants_upgrade<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    request.version() == Version::HTTP_11
        && headers.contains_key(UPGRADE)
        && headers.get_all(CONNECTION).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Reads a body to its end, keeping only its length.
async fn drain(mut body: Incoming) -> Result<usize, hyper::Error> {
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            len += data.len();
        }
    }
    Ok(len)
}

fn filled_body(name: &str, size: usize) -> Bytes {
    let name = &name.as_bytes()[..name.len().min(size)];
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(name);
    body.resize(size, BODY_FILLER);
    Bytes::from(body)
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::filled_body;

    #[test]
    fn body_is_name_then_filler() {
        assert_eq!(&filled_body("s1", 5)[..], b"s1\n\n\n");
        assert_eq!(&filled_body("server", 3)[..], b"ser");
        assert!(filled_body("s1", 0).is_empty());
    }
}
