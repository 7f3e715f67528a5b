//! HAProxy-compatible ACLs for the L7 tier.
//!
//! An ACL is one test of a request, written as HAProxy users know it:
//! `FETCH [FLAGS] [VALUES...]`, e.g. `path_beg -i /static /images`,
//! `hdr(host) -m end .example.com`, `src 10.0.0.0/8 2001:db8::/32`,
//! `dst_port 8000:8080`. A [`Condition`] combines named ACLs, HAProxy's
//! predefined ones (`METH_GET`, `TRUE`, ...) and anonymous `{ ... }` ACLs with
//! AND (side by side), OR (`||` / `or`) and NOT (`!`).
//!
//! Everything is parsed once at configuration time into [`Acl`] and
//! [`Condition`] values; evaluating them against a [`RequestFacts`] does no
//! I/O and never fails. Parsing never panics: every mistake is an
//! [`AclError`] whose message says what would have been accepted.
//!
//! Fetches: `method`, `path`, `path_beg|end|sub|reg|dir|dom|len`, `query`,
//! `url`, `url_beg|end|sub|reg|dir|dom|len`, `hdr(NAME)` (also `req.hdr`),
//! `hdr_beg|end|sub|reg|dir|dom|len(NAME)`, `req.fhdr(NAME)` (whole values,
//! no comma splitting), `hdr_cnt(NAME)`, `req.cook(NAME)` / `cook(NAME)`,
//! `src`, `dst_port`, `ssl_fc`, `always_true`, `always_false`.

mod condition;
mod error;
mod fetch;
mod lexer;
mod matcher;
mod parse;
mod predefined;

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests;

pub use condition::Condition;
pub use error::AclError;
pub use parse::Acl;

/// Facts about one request an ACL can look at. Built once per request by the proxy.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The request method.
    pub method: &'a http::Method,
    /// The path, without the query string.
    pub path: &'a str,
    /// The query string, without the `?`; `None` when the target had no `?`.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The client's address (an IPv4-mapped IPv6 address counts as IPv4).
    pub src: std::net::IpAddr,
    /// The local port the request arrived on.
    pub dst_port: u16,
    /// Whether the client connection is TLS.
    pub ssl: bool,
}
