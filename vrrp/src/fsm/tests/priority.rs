//! Effective priority changes from tracking (keepalived's `vrrp_set_effective_priority`).

use super::*;

#[test]
fn master_whose_priority_drops_readvertises_and_is_preempted() {
    // Input: master (v2, 100) since 3.609375 s; its tracked script fails at 4.2 s and the
    // effective priority drops to 80; a priority-90 backup, which had been accepting our
    // adverts, preempts and advertises at 7.9 s.
    // Output: an advert with priority 80 at once (next one 1 s later), then BACKUP on the
    // priority-90 advert.
    let mut fsm = fsm(v2(100));
    master_at_startup(&mut fsm);
    replay(
        &mut fsm,
        vec![
            (ms(4200), priority(80), vec![send(80)]),
            (ms(4600), poll(), vec![]),
            (ms(5200), poll(), vec![send(80)]),
            (ms(6200), poll(), vec![send(80)]),
            (ms(7200), poll(), vec![send(80)]),
            (
                ms(7900),
                advert(LOWER, 90),
                master_to_backup(Reason::HigherPriority),
            ),
        ],
    );
    assert_eq!(fsm.priority(), 80);
}

#[test]
fn master_whose_priority_rises_readvertises() {
    // Input: master (v2, 100); priority rises to 110 at 4 s.
    // Output: an advert with 110 at once, so a backup about to preempt us hears it.
    let mut fsm = fsm(v2(100));
    master_at_startup(&mut fsm);
    replay(
        &mut fsm,
        vec![
            (ms(4000), priority(110), vec![send(110)]),
            (ms(4000), priority(110), vec![]),
        ],
    );
}

#[test]
fn backup_priority_change_moves_the_master_down_timer_by_the_skew_change() {
    // Input: backup (v2, 100) started at 0 (timer due at 3.609375 s); priority 200 at 1 s.
    // Output: Skew_Time goes from 0.609375 s to 0.21875 s, so the timer fires 0.390625 s sooner,
    // at 3.21875 s, with the new priority.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(1000), priority(200), vec![]),
            (us(3_218_749), poll(), vec![]),
            (
                us(3_218_750),
                poll(),
                to_master(State::Backup, 200, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn backup_priority_drop_delays_the_master_down_timer() {
    // Input: backup (v2, 200) started at 0 (due at 3.21875 s); priority 1 at 1 s.
    // Output: skew 255/256 s (996 093 µs): due at 3 s + 0.996093 s.
    let mut fsm = fsm(v2(200));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(1000), priority(1), vec![]),
            (us(3_218_750), poll(), vec![]),
            (
                us(3_996_093),
                poll(),
                to_master(State::Backup, 1, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn backup_whose_priority_passes_the_master_preempts_it() {
    // Input: backup (v2, 100, preempt) following a priority-150 master advertising every second
    // from 0.5 s; at 2.7 s tracking raises us to 160.
    // Output: the master's next adverts (3.5 s on) are lower and discarded; MASTER
    // Master_Down_Interval (3 s + 96/256 s) after the last accepted one (2.5 s): 5.875 s.
    let mut fsm = fsm(v2(100));
    let mut steps = vec![(us(0), startup(), started_backup())];
    for n in 0..3 {
        steps.push((ms(500 + 1000 * n), advert(HIGHER, 150), vec![]));
    }
    steps.push((ms(2700), priority(160), vec![]));
    for n in 3..5 {
        steps.push((ms(500 + 1000 * n), advert(HIGHER, 150), vec![]));
    }
    steps.push((us(5_874_999), poll(), vec![]));
    steps.push((
        us(5_875_000),
        poll(),
        to_master(State::Backup, 160, Reason::Preempt),
    ));
    replay(&mut fsm, steps);
}

#[test]
fn priority_is_kept_within_1_and_254_and_an_owner_ignores_tracking() {
    // Input: PriorityChanged(0) and (255) to a non-owner; (10) to an owner.
    // Output: 1 and 254 (0 is the farewell, 255 the owner's); the owner stays 255 and silent.
    let mut fsm = fsm(v2(100));
    master_at_startup(&mut fsm);
    replay(
        &mut fsm,
        vec![
            (ms(4000), priority(0), vec![send(1)]),
            (ms(4100), priority(255), vec![send(254)]),
        ],
    );

    let mut owner = super::fsm(v2(255));
    replay(
        &mut owner,
        vec![
            (
                us(0),
                startup(),
                to_master(State::Initialize, 255, Reason::Owner),
            ),
            (ms(100), priority(10), vec![]),
        ],
    );
    assert_eq!(owner.priority(), 255);
}

#[test]
fn priority_change_in_fault_applies_when_it_clears() {
    // Input: backup (v2, 100) in fault from 1 s; priority 200 at 2 s; cleared at 3 s.
    // Output: no action at 2 s; the new Master_Down_Timer uses 200: MASTER at 6.21875 s.
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
            (ms(2000), priority(200), vec![]),
            (
                ms(3000),
                fault(false),
                vec![changed(State::Fault, State::Backup, Reason::FaultCleared)],
            ),
            (
                us(6_218_750),
                poll(),
                to_master(State::Backup, 200, Reason::MasterNoResponse),
            ),
        ],
    );
}
