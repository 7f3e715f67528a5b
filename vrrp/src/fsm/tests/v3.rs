//! VRRPv3 specifics (RFC 5798 §6.1, §6.4): centisecond timers and Master_Adver_Interval adopted
//! from the master.

use super::*;

#[test]
fn v3_master_down_interval_in_centiseconds() {
    // Input: v3, priority 200, advert_int 50 cs; startup at 0, silence.
    // Output: MASTER at 3 x 0.5 s + 56 x 0.5 s / 256 = 1.609375 s; adverts every 0.5 s.
    let mut fsm = fsm(v3(200, 50));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (us(1_609_374), poll(), vec![]),
            (
                us(1_609_375),
                poll(),
                to_master(State::Backup, 200, Reason::MasterNoResponse),
            ),
            (us(2_109_375), poll(), vec![send(200)]),
        ],
    );
}

#[test]
fn v3_skew_rounds_down_to_the_microsecond() {
    // Input: v3, priority 100, advert_int 50 cs.
    // Output: skew 156 x 0.5 s / 256 = 304 687.5 µs -> 304 687 µs; MASTER at 1.804687 s.
    let mut fsm = fsm(v3(100, 50));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (us(1_804_686), poll(), vec![]),
            (
                us(1_804_687),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn backup_adopts_the_master_interval() {
    // Input: v3 backup, priority 100, own interval 1 s; a priority-200 master advertising a
    // 50 cs interval at 0.2 s, then silence.
    // Output: Master_Adver_Interval becomes 0.5 s, so MASTER at 0.2 + 1.5 + 0.304687 s =
    // 2.004687 s instead of 0.2 + 3.609375 s. As master it still advertises every 1 s (its own
    // interval).
    let mut fsm = fsm(v3(100, 100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(200), advert_cs(HIGHER, 200, 50), vec![]),
            (us(2_004_686), poll(), vec![]),
            (
                us(2_004_687),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
            (us(3_004_687), poll(), vec![send(100)]),
        ],
    );
}

#[test]
fn priority_zero_skew_uses_the_adopted_interval() {
    // Input: v3 backup (100, own 1 s) following a master at 2 s intervals; farewell at 5 s.
    // Output: MASTER after Skew_Time = 156 x 2 s / 256 = 1.21875 s, at 6.21875 s.
    let mut fsm = fsm(v3(100, 100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(1000), advert_cs(HIGHER, 200, 200), vec![]),
            (ms(3000), advert_cs(HIGHER, 200, 200), vec![]),
            (ms(5000), advert_cs(HIGHER, 0, 200), vec![]),
            (us(6_218_749), poll(), vec![]),
            (
                us(6_218_750),
                poll(),
                to_master(State::Backup, 100, Reason::MasterReleased),
            ),
        ],
    );
}

#[test]
fn master_giving_way_adopts_the_new_master_interval() {
    // Input: v3 master (100, own 1 s) since 3.609375 s; a priority-150 advert with a 2 s interval
    // at 4 s, then silence.
    // Output: BACKUP with Master_Down_Interval 3 x 2 s + 1.21875 s: MASTER again at 11.21875 s,
    // its Master_Adver_Interval back to its own 1 s (it kept the 2 s, which a sync group's
    // step-down, hearing no advert first, then timed out on).
    let mut fsm = fsm(v3(100, 100));
    master_at_startup(&mut fsm);
    replay(
        &mut fsm,
        vec![
            (
                ms(4000),
                advert_cs(HIGHER, 150, 200),
                master_to_backup(Reason::HigherPriority),
            ),
            (us(11_218_749), poll(), vec![]),
            (
                us(11_218_750),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
        ],
    );
    assert_eq!(fsm.master_adver_interval(), SECOND);
}

#[test]
fn discarded_adverts_do_not_change_the_interval() {
    // Input: v3 backup (200, own 1 s, preempt); a priority-100 master advertising 3 s intervals.
    // Output: its adverts are discarded, interval included: MASTER at 3.21875 s.
    let mut fsm = fsm(v3(200, 100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(500), advert_cs(LOWER, 100, 300), vec![]),
            (
                us(3_218_750),
                poll(),
                to_master(State::Backup, 200, Reason::Preempt),
            ),
        ],
    );
    assert_eq!(fsm.master_adver_interval(), SECOND);
}

#[test]
fn zero_interval_is_not_adopted() {
    // Input: v3 backup (100, own 1 s); a priority-200 advert claiming a 0 interval at 1 s.
    // Output: the advert resets the timer with the interval we had: MASTER at 4.609375 s.
    let mut fsm = fsm(v3(100, 100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(1000), advert_cs(HIGHER, 200, 0), vec![]),
            (
                us(4_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn v2_ignores_the_advert_interval() {
    // Input: v2 backup (100, 1 s); an advert carrying 3 s (the receive checks drop those in v2,
    // but the state machine must not depend on it).
    // Output: Master_Down_Interval stays 3.609375 s.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(1000), advert_cs(HIGHER, 200, 300), vec![]),
            (
                us(4_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn fault_resets_the_adopted_interval() {
    // Input: v3 backup (100, own 1 s) adopts 2 s at 1 s; fault at 2 s, cleared at 3 s.
    // Output: back to its own 1 s: MASTER at 3 s + 3.609375 s.
    let mut fsm = fsm(v3(100, 100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(1000), advert_cs(HIGHER, 200, 200), vec![]),
            (
                ms(2000),
                fault(true),
                vec![changed(State::Backup, State::Fault, Reason::Fault)],
            ),
            (
                ms(3000),
                fault(false),
                vec![changed(State::Fault, State::Backup, Reason::FaultCleared)],
            ),
            (
                us(6_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
        ],
    );
}
