//! Turns the `[vrrp]` section users wrote into a validated [`VrrpConfig`], collecting every
//! problem found rather than stopping at the first.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    ops::RangeInclusive,
};

use fulcrum_common::{ConfigError, Duration, Spanned, list_or_none, secret};
use ipnet::IpNet;

use super::{
    Garp, InstanceConfig, Notify, ScriptCheck, ScriptConfig, SyncGroup, VrrpConfig,
    section::{GarpSection, GroupSection, InstanceSection, ScriptSection},
};
use crate::{
    fsm::{self, InitialState, Version},
    packet::{Auth, ChecksumMode, Family, MAX_ADDRESSES},
};

/// keepalived's largest `preempt_delay` (keepalived.conf(5): "Range: 0 (default) to 1,000").
const MAX_PREEMPT_DELAY: std::time::Duration = std::time::Duration::from_secs(1000);

/// keepalived's `weight` range for a tracking script.
const SCRIPT_WEIGHT: RangeInclusive<i64> = -253..=253;

/// The longest interface name Linux takes (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

impl super::VrrpSection {
    /// Validates the section; every problem is reported, each at its key.
    pub fn build(&self) -> Result<VrrpConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let version = u8::try_from(*self.version.get_ref())
            .ok()
            .and_then(Version::from_number);
        if version.is_none() {
            errors.push(ConfigError::at(
                &self.version,
                "version must be 2 (RFC 3768) or 3 (RFC 5798: IPv6 and centisecond intervals)",
            ));
        }
        if let Some(interface) = &self.interface {
            check_ifname(interface, "interface", &mut errors);
        }
        let garp = build_garp(&self.garp, &mut errors);
        let scripts: Vec<ScriptConfig> = self
            .script
            .iter()
            .filter_map(|(name, section)| build_script(name, section, &mut errors))
            .collect();
        let (groups, group_of) = build_groups(self, &mut errors);

        let mut defined_scripts: Vec<&str> =
            self.script.keys().map(|k| k.get_ref().as_str()).collect();
        defined_scripts.sort_unstable();
        let context = Context {
            version,
            interface: self.interface.as_ref(),
            garp,
            scripts: defined_scripts,
            group_of,
        };
        let mut taken = Taken::default();
        let instances = self
            .instance
            .iter()
            .filter_map(|(name, section)| {
                build_instance(&context, name, section, &mut taken, &mut errors)
            })
            .collect();

        if errors.is_empty() {
            Ok(VrrpConfig {
                instances,
                scripts,
                groups,
                checksum: if self.v3_checksum_as_v2 {
                    ChecksumMode::MessageOnly
                } else {
                    ChecksumMode::PseudoHeader
                },
            })
        } else {
            Err(errors)
        }
    }
}

/// What every instance is built against.
struct Context<'a> {
    /// `None` when `[vrrp] version` is invalid (already reported): version-dependent checks are
    /// skipped rather than reported against a guess.
    version: Option<Version>,
    interface: Option<&'a Spanned<String>>,
    garp: Garp,
    /// Names of `[vrrp.script.NAME]`, sorted.
    scripts: Vec<&'a str>,
    /// Instance name -> the sync group it is in.
    group_of: HashMap<&'a str, &'a str>,
}

/// What instances built so far hold, to find two claiming the same thing.
#[derive(Default)]
struct Taken {
    /// (interface, VRID, family) -> instance.
    routers: HashMap<(String, u8, Family), String>,
    /// Virtual address -> instance.
    addresses: HashMap<IpAddr, String>,
}

fn build_instance(
    context: &Context<'_>,
    name: &Spanned<String>,
    section: &InstanceSection,
    taken: &mut Taken,
    errors: &mut Vec<ConfigError>,
) -> Option<InstanceConfig> {
    let errors_before = errors.len();
    let name_str = name.get_ref().as_str();

    let interface = match (&section.interface, context.interface) {
        (Some(own), _) => {
            check_ifname(own, "interface", errors);
            Some(own.get_ref().clone())
        }
        (None, Some(default)) => Some(default.get_ref().clone()),
        (None, None) => {
            errors.push(ConfigError::at(
                name,
                format!(
                    "instance `{name_str}` has no `interface`: set `interface` in \
                     [vrrp.instance.{name_str}], or a default `interface` in [vrrp]"
                ),
            ));
            None
        }
    };
    let vrid = in_range::<u8>(
        &section.virtual_router_id,
        1..=255,
        "virtual_router_id must be between 1 and 255",
        errors,
    );
    let priority = in_range::<u8>(
        &section.priority,
        1..=255,
        "priority must be between 1 and 255 (255: the address owner, master at once)",
        errors,
    );
    let (family, virtual_ips) = build_virtual_ips(name_str, section, context.version, errors);
    // A VRID or priority reported above is replaced by a valid stand-in so that the interval
    // still gets checked; the instance is then dropped, so the stand-in is never used. With both
    // in range, the interval is all that `fsm::Config::new` can refuse.
    let fsm = context.version.and_then(|version| {
        fsm::Config::new(
            version,
            vrid.unwrap_or(1),
            priority.unwrap_or(100),
            section.advert_interval.get_ref().get(),
        )
        .inspect_err(|_| errors.push(interval_error(section, version)))
        .ok()
    });
    let auth = build_auth(section, context.version, errors);
    let track_scripts = build_track_scripts(name_str, section, &context.scripts, errors);
    let track_interfaces = build_names(&section.track_interfaces, "track_interfaces", errors);
    for interface in &section.track_interfaces {
        check_ifname(interface, "track_interfaces", errors);
    }
    let unicast_peers = build_unicast_peers(section, family, errors);
    let check_unicast_src = *section.check_unicast_src.get_ref();
    if check_unicast_src && unicast_peers.is_empty() {
        errors.push(ConfigError::at(
            &section.check_unicast_src,
            "check_unicast_src needs unicast_peers: a multicast instance hears its peers from any address on the link",
        ));
    }
    let initial_state = check_preemption(name_str, section, priority, errors);

    if let (Some(interface), Some(vrid), Some(family)) = (&interface, vrid, family) {
        let key = (interface.clone(), vrid, family);
        match taken.routers.get(&key) {
            Some(other) => errors.push(ConfigError::at(
                &section.virtual_router_id,
                format!(
                    "instances `{other}` and `{name_str}` both use virtual_router_id {vrid} on \
                     {interface} ({family}): a virtual router id must be unique per interface \
                     and address family; give one of them another id"
                ),
            )),
            None => {
                taken.routers.insert(key, name_str.to_owned());
            }
        }
    }
    for (vip, entry) in virtual_ips.iter().zip(section.virtual_ips.get_ref()) {
        match taken.addresses.get(&vip.addr()) {
            Some(other) if other != name_str => errors.push(ConfigError::at(
                entry,
                format!(
                    "{} is a virtual address of instance `{other}` too: an address belongs to \
                     one instance",
                    vip.addr()
                ),
            )),
            _ => {
                taken.addresses.insert(vip.addr(), name_str.to_owned());
            }
        }
    }

    if errors.len() > errors_before {
        return None;
    }
    let (interface, family) = (interface?, family?);
    let fsm = fsm?
        .with_preempt(*section.preempt.get_ref())
        .with_preempt_delay(section.preempt_delay.get_ref().get())
        .with_initial_state(initial_state);
    Some(InstanceConfig {
        name: name_str.to_owned(),
        fsm,
        interface,
        family,
        virtual_ips,
        auth,
        track_scripts,
        track_interfaces,
        unicast_peers,
        check_unicast_src,
        notify: Notify {
            master: non_empty(&section.notify_master),
            backup: non_empty(&section.notify_backup),
            fault: non_empty(&section.notify_fault),
            stop: non_empty(&section.notify_stop),
            any: non_empty(&section.notify),
        },
        garp: context.garp,
        group: context.group_of.get(name_str).map(|g| (*g).to_owned()),
    })
}

/// The VIPs and their family (that of the first readable one). Errors: unreadable, mixed
/// families, duplicates, none, too many for one advert, IPv6 under VRRPv2.
fn build_virtual_ips(
    name: &str,
    section: &InstanceSection,
    version: Option<Version>,
    errors: &mut Vec<ConfigError>,
) -> (Option<Family>, Vec<IpNet>) {
    let entries = section.virtual_ips.get_ref();
    if entries.is_empty() {
        errors.push(ConfigError::at(
            &section.virtual_ips,
            format!(
                "instance `{name}` has no `virtual_ips`: list at least one, e.g. \
                 [\"192.168.60.78/32\"]"
            ),
        ));
    }
    if entries.len() > MAX_ADDRESSES {
        errors.push(ConfigError::at(
            &section.virtual_ips,
            format!(
                "{} virtual_ips: one advert carries at most {MAX_ADDRESSES}; split them over \
                 several instances",
                entries.len()
            ),
        ));
    }
    let mut family = None;
    let mut vips: Vec<IpNet> = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(vip) = parse_vip(entry.get_ref()) else {
            errors.push(ConfigError::at(
                entry,
                format!(
                    "`{}` is not an address: write one like \"192.168.60.78/32\", \
                     \"192.168.60.78\" or \"2001:db8::1/64\"",
                    entry.get_ref()
                ),
            ));
            continue;
        };
        let this = Family::of(vip.addr());
        match family {
            None => {
                family = Some(this);
                if this == Family::Ipv6 && version == Some(Version::V2) {
                    errors.push(ConfigError::at(
                        entry,
                        fsm::ConfigError::V2NeedsIpv4
                            .to_string()
                            .replace("use version 3", "set `version = 3` in [vrrp]"),
                    ));
                }
            }
            Some(first) if first != this => errors.push(ConfigError::at(
                entry,
                format!(
                    "instance `{name}` mixes {first} and {this} virtual_ips: a virtual router is of \
                     one family; put the {this} ones in another instance"
                ),
            )),
            Some(_) => {}
        }
        if vips.iter().any(|v| v.addr() == vip.addr()) {
            errors.push(ConfigError::at(
                entry,
                format!("{} is listed twice in virtual_ips", vip.addr()),
            ));
            continue;
        }
        vips.push(vip);
    }
    (family, vips)
}

/// `"192.168.60.78/32"`, or a bare address with a host prefix.
fn parse_vip(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// [`fsm::ConfigError::AdvertInterval`] located, in the config's own key names.
fn interval_error(section: &InstanceSection, version: Version) -> ConfigError {
    let interval = section.advert_interval.get_ref();
    ConfigError::at(
        &section.advert_interval,
        match version {
            Version::V2 => format!(
                "advert_interval {interval} is not valid for VRRPv2: use whole seconds from 1s to \
                 255s, or `version = 3` in [vrrp]"
            ),
            Version::V3 => format!(
                "advert_interval {interval} is not valid for VRRPv3: use a multiple of 10ms from \
                 10ms to 40.95s"
            ),
        },
    )
}

/// `auth_pass` / `auth_pass_file`: VRRPv2 only, 1 to 8 bytes.
fn build_auth(
    section: &InstanceSection,
    version: Option<Version>,
    errors: &mut Vec<ConfigError>,
) -> Auth {
    let inline = section.auth_pass.as_ref();
    let file = section.auth_pass_file.as_ref();
    if version == Some(Version::V3) {
        let at = inline
            .map(Spanned::span)
            .or_else(|| file.map(Spanned::span));
        if let Some(span) = at {
            errors.push(ConfigError::spanned(
                span,
                "VRRPv3 has no authentication (RFC 5798 removed it): remove `auth_pass`, or use \
                 `version = 2` in [vrrp]",
            ));
        }
        return Auth::None;
    }
    let pass = match secret::resolve("auth_pass", inline, file) {
        Ok(Some(pass)) => pass,
        Ok(None) => return Auth::None,
        Err(e) => {
            errors.push(e);
            return Auth::None;
        }
    };
    // `resolve` accepted exactly one of the two, so one of these spans is there.
    let span = inline
        .map(Spanned::span)
        .or_else(|| file.map(Spanned::span))
        .unwrap_or(0..0);
    if pass.is_empty() {
        errors.push(ConfigError::spanned(
            span,
            "auth_pass is empty: give 1 to 8 characters, or remove it for no authentication",
        ));
    } else if pass.len() > 8 {
        errors.push(ConfigError::spanned(
            span,
            format!(
                "auth_pass is {} bytes long, but VRRPv2 carries 8 and keepalived uses only the \
                 first 8: shorten it to at most 8 so that what you wrote is what is checked",
                pass.len()
            ),
        ));
    }
    Auth::pass(pass)
}

fn build_track_scripts(
    name: &str,
    section: &InstanceSection,
    defined: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    for script in &section.track_scripts {
        if !defined.contains(&script.get_ref().as_str()) {
            errors.push(ConfigError::at(
                script,
                format!(
                    "instance `{name}` tracks script `{}`, which is not defined (defined: {})",
                    script.get_ref(),
                    list_or_none(defined)
                ),
            ));
        }
    }
    build_names(&section.track_scripts, "track_scripts", errors)
}

/// The names of a list, each reported where it is listed twice.
fn build_names(names: &[Spanned<String>], key: &str, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        if seen.insert(name.get_ref().as_str()) {
            out.push(name.get_ref().clone());
        } else {
            errors.push(ConfigError::at(
                name,
                format!("`{}` is listed twice in {key}", name.get_ref()),
            ));
        }
    }
    out
}

fn build_unicast_peers(
    section: &InstanceSection,
    family: Option<Family>,
    errors: &mut Vec<ConfigError>,
) -> Vec<IpAddr> {
    let mut peers = Vec::with_capacity(section.unicast_peers.len());
    for entry in &section.unicast_peers {
        let Ok(peer) = entry.get_ref().trim().parse::<IpAddr>() else {
            errors.push(ConfigError::at(
                entry,
                format!(
                    "`{}` is not an address: write a bare IP such as \"192.168.60.129\" (no port, \
                     no prefix)",
                    entry.get_ref()
                ),
            ));
            continue;
        };
        if peer.is_unspecified() || peer.is_multicast() || peer.is_loopback() {
            errors.push(ConfigError::at(
                entry,
                format!("{peer} cannot be a unicast peer: give the peer node's own address"),
            ));
        } else if let Some(family) = family.filter(|f| *f != Family::of(peer)) {
            errors.push(ConfigError::at(
                entry,
                format!(
                    "unicast peer {peer} is not {family} like the instance's virtual_ips: adverts \
                     go over one family"
                ),
            ));
        } else if peers.contains(&peer) {
            errors.push(ConfigError::at(
                entry,
                format!("{peer} is listed twice in unicast_peers"),
            ));
        } else {
            peers.push(peer);
        }
    }
    peers
}

/// `state`, `preempt` and `preempt_delay`. keepalived silently ignores `nopreempt` and
/// `preempt_delay` for an initial MASTER and for the address owner (the state machine does the
/// same); here that is an error, since a setting with no effect surprises at failover time.
fn check_preemption(
    name: &str,
    section: &InstanceSection,
    priority: Option<u8>,
    errors: &mut Vec<ConfigError>,
) -> InitialState {
    let initial = *section.state.get_ref();
    let delay = section.preempt_delay.get_ref().get();
    if delay > MAX_PREEMPT_DELAY {
        errors.push(ConfigError::at(
            &section.preempt_delay,
            format!(
                "preempt_delay {} is too long: keepalived allows 0s to 1000s",
                section.preempt_delay.get_ref()
            ),
        ));
    }
    let preempt = *section.preempt.get_ref();
    let owner = priority == Some(255);
    if !preempt && (initial == InitialState::Master || owner) {
        errors.push(ConfigError::at(
            &section.preempt,
            format!(
                "instance `{name}`: `preempt = false` has no effect with {} (keepalived clears \
                 nopreempt there too); use state = \"backup\" and a priority below 255 for an \
                 instance that does not take over",
                if owner {
                    "priority 255"
                } else {
                    "state = \"master\""
                }
            ),
        ));
    } else if !delay.is_zero() && (initial == InitialState::Master || owner || !preempt) {
        errors.push(ConfigError::at(
            &section.preempt_delay,
            format!(
                "instance `{name}`: `preempt_delay` has no effect with {} (keepalived ignores it \
                 there too); remove it, or use state = \"backup\", preempt = true and a priority \
                 below 255",
                if !preempt {
                    "preempt = false"
                } else if owner {
                    "priority 255"
                } else {
                    "state = \"master\""
                }
            ),
        ));
    }
    initial
}

/// Most gratuitous ARPs per VIP in one burst.
const MAX_GARP_REPEAT: u32 = 100;

fn build_garp(section: &GarpSection, errors: &mut Vec<ConfigError>) -> Garp {
    let repeat = match u32::try_from(*section.repeat.get_ref()) {
        Ok(n) if (1..=MAX_GARP_REPEAT).contains(&n) => n,
        Ok(n) if n > MAX_GARP_REPEAT => {
            // A burst is sent in one go, between two adverts: millions of rounds would hold
            // them back and hand the VIPs to the peer.
            errors.push(ConfigError::at(
                &section.repeat,
                format!("garp.repeat must be at most {MAX_GARP_REPEAT}"),
            ));
            MAX_GARP_REPEAT
        }
        _ => {
            errors.push(ConfigError::at(
                &section.repeat,
                "garp.repeat must be at least 1: without gratuitous ARP, neighbours keep sending \
                 to the old master until their ARP cache expires",
            ));
            1
        }
    };
    let refresh = *section.refresh.get_ref();
    if !refresh.is_zero() && refresh.get() < std::time::Duration::from_secs(1) {
        // keepalived takes whole seconds here: a refresh every millisecond would send
        // thousands of broadcast frames a second.
        errors.push(ConfigError::at(
            &section.refresh,
            "garp.refresh must be at least 1s (or \"0s\": no refresh): each refresh is a full \
             burst to every host of the LAN",
        ));
    }
    Garp {
        delay: off_if_zero(section.delay),
        repeat,
        refresh: off_if_zero(refresh),
    }
}

fn build_script(
    name: &Spanned<String>,
    section: &ScriptSection,
    errors: &mut Vec<ConfigError>,
) -> Option<ScriptConfig> {
    let errors_before = errors.len();
    let name_str = name.get_ref();
    let check = match (&section.command, &section.builtin) {
        (Some(_), Some(builtin)) => {
            errors.push(ConfigError::at(
                builtin,
                format!("script `{name_str}`: set `command` or `builtin`, not both"),
            ));
            None
        }
        (Some(command), None) if command.get_ref().trim().is_empty() => {
            errors.push(ConfigError::at(
                command,
                format!("script `{name_str}`: `command` is empty; give a shell command"),
            ));
            None
        }
        (Some(command), None) => Some(ScriptCheck::Command(command.get_ref().clone())),
        (None, Some(builtin)) => Some(ScriptCheck::Builtin(*builtin.get_ref())),
        (None, None) => {
            errors.push(ConfigError::at(
                name,
                format!(
                    "script `{name_str}` needs `command` (a shell command, healthy while it \
                     exits 0) or `builtin = \"proxy\"`"
                ),
            ));
            None
        }
    };
    let interval = section.interval.get_ref().get();
    if interval.is_zero() {
        errors.push(ConfigError::at(
            &section.interval,
            "interval must be more than 0s",
        ));
    }
    let timeout = section
        .timeout
        .as_ref()
        .map_or(interval, |t| t.get_ref().get());
    if let Some(t) = section.timeout.as_ref().filter(|t| t.get_ref().is_zero()) {
        errors.push(ConfigError::at(
            t,
            "timeout must be more than 0s (leave it out to use the interval)",
        ));
    }
    let weight = if SCRIPT_WEIGHT.contains(section.weight.get_ref()) {
        i16::try_from(*section.weight.get_ref()).ok()
    } else {
        None
    };
    if weight.is_none() {
        errors.push(ConfigError::at(
            &section.weight,
            "weight must be between -253 and 253 (0: a failing check means FAULT)",
        ));
    }
    let counts = 1..=i64::from(u32::MAX);
    let fall = in_range::<u32>(
        &section.fall,
        counts.clone(),
        "fall must be at least 1",
        errors,
    );
    let rise = in_range::<u32>(&section.rise, counts, "rise must be at least 1", errors);
    if errors.len() > errors_before {
        return None;
    }
    Some(ScriptConfig {
        name: name_str.clone(),
        check: check?,
        interval,
        timeout,
        weight: weight?,
        fall: fall?,
        rise: rise?,
    })
}

/// The sync groups, and which group each instance is in.
fn build_groups<'a>(
    section: &'a super::VrrpSection,
    errors: &mut Vec<ConfigError>,
) -> (Vec<SyncGroup>, HashMap<&'a str, &'a str>) {
    let mut defined: Vec<&str> = section
        .instance
        .keys()
        .map(|k| k.get_ref().as_str())
        .collect();
    defined.sort_unstable();
    let mut group_of: HashMap<&str, &str> = HashMap::new();
    let mut groups = Vec::with_capacity(section.group.len());
    for (name, group) in &section.group {
        groups.push(build_group(
            name.get_ref(),
            group,
            &defined,
            &mut group_of,
            errors,
        ));
    }
    (groups, group_of)
}

fn build_group<'a>(
    name: &'a str,
    group: &'a GroupSection,
    defined: &[&str],
    group_of: &mut HashMap<&'a str, &'a str>,
    errors: &mut Vec<ConfigError>,
) -> SyncGroup {
    if group.instances.get_ref().is_empty() {
        errors.push(ConfigError::at(
            &group.instances,
            format!("group `{name}` lists no instances: list the instances that move together"),
        ));
    }
    let mut instances = Vec::new();
    for member in group.instances.get_ref() {
        let member_str = member.get_ref().as_str();
        if !defined.contains(&member_str) {
            errors.push(ConfigError::at(
                member,
                format!(
                    "group `{name}` lists instance `{member_str}`, which is not defined \
                     (defined: {})",
                    list_or_none(defined)
                ),
            ));
            continue;
        }
        match group_of.get(member_str) {
            Some(other) if *other == name => errors.push(ConfigError::at(
                member,
                format!("`{member_str}` is listed twice in group `{name}`"),
            )),
            Some(other) => errors.push(ConfigError::at(
                member,
                format!(
                    "instance `{member_str}` is already in group `{other}`: an instance belongs \
                     to at most one sync group"
                ),
            )),
            None => {
                group_of.insert(member_str, name);
                instances.push(member_str.to_owned());
            }
        }
    }
    SyncGroup {
        name: name.to_owned(),
        instances,
    }
}

/// A Linux interface name: 1 to 15 bytes, no `/`, `:` or whitespace, not `.` or `..`.
fn check_ifname(name: &Spanned<String>, key: &str, errors: &mut Vec<ConfigError>) {
    let text = name.get_ref();
    let valid = !text.is_empty()
        && text.len() <= MAX_IFNAME
        && text != "."
        && text != ".."
        && !text.contains(|c: char| c == '/' || c == ':' || c.is_whitespace());
    if !valid {
        errors.push(ConfigError::at(
            name,
            format!(
                "{key}: `{text}` is not an interface name: Linux names are 1 to {MAX_IFNAME} \
                 bytes without `/`, `:` or spaces, e.g. \"eth0\""
            ),
        ));
    }
}

/// `value` as a `T` if it lies in `range`; otherwise the error `allowed`, which says what is.
fn in_range<T: TryFrom<i64>>(
    value: &Spanned<i64>,
    range: RangeInclusive<i64>,
    allowed: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let converted = Some(*value.get_ref())
        .filter(|v| range.contains(v))
        .and_then(|v| T::try_from(v).ok());
    if converted.is_none() {
        errors.push(ConfigError::at(
            value,
            format!("{allowed}, not {}", value.get_ref()),
        ));
    }
    converted
}

fn off_if_zero(duration: Duration) -> Option<std::time::Duration> {
    (!duration.is_zero()).then(|| duration.get())
}

fn non_empty(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.to_owned())
}
