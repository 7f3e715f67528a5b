//! Resuming the state a reload's rebuild carried over ([`Fsm::resume`]) instead of starting.

use super::*;

#[test]
fn a_resumed_master_advertises_at_once_and_reports_no_change() {
    // Input: v2 priority 100, resumed as MASTER at 5 s; then silence.
    // Output: an advert, the VIPs put on and announced at 5 s, no StateChanged; then an advert
    // every second, as a master that never stopped.
    let mut fsm = fsm(v2(100));
    let actions = fsm.resume(ms(5000), State::Master, SECOND);
    assert_eq!(
        actions,
        [send(100), Action::AddVips, Action::SendGratuitousArp]
    );
    assert_eq!(fsm.state(), State::Master);
    replay(
        &mut fsm,
        vec![
            (ms(5999), poll(), vec![]),
            (ms(6000), poll(), vec![send(100)]),
            (ms(7000), poll(), vec![send(100)]),
        ],
    );
}

#[test]
fn a_resumed_backup_waits_a_whole_master_down_interval() {
    // Input: v2 priority 100, resumed as BACKUP at 1 s; a master's advert at 2 s, then
    // silence.
    // Output: nothing at the resume (no VIPs removed, no StateChanged); the advert restarts the
    // timer, which fires 3.609375 s after it.
    let mut fsm = fsm(v2(100));
    assert_eq!(fsm.resume(ms(1000), State::Backup, SECOND), []);
    assert_eq!(fsm.state(), State::Backup);
    assert_eq!(fsm.next_wakeup(), Some(us(4_609_375)));
    replay(
        &mut fsm,
        vec![
            (ms(2000), advert(HIGHER, 150), vec![]),
            (us(5_609_374), poll(), vec![]),
            (
                us(5_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn a_master_resumed_in_fault_says_goodbye() {
    // Input: tracking says FAULT before the resume as MASTER.
    // Output: priority 0 and the VIPs removed, then MASTER -> FAULT.
    let mut fsm = fsm(v2(100));
    fsm.handle(Time::ZERO, Event::Fault(true));
    assert_eq!(
        fsm.resume(ms(10), State::Master, SECOND),
        [
            send(0),
            Action::RemoveVips,
            changed(State::Master, State::Fault, Reason::Fault),
        ]
    );
    assert_eq!(fsm.state(), State::Fault);
}

#[test]
fn a_fault_that_cleared_meanwhile_resumes_as_backup_and_an_owner_as_master() {
    // Input: resumed from FAULT with tracking healthy; a priority-255 instance resumed from
    // BACKUP.
    // Output: FAULT -> BACKUP with a fresh timer; BACKUP -> MASTER at once as the owner.
    let mut fsm = fsm(v2(100));
    assert_eq!(
        fsm.resume(ms(0), State::Fault, SECOND),
        [changed(State::Fault, State::Backup, Reason::FaultCleared)]
    );
    assert_eq!(fsm.next_wakeup(), Some(us(3_609_375)));
    let mut owner = super::fsm(v2(255));
    assert_eq!(
        owner.resume(ms(0), State::Backup, SECOND),
        to_master(State::Backup, 255, Reason::Owner)
    );
}

#[test]
fn resume_from_initialize_is_a_startup_and_a_running_machine_ignores_it() {
    // Input: resume as INIT; then a resume as MASTER on the running backup.
    // Output: the startup's actions; then nothing.
    let mut fsm = fsm(v2(100));
    assert_eq!(
        fsm.resume(ms(0), State::Initialize, SECOND),
        started_backup()
    );
    assert_eq!(fsm.resume(ms(1), State::Master, SECOND), []);
    assert_eq!(fsm.state(), State::Backup);
}

#[test]
fn a_resumed_v3_backup_keeps_the_masters_interval() {
    // Input: v3 priority 100 with 10 cs adverts, resumed as BACKUP at 0 following a master
    // that advertises every 100 cs; then silence.
    // Output: MASTER only after 3 × 1 s + (256 - 100) × 1 s / 256 = 3.609375 s, the master's
    // Master_Down_Interval, not after its own 0.36 s.
    let mut fsm = fsm(v3(100, 10));
    assert_eq!(fsm.resume(ms(0), State::Backup, SECOND), []);
    replay(
        &mut fsm,
        vec![
            (us(3_609_374), poll(), vec![]),
            (
                us(3_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn a_resumed_v2_backup_counts_from_its_own_interval() {
    // Input: v2 priority 100 at 1 s, resumed as BACKUP at 0 with a 5 s interval carried (v2
    // has no interval to learn: adverts with another one are dropped).
    // Output: Master_Down_Interval from its own 1 s, 3.609375 s.
    let mut fsm = fsm(v2(100));
    assert_eq!(fsm.resume(ms(0), State::Backup, 5 * SECOND), []);
    assert_eq!(fsm.next_wakeup(), Some(us(3_609_375)));
}
