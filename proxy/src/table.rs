//! The routing table: a validated [`Config`] joined with the runtime state of everything it
//! names. Requests read it through an `ArcSwap`; a reload builds a new one and swaps it whole,
//! so a request in flight finishes on the table it started with.

use std::{collections::HashMap, sync::Arc};

use http::HeaderMap;

use crate::{
    config::{Backend, Config, Cookie, Frontend},
    l7::balance::Balancer,
    l7::cookie::{self, RequestCookie},
    state::{BackendState, FrontendState, Registry, ServerState},
};

/// One generation of routing state.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) config: Config,
    pub(crate) frontends: Vec<FrontendEntry>,
    pub(crate) backends: Vec<BackendEntry>,
}

/// A frontend's config and runtime state.
#[derive(Debug)]
pub(crate) struct FrontendEntry {
    pub(crate) state: Arc<FrontendState>,
}

/// A backend's runtime state, its servers' states and its balancer.
#[derive(Debug)]
pub(crate) struct BackendEntry {
    pub(crate) state: Arc<BackendState>,
    /// Parallel to the config's `servers`.
    pub(crate) servers: Vec<Arc<ServerState>>,
    pub(crate) balancer: Balancer,
    /// Persistence cookie value -> server index.
    cookies: HashMap<String, usize>,
}

impl BackendEntry {
    /// What the request's persistence cookie says ([`cookie::from_request`]) when the backend
    /// sets one (`cookie` is its config's).
    pub(crate) fn request_cookie(
        &self,
        cookie: Option<&Cookie>,
        headers: &HeaderMap,
    ) -> Option<RequestCookie> {
        cookie.map(|c| {
            cookie::from_request(
                c,
                headers,
                |value| self.cookies.get(value).copied(),
                |i| {
                    self.servers
                        .get(i)
                        .is_some_and(|s| s.takes_sticky_clients())
                },
            )
        })
    }
}

impl Table {
    /// Joins `config` with the state kept in `registry`, creating state for new names and
    /// applying `weight` and `disabled` where the config changed them.
    pub(crate) fn build(config: Config, registry: &Registry) -> Self {
        let frontends = config
            .frontends
            .iter()
            .map(|f| FrontendEntry {
                state: registry.frontend(&f.name),
            })
            .collect();
        let backends = config
            .backends
            .iter()
            .map(|b| {
                let servers: Vec<_> = b
                    .servers
                    .iter()
                    .map(|s| {
                        let state =
                            registry.server(&b.name, &s.name, s.addr, s.weight, b.pool_max_idle);
                        state.apply_config(s.weight, s.disabled);
                        state
                    })
                    .collect();
                let state = registry.backend(&b.name);
                state.availability.set_members(&servers);
                let cookies = b
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.cookie.clone(), i))
                    .collect();
                BackendEntry {
                    state,
                    servers,
                    balancer: Balancer::new(b.algorithm.clone()),
                    cookies,
                }
            })
            .collect();
        Self {
            config,
            frontends,
            backends,
        }
    }

    /// The frontend called `name` with its index.
    pub(crate) fn frontend(&self, name: &str) -> Option<(usize, &Frontend)> {
        self.config
            .frontends
            .iter()
            .enumerate()
            .find(|(_, f)| f.name == name)
    }

    /// A backend's config and runtime entry.
    pub(crate) fn backend(&self, index: usize) -> Option<(&Backend, &BackendEntry)> {
        Some((self.config.backends.get(index)?, self.backends.get(index)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::{
        config::{Sections, build, section::BackendSection},
        state::{AdminState, ServerStatus},
    };

    fn config(server: &str) -> Config {
        let section: BackendSection = toml::from_str(&format!(
            "servers = [{{ name = \"s\", address = \"127.0.0.1:1\", {server} }}]"
        ))
        .unwrap();
        let sections = Sections {
            backend: [("web".to_owned(), section)].into_iter().collect(),
            ..Sections::default()
        };
        build(&sections).unwrap()
    }

    #[test]
    fn a_reload_applies_what_the_file_changed_and_keeps_runtime_changes_it_did_not() {
        let registry = Registry::default();
        let first = Table::build(config("weight = 2"), &registry);
        let state = Arc::clone(&first.backends[0].servers[0]);
        state.set_weight(7); // an operator's runtime change
        Table::build(config("weight = 2"), &registry);
        assert_eq!(
            state.weight(),
            7,
            "an unchanged weight in the file keeps the runtime weight"
        );
        let again = Table::build(config("weight = 3"), &registry);
        assert!(
            Arc::ptr_eq(&state, &again.backends[0].servers[0]),
            "same server, same state"
        );
        assert_eq!(state.weight(), 3, "a changed weight in the file applies");
        Table::build(config("weight = 3, disabled = true"), &registry);
        assert_eq!(state.status(), ServerStatus::Maint);
        Table::build(config("weight = 3"), &registry);
        assert_eq!(state.admin(), AdminState::Ready);
    }
}
