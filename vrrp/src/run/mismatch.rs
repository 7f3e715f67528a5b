//! Which dropped adverts are worth a warning, and how often: a peer configured differently
//! (another password, interval, address list, version or checksum) makes both nodes MASTER, and
//! keepalived logs each such advert. A counter alone would leave an operator guessing, but one
//! line per advert would flood the log: the first of each kind is logged, then at most one a
//! minute. Every drop is still counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::packet::{DropKind, DropReason};

/// How long a kind of mismatch stays quiet after it was logged.
const QUIET: Duration = Duration::from_secs(60);

/// The last warning of each kind.
#[derive(Debug, Default)]
pub(crate) struct Mismatches {
    last: HashMap<DropKind, Instant>,
}

impl Mismatches {
    /// Whether `reason` is to be logged as a warning now.
    pub(crate) fn warn(&mut self, reason: &DropReason, now: Instant) -> bool {
        if !is_mismatch(reason) {
            return false;
        }
        match self.last.get(&reason.kind()) {
            Some(at) if now.saturating_duration_since(*at) < QUIET => false,
            _ => {
                self.last.insert(reason.kind(), now);
                true
            }
        }
    }
}

/// A difference between the peer's configuration and ours, rather than noise on the link (an
/// advert for another router's VRID, a stray or corrupted packet).
fn is_mismatch(reason: &DropReason) -> bool {
    matches!(
        reason.kind(),
        DropKind::VersionMismatch
            | DropKind::CastMismatch
            | DropKind::AuthTypeMismatch
            | DropKind::AuthFailed
            | DropKind::AddressListMismatch
            | DropKind::IntervalMismatch
            | DropKind::BadChecksum
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_is_logged_at_once_then_once_a_minute_per_kind() {
        let mut mismatches = Mismatches::default();
        let start = Instant::now();
        assert!(mismatches.warn(&DropReason::AuthFailed, start));
        assert!(!mismatches.warn(&DropReason::AuthFailed, start + Duration::from_secs(1)));
        // Another kind has a clock of its own.
        let interval = DropReason::IntervalMismatch {
            received: crate::packet::Interval::from_secs(2),
            expected: crate::packet::Interval::from_secs(1),
        };
        assert!(mismatches.warn(&interval, start + Duration::from_secs(2)));
        assert!(mismatches.warn(&DropReason::AuthFailed, start + Duration::from_secs(61)));
    }

    #[test]
    fn noise_on_the_link_is_not_a_mismatch() {
        let mut mismatches = Mismatches::default();
        let now = Instant::now();
        assert!(!mismatches.warn(&DropReason::UnknownVrid { vrid: 9 }, now));
        assert!(!mismatches.warn(&DropReason::TooShort { len: 3 }, now));
    }
}
