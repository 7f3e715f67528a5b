//! A one-request HTTP/1.1 client for webhooks: POST a JSON body over TCP or TLS, within a
//! deadline.
//!
//! A fresh connection per alert: receivers hear from us a few times a day, so a pool would only
//! hold connections that the far end has long closed.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::DeliveryError;

/// The most of an error answer's body kept for the log.
const ERROR_BODY: usize = 512;

/// Where a webhook posts: `http://host:port/path?query` or `https://...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as written, for logs.
    pub url: String,
    pub https: bool,
    /// Without IPv6 brackets, for connecting and for TLS's server name.
    pub host: String,
    pub port: u16,
    /// The `Host` header: the URL's authority.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Endpoint {
    /// Parses an `http://` or `https://` URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!("`{url}` must start with `http://` or `https://`"));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{url}` names no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{url}` holds credentials: they would be logged; use a receiver that needs none"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{url}` names no host"));
        }
        Ok(Self {
            url: url.to_owned(),
            https,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

/// POSTs `body` as JSON to `endpoint` (through `tls` for HTTPS); any 2xx is success.
pub(super) async fn post_json(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    body: Bytes,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    tokio::time::timeout(timeout, post(endpoint, tls, body))
        .await
        .unwrap_or(Err(DeliveryError::Timeout(timeout)))
}

async fn post(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    body: Bytes,
) -> Result<(), DeliveryError> {
    let addr = if endpoint.host.contains(':') {
        format!("[{}]:{}", endpoint.host, endpoint.port)
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    };
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|source| DeliveryError::Connect { addr, source })?;
    // Alerts are small; waiting for an ACK before sending the body would only add latency.
    let _ = tcp.set_nodelay(true);
    let request = Request::post(&endpoint.path)
        .header(header::HOST, &endpoint.authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("fulcrum/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))?;
    match (endpoint.https, tls) {
        (true, Some(config)) => {
            let tls_error = |reason: String| DeliveryError::Tls {
                host: endpoint.host.clone(),
                reason,
            };
            let name = rustls_pki_types::ServerName::try_from(endpoint.host.clone())
                .map_err(|e| tls_error(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(|e| tls_error(e.to_string()))?;
            exchange(TokioIo::new(stream), request).await
        }
        (true, None) => Err(DeliveryError::Tls {
            host: endpoint.host.clone(),
            reason: "no TLS client configuration".to_owned(),
        }),
        (false, _) => exchange(TokioIo::new(tcp), request).await,
    }
}

/// Sends `request` on a fresh connection and reads the status.
async fn exchange<T>(io: T, request: Request<Full<Bytes>>) -> Result<(), DeliveryError>
where
    T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    // The connection is driven beside the request; dropping the guard ends it with this call
    // even if the receiver never closes.
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender.send_request(request).await?;
    let status = response.status();
    if status.is_success() {
        drop(driver);
        return Ok(());
    }
    let mut text = Vec::new();
    let mut body = response.into_body();
    while text.len() < ERROR_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    text.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    text.truncate(ERROR_BODY);
    Err(DeliveryError::Status {
        status: status.as_u16(),
        body: String::from_utf8_lossy(&text).trim().to_owned(),
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = Endpoint::parse("http://127.0.0.1:9093/api/v2/alerts").unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port, e.path.as_str()),
            (false, "127.0.0.1", 9093, "/api/v2/alerts")
        );
        let e = Endpoint::parse("https://[::1]/hook?x=1").unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port, e.path.as_str()),
            (true, "::1", 443, "/hook?x=1")
        );
        assert_eq!(e.authority, "[::1]");
        assert_eq!(Endpoint::parse("http://h").unwrap().path, "/");
        for bad in ["ftp://h/", "/api", "http://u:p@h/", "not a url"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
