//! Request and response heads: parsed with `httparse`, then held to the rules that keep a proxy
//! from being smuggled through (RFC 9112 §6.3 and §11.2):
//!
//! - `Transfer-Encoding` together with `Content-Length`: refused (the two could frame the body
//!   differently for us and for the server behind us);
//! - several different `Content-Length` values, or one that is not a number: refused; repeated
//!   identical ones become one field (RFC 9110 §8.6), so the server sees what we framed by;
//! - `Transfer-Encoding` whose last coding is not `chunked`, or on HTTP/1.0: refused (400);
//!   other codings before `chunked`: 501, as the server could not read them either;
//! - obs-fold continuation lines and bare CR: refused by `httparse` itself;
//! - HTTP/1.1 without exactly one `Host`, or a `Host` that is not an authority (`x@admin`, a
//!   path, a space): refused (RFC 9112 §3.2).
//!
//! Every refusal is a 400 (or the 501 above) and the connection is closed after it, so nothing
//! of a smuggled request is read as a next request.
//!
//! A response whose `Transfer-Encoding` ends in `chunked` is framed by its chunks whatever
//! codings come before (`gzip, chunked`); one that does not end in `chunked` runs until the
//! server closes (RFC 9112 §6.3).

use std::{borrow::Cow, mem::MaybeUninit};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};

/// Headers a request or response may carry: HAProxy's `tune.http.maxhdr` default. More gets
/// 431 (RFC 6585), where HAProxy answers 400.
pub(crate) const MAX_HEADERS: usize = 100;
/// Largest request or response head accepted; more gets 431.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    /// Responses only: the body runs until the server closes.
    UntilClose,
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("head too large")]
    TooLarge,
    /// A request line longer than the whole head may be: 414, as HAProxy answers.
    #[error("request line too long")]
    UriTooLong,
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
}

impl HeadError {
    /// The status a client gets for a request refused this way.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

/// A client's request head.
#[derive(Debug, Clone)]
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    /// The request-target as sent: `/path?query`, `*`, or an absolute URI (checked UTF-8).
    pub(crate) target: Bytes,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: BodyKind,
    /// The client wants the connection kept open after this exchange.
    pub(crate) keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` header: a tunnel may follow a 101.
    pub(crate) upgrade: bool,
    /// `Expect: 100-continue`.
    pub(crate) expect_continue: bool,
    pub(crate) connection: ConnectionTokens,
}

impl RequestHead {
    /// The target as text (checked when parsed).
    pub(crate) fn target(&self) -> &str {
        std::str::from_utf8(&self.target).unwrap_or("/")
    }

    /// The path part of the target, without the query string.
    pub(crate) fn path(&self) -> &str {
        let part = self.origin_part();
        match part.split_once('?').map_or(part, |(path, _)| path) {
            "" => "/",
            path => path,
        }
    }

    /// The query string, if any.
    pub(crate) fn query(&self) -> Option<&str> {
        self.origin_part().split_once('?').map(|(_, q)| q)
    }

    /// The path and query of the target, which is what servers are sent: an absolute-form
    /// target loses its scheme and authority, and gets the path `/` if it has none.
    pub(crate) fn path_and_query(&self) -> Cow<'_, str> {
        let part = self.origin_part();
        if part.is_empty() {
            Cow::Borrowed("/")
        } else if part.starts_with('?') {
            Cow::Owned(format!("/{part}"))
        } else {
            Cow::Borrowed(part)
        }
    }

    /// The target without an absolute form's scheme and authority, nor a fragment: `/x?y`, or
    /// `?y` or nothing after an authority without a path; other forms (`*`) as they are.
    fn origin_part(&self) -> &str {
        let target = self.target();
        // The origin form, nearly every request, is checked first: searching it for `://` cost
        // more than the rest of the routing (callgrind).
        let rest = if target.starts_with('/') {
            target
        } else if let Some((_, after_scheme)) = target.split_once("://") {
            // The authority ends at the first `/`, `?` or `#` (RFC 3986, 3.2).
            let end = after_scheme
                .find(['/', '?', '#'])
                .unwrap_or(after_scheme.len());
            &after_scheme[end..]
        } else {
            target
        };
        match rest.bytes().position(|b| b == b'#') {
            Some(end) => &rest[..end],
            None => rest,
        }
    }
}

/// A server's response head.
#[derive(Debug, Clone)]
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    /// The header fields in the order received: most responses go back to an HTTP/1 client
    /// with no field looked up by name, so no [`HeaderMap`] is built unless one is needed
    /// ([`header_map`]).
    pub(crate) fields: Fields,
    pub(crate) body: BodyKind,
    /// The server keeps the connection open after this response.
    pub(crate) keep_alive: bool,
    pub(crate) connection: ConnectionTokens,
    /// `Transfer-Encoding` names a coding besides `chunked` (`gzip, chunked`, or `gzip` read
    /// until close): the body is still coded once de-chunked, which HTTP/1.0 and HTTP/2 clients
    /// have no way to be told.
    pub(crate) foreign_coding: bool,
}

/// Parses a request head from the start of `buf` and takes it off the buffer: `Ok(None)` while
/// incomplete (nothing is taken). Header values are slices of the head's bytes, not copies.
pub(crate) fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    // Left uninitialized: httparse writes only the slots it fills, so a short head does not
    // pay for clearing all of them.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(too_large(buf));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(parse_error_reason(e))),
    };
    if len > MAX_HEAD_BYTES {
        return Err(too_large(buf));
    }
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Malformed("invalid method"))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let target_span = span_of(buf, req.path.unwrap_or_default().as_bytes());
    let spans = header_spans(buf, req.headers);
    let raw = buf.split_to(len).freeze();
    let target = raw.slice(target_span);
    let target_text =
        std::str::from_utf8(&target).map_err(|_| HeadError::Malformed("invalid request target"))?;
    if method == Method::CONNECT {
        return Err(HeadError::NotImplemented("CONNECT"));
    }
    if !(target_text.starts_with('/')
        || target_text == "*" && method == Method::OPTIONS
        || is_absolute(target_text))
    {
        return Err(HeadError::Malformed("invalid request target"));
    }
    let (mut headers, scan) = to_header_map(&raw, &spans)?;
    match scan.host {
        1 => {}
        0 if version == Version::HTTP_10 => {}
        0 => return Err(HeadError::Malformed("missing Host header")),
        _ => return Err(HeadError::Malformed("several Host headers")),
    }
    if scan.bad_host {
        return Err(HeadError::Malformed("invalid Host header"));
    }
    if let (Some(n), true) = (scan.content_length, scan.length_folded) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if !target_text.starts_with('/')
        && let Some(authority) = absolute_authority(target_text)
    {
        // A proxy takes the host from an absolute-form target, whatever Host says (RFC 9112
        // §3.2.2): the ACLs and the server then read the host the request was sent to.
        // Held to the rules of a `Host` value: the server and the ACLs read this one.
        let host = HeaderValue::from_str(authority)
            .ok()
            .filter(|_| !authority.is_empty() && is_authority(authority.as_bytes()))
            .ok_or(HeadError::Malformed("invalid request target"))?;
        headers.insert(header::HOST, host);
    }
    let body = match (scan.coding, scan.content_length) {
        (Some(_), Some(_)) => {
            return Err(HeadError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        (Some(_), None) if version == Version::HTTP_10 => {
            return Err(HeadError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        (Some(Coding::Chunked), None) => BodyKind::Chunked,
        (Some(Coding::CodedThenChunked), None) => {
            return Err(HeadError::NotImplemented(
                "transfer coding other than chunked",
            ));
        }
        (Some(Coding::NotChunkedLast), None) => {
            return Err(HeadError::Malformed(
                "Transfer-Encoding that does not end in chunked",
            ));
        }
        (None, Some(0) | None) => BodyKind::Empty,
        (None, Some(n)) => BodyKind::Length(n),
    };
    let connection = scan.connection;
    let keep_alive = match version {
        Version::HTTP_10 => connection.keep_alive && !connection.close,
        _ => !connection.close,
    };
    Ok(Some(RequestHead {
        method,
        target,
        version,
        headers,
        body,
        keep_alive,
        upgrade: connection.upgrade && scan.upgrade_header,
        expect_continue: scan.expect_continue,
        connection,
    }))
}

/// Parses a response head to a request made with `method` and takes it off the buffer.
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(parse_error_reason(e))),
    };
    let status = StatusCode::from_u16(res.code.unwrap_or_default())
        .map_err(|_| HeadError::Malformed("invalid status code"))?;
    let version = match res.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let spans = header_spans(buf, res.headers);
    let raw = buf.split_to(len).freeze();
    let mut fields = Fields::with_capacity(spans.len());
    let scan = scan_fields(&raw, &spans, |name, value| fields.push((name, value)))?;
    if let (Some(n), true) = (scan.content_length, scan.length_folded) {
        let mut first = true;
        fields.retain_mut(|(name, value)| {
            if *name != header::CONTENT_LENGTH {
                return true;
            }
            *value = HeaderValue::from(n);
            std::mem::replace(&mut first, false)
        });
    }
    let no_body = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // Servers are trusted more than clients, but a response that could be framed two ways is
    // still refused.
    let body = match (scan.coding, scan.content_length) {
        _ if no_body => BodyKind::Empty,
        (Some(_), Some(_)) => {
            return Err(HeadError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        (Some(Coding::Chunked | Coding::CodedThenChunked), None) => BodyKind::Chunked,
        (Some(Coding::NotChunkedLast), None) | (None, None) => BodyKind::UntilClose,
        (None, Some(0)) => BodyKind::Empty,
        (None, Some(n)) => BodyKind::Length(n),
    };
    let connection = scan.connection;
    let keep_alive = body != BodyKind::UntilClose
        && match version {
            Version::HTTP_10 => connection.keep_alive && !connection.close,
            _ => !connection.close,
        };
    Ok(Some(ResponseHead {
        status,
        fields,
        body,
        keep_alive,
        connection,
        foreign_coding: scan.coding.is_some_and(|c| c != Coding::Chunked),
    }))
}

/// Where a header's name and value lie in the buffer it was parsed from.
type Span = (std::ops::Range<usize>, std::ops::Range<usize>);

/// The byte range of `part`, a slice of `buf`, within `buf`.
fn span_of(buf: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

/// Spans of the headers of one message; most messages have few enough to stay on the stack.
type Spans = smallvec::SmallVec<[Span; 24]>;

fn header_spans(buf: &[u8], parsed: &[httparse::Header<'_>]) -> Spans {
    parsed
        .iter()
        .map(|h| (span_of(buf, h.name.as_bytes()), span_of(buf, h.value)))
        .collect()
}

/// What one pass over the headers learns about framing and connection handling, so no header
/// has to be looked up again.
#[derive(Debug, Default)]
struct Scan {
    content_length: Option<u64>,
    /// The length came in more than one value (`3, 3`, or two fields), to be sent on as one.
    length_folded: bool,
    /// What `Transfer-Encoding`, if any, says of the framing.
    coding: Option<Coding>,
    host: usize,
    /// A `Host` value is not an authority (see [`is_authority`]).
    bad_host: bool,
    connection: ConnectionTokens,
    upgrade_header: bool,
    expect_continue: bool,
}

/// What a `Transfer-Encoding` field says of how its message is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    /// `chunked` alone.
    Chunked,
    /// Other codings, then `chunked` (`gzip, chunked`): framed by chunks, the content coded.
    CodedThenChunked,
    /// `chunked` is not the last coding, or comes twice: the length cannot be told.
    NotChunkedLast,
}

impl Coding {
    /// Reads a `Transfer-Encoding` value: a comma-separated list, empty elements allowed
    /// (RFC 9110 §5.6.1), each coding perhaps with parameters.
    fn of(value: &[u8]) -> Coding {
        let codings = value
            .split(|b| *b == b',')
            .map(|coding| coding.trim_ascii())
            .filter(|coding| !coding.is_empty());
        let is_chunked = |coding: &[u8]| coding.eq_ignore_ascii_case(b"chunked");
        let (mut count, mut chunked, mut last_chunked) = (0, 0, false);
        for coding in codings {
            count += 1;
            last_chunked = is_chunked(coding);
            chunked += usize::from(last_chunked);
        }
        match (last_chunked, chunked, count) {
            (true, 1, 1) => Coding::Chunked,
            (true, 1, _) => Coding::CodedThenChunked,
            _ => Coding::NotChunkedLast,
        }
    }
}

/// Whether a `Host` value is an authority (RFC 9112 §3.2, RFC 3986 §3.2): a host, an IP literal
/// in brackets, or nothing, then perhaps `:port`; no user information (`x@admin.example`, which
/// the ACLs and the server would read as different hosts), path, space or control character.
pub(crate) fn is_authority(host: &[u8]) -> bool {
    let (name, port) = match host.iter().rposition(|b| *b == b':') {
        Some(colon) if !host[colon..].contains(&b']') => (&host[..colon], &host[colon + 1..]),
        _ => (host, &b""[..]),
    };
    let reg_name_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(b);
    let name_ok = match name {
        [b'[', literal @ .., b']'] => literal
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b":.vV".contains(b) || reg_name_byte(b)),
        _ => name.iter().all(reg_name_byte),
    };
    name_ok && port.iter().all(u8::is_ascii_digit)
}

/// The refusal of a head longer than [`MAX_HEAD_BYTES`]: 414 when its request line alone is
/// (no line end within the limit), 431 otherwise.
fn too_large(buf: &[u8]) -> HeadError {
    if buf[..buf.len().min(MAX_HEAD_BYTES)].contains(&b'\n') {
        HeadError::TooLarge
    } else {
        HeadError::UriTooLong
    }
}

/// A response's header fields, names checked (and lowercased), values sharing the head's bytes.
pub(crate) type Fields = Vec<(HeaderName, HeaderValue)>;

/// The map of `fields`, as a request's headers are held.
pub(crate) fn header_map(fields: Fields) -> HeaderMap {
    fields.into_iter().collect()
}

/// Builds the header map (values share `raw`'s memory) and scans the headers that frame the
/// message: see [`scan_fields`].
fn to_header_map(raw: &Bytes, spans: &[Span]) -> Result<(HeaderMap, Scan), HeadError> {
    let mut headers = super::spare::take_headers();
    headers.reserve(spans.len());
    let scan = scan_fields(raw, spans, |name, value| {
        headers.append(name, value);
    })?;
    Ok((headers, scan))
}

/// Checks each header field, hands it to `keep` (values share `raw`'s memory), and scans the
/// headers that frame the message (RFC 9112 §6.3): several different `Content-Length` values, a
/// non-numeric one, or a repeated `Transfer-Encoding` are refused; repeated identical lengths
/// fold (RFC 9110 §8.6).
fn scan_fields(
    raw: &Bytes,
    spans: &[Span],
    mut keep: impl FnMut(HeaderName, HeaderValue),
) -> Result<Scan, HeadError> {
    let mut scan = Scan::default();
    for (name_span, value_span) in spans {
        let name = HeaderName::from_bytes(&raw[name_span.clone()])
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(raw.slice(value_span.clone()))
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        if name == header::CONTENT_LENGTH {
            for part in value.as_bytes().split(|b| *b == b',') {
                let n = parse_length(part.trim_ascii())?;
                match scan.content_length {
                    Some(prev) if prev != n => {
                        return Err(HeadError::Malformed("conflicting Content-Length values"));
                    }
                    Some(_) => scan.length_folded = true,
                    None => scan.content_length = Some(n),
                }
            }
        } else if name == header::TRANSFER_ENCODING {
            if scan.coding.is_some() {
                return Err(HeadError::Malformed("several Transfer-Encoding headers"));
            }
            scan.coding = Some(Coding::of(value.as_bytes()));
        } else if name == header::HOST {
            scan.host += 1;
            scan.bad_host |= !is_authority(value.as_bytes());
        } else if name == header::CONNECTION {
            scan.connection.add(value.as_bytes());
        } else if name == header::UPGRADE {
            scan.upgrade_header = true;
        } else if name == header::EXPECT {
            scan.expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        }
        keep(name, value);
    }
    Ok(scan)
}

fn parse_length(digits: &[u8]) -> Result<u64, HeadError> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::Malformed("invalid Content-Length"));
    }
    Ok(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The authority of an absolute-form target, without its user information: `a.example:8080`
/// of `http://u@a.example:8080/x`; `None` for other forms.
fn absolute_authority(target: &str) -> Option<&str> {
    if !is_absolute(target) {
        return None;
    }
    let (_, rest) = target.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    Some(
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host),
    )
}

fn is_absolute(target: &str) -> bool {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn parse_error_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name or obs-fold line",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "bare CR or invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

/// The tokens of the `Connection` headers that matter to a proxy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionTokens {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
    /// A token naming some other header, which is then hop-by-hop too.
    pub(crate) names_headers: bool,
}

impl ConnectionTokens {
    /// Adds the tokens of one `Connection` header value.
    fn add(&mut self, value: &[u8]) {
        for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else if !token.is_empty() {
                self.names_headers = true;
            }
        }
    }
}

/// Every comma-separated token of every `Connection` header.
pub(crate) fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Appends `NAME: value\r\n` for every header.
pub(crate) fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    write_headers_except(out, headers, |_| false);
}

/// Appends `NAME: value\r\n` for every header `skip` does not reject.
pub(crate) fn write_headers_except(
    out: &mut Vec<u8>,
    headers: &HeaderMap,
    skip: impl Fn(&HeaderName) -> bool,
) {
    write_fields_except(out, headers, skip);
}

/// Appends `NAME: value\r\n` for every field `skip` does not reject, in the given order.
pub(crate) fn write_fields_except<'a>(
    out: &mut Vec<u8>,
    fields: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    skip: impl Fn(&HeaderName) -> bool,
) {
    for (name, value) in fields {
        if skip(name) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends a status line for `status` in HTTP/1.1.
pub(crate) fn write_status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    /// Parses `raw` and returns the head with the number of bytes it took.
    fn req(raw: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        let mut buf = BytesMut::from(raw);
        Ok(parse_request(&mut buf)?.map(|head| (head, raw.len() - buf.len())))
    }

    #[test]
    fn parses_a_plain_get() {
        let (head, len) = req("GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(len, 34);
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.path(), "/a/b");
        assert_eq!(head.query(), Some("x=1"));
        assert_eq!(head.body, BodyKind::Empty);
        assert!(head.keep_alive);
    }

    // Input: absolute-form targets with another Host, without one (HTTP/1.0), with user
    // information, without an authority, and with authorities no `Host` may carry (found by
    // the `h1_request` fuzz target). Output: the Host is the target's authority; no authority,
    // or one that is not an authority, is a 400.
    #[test]
    fn an_absolute_target_gives_the_host() {
        let host = |raw: &str| {
            let (head, _) = req(raw).unwrap().unwrap();
            head.headers[header::HOST].to_str().unwrap().to_owned()
        };
        assert_eq!(
            host("GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n"),
            "a.example"
        );
        assert_eq!(
            host("GET HTTP://a.example:81 HTTP/1.0\r\n\r\n"),
            "a.example:81"
        );
        assert_eq!(
            host("GET http://u:p@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            "a.example"
        );
        for bad in [
            "http:///x",
            "http://[/x",
            "http://[::1/x",
            "http://a:b/",
            "http://a b/",
        ] {
            let raw = format!("GET {bad} HTTP/1.0\r\n\r\n");
            let err = req(&raw).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        assert_eq!(host("GET http://[::1]:8/ HTTP/1.0\r\n\r\n"), "[::1]:8");
    }

    #[test]
    fn incomplete_head_waits() {
        assert!(req("GET / HTTP/1.1\r\nHost: h\r\n").unwrap().is_none());
    }

    #[test]
    fn absolute_form_keeps_only_path_for_servers() {
        let (head, _) = req("GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.path_and_query(), "/x?y");
        assert_eq!(head.path(), "/x");
    }

    #[test]
    fn absolute_form_authority_ends_at_a_query_or_fragment() {
        for (target, sent, path, query) in [
            ("http://h?x=/admin", "/?x=/admin", "/", Some("x=/admin")),
            ("http://h?x=1", "/?x=1", "/", Some("x=1")),
            ("http://h", "/", "/", None),
            ("http://h#frag/x", "/", "/", None),
            ("http://h:8080/a/b?c=d#e", "/a/b?c=d", "/a/b", Some("c=d")),
        ] {
            let (head, _) = req(&format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n"))
                .unwrap()
                .unwrap();
            assert_eq!(head.path_and_query(), sent, "{target}");
            assert_eq!(head.path(), path, "{target}");
            assert_eq!(head.query(), query, "{target}");
        }
    }

    #[test]
    fn smuggling_attempts_are_refused() {
        let cases = [
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                "both",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "conflicting",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n",
                "conflicting",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
                "obs-fold",
            ),
            ("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", ""),
            ("GET / HTTP/1.1\r\n\r\n", "missing Host"),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                "several Host",
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.0",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                "several",
            ),
        ];
        for (raw, why) in cases {
            let err = req(raw).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{raw:?}");
            assert!(err.to_string().contains(why), "{raw:?}: {err}");
        }
    }

    // Input: the same length twice, as two fields or as a list, in a request and in a
    // response. Output: framed by it, and one `content-length: 3` field goes on. (Both fields
    // went on, and servers such as nginx answer 400 to two.)
    #[test]
    fn identical_content_lengths_fold_into_one_field() {
        for lengths in [
            "Content-Length: 3\r\nContent-Length: 3",
            "Content-Length: 3, 3",
        ] {
            let (head, _) = req(&format!("POST / HTTP/1.1\r\nHost: h\r\n{lengths}\r\n\r\n"))
                .unwrap()
                .unwrap();
            assert_eq!(head.body, BodyKind::Length(3));
            let sent: Vec<_> = head
                .headers
                .get_all(header::CONTENT_LENGTH)
                .iter()
                .collect();
            assert_eq!(sent, ["3"], "{lengths}");

            let raw = format!("HTTP/1.1 200 OK\r\n{lengths}\r\nX-A: b\r\n\r\n");
            let response = parse_response(&mut BytesMut::from(&raw[..]), &Method::GET)
                .unwrap()
                .unwrap();
            assert_eq!(response.body, BodyKind::Length(3));
            let fields: Vec<_> = (response.fields.iter())
                .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
                .collect();
            assert_eq!(fields, ["content-length: 3", "x-a: b"], "{lengths}");
        }
    }

    // Input: requests whose Transfer-Encoding does not end in chunked, and one with a coding
    // before chunked. Output: 400 for the first (RFC 9112 §6.3: the length cannot be told),
    // 501 for the second (a coding the server may not know); they all used to get 501.
    #[test]
    fn a_request_coding_not_ending_in_chunked_is_refused_and_others_not_implemented() {
        for coding in ["gzip", "chunked, gzip", "chunked, chunked"] {
            let raw = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {coding}\r\n\r\n");
            assert_eq!(
                req(&raw).unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{coding}"
            );
        }
        for coding in ["gzip, chunked", "gzip,chunked"] {
            let raw = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {coding}\r\n\r\n");
            assert_eq!(
                req(&raw).unwrap_err().status(),
                StatusCode::NOT_IMPLEMENTED,
                "{coding}"
            );
        }
        let (head, _) = req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.body, BodyKind::Chunked);
    }

    // Input: Host values that are not an authority, then ones that are. Output: 400 for the
    // first (`x@admin.example` passed, and an ACL on the host read another host than the server);
    // the others pass.
    #[test]
    fn a_host_that_is_not_an_authority_is_refused() {
        for host in [
            "x@admin.example",
            "a b",
            "a/b",
            "a?b",
            "h:80x",
            "[::1",
            "\"h\"",
            "h\\x",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let err = req(&raw).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{host}");
            assert!(err.to_string().contains("invalid Host"), "{host}: {err}");
        }
        for host in [
            "",
            "a.example",
            "a.example:8080",
            "h:",
            "[::1]",
            "[::1]:80",
            "10.0.0.1:80",
            "xn--bcher-kva.example",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(req(&raw).unwrap().is_some(), "{host}");
        }
    }

    // Input: a request line longer than a head may be, then a head as long made of headers.
    // Output: 414 for the first, as HAProxy answers; 431 for the second. (Both got 431.)
    #[test]
    fn a_request_line_too_long_is_414_and_too_many_header_bytes_431() {
        let long_line = format!(
            "GET /{} HTTP/1.1\r\nHost: h\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(
            req(&long_line).unwrap_err().status(),
            StatusCode::URI_TOO_LONG
        );
        let long_header = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-A: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(
            req(&long_header).unwrap_err().status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn keep_alive_rules_by_version() {
        let (h10, _) = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h10.keep_alive);
        let (h10ka, _) = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h10ka.keep_alive);
        let (close, _) = req("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!close.keep_alive);
    }

    #[test]
    fn upgrade_needs_both_headers() {
        let (up, _) =
            req("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(up.upgrade);
        let (no, _) = req("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!no.upgrade);
    }

    #[test]
    fn response_framing() {
        let parse = |raw: &str, m: &Method| {
            parse_response(&mut BytesMut::from(raw), m)
                .unwrap()
                .unwrap()
        };
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", &Method::GET).body,
            BodyKind::Length(4)
        );
        assert_eq!(
            parse(
                "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
                &Method::HEAD
            )
            .body,
            BodyKind::Empty
        );
        assert_eq!(
            parse("HTTP/1.1 204 No Content\r\n\r\n", &Method::GET).body,
            BodyKind::Empty
        );
        let close = parse("HTTP/1.1 200 OK\r\n\r\n", &Method::GET);
        assert_eq!(close.body, BodyKind::UntilClose);
        assert!(!close.keep_alive);
        assert_eq!(
            parse(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                &Method::GET
            )
            .body,
            BodyKind::Chunked
        );
    }

    // Input: responses whose Transfer-Encoding ends in chunked after another coding, and ones
    // where it does not end in chunked. Output: the first are framed by their chunks (they were
    // read until the server closed, holding the exchange until `timeout.server` on a kept-alive
    // connection), the others run until close; all say their coding is foreign.
    #[test]
    fn a_response_coding_ending_in_chunked_is_framed_by_its_chunks() {
        let parse = |coding: &str| {
            let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n");
            parse_response(&mut BytesMut::from(&raw[..]), &Method::GET)
                .unwrap()
                .unwrap()
        };
        for coding in ["gzip, chunked", "gzip,  CHUNKED", "gzip, , chunked"] {
            let response = parse(coding);
            assert_eq!(response.body, BodyKind::Chunked, "{coding}");
            assert!(response.keep_alive, "{coding}");
            assert!(response.foreign_coding, "{coding}");
        }
        for coding in ["gzip", "chunked, gzip", "chunked, chunked"] {
            let response = parse(coding);
            assert_eq!(response.body, BodyKind::UntilClose, "{coding}");
            assert!(response.foreign_coding, "{coding}");
        }
        assert!(!parse("chunked").foreign_coding);
    }

    proptest::proptest! {
        /// Nothing a client or server sends panics the parsers.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_request(&mut BytesMut::from(&bytes[..]));
            let _ = parse_response(&mut BytesMut::from(&bytes[..]), &Method::GET);
        }

        /// Mutations of a valid head never panic either, and a parse that succeeds takes exactly
        /// a head: up to and including the blank line.
        #[test]
        fn mutated_heads_never_panic(at in 0usize..80, byte in proptest::prelude::any::<u8>()) {
            let mut raw = b"POST /a?b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nCookie: a=1\r\n\r\nabc".to_vec();
            let at = at % raw.len();
            raw[at] = byte;
            let mut buf = BytesMut::from(&raw[..]);
            if let Ok(Some(_)) = parse_request(&mut buf) {
                let len = raw.len() - buf.len();
                // A blank line ends it; httparse accepts a bare LF as a line end (RFC 9112 §2.2).
                let head = &raw[..len];
                proptest::prop_assert!(head.ends_with(b"\n\r\n") || head.ends_with(b"\n\n"));
            }
        }
    }
}
