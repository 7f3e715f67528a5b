//! The control socket's request language: HAProxy's runtime API lines where one exists (`show
//! stat`, `show servers state`, `set server B/S state drain`, `set server B/S weight 5`,
//! `enable health B/S`, `disable health B/S`, `shutdown sessions server B/S`), Fulcrum's own
//! (`show l4`, `show vrrp`, `show stat json`), and the `fulcrum ctl server set-state B/S drain` spelling.

use fulcrum_common::action::{AdminState, ServerAction, ServerRef, parse_weight};

/// One request line, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// The L4 tier as JSON, for `fulcrum status l4`.
    ShowL4,
    /// The VRRP instances as JSON, for `fulcrum status vrrp`.
    ShowVrrp,
    /// Every row as HAProxy's CSV.
    ShowStat,
    /// The whole snapshot as JSON.
    ShowStatJson,
    /// One line per server: backend, server, address, status, weights, last check.
    ShowServersState,
    /// An action on one server.
    Server(ServerRef, ServerAction),
    Help,
}

/// What `help` answers, and the hint after an unknown request.
pub(crate) const HELP: &str = "\
show stat                              all frontends, backends and servers as CSV
show stat json                         the same as JSON
show servers state                     one line per server
show l4                                the L4 tier as JSON (fulcrum status l4)
show vrrp                              the VRRP instances as JSON (fulcrum status vrrp)
set server B/S state ready|drain|maint
set server B/S weight N
enable health B/S | disable health B/S
shutdown sessions server B/S
server set-state B/S ready|drain|maint  (also: set-weight, enable-health, disable-health,
                                         shutdown-sessions)
";

/// Parses one request line; the error says what was wrong.
pub(crate) fn parse(line: &str) -> Result<Request, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let server =
        |s: &str| ServerRef::parse(s).ok_or_else(|| format!("`{s}` is not BACKEND/SERVER"));
    let state = |s: &str| {
        AdminState::parse(s)
            .map(ServerAction::SetState)
            .ok_or_else(|| format!("unknown state `{s}`: use ready, drain or maint"))
    };
    let weight = |s: &str| parse_weight(s).map(ServerAction::SetWeight);
    Ok(match words.as_slice() {
        ["show", "l4"] => Request::ShowL4,
        ["show", "vrrp"] => Request::ShowVrrp,
        ["show", "stat"] => Request::ShowStat,
        ["show", "stat", "json"] => Request::ShowStatJson,
        ["show", "servers", "state"] => Request::ShowServersState,
        ["help"] => Request::Help,
        ["set", "server", s, "state", st] | ["server", "set-state", s, st] => {
            Request::Server(server(s)?, state(st)?)
        }
        ["set", "server", s, "weight", w] | ["server", "set-weight", s, w] => {
            Request::Server(server(s)?, weight(w)?)
        }
        ["enable", "health", s] | ["server", "enable-health", s] => {
            Request::Server(server(s)?, ServerAction::EnableHealth)
        }
        ["disable", "health", s] | ["server", "disable-health", s] => {
            Request::Server(server(s)?, ServerAction::DisableHealth)
        }
        ["shutdown", "sessions", "server", s] | ["server", "shutdown-sessions", s] => {
            Request::Server(server(s)?, ServerAction::ShutdownSessions)
        }
        _ => return Err(format!("unknown request `{}`; try `help`", line.trim())),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn web_s1() -> ServerRef {
        ServerRef::parse("web/s1").unwrap()
    }

    #[test]
    fn haproxy_runtime_api_and_ctl_spellings_agree() {
        let drain = Request::Server(web_s1(), ServerAction::SetState(AdminState::Drain));
        assert_eq!(parse("set server web/s1 state drain"), Ok(drain.clone()));
        assert_eq!(parse("server set-state web/s1 drain"), Ok(drain));
        let weight = Request::Server(web_s1(), ServerAction::SetWeight(5));
        assert_eq!(parse("set server web/s1 weight 5"), Ok(weight.clone()));
        assert_eq!(parse("server set-weight web/s1 5"), Ok(weight));
        assert_eq!(
            parse("disable health web/s1"),
            Ok(Request::Server(web_s1(), ServerAction::DisableHealth))
        );
        assert_eq!(
            parse("shutdown sessions server web/s1"),
            Ok(Request::Server(web_s1(), ServerAction::ShutdownSessions))
        );
        assert_eq!(parse("  show   stat \n"), Ok(Request::ShowStat));
        assert_eq!(parse("show l4"), Ok(Request::ShowL4));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert!(
            parse("set server web state drain")
                .unwrap_err()
                .contains("BACKEND/SERVER")
        );
        assert!(
            parse("set server web/s1 state up")
                .unwrap_err()
                .contains("unknown state")
        );
        assert!(
            parse("set server web/s1 weight lots")
                .unwrap_err()
                .contains("whole number")
        );
        assert!(parse("reboot").unwrap_err().contains("try `help`"));
    }
}
