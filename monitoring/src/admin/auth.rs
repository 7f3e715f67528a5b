//! HTTP basic authentication for the stats page (HAProxy's `stats auth USER:PASSWORD`).
//!
//! Passwords are compared in constant time, and every configured user is compared on each
//! attempt, so the time an answer takes does not tell how much of a guess was right (it still
//! tells a password's length, as nearly every basic-auth server's does).

use base64::Engine as _;
use http::{HeaderMap, header::AUTHORIZATION};
use subtle::ConstantTimeEq;

use crate::config::User;

/// The `WWW-Authenticate` challenge of a 401.
pub(super) const CHALLENGE: &str = "Basic realm=\"Fulcrum statistics\"";

/// What a request's credentials come to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Auth<'a> {
    /// No users are configured: the page is open, and admin actions are refused.
    Open,
    /// Logged in as this configured user.
    User(&'a User),
    /// No `Authorization` header: a browser's first request, answered with the challenge.
    Missing,
    /// Credentials that match no user; the user name given, if one could be read, for the log.
    Refused(Option<String>),
}

/// Checks the request's basic-auth credentials against `users`.
pub(super) fn check<'a>(users: &'a [User], headers: &HeaderMap) -> Auth<'a> {
    if users.is_empty() {
        return Auth::Open;
    }
    let Some(header) = headers.get(AUTHORIZATION) else {
        return Auth::Missing;
    };
    let Some((name, password)) = header.to_str().ok().and_then(basic_credentials) else {
        return Auth::Refused(None);
    };
    let mut found = None;
    for user in users {
        // `&` rather than `&&`, and no early return: the same work whichever part differs.
        let matches = user.name.as_bytes().ct_eq(name.as_bytes())
            & user.password.as_bytes().ct_eq(password.as_bytes());
        if bool::from(matches) {
            found = Some(user);
        }
    }
    match found {
        Some(name) => Auth::User(name),
        None => Auth::Refused(Some(name)),
    }
}

/// Decodes `Basic BASE64(name:password)` (RFC 7617). The scheme is case-insensitive; the user
/// name ends at the first `:` (so it may not hold one, which the config enforces).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// A user name as it goes into a log line: at most 64 characters, so a client cannot flood the
/// log through it (tracing's `?` formatting escapes control characters).
pub(super) fn loggable(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn users() -> Vec<User> {
        vec![
            User {
                name: "admin".into(),
                password: "s3cret".into(),
                read_only: false,
            },
            User {
                name: "ops".into(),
                password: "pässword".into(),
                read_only: true,
            },
        ]
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn basic(credentials: &str) -> HeaderMap {
        headers(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ))
    }

    #[test]
    fn right_credentials_are_accepted() {
        let users = users();
        assert_eq!(check(&users, &basic("admin:s3cret")), Auth::User(&users[0]));
        assert_eq!(check(&users, &basic("ops:pässword")), Auth::User(&users[1]));
        // The scheme is case-insensitive, and a password may hold `:`.
        let colon = vec![User {
            name: "a".into(),
            password: "b:c".into(),
            read_only: false,
        }];
        assert_eq!(check(&colon, &basic("a:b:c")), Auth::User(&colon[0]));
        let lower = format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode("admin:s3cret")
        );
        assert_eq!(check(&users, &headers(&lower)), Auth::User(&users[0]));
    }

    #[test]
    fn wrong_or_missing_credentials_are_refused() {
        let users = users();
        assert_eq!(check(&users, &HeaderMap::new()), Auth::Missing);
        assert_eq!(
            check(&users, &basic("admin:wrong")),
            Auth::Refused(Some("admin".into()))
        );
        // Another user's password is not this user's.
        assert_eq!(
            check(&users, &basic("admin:pässword")),
            Auth::Refused(Some("admin".into()))
        );
        assert_eq!(
            check(&users, &basic("admin:s3cret2")),
            Auth::Refused(Some("admin".into()))
        );
        assert_eq!(
            check(&users, &basic("nobody:s3cret")),
            Auth::Refused(Some("nobody".into()))
        );
        assert_eq!(check(&users, &basic("admins3cret")), Auth::Refused(None));
        assert_eq!(check(&users, &headers("Basic !!!")), Auth::Refused(None));
        assert_eq!(
            check(&users, &headers("Bearer abc.def")),
            Auth::Refused(None)
        );
        assert_eq!(check(&users, &headers("Basic")), Auth::Refused(None));
    }

    #[test]
    fn without_users_the_page_is_open() {
        assert_eq!(check(&[], &basic("admin:s3cret")), Auth::Open);
        assert_eq!(check(&[], &HeaderMap::new()), Auth::Open);
    }
}
