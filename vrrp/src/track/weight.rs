//! The effective priority of an instance from what it tracks, with keepalived 2.2's rules
//! (`vrrp_track.c`): which failures fault the instance and which weights count.

use super::ScriptHealth;
use crate::fsm::effective_priority;

/// What one instance tracks right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    Script { weight: i16, health: ScriptHealth },
    Interface { up: bool },
}

/// The priority an instance runs with, or `None` for FAULT.
///
/// A Bad script with weight 0 or a down interface faults the instance. A Bad script with a
/// negative weight adds it, a Good script with a positive weight adds it; nothing else counts (a
/// failing positive-weight script only loses its bonus, it does not fault; a Pending one, not
/// run to its end yet, neither faults nor weighs, as keepalived's `INIT`). The sum goes through
/// [`effective_priority`]: 1..=254, an owner (255) stays 255.
pub fn tracked_priority(base: u8, tracked: &[Tracked]) -> Option<u8> {
    let mut sum: i32 = 0;
    for item in tracked {
        let weight = match *item {
            Tracked::Interface { up: false } => return None,
            Tracked::Script {
                weight: 0,
                health: ScriptHealth::Bad,
            } => return None,
            Tracked::Script {
                weight,
                health: ScriptHealth::Bad,
            } if weight < 0 => weight,
            Tracked::Script {
                weight,
                health: ScriptHealth::Good,
            } if weight > 0 => weight,
            Tracked::Script { .. } | Tracked::Interface { up: true } => 0,
        };
        sum = sum.saturating_add(i32::from(weight));
    }
    Some(effective_priority(base, sum))
}

#[cfg(test)]
mod tests {
    use super::ScriptHealth::{Bad, Good, Pending};
    use super::*;

    fn script(weight: i16, health: ScriptHealth) -> Tracked {
        Tracked::Script { weight, health }
    }

    const UP: Tracked = Tracked::Interface { up: true };
    const DOWN: Tracked = Tracked::Interface { up: false };

    #[test]
    fn rules_table() {
        let cases: &[(&str, u8, &[Tracked], Option<u8>)] = &[
            ("nothing tracked", 100, &[], Some(100)),
            ("interface up", 100, &[UP], Some(100)),
            ("interface down faults", 100, &[UP, DOWN], None),
            ("weight 0 good", 100, &[script(0, Good)], Some(100)),
            ("weight 0 bad faults", 100, &[script(0, Bad)], None),
            (
                "negative good adds nothing",
                100,
                &[script(-20, Good)],
                Some(100),
            ),
            ("negative bad subtracts", 100, &[script(-20, Bad)], Some(80)),
            ("positive good adds", 100, &[script(30, Good)], Some(130)),
            (
                "positive bad adds nothing, no fault",
                100,
                &[script(30, Bad)],
                Some(100),
            ),
            (
                "weights sum",
                100,
                &[
                    script(10, Good),
                    script(5, Good),
                    script(-30, Bad),
                    script(-7, Good),
                    UP,
                ],
                Some(85),
            ),
            ("clamped to 254", 250, &[script(100, Good)], Some(254)),
            ("clamped to 1", 10, &[script(-200, Bad)], Some(1)),
            (
                "owner stays 255 when losing weight",
                255,
                &[script(-100, Bad)],
                Some(255),
            ),
            (
                "owner stays 255 when gaining weight",
                255,
                &[script(10, Good)],
                Some(255),
            ),
            ("owner still faults", 255, &[DOWN], None),
            (
                "pending neither faults nor weighs",
                100,
                &[
                    script(0, Pending),
                    script(30, Pending),
                    script(-20, Pending),
                ],
                Some(100),
            ),
            (
                "fault wins over weights",
                100,
                &[script(50, Good), script(0, Bad)],
                None,
            ),
        ];
        for (name, base, tracked, want) in cases {
            assert_eq!(tracked_priority(*base, tracked), *want, "{name}");
        }
    }

    #[test]
    fn many_weights_do_not_overflow() {
        let tracked = vec![script(253, Good); 100_000];
        assert_eq!(tracked_priority(1, &tracked), Some(254));
        let tracked = vec![script(-253, Bad); 100_000];
        assert_eq!(tracked_priority(254, &tracked), Some(1));
    }
}
