//! Replay tests in the style of holo-vrrp's conformance tests: each test feeds one [`Fsm`] a list
//! of timed inputs and checks the exact actions each one produces, and is commented
//! `// Input: ... // Output: ...`. Times are `us(..)` or `ms(..)` since the epoch of the test.
//!
//! - `startup`, `master`, `backup`, `v3`, `fault`, `priority`, `resume`: the rules, one file per
//!   concern.
//! - `sim`: routers on a simulated link; `pair`: two of them, with the convergence property.
//! - `walk`: arbitrary event sequences against the invariants.

#![allow(clippy::unwrap_used, reason = "tests")]

mod backup;
mod fault;
mod group;
mod master;
mod pair;
mod priority;
mod resume;
mod sim;
mod startup;
mod v3;
mod walk;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use super::{
    Action, Advert, Config, ConfigError, Event, Fsm, InitialState, Reason, State, Time, Version,
};

/// The address of the router under test, and addresses below and above it.
pub(super) const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
pub(super) const LOWER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
pub(super) const HIGHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
pub(super) const LOCAL6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x10));
pub(super) const LOWER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x0f));
pub(super) const HIGHER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x11));

pub(super) const SECOND: Duration = Duration::from_secs(1);

/// One input of a replay.
#[derive(Debug, Clone)]
pub(super) enum Input {
    Event(Event),
    /// The I/O layer's timer went off: [`Fsm::poll`].
    Poll,
}

/// `(when, input, the exact actions expected)`.
pub(super) type Step = (Time, Input, Vec<Action>);

/// Feeds `steps` to `fsm` in order and checks each step's actions, and after each one that the
/// next wakeup is in the future and that `StateChanged` agrees with [`Fsm::state`].
pub(super) fn replay(fsm: &mut Fsm, steps: Vec<Step>) {
    let mut last = Time::ZERO;
    for (i, (at, input, expected)) in steps.into_iter().enumerate() {
        assert!(at >= last, "step {i}: time goes backwards");
        last = at;
        let before = fsm.state();
        let actions = match input.clone() {
            Input::Event(event) => fsm.handle(at, event),
            Input::Poll => fsm.poll(at),
        };
        assert_eq!(
            actions,
            expected,
            "step {i} at {} µs: {input:?} in {before:?}",
            at.since_epoch().as_micros()
        );
        if let Some(wakeup) = fsm.next_wakeup() {
            assert!(
                wakeup > at,
                "step {i}: next wakeup {wakeup:?} is not after {at:?}"
            );
        }
        let mut state = before;
        for action in &actions {
            if let Action::StateChanged { from, to, .. } = action {
                assert_eq!(*from, state, "step {i}: StateChanged from the wrong state");
                state = *to;
            }
        }
        assert_eq!(fsm.state(), state, "step {i}: state after the step");
    }
}

pub(super) fn v2(priority: u8) -> Config {
    Config::new(Version::V2, 51, priority, SECOND).unwrap()
}

pub(super) fn v3(priority: u8, interval_cs: u64) -> Config {
    Config::new(
        Version::V3,
        51,
        priority,
        Duration::from_millis(10 * interval_cs),
    )
    .unwrap()
}

pub(super) fn fsm(config: Config) -> Fsm {
    Fsm::new(config, LOCAL).unwrap()
}

pub(super) fn fsm6(config: Config) -> Fsm {
    Fsm::new(config, LOCAL6).unwrap()
}

pub(super) const fn us(us: u64) -> Time {
    Time::from_micros(us)
}

pub(super) const fn ms(ms: u64) -> Time {
    Time::from_millis(ms)
}

pub(super) fn startup() -> Input {
    Input::Event(Event::Startup)
}

pub(super) fn shutdown() -> Input {
    Input::Event(Event::Shutdown)
}

pub(super) fn poll() -> Input {
    Input::Poll
}

pub(super) fn fault(faulted: bool) -> Input {
    Input::Event(Event::Fault(faulted))
}

pub(super) fn priority(p: u8) -> Input {
    Input::Event(Event::PriorityChanged(p))
}

/// A v2 advert (the interval field is ignored in v2; it carries 1 s here).
pub(super) fn advert(src: IpAddr, priority: u8) -> Input {
    advert_cs(src, priority, 100)
}

/// An advert carrying a v3 interval in centiseconds.
pub(super) fn advert_cs(src: IpAddr, priority: u8, interval_cs: u64) -> Input {
    Input::Event(Event::Advert(Advert {
        src,
        priority,
        max_advert_interval: Duration::from_millis(10 * interval_cs),
    }))
}

pub(super) fn send(priority: u8) -> Action {
    Action::SendAdvert { priority }
}

/// A master's answer to a lower-priority master: an advert at once, and the VIPs announced
/// again.
pub(super) fn reassert(priority: u8) -> Vec<Action> {
    vec![send(priority), Action::SendGratuitousArp]
}

pub(super) fn changed(from: State, to: State, reason: Reason) -> Action {
    Action::StateChanged { from, to, reason }
}

/// The actions of becoming master with `priority`.
pub(super) fn to_master(from: State, priority: u8, reason: Reason) -> Vec<Action> {
    vec![
        send(priority),
        Action::AddVips,
        Action::SendGratuitousArp,
        changed(from, State::Master, reason),
    ]
}

/// The actions of a master giving way to a better advert.
pub(super) fn master_to_backup(reason: Reason) -> Vec<Action> {
    vec![
        Action::RemoveVips,
        changed(State::Master, State::Backup, reason),
    ]
}

/// Startup of a non-owner without fault.
pub(super) fn started_backup() -> Vec<Action> {
    vec![
        Action::RemoveVips,
        changed(State::Initialize, State::Backup, Reason::Startup),
    ]
}

/// Starts `fsm` at time 0 with nobody else on the link and lets its Master_Down_Timer fire;
/// returns when it became master.
pub(super) fn master_at_startup(fsm: &mut Fsm) -> Time {
    fsm.handle(Time::ZERO, Event::Startup);
    let at = fsm.next_wakeup().unwrap();
    fsm.poll(at);
    assert_eq!(fsm.state(), State::Master);
    at
}
