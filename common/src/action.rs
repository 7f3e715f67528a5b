//! What an operator can do to a server, from the stats page's form, `fulcrum ctl` or the control
//! socket, in HAProxy's vocabulary: its form's `action` values (`ready`, `drain`, `maint`,
//! `dhlth`, `ehlth`, `dagent`, `eagent`, `shutdown`) and its runtime API's
//! `set server B/S state|weight`.

use std::fmt;

/// Whether `name` can name a frontend, a backend, a virtual server or a backend's server:
/// HAProxy's rule (letters, digits, `-`, `_`, `.` and `:`), which keeps `/` and spaces out of
/// the `BACKEND/SERVER` that [`ServerRef::parse`] reads from a request line split at spaces.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// A server of a backend (or a real server of a virtual service, named by its address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerRef {
    pub backend: String,
    pub server: String,
}

impl ServerRef {
    /// Parses `BACKEND/SERVER`, as HAProxy's runtime API writes it. The server part is taken
    /// after the first `/` (backend names have none; an address like `[::1]:80` has none either).
    pub fn parse(s: &str) -> Option<Self> {
        let (backend, server) = s.split_once('/')?;
        (!backend.is_empty() && !server.is_empty()).then(|| Self {
            backend: backend.to_owned(),
            server: server.to_owned(),
        })
    }
}

impl fmt::Display for ServerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.backend, self.server)
    }
}

/// The admin state an operator sets, as `set server ... state`. The proxy keeps it in an
/// `AtomicU8`, hence the fixed discriminants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum AdminState {
    /// Takes traffic as its health allows.
    Ready = 0,
    /// No new clients; sticky clients and persistent L4 clients are still served.
    Drain = 1,
    /// Out of service: no traffic at all, health checks stop counting.
    Maint = 2,
}

impl AdminState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ready" => Some(Self::Ready),
            "drain" => Some(Self::Drain),
            "maint" => Some(Self::Maint),
            _ => None,
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
        })
    }
}

/// One action on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerAction {
    SetState(AdminState),
    /// The effective weight; 0 takes no new clients.
    SetWeight(u32),
    /// Health checks run again; the server's state follows them.
    EnableHealth,
    /// Health checks stop and their last verdict is ignored: the server counts as UP
    /// (HAProxy's `disable health`).
    DisableHealth,
    /// The agent check runs again; its next reply applies (HAProxy's `enable agent`).
    EnableAgent,
    /// The agent check stops and a DOWN it held is let go (HAProxy's `disable agent`).
    DisableAgent,
    /// Closes every connection the server is serving now (`shutdown sessions server`).
    ShutdownSessions,
}

impl ServerAction {
    /// The action the stats page's form names: HAProxy's `action` values, plus `weight`, which
    /// takes the form's `weight` field.
    pub fn from_form(action: &str, weight: Option<&str>) -> Result<Self, String> {
        if let Some(state) = AdminState::parse(action) {
            return Ok(Self::SetState(state));
        }
        Ok(match action {
            "ehlth" => Self::EnableHealth,
            "dhlth" => Self::DisableHealth,
            "eagent" => Self::EnableAgent,
            "dagent" => Self::DisableAgent,
            "shutdown" => Self::ShutdownSessions,
            "weight" => Self::SetWeight(parse_weight(weight.unwrap_or(""))?),
            other => return Err(format!("unknown action `{other}`")),
        })
    }
}

/// A weight as operators type it: a number, or HAProxy's `NN%` is not supported (refused).
pub fn parse_weight(s: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .map_err(|_| format!("weight must be a whole number, not `{s}`"))
}

impl fmt::Display for ServerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SetState(s) => write!(f, "set state {s}"),
            Self::SetWeight(w) => write!(f, "set weight {w}"),
            Self::EnableHealth => f.write_str("enable health"),
            Self::DisableHealth => f.write_str("disable health"),
            Self::EnableAgent => f.write_str("enable agent"),
            Self::DisableAgent => f.write_str("disable agent"),
            Self::ShutdownSessions => f.write_str("shutdown sessions"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ref_parses_backend_slash_server() {
        let r = ServerRef::parse("web/s1").unwrap_or_else(|| panic!("parses"));
        assert_eq!((r.backend.as_str(), r.server.as_str()), ("web", "s1"));
        let l4 = ServerRef::parse("mysql/10.0.0.5:3306").unwrap_or_else(|| panic!("parses"));
        assert_eq!(l4.server, "10.0.0.5:3306");
        assert_eq!(ServerRef::parse("web"), None);
        assert_eq!(ServerRef::parse("/s1"), None);
        assert_eq!(ServerRef::parse("web/"), None);
    }

    #[test]
    fn form_actions_are_haproxys() {
        assert_eq!(
            ServerAction::from_form("drain", None),
            Ok(ServerAction::SetState(AdminState::Drain))
        );
        assert_eq!(
            ServerAction::from_form("dhlth", None),
            Ok(ServerAction::DisableHealth)
        );
        assert_eq!(
            ServerAction::from_form("dagent", None),
            Ok(ServerAction::DisableAgent)
        );
        assert_eq!(
            ServerAction::from_form("eagent", None),
            Ok(ServerAction::EnableAgent)
        );
        assert_eq!(
            ServerAction::from_form("weight", Some("7")),
            Ok(ServerAction::SetWeight(7))
        );
        assert!(ServerAction::from_form("weight", Some("x")).is_err());
        assert!(ServerAction::from_form("explode", None).is_err());
    }
}
