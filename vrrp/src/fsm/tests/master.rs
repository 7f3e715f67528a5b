//! Master state (RFC 5798 §6.4.3) and keepalived's answer to a lower-priority master.

use super::*;

const T0: u64 = 3_609_375; // when a v2 priority-100 router started at 0 becomes master

#[test]
fn lower_priority_advert_is_answered_at_once() {
    // Input: master (v2, 100) since T0; a priority-50 advert at T0 + 0.3 s.
    // Output: our advert at once with the VIPs announced again (keepalived's
    // `vrrp_garp_lower_prio_repeat`), and the next advert a full interval later (keepalived
    // resets the timer after any advert it receives as master); still MASTER.
    let mut fsm = fsm(v2(100));
    assert_eq!(master_at_startup(&mut fsm), us(T0));
    replay(
        &mut fsm,
        vec![
            (us(T0 + 300_000), advert(LOWER, 50), reassert(100)),
            (us(T0 + 1_000_000), poll(), vec![]),
            (us(T0 + 1_299_999), poll(), vec![]),
            (us(T0 + 1_300_000), poll(), vec![send(100)]),
        ],
    );
}

#[test]
fn priority_zero_advert_is_answered_at_once() {
    // Input: master (v2, 100); another router's priority-0 farewell at T0 + 0.5 s.
    // Output: "Send an ADVERTISEMENT; Reset the Adver_Timer": advert at once, next at + 1 s.
    let mut fsm = fsm(v2(100));
    master_at_startup(&mut fsm);
    replay(
        &mut fsm,
        vec![
            (us(T0 + 500_000), advert(HIGHER, 0), vec![send(100)]),
            (us(T0 + 1_000_000), poll(), vec![]),
            (us(T0 + 1_500_000), poll(), vec![send(100)]),
        ],
    );
}

#[test]
fn higher_priority_advert_makes_master_backup() {
    // Input: master (v2, 100); a priority-150 advert from a lower address at T0 + 0.2 s, then
    // silence.
    // Output: VIPs removed, BACKUP with Master_Down_Timer from the advert: takes over again
    // 3.609375 s later.
    let mut fsm = fsm(v2(100));
    master_at_startup(&mut fsm);
    let at = T0 + 200_000;
    replay(
        &mut fsm,
        vec![
            (
                us(at),
                advert(LOWER, 150),
                master_to_backup(Reason::HigherPriority),
            ),
            (us(at + 1_000_000), poll(), vec![]),
            (us(at + 3_609_374), poll(), vec![]),
            (
                us(at + 3_609_375),
                poll(),
                to_master(State::Backup, 100, Reason::MasterNoResponse),
            ),
        ],
    );
}

#[test]
fn equal_priority_is_broken_by_the_greater_ipv4_address() {
    // Input: master 192.0.2.10 (v2, 100); equal-priority adverts from 192.0.2.9, from our own
    // address, then from 192.0.2.11.
    // Output: the lower address gets an immediate advert (it ranks lower), our own address is
    // ignored (keepalived only warns), the greater address wins: BACKUP.
    let mut fsm = fsm(v2(100));
    master_at_startup(&mut fsm);
    replay(
        &mut fsm,
        vec![
            (us(T0 + 100_000), advert(LOWER, 100), reassert(100)),
            (us(T0 + 200_000), advert(LOCAL, 100), vec![]),
            (
                us(T0 + 300_000),
                advert(HIGHER, 100),
                master_to_backup(Reason::HigherAddress),
            ),
        ],
    );
}

#[test]
fn ipv4_addresses_compare_as_numbers() {
    // Input: master 192.0.2.10 (v2, 100); an equal-priority advert from 192.0.2.100, which a
    // textual comparison would put first.
    // Output: 192.0.2.100 is greater and wins.
    let mut fsm = fsm(v2(100));
    master_at_startup(&mut fsm);
    let big = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
    replay(
        &mut fsm,
        vec![(
            us(T0 + 1),
            advert(big, 100),
            master_to_backup(Reason::HigherAddress),
        )],
    );
}

#[test]
fn equal_priority_is_broken_by_the_greater_ipv6_address() {
    // Input: v3 IPv6 master fe80::10 (priority 100, 1 s); equal-priority adverts from fe80::f,
    // then fe80::11.
    // Output: the lower address gets an advert, the greater one makes us BACKUP.
    let mut fsm = fsm6(v3(100, 100));
    let t0 = master_at_startup(&mut fsm);
    assert_eq!(t0, us(T0));
    replay(
        &mut fsm,
        vec![
            (
                t0 + Duration::from_millis(100),
                advert(LOWER6, 100),
                reassert(100),
            ),
            (
                t0 + Duration::from_millis(200),
                advert(HIGHER6, 100),
                master_to_backup(Reason::HigherAddress),
            ),
        ],
    );
}

#[test]
fn shutdown_as_master_sends_priority_zero() {
    // Input: master (v2, 100); shutdown at T0 + 0.5 s.
    // Output: advert with priority 0, VIPs removed, Initialize, no timer left.
    let mut fsm = fsm(v2(100));
    master_at_startup(&mut fsm);
    replay(
        &mut fsm,
        vec![(
            us(T0 + 500_000),
            shutdown(),
            vec![
                send(0),
                Action::RemoveVips,
                changed(State::Master, State::Initialize, Reason::Shutdown),
            ],
        )],
    );
    assert_eq!(fsm.next_wakeup(), None);
}

#[test]
fn a_late_poll_still_sends_one_advert() {
    // Input: master (v2, 100); the I/O layer polls 2.5 s late.
    // Output: one advert, and the next one a full interval after the late poll.
    let mut fsm = fsm(v2(100));
    master_at_startup(&mut fsm);
    replay(
        &mut fsm,
        vec![
            (us(T0 + 3_500_000), poll(), vec![send(100)]),
            (us(T0 + 4_499_999), poll(), vec![]),
            (us(T0 + 4_500_000), poll(), vec![send(100)]),
        ],
    );
}

#[test]
fn an_event_after_a_missed_deadline_fires_the_timer_first() {
    // Input: backup (v2, 100) started at 0; its Master_Down_Timer expires at 3.609375 s but the
    // next call is a higher-priority advert at 3.7 s.
    // Output: it became master at the deadline (that happened first), then the advert makes it
    // BACKUP again.
    let mut fsm = fsm(v2(100));
    let mut expected = to_master(State::Backup, 100, Reason::MasterNoResponse);
    expected.extend(master_to_backup(Reason::HigherPriority));
    replay(
        &mut fsm,
        vec![
            (us(0), startup(), started_backup()),
            (ms(3700), advert(HIGHER, 200), expected),
        ],
    );
}
