//! Why a received packet was dropped (the receive checks of RFC 3768 §7.1 and RFC 5798 §7.1),
//! and a counter per reason for the stats page and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Interval, Version};

/// Why [`decode`](super::decode) or [`decode_ipv4_packet`](super::decode_ipv4_packet) refused a
/// packet. The messages are written for a log line; [`DropReason::kind`] gives the counter.
///
/// The RFC says to drop the packet and log the event for each of these; the caller logs once, e.g.
/// `debug!(%src, reason = %drop, "advert dropped")`, and [`DropCounters::record`]s it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// Not even the 8 bytes of the fixed VRRP header.
    #[error("packet of {len} bytes is shorter than the 8-byte VRRP header")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// A multicast advert whose TTL (IPv4) or hop limit (IPv6) is not 255 was sent from off the
    /// link or went through a router.
    #[error(
        "multicast advert arrived with TTL/hop limit {ttl}, expected 255: it was not sent on this link"
    )]
    BadTtl {
        /// The TTL or hop limit received.
        ttl: u8,
    },
    /// The version nibble is neither 2 nor 3.
    #[error("VRRP version {version} is unknown (2 and 3 are)")]
    BadVersion {
        /// The version nibble.
        version: u8,
    },
    /// The type nibble is not 1 (ADVERTISEMENT), the only type defined.
    #[error("VRRP packet type {kind} is not an advertisement (1)")]
    BadType {
        /// The type nibble.
        kind: u8,
    },
    /// The advert cannot be carried by this IP family (VRRPv2 over IPv6), or the source and
    /// destination given are of different families.
    #[error("{reason}")]
    BadAddressFamily {
        /// Which of the two.
        reason: &'static str,
    },
    /// The length disagrees with the count of addresses (plus v2's 8 bytes of authentication).
    #[error("advert of {len} bytes, but its address count makes it {expected} bytes")]
    BadLength {
        /// Bytes received.
        len: usize,
        /// Bytes the header's count of addresses implies.
        expected: usize,
    },
    /// The checksum is wrong: corruption, or (VRRPv3 over IPv4) the peer computes it with the
    /// other [`ChecksumMode`](super::ChecksumMode).
    #[error(
        "bad checksum {received:#06x}, computed {computed:#06x}; for VRRPv3 over IPv4 check that both ends agree on the IPv4 pseudo-header (keepalived's v3_checksum_as_v2)"
    )]
    BadChecksum {
        /// The checksum in the packet.
        received: u16,
        /// The checksum we compute for it.
        computed: u16,
    },
    /// No local instance has this virtual router id.
    #[error("no local VRRP instance has virtual router id {vrid}")]
    UnknownVrid {
        /// The VRID received.
        vrid: u8,
    },
    /// The instance with this VRID runs the other VRRP version.
    #[error("{received} advert for a {expected} instance: set the same version on both ends")]
    VersionMismatch {
        /// The version received.
        received: Version,
        /// The version the instance runs.
        expected: Version,
    },
    /// A multicast advert for an instance configured with unicast peers, or a unicast one for a
    /// multicast instance.
    #[error("{}", if *.expected_unicast {
        "multicast advert for an instance configured with unicast peers"
    } else {
        "unicast advert for an instance configured for multicast"
    })]
    CastMismatch {
        /// Whether the instance expects unicast.
        expected_unicast: bool,
    },
    /// A VRRPv2 Auth Type other than 0 (none) or 1 (simple password); 2 is IPsec AH, which is not
    /// supported.
    #[error("{}", if *.auth_type == super::AUTH_AH {
        "VRRPv2 auth type 2 (IPsec AH) is not supported: use auth_type PASS or none".to_owned()
    } else {
        format!("VRRPv2 auth type {auth_type} is unknown (0 none, 1 PASS)")
    })]
    BadAuthType {
        /// The Auth Type byte.
        auth_type: u8,
    },
    /// A VRRPv2 Auth Type other than the instance's.
    #[error(
        "VRRPv2 auth type {received} received, the instance uses {expected}: configure the same authentication on both ends"
    )]
    AuthTypeMismatch {
        /// The Auth Type received.
        received: u8,
        /// The Auth Type configured.
        expected: u8,
    },
    /// A VRRPv2 simple password other than the instance's.
    #[error("VRRPv2 password does not match (only the first 8 characters of auth_pass count)")]
    AuthFailed,
    /// The addresses differ from the instance's and the sender is not the address owner (priority
    /// 255), so RFC 3768 and 5798 §7.1 say to drop it. keepalived drops it too (and even from the
    /// owner).
    #[error(
        "advertised addresses differ from this instance's virtual addresses and the sender (priority {priority}) is not their owner"
    )]
    AddressListMismatch {
        /// The sender's priority.
        priority: u8,
    },
    /// A VRRPv2 interval other than the instance's (RFC 3768 §7.1). VRRPv3 never drops for this.
    #[error(
        "VRRPv2 advert interval {received} differs from this instance's {expected}: set the same advert_int on both ends"
    )]
    IntervalMismatch {
        /// The interval received.
        received: Interval,
        /// The interval configured.
        expected: Interval,
    },
    /// An IPv4 packet of another protocol than 112 (IPsec AH is 51).
    #[error("IP protocol {protocol} is not VRRP (112)")]
    NotVrrp {
        /// The protocol number.
        protocol: u8,
    },
    /// The IPv4 header is malformed or the packet is a fragment; or an IPv6 packet came
    /// without the source and destination the kernel reports.
    #[error("bad IP header: {reason}")]
    BadIpHeader {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A unicast advert from an address not among the instance's `unicast_peers`, with
    /// `check_unicast_src`.
    #[error("unicast advert from {src}, which is not one of unicast_peers (check_unicast_src)")]
    UnknownSource {
        /// Its source.
        src: std::net::IpAddr,
    },
    /// A sound advert for an instance so far behind that its queue of adverts is full: dropped
    /// as a congested network would drop it (the next one follows), and counted.
    #[error("the instance of VRID {vrid} is busy: its queue of adverts is full")]
    InstanceBusy {
        /// The advert's VRID.
        vrid: u8,
    },
}

impl DropReason {
    /// The counter this reason counts in.
    pub fn kind(&self) -> DropKind {
        match self {
            DropReason::TooShort { .. } => DropKind::TooShort,
            DropReason::BadTtl { .. } => DropKind::BadTtl,
            DropReason::BadVersion { .. } => DropKind::BadVersion,
            DropReason::BadType { .. } => DropKind::BadType,
            DropReason::BadAddressFamily { .. } => DropKind::BadAddressFamily,
            DropReason::BadLength { .. } => DropKind::BadLength,
            DropReason::BadChecksum { .. } => DropKind::BadChecksum,
            DropReason::UnknownVrid { .. } => DropKind::UnknownVrid,
            DropReason::VersionMismatch { .. } => DropKind::VersionMismatch,
            DropReason::CastMismatch { .. } => DropKind::CastMismatch,
            DropReason::BadAuthType { .. } => DropKind::BadAuthType,
            DropReason::AuthTypeMismatch { .. } => DropKind::AuthTypeMismatch,
            DropReason::AuthFailed => DropKind::AuthFailed,
            DropReason::AddressListMismatch { .. } => DropKind::AddressListMismatch,
            DropReason::IntervalMismatch { .. } => DropKind::IntervalMismatch,
            DropReason::NotVrrp { .. } => DropKind::NotVrrp,
            DropReason::BadIpHeader { .. } => DropKind::BadIpHeader,
            DropReason::UnknownSource { .. } => DropKind::UnknownSource,
            DropReason::InstanceBusy { .. } => DropKind::InstanceBusy,
        }
    }
}

/// A [`DropReason`] without its details: the label of a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropKind {
    /// [`DropReason::TooShort`].
    TooShort,
    /// [`DropReason::BadTtl`].
    BadTtl,
    /// [`DropReason::BadVersion`].
    BadVersion,
    /// [`DropReason::BadType`].
    BadType,
    /// [`DropReason::BadAddressFamily`].
    BadAddressFamily,
    /// [`DropReason::BadLength`].
    BadLength,
    /// [`DropReason::BadChecksum`].
    BadChecksum,
    /// [`DropReason::UnknownVrid`].
    UnknownVrid,
    /// [`DropReason::VersionMismatch`].
    VersionMismatch,
    /// [`DropReason::CastMismatch`].
    CastMismatch,
    /// [`DropReason::BadAuthType`].
    BadAuthType,
    /// [`DropReason::AuthTypeMismatch`].
    AuthTypeMismatch,
    /// [`DropReason::AuthFailed`].
    AuthFailed,
    /// [`DropReason::AddressListMismatch`].
    AddressListMismatch,
    /// [`DropReason::IntervalMismatch`].
    IntervalMismatch,
    /// [`DropReason::NotVrrp`].
    NotVrrp,
    /// [`DropReason::BadIpHeader`].
    BadIpHeader,
    /// [`DropReason::UnknownSource`].
    UnknownSource,
    /// [`DropReason::InstanceBusy`].
    InstanceBusy,
}

impl DropKind {
    /// How many kinds there are.
    pub const COUNT: usize = 19;

    /// Every kind, in declaration order (its index in [`DropCounters`]).
    pub const ALL: [DropKind; Self::COUNT] = [
        DropKind::TooShort,
        DropKind::BadTtl,
        DropKind::BadVersion,
        DropKind::BadType,
        DropKind::BadAddressFamily,
        DropKind::BadLength,
        DropKind::BadChecksum,
        DropKind::UnknownVrid,
        DropKind::VersionMismatch,
        DropKind::CastMismatch,
        DropKind::BadAuthType,
        DropKind::AuthTypeMismatch,
        DropKind::AuthFailed,
        DropKind::AddressListMismatch,
        DropKind::IntervalMismatch,
        DropKind::NotVrrp,
        DropKind::BadIpHeader,
        DropKind::UnknownSource,
        DropKind::InstanceBusy,
    ];

    /// A stable snake_case name, fit for a metric label (`reason="bad_checksum"`).
    pub fn name(self) -> &'static str {
        match self {
            DropKind::TooShort => "too_short",
            DropKind::BadTtl => "bad_ttl",
            DropKind::BadVersion => "bad_version",
            DropKind::BadType => "bad_type",
            DropKind::BadAddressFamily => "bad_address_family",
            DropKind::BadLength => "bad_length",
            DropKind::BadChecksum => "bad_checksum",
            DropKind::UnknownVrid => "unknown_vrid",
            DropKind::VersionMismatch => "version_mismatch",
            DropKind::CastMismatch => "cast_mismatch",
            DropKind::BadAuthType => "bad_auth_type",
            DropKind::AuthTypeMismatch => "auth_type_mismatch",
            DropKind::AuthFailed => "auth_failed",
            DropKind::AddressListMismatch => "address_list_mismatch",
            DropKind::IntervalMismatch => "interval_mismatch",
            DropKind::NotVrrp => "not_vrrp",
            DropKind::BadIpHeader => "bad_ip_header",
            DropKind::UnknownSource => "unknown_source",
            DropKind::InstanceBusy => "instance_busy",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One counter per [`DropKind`]. Lock-free, so the receive loop records and the stats page reads
/// without contention.
#[derive(Debug, Default)]
pub struct DropCounters {
    counts: [AtomicU64; DropKind::COUNT],
}

impl DropCounters {
    /// Counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one drop.
    pub fn record(&self, reason: &DropReason) {
        if let Some(count) = self.counts.get(reason.kind().index()) {
            // Relaxed: each counter stands alone; readers need no ordering with other memory.
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The count of one kind.
    pub fn get(&self, kind: DropKind) -> u64 {
        self.counts
            .get(kind.index())
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// Every kind with its count, in [`DropKind::ALL`] order.
    pub fn snapshot(&self) -> [(DropKind, u64); DropKind::COUNT] {
        DropKind::ALL.map(|kind| (kind, self.get(kind)))
    }

    /// All drops counted so far.
    pub fn total(&self) -> u64 {
        DropKind::ALL.iter().map(|kind| self.get(*kind)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_kind_at_its_index() {
        for (position, kind) in DropKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), position, "{kind:?}");
        }
        let mut names: Vec<_> = DropKind::ALL.iter().map(|kind| kind.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropKind::COUNT);
    }

    #[test]
    fn counts_per_kind() {
        let counters = DropCounters::new();
        counters.record(&DropReason::AuthFailed);
        counters.record(&DropReason::AuthFailed);
        counters.record(&DropReason::BadTtl { ttl: 64 });
        assert_eq!(counters.get(DropKind::AuthFailed), 2);
        assert_eq!(counters.get(DropKind::BadTtl), 1);
        assert_eq!(counters.get(DropKind::BadChecksum), 0);
        assert_eq!(counters.total(), 3);
        let snapshot = counters.snapshot();
        assert_eq!(
            snapshot[DropKind::AuthFailed.index()],
            (DropKind::AuthFailed, 2)
        );
    }

    #[test]
    fn messages_read_as_log_lines() {
        assert_eq!(
            DropReason::BadAuthType { auth_type: 2 }.to_string(),
            "VRRPv2 auth type 2 (IPsec AH) is not supported: use auth_type PASS or none"
        );
        assert_eq!(
            DropReason::BadChecksum {
                received: 0x1234,
                computed: 0xabcd
            }
            .to_string()
            .split(';')
            .next(),
            Some("bad checksum 0x1234, computed 0xabcd")
        );
        assert_eq!(
            DropReason::CastMismatch {
                expected_unicast: true
            }
            .to_string(),
            "multicast advert for an instance configured with unicast peers"
        );
    }
}
