//! Where runtime state lives between reloads, found by name.

use std::{net::SocketAddr, ops::Deref, sync::Arc};

use dashmap::DashMap;
use tokio::sync::Notify;

use super::{Availability, BackendCounters, FrontendCounters, ServerState, unix_millis};
use crate::runtime::ConnLimit;

/// A backend's runtime state.
#[derive(Debug, Default)]
pub struct BackendState {
    pub counters: BackendCounters,
    /// UP while any of its servers takes new clients.
    pub availability: Arc<Availability>,
    /// Woken whenever any of the backend's servers frees a slot, for the backend's queue.
    pub(crate) slot_freed: Notify,
}

/// A request counted in its backend's sessions, current until dropped. `B` is the backend's
/// state, borrowed for an HTTP/1 exchange or owned (an `Arc`) for an HTTP/2 response body that
/// outlives its handler.
#[derive(Debug)]
pub(crate) struct BackendSession<B: Deref<Target = BackendState>>(B);

impl<B: Deref<Target = BackendState>> BackendSession<B> {
    /// Counts a request routed to `backend` now: one more session in all and under way.
    pub(crate) fn open(backend: B) -> Self {
        let counters = &backend.counters;
        counters.totals.session_started(unix_millis());
        counters.sessions.up();
        Self(backend)
    }

    /// The same session, held through `backend` (the same backend's state, owned) so that it
    /// can outlive the borrow it was opened with: a WebSocket tunnel is its backend's session
    /// until it closes, as in HAProxy. Nothing is counted again.
    pub(crate) fn hold_by<C: Deref<Target = BackendState>>(self, backend: C) -> BackendSession<C> {
        debug_assert!(std::ptr::eq(&*self.0, &*backend), "another backend");
        // Not dropped: the session goes on in the new holder, which ends it.
        let _ = std::mem::ManuallyDrop::new(self);
        BackendSession(backend)
    }
}

impl<B: Deref<Target = BackendState>> Drop for BackendSession<B> {
    fn drop(&mut self) {
        self.0.counters.sessions.down();
    }
}

/// A frontend's runtime state.
#[derive(Debug, Default)]
pub struct FrontendState {
    pub counters: FrontendCounters,
    /// The frontend's `max_connections`, shared by all its listeners.
    pub(crate) limit: Arc<ConnLimit>,
}

/// All runtime state, by name.
#[derive(Debug, Default)]
pub struct Registry {
    servers: DashMap<(String, String), Arc<ServerState>>,
    backends: DashMap<String, Arc<BackendState>>,
    frontends: DashMap<String, Arc<FrontendState>>,
}

impl Registry {
    /// The state of server `name` of `backend`, created when the name is new or its address
    /// changed (pooled connections and health would be about another machine); a kept one
    /// takes the backend's `pool_max_idle` as it is now.
    pub(crate) fn server(
        &self,
        backend: &str,
        name: &str,
        addr: SocketAddr,
        weight: u32,
        pool_max_idle: usize,
    ) -> Arc<ServerState> {
        let key = (backend.to_owned(), name.to_owned());
        let fresh = || Arc::new(ServerState::new(backend, name, addr, weight, pool_max_idle));
        let mut entry = self.servers.entry(key).or_insert_with(fresh);
        if entry.addr != addr {
            *entry = fresh();
        } else {
            entry.pool.set_capacity(pool_max_idle);
        }
        Arc::clone(&entry)
    }

    pub(crate) fn backend(&self, name: &str) -> Arc<BackendState> {
        Arc::clone(&self.backends.entry(name.to_owned()).or_default())
    }

    pub(crate) fn frontend(&self, name: &str) -> Arc<FrontendState> {
        Arc::clone(&self.frontends.entry(name.to_owned()).or_default())
    }

    /// Forgets state for names that are no longer configured.
    pub(crate) fn retain(
        &self,
        keep_server: impl Fn(&str, &str) -> bool,
        keep_backend: impl Fn(&str) -> bool,
        keep_frontend: impl Fn(&str) -> bool,
    ) {
        self.servers.retain(|(b, s), _| keep_server(b, s));
        self.backends.retain(|b, _| keep_backend(b));
        self.frontends.retain(|f, _| keep_frontend(f));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::Registry;

    // Input: server `s1` of `web` asked for with a pool of 16, then again at the same address
    // with 4 (a reload's new `pool_max_idle`), then at another address. Output: one state,
    // its pool now 4; then a fresh state. (The kept server's pool stayed at 16.)
    #[test]
    fn a_kept_server_takes_the_new_pool_size_and_a_moved_one_starts_afresh() {
        let registry = Registry::default();
        let addr = "127.0.0.1:8080".parse().unwrap();
        let first = registry.server("web", "s1", addr, 1, 16);
        let again = registry.server("web", "s1", addr, 1, 4);
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        assert_eq!(again.pool.capacity(), 4);
        let moved = registry.server("web", "s1", "127.0.0.1:8081".parse().unwrap(), 1, 4);
        assert!(!std::sync::Arc::ptr_eq(&first, &moved));
    }
}
