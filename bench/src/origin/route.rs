//! The special paths a test can ask for: `/status/NNN`, `/delay/MS` and `/size/N`.

use std::time::Duration;

use http::StatusCode;

use crate::size::parse_size;

/// The largest body `/size/N` produces, so a stray request cannot make the origin allocate
/// without bound.
pub const MAX_SIZE: usize = 64 << 20;

/// What a request path asks of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// Anything that is not a special path.
    Default,
    /// `/status/NNN`.
    Status(StatusCode),
    /// `/delay/MS`.
    Delay(Duration),
    /// `/size/N`.
    Size(usize),
    /// A special path with a bad argument; the reason goes back in a 400.
    Invalid(&'static str),
}

impl Route {
    pub(super) fn parse(path: &str) -> Self {
        if let Some(code) = path.strip_prefix("/status/") {
            match code.parse::<u16>().ok().and_then(final_status) {
                Some(status) => Self::Status(status),
                None => Self::Invalid("status must be a number from 200 to 599\n"),
            }
        } else if let Some(millis) = path.strip_prefix("/delay/") {
            match millis.parse::<u64>() {
                Ok(millis) => Self::Delay(Duration::from_millis(millis)),
                Err(_) => Self::Invalid("delay must be a number of milliseconds\n"),
            }
        } else if let Some(size) = path.strip_prefix("/size/") {
            match parse_size(size) {
                Ok(size) if size <= MAX_SIZE => Self::Size(size),
                Ok(_) => Self::Invalid("size is larger than 64MiB\n"),
                Err(_) => Self::Invalid("size must be a number of bytes, units allowed\n"),
            }
        } else {
            Self::Default
        }
    }
}

/// A status the origin may answer a regular request with: informational ones would confuse the
/// client's framing, and anything past 599 is not HTTP.
pub(super) fn final_status(code: u16) -> Option<StatusCode> {
    if (200..=599).contains(&code) {
        StatusCode::from_u16(code).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;

    use super::{MAX_SIZE, Route};

    #[test]
    fn special_paths() {
        assert_eq!(
            Route::parse("/status/503"),
            Route::Status(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            Route::parse("/delay/250"),
            Route::Delay(Duration::from_millis(250))
        );
        assert_eq!(Route::parse("/size/10"), Route::Size(10));
        assert_eq!(Route::parse("/size/1KiB"), Route::Size(1024));
        assert_eq!(Route::parse("/size/64MiB"), Route::Size(MAX_SIZE));
    }

    #[test]
    fn everything_else_is_default() {
        for path in ["/", "/status", "/statuses/200", "/index.html", "/size"] {
            assert_eq!(Route::parse(path), Route::Default, "{path}");
        }
    }

    #[test]
    fn bad_arguments_are_invalid() {
        for path in [
            "/status/abc",
            "/status/101",
            "/status/600",
            "/status/",
            "/delay/-1",
            "/delay/1s",
            "/size/huge",
            "/size/65MiB",
        ] {
            assert!(matches!(Route::parse(path), Route::Invalid(_)), "{path}");
        }
    }
}
