//! Whether a group of servers (an L7 backend, an L4 virtual service) is available as a whole: UP
//! while any of its servers takes new clients. The BACKEND row of the stats page shows when that
//! last changed, how long the group has been DOWN in all, and how often it went DOWN.
//!
//! A server tells its group whenever its status or weight changes, and the routing table (or the
//! L4 tier) sets the members at each reload, so the record is exact without polling.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::{ServerState, unix_millis};

/// The availability of a group of servers.
#[derive(Debug)]
pub struct Availability {
    /// Weak: servers point back at their group.
    members: Mutex<Vec<Weak<ServerState>>>,
    record: Mutex<Record>,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    up: bool,
    /// Unix milliseconds of the last change.
    last_change: u64,
    /// Milliseconds DOWN before the current state.
    downtime: u64,
    went_down: u64,
}

impl Default for Availability {
    fn default() -> Self {
        Self {
            members: Mutex::new(Vec::new()),
            record: Mutex::new(Record {
                up: true,
                last_change: unix_millis(),
                downtime: 0,
                went_down: 0,
            }),
        }
    }
}

/// The lock never guards an invariant a panic could break halfway (plain values), so a poisoned
/// one is used as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Availability {
    /// Makes `members` the group's servers and re-evaluates it.
    pub(crate) fn set_members<'a>(
        self: &Arc<Self>,
        members: impl IntoIterator<Item = &'a Arc<ServerState>>,
    ) {
        let members = members
            .into_iter()
            .map(|s| {
                s.join(Arc::downgrade(self));
                Arc::downgrade(s)
            })
            .collect();
        *lock(&self.members) = members;
        self.refresh();
    }

    /// Re-evaluates the group after a member changed.
    pub(crate) fn refresh(&self) {
        let up = lock(&self.members)
            .iter()
            .filter_map(Weak::upgrade)
            .any(|s| s.takes_new_clients());
        let mut r = lock(&self.record);
        if r.up == up {
            return;
        }
        let now = unix_millis();
        if up {
            r.downtime += now.saturating_sub(r.last_change);
        } else {
            r.went_down += 1;
        }
        r.up = up;
        r.last_change = now;
    }

    /// Whether any server takes new clients.
    pub fn is_up(&self) -> bool {
        lock(&self.record).up
    }

    /// Unix milliseconds of the last change.
    pub fn last_change(&self) -> u64 {
        lock(&self.record).last_change
    }

    /// Milliseconds DOWN in all, up to `now` (Unix milliseconds).
    pub fn downtime(&self, now: u64) -> u64 {
        let r = *lock(&self.record);
        if r.up {
            r.downtime
        } else {
            r.downtime + now.saturating_sub(r.last_change)
        }
    }

    /// Times the group went DOWN.
    pub fn went_down(&self) -> u64 {
        lock(&self.record).went_down
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::state::AdminState;

    fn server(name: &str) -> Arc<ServerState> {
        Arc::new(ServerState::new(
            "b",
            name,
            SocketAddr::from(([127, 0, 0, 1], 1)),
            1,
            0,
        ))
    }

    #[test]
    fn down_only_while_no_member_takes_new_clients() {
        let group = Arc::new(Availability::default());
        let (a, b) = (server("a"), server("b"));
        group.set_members([&a, &b]);
        assert!(group.is_up());
        a.set_healthy(false);
        assert!(group.is_up(), "b still serves");
        b.set_admin(AdminState::Drain);
        assert!(
            !group.is_up(),
            "a DOWN and b draining: no new client is served"
        );
        assert_eq!(group.went_down(), 1);
        let down_since = group.last_change();
        assert!(group.downtime(down_since + 5_000) >= 5_000);
        b.set_weight(0);
        b.set_admin(AdminState::Ready);
        assert!(!group.is_up(), "weight 0 takes no new client");
        b.set_weight(3);
        assert!(group.is_up());
        assert_eq!(group.went_down(), 1);
        let total = group.downtime(u64::MAX);
        assert_eq!(
            group.downtime(u64::MAX),
            total,
            "UP: downtime stops growing"
        );
        group.set_members([&a]);
        assert!(!group.is_up(), "a reload that keeps only a DOWN server");
        assert_eq!(group.went_down(), 2);
    }
}
