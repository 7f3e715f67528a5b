//! The advert an instance sends, built once from its config: only the priority changes between
//! sends. It also gives what the instance accepts from its peers ([`Expected`]).

use std::net::IpAddr;

use crate::config::InstanceConfig;
use crate::packet::{Advert, AdvertError, Expected, Family, Interval, Version};

/// The advert `config` sends at its base priority.
pub(crate) fn advert_template(config: &InstanceConfig) -> Result<Advert, AdvertError> {
    let fsm = &config.fsm;
    // The config checked the interval against the version's range, so it fits 12 bits of
    // centiseconds; the fallback is never used.
    let centis = u16::try_from(fsm.advert_interval().as_millis() / 10).unwrap_or(u16::MAX);
    let interval = Interval::from_centis(centis);
    let addresses = config.virtual_ips.iter().map(|net| net.addr());
    match (fsm.version(), config.family) {
        (Version::V2, _) => Advert::v2(
            fsm.vrid(),
            fsm.priority(),
            interval,
            addresses.filter_map(v4).collect(),
            config.auth.clone(),
        ),
        (Version::V3, Family::Ipv4) => Advert::v3(
            fsm.vrid(),
            fsm.priority(),
            interval,
            addresses.filter_map(v4).collect(),
        ),
        (Version::V3, Family::Ipv6) => Advert::v3_ipv6(
            fsm.vrid(),
            fsm.priority(),
            interval,
            addresses
                .filter_map(|a| match a {
                    IpAddr::V6(v6) => Some(v6),
                    IpAddr::V4(_) => None,
                })
                .collect(),
        ),
    }
}

/// What an instance sending `template` accepts.
pub(crate) fn expected(config: &InstanceConfig, template: &Advert) -> Expected {
    let mut expected = Expected::for_advert(template, !config.unicast_peers.is_empty());
    if config.check_unicast_src {
        expected.sources.clone_from(&config.unicast_peers);
    }
    expected
}

fn v4(addr: IpAddr) -> Option<std::net::Ipv4Addr> {
    match addr {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}
