//! The requests a run sends, checked once up front: a bad method, path or header is a mistake on
//! the command line, not something to discover from server errors in the middle of a run.

use anyhow::{Context, bail};
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method};

use super::options::LoadOptions;
use super::target::Target;

/// The byte request bodies are made of.
const BODY_FILLER: u8 = b'x';

/// What every request of a run looks like; only the path changes from one to the next.
#[derive(Debug, Clone)]
pub(super) struct RequestSpec {
    pub(super) method: Method,
    /// Requested in turn; never empty.
    pub(super) paths: Vec<PathAndQuery>,
    /// `Host` for HTTP/1.1 and `:authority` for HTTP/2, unless a `Host` header overrides it.
    pub(super) authority: String,
    /// The user's headers, in order.
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) body: Bytes,
}

impl RequestSpec {
    pub(super) fn new(options: &LoadOptions, target: &Target) -> anyhow::Result<Self> {
        let method = Method::from_bytes(options.method.as_bytes())
            .with_context(|| format!("bad method {:?}", options.method))?;
        let paths = if options.paths.is_empty() {
            std::slice::from_ref(&target.path)
        } else {
            &options.paths[..]
        };
        let paths = paths
            .iter()
            .map(|path| {
                if !path.starts_with('/') {
                    bail!("path {path:?} must start with /");
                }
                PathAndQuery::try_from(path.as_str()).with_context(|| format!("bad path {path:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let headers = options
            .headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::try_from(name.trim())
                    .with_context(|| format!("bad header name {name:?}"))?;
                let value = HeaderValue::try_from(value.trim())
                    .with_context(|| format!("bad value for header {name}"))?;
                // The framing and the connection's fate are the load generator's to decide, or
                // responses could not be read.
                if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
                    bail!("header {name} is set from --body-size");
                }
                if name == CONNECTION {
                    bail!("header {name} is set from --close");
                }
                Ok((name, value))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            method,
            paths,
            authority: target.authority.clone(),
            headers,
            body: Bytes::from(vec![BODY_FILLER; options.body_size]),
        })
    }

    /// True if the user set `Host` themselves.
    pub(super) fn has_host(&self) -> bool {
        self.headers.iter().any(|(name, _)| name == HOST)
    }

    /// Whether the request says how long its body is: always when it has one, and for the
    /// methods that normally carry one, where some servers want `Content-Length: 0` rather than
    /// nothing.
    pub(super) fn sends_length(&self) -> bool {
        !self.body.is_empty()
            || self.method == Method::POST
            || self.method == Method::PUT
            || self.method == Method::PATCH
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::RequestSpec;
    use crate::load::options::LoadOptions;
    use crate::load::target::Target;

    fn spec(options: &LoadOptions) -> anyhow::Result<RequestSpec> {
        let target = Target::resolve("http://127.0.0.1:9/base", &[]).unwrap();
        RequestSpec::new(options, &target)
    }

    #[test]
    fn uses_the_url_path_unless_paths_are_given() {
        let options = LoadOptions::default();
        assert_eq!(spec(&options).unwrap().paths, ["/base"]);
        let options = LoadOptions {
            paths: vec!["/a".into(), "/b?x=1".into()],
            ..LoadOptions::default()
        };
        assert_eq!(spec(&options).unwrap().paths, ["/a", "/b?x=1"]);
    }

    #[test]
    fn refuses_what_would_break_the_framing_or_the_request_line() {
        let header = |name: &str, value: &str| LoadOptions {
            headers: vec![(name.into(), value.into())],
            ..LoadOptions::default()
        };
        for options in [
            header("Content-Length", "5"),
            header("transfer-encoding", "chunked"),
            header("Connection", "close"),
            header("X-Bad", "a\r\nInjected: yes"),
            header("Bad Name", "x"),
            LoadOptions {
                method: "GE T".into(),
                ..LoadOptions::default()
            },
            LoadOptions {
                paths: vec!["no-slash".into()],
                ..LoadOptions::default()
            },
            LoadOptions {
                paths: vec!["/a b".into()],
                ..LoadOptions::default()
            },
        ] {
            assert!(spec(&options).is_err(), "{options:?}");
        }
    }
}
