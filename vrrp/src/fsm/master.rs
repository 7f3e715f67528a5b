//! Master state (RFC 5798 §6.4.3): advertise every Advertisement_Interval, answer a farewell or a
//! lower-priority master at once, and give way to a higher (priority, address).

use std::cmp::Ordering;

use super::{Action, Advert, Fsm, Reason, Time, priority};

impl Fsm {
    pub(super) fn master_receive(&mut self, now: Time, advert: &Advert, out: &mut Vec<Action>) {
        if advert.priority == 0 {
            // Another router of the group is leaving: reassert at once so no backup takes over
            // after its Skew_Time ("Send an ADVERTISEMENT; Reset the Adver_Timer").
            self.send_advert(now, out);
            return;
        }
        match priority::rank(advert.priority, advert.src, self.priority, self.local_addr) {
            Ordering::Greater => {
                let reason = if advert.priority > self.priority {
                    Reason::HigherPriority
                } else {
                    Reason::HigherAddress
                };
                self.adopt_interval(advert);
                self.become_backup(now, reason, out);
            }
            // The RFC discards it; keepalived (without `lower_prio_no_advert`) advertises at once
            // so that a lower-priority router that became master, after a partition for
            // instance, hears us and steps down without waiting for our next advert. It also
            // announces the VIPs again (`vrrp_garp_lower_prio_repeat`, by default a burst now and
            // one after `garp.delay`, as on becoming master): the hosts that learnt the VIPs from
            // the other master would otherwise send it their traffic until their ARP entries
            // expire.
            Ordering::Less => {
                self.send_advert(now, out);
                out.push(Action::SendGratuitousArp);
            }
            // Our own priority and address: a looped-back advert or a misconfigured twin.
            // keepalived only warns, and so neither side moves.
            Ordering::Equal => {}
        }
    }
}
