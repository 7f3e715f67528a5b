//! The control socket's request language: HAProxy's runtime API lines where one exists (`show
//! stat`, `show servers state`, `set server B/S state drain`, `set server B/S weight 5`,
//! `enable health B/S`, `disable health B/S`, `enable agent B/S`, `disable agent B/S`,
//! `shutdown sessions server B/S`), Fulcrum's own
//! (`show l4`, `show vrrp`, `show stat json`), and the `fulcrum ctl server set-state B/S drain` spelling.

use fulcrum_common::action::{AdminState, ServerAction, ServerRef, parse_weight};

/// One request line, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// The L4 tier as JSON, for `fulcrum status l4`.
    ShowL4,
    /// The VRRP instances as JSON, for `fulcrum status vrrp`.
    ShowVrrp,
    /// The replicated volumes as JSON, for `fulcrum status volume`.
    ShowVolume,
    /// The directory sync sets as JSON, for `fulcrum status sync`.
    ShowSync,
    /// An action on one volume, as `drbdadm` verbs.
    Volume(String, VolumeAction),
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

/// What `fulcrum volume` (and the control socket's `volume ...` requests) do to a volume, with
/// `drbdadm`'s verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VolumeAction {
    /// `drbdadm primary [--force]`.
    Primary { force: bool },
    /// `drbdadm secondary`.
    Secondary,
    /// `drbdadm connect [--discard-my-data]`.
    Connect { discard_my_data: bool },
    /// `drbdadm disconnect`.
    Disconnect,
    /// `drbdadm verify`.
    Verify,
}

/// What `help` answers, and the hint after an unknown request.
pub(crate) const HELP: &str = "\
show stat                              all frontends, backends and servers as CSV
show stat json                         the same as JSON
show servers state                     one line per server
show l4                                the L4 tier as JSON (fulcrum status l4)
show vrrp                              the VRRP instances as JSON (fulcrum status vrrp)
show volume                            the replicated volumes as JSON (fulcrum status volume)
show sync                              the directory sync sets as JSON (fulcrum status sync)
volume primary NAME [--force]          promote (drbdadm primary)
volume secondary NAME                  demote (drbdadm secondary)
volume connect NAME [--discard-my-data]  leave StandAlone; resolve a split brain
volume disconnect NAME                 go StandAlone
volume verify NAME                     online verify
set server B/S state ready|drain|maint
set server B/S weight N                (also: set weight B/S N)
disable server B/S | enable server B/S  maint, and back to ready
enable health B/S | disable health B/S
enable agent B/S | disable agent B/S
shutdown sessions server B/S
server set-state B/S ready|drain|maint  (also: set-weight, enable-health, disable-health,
                                         enable-agent, disable-agent, shutdown-sessions)
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
        ["show", "volume"] => Request::ShowVolume,
        ["show", "sync"] => Request::ShowSync,
        ["volume", verb, name, flags @ ..] => {
            let flag = |wanted: &str| -> Result<bool, String> {
                match flags {
                    [] => Ok(false),
                    [f] if *f == wanted => Ok(true),
                    _ => Err(format!(
                        "`volume {verb}` takes {}",
                        if wanted.is_empty() {
                            "no option".to_owned()
                        } else {
                            format!("only {wanted}")
                        }
                    )),
                }
            };
            let action = match *verb {
                "primary" => VolumeAction::Primary {
                    force: flag("--force")?,
                },
                "secondary" => {
                    flag("")?;
                    VolumeAction::Secondary
                }
                "connect" => VolumeAction::Connect {
                    discard_my_data: flag("--discard-my-data")?,
                },
                "disconnect" => {
                    flag("")?;
                    VolumeAction::Disconnect
                }
                "verify" => {
                    flag("")?;
                    VolumeAction::Verify
                }
                other => {
                    return Err(format!(
                        "unknown volume action `{other}`: use primary, secondary, connect, disconnect or verify"
                    ));
                }
            };
            Request::Volume((*name).to_owned(), action)
        }
        ["show", "stat"] => Request::ShowStat,
        ["show", "stat", "json"] => Request::ShowStatJson,
        ["show", "servers", "state"] => Request::ShowServersState,
        ["help"] => Request::Help,
        ["set", "server", s, "state", st] | ["server", "set-state", s, st] => {
            Request::Server(server(s)?, state(st)?)
        }
        ["set", "server", s, "weight", w]
        | ["set", "weight", s, w]
        | ["server", "set-weight", s, w] => Request::Server(server(s)?, weight(w)?),
        // HAProxy's older spellings of `state maint` and `state ready`.
        ["disable", "server", s] => {
            Request::Server(server(s)?, ServerAction::SetState(AdminState::Maint))
        }
        ["enable", "server", s] => {
            Request::Server(server(s)?, ServerAction::SetState(AdminState::Ready))
        }
        ["enable", "health", s] | ["server", "enable-health", s] => {
            Request::Server(server(s)?, ServerAction::EnableHealth)
        }
        ["disable", "health", s] | ["server", "disable-health", s] => {
            Request::Server(server(s)?, ServerAction::DisableHealth)
        }
        ["enable", "agent", s] | ["server", "enable-agent", s] => {
            Request::Server(server(s)?, ServerAction::EnableAgent)
        }
        ["disable", "agent", s] | ["server", "disable-agent", s] => {
            Request::Server(server(s)?, ServerAction::DisableAgent)
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
        assert_eq!(parse("set weight web/s1 5"), Ok(weight.clone()));
        assert_eq!(parse("server set-weight web/s1 5"), Ok(weight));
        assert_eq!(
            parse("disable server web/s1"),
            Ok(Request::Server(
                web_s1(),
                ServerAction::SetState(AdminState::Maint)
            ))
        );
        assert_eq!(
            parse("enable server web/s1"),
            Ok(Request::Server(
                web_s1(),
                ServerAction::SetState(AdminState::Ready)
            ))
        );
        assert_eq!(
            parse("disable health web/s1"),
            Ok(Request::Server(web_s1(), ServerAction::DisableHealth))
        );
        assert_eq!(
            parse("disable agent web/s1"),
            Ok(Request::Server(web_s1(), ServerAction::DisableAgent))
        );
        assert_eq!(
            parse("server enable-agent web/s1"),
            Ok(Request::Server(web_s1(), ServerAction::EnableAgent))
        );
        assert_eq!(
            parse("shutdown sessions server web/s1"),
            Ok(Request::Server(web_s1(), ServerAction::ShutdownSessions))
        );
        assert_eq!(parse("  show   stat \n"), Ok(Request::ShowStat));
        assert_eq!(parse("show l4"), Ok(Request::ShowL4));
    }

    #[test]
    fn volume_actions_take_drbdadm_verbs_and_options() {
        assert_eq!(
            parse("volume connect nfs --discard-my-data"),
            Ok(Request::Volume(
                "nfs".into(),
                VolumeAction::Connect {
                    discard_my_data: true
                }
            ))
        );
        assert_eq!(
            parse("volume primary nfs"),
            Ok(Request::Volume(
                "nfs".into(),
                VolumeAction::Primary { force: false }
            ))
        );
        assert_eq!(
            parse("volume primary nfs --force"),
            Ok(Request::Volume(
                "nfs".into(),
                VolumeAction::Primary { force: true }
            ))
        );
        assert!(
            parse("volume secondary nfs --force")
                .unwrap_err()
                .contains("no option")
        );
        assert!(
            parse("volume resize nfs")
                .unwrap_err()
                .contains("unknown volume action")
        );
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
