//! HAProxy's health-check rise/fall counter: turns a stream of check results into UP/DOWN
//! transitions with hysteresis, so one flapping check doesn't flap the server.

/// HAProxy's check health counter: `0..=rise+fall-1`; UP while `health >= rise`.
///
/// From UP it takes `fall` consecutive failures to go DOWN, from DOWN `rise` consecutive
/// successes to go UP, as in HAProxy's `set_server_check_status`: a success that leaves the
/// counter at `rise` or more lifts it to the top (the failures in between are forgiven), and a
/// failure that leaves it below `rise` drops it to 0 (the successes towards UP are lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCounter {
    /// The whole state: UP is exactly `health >= rise`, because crossing that line in either
    /// direction snaps the counter to the far end of its range.
    health: u32,
    rise: u32,
    fall: u32,
}

/// What one check result did to the server's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Still UP, or still DOWN.
    None,
    /// Was DOWN, is now UP.
    WentUp,
    /// Was UP, is now DOWN.
    WentDown,
}

/// Where a counter stands between its two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Fully UP: it takes `fall` failures to go DOWN.
    Up,
    /// Fully DOWN: it takes `rise` successes to go UP.
    Down,
    /// Anywhere between, including a server not checked yet (UP, DOWN at its first failure).
    Moving,
}

/// Upper bound for `rise` and `fall`, so `rise + fall - 1` always fits in a `u32` (HAProxy's
/// own values are small; this only keeps absurd configurations from overflowing).
const MAX_THRESHOLD: u32 = u32::MAX / 2;

impl HealthCounter {
    /// A counter with the given thresholds (0 is treated as 1, values above `u32::MAX / 2` are
    /// clamped). Started UP, health is `rise + fall - 1` (takes `fall` failures to go DOWN);
    /// started DOWN, health is 0 (takes `rise` successes to go UP).
    pub fn new(rise: u32, fall: u32, start_up: bool) -> Self {
        let rise = rise.clamp(1, MAX_THRESHOLD);
        let fall = fall.clamp(1, MAX_THRESHOLD);
        let mut counter = Self {
            health: 0,
            rise,
            fall,
        };
        if start_up {
            counter.health = counter.top();
        }
        counter
    }

    /// HAProxy's state for a server that has not been checked yet: UP, but DOWN at the first
    /// failed check (its `check.health = check.rise`, "up, but will fall down at first failure").
    pub fn at_startup(rise: u32, fall: u32) -> Self {
        let mut counter = Self::new(rise, fall, false);
        counter.health = counter.rise;
        counter
    }

    /// Whether the server is UP.
    pub fn is_up(&self) -> bool {
        self.health >= self.rise
    }

    /// Feeds one check result and reports whether it changed the server's state.
    pub fn record(&mut self, success: bool) -> Transition {
        let was_up = self.is_up();
        if success {
            if self.health < self.top() {
                self.health += 1;
                if self.health >= self.rise {
                    // Fully healthy: it takes `fall` failures in a row to bring it down.
                    self.health = self.top();
                }
            }
        } else if self.health > 0 {
            self.health -= 1;
            if self.health < self.rise {
                // Fully unhealthy: it takes `rise` successes in a row to bring it back.
                self.health = 0;
            }
        }
        match (was_up, self.is_up()) {
            (false, true) => Transition::WentUp,
            (true, false) => Transition::WentDown,
            _ => Transition::None,
        }
    }

    /// HAProxy's `on-error sudden-death`: a failure that leaves an UP server one failure short
    /// of DOWN, wherever it stood.
    pub fn fail_to_last_chance(&mut self) -> Transition {
        if self.health > self.rise {
            self.health = self.rise + 1;
        }
        self.record(false)
    }

    /// HAProxy's `on-error mark-down`: DOWN at once, `rise` successes from UP.
    pub fn fail_to_down(&mut self) -> Transition {
        let was_up = self.is_up();
        self.health = 0;
        if was_up {
            Transition::WentDown
        } else {
            Transition::None
        }
    }

    /// The current counter value, `0..=rise+fall-1`.
    pub fn health(&self) -> u32 {
        self.health
    }

    /// Consecutive successes that bring a DOWN server UP.
    pub fn rise(&self) -> u32 {
        self.rise
    }

    /// Consecutive failures that bring an UP server DOWN.
    pub fn fall(&self) -> u32 {
        self.fall
    }

    /// How far the counter is on its way to a change, as HAProxy's stats show it: while UP,
    /// `Some((n, fall))` with `n` the failures it still takes to go DOWN (`UP 2/3`); while DOWN,
    /// `Some((n, rise))` with `n` the successes seen towards UP (`DOWN 1/2`); `None` at rest,
    /// fully UP or fully DOWN.
    pub fn progress(&self) -> Option<(u32, u32)> {
        if self.is_up() {
            (self.health < self.top()).then(|| (self.health - self.rise + 1, self.fall))
        } else {
            (self.health > 0).then_some((self.health, self.rise))
        }
    }

    /// Where the counter rests, for choosing the next check's period as HAProxy's
    /// `srv_getinter` does.
    pub fn stage(&self) -> Stage {
        match self.health {
            0 => Stage::Down,
            h if h == self.top() => Stage::Up,
            _ => Stage::Moving,
        }
    }

    /// The counter's maximum, `rise + fall - 1`; cannot overflow given `MAX_THRESHOLD`.
    fn top(&self) -> u32 {
        self.rise + self.fall - 1
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What the thresholds promise, kept the long way with run lengths, to check against:
    /// UP after `rise` successes in a row, DOWN after `fall` failures in a row, each run
    /// broken by the other result.
    #[derive(Debug)]
    struct Reference {
        up: bool,
        /// Successes in a row while DOWN, failures in a row while UP.
        run: u64,
        rise: u64,
        fall: u64,
    }

    impl Reference {
        fn new(rise: u32, fall: u32, start_up: bool) -> Self {
            Self {
                up: start_up,
                run: 0,
                rise: u64::from(rise.max(1)),
                fall: u64::from(fall.max(1)),
            }
        }

        fn record(&mut self, success: bool) -> Transition {
            // A result that agrees with the state breaks the run towards the other one.
            if success == self.up {
                self.run = 0;
                return Transition::None;
            }
            self.run += 1;
            let needed = if self.up { self.fall } else { self.rise };
            if self.run < needed {
                return Transition::None;
            }
            self.up = !self.up;
            self.run = 0;
            if self.up {
                Transition::WentUp
            } else {
                Transition::WentDown
            }
        }
    }

    #[test]
    fn starts_up_at_the_top_or_down_at_zero() {
        let up = HealthCounter::new(2, 3, true);
        assert!(up.is_up());
        assert_eq!(up.health(), 4);
        assert_eq!((up.rise(), up.fall()), (2, 3));
        let down = HealthCounter::new(2, 3, false);
        assert!(!down.is_up());
        assert_eq!(down.health(), 0);
    }

    #[test]
    fn zero_thresholds_behave_as_one() {
        let mut c = HealthCounter::new(0, 0, true);
        assert_eq!((c.rise(), c.fall(), c.health()), (1, 1, 1));
        assert_eq!(c.record(false), Transition::WentDown);
        assert_eq!(c.record(false), Transition::None);
        assert_eq!(c.record(true), Transition::WentUp);
        assert_eq!(c.record(true), Transition::None);
    }

    #[test]
    fn huge_thresholds_do_not_overflow() {
        let mut c = HealthCounter::new(u32::MAX, u32::MAX, true);
        assert!(c.is_up());
        assert_eq!(c.health(), c.rise() + c.fall() - 1);
        assert_eq!(c.record(true), Transition::None);
        assert_eq!(c.record(false), Transition::None);
        assert_eq!(c.health(), c.rise() + c.fall() - 2);
    }

    #[test]
    fn default_haproxy_thresholds() {
        // rise 2, fall 3: three failures to go down, two successes to come back.
        let mut c = HealthCounter::new(2, 3, true);
        assert_eq!(c.record(false), Transition::None);
        assert_eq!(c.record(false), Transition::None);
        assert_eq!(c.record(false), Transition::WentDown);
        assert_eq!(c.health(), 0);
        assert_eq!(c.record(true), Transition::None);
        assert_eq!(c.record(true), Transition::WentUp);
        assert_eq!(c.health(), 4);
    }

    // Input: with rise 2, fall 3, an UP server failing twice, passing once, failing twice
    // again; then, DOWN, passing once, failing once, passing once. Output: it stays UP (never
    // three failures in a row) and stays DOWN (never two successes in a row), as in HAProxy.
    // (The counter moved one step per result: it went DOWN on the fifth check, and with rise
    // 3 a pass, pass, fail, pass, pass brought a server UP.)
    #[test]
    fn only_results_in_a_row_change_the_state() {
        let mut c = HealthCounter::new(2, 3, true); // health 4
        assert_eq!(c.record(false), Transition::None); // 3
        assert_eq!(c.record(false), Transition::None); // 2
        assert_eq!(c.record(true), Transition::None); // 3, at least rise: back to 4
        assert_eq!(c.health(), 4);
        assert_eq!(c.record(false), Transition::None); // 3
        assert_eq!(c.record(false), Transition::None); // 2
        assert!(c.is_up());
        assert_eq!(c.record(false), Transition::WentDown); // 1 < rise: 0
        assert_eq!(c.record(true), Transition::None); // 1
        assert_eq!(c.record(false), Transition::None); // 0
        assert_eq!(c.record(true), Transition::None); // 1
        assert!(!c.is_up());
        assert_eq!(c.record(true), Transition::WentUp); // 2: the top, 4
        assert_eq!(c.health(), 4);

        let mut c = HealthCounter::new(3, 3, false);
        for success in [true, true, false, true, true] {
            assert_eq!(c.record(success), Transition::None);
        }
        assert!(!c.is_up());
    }

    proptest! {
        #[test]
        fn from_up_exactly_fall_failures_go_down(rise in 0_u32..20, fall in 0_u32..20) {
            let mut c = HealthCounter::new(rise, fall, true);
            for _ in 1..c.fall() {
                prop_assert_eq!(c.record(false), Transition::None);
                prop_assert!(c.is_up());
            }
            prop_assert_eq!(c.record(false), Transition::WentDown);
            prop_assert!(!c.is_up());
            prop_assert_eq!(c.health(), 0);
        }

        #[test]
        fn from_down_exactly_rise_successes_go_up(rise in 0_u32..20, fall in 0_u32..20) {
            let mut c = HealthCounter::new(rise, fall, false);
            for _ in 1..c.rise() {
                prop_assert_eq!(c.record(true), Transition::None);
                prop_assert!(!c.is_up());
            }
            prop_assert_eq!(c.record(true), Transition::WentUp);
            prop_assert!(c.is_up());
            prop_assert_eq!(c.health(), c.rise() + c.fall() - 1);
        }

        #[test]
        fn matches_reference_model(
            rise in 0_u32..8,
            fall in 0_u32..8,
            start_up: bool,
            results in proptest::collection::vec(any::<bool>(), 0..200),
        ) {
            let mut c = HealthCounter::new(rise, fall, start_up);
            let mut r = Reference::new(rise, fall, start_up);
            for success in results {
                prop_assert_eq!(c.record(success), r.record(success));
                prop_assert_eq!(c.is_up(), r.up);
                prop_assert!(u64::from(c.health()) < r.rise + r.fall);
            }
        }
    }

    #[test]
    fn progress_is_haproxys_going_down_and_going_up_counts() {
        let mut c = HealthCounter::new(2, 3, true);
        assert_eq!(c.progress(), None, "fully UP");
        c.record(false);
        assert_eq!(
            c.progress(),
            Some((2, 3)),
            "UP 2/3: two more failures to go DOWN"
        );
        c.record(false);
        assert_eq!(c.progress(), Some((1, 3)));
        c.record(false);
        assert_eq!(c.progress(), None, "fully DOWN");
        c.record(true);
        assert_eq!(c.progress(), Some((1, 2)), "DOWN 1/2: one success of two");
        c.record(true);
        assert_eq!(c.progress(), None);
        assert_eq!(HealthCounter::at_startup(2, 3).progress(), Some((1, 3)));
    }

    #[test]
    fn the_stage_is_up_or_down_only_at_the_ends() {
        // rise 2, fall 3: health 0..=4, UP from 2.
        let mut c = HealthCounter::at_startup(2, 3);
        assert_eq!(c.stage(), Stage::Moving, "not checked yet");
        c.record(true);
        assert_eq!(c.stage(), Stage::Up);
        c.record(false);
        assert_eq!(c.stage(), Stage::Moving, "UP, one failure on its way DOWN");
        c.record(false);
        c.record(false);
        assert_eq!(c.stage(), Stage::Down);
        c.record(true);
        assert_eq!(c.stage(), Stage::Moving, "DOWN, one success on its way UP");
        // rise 1, fall 1: the two ends only.
        let mut c = HealthCounter::new(1, 1, true);
        assert_eq!(c.stage(), Stage::Up);
        c.record(false);
        assert_eq!(c.stage(), Stage::Down);
    }

    #[test]
    fn at_startup_falls_at_the_first_failure_like_haproxy() {
        let mut c = HealthCounter::at_startup(2, 3);
        assert!(c.is_up());
        assert_eq!(c.record(false), Transition::WentDown);
        // One success gives it its full `fall` tolerance, as in HAProxy.
        let mut c = HealthCounter::at_startup(2, 3);
        assert_eq!(c.record(true), Transition::None);
        assert_eq!(c.health(), 4);
        assert_eq!(c.record(false), Transition::None);
        assert_eq!(c.record(false), Transition::None);
        assert_eq!(c.record(false), Transition::WentDown);
    }

    // Input: rise 2, fall 3 (health 0..=4, UP from 2), fully UP. Output: `sudden-death`
    // leaves it UP at 2, one failure from DOWN, and the next failure takes it DOWN; again from
    // fully UP, `mark-down` takes it DOWN at once, and on a DOWN server changes nothing; a
    // `sudden-death` on a server already at its last chance takes it DOWN.
    #[test]
    fn on_error_actions_move_the_counter_as_haproxys_health_adjust() {
        let mut c = HealthCounter::new(2, 3, true);
        assert_eq!(c.fail_to_last_chance(), Transition::None);
        assert_eq!((c.is_up(), c.health()), (true, 2));
        assert_eq!(c.record(false), Transition::WentDown);

        let mut c = HealthCounter::new(2, 3, true);
        assert_eq!(c.fail_to_down(), Transition::WentDown);
        assert_eq!(c.health(), 0);
        assert_eq!(c.fail_to_down(), Transition::None);

        let mut c = HealthCounter::at_startup(2, 3);
        assert_eq!(c.fail_to_last_chance(), Transition::WentDown);
    }
}
