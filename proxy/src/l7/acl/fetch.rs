//! Fetches: the part of an ACL that picks a value out of the request
//! (`path`, `hdr(host)`, `src`, ...), and the table of fetch names HAProxy
//! users write, each with the match method it implies (`path_beg` is `path`
//! with `-m beg`).

use std::net::IpAddr;

use http::HeaderName;

use super::matcher::{IntDomain, MatchMethod, MatchMethod as M};
use super::{AclError, RequestFacts};

/// What kind of value a fetch yields; decides which match methods and flags fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Int,
    Ip,
    Bool,
}

/// One value taken from the request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sample<'a> {
    Bytes(&'a [u8]),
    Int(u64),
    Ip(IpAddr),
    Bool(bool),
}

/// A parsed fetch, ready to take samples from requests.
#[derive(Debug, Clone)]
pub(crate) struct Fetch {
    source: Source,
    /// The fetch as written, for error messages.
    pub(crate) written: String,
    /// The match method used when no `-m` is given.
    pub(crate) default_method: MatchMethod,
}

impl Fetch {
    /// Parses a fetch word such as `path_beg`, `hdr(host)` or `req.cook(sid)`.
    pub(crate) fn parse(word: &str) -> Result<Fetch, AclError> {
        let (name, arg) = split_argument(word)?;
        let Some(spec) = FETCHES.iter().find(|spec| spec.name == name) else {
            return Err(AclError::UnknownFetch {
                name: name.to_owned(),
                allowed: allowed_fetches(),
            });
        };
        let bad = |reason: String| AclError::BadFetchArgument {
            fetch: word.to_owned(),
            reason,
        };
        let source = match spec.base {
            Base::Plain(plain) => match arg {
                Some(arg) if !arg.is_empty() => {
                    return Err(bad(format!(
                        "`{name}` takes no argument, write it as `{name}`"
                    )));
                }
                _ => Source::Plain(plain),
            },
            Base::Header(kind) => {
                let Some(arg) = arg.filter(|arg| !arg.is_empty()) else {
                    return Err(bad(format!(
                        "`{name}` needs a header name, as in `{name}(host)`"
                    )));
                };
                if arg.contains(',') {
                    return Err(bad(format!(
                        "`{name}` takes only a header name (occurrence numbers are not supported), as in `{name}(host)`"
                    )));
                }
                let header = HeaderName::from_bytes(arg.to_ascii_lowercase().as_bytes())
                    .map_err(|_| {
                        bad(format!(
                            "`{arg}` is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"
                        ))
                    })?;
                match kind {
                    HeaderKind::Values => Source::Header(header),
                    HeaderKind::Full => Source::FullHeader(header),
                    HeaderKind::Count => Source::HeaderCount(header),
                }
            }
            Base::Cookie => {
                let Some(arg) = arg.filter(|arg| !arg.is_empty()) else {
                    return Err(bad(format!(
                        "`{name}` needs a cookie name, as in `{name}(session)`"
                    )));
                };
                if arg.contains([',', ';', '=', ' ']) {
                    return Err(bad(format!(
                        "`{arg}` is not a valid cookie name (no `,`, `;`, `=` or spaces)"
                    )));
                }
                Source::Cookie(arg.to_owned())
            }
        };
        Ok(Fetch {
            source,
            written: word.to_owned(),
            default_method: spec.method,
        })
    }

    /// The kind of value this fetch yields.
    pub(crate) fn kind(&self) -> Kind {
        match self.source {
            Source::Plain(Plain::Method | Plain::Path | Plain::Query | Plain::Url)
            | Source::Header(_)
            | Source::FullHeader(_)
            | Source::Cookie(_) => Kind::Str,
            Source::HeaderCount(_) | Source::Plain(Plain::DstPort) => Kind::Int,
            Source::Plain(Plain::Src) => Kind::Ip,
            Source::Plain(Plain::SslFc | Plain::Always(_)) => Kind::Bool,
        }
    }

    /// The limits of this fetch's integer values (`dst_port` takes ports).
    pub(crate) fn int_domain(&self) -> IntDomain<'_> {
        match self.source {
            Source::Plain(Plain::DstPort) => IntDomain::Port,
            _ => IntDomain::Count(&self.written),
        }
    }

    /// Calls `test` on every sample this fetch finds in `req`, stopping at the
    /// first for which it returns true. Returns whether any did.
    pub(crate) fn any_sample(
        &self,
        req: &RequestFacts<'_>,
        test: &mut dyn FnMut(Sample<'_>) -> bool,
    ) -> bool {
        match &self.source {
            Source::Plain(Plain::Method) => test(Sample::Bytes(req.method.as_str().as_bytes())),
            Source::Plain(Plain::Path) => test(Sample::Bytes(req.path.as_bytes())),
            Source::Plain(Plain::Query) => {
                req.query.is_some_and(|q| test(Sample::Bytes(q.as_bytes())))
            }
            Source::Plain(Plain::Url) => match req.query {
                None => test(Sample::Bytes(req.path.as_bytes())),
                Some(query) => {
                    let url = format!("{}?{query}", req.path);
                    test(Sample::Bytes(url.as_bytes()))
                }
            },
            Source::Header(name) => req
                .headers
                .get_all(name)
                .iter()
                .any(|value| split_list(value.as_bytes()).any(|item| test(Sample::Bytes(item)))),
            Source::FullHeader(name) => req
                .headers
                .get_all(name)
                .iter()
                .any(|value| test(Sample::Bytes(trim_ows(value.as_bytes())))),
            Source::HeaderCount(name) => {
                let count = req
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|value| split_list(value.as_bytes()).count())
                    .sum::<usize>();
                test(Sample::Int(u64::try_from(count).unwrap_or(u64::MAX)))
            }
            Source::Cookie(name) => req
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .any(|value| {
                    cookie_values(value.as_bytes(), name.as_bytes()).any(|v| test(Sample::Bytes(v)))
                }),
            Source::Plain(Plain::Src) => test(Sample::Ip(req.src)),
            Source::Plain(Plain::DstPort) => test(Sample::Int(u64::from(req.dst_port))),
            Source::Plain(Plain::SslFc) => test(Sample::Bool(req.ssl)),
            Source::Plain(Plain::Always(value)) => test(Sample::Bool(*value)),
        }
    }
}

/// Where in the request a fetch looks.
#[derive(Debug, Clone)]
enum Source {
    /// Fetches that take no argument.
    Plain(Plain),
    /// Every comma-separated value of every occurrence (`hdr`).
    Header(HeaderName),
    /// Every occurrence, whole (`req.fhdr`).
    FullHeader(HeaderName),
    /// How many values `Header` would yield (`hdr_cnt`).
    HeaderCount(HeaderName),
    Cookie(String),
}

/// The fetches that take no argument.
#[derive(Debug, Clone, Copy)]
enum Plain {
    Method,
    Path,
    Query,
    Url,
    Src,
    DstPort,
    SslFc,
    Always(bool),
}

#[derive(Debug, Clone, Copy)]
enum HeaderKind {
    Values,
    Full,
    Count,
}

#[derive(Debug, Clone, Copy)]
enum Base {
    Plain(Plain),
    Header(HeaderKind),
    Cookie,
}

struct FetchSpec {
    name: &'static str,
    base: Base,
    method: MatchMethod,
}

const fn spec(name: &'static str, base: Base, method: MatchMethod) -> FetchSpec {
    FetchSpec { name, base, method }
}

/// Every fetch name accepted, in the order error messages list them.
const FETCHES: &[FetchSpec] = &[
    spec("method", Base::Plain(Plain::Method), M::Str),
    spec("path", Base::Plain(Plain::Path), M::Str),
    spec("path_beg", Base::Plain(Plain::Path), M::Beg),
    spec("path_end", Base::Plain(Plain::Path), M::End),
    spec("path_sub", Base::Plain(Plain::Path), M::Sub),
    spec("path_reg", Base::Plain(Plain::Path), M::Reg),
    spec("path_dir", Base::Plain(Plain::Path), M::Dir),
    spec("path_dom", Base::Plain(Plain::Path), M::Dom),
    spec("path_len", Base::Plain(Plain::Path), M::Len),
    spec("query", Base::Plain(Plain::Query), M::Str),
    spec("url", Base::Plain(Plain::Url), M::Str),
    spec("url_beg", Base::Plain(Plain::Url), M::Beg),
    spec("url_end", Base::Plain(Plain::Url), M::End),
    spec("url_sub", Base::Plain(Plain::Url), M::Sub),
    spec("url_reg", Base::Plain(Plain::Url), M::Reg),
    spec("url_dir", Base::Plain(Plain::Url), M::Dir),
    spec("url_dom", Base::Plain(Plain::Url), M::Dom),
    spec("url_len", Base::Plain(Plain::Url), M::Len),
    spec("hdr", Base::Header(HeaderKind::Values), M::Str),
    spec("hdr_beg", Base::Header(HeaderKind::Values), M::Beg),
    spec("hdr_end", Base::Header(HeaderKind::Values), M::End),
    spec("hdr_sub", Base::Header(HeaderKind::Values), M::Sub),
    spec("hdr_reg", Base::Header(HeaderKind::Values), M::Reg),
    spec("hdr_dir", Base::Header(HeaderKind::Values), M::Dir),
    spec("hdr_dom", Base::Header(HeaderKind::Values), M::Dom),
    spec("hdr_len", Base::Header(HeaderKind::Values), M::Len),
    spec("hdr_cnt", Base::Header(HeaderKind::Count), M::Int),
    spec("req.hdr", Base::Header(HeaderKind::Values), M::Str),
    spec("req.fhdr", Base::Header(HeaderKind::Full), M::Str),
    spec("req.hdr_cnt", Base::Header(HeaderKind::Count), M::Int),
    spec("req.cook", Base::Cookie, M::Str),
    spec("cook", Base::Cookie, M::Str),
    spec("src", Base::Plain(Plain::Src), M::Ip),
    spec("dst_port", Base::Plain(Plain::DstPort), M::Int),
    spec("ssl_fc", Base::Plain(Plain::SslFc), M::Bool),
    spec("always_true", Base::Plain(Plain::Always(true)), M::Bool),
    spec("always_false", Base::Plain(Plain::Always(false)), M::Bool),
];

fn allowed_fetches() -> String {
    FETCHES
        .iter()
        .map(|spec| match spec.base {
            Base::Plain(_) => spec.name.to_owned(),
            Base::Header(_) => format!("{}(NAME)", spec.name),
            Base::Cookie => format!("{}(NAME)", spec.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Splits `name(arg)` into its name and argument. A word without parentheses
/// has no argument; text after the closing parenthesis (HAProxy converters
/// such as `,lower`) is refused.
fn split_argument(word: &str) -> Result<(&str, Option<&str>), AclError> {
    let Some((name, rest)) = word.split_once('(') else {
        return Ok((word, None));
    };
    let bad = |reason: &str| AclError::BadFetchArgument {
        fetch: word.to_owned(),
        reason: reason.to_owned(),
    };
    let Some((arg, after)) = rest.rsplit_once(')') else {
        return Err(bad("missing `)` after the argument"));
    };
    if !after.is_empty() {
        return Err(bad(
            "nothing may follow `)`: converters such as `,lower` are not supported (use `-i` for case-insensitive matching)",
        ));
    }
    Ok((name, Some(arg.trim())))
}

/// Splits one header value on commas, as HAProxy's `hdr()` does: commas inside
/// double-quoted strings do not split, and each value is trimmed.
pub(crate) fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, &b) in current.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if in_quotes && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = !in_quotes;
            } else if b == b',' && !in_quotes {
                rest = current.get(i + 1..);
                return Some(trim_ows(current.get(..i).unwrap_or_default()));
            }
        }
        rest = None;
        Some(trim_ows(current))
    })
}

/// The values of every cookie called `name` in one `Cookie` header value.
/// Cookies without `=` carry no value and are skipped, as in HAProxy.
pub(crate) fn cookie_values<'v>(
    header: &'v [u8],
    name: &'v [u8],
) -> impl Iterator<Item = &'v [u8]> {
    header.split(|&b| b == b';').filter_map(move |pair| {
        let pair = trim_ows(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (key, value) = (pair.get(..eq)?, pair.get(eq + 1..)?);
        (trim_ows(key) == name).then(|| trim_ows(value))
    })
}

/// Trims HTTP optional whitespace (spaces and tabs) from both ends.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}
