//! RFC 5798 §6.4.1 (Initialize) and the v2 timer arithmetic seen from the outside.

use super::*;

#[test]
fn v2_backup_takes_over_after_exactly_master_down_interval() {
    // Input: v2, priority 100, advert_int 1 s; startup at 0 and silence.
    // Output: BACKUP at 0 (VIPs made absent); MASTER at 3 s + (256 - 100)/256 s = 3.609375 s,
    // not a microsecond earlier; then an advert every second.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (us(3_609_374), poll(), vec![]),
            (
                us(3_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
            (us(4_609_374), poll(), vec![]),
            (us(4_609_375), poll(), vec![send(100)]),
            (us(5_609_375), poll(), vec![send(100)]),
        ],
    );
}

#[test]
fn v2_skew_shrinks_with_priority() {
    // Input: v2 priority 254, advert_int 3 s; startup at 0.
    // Output: MASTER at 9 s + 2/256 s = 9.0078125 s, rounded down to the microsecond.
    let config = Config::new(Version::V2, 7, 254, Duration::from_secs(3)).unwrap();
    let mut fsm = fsm(config);
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (us(9_007_811), poll(), vec![]),
            (
                us(9_007_812),
                poll(),
                to_master(State::Backup, 254, Reason::MasterNoResponse),
            ),
            (us(12_007_812), poll(), vec![send(254)]),
        ],
    );
}

#[test]
fn owner_becomes_master_at_once() {
    // Input: priority 255 (address owner), v2 1 s; startup at 2 s.
    // Output: advert, VIPs and gratuitous ARP at 2 s with no waiting; adverts every second.
    let mut fsm = fsm(v2(255));
    replay(
        &mut fsm,
        vec![
            (
                ms(2000),
                startup(),
                to_master(State::Initialize, 255, Reason::Owner),
            ),
            (ms(2999), poll(), vec![]),
            (ms(3000), poll(), vec![send(255)]),
        ],
    );
}

#[test]
fn initial_state_master_is_only_a_hint() {
    // Input: v2 priority 100 with `state MASTER` and `nopreempt`; startup at 0; a priority-50
    // master advertises at 0.5 s.
    // Output: BACKUP like `state BACKUP` (keepalived 2.2 `vrrp_init_state`: no shortcut below
    // priority 255), but `nopreempt` is void, so the lower master is ignored and preempted.
    let config = v2(100)
        .with_initial_state(InitialState::Master)
        .with_preempt(false);
    let mut fsm = fsm(config);
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(500), advert(LOWER, 50), vec![]),
            (us(3_609_374), poll(), vec![]),
            (
                us(3_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::Preempt),
            ),
        ],
    );
}

#[test]
fn nothing_happens_before_startup_and_startup_is_idempotent() {
    // Input: adverts, polls and a shutdown before startup; startup twice.
    // Output: nothing until the first startup; the second is ignored.
    let mut fsm = fsm(v2(100));
    replay(
        &mut fsm,
        vec![
            (us(0), advert(HIGHER, 200), vec![]),
            (us(0), poll(), vec![]),
            (us(0), shutdown(), vec![]),
            (ms(100), priority(120), vec![]),
            (ms(200), startup(), started_backup()),
            (ms(300), startup(), vec![]),
        ],
    );
    // The priority given before startup is the one the backup runs with.
    assert_eq!(fsm.priority(), 120);
    assert_eq!(
        fsm.next_wakeup(),
        Some(ms(200) + fsm.master_down_interval())
    );
    assert_eq!(fsm.master_down_interval(), Duration::from_micros(3_531_250));
}

#[test]
fn restart_after_shutdown_starts_from_scratch() {
    // Input: backup started at 0, shut down at 1 s, started again at 2 s.
    // Output: Initialize with no timer in between; the new Master_Down_Timer runs from 2 s.
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
            (ms(1500), poll(), vec![]),
            (ms(2000), startup(), started_backup()),
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
fn v2_is_ipv4_only() {
    assert_eq!(
        Fsm::new(v2(100), LOCAL6).unwrap_err(),
        ConfigError::V2NeedsIpv4
    );
    assert!(Fsm::new(v3(100, 100), LOCAL6).is_ok());
}
