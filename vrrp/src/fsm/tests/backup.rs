//! Backup state (RFC 5798 §6.4.2): following a master, the priority-0 handover, preemption,
//! `nopreempt` and keepalived's `preempt_delay`.

use super::*;

#[test]
fn adverts_from_a_better_master_keep_resetting_the_master_down_timer() {
    // Input: backup (v2, 100) from 0; a priority-200 master advertises at 1, 2 and 3 s, then
    // stops.
    // Output: no takeover at 3.609375 s; MASTER 3.609375 s after the last advert (6.609375 s).
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(1000), advert(HIGHER, 200), vec![]),
            (ms(2000), advert(HIGHER, 200), vec![]),
            (ms(3000), advert(HIGHER, 200), vec![]),
            (us(3_609_375), poll(), vec![]),
            (us(6_609_374), poll(), vec![]),
            (
                us(6_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn priority_zero_makes_the_backup_take_over_after_skew() {
    // Input: backup (v2, 100) following a priority-200 master; the master shuts down at 2.5 s
    // (priority-0 advert).
    // Output: MASTER after Skew_Time = 0.609375 s, at 3.109375 s, not after
    // Master_Down_Interval.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(2000), advert(HIGHER, 200), vec![]),
            (ms(2500), advert(HIGHER, 0), vec![]),
            (us(3_109_374), poll(), vec![]),
            (
                us(3_109_375),
                poll(),
                to_master(State::Backup, 100, Reason::MasterReleased),
            ),
        ],
    );
}

#[test]
fn a_new_master_after_priority_zero_cancels_the_short_wait() {
    // Input: backup (v2, 100); priority 0 at 1 s; another backup (priority 150) took over and
    // advertises at 1.3 s.
    // Output: no takeover at 1.609375 s; the timer follows the new master.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(1000), advert(HIGHER, 0), vec![]),
            (ms(1300), advert(LOWER, 150), vec![]),
            (us(1_609_375), poll(), vec![]),
            (us(4_909_374), poll(), vec![]),
            (
                us(4_909_375),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn preempt_ignores_a_lower_priority_master() {
    // Input: backup (v2, 100, preempt) from 0; a priority-50 master advertises every second from
    // 0.5 s.
    // Output: its adverts are discarded, so Master_Down_Timer from startup fires at 3.609375 s
    // (reason Preempt); as master we answer its next advert at once.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(500), advert(LOWER, 50), vec![]),
            (ms(1500), advert(LOWER, 50), vec![]),
            (ms(2500), advert(LOWER, 50), vec![]),
            (ms(3500), advert(LOWER, 50), vec![]),
            (
                us(3_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::Preempt),
            ),
            (ms(4500), advert(LOWER, 50), reassert(100)),
        ],
    );
}

#[test]
fn preempt_takes_over_from_a_master_that_came_first() {
    // Input: backup (v2, 200) started at 10 s while a priority-100 master advertises every
    // second (from 10.5 s).
    // Output: MASTER one Master_Down_Interval after startup: 10 s + 3 s + 56/256 s.
    let mut fsm = fsm(v2(200));
    let mut steps = vec![(ms(10_000), startup(), started_backup())];
    for n in 0..3 {
        steps.push((ms(10_500 + 1000 * n), advert(LOWER, 100), vec![]));
    }
    steps.push((us(13_218_749), poll(), vec![]));
    steps.push((
        us(13_218_750),
        poll(),
        to_master(State::Backup, 200, Reason::Preempt),
    ));
    replay(&mut fsm, steps);
}

#[test]
fn nopreempt_follows_a_lower_priority_master() {
    // Input: backup (v2, 200, nopreempt); a priority-100 master advertises every second from
    // 0.5 s to 9.5 s, then stops.
    // Output: BACKUP throughout; MASTER only once it falls silent: 9.5 s + 3.21875 s.
    let mut fsm = fsm(v2(200).with_preempt(false));
    let mut steps = vec![(us(0), startup(), started_backup())];
    for n in 0..10 {
        steps.push((ms(500 + 1000 * n), advert(LOWER, 100), vec![]));
    }
    steps.push((us(12_718_749), poll(), vec![]));
    steps.push((
        us(12_718_750),
        poll(),
        to_master(State::Backup, 200, Reason::MasterNoResponse),
    ));
    replay(&mut fsm, steps);
}

#[test]
fn equal_priority_backup_does_not_preempt() {
    // Input: backup 192.0.2.10 (v2, 100, preempt) and a master with the same priority at the
    // lower address 192.0.2.9 advertising every second.
    // Output: BACKUP: the RFC accepts "greater than or equal"; the address only decides between
    // two masters.
    let mut fsm = fsm(v2(100));
    let mut steps = vec![(us(0), startup(), started_backup())];
    for n in 0..10 {
        steps.push((ms(500 + 1000 * n), advert(LOWER, 100), vec![]));
    }
    steps.push((ms(10_000), poll(), vec![]));
    replay(&mut fsm, steps);
    assert_eq!(fsm.state(), State::Backup);
}

#[test]
fn preempt_delay_runs_from_startup() {
    // Input: backup (v2, 200, preempt_delay 5 s) started at 0; a priority-100 master advertises
    // every second from 0.5 s.
    // Output: its adverts are accepted until 5 s after startup (keepalived starts the delay when
    // it loads the configuration), discarded from 5.5 s on; MASTER Master_Down_Interval
    // (3.21875 s) after the last accepted one, at 4.5 s + 3.21875 s = 7.71875 s.
    let mut fsm = fsm(v2(200).with_preempt_delay(Duration::from_secs(5)));
    let mut steps = vec![(us(0), startup(), started_backup())];
    for n in 0..8 {
        steps.push((ms(500 + 1000 * n), advert(LOWER, 100), vec![]));
    }
    steps.push((us(7_718_749), poll(), vec![]));
    steps.push((
        us(7_718_750),
        poll(),
        to_master(State::Backup, 200, Reason::Preempt),
    ));
    replay(&mut fsm, steps);
}

#[test]
fn preempt_delay_restarts_after_a_better_master() {
    // Input: backup (v2, 200, preempt_delay 5 s) from 0; a priority-250 master advertises from
    // 0.5 s to 9.5 s; then, from 10 s, a priority-100 master every second.
    // Output: the better master stops the delay; the first lower advert (10 s) starts a fresh
    // one until 15 s; adverts at 15 s and later are discarded; MASTER at 14 s + 3.21875 s.
    let mut fsm = fsm(v2(200).with_preempt_delay(Duration::from_secs(5)));
    let mut steps = vec![(us(0), startup(), started_backup())];
    for n in 0..10 {
        steps.push((ms(500 + 1000 * n), advert(HIGHER, 250), vec![]));
    }
    for n in 0..8 {
        steps.push((ms(10_000 + 1000 * n), advert(LOWER, 100), vec![]));
    }
    steps.push((us(17_218_749), poll(), vec![]));
    steps.push((
        us(17_218_750),
        poll(),
        to_master(State::Backup, 200, Reason::Preempt),
    ));
    replay(&mut fsm, steps);
}

#[test]
fn preempt_delay_does_not_delay_a_dead_master() {
    // Input: backup (v2, 200, preempt_delay 60 s) from 0, nobody else.
    // Output: MASTER after Master_Down_Interval: the delay only protects a living master.
    let mut fsm = fsm(v2(200).with_preempt_delay(Duration::from_secs(60)));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (
                us(3_218_750),
                poll(),
                to_master(State::Backup, 200, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn shutdown_as_backup_sends_nothing() {
    // Input: backup (v2, 100); shutdown at 1 s.
    // Output: Initialize, no advert, no timer.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (
                ms(1000),
                shutdown(),
                vec![changed(State::Backup, State::Initialize, Reason::Shutdown)],
            ),
        ],
    );
    assert_eq!(fsm.next_wakeup(), None);
}
