//! The responses the proxy answers itself (400, 408, 503, 504, ...), shaped like HAProxy's
//! built-in error pages so monitoring that greps for them keeps working.

use http::StatusCode;

/// Why the proxy answered a request itself.
pub(crate) fn explanation(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Your browser sent an invalid request.",
        403 => "Request forbidden by administrative rules.",
        408 => "Your browser didn't send a complete request in time.",
        413 => "The request entity is too large.",
        431 => "The request headers are too large.",
        500 => "An internal server error occurred.",
        501 => "The server does not support the functionality required to fulfill the request.",
        502 => "The server returned an invalid or incomplete response.",
        503 => "No server is available to handle this request.",
        504 => "The server didn't respond in time.",
        _ => "",
    }
}

/// A complete HTTP/1.1 error response that closes the connection.
pub(crate) fn h1_response(status: StatusCode) -> Vec<u8> {
    let body = html_body(status);
    format!(
        "HTTP/1.1 {} {}\r\ncontent-length: {}\r\ncache-control: no-cache\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// [`h1_response`] to a request made with `method`: to a HEAD, the headers of the page, its
/// content-length included, without the page (RFC 9110 §9.3.2): a client reads no body after
/// a HEAD, and would take it for the next response.
pub(crate) fn h1_response_to(method: &http::Method, status: StatusCode) -> Vec<u8> {
    let mut page = h1_response(status);
    if *method == http::Method::HEAD {
        let head_len = page
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(page.len(), |at| at + 4);
        page.truncate(head_len);
    }
    page
}

/// The HTML body of an error page.
pub(crate) fn html_body(status: StatusCode) -> String {
    format!(
        "<html><body><h1>{} {}</h1>\n{}\n</body></html>\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        explanation(status)
    )
}
