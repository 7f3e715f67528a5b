//! A discrete-event simulation of routers on one lossless link: each router's adverts reach every
//! other router `link_delay` later, timers fire exactly at their deadlines, and scripted events
//! (shutdowns, faults, priority changes) happen at given times.

use super::*;

/// One router of the simulation.
#[derive(Debug)]
pub(super) struct Router {
    pub(super) fsm: Fsm,
    pub(super) start: Time,
    started: bool,
    /// Whether the VIPs are configured, following AddVips / RemoveVips.
    pub(super) vips: bool,
    /// Every state change: when, to which state, why.
    pub(super) changes: Vec<(Time, State, Reason)>,
}

#[derive(Debug)]
pub(super) struct Sim {
    pub(super) routers: Vec<Router>,
    link_delay: Duration,
    /// Adverts on the wire: (delivery time, sequence number, receiver, advert).
    in_flight: Vec<(Time, u64, usize, Advert)>,
    /// Scripted events: (time, router, event).
    script: Vec<(Time, usize, Event)>,
    seq: u64,
}

impl Sim {
    pub(super) fn new(link_delay: Duration) -> Self {
        Sim {
            routers: Vec::new(),
            link_delay,
            in_flight: Vec::new(),
            script: Vec::new(),
            seq: 0,
        }
    }

    /// Adds a router that starts at `start`; returns its index.
    pub(super) fn add(&mut self, fsm: Fsm, start: Time) -> usize {
        self.routers.push(Router {
            fsm,
            start,
            started: false,
            vips: false,
            changes: Vec::new(),
        });
        self.routers.len() - 1
    }

    /// Schedules `event` for router `index` at `at`.
    pub(super) fn at(&mut self, at: Time, index: usize, event: Event) {
        self.script.push((at, index, event));
    }

    /// Runs every event up to and including `end`.
    pub(super) fn run_until(&mut self, end: Time) {
        while let Some(now) = self.next_time().filter(|t| *t <= end) {
            for i in 0..self.routers.len() {
                if !self.routers[i].started && self.routers[i].start <= now {
                    self.routers[i].started = true;
                    let actions = self.routers[i].fsm.handle(now, Event::Startup);
                    self.dispatch(now, i, actions);
                }
            }
            while let Some(pos) = self.script.iter().position(|(at, ..)| *at <= now) {
                let (_, i, event) = self.script.remove(pos);
                let actions = self.routers[i].fsm.handle(now, event);
                self.dispatch(now, i, actions);
            }
            // Deliveries in the order they were sent; a delivery can send more at the same time.
            while let Some(pos) = self.first_due_delivery(now) {
                let (_, _, i, advert) = self.in_flight.remove(pos);
                let actions = self.routers[i].fsm.handle(now, Event::Advert(advert));
                self.dispatch(now, i, actions);
            }
            for i in 0..self.routers.len() {
                let actions = self.routers[i].fsm.poll(now);
                self.dispatch(now, i, actions);
            }
        }
    }

    fn next_time(&self) -> Option<Time> {
        let starts = self.routers.iter().filter(|r| !r.started).map(|r| r.start);
        let wakeups = self.routers.iter().filter_map(|r| r.fsm.next_wakeup());
        let deliveries = self.in_flight.iter().map(|(at, ..)| *at);
        let scripted = self.script.iter().map(|(at, ..)| *at);
        starts
            .chain(wakeups)
            .chain(deliveries)
            .chain(scripted)
            .min()
    }

    fn first_due_delivery(&self, now: Time) -> Option<usize> {
        self.in_flight
            .iter()
            .enumerate()
            .filter(|(_, (at, ..))| *at <= now)
            .min_by_key(|(_, (at, seq, ..))| (*at, *seq))
            .map(|(pos, _)| pos)
    }

    fn dispatch(&mut self, now: Time, from: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    let sender = &self.routers[from].fsm;
                    let advert = Advert {
                        src: sender.local_addr(),
                        priority,
                        max_advert_interval: sender.config().advert_interval(),
                    };
                    for to in (0..self.routers.len()).filter(|to| *to != from) {
                        self.seq += 1;
                        self.in_flight
                            .push((now + self.link_delay, self.seq, to, advert));
                    }
                }
                Action::AddVips => self.routers[from].vips = true,
                Action::RemoveVips => self.routers[from].vips = false,
                Action::SendGratuitousArp => {}
                Action::StateChanged { to, reason, .. } => {
                    self.routers[from].changes.push((now, to, reason))
                }
            }
        }
    }

    pub(super) fn states(&self) -> Vec<State> {
        self.routers.iter().map(|r| r.fsm.state()).collect()
    }

    /// The indices of the routers in Master.
    pub(super) fn masters(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|i| self.routers[*i].fsm.state() == State::Master)
            .collect()
    }

    /// When any router last changed state.
    pub(super) fn last_change(&self) -> Option<Time> {
        self.routers
            .iter()
            .filter_map(|r| r.changes.last().map(|(at, ..)| *at))
            .max()
    }
}
