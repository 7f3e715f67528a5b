//! What the NRPE agent counts: `fulcrum_nrpe_requests_total{command, state}` for every request
//! answered, `fulcrum_nrpe_refused_total{reason}` for every connection closed without an answer.

use prometheus::{IntCounterVec, Opts, Registry};

use crate::checks::State;

/// The `command` label of a request for a command that is not configured: the client's text
/// would let any client grow the label set without bound.
pub const UNDEFINED_COMMAND: &str = "(undefined)";

/// Why a connection was closed without an answer, as NRPE closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client's address is not in `allowed_hosts`.
    Host,
    Crc,
    Version,
    /// A `buffer_length` out of range, or a packet cut short.
    Length,
    /// A packet that is not a query.
    Type,
    /// A query without a command.
    Empty,
    /// Arguments while `allow_arguments` is off, or an empty argument.
    Arguments,
    /// NRPE's metacharacters, or `$(` in an argument.
    Metachar,
    /// No whole request within `connection_timeout`.
    Timeout,
    /// A failed TLS handshake (plain client, `check_nrpe -d 2`, ...).
    Tls,
}

impl Refusal {
    const ALL: [Self; 10] = [
        Self::Host,
        Self::Crc,
        Self::Version,
        Self::Length,
        Self::Type,
        Self::Empty,
        Self::Arguments,
        Self::Metachar,
        Self::Timeout,
        Self::Tls,
    ];

    /// The `reason` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Crc => "crc",
            Self::Version => "version",
            Self::Length => "length",
            Self::Type => "type",
            Self::Empty => "empty",
            Self::Arguments => "arguments",
            Self::Metachar => "metachar",
            Self::Timeout => "timeout",
            Self::Tls => "tls",
        }
    }
}

/// The `state` label.
pub(super) const fn state_label(state: State) -> &'static str {
    match state {
        State::Ok => "ok",
        State::Warning => "warning",
        State::Critical => "critical",
        State::Unknown => "unknown",
    }
}

/// The two counters, registered in the appliance's registry while the server runs.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    requests: IntCounterVec,
    refused: IntCounterVec,
}

impl Metrics {
    /// Registers both counters; every refusal reason starts at 0 so that it shows before the
    /// first one happens.
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "fulcrum_nrpe_requests_total",
                "NRPE requests answered, by command and by the state answered.",
            ),
            &["command", "state"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "fulcrum_nrpe_refused_total",
                "NRPE connections closed without an answer, by reason.",
            ),
            &["reason"],
        )?;
        for reason in Refusal::ALL {
            refused.with_label_values(&[reason.as_str()]);
        }
        registry.register(Box::new(requests.clone()))?;
        if let Err(e) = registry.register(Box::new(refused.clone())) {
            let _ = registry.unregister(Box::new(requests));
            return Err(e);
        }
        Ok(Self { requests, refused })
    }

    /// Takes both counters out of `registry`, so that a restarted server can register its own.
    pub(crate) fn unregister(&self, registry: &Registry) {
        let _ = registry.unregister(Box::new(self.requests.clone()));
        let _ = registry.unregister(Box::new(self.refused.clone()));
    }

    pub(crate) fn answered(&self, command: &str, state: State) {
        self.requests
            .with_label_values(&[command, state_label(state)])
            .inc();
    }

    pub(crate) fn refused(&self, reason: Refusal) {
        self.refused.with_label_values(&[reason.as_str()]).inc();
    }
}
