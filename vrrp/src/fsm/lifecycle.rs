//! Leaving and entering the running states: startup (RFC 5798 §6.4.1), shutdown (§6.4.2 and
//! §6.4.3), keepalived's FAULT, and effective priority changes from tracking.

use std::time::Duration;

use super::{Action, Fsm, Reason, State, Time, Version, priority};

impl Fsm {
    pub(super) fn startup(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        self.master_adver_interval = self.config.advert_interval();
        // keepalived starts the preempt delay when it reads the configuration, i.e. at startup.
        let delay = self.config.preempt_delay();
        self.preempt_until = (!delay.is_zero()).then(|| now + delay);
        if self.faulted {
            out.push(Action::RemoveVips);
            self.enter_fault(out);
        } else if self.config.is_owner() {
            self.become_master(now, Reason::Owner, out);
        } else {
            self.become_backup(now, Reason::Startup, out);
        }
    }

    /// Starts in `state`, the state the instance had in the run a reload ended, instead of
    /// [`Event::Startup`](super::Event::Startup): a reload that rebuilt VRRP leaves each
    /// instance that kept its identity where it was, as keepalived's reload does. A master
    /// advertises at once and puts its (maybe new) VIPs on again and announces them; a backup
    /// starts a fresh Master_Down_Timer; no state change is reported unless tracking now says
    /// otherwise (a fault that appeared or cleared, an address owner that must be master), and
    /// then from `state`. A v3 backup keeps `master_adver_interval`, the interval of the master
    /// it followed, so that its timer does not fire before that master's next advert. Does
    /// nothing unless the machine is in Initialize; `Initialize` as `state` is a plain startup.
    pub fn resume(
        &mut self,
        now: Time,
        state: State,
        master_adver_interval: Duration,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::Initialize {
            return out;
        }
        self.master_adver_interval =
            if state == State::Backup && self.config.version() == Version::V3 {
                master_adver_interval
            } else {
                self.config.advert_interval()
            };
        if state == State::Initialize {
            self.startup(now, &mut out);
            return out;
        }
        self.state = state;
        match (state, self.faulted) {
            (State::Master, false) => {
                self.send_advert(now, &mut out);
                out.push(Action::AddVips);
                out.push(Action::SendGratuitousArp);
            }
            // Tracking failed while VRRP was rebuilt: leave as a master leaving for FAULT does.
            (State::Master, true) => {
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::RemoveVips);
                self.enter_fault(&mut out);
            }
            (State::Backup, true) => self.enter_fault(&mut out),
            (State::Backup, false) if self.config.is_owner() => {
                self.become_master(now, Reason::Owner, &mut out);
            }
            (State::Backup, false) => {
                self.deadline = Some(now + self.master_down_interval());
                self.next_master_reason = Reason::MasterNoResponse;
            }
            (State::Fault, false) if self.config.is_owner() => {
                self.become_master(now, Reason::FaultCleared, &mut out);
            }
            (State::Fault, false) => self.become_backup(now, Reason::FaultCleared, &mut out),
            (State::Fault | State::Initialize, _) => {}
        }
        out
    }

    pub(super) fn shutdown(&mut self, out: &mut Vec<Action>) {
        let from = self.state;
        match from {
            State::Initialize => return,
            // "Send an ADVERTISEMENT with Priority = 0": the backups take over after Skew_Time
            // instead of Master_Down_Interval.
            State::Master => {
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::RemoveVips);
            }
            State::Backup | State::Fault => {}
        }
        self.state = State::Initialize;
        self.deadline = None;
        self.preempt_until = None;
        out.push(Action::StateChanged {
            from,
            to: State::Initialize,
            reason: Reason::Shutdown,
        });
    }

    pub(super) fn fault_changed(&mut self, now: Time, faulted: bool, out: &mut Vec<Action>) {
        if faulted == self.faulted {
            return;
        }
        self.faulted = faulted;
        match (self.state, faulted) {
            // Remembered for Startup.
            (State::Initialize, _) => {}
            // keepalived's `vrrp_state_leave_master` towards FAULT also says goodbye, so the
            // backup takes over after Skew_Time.
            (State::Master, true) => {
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::RemoveVips);
                self.enter_fault(out);
            }
            (State::Backup, true) => self.enter_fault(out),
            // keepalived's `try_up_instance`: back to BACKUP with a fresh Master_Down_Timer, the
            // own interval and no preempt delay running; an owner goes straight to MASTER.
            (State::Fault, false) => {
                self.master_adver_interval = self.config.advert_interval();
                self.preempt_until = None;
                if self.config.is_owner() {
                    self.become_master(now, Reason::FaultCleared, out);
                } else {
                    self.become_backup(now, Reason::FaultCleared, out);
                }
            }
            (State::Fault, true) | (State::Backup | State::Master, false) => {}
        }
    }

    fn enter_fault(&mut self, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = State::Fault;
        self.deadline = None;
        out.push(Action::StateChanged {
            from,
            to: State::Fault,
            reason: Reason::Fault,
        });
    }

    pub(super) fn priority_changed(&mut self, now: Time, requested: u8, out: &mut Vec<Action>) {
        let new = priority::clamp_effective(self.config.is_owner(), requested);
        if new == self.priority {
            return;
        }
        let old_down_interval = self.master_down_interval();
        self.priority = new;
        match self.state {
            // Tell the others at once: a lower priority lets a better backup preempt us one
            // advert sooner, a higher one stops a backup that was about to.
            State::Master => self.send_advert(now, out),
            // keepalived's `vrrp_set_effective_priority`: the running Master_Down_Timer moves by
            // the change in Skew_Time, as if it had been started with the new priority.
            State::Backup => {
                if let Some(deadline) = self.deadline {
                    let new_down_interval = self.master_down_interval();
                    self.deadline =
                        Some((deadline + new_down_interval).saturating_sub(old_down_interval));
                }
            }
            State::Initialize | State::Fault => {}
        }
    }
}
