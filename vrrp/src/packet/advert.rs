//! The advertisement as a value: what a VRRP router tells its peers, checked when it is built so
//! that [`encode`](super::encode) cannot fail and every decoded advert is one we could send back.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::AUTH_DATA_LEN;

/// The most addresses one advert can list: the count is a single byte on the wire.
pub const MAX_ADDRESSES: usize = 255;

/// The largest VRRPv3 interval: 12 bits of centiseconds (40.95 s).
const MAX_V3_CENTIS: u16 = 0x0FFF;

/// A VRRP advertisement, version 2 (RFC 3768, IPv4 only) or version 3 (RFC 5798, IPv4 or IPv6).
///
/// VRRPv2, RFC 3768 §5.1:
///
/// ```text
///     0                   1                   2                   3
///     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |   Auth Type   |   Adver Int   |          Checksum             |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                         IP Address (1)                        |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                            .                                  |
///    |                            .                                  |
///    |                            .                                  |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                         IP Address (n)                        |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                     Authentication Data (1)                   |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                     Authentication Data (2)                   |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// VRRPv3, RFC 5798 §5.1 (the IPv4 or IPv6 header comes before it):
///
/// ```text
///     0                   1                   2                   3
///     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |(rsvd) |     Max Adver Int     |          Checksum             |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                                                               |
///    +                                                               +
///    |                       IPvX Address(es)                        |
///    +                                                               +
///    +                                                               +
///    +                                                               +
///    +                                                               +
///    |                                                               |
///    +                                                               +
///    |                                                               |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Type is always 1 (ADVERTISEMENT). The v2 Adver Int is whole seconds; the v3 Max Adver Int is
/// centiseconds. Auth Type 0 (none) and 1 (simple text password, keepalived's `auth_pass`) are
/// supported; RFC 3768 removed authentication, but keepalived 2.2.7 still sends and checks both.
/// Type 2 (IPsec AH) is refused.
///
/// The fields are private so that an `Advert` is always encodable: a VRRPv2 advert has IPv4
/// addresses and a whole-second interval, a VRRPv3 one an interval of at most 4095 centiseconds,
/// and no advert lists more than 255 addresses or mixes families.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    version: Version,
    vrid: u8,
    priority: u8,
    interval: Interval,
    family: Family,
    addresses: Vec<IpAddr>,
    auth: Auth,
}

impl Advert {
    /// A VRRPv2 advert (RFC 3768). VRRPv2 exists over IPv4 only.
    pub fn v2(
        vrid: u8,
        priority: u8,
        interval: Interval,
        addresses: Vec<Ipv4Addr>,
        auth: Auth,
    ) -> Result<Self, AdvertError> {
        if interval.whole_secs().is_none() {
            return Err(AdvertError::IntervalOutOfRange {
                version: Version::V2,
                interval,
            });
        }
        let addresses = checked_count(addresses.into_iter().map(IpAddr::V4).collect())?;
        Ok(Advert {
            version: Version::V2,
            vrid,
            priority,
            interval,
            family: Family::Ipv4,
            addresses,
            auth,
        })
    }

    /// A VRRPv3 advert (RFC 5798) over IPv4.
    pub fn v3(
        vrid: u8,
        priority: u8,
        interval: Interval,
        addresses: Vec<Ipv4Addr>,
    ) -> Result<Self, AdvertError> {
        let addresses = addresses.into_iter().map(IpAddr::V4).collect();
        Self::v3_of(Family::Ipv4, vrid, priority, interval, addresses)
    }

    /// A VRRPv3 advert (RFC 5798) over IPv6.
    pub fn v3_ipv6(
        vrid: u8,
        priority: u8,
        interval: Interval,
        addresses: Vec<Ipv6Addr>,
    ) -> Result<Self, AdvertError> {
        let addresses = addresses.into_iter().map(IpAddr::V6).collect();
        Self::v3_of(Family::Ipv6, vrid, priority, interval, addresses)
    }

    fn v3_of(
        family: Family,
        vrid: u8,
        priority: u8,
        interval: Interval,
        addresses: Vec<IpAddr>,
    ) -> Result<Self, AdvertError> {
        if interval.centis() > MAX_V3_CENTIS {
            return Err(AdvertError::IntervalOutOfRange {
                version: Version::V3,
                interval,
            });
        }
        Ok(Advert {
            version: Version::V3,
            vrid,
            priority,
            interval,
            family,
            addresses: checked_count(addresses)?,
            auth: Auth::None,
        })
    }

    /// Builds an advert from fields the decoder has read. Each invariant holds by the wire format
    /// itself: the count byte bounds the addresses to 255, all of them were read at the packet's
    /// family width, a v2 interval byte is whole seconds up to 255, and a v3 interval was masked
    /// to 12 bits.
    pub(super) fn from_wire(
        version: Version,
        vrid: u8,
        priority: u8,
        interval: Interval,
        family: Family,
        addresses: Vec<IpAddr>,
        auth: Auth,
    ) -> Self {
        Advert {
            version,
            vrid,
            priority,
            interval,
            family,
            addresses,
            auth,
        }
    }

    /// VRRPv2 or VRRPv3.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The virtual router id (1-255 in practice; 0 is carried as is).
    pub fn vrid(&self) -> u8 {
        self.vrid
    }

    /// The sender's priority: 255 for the address owner, 0 when a master resigns.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Changes the priority, as a master does when a tracked script or interface moves it, or to 0
    /// when it resigns. Every priority is encodable.
    pub fn set_priority(&mut self, priority: u8) {
        self.priority = priority;
    }

    /// The advertisement interval (v2 Adver Int, v3 Max Adver Int).
    pub fn interval(&self) -> Interval {
        self.interval
    }

    /// The family of the addresses, and of the IP packet that carries the advert.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The virtual addresses, all of [`Advert::family`].
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// The authentication: always [`Auth::None`] for VRRPv3.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }
}

fn checked_count(addresses: Vec<IpAddr>) -> Result<Vec<IpAddr>, AdvertError> {
    if addresses.len() > MAX_ADDRESSES {
        return Err(AdvertError::TooManyAddresses {
            count: addresses.len(),
        });
    }
    Ok(addresses)
}

/// Why an [`Advert`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    /// The count of addresses is one byte on the wire.
    #[error(
        "an advert lists at most 255 addresses, {count} were given: split them over several VRRP instances"
    )]
    TooManyAddresses {
        /// How many were given.
        count: usize,
    },
    /// v2 carries whole seconds up to 255, v3 centiseconds up to 4095.
    #[error(
        "{version} cannot advertise an interval of {interval}: VRRPv2 carries whole seconds from 0 to 255, VRRPv3 hundredths of a second up to 40.95s"
    )]
    IntervalOutOfRange {
        /// The version of the advert being built.
        version: Version,
        /// The interval that does not fit.
        interval: Interval,
    },
}

/// The VRRP protocol version, the high nibble of an advert's first byte; also the version an
/// instance runs ([`crate::fsm::Config`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: IPv4 only, interval in whole seconds, optional simple password, Skew_Time
    /// independent of the interval.
    V2,
    /// RFC 5798: IPv4 and IPv6, interval in centiseconds, no authentication, backups adopt the
    /// master's interval.
    V3,
}

impl Version {
    /// The number on the wire.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    /// The version numbered `number` on the wire, if it is one of ours.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            2 => Some(Version::V2),
            3 => Some(Version::V3),
            _ => None,
        }
    }

    /// The bytes of authentication data after the addresses: VRRPv2's, none in VRRPv3.
    pub(super) fn auth_len(self) -> usize {
        match self {
            Version::V2 => AUTH_DATA_LEN,
            Version::V3 => 0,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VRRPv{}", self.number())
    }
}

/// The address family of an advert: its addresses are all of it, and so is the IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// 4-byte addresses, carried in IPv4 with protocol 112 to 224.0.0.18 (or a unicast peer).
    Ipv4,
    /// 16-byte addresses, carried in IPv6 with next header 112 to ff02::12 (or a unicast peer).
    Ipv6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// The size of one address on the wire.
    pub fn address_len(self) -> usize {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 16,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        })
    }
}

/// An advertisement interval. It is kept in centiseconds, VRRPv3's unit, so that v2 and v3
/// intervals compare directly; VRRPv2 can only carry whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval(u16);

impl Interval {
    /// An interval of `centis` hundredths of a second.
    pub const fn from_centis(centis: u16) -> Self {
        Interval(centis)
    }

    /// An interval of whole seconds, as VRRPv2 and keepalived's `advert_int 1` write it.
    pub const fn from_secs(secs: u8) -> Self {
        // 255 * 100 = 25500 fits a u16.
        Interval(secs as u16 * 100)
    }

    /// The interval in hundredths of a second.
    pub const fn centis(self) -> u16 {
        self.0
    }

    /// The interval in whole seconds, if it is a whole number of seconds up to 255 (what VRRPv2
    /// can carry).
    pub fn whole_secs(self) -> Option<u8> {
        if self.0.is_multiple_of(100) {
            u8::try_from(self.0 / 100).ok()
        } else {
            None
        }
    }

    /// The interval as a duration, for timers.
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0) * 10)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}s", self.0 / 100, self.0 % 100)
    }
}

/// The authentication of a VRRPv2 advert.
///
/// RFC 3768 dropped authentication, but keepalived 2.2.7 still offers `auth_type PASS` (type 1,
/// the password in the advert in clear) and sends type 0 when none is configured, so a v2 peer of
/// keepalived must speak both. IPsec AH (type 2) is not supported.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Auth Type 0: no authentication; the 8 bytes of authentication data are zero.
    None,
    /// Auth Type 1: a simple password, the 8 bytes of authentication data.
    Pass([u8; 8]),
}

impl Auth {
    /// The password as keepalived's `auth_pass` stores it: its first 8 bytes (keepalived logs
    /// "Truncating auth_pass to 8 characters" and uses those), NUL-padded when shorter.
    pub fn pass(secret: impl AsRef<[u8]>) -> Self {
        let mut data = [0u8; 8];
        for (slot, byte) in data.iter_mut().zip(secret.as_ref()) {
            *slot = *byte;
        }
        Auth::Pass(data)
    }

    /// The Auth Type byte on the wire.
    pub fn type_code(&self) -> u8 {
        match self {
            Auth::None => super::AUTH_NONE,
            Auth::Pass(_) => super::AUTH_PASS,
        }
    }

    /// The 8 bytes of authentication data on the wire.
    pub(super) fn data(&self) -> [u8; 8] {
        match self {
            Auth::None => [0; 8],
            Auth::Pass(data) => *data,
        }
    }
}

/// The password stays out of logs and panics, even though it crosses the LAN in clear.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Pass(_) => f.write_str("Pass(<redacted>)"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn pass_keeps_the_first_eight_bytes_and_pads_with_nul() {
        assert_eq!(Auth::pass("secret-password"), Auth::Pass(*b"secret-p"));
        assert_eq!(Auth::pass("abc"), Auth::Pass(*b"abc\0\0\0\0\0"));
        assert_eq!(Auth::pass(""), Auth::Pass([0; 8]));
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let shown = format!("{:?}", Auth::pass("hunter22"));
        assert!(!shown.contains("hunter"), "{shown}");
    }

    #[test]
    fn v2_needs_whole_seconds() {
        let half = Interval::from_centis(50);
        let err = Advert::v2(1, 100, half, vec![], Auth::None).unwrap_err();
        assert_eq!(
            err,
            AdvertError::IntervalOutOfRange {
                version: Version::V2,
                interval: half
            }
        );
        let too_long = Interval::from_centis(25600);
        assert!(Advert::v2(1, 100, too_long, vec![], Auth::None).is_err());
        assert!(Advert::v2(1, 100, Interval::from_secs(255), vec![], Auth::None).is_ok());
    }

    #[test]
    fn v3_needs_twelve_bits_of_centiseconds() {
        assert!(Advert::v3(1, 100, Interval::from_centis(4095), vec![]).is_ok());
        assert!(Advert::v3(1, 100, Interval::from_centis(4096), vec![]).is_err());
    }

    #[test]
    fn at_most_255_addresses() {
        let many = vec![Ipv4Addr::LOCALHOST; 256];
        let err = Advert::v3(1, 100, Interval::from_secs(1), many).unwrap_err();
        assert_eq!(err, AdvertError::TooManyAddresses { count: 256 });
        let most = vec![Ipv6Addr::LOCALHOST; 255];
        assert!(Advert::v3_ipv6(1, 100, Interval::from_secs(1), most).is_ok());
    }

    #[test]
    fn interval_units() {
        assert_eq!(Interval::from_secs(3).centis(), 300);
        assert_eq!(Interval::from_secs(3).whole_secs(), Some(3));
        assert_eq!(Interval::from_centis(150).whole_secs(), None);
        assert_eq!(
            Interval::from_centis(150).as_duration(),
            Duration::from_millis(1500)
        );
        assert_eq!(Interval::from_centis(150).to_string(), "1.50s");
    }
}
