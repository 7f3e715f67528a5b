//! What must hold of whatever bytes reach the HTTP/1 steps, checked against a reading of the
//! RFCs written here apart from the proxy's own: the fuzz targets and the property tests both
//! call these, and a broken invariant comes back as a message saying which.
//!
//! The one that matters most is agreement on framing. A proxy that reads a request's body one
//! way while the server behind it reads the forwarded head another way lets a client smuggle a
//! second request past every rule (RFC 9112 §11.2).

use super::{Framing, copy_body, forward_request, parse_response};
use crate::l7::h1::head::{MAX_HEAD_BYTES, MAX_HEADERS};

/// A failed invariant: what went wrong, with the input in view.
pub type Broken = String;

/// Status codes a refused request head may get.
const REFUSALS: [u16; 4] = [400, 414, 431, 501];

/// A request head from a client: refused with a 4xx/501, or taken whole (up to its blank line)
/// and forwarded as a head that a server reads with the same method, target and framing, with
/// exactly one `Host` and no hop-by-hop field, and that the proxy itself would take unchanged.
pub fn check_request(input: &[u8], forward_for: bool) -> Result<(), Broken> {
    let request = match forward_request(input, forward_for) {
        Ok(Some(request)) => request,
        Ok(None) => return Ok(()),
        Err(status) if REFUSALS.contains(&status) => return Ok(()),
        Err(status) => return Err(format!("refused with status {status}")),
    };
    ends_at_blank_line(&input[..request.head_len])?;
    let to_server = &request.to_server;
    let shown = || String::from_utf8_lossy(to_server).into_owned();
    let mut slots = [httparse::EMPTY_HEADER; 256];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(to_server) {
        Ok(httparse::Status::Complete(len)) if len == to_server.len() => {}
        other => return Err(format!("the server cannot read {:?}: {other:?}", shown())),
    }
    if parsed.method != Some(request.method.as_str())
        || parsed.path != Some(request.target.as_str())
        || parsed.version != Some(1)
    {
        return Err(format!(
            "request line changed: {:?} from {request:?}",
            shown()
        ));
    }
    if !(request.target.starts_with('/') || request.target == "*") {
        return Err(format!("target not in origin form: {:?}", request.target));
    }
    let fields: Vec<(&str, &[u8])> = parsed.headers.iter().map(|h| (h.name, h.value)).collect();
    let hosts = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"));
    if hosts.count() != 1 {
        return Err(format!("not exactly one Host: {:?}", shown()));
    }
    for (name, value) in &fields {
        let hop_by_hop = ["keep-alive", "proxy-connection", "te"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
            || name.eq_ignore_ascii_case("connection") && !value.eq_ignore_ascii_case(b"upgrade");
        if hop_by_hop {
            return Err(format!("hop-by-hop field {name} forwarded: {:?}", shown()));
        }
    }
    let server_reads = request_framing(&fields).map_err(|e| format!("{e}: {:?}", shown()))?;
    if server_reads != request.body {
        return Err(format!(
            "the proxy reads the body as {:?}, the server as {server_reads:?}: {:?}",
            request.body,
            shown()
        ));
    }
    // The fields the proxy adds (`Host`, `X-Forwarded-*`) may take a head at the limits past
    // them: a second proxy then refuses it as too large, and nothing else.
    let over_limits = fields.len() > MAX_HEADERS || to_server.len() > MAX_HEAD_BYTES;
    match forward_request(to_server, false) {
        Ok(Some(again))
            if again.head_len == to_server.len()
                && again.body == request.body
                && again.method == request.method
                && again.target == request.target =>
        {
            Ok(())
        }
        Err(431) if over_limits => Ok(()),
        other => Err(format!("a second proxy reads {:?} as {other:?}", shown())),
    }
}

/// A server's response head: taken whole, framed as RFC 9112 §6.3 says for a response to
/// `method`.
pub fn check_response(input: &[u8], method: &str) -> Result<(), Broken> {
    let Some(response) = parse_response(input, method) else {
        return Ok(());
    };
    let head = &input[..response.head_len];
    ends_at_blank_line(head)?;
    let mut slots = [httparse::EMPTY_HEADER; 256];
    let mut parsed = httparse::Response::new(&mut slots);
    if !matches!(parsed.parse(head), Ok(httparse::Status::Complete(_))) {
        return Err("taken head does not parse".into());
    }
    let fields: Vec<(&str, &[u8])> = parsed.headers.iter().map(|h| (h.name, h.value)).collect();
    let status = response.status;
    let expected =
        if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::Empty
        } else {
            response_framing(&fields)?
        };
    if expected != response.body {
        return Err(format!(
            "framed as {:?}, RFC 9112 says {expected:?}: {:?}",
            response.body,
            String::from_utf8_lossy(head)
        ));
    }
    if response.body == Framing::UntilClose && response.keep_alive {
        return Err("a body read until close on a connection kept open".into());
    }
    Ok(())
}

/// A chunked body: refused, or taken up to the end of its trailer section exactly where a
/// strict reader ends it, and sent on as a canonical chunked body with the same data (or as
/// that bare data when de-chunked), which the proxy would pass on unchanged.
pub fn check_chunked(input: &[u8]) -> Result<(), Broken> {
    let copied = copy_body(input, Framing::Chunked, false);
    let Ok(read) = copied.result else {
        return Ok(());
    };
    let taken = input.len() - copied.rest.len();
    if read != taken as u64 {
        return Err(format!("counted {read} bytes read, took {taken}"));
    }
    let (data, len) = decode_chunked(&input[..taken])
        .map_err(|e| format!("accepted what a strict reader refuses ({e})"))?;
    if len != taken {
        return Err(format!("took {taken} bytes, a strict reader ends at {len}"));
    }
    let (sent, sent_len) =
        decode_chunked(&copied.written).map_err(|e| format!("sent a bad chunked body: {e}"))?;
    if sent != data || sent_len != copied.written.len() {
        return Err("sent other data than it took".into());
    }
    let again = copy_body(&copied.written, Framing::Chunked, false);
    if again.written != copied.written || !again.rest.is_empty() {
        return Err("a second proxy changes the body it sent".into());
    }
    let bare = copy_body(input, Framing::Chunked, true);
    if bare.result.is_err() || bare.written != data {
        return Err("de-chunked, the body differs".into());
    }
    Ok(())
}

fn ends_at_blank_line(head: &[u8]) -> Result<(), Broken> {
    // httparse takes a bare LF as a line end (RFC 9112 §2.2 allows it).
    if head.ends_with(b"\n\r\n") || head.ends_with(b"\n\n") {
        Ok(())
    } else {
        Err(format!(
            "head taken short of its blank line: {:?}",
            String::from_utf8_lossy(head)
        ))
    }
}

/// How a server reads a request's body from its fields (RFC 9112 §6.3): a `Transfer-Encoding`
/// ending in `chunked` frames it by chunks; else `Content-Length`; else there is none.
pub(super) fn request_framing(fields: &[(&str, &[u8])]) -> Result<Framing, Broken> {
    match (codings_end_in_chunked(fields)?, content_length(fields)?) {
        (Some(_), Some(_)) => Err("both Transfer-Encoding and Content-Length".into()),
        (Some(true), None) => Ok(Framing::Chunked),
        (Some(false), None) => Err("a Transfer-Encoding a server cannot frame by".into()),
        (None, Some(0) | None) => Ok(Framing::Empty),
        (None, Some(n)) => Ok(Framing::Length(n)),
    }
}

/// How a client reads a response's body from its fields (RFC 9112 §6.3), when it may have one.
fn response_framing(fields: &[(&str, &[u8])]) -> Result<Framing, Broken> {
    match (codings_end_in_chunked(fields)?, content_length(fields)?) {
        (Some(_), Some(_)) => Err("taken with both Transfer-Encoding and Content-Length".into()),
        (Some(true), None) => Ok(Framing::Chunked),
        (Some(false), None) | (None, None) => Ok(Framing::UntilClose),
        (None, Some(0)) => Ok(Framing::Empty),
        (None, Some(n)) => Ok(Framing::Length(n)),
    }
}

/// Whether the `Transfer-Encoding` fields' codings end in `chunked`, named once; `None` when
/// there is no such field.
fn codings_end_in_chunked(fields: &[(&str, &[u8])]) -> Result<Option<bool>, Broken> {
    let mut codings = Vec::new();
    let mut present = false;
    for (_, value) in fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
    {
        present = true;
        codings.extend(
            value
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
                .filter(|c| !c.is_empty()),
        );
    }
    let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    let count = codings.iter().filter(|c| chunked(c)).count();
    Ok(present.then(|| count == 1 && codings.last().is_some_and(|c| chunked(c))))
}

/// The one length all `Content-Length` fields and list elements agree on.
fn content_length(fields: &[(&str, &[u8])]) -> Result<Option<u64>, Broken> {
    let mut length = None;
    for (_, value) in fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        for element in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            let n = std::str::from_utf8(element)
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| format!("Content-Length {:?}", String::from_utf8_lossy(value)))?;
            if length.is_some_and(|l| l != n) {
                return Err("Content-Length values differ".into());
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// A strict reader of a chunked body (RFC 9112 §7.1): its data, and where it ends.
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// ```
pub(super) fn decode_chunked(body: &[u8]) -> Result<(Vec<u8>, usize), &'static str> {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let line = crlf_line(body, &mut at)?;
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let space = line[digits..]
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        let ext = &line[digits + space..];
        if digits == 0 || !(ext.is_empty() || ext.starts_with(b";")) {
            return Err("chunk-size line");
        }
        let hex = std::str::from_utf8(&line[..digits]).map_err(|_| "chunk-size")?;
        let size = u64::from_str_radix(hex, 16).map_err(|_| "chunk-size too large")?;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).map_err(|_| "chunk-size too large")?;
        let chunk = body
            .get(at..at.saturating_add(size))
            .ok_or("chunk-data short")?;
        data.extend_from_slice(chunk);
        at += size;
        if !crlf_line(body, &mut at)?.is_empty() {
            return Err("chunk-data longer than its size");
        }
    }
    loop {
        let line = crlf_line(body, &mut at)?;
        if line.is_empty() {
            return Ok((data, at));
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or("trailer field-line")?;
        if colon == 0 || !line[..colon].iter().all(|b| is_tchar(*b)) {
            return Err("trailer field-name");
        }
    }
}

/// The line at `*at`, which must end in CRLF; `*at` moves past it.
fn crlf_line<'a>(body: &'a [u8], at: &mut usize) -> Result<&'a [u8], &'static str> {
    let rest = &body[*at..];
    let end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("line without CRLF")?;
    let line = &rest[..end];
    if line.iter().any(|b| *b == b'\r' || *b == b'\n') {
        return Err("bare CR or LF in a line");
    }
    *at += end + 2;
    Ok(line)
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
