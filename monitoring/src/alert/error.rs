//! Why a delivery failed, and whether trying again may help.

use std::time::Duration;

/// A failed attempt at delivering one alert to one sink.
#[derive(Debug, thiserror::Error)]
pub(super) enum DeliveryError {
    #[error("the sink could not be set up: {0}")]
    Unusable(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS with {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    #[error("the receiver answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("cannot build the mail: {0}")]
    Mail(#[from] lettre::error::Error),
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Exit {
        program: String,
        status: String,
        stderr: String,
    },
}

impl DeliveryError {
    /// False when the same request would fail the same way: the receiver refused the alert
    /// itself (HTTP 4xx but 408 and 429, an SMTP 5xx), or the mail cannot be built.
    pub(super) fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => {
                !(400..500).contains(status) || *status == 408 || *status == 429
            }
            Self::Smtp(e) => !e.is_permanent(),
            Self::Mail(_) | Self::Request(_) | Self::Unusable(_) => false,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_final_but_throttling_is_not() {
        let status = |status| DeliveryError::Status {
            status,
            body: String::new(),
        };
        assert!(!status(400).is_retryable());
        assert!(status(429).is_retryable());
        assert!(status(503).is_retryable());
        assert!(DeliveryError::Timeout(Duration::from_secs(1)).is_retryable());
    }
}
