//! Decoding one HTTP/1.1 response from successive slices of input: the head with `httparse`,
//! then the body framed by `Content-Length`, chunked encoding or the end of the connection
//! (RFC 9112 section 6.3). Bodies are skipped, not kept: only their length matters here.

use super::chunked::{ChunkedDecoder, ChunkedError};

/// Headers parsed per response; a response with more is refused.
const MAX_HEADERS: usize = 64;

/// What the load generator keeps of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// The server will close the connection after this response (or already has).
    pub(crate) close: bool,
}

/// Why a response cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResponseError {
    #[error("bad response head: {0}")]
    Head(httparse::Error),
    #[error("bad or conflicting Content-Length")]
    ContentLength,
    #[error("bad chunked body: {0}")]
    Chunked(#[from] ChunkedError),
}

/// Decodes one response; a new decoder is made for each.
#[derive(Debug, Clone)]
pub(crate) struct ResponseDecoder {
    /// The request was `HEAD`, so the response has no body whatever its head says.
    head_request: bool,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    Head,
    Body { response: Response, body: Body },
    Done(Response),
}

#[derive(Debug, Clone)]
enum Body {
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Ends when the server closes the connection.
    UntilClose,
}

impl ResponseDecoder {
    pub(crate) fn new(head_request: bool) -> Self {
        Self {
            head_request,
            state: State::Head,
        }
    }

    /// The response, once it has been read to its end.
    pub(crate) fn response(&self) -> Option<Response> {
        match self.state {
            State::Done(response) => Some(response),
            _ => None,
        }
    }

    /// Consumes what it can of `input` and returns how many bytes. An incomplete head consumes
    /// nothing: the caller keeps those bytes and calls again with more appended.
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<usize, ResponseError> {
        let mut at = 0;
        loop {
            match &mut self.state {
                State::Head => {
                    let Some(head) = parse_head(&input[at..], self.head_request)? else {
                        return Ok(at);
                    };
                    at += head.len;
                    self.state = match head.body {
                        // An interim answer (100 Continue): the real one follows.
                        None if head.informational => State::Head,
                        None => State::Done(head.response),
                        Some(Body::Length(0)) => State::Done(head.response),
                        Some(body) => State::Body {
                            response: head.response,
                            body,
                        },
                    };
                }
                State::Body { response, body } => {
                    let rest = &input[at..];
                    let (consumed, done) = match body {
                        Body::Length(remaining) => {
                            let skip = (*remaining).min(rest.len() as u64);
                            *remaining -= skip;
                            (skip as usize, *remaining == 0)
                        }
                        Body::Chunked(chunked) => {
                            let consumed = chunked.decode(rest)?;
                            (consumed, chunked.is_done())
                        }
                        Body::UntilClose => (rest.len(), false),
                    };
                    at += consumed;
                    if !done {
                        return Ok(at);
                    }
                    self.state = State::Done(*response);
                }
                State::Done(_) => return Ok(at),
            }
        }
    }

    /// The connection ended: completes a body that runs until the close, and says whether the
    /// response is now complete.
    pub(crate) fn end_of_input(&mut self) -> Option<Response> {
        if let State::Body {
            response,
            body: Body::UntilClose,
        } = self.state
        {
            self.state = State::Done(response);
        }
        self.response()
    }
}

/// A parsed head and what follows it.
struct Head {
    /// Bytes of the head, blank line included.
    len: usize,
    response: Response,
    /// 1xx other than 101.
    informational: bool,
    /// `None` when the response has no body.
    body: Option<Body>,
}

fn parse_head(input: &[u8], head_request: bool) -> Result<Option<Head>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(input).map_err(ResponseError::Head)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    // A complete parse always has a code; 0 stands for "none" and is refused below anyway.
    let status = parsed.code.unwrap_or(0);
    let http10 = parsed.version == Some(0);

    let mut content_length = None;
    // `Some(chunked)` once a Transfer-Encoding header is seen.
    let mut transfer_encoding = None;
    let mut close_token = false;
    let mut keep_alive_token = false;
    for header in parsed.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let length = parse_length(header.value).ok_or(ResponseError::ContentLength)?;
            if content_length.is_some_and(|seen| seen != length) {
                return Err(ResponseError::ContentLength);
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides the framing; several headers form one list.
            let last = header.value.rsplit(|&byte| byte == b',').next();
            transfer_encoding = Some(
                last.is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked")),
            );
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&byte| byte == b',') {
                let token = token.trim_ascii();
                close_token |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let mut close = close_token || (http10 && !keep_alive_token);

    let informational = (100..200).contains(&status) && status != 101;
    let body = if !(100..=999).contains(&status) {
        return Err(ResponseError::Head(httparse::Error::Status));
    } else if status == 101 {
        // The connection now speaks something else; it cannot carry another request.
        close = true;
        None
    } else if informational || head_request || status == 204 || status == 304 {
        None
    } else if let Some(chunked) = transfer_encoding {
        if chunked {
            Some(Body::Chunked(ChunkedDecoder::new()))
        } else {
            close = true;
            Some(Body::UntilClose)
        }
    } else if let Some(length) = content_length {
        Some(Body::Length(length))
    } else {
        close = true;
        Some(Body::UntilClose)
    };
    Ok(Some(Head {
        len,
        response: Response { status, close },
        informational,
        body,
    }))
}

/// `Content-Length`: decimal digits only, so `+5`, `-1` or `5, 5` are refused.
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |length, &digit| {
        length.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{Response, ResponseDecoder, ResponseError};

    /// Decodes `input` fed `piece` bytes at a time the way the reader does (unconsumed bytes are
    /// kept and offered again with the next piece); returns the response and the bytes it took.
    fn decode(input: &[u8], piece: usize, head: bool) -> Result<(Response, usize), ResponseError> {
        let mut decoder = ResponseDecoder::new(head);
        let mut pending: Vec<u8> = Vec::new();
        let mut consumed = 0;
        for chunk in input.chunks(piece) {
            pending.extend_from_slice(chunk);
            let used = decoder.decode(&pending)?;
            pending.drain(..used);
            consumed += used;
            if let Some(response) = decoder.response() {
                return Ok((response, consumed));
            }
        }
        let response = decoder.end_of_input().expect("response incomplete");
        Ok((response, consumed + pending.len()))
    }

    fn decode_every_way(input: &[u8], head: bool) -> (Response, usize) {
        let whole = decode(input, input.len().max(1), head).unwrap();
        for piece in 1..input.len() {
            assert_eq!(decode(input, piece, head).unwrap(), whole, "piece {piece}");
        }
        whole
    }

    const NEXT: &[u8] = b"HTTP/1.1 200 OK\r\n";

    fn with_next(response: &[u8]) -> Vec<u8> {
        [response, NEXT].concat()
    }

    #[test]
    fn content_length_body_split_anywhere() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Server: a\r\n\r\nhello";
        let (parsed, len) = decode_every_way(&with_next(response), false);
        assert_eq!(
            parsed,
            Response {
                status: 200,
                close: false
            }
        );
        assert_eq!(len, response.len());
    }

    #[test]
    fn chunked_body_split_anywhere() {
        let response = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 99\r\n\r\n4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nT: v\r\n\r\n";
        let (parsed, len) = decode_every_way(&with_next(response), false);
        assert_eq!(parsed.status, 201);
        assert!(!parsed.close);
        assert_eq!(len, response.len());
    }

    #[test]
    fn body_until_close_when_unframed() {
        let response = b"HTTP/1.1 200 OK\r\n\r\nall of this is body";
        let (parsed, len) = decode_every_way(response, false);
        assert!(parsed.close);
        assert_eq!(len, response.len());
    }

    #[test]
    fn no_body_for_head_204_304_and_interim_answers_skipped() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        assert_eq!(decode_every_way(&with_next(head), true).1, head.len());
        for status in ["204 No Content", "304 Not Modified"] {
            let response = format!("HTTP/1.1 {status}\r\nContent-Length: 7\r\n\r\n");
            let (parsed, len) = decode_every_way(&with_next(response.as_bytes()), false);
            assert_eq!(len, response.len());
            assert!(!parsed.close);
        }
        let response =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (parsed, len) = decode_every_way(&with_next(response), false);
        assert_eq!(parsed.status, 200);
        assert_eq!(len, response.len());
    }

    #[test]
    fn connection_close_and_http10() {
        let close =
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n";
        assert!(decode_every_way(close, false).0.close);
        let old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(decode_every_way(old, false).0.close);
        let old_kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        assert!(!decode_every_way(old_kept, false).0.close);
    }

    #[test]
    fn refuses_what_cannot_be_framed() {
        for response in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
        ] {
            assert!(decode(response, response.len(), false).is_err());
        }
    }

    #[test]
    fn an_incomplete_head_consumes_nothing() {
        let mut decoder = ResponseDecoder::new(false);
        assert_eq!(decoder.decode(b"HTTP/1.1 200 OK\r\nContent-Le"), Ok(0));
        assert_eq!(decoder.response(), None);
        assert_eq!(decoder.end_of_input(), None);
    }
}
