//! An instance's tracking inputs folded into one value for its task: the effective priority, or
//! `None` for FAULT. Script checkers and interface watchers run once each and are shared by
//! every instance that tracks them; this task only listens.
//!
//! Sync groups (`[vrrp.group.NAME]`) follow keepalived's rule that a group is as sick as its
//! sickest member: a member whose own tracking says FAULT puts every member in FAULT.

use std::future::Future;
use std::pin::Pin;

use futures_util::future::select_all;
use tokio::sync::watch;

use crate::track::{ScriptHealth, Tracked, tracked_priority};

/// One tracked input.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Script {
        weight: i16,
        health: watch::Receiver<ScriptHealth>,
    },
    Interface {
        up: watch::Receiver<bool>,
    },
}

/// The tracking of one instance: its base priority and sources.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) base: u8,
    pub(crate) sources: Vec<Source>,
}

impl Member {
    /// Whether a script that can move this member has no verdict yet (its first run has not
    /// ended). An address owner's priority stays 255 whatever its weighted scripts say, so only
    /// its weight-0 ones (FAULT) count: keepalived drops weighted scripts from an owner.
    fn pending(&self) -> bool {
        let owner = self.base == 255;
        self.sources.iter().any(|source| {
            matches!(source, Source::Script { health, weight }
                if *health.borrow() == ScriptHealth::Pending && (*weight == 0 || !owner))
        })
    }

    fn tracked(&self) -> Option<u8> {
        let now: Vec<Tracked> = self.sources.iter().map(Source::read).collect();
        tracked_priority(self.base, &now)
    }
}

impl Source {
    fn read(&self) -> Tracked {
        match self {
            Source::Script { weight, health } => Tracked::Script {
                weight: *weight,
                health: *health.borrow(),
            },
            Source::Interface { up } => Tracked::Interface { up: *up.borrow() },
        }
    }

    fn changed(&mut self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        match self {
            Source::Script { health, .. } => Box::pin(async { health.changed().await.is_ok() }),
            Source::Interface { up } => Box::pin(async { up.changed().await.is_ok() }),
        }
    }
}

/// The instance's side of its tracking task.
#[derive(Debug)]
pub(crate) struct Tracking {
    /// The effective priority, or `None` while tracking puts the instance in FAULT.
    pub(crate) priority: watch::Receiver<Option<u8>>,
    /// Whether one of the instance's own scripts has no verdict yet. It turns false only after
    /// `priority` took that verdict in, so a reader that waited for it reads a priority that
    /// counts every first verdict.
    pub(crate) pending: watch::Receiver<bool>,
}

/// Starts the task folding `own` and the group `siblings` into the instance's tracking value,
/// with `own`'s base priority from `base` once it changes (a reload). It ends when the instance
/// drops the receiver, or when a source ends (the value then stays).
pub(crate) fn spawn_tracking(
    own: Member,
    siblings: Vec<Member>,
    mut base: watch::Receiver<u8>,
) -> Tracking {
    let fold = move |own: &Member, siblings: &[Member]| {
        if siblings.iter().any(|m| m.tracked().is_none()) {
            None
        } else {
            own.tracked()
        }
    };
    let (tx, rx) = watch::channel(fold(&own, &siblings));
    let (pending_tx, pending) = watch::channel(own.pending());
    tokio::spawn(async move {
        let (mut own, mut siblings) = (own, siblings);
        loop {
            let mut waits: Vec<_> = own
                .sources
                .iter_mut()
                .chain(siblings.iter_mut().flat_map(|m| m.sources.iter_mut()))
                .map(Source::changed)
                .collect();
            let sources = async {
                if waits.is_empty() {
                    std::future::pending().await
                } else {
                    select_all(waits.iter_mut()).await.0
                }
            };
            let (source_alive, new_base) = tokio::select! {
                () = tx.closed() => return,
                alive = sources => (alive, None),
                Ok(()) = base.changed() => (true, Some(*base.borrow_and_update())),
            };
            drop(waits);
            if !source_alive {
                return;
            }
            if let Some(new_base) = new_base {
                own.base = new_base;
            }
            tx.send_if_modified(|value| {
                let new = fold(&own, &siblings);
                let changed = *value != new;
                *value = new;
                changed
            });
            // After the priority, which already counts the verdicts read here.
            let now_pending = own.pending();
            pending_tx.send_if_modified(|was| std::mem::replace(was, now_pending) != now_pending);
        }
    });
    Tracking {
        priority: rx,
        pending,
    }
}
