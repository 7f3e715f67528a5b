//! Backup state (RFC 5798 §6.4.2): watch the master, take over when Master_Down_Timer fires, after
//! only Skew_Time when the master says goodbye, and preempt a lower-priority master unless
//! `nopreempt` or keepalived's `preempt_delay` says to wait.

use super::{Advert, Fsm, Reason, Time};

impl Fsm {
    pub(super) fn backup_receive(&mut self, now: Time, advert: &Advert) {
        if advert.priority == 0 {
            // "Set the Master_Down_Timer to Skew_Time": the backup with the highest priority,
            // hence the smallest skew, takes over first.
            self.deadline = Some(now + self.skew_time());
            self.next_master_reason = Reason::MasterReleased;
            self.following = false;
            return;
        }
        if self.accepts_master(now, advert.priority) {
            self.adopt_interval(advert);
            self.deadline = Some(now + self.master_down_interval());
            self.next_master_reason = Reason::MasterNoResponse;
            self.following = true;
            self.track_preempt_delay(now, advert.priority);
        } else {
            // Discard it: Master_Down_Timer keeps running and fires unless a router at least as
            // good as us shows up.
            self.next_master_reason = Reason::Preempt;
            self.following = false;
        }
    }

    /// RFC 5798: "If Preempt_Mode is False, or if the Priority in the ADVERTISEMENT is greater
    /// than or equal to the local Priority" — plus keepalived's `preempt_delay`, during which a
    /// lower-priority master is still accepted.
    fn accepts_master(&self, now: Time, their_priority: u8) -> bool {
        !self.config.preempts()
            || their_priority >= self.priority
            || self.preempt_delay_running(now)
    }

    /// keepalived's test `preempt_delay && (!preempt_time || preempt_time > now)`: an unstarted
    /// delay counts as running, and the advert that finds it unstarted starts it.
    fn preempt_delay_running(&self, now: Time) -> bool {
        !self.config.preempt_delay().is_zero() && self.preempt_until.is_none_or(|until| now < until)
    }

    /// A master at least as good as us stops the delay; the first lower-priority master after
    /// that starts a fresh one.
    fn track_preempt_delay(&mut self, now: Time, their_priority: u8) {
        let delay = self.config.preempt_delay();
        if delay.is_zero() {
            return;
        }
        if their_priority >= self.priority {
            self.preempt_until = None;
        } else if self.preempt_until.is_none() {
            self.preempt_until = Some(now + delay);
        }
    }
}
