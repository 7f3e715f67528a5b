//! keepalived's FAULT state: a tracked interface down or a weight-0 script failing.

use super::*;

#[test]
fn backup_in_fault_ignores_everything_until_cleared() {
    // Input: backup (v2, 100); fault at 1 s; adverts, polls and a priority-0 advert while in
    // fault; cleared at 10 s.
    // Output: FAULT with no timer and no reaction; BACKUP again at 10 s with a fresh
    // Master_Down_Timer: MASTER at 13.609375 s.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (
                ms(1000),
                fault(true),
                vec![changed(State::Backup, State::Fault, Reason::Fault)],
            ),
            (ms(2000), advert(HIGHER, 200), vec![]),
            (ms(3000), advert(HIGHER, 0), vec![]),
            (ms(5000), poll(), vec![]),
            (ms(6000), fault(true), vec![]),
            (
                ms(10_000),
                fault(false),
                vec![changed(State::Fault, State::Backup, Reason::FaultCleared)],
            ),
            (us(13_609_374), poll(), vec![]),
            (
                us(13_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn master_in_fault_says_goodbye_and_comes_back_as_backup() {
    // Input: master (v2, 100) since 3.609375 s; fault at 4.5 s; cleared at 8 s while a
    // priority-90 router has taken over.
    // Output: priority-0 advert and VIPs removed at 4.5 s (so the backup takes over after its
    // skew); at 8 s BACKUP, not MASTER; the lower master is then preempted as usual.
    let mut fsm = fsm(v2(100));
    master_at_startup(&mut fsm);
    replay(
        &mut fsm,
        vec![
            (
                ms(4500),
                fault(true),
                vec![
                    send(0),
                    Action::RemoveVips,
                    changed(State::Master, State::Fault, Reason::Fault),
                ],
            ),
            (
                ms(8000),
                fault(false),
                vec![changed(State::Fault, State::Backup, Reason::FaultCleared)],
            ),
            (ms(8500), advert(LOWER, 90), vec![]),
            (
                us(11_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::Preempt),
            ),
        ],
    );
}

#[test]
fn owner_leaving_fault_becomes_master_at_once() {
    // Input: owner (priority 255); fault at 0.5 s, cleared at 4 s.
    // Output: MASTER, FAULT (with a farewell advert), MASTER again at 4 s without waiting.
    let mut fsm = fsm(v2(255));
    replay(
        &mut fsm,
        vec![
            (
                us(0),
                startup(),
                to_master(State::Initialize, 255, Reason::Owner),
            ),
            (
                ms(500),
                fault(true),
                vec![
                    send(0),
                    Action::RemoveVips,
                    changed(State::Master, State::Fault, Reason::Fault),
                ],
            ),
            (
                ms(4000),
                fault(false),
                to_master(State::Fault, 255, Reason::FaultCleared),
            ),
            (ms(5000), poll(), vec![send(255)]),
        ],
    );
}

#[test]
fn fault_before_startup_starts_in_fault() {
    // Input: fault reported before startup; startup at 1 s; cleared at 2 s.
    // Output: FAULT at startup (keepalived's "Entering FAULT STATE (init)"), BACKUP at 2 s.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), fault(true), vec![]),
            (
                ms(1000),
                startup(),
                vec![
                    Action::RemoveVips,
                    changed(State::Initialize, State::Fault, Reason::Fault),
                ],
            ),
            (
                ms(2000),
                fault(false),
                vec![changed(State::Fault, State::Backup, Reason::FaultCleared)],
            ),
        ],
    );
}

#[test]
fn fault_cleared_before_startup_is_forgotten() {
    // Input: fault then clear before startup; startup at 1 s.
    // Output: a normal BACKUP startup.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), fault(true), vec![]),
            (ms(500), fault(false), vec![]),
            (ms(1000), startup(), started_backup()),
        ],
    );
}

#[test]
fn shutdown_in_fault_sends_nothing_and_the_fault_persists() {
    // Input: backup in fault; shutdown at 2 s; startup again at 3 s with the fault still on.
    // Output: Initialize without advert; the restart goes straight to FAULT.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (
                ms(1000),
                fault(true),
                vec![changed(State::Backup, State::Fault, Reason::Fault)],
            ),
            (
                ms(2000),
                shutdown(),
                vec![changed(State::Fault, State::Initialize, Reason::Shutdown)],
            ),
            (
                ms(3000),
                startup(),
                vec![
                    Action::RemoveVips,
                    changed(State::Initialize, State::Fault, Reason::Fault),
                ],
            ),
        ],
    );
    assert_eq!(fsm.next_wakeup(), None);
}
