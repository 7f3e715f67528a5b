//! Sync groups (keepalived's `vrrp_sync_group`): members go to MASTER together, step down
//! together, and hold back while a sibling follows a better master.

use super::*;

fn group(input: Event) -> Input {
    Input::Event(input)
}

#[test]
fn a_backup_becomes_master_with_its_sibling_at_once() {
    // Input: backup (v2, 100) following a priority-200 master; a sibling became master at 2 s.
    // Output: MASTER at 2 s (reason sync-group), without waiting for its own timer.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(1000), advert(HIGHER, 200), vec![]),
            (
                ms(2000),
                group(Event::GroupMaster),
                to_master(State::Backup, 100, Reason::SyncGroup),
            ),
            // Already master: nothing more.
            (ms(2100), group(Event::GroupMaster), vec![]),
        ],
    );
}

#[test]
fn a_master_steps_down_with_its_sibling_and_says_goodbye() {
    // Input: master (v2, 100) since 3.609375 s; a sibling gave way to a better master at 3.7 s,
    // before our next advert is due.
    // Output: a priority-0 advert (its peer takes over after Skew_Time), VIPs removed, BACKUP.
    let mut fsm = master_stepping_down_at_3700_ms_on(Event::GroupBackup);
    // Already backup: nothing more.
    replay(
        &mut fsm,
        vec![(ms(3800), group(Event::GroupBackup), vec![])],
    );
}

/// A master (v2, 100) since 3.609375 s that gets `event` at 3.7 s, checked to step down with a
/// priority-0 advert, its VIPs removed.
fn master_stepping_down_at_3700_ms_on(event: Event) -> Fsm {
    let mut fsm = fsm(v2(100));
    master_at_startup(&mut fsm);
    let mut down = vec![send(0)];
    down.extend(master_to_backup(Reason::SyncGroup));
    replay(&mut fsm, vec![(ms(3700), group(event), down)]);
    fsm
}

#[test]
fn a_master_whose_sibling_follows_a_better_master_steps_down() {
    // Input: master (v2, 100) since 3.609375 s; at 3.7 s its sibling is seen following a better
    // master, without its step down from MASTER having been seen (only the latest status of a
    // sibling is read). Output: the same step down as for GroupBackup. (It stayed MASTER, its
    // VIP held for good: the peer's lower-priority instance never took over.)
    master_stepping_down_at_3700_ms_on(Event::GroupHold(true));
}

#[test]
fn a_hold_arriving_with_a_due_timer_keeps_the_backup_back() {
    // Input: backup (v2, 100) hearing nobody; its sibling's hold is handled only at 3.7 s, after
    // the Master_Down_Timer fell due (3.609375 s) but before it was polled. Output: it stays
    // BACKUP. (The due timer fired first: MASTER, dragging the sibling along.)
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(3700), group(Event::GroupHold(true)), vec![]),
        ],
    );
    assert_eq!(fsm.state(), State::Backup);
}

#[test]
fn a_held_backup_does_not_take_over_on_its_own() {
    // Input: backup (v2, 100) preempting a priority-50 master (whose adverts it discards); a
    // sibling follows a better master from 0.5 s.
    // Output: at 3.609375 s the timer fires but the instance stays BACKUP and re-arms; once the
    // hold is lifted, the next firing (7.21875 s) takes over.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(500), group(Event::GroupHold(true)), vec![]),
            (ms(1000), advert(LOWER, 50), vec![]),
            (us(3_609_375), poll(), vec![]),
            (ms(4000), group(Event::GroupHold(false)), vec![]),
            (us(7_218_749), poll(), vec![]),
            (
                us(7_218_750),
                poll(),
                to_master(State::Backup, 100, Reason::Preempt),
            ),
        ],
    );
}

#[test]
fn following_is_what_siblings_hold_on() {
    // A backup follows a master it accepts, stops following when the master leaves (priority 0)
    // or falls silent, and never follows as master.
    let mut fsm = fsm(v2(100));
    fsm.handle(us(0), Event::Startup);
    assert!(!fsm.follows_master(), "nobody heard yet");
    fsm.handle(
        ms(1000),
        Event::Advert(Advert {
            src: HIGHER,
            priority: 200,
            max_advert_interval: SECOND,
        }),
    );
    assert!(fsm.follows_master());
    fsm.handle(
        ms(1500),
        Event::Advert(Advert {
            src: HIGHER,
            priority: 0,
            max_advert_interval: SECOND,
        }),
    );
    assert!(!fsm.follows_master(), "the master left");

    // Held, the timer fires without a takeover and the instance follows nobody: a sibling
    // holding on it is then free to take over for both.
    let mut held = super::fsm(v2(100));
    held.handle(us(0), Event::Startup);
    held.handle(ms(100), Event::GroupHold(true));
    held.handle(
        ms(1000),
        Event::Advert(Advert {
            src: HIGHER,
            priority: 200,
            max_advert_interval: SECOND,
        }),
    );
    assert!(held.follows_master());
    let fired = held.next_wakeup().unwrap();
    assert!(held.poll(fired).is_empty());
    assert_eq!(held.state(), State::Backup);
    assert!(!held.follows_master());
}
