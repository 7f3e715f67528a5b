//! Cookie persistence with HAProxy's semantics (`cookie NAME insert|rewrite|prefix [indirect]
//! [nocache] [httponly] [secure] [domain D]`).
//!
//! - Request side: find the server the client's cookie names ([`Persistence::from_request`]) and,
//!   with `indirect` or `prefix`, hide Fulcrum's part of the cookie from the server.
//! - Response side: insert `Set-Cookie: NAME=ID; path=/` for a client that did not present a valid
//!   cookie for the server that answered, or rewrite the server's own cookie.
//!
//! A cookie naming a server that is DOWN or in MAINT is ignored: the client is balanced anew and
//! gets a new cookie, as HAProxy does without `option persist`.

use http::{HeaderMap, HeaderValue, header};

use crate::config::{Cookie, CookieMode};

/// What the request's persistence cookie said: HAProxy's third termination-state character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestCookie {
    /// `N`: no persistence cookie.
    None,
    /// `I`: a value naming no server.
    Invalid,
    /// `D`: a server that cannot take the client now.
    Down(usize),
    /// `V`: a server that can.
    Valid(usize),
}

impl RequestCookie {
    /// The server the client sticks to: one that can take it.
    pub(crate) fn sticky(self) -> Option<usize> {
        match self {
            Self::Valid(server) => Some(server),
            Self::None | Self::Invalid | Self::Down(_) => None,
        }
    }

    pub(crate) fn log_char(self) -> char {
        match self {
            Self::None => 'N',
            Self::Invalid => 'I',
            Self::Down(_) => 'D',
            Self::Valid(_) => 'V',
        }
    }
}

/// What happened to the cookie in the response: HAProxy's fourth termination-state character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseCookie {
    /// `N`: nothing set.
    None,
    /// `I`: inserted by Fulcrum.
    Inserted,
    /// `R`: the server's cookie rewritten or prefixed.
    Rewritten,
}

impl ResponseCookie {
    pub(crate) fn log_char(self) -> char {
        match self {
            Self::None => 'N',
            Self::Inserted => 'I',
            Self::Rewritten => 'R',
        }
    }
}

/// Reads the persistence cookie from a request. `server_by_cookie` maps a cookie value to a
/// server index; `usable` says whether that server takes sticky clients now.
///
/// A browser may send several cookies of one name (set for different paths or domains, an old
/// one among them). As in HAProxy, the first that names a server able to take the client wins,
/// and one naming a server that cannot does not end the search: the result is then `Down`, or
/// `Invalid` if none named a server at all.
pub(crate) fn from_request(
    cfg: &Cookie,
    headers: &HeaderMap,
    server_by_cookie: impl Fn(&str) -> Option<usize>,
    usable: impl Fn(usize) -> bool,
) -> RequestCookie {
    let mut found = RequestCookie::None;
    for value in values(headers, &cfg.name) {
        let id = match cfg.mode {
            CookieMode::Prefix => value.split(|b| *b == b'~').next().unwrap_or(value),
            CookieMode::Insert | CookieMode::Rewrite => value,
        };
        // Server cookie values are ASCII: an id that is not text names no server. The value
        // after a prefix's `~` is the application's, whatever its bytes.
        match std::str::from_utf8(id).ok().and_then(&server_by_cookie) {
            Some(server) if usable(server) => return RequestCookie::Valid(server),
            Some(server) if !matches!(found, RequestCookie::Down(_)) => {
                found = RequestCookie::Down(server);
            }
            None if found == RequestCookie::None => found = RequestCookie::Invalid,
            _ => {}
        }
    }
    found
}

/// Rewrites the request's `Cookie` headers before they go to the server: with `indirect` the
/// persistence cookie is removed, with `prefix` its `ID~` prefix is.
pub(crate) fn rewrite_request(cfg: &Cookie, headers: &mut HeaderMap) {
    let strip = cfg.indirect && cfg.mode == CookieMode::Insert;
    let unprefix = cfg.mode == CookieMode::Prefix;
    if !strip && !unprefix || !headers.contains_key(header::COOKIE) {
        return;
    }
    let mut kept = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        // Bytes, not text: a browser sends other cookies' non-ASCII values as they are, and
        // they must not hide ours.
        let mut line = Vec::with_capacity(value.len());
        for pair in pairs(value) {
            let out: Option<Vec<u8>> = match name_value(pair) {
                Some((name, _)) if strip && name == cfg.name.as_bytes() => None,
                Some((name, v)) if unprefix && name == cfg.name.as_bytes() => {
                    let rest = v.iter().position(|b| *b == b'~').map_or(v, |i| &v[i + 1..]);
                    Some([name, b"=", rest].concat())
                }
                _ => Some(pair.to_vec()),
            };
            if let Some(out) = out {
                if !line.is_empty() {
                    line.extend_from_slice(b"; ");
                }
                line.extend_from_slice(&out);
            }
        }
        if !line.is_empty() {
            kept.push(line);
        }
    }
    headers.remove(header::COOKIE);
    for value in kept {
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.append(header::COOKIE, v);
        }
    }
}

/// Applies persistence to a response from the server whose cookie value is `server_cookie`.
/// `client_had_valid` is true when the request carried a valid cookie for that same server.
pub(crate) fn rewrite_response(
    cfg: &Cookie,
    headers: &mut HeaderMap,
    server_cookie: &str,
    client_had_valid: bool,
) -> ResponseCookie {
    match cfg.mode {
        CookieMode::Insert => {
            // The persistence cookie is Fulcrum's: a server's cookie of the same name would
            // fight with it, so it is dropped, as HAProxy's insert mode does.
            remove_set_cookie(headers, &cfg.name);
            if client_had_valid {
                return ResponseCookie::None;
            }
            // The value was checked with the config, so this cannot fail.
            if let Ok(value) = HeaderValue::from_str(&set_cookie_value(cfg, server_cookie)) {
                headers.append(header::SET_COOKIE, value);
            }
            if cfg.nocache {
                add_cache_control_private(headers);
            }
            ResponseCookie::Inserted
        }
        CookieMode::Rewrite | CookieMode::Prefix => rewrite_set_cookie(cfg, headers, server_cookie),
    }
}

/// Removes every `Set-Cookie` of cookie `name`.
fn remove_set_cookie(headers: &mut HeaderMap, name: &str) {
    let named =
        |v: &HeaderValue| name_value(v.as_bytes()).is_some_and(|(n, _)| n == name.as_bytes());
    if !headers.get_all(header::SET_COOKIE).iter().any(named) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !named(v))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for v in kept {
        headers.append(header::SET_COOKIE, v);
    }
}

/// Whether `value` may be a cookie value (RFC 6265 cookie-octets: no whitespace, quote, comma,
/// semicolon or backslash), as the config checks server cookie values.
pub(crate) fn is_cookie_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

/// The `Set-Cookie` value HAProxy's insert mode sends: `NAME=ID; path=/` and the attributes.
pub(crate) fn set_cookie_value(cfg: &Cookie, server_cookie: &str) -> String {
    let mut value = format!("{}={server_cookie}; path=/", cfg.name);
    if let Some(domain) = &cfg.domain {
        value.push_str("; domain=");
        value.push_str(domain);
    }
    if let Some(max_age) = cfg.max_age {
        value.push_str(&format!("; Max-Age={}", max_age.as_secs()));
    }
    if cfg.httponly {
        value.push_str("; HttpOnly");
    }
    if cfg.secure {
        value.push_str("; Secure");
    }
    value
}

fn rewrite_set_cookie(
    cfg: &Cookie,
    headers: &mut HeaderMap,
    server_cookie: &str,
) -> ResponseCookie {
    let mut outcome = ResponseCookie::None;
    let values: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if values.is_empty() {
        return outcome;
    }
    headers.remove(header::SET_COOKIE);
    for value in values {
        match rewritten_set_cookie(cfg, value.as_bytes(), server_cookie) {
            Some(v) => {
                outcome = ResponseCookie::Rewritten;
                headers.append(header::SET_COOKIE, v);
            }
            None => {
                headers.append(header::SET_COOKIE, value);
            }
        }
    }
    if outcome == ResponseCookie::Rewritten && cfg.nocache {
        add_cache_control_private(headers);
    }
    outcome
}

/// A `Set-Cookie` value for cookie `cfg.name` with its value replaced by the server's cookie
/// (rewrite mode) or prefixed with it and `~` (prefix mode), its attributes kept; `None` for
/// another cookie. Bytes, not text: the application's value or an attribute may carry
/// non-ASCII bytes, and the cookie must still be rewritten.
fn rewritten_set_cookie(cfg: &Cookie, value: &[u8], server_cookie: &str) -> Option<HeaderValue> {
    let (pair, attrs) = value
        .iter()
        .position(|b| *b == b';')
        .map_or((value, &b""[..]), |at| value.split_at(at));
    let (name, own) = name_value(pair)?;
    if name != cfg.name.as_bytes() {
        return None;
    }
    let mut out = Vec::with_capacity(value.len() + server_cookie.len() + 1);
    out.extend_from_slice(name);
    out.push(b'=');
    out.extend_from_slice(server_cookie.as_bytes());
    if cfg.mode == CookieMode::Prefix {
        out.push(b'~');
        out.extend_from_slice(own);
    }
    out.extend_from_slice(attrs);
    HeaderValue::from_bytes(&out).ok()
}

/// Marks a response that sets a persistence cookie as private, so a shared cache does not hand
/// one client's cookie to everyone.
fn add_cache_control_private(headers: &mut HeaderMap) {
    let already = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("private") || v.contains("no-cache") || v.contains("no-store"));
    if !already {
        headers.append(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    }
}

/// The values of cookie `name` in the request's `Cookie` headers, in order, as bytes.
fn values<'h>(headers: &'h HeaderMap, name: &str) -> impl Iterator<Item = &'h [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(pairs)
        .filter_map(name_value)
        .filter(move |(n, _)| *n == name.as_bytes())
        .map(|(_, v)| v)
}

/// The `name=value` pairs of one `Cookie` header, trimmed, empty ones left out.
fn pairs(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|b| *b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
}

/// A cookie pair (or a `Set-Cookie` value's first pair) split at its first `=`, both sides
/// trimmed.
fn name_value(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = pair.iter().position(|b| *b == b'=')?;
    let value = &pair[eq + 1..];
    let value = value.split(|b| *b == b';').next().unwrap_or(value);
    Some((pair[..eq].trim_ascii(), value.trim_ascii()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn cfg(mode: CookieMode) -> Cookie {
        Cookie {
            name: "webserver".into(),
            mode,
            nocache: true,
            indirect: false,
            httponly: false,
            secure: false,
            domain: None,
            max_age: None,
        }
    }

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        h
    }

    fn by_cookie(v: &str) -> Option<usize> {
        ["s1", "s2"].iter().position(|c| *c == v)
    }

    #[test]
    fn request_cookie_names_a_server() {
        let c = cfg(CookieMode::Insert);
        let h = headers("a=1; webserver=s2; b=2");
        assert_eq!(
            from_request(&c, &h, by_cookie, |_| true),
            RequestCookie::Valid(1)
        );
        assert_eq!(
            from_request(&c, &h, by_cookie, |_| false),
            RequestCookie::Down(1)
        );
        assert_eq!(
            from_request(&c, &headers("webserver=zz"), by_cookie, |_| true),
            RequestCookie::Invalid
        );
        assert_eq!(
            from_request(&c, &HeaderMap::new(), by_cookie, |_| true),
            RequestCookie::None
        );
    }

    // Input: two cookies of the persistence name, the first for a server that cannot take the
    // client, or naming no server, the second for one that can. Output: the second wins, as in
    // HAProxy; with no usable one, Down outranks Invalid. (Only the first was read: the client
    // was sent elsewhere while its valid cookie was ignored.)
    #[test]
    fn the_first_cookie_of_the_name_naming_a_usable_server_wins() {
        let c = cfg(CookieMode::Insert);
        let s2_only = |i: usize| i == 1;
        for sent in [
            "webserver=s1; webserver=s2",
            "webserver=zz; a=1; webserver=s2",
        ] {
            assert_eq!(
                from_request(&c, &headers(sent), by_cookie, s2_only),
                RequestCookie::Valid(1),
                "{sent}"
            );
        }
        let mut two_headers = headers("webserver=s1");
        two_headers.append(header::COOKIE, HeaderValue::from_static("webserver=s2"));
        assert_eq!(
            from_request(&c, &two_headers, by_cookie, s2_only),
            RequestCookie::Valid(1)
        );
        assert_eq!(
            from_request(
                &c,
                &headers("webserver=zz; webserver=s1"),
                by_cookie,
                s2_only
            ),
            RequestCookie::Down(0)
        );
        assert_eq!(
            from_request(
                &c,
                &headers("webserver=zz; webserver=yy"),
                by_cookie,
                s2_only
            ),
            RequestCookie::Invalid
        );
    }

    #[test]
    fn insert_sets_cookie_and_private_only_without_a_valid_one() {
        let c = cfg(CookieMode::Insert);
        let mut h = HeaderMap::new();
        assert_eq!(
            rewrite_response(&c, &mut h, "s1", false),
            ResponseCookie::Inserted
        );
        assert_eq!(h.get(header::SET_COOKIE).unwrap(), "webserver=s1; path=/");
        assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "private");
        let mut h = HeaderMap::new();
        assert_eq!(
            rewrite_response(&c, &mut h, "s1", true),
            ResponseCookie::None
        );
        assert!(h.is_empty());
    }

    #[test]
    fn insert_drops_the_servers_own_cookie_of_that_name() {
        let c = cfg(CookieMode::Insert);
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("webserver=app; Path=/"),
        );
        h.append(header::SET_COOKIE, HeaderValue::from_static("session=42"));
        assert_eq!(
            rewrite_response(&c, &mut h, "s1", false),
            ResponseCookie::Inserted
        );
        let all: Vec<_> = h.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(all, ["session=42", "webserver=s1; path=/"]);
    }

    // Input: our cookie beside another whose value is UTF-8 (`José`), which `to_str` refuses.
    // Output: ours is still found, stripped with `indirect`, unprefixed in prefix mode, and a
    // server's non-ASCII `Set-Cookie` of our name is still dropped in insert mode; the other
    // cookie goes on untouched.
    #[test]
    fn a_non_ascii_cookie_does_not_hide_ours() {
        let raw = "name=Jos\u{e9}; webserver=s2".as_bytes();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_bytes(raw).unwrap());
        let c = cfg(CookieMode::Insert);
        assert_eq!(
            from_request(&c, &h, by_cookie, |_| true),
            RequestCookie::Valid(1)
        );
        let indirect = Cookie {
            indirect: true,
            ..cfg(CookieMode::Insert)
        };
        let mut stripped = h.clone();
        rewrite_request(&indirect, &mut stripped);
        assert_eq!(
            stripped.get(header::COOKIE).unwrap().as_bytes(),
            "name=Jos\u{e9}".as_bytes()
        );
        let mut prefixed = HeaderMap::new();
        let raw = "name=Jos\u{e9}; webserver=s2~abc".as_bytes();
        prefixed.insert(header::COOKIE, HeaderValue::from_bytes(raw).unwrap());
        rewrite_request(&cfg(CookieMode::Prefix), &mut prefixed);
        assert_eq!(
            prefixed.get(header::COOKIE).unwrap().as_bytes(),
            "name=Jos\u{e9}; webserver=abc".as_bytes()
        );
        let mut response = HeaderMap::new();
        let own = "webserver=Jos\u{e9}; Path=/".as_bytes();
        response.append(header::SET_COOKIE, HeaderValue::from_bytes(own).unwrap());
        rewrite_response(&c, &mut response, "s1", false);
        let all: Vec<_> = response.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(all, ["webserver=s1; path=/"]);
    }

    #[test]
    fn cookie_values() {
        assert!(is_cookie_value("s1") && is_cookie_value("web-01.a_b"));
        for bad in ["", "a b", "a;b", "a,b", "a\"b", "a\\b", "caf\u{e9}"] {
            assert!(!is_cookie_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn insert_attributes() {
        let mut c = cfg(CookieMode::Insert);
        c.httponly = true;
        c.secure = true;
        c.domain = Some(".example.com".into());
        c.max_age = Some(std::time::Duration::from_secs(60));
        assert_eq!(
            set_cookie_value(&c, "s1"),
            "webserver=s1; path=/; domain=.example.com; Max-Age=60; HttpOnly; Secure"
        );
    }

    #[test]
    fn indirect_hides_the_cookie_from_servers() {
        let mut c = cfg(CookieMode::Insert);
        c.indirect = true;
        let mut h = headers("a=1; webserver=s2; b=2");
        rewrite_request(&c, &mut h);
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        let mut only = headers("webserver=s2");
        rewrite_request(&c, &mut only);
        assert!(only.get(header::COOKIE).is_none());
    }

    #[test]
    fn without_indirect_the_cookie_reaches_servers() {
        let c = cfg(CookieMode::Insert);
        let mut h = headers("webserver=s2");
        rewrite_request(&c, &mut h);
        assert_eq!(h.get(header::COOKIE).unwrap(), "webserver=s2");
    }

    #[test]
    fn prefix_mode_round_trip() {
        let c = cfg(CookieMode::Prefix);
        let mut res = HeaderMap::new();
        res.insert(
            header::SET_COOKIE,
            HeaderValue::from_static("webserver=abc; Path=/"),
        );
        assert_eq!(
            rewrite_response(&c, &mut res, "s1", false),
            ResponseCookie::Rewritten
        );
        assert_eq!(
            res.get(header::SET_COOKIE).unwrap(),
            "webserver=s1~abc; Path=/"
        );
        let mut req = headers("webserver=s1~abc");
        assert_eq!(
            from_request(&c, &req, by_cookie, |_| true),
            RequestCookie::Valid(0)
        );
        rewrite_request(&c, &mut req);
        assert_eq!(req.get(header::COOKIE).unwrap(), "webserver=abc");
    }

    // Input: in prefix and rewrite modes, a server's `Set-Cookie` of our name whose value, or
    // an attribute, is UTF-8 (`José`, `/café`); a client's prefixed cookie whose application
    // value is not UTF-8. Output: the cookie is prefixed or replaced, its attributes kept as
    // sent, and the client's prefix still names its server. (Each went through unchanged, or
    // was ignored, as `to_str` refuses them: persistence never started.)
    #[test]
    fn non_ascii_bytes_do_not_stop_prefix_and_rewrite() {
        let set_cookie = |mode, raw: &str| {
            let mut res = HeaderMap::new();
            let value = HeaderValue::from_bytes(raw.as_bytes()).unwrap();
            res.insert(header::SET_COOKIE, value);
            let outcome = rewrite_response(&cfg(mode), &mut res, "s1", false);
            let sent = res.get(header::SET_COOKIE).unwrap().as_bytes().to_vec();
            (outcome, String::from_utf8(sent).unwrap())
        };
        let (outcome, sent) = set_cookie(CookieMode::Prefix, "webserver=Jos\u{e9}; Path=/");
        assert_eq!(outcome, ResponseCookie::Rewritten);
        assert_eq!(sent, "webserver=s1~Jos\u{e9}; Path=/");
        let (outcome, sent) = set_cookie(CookieMode::Prefix, "webserver = abc ;Path=/caf\u{e9}");
        assert_eq!(outcome, ResponseCookie::Rewritten);
        assert_eq!(sent, "webserver=s1~abc;Path=/caf\u{e9}");
        let (outcome, sent) = set_cookie(CookieMode::Rewrite, "webserver=Jos\u{e9}");
        assert_eq!(outcome, ResponseCookie::Rewritten);
        assert_eq!(sent, "webserver=s1");

        let mut req = HeaderMap::new();
        let raw = b"webserver=s2~\xe9t\xe9; other=1";
        req.insert(header::COOKIE, HeaderValue::from_bytes(raw).unwrap());
        let c = cfg(CookieMode::Prefix);
        assert_eq!(
            from_request(&c, &req, by_cookie, |_| true),
            RequestCookie::Valid(1)
        );
        let raw = b"webserver=\xe9~abc";
        req.insert(header::COOKIE, HeaderValue::from_bytes(raw).unwrap());
        assert_eq!(
            from_request(&c, &req, by_cookie, |_| true),
            RequestCookie::Invalid
        );
    }

    #[test]
    fn rewrite_mode_replaces_the_servers_value() {
        let c = cfg(CookieMode::Rewrite);
        let mut res = HeaderMap::new();
        res.append(header::SET_COOKIE, HeaderValue::from_static("other=1"));
        res.append(
            header::SET_COOKIE,
            HeaderValue::from_static("webserver=session42"),
        );
        assert_eq!(
            rewrite_response(&c, &mut res, "s2", false),
            ResponseCookie::Rewritten
        );
        let all: Vec<_> = res.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(all, ["other=1", "webserver=s2"]);
    }
}
