//! Followers of an instance: the parts of Fulcrum that act on its state changes (a volume with
//! `follow_vrrp`), kept in heartbeat's resource order around the notify scripts. Entering
//! MASTER, the scripts wait (bounded) until every follower has acted, so `notify_master` finds
//! the volume primary; leaving it, a follower waits for the change's scripts before it acts, so
//! `notify_backup` unmounts before the volume is demoted.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::fsm::State;
use crate::notify::{Notified, Notifier};

/// How long MASTER's notify scripts wait for the followers: a volume's promotion retries while
/// the peer, leaving MASTER, runs its own scripts before it demotes; past this, `notify_master`
/// runs anyway (logged) rather than never.
pub const FOLLOWERS_TIMEOUT: Duration = Duration::from_secs(30);

/// One state change of an instance, as its followers see it.
#[derive(Debug, Clone)]
pub struct Transition {
    state: State,
    /// Counts the instance's state changes from 1; 0 is the state it starts in.
    seq: u64,
    notified: Notified,
}

impl Transition {
    /// The state the instance entered (Initialize when it stopped).
    pub fn state(&self) -> State {
        self.state
    }

    /// Waits until this change's notify scripts (and every earlier one's) have finished, each
    /// bounded by the notify timeout.
    pub async fn notified(&self) {
        self.notified.wait().await;
    }
}

/// A follower's handle on one instance, from [`Prepared::follower`](super::Prepared::follower)
/// before the instance starts. The instance's MASTER scripts wait for it to call
/// [`Follower::done`]; dropping it counts as done for good.
#[derive(Debug)]
pub struct Follower {
    instance: String,
    id: u64,
    transitions: watch::Receiver<Transition>,
    reports: watch::Sender<Reports>,
}

impl Follower {
    /// The instance followed.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether the instance it was registered with is gone for good (stopped, or its task
    /// lost at a rebuild): its [`Follower::current`] is then stale, and a follower of the
    /// instance running now must be asked for anew.
    pub fn is_gone(&self) -> bool {
        self.transitions.has_changed().is_err()
    }

    /// The instance's latest state change, which [`Follower::next`] will not return again.
    pub fn current(&mut self) -> Transition {
        self.transitions.borrow_and_update().clone()
    }

    /// Waits for the instance's next state change and returns the latest (changes in between
    /// are skipped: only where the instance is now matters). `None` once the instance has
    /// stopped for good.
    pub async fn next(&mut self) -> Option<Transition> {
        self.transitions.changed().await.ok()?;
        Some(self.current())
    }

    /// Says this follower has acted on `transition` (and so on every earlier one): a MASTER
    /// change's notify scripts start once every follower has said so.
    pub fn done(&self, transition: &Transition) {
        self.reports.send_modify(|reports| {
            if let Some(done) = reports.done.get_mut(&self.id) {
                *done = (*done).max(transition.seq);
            }
        });
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.reports.send_modify(|reports| {
            reports.done.remove(&self.id);
        });
    }
}

/// The followers of one instance and the last change each has acted on.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    next_id: u64,
    done: BTreeMap<u64, u64>,
}

impl Reports {
    fn pending(&self, seq: u64) -> usize {
        self.done.values().filter(|&&done| done < seq).count()
    }
}

/// The instance task's side: numbers its state changes, tells the followers, and queues the
/// notify scripts behind them.
#[derive(Debug)]
pub(crate) struct Leader {
    instance: String,
    seq: u64,
    transitions: watch::Sender<Transition>,
    reports: watch::Sender<Reports>,
    bound: Duration,
}

/// The side [`Prepared`](super::Prepared) keeps to hand out followers of one instance.
#[derive(Debug, Clone)]
pub(crate) struct Roster {
    instance: String,
    transitions: watch::Receiver<Transition>,
    reports: watch::Sender<Reports>,
}

impl Leader {
    /// A leader for `instance`, its MASTER scripts waiting at most `bound` for the followers.
    pub(crate) fn new(instance: String, bound: Duration) -> (Leader, Roster) {
        let initial = Transition {
            state: State::Initialize,
            seq: 0,
            notified: Notified::ready(),
        };
        let (transitions, watched) = watch::channel(initial);
        let reports = watch::Sender::new(Reports::default());
        let roster = Roster {
            instance: instance.clone(),
            transitions: watched,
            reports: reports.clone(),
        };
        let leader = Leader {
            instance,
            seq: 0,
            transitions,
            reports,
            bound,
        };
        (leader, roster)
    }

    /// The instance entered `to`: queues its notify scripts on `notifier` (behind the
    /// followers' promotion when `to` is MASTER) and tells the followers. Returns at once.
    pub(crate) fn changed(&mut self, to: State, priority: u8, notifier: &Notifier) {
        self.seq += 1;
        if to == State::Master {
            notifier.gate(self.followers_done(self.seq));
        }
        let notified = notifier.state_changed(to, priority);
        self.transitions.send_replace(Transition {
            state: to,
            seq: self.seq,
            notified,
        });
    }

    /// Resolves once every follower (those registered by then included) has acted on change
    /// `seq` or a later one, or after the bound.
    fn followers_done(&self, seq: u64) -> impl Future<Output = ()> + Send + 'static {
        let mut reports = self.reports.subscribe();
        let (instance, bound) = (self.instance.clone(), self.bound);
        async move {
            let started = Instant::now();
            let all_done = reports.wait_for(|reports| reports.pending(seq) == 0);
            // An error from `wait_for` means every sender is gone, the followers with them.
            match tokio::time::timeout(bound, async { all_done.await.is_ok() }).await {
                Ok(_) => tracing::debug!(
                    %instance,
                    waited = ?started.elapsed(),
                    "followers done; MASTER's notify scripts run"
                ),
                Err(_) => {
                    let pending = reports.borrow().pending(seq);
                    tracing::warn!(
                        %instance,
                        ?bound,
                        pending,
                        "followers not done with MASTER in time; its notify scripts run anyway"
                    );
                }
            }
        }
    }
}

impl Roster {
    /// Whether a follower is registered and not dropped: a reload must not remove the instance
    /// under it.
    pub(crate) fn has_followers(&self) -> bool {
        !self.reports.borrow().done.is_empty()
    }

    /// A new follower of the instance; MASTER changes from now on wait for it.
    pub(crate) fn follower(&self) -> Follower {
        let mut id = 0;
        self.reports.send_modify(|reports| {
            id = reports.next_id;
            reports.next_id += 1;
            // 0: it has acted on nothing yet, not even the state the instance is in now.
            reports.done.insert(id, 0);
        });
        Follower {
            instance: self.instance.clone(),
            id,
            transitions: self.transitions.clone(),
            reports: self.reports.clone(),
        }
    }
}

#[cfg(test)]
#[path = "follower_tests.rs"]
mod tests;
