//! Arbitrary event sequences, hostile adverts included, against the invariants every caller
//! relies on: no panic, the next wakeup is in the future and bounded by the state's timer, the
//! VIPs are configured exactly while master, and adverts only come from a master.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Startup,
    Shutdown,
    Advert {
        src: usize,
        priority: u8,
        interval_cs: u16,
    },
    Priority(u8),
    Fault(bool),
    /// A sync-group sibling's move: [`Event::GroupMaster`], [`Event::GroupBackup`] or
    /// [`Event::GroupHold`].
    Group(u8),
    Poll,
    /// Poll exactly at the next wakeup, if any.
    PollAtWakeup,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Startup),
        1 => Just(Op::Shutdown),
        6 => (0usize..5, prop_oneof![Just(0u8), any::<u8>()], 0u16..=4095)
            .prop_map(|(src, priority, interval_cs)| Op::Advert { src, priority, interval_cs }),
        2 => any::<u8>().prop_map(Op::Priority),
        1 => any::<bool>().prop_map(Op::Fault),
        1 => (0u8..4).prop_map(Op::Group),
        2 => Just(Op::Poll),
        4 => Just(Op::PollAtWakeup),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (
        any::<bool>(),
        1u8..=255,
        1u64..=300,
        any::<bool>(),
        0u64..=3_000,
        any::<bool>(),
    )
        .prop_map(|(v3, priority, interval, preempt, delay_ms, master)| {
            let (version, interval) = if v3 {
                (Version::V3, Duration::from_millis(10 * interval))
            } else {
                (Version::V2, Duration::from_secs(1 + interval % 3))
            };
            let initial = if master {
                InitialState::Master
            } else {
                InitialState::Backup
            };
            Config::new(version, 1, priority, interval)
                .unwrap()
                .with_preempt(preempt)
                .with_preempt_delay(Duration::from_millis(delay_ms))
                .with_initial_state(initial)
        })
}

/// Checks one call's actions against the state machine before and after it.
fn check(
    fsm: &Fsm,
    now: Time,
    before: State,
    priority_before: u8,
    actions: &[Action],
    vips: &mut bool,
) {
    let mut state = before;
    for (i, action) in actions.iter().enumerate() {
        let next_change = actions[i..].iter().find_map(|a| match a {
            Action::StateChanged { from, to, reason } => Some((*from, *to, *reason)),
            _ => None,
        });
        match action {
            Action::SendAdvert { priority: 0 } => {
                assert!(
                    matches!(
                        next_change,
                        Some((State::Master, State::Fault | State::Initialize, _))
                            | Some((State::Master, State::Backup, Reason::SyncGroup))
                    ),
                    "farewell advert without leaving Master: {actions:?}"
                );
            }
            Action::SendAdvert { priority } => {
                let becoming_master = matches!(next_change, Some((_, State::Master, _)));
                assert!(
                    state == State::Master || becoming_master,
                    "advert from {state:?}: {actions:?}"
                );
                assert!(
                    [priority_before, fsm.priority()].contains(priority),
                    "advert priority: {actions:?}"
                );
            }
            Action::AddVips => {
                assert!(!*vips, "VIPs added twice: {actions:?}");
                *vips = true;
            }
            Action::RemoveVips => *vips = false,
            Action::SendGratuitousArp => assert!(*vips, "gratuitous ARP without VIPs: {actions:?}"),
            Action::StateChanged { from, to, .. } => {
                assert_eq!(*from, state, "{actions:?}");
                assert_ne!(from, to, "{actions:?}");
                state = *to;
            }
        }
    }
    assert_eq!(state, fsm.state(), "{actions:?}");
    assert_eq!(
        *vips,
        fsm.state() == State::Master,
        "VIPs vs state: {actions:?}"
    );

    let wakeup = fsm.next_wakeup();
    match fsm.state() {
        State::Master => {
            assert!(wakeup.is_some_and(|w| w > now && w <= now + fsm.config().advert_interval()))
        }
        State::Backup => {
            assert!(wakeup.is_some_and(|w| w > now && w <= now + fsm.master_down_interval()))
        }
        State::Initialize | State::Fault => assert_eq!(wakeup, None),
    }
    if fsm.state() == State::Fault {
        assert!(fsm.is_faulted());
    }
    if fsm.is_faulted() {
        assert!(matches!(fsm.state(), State::Fault | State::Initialize));
    }
    if fsm.config().is_owner() {
        assert_eq!(fsm.priority(), 255);
    } else {
        assert!((1..=254).contains(&fsm.priority()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_event_sequences_keep_the_invariants(
        config in config(),
        ipv6 in any::<bool>(),
        ops in prop::collection::vec((0u64..=4_000_000, op()), 1..200),
    ) {
        let local = if ipv6 && config.version() == Version::V3 { LOCAL6 } else { LOCAL };
        let mut fsm = Fsm::new(config, local).unwrap();
        let sources = [LOWER, LOCAL, HIGHER, LOWER6, HIGHER6];
        let mut now = Time::ZERO;
        let mut vips = false;
        for (delta_us, op) in ops {
            now = now + Duration::from_micros(delta_us);
            let before = fsm.state();
            let priority_before = fsm.priority();
            let actions = match op {
                Op::Startup => fsm.handle(now, Event::Startup),
                Op::Shutdown => fsm.handle(now, Event::Shutdown),
                Op::Advert { src, priority, interval_cs } => fsm.handle(
                    now,
                    Event::Advert(Advert {
                        src: sources[src],
                        priority,
                        max_advert_interval: Duration::from_millis(10 * u64::from(interval_cs)),
                    }),
                ),
                Op::Priority(p) => fsm.handle(now, Event::PriorityChanged(p)),
                Op::Fault(f) => fsm.handle(now, Event::Fault(f)),
                Op::Group(g) => fsm.handle(
                    now,
                    match g {
                        0 => Event::GroupMaster,
                        1 => Event::GroupBackup,
                        2 => Event::GroupHold(true),
                        _ => Event::GroupHold(false),
                    },
                ),
                Op::Poll => fsm.poll(now),
                Op::PollAtWakeup => {
                    if let Some(wakeup) = fsm.next_wakeup() {
                        now = now.max(wakeup);
                    }
                    fsm.poll(now)
                }
            };
            check(&fsm, now, before, priority_before, &actions, &mut vips);
        }
    }
}
