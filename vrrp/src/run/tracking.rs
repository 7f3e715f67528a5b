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
    /// The verdicts of the scripts this member tracks.
    pub(crate) fn scripts(&self) -> Vec<watch::Receiver<ScriptHealth>> {
        (self.sources.iter())
            .filter_map(|source| match source {
                Source::Script { health, .. } => Some(health.clone()),
                Source::Interface { .. } => None,
            })
            .collect()
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

/// Starts the task folding `own` and the group `siblings` into the instance's tracking value.
/// It ends when the instance drops the receiver, or when a source ends (the value then stays).
pub(crate) fn spawn_tracking(own: Member, siblings: Vec<Member>) -> watch::Receiver<Option<u8>> {
    let fold = move |own: &Member, siblings: &[Member]| {
        if siblings.iter().any(|m| m.tracked().is_none()) {
            None
        } else {
            own.tracked()
        }
    };
    let (tx, rx) = watch::channel(fold(&own, &siblings));
    tokio::spawn(async move {
        let (mut own, mut siblings) = (own, siblings);
        loop {
            let mut waits: Vec<_> = own
                .sources
                .iter_mut()
                .chain(siblings.iter_mut().flat_map(|m| m.sources.iter_mut()))
                .map(Source::changed)
                .collect();
            if waits.is_empty() {
                tx.closed().await;
                return;
            }
            let source_alive = tokio::select! {
                () = tx.closed() => return,
                (alive, _, _) = select_all(waits.iter_mut()) => alive,
            };
            drop(waits);
            if !source_alive {
                return;
            }
            tx.send_if_modified(|value| {
                let new = fold(&own, &siblings);
                let changed = *value != new;
                *value = new;
                changed
            });
        }
    });
    rx
}

/// Resolves once every script of `scripts` has a verdict (its first run has ended), or its
/// checker has stopped.
pub(crate) async fn first_verdicts(scripts: &mut [watch::Receiver<ScriptHealth>]) {
    for health in scripts {
        let _ = health.wait_for(|h| *h != ScriptHealth::Pending).await;
    }
}
