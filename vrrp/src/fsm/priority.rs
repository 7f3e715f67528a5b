//! Who wins: the effective priority that tracking produces, and the ranking of two routers by
//! (priority, primary address) that decides between two masters (RFC 5798 §6.4.3).

use std::{cmp::Ordering, net::IpAddr};

/// keepalived's effective priority: the base priority plus the weights of the tracked scripts and
/// interfaces that currently count, kept within 1..=254 so tracking can neither claim ownership
/// nor send the reserved 0. An owner (base 255) stays 255 whatever its tracking says.
pub fn effective_priority(base: u8, tracked_weight_sum: i32) -> u8 {
    let total = i32::from(base).saturating_add(tracked_weight_sum);
    // Saturated into a u8 (below 0 to 0, above 255 to 255); `clamp_effective` applies the range.
    let total = u8::try_from(total.max(0)).unwrap_or(u8::MAX);
    clamp_effective(base == 255, total)
}

/// The priority the state machine runs with after a [`super::Event::PriorityChanged`], and the
/// rule of [`effective_priority`]: an owner stays 255, anyone else is kept within 1..=254.
pub(super) fn clamp_effective(owner: bool, requested: u8) -> u8 {
    if owner { 255 } else { requested.clamp(1, 254) }
}

/// How an advert's sender ranks against us: by priority, then by primary address, greater
/// winning. Addresses of different families do not rank (keepalived's `vrrp_saddr_cmp` returns 0
/// for them), so an equal-priority advert from another family, or from our own address, is
/// `Equal`.
pub(super) fn rank(
    their_priority: u8,
    their_addr: IpAddr,
    our_priority: u8,
    our_addr: IpAddr,
) -> Ordering {
    let by_addr = match (their_addr, our_addr) {
        (IpAddr::V4(theirs), IpAddr::V4(ours)) => theirs.cmp(&ours),
        (IpAddr::V6(theirs), IpAddr::V6(ours)) => theirs.cmp(&ours),
        _ => Ordering::Equal,
    };
    their_priority.cmp(&our_priority).then(by_addr)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn effective_priority_is_clamped_like_keepalived() {
        assert_eq!(effective_priority(100, 0), 100);
        assert_eq!(effective_priority(100, -20), 80);
        assert_eq!(effective_priority(100, 10), 110);
        assert_eq!(effective_priority(100, -150), 1);
        assert_eq!(effective_priority(100, 200), 254);
        assert_eq!(effective_priority(1, i32::MIN), 1);
        assert_eq!(effective_priority(254, i32::MAX), 254);
        assert_eq!(effective_priority(255, -100), 255);
        assert_eq!(clamp_effective(false, 0), 1);
        assert_eq!(clamp_effective(false, 255), 254);
        assert_eq!(clamp_effective(true, 10), 255);
    }

    #[test]
    fn rank_by_priority_then_address() {
        let low4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        let high4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(rank(101, low4, 100, high4), Ordering::Greater);
        assert_eq!(rank(99, high4, 100, low4), Ordering::Less);
        // Numeric, not textual: 10.0.0.10 > 10.0.0.9.
        assert_eq!(rank(100, high4, 100, low4), Ordering::Greater);
        assert_eq!(rank(100, low4, 100, high4), Ordering::Less);
        assert_eq!(rank(100, low4, 100, low4), Ordering::Equal);

        let low6 = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 9));
        let high6 = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xa));
        assert_eq!(rank(100, high6, 100, low6), Ordering::Greater);
        assert_eq!(rank(100, low6, 100, high6), Ordering::Less);
        assert_eq!(rank(100, high6, 100, low4), Ordering::Equal);
        assert_eq!(rank(101, low6, 100, high4), Ordering::Greater);
    }
}
