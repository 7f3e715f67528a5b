//! HTTP/1.1 requests as bytes, encoded once before the run: sending one is then a single write of
//! a buffer that already exists, with nothing formatted or allocated per request.

use std::io::Write;

use bytes::Bytes;
use http::uri::PathAndQuery;

use crate::load::request::RequestSpec;

/// One encoded request per path, in the order the paths are requested.
pub(super) fn encode_all(spec: &RequestSpec, keep_alive: bool) -> Vec<Bytes> {
    spec.paths
        .iter()
        .map(|path| Bytes::from(encode(spec, path, keep_alive)))
        .collect()
}

fn encode(spec: &RequestSpec, path: &PathAndQuery, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + spec.body.len());
    // Writing into a Vec cannot fail, so the results below carry nothing.
    let _ = write!(out, "{} {} HTTP/1.1\r\n", spec.method, path);
    if !spec.has_host() {
        let _ = write!(out, "Host: {}\r\n", spec.authority);
    }
    for (name, value) in &spec.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if spec.sends_length() {
        let _ = write!(out, "Content-Length: {}\r\n", spec.body.len());
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&spec.body);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::encode_all;
    use crate::load::options::LoadOptions;
    use crate::load::request::RequestSpec;
    use crate::load::target::Target;

    fn encoded(options: LoadOptions) -> Vec<String> {
        let target = Target::resolve("http://127.0.0.1:8081/", &[]).unwrap();
        let spec = RequestSpec::new(&options, &target).unwrap();
        encode_all(&spec, options.keep_alive)
            .iter()
            .map(|request| String::from_utf8(request.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn get_with_keep_alive_is_minimal() {
        assert_eq!(
            encoded(LoadOptions::default()),
            ["GET / HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n\r\n"]
        );
    }

    #[test]
    fn body_headers_close_and_paths() {
        let options = LoadOptions {
            method: "POST".into(),
            body_size: 3,
            headers: vec![("X-Test".into(), " yes ".into())],
            keep_alive: false,
            paths: vec!["/a".into(), "/b".into()],
            ..LoadOptions::default()
        };
        assert_eq!(
            encoded(options),
            [
                "POST /a HTTP/1.1\r\nHost: 127.0.0.1:8081\r\nx-test: yes\r\nContent-Length: 3\r\nConnection: close\r\n\r\nxxx",
                "POST /b HTTP/1.1\r\nHost: 127.0.0.1:8081\r\nx-test: yes\r\nContent-Length: 3\r\nConnection: close\r\n\r\nxxx",
            ]
        );
    }

    #[test]
    fn a_host_header_replaces_the_url_authority() {
        let options = LoadOptions {
            headers: vec![("Host".into(), "example.test".into())],
            ..LoadOptions::default()
        };
        assert_eq!(
            encoded(options),
            ["GET / HTTP/1.1\r\nhost: example.test\r\n\r\n"]
        );
    }
}
