//! What operators do to a server at run time, from the stats page's form, `fulcrum ctl` or the
//! control socket, in HAProxy's vocabulary ([`ServerAction`]): set its admin state or weight,
//! turn its health checks off and on, shut its sessions down. A backend name may name an L7
//! backend or an L4 virtual service, whose servers are named by address as the stats show them.

use std::{net::SocketAddr, sync::Arc};

use fulcrum_common::action::{ServerAction, ServerRef};

use crate::{
    l4::tier::Tier,
    runtime::Runtime,
    state::{ServerState, ServerStatus},
};

/// Why an action was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("no backend or virtual service is called `{0}`")]
    UnknownBackend(String),
    #[error("`{backend}` has no server `{server}`; its servers are: {known}")]
    UnknownServer {
        backend: String,
        server: String,
        /// The names it has, comma-separated.
        known: String,
    },
    #[error("{server}: weight {weight} is out of range, it must be 0 to {max}")]
    WeightOutOfRange {
        server: String,
        weight: u32,
        max: u32,
    },
    #[error("{0}: health checks are not configured on this server")]
    NoHealthCheck(String),
    #[error("{0}: no agent check is configured on this server")]
    NoAgentCheck(String),
}

/// Carries out `action` on `target`; the message says what changed, as `web/s1: UP -> DRAIN`.
pub(crate) fn apply(
    rt: &Runtime,
    l4: &Tier,
    target: &ServerRef,
    action: ServerAction,
) -> Result<String, ActionError> {
    let server = find(rt, l4, target)?;
    let label = format!("{}/{}", server.backend, server.name);
    let message = match action {
        ServerAction::SetState(admin) => {
            let (from, to) = server.set_admin(admin);
            report(rt, &server, from, to, action);
            format!("{label}: {from} -> {to}")
        }
        ServerAction::SetWeight(weight) => {
            let max = server.weight_max();
            if weight > max {
                return Err(ActionError::WeightOutOfRange {
                    server: label,
                    weight,
                    max,
                });
            }
            let before = server.weight();
            server.set_weight(weight);
            format!("{label}: weight {before} -> {weight}")
        }
        ServerAction::DisableHealth => {
            if !server.check_configured() {
                return Err(ActionError::NoHealthCheck(label));
            }
            let (from, to) = server.disable_checks();
            report(rt, &server, from, to, action);
            format!("{label}: health checks disabled, {from} -> {to}")
        }
        ServerAction::EnableHealth => {
            if !server.check_configured() {
                return Err(ActionError::NoHealthCheck(label));
            }
            server.enable_checks();
            format!("{label}: health checks enabled, {}", server.status())
        }
        ServerAction::DisableAgent => {
            let Some((from, to)) = server.disable_agent() else {
                return Err(ActionError::NoAgentCheck(label));
            };
            report(rt, &server, from, to, action);
            format!("{label}: agent check disabled, {from} -> {to}")
        }
        ServerAction::EnableAgent => {
            if !server.agent_configured() {
                return Err(ActionError::NoAgentCheck(label));
            }
            server.enable_agent();
            format!("{label}: agent check enabled, {}", server.status())
        }
        ServerAction::ShutdownSessions => {
            let sessions = server.active();
            server.shutdown_sessions();
            format!("{label}: {sessions} sessions shut down")
        }
    };
    tracing::info!(backend = %server.backend, server = %server.name, %action, %message, "admin action");
    Ok(message)
}

/// Emits the status change an action made, if it made one.
fn report(
    rt: &Runtime,
    server: &ServerState,
    from: ServerStatus,
    to: ServerStatus,
    action: ServerAction,
) {
    if from != to {
        rt.emit_status(server, from, format!("admin action: {action}"));
    }
}

/// The names of an error message, the first few of a long list: each refused server of an
/// action gets its own message.
fn known_list(names: &[String]) -> String {
    const SHOWN: usize = 10;
    match names.len().checked_sub(SHOWN) {
        Some(more) if more > 0 => format!("{}, and {more} more", names[..SHOWN].join(", ")),
        _ => names.join(", "),
    }
}

/// The server `target` names: an L7 backend's server by name, else a virtual service's real
/// server (or fallback) by address.
fn find(rt: &Runtime, l4: &Tier, target: &ServerRef) -> Result<Arc<ServerState>, ActionError> {
    let unknown = |names: Vec<String>| ActionError::UnknownServer {
        backend: target.backend.clone(),
        server: target.server.clone(),
        known: known_list(&names),
    };
    let table = rt.table.load();
    if let Some(index) = table
        .config
        .backends
        .iter()
        .position(|b| b.name == target.backend)
        && let Some((_, entry)) = table.backend(index)
    {
        return entry
            .servers
            .iter()
            .find(|s| s.name == target.server)
            .cloned()
            .ok_or_else(|| unknown(entry.servers.iter().map(|s| s.name.clone()).collect()));
    }
    let services = l4.services();
    let Some((service, _)) = services.iter().find(|(s, _)| s.name == target.backend) else {
        return Err(ActionError::UnknownBackend(target.backend.clone()));
    };
    let members = service.members();
    // An address may be written another way than the stats show it (`[::1]:80` vs `[0::1]:80`).
    let found = match target.server.parse::<SocketAddr>() {
        Ok(addr) => members.find(addr).map(|r| Arc::clone(&r.server)),
        Err(_) => None,
    };
    found.ok_or_else(|| unknown(members.all().map(|s| s.name.clone()).collect()))
}

#[cfg(test)]
mod tests {
    use super::known_list;

    #[test]
    fn a_long_list_of_known_servers_is_cut_after_ten() {
        let names: Vec<String> = (1..=3).map(|i| format!("s{i}")).collect();
        assert_eq!(known_list(&names), "s1, s2, s3");
        let names: Vec<String> = (1..=500).map(|i| format!("s{i}")).collect();
        let shown = known_list(&names);
        assert!(shown.starts_with("s1, s2,"), "{shown}");
        assert!(shown.ends_with("s10, and 490 more"), "{shown}");
    }
}
