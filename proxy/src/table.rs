//! The routing table: a validated [`Config`] joined with the runtime state of everything it
//! names. Requests read it through an `ArcSwap`; a reload builds a new one and swaps it whole,
//! so a request in flight finishes on the table it started with.

use std::{collections::HashMap, sync::Arc};

use crate::{
    config::{Backend, Config, Frontend},
    l7::balance::Balancer,
    state::{AdminState, BackendState, FrontendState, Registry, ServerState},
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
    /// The server whose persistence cookie value is `value`.
    pub(crate) fn server_by_cookie(&self, value: &str) -> Option<usize> {
        self.cookies.get(value).copied()
    }
}

impl Table {
    /// Joins `config` with the state kept in `registry`, creating state for new names. A server
    /// configured `disabled` starts in MAINT the first time it is seen.
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
                let servers = b
                    .servers
                    .iter()
                    .map(|s| {
                        let (state, created) =
                            registry.server(&b.name, &s.name, s.addr, s.weight, b.pool_max_idle);
                        if s.disabled && created {
                            state.set_admin(AdminState::Maint);
                        }
                        state
                    })
                    .collect();
                let cookies = b
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.cookie.clone(), i))
                    .collect();
                BackendEntry {
                    state: registry.backend(&b.name),
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
