//! What one virtual router is configured with, validated once: a [`Config`] that exists is one
//! the state machine can run (RFC 3768 §5.3 and RFC 5798 §5.2 ranges), so the rules never check
//! it again.

use std::{fmt, time::Duration};

use serde::Deserialize;

use super::Version;

/// keepalived's `state MASTER|BACKUP`. It is only a startup hint: an instance that does not own
/// the addresses (priority < 255) still starts in BACKUP and waits a full Master_Down_Interval,
/// exactly as with `state BACKUP` (keepalived 2.2 `vrrp_init_state`); what `Master` changes is
/// that `nopreempt` and `preempt_delay` are ignored, as keepalived clears them with a warning.
/// Priority 255 starts as MASTER at once whatever the hint. The config's
/// `state = "master" | "backup"` reads into it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    Master,
    #[default]
    Backup,
}

/// The configuration of one virtual router, as the state machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    version: Version,
    vrid: u8,
    priority: u8,
    advert_interval: Duration,
    preempt: bool,
    preempt_delay: Duration,
    initial_state: InitialState,
}

/// A value the protocol cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// VRIDs are 1..=255.
    Vrid,
    /// Priorities are 1..=255; 0 is reserved for the master's farewell advert.
    Priority,
    /// v2 carries whole seconds in 8 bits (1..=255 s); v3 carries centiseconds in 12 bits
    /// (10 ms..=40.95 s).
    AdvertInterval {
        version: Version,
        interval: Duration,
    },
    /// RFC 3768 is IPv4 only; an IPv6 instance needs version 3.
    V2NeedsIpv4,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Vrid => f.write_str("virtual_router_id must be between 1 and 255"),
            ConfigError::Priority => {
                f.write_str("priority must be between 1 and 255 (255 = address owner)")
            }
            ConfigError::AdvertInterval {
                version: Version::V2,
                interval,
            } => write!(
                f,
                "advert_int {interval:?} is not valid for VRRPv2: use whole seconds from 1 to 255, or version 3"
            ),
            ConfigError::AdvertInterval {
                version: Version::V3,
                interval,
            } => write!(
                f,
                "advert_int {interval:?} is not valid for VRRPv3: use a multiple of 10 ms from 10 ms to 40.95 s"
            ),
            ConfigError::V2NeedsIpv4 => {
                f.write_str("VRRPv2 is IPv4 only: use version 3 for an IPv6 instance")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// A configuration with keepalived's defaults for the rest: `preempt` on, no
    /// `preempt_delay`, initial state BACKUP.
    pub fn new(
        version: Version,
        vrid: u8,
        priority: u8,
        advert_interval: Duration,
    ) -> Result<Self, ConfigError> {
        if vrid == 0 {
            return Err(ConfigError::Vrid);
        }
        if priority == 0 {
            return Err(ConfigError::Priority);
        }
        let valid = match version {
            Version::V2 => {
                advert_interval.subsec_nanos() == 0
                    && (1..=255).contains(&advert_interval.as_secs())
            }
            Version::V3 => {
                advert_interval.as_nanos().is_multiple_of(10_000_000)
                    && (Duration::from_millis(10)..=Duration::from_millis(40_950))
                        .contains(&advert_interval)
            }
        };
        if !valid {
            return Err(ConfigError::AdvertInterval {
                version,
                interval: advert_interval,
            });
        }
        Ok(Config {
            version,
            vrid,
            priority,
            advert_interval,
            preempt: true,
            preempt_delay: Duration::ZERO,
            initial_state: InitialState::Backup,
        })
    }

    /// `preempt` (true) or keepalived's `nopreempt` (false).
    #[must_use]
    pub fn with_preempt(mut self, preempt: bool) -> Self {
        self.preempt = preempt;
        self
    }

    /// keepalived's `preempt_delay`: how long after startup, or after first hearing a
    /// lower-priority master, a backup keeps accepting that master before preempting it.
    #[must_use]
    pub fn with_preempt_delay(mut self, delay: Duration) -> Self {
        self.preempt_delay = delay;
        self
    }

    /// keepalived's `state`; see [`InitialState`].
    #[must_use]
    pub fn with_initial_state(mut self, state: InitialState) -> Self {
        self.initial_state = state;
        self
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn vrid(&self) -> u8 {
        self.vrid
    }

    /// The configured (base) priority; tracking moves the effective one.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Advertisement_Interval: how often this router advertises while master.
    pub fn advert_interval(&self) -> Duration {
        self.advert_interval
    }

    pub fn initial_state(&self) -> InitialState {
        self.initial_state
    }

    /// Priority 255: the router owns the virtual addresses and becomes master at once.
    pub fn is_owner(&self) -> bool {
        self.priority == 255
    }

    /// Whether a backup preempts a lower-priority master. keepalived turns `nopreempt` off for an
    /// owner and for `state MASTER`, so this does too.
    pub fn preempts(&self) -> bool {
        self.preempt || self.is_owner() || self.initial_state == InitialState::Master
    }

    /// The preempt delay in force: none without preemption or with `state MASTER` (keepalived
    /// clears it there too).
    pub fn preempt_delay(&self) -> Duration {
        if self.preempts() && self.initial_state == InitialState::Backup {
            self.preempt_delay
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ranges_of_the_wire_format_are_enforced() {
        assert_eq!(Config::new(Version::V2, 0, 100, S), Err(ConfigError::Vrid));
        assert_eq!(
            Config::new(Version::V2, 1, 0, S),
            Err(ConfigError::Priority)
        );
        for bad in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(256),
        ] {
            assert!(Config::new(Version::V2, 1, 100, bad).is_err(), "{bad:?}");
        }
        for bad in [
            Duration::ZERO,
            Duration::from_millis(15),
            Duration::from_millis(40_960),
        ] {
            assert!(Config::new(Version::V3, 1, 100, bad).is_err(), "{bad:?}");
        }
        for good in [Duration::from_secs(1), Duration::from_secs(255)] {
            assert!(Config::new(Version::V2, 255, 255, good).is_ok(), "{good:?}");
        }
        for good in [Duration::from_millis(10), Duration::from_millis(40_950), S] {
            assert!(Config::new(Version::V3, 1, 1, good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = Config::new(Version::V2, 1, 100, Duration::from_millis(500)).unwrap_err();
        assert!(e.to_string().contains("whole seconds"), "{e}");
        assert!(ConfigError::V2NeedsIpv4.to_string().contains("version 3"));
    }

    #[test]
    fn keepalived_clears_nopreempt_and_preempt_delay_where_it_does() {
        let base = Config::new(Version::V2, 1, 100, S).unwrap();
        let delayed = base.clone().with_preempt_delay(Duration::from_secs(30));
        assert!(base.preempts());
        assert_eq!(delayed.preempt_delay(), Duration::from_secs(30));

        let nopreempt = delayed.clone().with_preempt(false);
        assert!(!nopreempt.preempts());
        assert_eq!(nopreempt.preempt_delay(), Duration::ZERO);

        let master = nopreempt.clone().with_initial_state(InitialState::Master);
        assert!(master.preempts());
        assert_eq!(master.preempt_delay(), Duration::ZERO);

        let owner = Config::new(Version::V2, 1, 255, S)
            .unwrap()
            .with_preempt(false);
        assert!(owner.is_owner() && owner.preempts());
    }
}
