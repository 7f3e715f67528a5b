//! A reload (SIGHUP) that changes what running instances cannot take in place: an instance
//! added or removed, its interface, VRID, interval, authentication, peers or tracking, the
//! scripts, the sync groups. VRRP is built again from the new config, as keepalived rebuilds
//! its instances on a reload, and each instance that keeps its name, interface, VRID and
//! address family carries its state over: a master stays master (it sends no priority 0 and
//! keeps its VIPs), a backup stays backup, with no notify script and no event, and its
//! followers (volumes), its queued notify scripts and its counters go on.
//!
//! The order makes a failed rebuild harmless and keeps an address on one instance at a time:
//! 1. the new VRRP is prepared (interfaces resolved, sockets opened, the scripts' checkers
//!    reused where unchanged): if that fails, nothing has changed and the error says why;
//! 2. the instances that go (removed, or changed in identity) leave the election as at a stop:
//!    a master says goodbye with priority 0 and takes its VIPs off;
//! 3. the others hand over and the new VRRP starts, resuming them where they were.
//!
//! A removed instance whose `notify_stop` outlasts the wait runs on ([`Stopping`]); a new
//! instance of the same name (its VRID or interface changed, or added back by a later reload)
//! holds its notify scripts back until that ends, so its `notify_master` never runs before
//! or during its predecessor's `notify_stop`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::follower::Roster;
use super::instance::Carried;
use super::{Prepared, Previous, Slot, Vrrp, identity};
use crate::config::{ScriptConfig, VrrpConfig};
use crate::notify::Notified;

/// How long a rebuild waits for the removed instances to have left the election (a priority-0
/// advert and VIPs removed take milliseconds). Their `notify_stop` may run longer, and goes on
/// after the rebuild ([`Vrrp::stop`] waits for it).
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a rebuild waits for the staying instances to hand over: each leaves its loop at
/// once, so only a stuck task takes this long; it is then aborted and its successor starts
/// afresh, rather than the reload (and with it SIGTERM) waiting for ever.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(5);

/// How a reload was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// Every change could be applied to the running instances ([`Vrrp::adjust`]).
    InPlace,
    /// VRRP was built again, the instances that kept their identity resuming their state.
    Rebuilt,
}

impl Vrrp {
    /// Applies a reloaded `new` to VRRP running on `running`: in place when the changes allow
    /// it ([`Vrrp::adjust`]), otherwise by building VRRP again (see the module documentation).
    /// On an error nothing has changed, and it says why: an interface that does not exist, say,
    /// or an instance a volume follows that the new config removes.
    pub async fn reload(
        &mut self,
        running: &VrrpConfig,
        new: &VrrpConfig,
    ) -> Result<Reloaded, String> {
        if crate::config::needs_rebuild(running, new).is_none() {
            self.adjust(running, new)?;
            return Ok(Reloaded::InPlace);
        }
        self.rebuild(new).await?;
        Ok(Reloaded::Rebuilt)
    }

    async fn rebuild(&mut self, new: &VrrpConfig) -> Result<(), String> {
        let kept = |slot: &Slot| {
            new.instance(&slot.name)
                .is_some_and(|instance| identity(instance) == slot.identity)
        };
        // A volume's promotion follows the instance: it cannot be taken from under it.
        if let Some(slot) =
            (self.slots.iter()).find(|slot| !kept(slot) && slot.roster.has_followers())
        {
            return Err(format!(
                "vrrp.instance.{} (a volume follows it: removing it or changing its interface, VRID or address family needs a restart)",
                slot.name
            ));
        }
        let previous = Previous {
            scripts: (self.scripts.iter())
                .filter(|(name, (config, _))| same_check(new, name, config))
                .map(|(name, script)| (name.clone(), script.clone()))
                .collect(),
            dropped: self.dropped.clone(),
            counters: (self.slots.iter())
                .filter(|slot| kept(slot))
                .map(|slot| (slot.name.clone(), slot.counters.clone()))
                .collect(),
            events: Some(self.events.clone()),
        };
        let mut prepared = Vrrp::prepare_with(new, self.options.clone(), previous)
            .await
            .map_err(|error| error.to_string())?;

        let (staying, leaving): (Vec<Slot>, Vec<Slot>) =
            std::mem::take(&mut self.slots).into_iter().partition(kept);
        // All of them at once, then one bound for all.
        for slot in &leaving {
            slot.stop.cancel();
        }
        let deadline = tokio::time::Instant::now() + LEAVE_TIMEOUT;
        let mut stopping = std::mem::take(&mut self.stopping);
        stopping.retain(|s| !s.task.is_finished());
        for mut slot in leaving {
            if let Some(mut task) = slot.task.take()
                && tokio::time::timeout_at(deadline, &mut task).await.is_err()
            {
                tracing::warn!(instance = %slot.name, "VRRP instance still stopping (its notify_stop runs on)");
                stopping.push(Stopping::new(slot.name.clone(), task));
            }
            tracing::info!(instance = %slot.name, "VRRP instance removed by a reload");
        }
        self.hand_over.cancel();
        let deadline = tokio::time::Instant::now() + HAND_OVER_TIMEOUT;
        let mut carried = BTreeMap::new();
        for mut slot in staying {
            let Some(mut task) = slot.task.take() else {
                continue;
            };
            let Ok(handed) = tokio::time::timeout_at(deadline, &mut task).await else {
                task.abort();
                tracing::error!(instance = %slot.name, "VRRP instance did not hand over in time; it starts afresh");
                continue;
            };
            match handed {
                Ok(Some(carry)) => {
                    carried.insert(slot.name.clone(), (carry, slot.roster));
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(instance = %slot.name, %error, "VRRP instance task failed; it starts afresh, and a volume following it follows it again at the next reload");
                }
            }
        }
        for reader in self.readers.drain(..) {
            reader.abort();
        }
        // One after another, before any successor puts its VIPs on.
        for (name, (carry, _)) in &carried {
            let vips = new.instance(name).map_or(&[][..], |i| &i.virtual_ips[..]);
            carry.release(vips).await;
        }
        // What the new sockets queued while VRRP was prepared is seconds old, and the old
        // readers have handled it.
        prepared.discard_queued();
        prepared.carry_over(carried);
        prepared.hold_scripts_behind(&stopping);
        let mut next = prepared.start_into(self.status.clone());
        next.stopping = stopping;
        // The old VRRP has nothing left running: dropping it ends its sockets and bindings.
        drop(std::mem::replace(self, next));
        Ok(())
    }
}

/// Whether `new` has script `name` running the same check as `config`: only its weight may
/// differ, which the checker does not use (the instances add it), so the verdict stands.
fn same_check(new: &VrrpConfig, name: &str, config: &ScriptConfig) -> bool {
    let tracked = (new.instances.iter()).any(|i| i.track_scripts.iter().any(|s| s == name));
    new.script(name).is_some_and(|script| {
        tracked
            && ScriptConfig {
                weight: config.weight,
                ..script.clone()
            } == *config
    })
}

/// A removed instance's task that was still running its `notify_stop` when its rebuild went
/// on, and what resolves when it ends.
#[derive(Debug)]
pub(super) struct Stopping {
    name: String,
    pub(super) task: JoinHandle<Option<Carried>>,
    ended: Notified,
}

impl Stopping {
    fn new(name: String, task: JoinHandle<Option<Carried>>) -> Stopping {
        let (ending, ended) = Notified::until_dropped();
        let task = tokio::spawn(async move {
            let carried = task.await;
            drop(ending);
            carried.unwrap_or_else(|error| {
                tracing::error!(%error, "VRRP instance task failed");
                None
            })
        });
        Stopping { name, task, ended }
    }
}

impl Prepared {
    /// Holds back the notify scripts of each prepared instance named as one still `stopping`
    /// until that one has ended: scripts are ordered within one queue, and these are two.
    fn hold_scripts_behind(&self, stopping: &[Stopping]) {
        for (task, _) in &self.instances {
            for predecessor in stopping.iter().filter(|s| s.name == task.config.name) {
                let ended = predecessor.ended.clone();
                task.notifier.gate(async move { ended.wait().await });
            }
        }
    }

    /// Drops the packets each socket has queued.
    fn discard_queued(&self) {
        for socket in &self.sockets {
            socket.binding.bound.borrow().socket.discard_queued();
        }
    }

    /// Gives each prepared instance that `carried` holds its predecessor's followers and
    /// notify queue (with the new config's scripts), and where to resume.
    fn carry_over(&mut self, mut carried: BTreeMap<String, (Carried, Roster)>) {
        for ((task, inputs), slot) in self.instances.iter_mut().zip(&mut self.slots) {
            let Some((carry, roster)) = carried.remove(&slot.name) else {
                continue;
            };
            let mut notifier = carry.notifier;
            notifier.set_notify(task.config.notify.clone());
            task.notifier = notifier;
            task.leader = carry.leader;
            slot.roster = roster;
            carry.resume.publish(&task.status);
            inputs.resume = Some(carry.resume);
        }
    }
}
