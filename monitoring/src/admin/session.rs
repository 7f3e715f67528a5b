//! Admin sessions: what keeps another site from making an operator's browser post admin actions
//! (CSRF), and where an action's result waits for the next page load.
//!
//! Basic auth alone would not do: a browser sends the credentials it remembers with any request to
//! the page, wherever that request came from. So an authenticated page load opens a session, a
//! random 128-bit id in the cookie `fulcrum_admin` (`HttpOnly; SameSite=Strict`, `Secure` under
//! TLS), kept here with the user's name and a random token that the page's forms carry. A POST
//! is obeyed only with that cookie, the same authenticated user, and the token of that session
//! (compared in constant time); another site can neither read the token nor, with `SameSite`,
//! send the cookie. The `Origin` check is in [`origin_allowed`].
//!
//! Sessions expire after [`IDLE`] without use, and at most [`MAX_SESSIONS`] are kept (the
//! oldest is dropped first), so a client cannot grow the map without bound; only authenticated
//! users open sessions at all.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use http::{
    HeaderMap,
    header::{COOKIE, HOST, ORIGIN},
};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// The session cookie's name.
pub(super) const COOKIE_NAME: &str = "fulcrum_admin";
/// A session unused for this long is forgotten: the page then opens a new one, so only a form
/// left open longer than this needs a reload.
const IDLE: Duration = Duration::from_secs(3600);
const MAX_SESSIONS: usize = 1024;

/// One result line shown at the top of the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Flash {
    pub(super) ok: bool,
    pub(super) text: String,
}

/// The sessions of every user. A std mutex: each use is a short map operation, never across an
/// await, and only on admin requests.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

#[derive(Debug)]
struct Session {
    user: String,
    token: String,
    expires: Instant,
    flash: Vec<Flash>,
}

/// What a page load gets from its session.
#[derive(Debug)]
pub(super) struct PageSession {
    /// The CSRF token for the page's forms.
    pub(super) token: String,
    /// Results of the last action, shown once.
    pub(super) flash: Vec<Flash>,
    /// A new session id for `Set-Cookie`, when the request had no usable one.
    pub(super) new_id: Option<String>,
}

/// The random source failed (no entropy available); the page is answered with a 500.
#[derive(Debug, thiserror::Error)]
#[error("the system random source failed: {0}")]
pub(super) struct RandomError(getrandom::Error);

impl Sessions {
    /// The session of `id` if it is live and `user`'s, or a new one for `user`. A page that
    /// shows the flash messages (`take_flash`) clears them; a HEAD request, whose body nobody
    /// sees, leaves them for the next GET.
    pub(super) fn open(
        &self,
        id: Option<&str>,
        user: &str,
        now: Instant,
        take_flash: bool,
    ) -> Result<PageSession, RandomError> {
        let mut map = self.lock();
        if let Some(id) = id
            && let Some(session) = map.get_mut(id)
            && session.expires > now
            && session.user == user
        {
            session.expires = now + IDLE;
            return Ok(PageSession {
                token: session.token.clone(),
                flash: if take_flash {
                    std::mem::take(&mut session.flash)
                } else {
                    Vec::new()
                },
                new_id: None,
            });
        }
        let id = random_hex()?;
        let token = random_hex()?;
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                user: user.to_owned(),
                token: token.clone(),
                expires: now + IDLE,
                flash: Vec::new(),
            },
        );
        Ok(PageSession {
            token,
            flash: Vec::new(),
            new_id: Some(id),
        })
    }

    /// Whether a POST may act: `id` names a live session of `user` whose token is `token`.
    pub(super) fn allows(&self, id: Option<&str>, user: &str, token: &str, now: Instant) -> bool {
        let Some(id) = id else { return false };
        let mut map = self.lock();
        let Some(session) = map.get_mut(id) else {
            return false;
        };
        if session.expires <= now {
            map.remove(id);
            return false;
        }
        let token_ok = bool::from(session.token.as_bytes().ct_eq(token.as_bytes()));
        if token_ok && session.user == user {
            session.expires = now + IDLE;
            true
        } else {
            false
        }
    }

    /// Keeps `flash` for the session's next page load.
    pub(super) fn set_flash(&self, id: &str, flash: Vec<Flash>) {
        if let Some(session) = self.lock().get_mut(id) {
            session.flash = flash;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent (each
        // update is one insert or field write), so its poison is of no concern.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// 128 random bits, as 32 lowercase hex digits.
fn random_hex() -> Result<String, RandomError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(RandomError)?;
    let mut hex = String::with_capacity(32);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

/// The session id in the request's `fulcrum_admin` cookie, if any.
pub(super) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The `Set-Cookie` value for a new session.
pub(super) fn set_cookie(id: &str, stats_path: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={id}; HttpOnly; SameSite=Strict; Path={stats_path}{secure}")
}

/// A request without `Origin` is allowed (the token decides); with one, its scheme must be this
/// server's and its host and port the request's `Host`. Browsers send `Origin` on every
/// cross-site POST, so a forged form from another site is refused even before its token is
/// looked at.
pub(super) fn origin_allowed(headers: &HeaderMap, tls: bool) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let (scheme, default_port) = if tls { ("https", 443) } else { ("http", 80) };
    let Some(origin) = origin
        .to_str()
        .ok()
        .and_then(|o| o.strip_prefix(scheme))
        .and_then(|o| o.strip_prefix("://"))
    else {
        return false;
    };
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    match (
        authority(origin, default_port),
        authority(host, default_port),
    ) {
        (Some(origin), Some(host)) => origin == host,
        _ => false,
    }
}

/// `host[:port]` or `[v6]:port`, lowercased, with the scheme's default port filled in.
pub(super) fn authority(s: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', '[', ']', ' ']) {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_session_allows_only_its_token_and_user() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let page = sessions.open(None, "admin", now, true).unwrap();
        let id = page.new_id.unwrap();
        assert_eq!((id.len(), page.token.len()), (32, 32));
        assert!(sessions.allows(Some(&id), "admin", &page.token, now));
        assert!(!sessions.allows(Some(&id), "admin", "", now));
        assert!(!sessions.allows(Some(&id), "admin", &"0".repeat(32), now));
        assert!(!sessions.allows(Some(&id), "ops", &page.token, now));
        assert!(!sessions.allows(None, "admin", &page.token, now));
        assert!(!sessions.allows(Some("unknown"), "admin", &page.token, now));
    }

    #[test]
    fn a_live_session_is_reused_and_keeps_its_flash_for_one_page() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let first = sessions.open(None, "admin", now, true).unwrap();
        let id = first.new_id.unwrap();
        let flash = vec![Flash {
            ok: true,
            text: "done".into(),
        }];
        sessions.set_flash(&id, flash.clone());
        let head = sessions.open(Some(&id), "admin", now, false).unwrap();
        assert!(head.flash.is_empty(), "a HEAD shows no flash");
        let again = sessions.open(Some(&id), "admin", now, true).unwrap();
        assert_eq!(
            (again.new_id, again.token, again.flash),
            (None, first.token, flash)
        );
        assert!(
            sessions
                .open(Some(&id), "admin", now, true)
                .unwrap()
                .flash
                .is_empty()
        );
        // Another user's cookie does not carry over: a new session.
        assert!(
            sessions
                .open(Some(&id), "ops", now, true)
                .unwrap()
                .new_id
                .is_some()
        );
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let page = sessions.open(None, "admin", now, true).unwrap();
        let id = page.new_id.unwrap();
        let later = now + IDLE + Duration::from_secs(1);
        assert!(!sessions.allows(Some(&id), "admin", &page.token, later));
        assert!(
            sessions
                .open(Some(&id), "admin", later, true)
                .unwrap()
                .new_id
                .is_some()
        );
        for _ in 0..MAX_SESSIONS + 10 {
            sessions.open(None, "admin", later, true).unwrap();
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
    }

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn origin_must_be_this_server() {
        let allowed = |origin: &str, host: &str, tls: bool| {
            origin_allowed(&headers(&[(ORIGIN, origin), (HOST, host)]), tls)
        };
        assert!(origin_allowed(&headers(&[(HOST, "lb:8404")]), false));
        assert!(allowed("http://lb:8404", "lb:8404", false));
        assert!(allowed("http://LB:8404", "lb:8404", false));
        assert!(allowed("http://lb", "lb:80", false));
        assert!(allowed("https://lb", "lb", true));
        assert!(allowed("http://[::1]:8404", "[::1]:8404", false));
        assert!(!allowed("http://evil.example", "lb:8404", false));
        assert!(!allowed("http://lb:8405", "lb:8404", false));
        assert!(!allowed("https://lb:8404", "lb:8404", false));
        assert!(!allowed("http://lb:8404", "lb:8404", true));
        assert!(!allowed("null", "lb:8404", false));
        assert!(!allowed("http://lb:8404@evil", "lb:8404", false));
        assert!(!allowed("http://[::1]:8404", "[::2]:8404", false));
        assert!(!origin_allowed(&headers(&[(ORIGIN, "http://lb")]), false));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let map = headers(&[(COOKIE, "a=1; fulcrum_admin=abc ; b=2")]);
        assert_eq!(cookie(&map), Some("abc"));
        let map = headers(&[(COOKIE, "a=1"), (COOKIE, "fulcrum_admin=def")]);
        assert_eq!(cookie(&map), Some("def"));
        assert_eq!(cookie(&headers(&[(COOKIE, "fulcrum_admin2=x")])), None);
        assert_eq!(
            set_cookie("abc", "/stats", true),
            "fulcrum_admin=abc; HttpOnly; SameSite=Strict; Path=/stats; Secure"
        );
    }
}
