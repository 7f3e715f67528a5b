//! Turns the `[volume.NAME]` sections users wrote into validated [`VolumeConfig`]s, collecting
//! every problem found rather than stopping at the first. Building reads the disk: the size of an
//! existing backing file or device, and `shared_secret_file`.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Seek, SeekFrom},
    net::SocketAddr,
    ops::RangeInclusive,
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
};

use fulcrum_common::{ConfigError, Duration, Size, Spanned, list_or_none};

use super::{
    AL_EXTENTS, BLOCK_SIZE, Backing, BackingKind, MAX_EXPORT_NAME, NbdConfig, Policy,
    SplitBrainPolicies, VolumeConfig,
    section::{NbdSection, SplitBrainSection, VolumeSection},
};
use crate::config_check::{self, Kind, binds_overlap};

/// DRBD's `timeout` range (`DRBD_TIMEOUT_MIN`..`MAX`: 1 to 600 tenths of a second).
const TIMEOUT: RangeInclusive<std::time::Duration> =
    std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(60);

/// DRBD's `connect-int` and `ping-int` range (`DRBD_CONNECT_INT_*`, `DRBD_PING_INT_*`).
const INTERVAL: RangeInclusive<std::time::Duration> =
    std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(120);

/// How the shared checks speak of a volume.
const VOLUME: Kind = Kind {
    what: "volume",
    state: "files",
    example_name: "nfs",
    example_addr: "10.1.88.175:7788",
    named_by: "the peer",
};

/// Split-brain policy names of DRBD that Fulcrum does not implement, with why.
const DRBD_ONLY_POLICIES: &[(&str, &str)] = &[
    (
        "violently-as0p",
        "it can throw away the data a primary is serving",
    ),
    (
        "call-pri-lost-after-sb",
        "Fulcrum has no handler scripts; use `disconnect` and an alert",
    ),
];

impl VolumeSection {
    /// Validates the section of the volume called `name`; every problem is reported, each at its
    /// key.
    pub fn build(&self, name: &Spanned<String>) -> Result<VolumeConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let name_str = name.get_ref().as_str();
        VOLUME.check_name(name, &mut errors);

        let listen = VOLUME.parse_addr(&self.listen, "listen", &mut errors);
        let peer = VOLUME.parse_addr(&self.peer, "peer", &mut errors);
        if let Some(listen) = listen {
            VOLUME.check_listen(listen, &self.listen, &mut errors);
        }
        if let Some(peer) = peer {
            check_peer(peer, listen, &self.peer, &mut errors);
        }
        let shared_secret = VOLUME.build_secret(
            name,
            self.shared_secret.as_ref(),
            self.shared_secret_file.as_ref(),
            &mut errors,
        );
        let backing = build_backing(self, &mut errors);
        let nbd = self
            .nbd
            .as_ref()
            .and_then(|nbd| build_nbd(name_str, nbd, listen, &mut errors));
        let after_split_brain = build_split_brain(&self.after_split_brain, &mut errors);
        let resync_rate = self
            .resync_rate
            .as_ref()
            .and_then(|rate| build_resync_rate(rate, &mut errors));
        check_timers(self, &mut errors);
        let al_extents = build_al_extents(&self.al_extents, &mut errors);
        if let Some(follow) = self
            .follow_vrrp
            .as_ref()
            .filter(|f| f.get_ref().trim().is_empty())
        {
            errors.push(ConfigError::at(
                follow,
                "follow_vrrp is empty: name a [vrrp.instance.NAME], or remove it and set `role`",
            ));
        }

        match (
            listen,
            peer,
            shared_secret,
            backing,
            after_split_brain,
            al_extents,
        ) {
            (
                Some(listen),
                Some(peer),
                Some(shared_secret),
                Some(backing),
                Some(policies),
                Some(al_extents),
            ) if errors.is_empty() => Ok(VolumeConfig {
                name: name_str.to_owned(),
                backing,
                protocol: self.protocol,
                listen,
                peer,
                shared_secret,
                role: self.role,
                follow_vrrp: self.follow_vrrp.clone(),
                nbd,
                after_split_brain: policies,
                on_io_error: self.on_io_error,
                resync_rate,
                timeout: self.timeout.get_ref().get(),
                connect_interval: self.connect_interval.get_ref().get(),
                ping_interval: self.ping_interval.get_ref().get(),
                checksum_resync: self.checksum_resync,
                direct_io: self.direct_io,
                al_extents,
            }),
            _ => Err(errors),
        }
    }
}

/// Builds every volume, then checks that no two share a listener, a peer or a backing store.
pub fn build_all(
    sections: &BTreeMap<Spanned<String>, VolumeSection>,
) -> Result<Vec<VolumeConfig>, Vec<ConfigError>> {
    config_check::build_all(sections, VolumeSection::build, check_distinct)
}

/// Every `follow_vrrp` names one of `instances` (the `[vrrp.instance.NAME]`s defined). For the
/// binary, which sees both sections.
pub fn check_follow_vrrp(volumes: &[VolumeConfig], instances: &[&str]) -> Vec<ConfigError> {
    volumes
        .iter()
        .filter_map(|volume| {
            let follow = volume.follow_vrrp.as_ref()?;
            (!instances.contains(&follow.get_ref().as_str())).then(|| {
                ConfigError::at(
                    follow,
                    format!(
                        "volume `{}` follows VRRP instance `{}`, which is not defined (defined: {})",
                        volume.name,
                        follow.get_ref(),
                        list_or_none(instances)
                    ),
                )
            })
        })
        .collect()
}

fn check_peer(
    peer: SocketAddr,
    listen: Option<SocketAddr>,
    text: &Spanned<String>,
    errors: &mut Vec<ConfigError>,
) {
    if peer.port() == 0 || peer.ip().is_unspecified() || peer.ip().is_multicast() {
        errors.push(ConfigError::at(
            text,
            format!("peer: {peer} cannot be connected to: give the other node's `listen` address"),
        ));
    } else if listen == Some(peer) {
        errors.push(ConfigError::at(
            text,
            format!(
                "peer is the same as listen ({peer}): `peer` is the other node's address, \
                 `listen` this node's"
            ),
        ));
    } else if let Some(listen) = listen.filter(|l| l.is_ipv4() != peer.is_ipv4()) {
        errors.push(ConfigError::at(
            text,
            format!(
                "peer {peer} and listen {listen} are of different address families: the peers \
                 connect over one"
            ),
        ));
    }
}

/// What `backing` is now, and its size: an existing file's or device's must agree with `size`
/// when both are given; a missing file needs `size`.
fn build_backing(section: &VolumeSection, errors: &mut Vec<ConfigError>) -> Option<Backing> {
    let at = &section.backing;
    let path = at.get_ref();
    let size = match &section.size {
        Some(size) => Some(check_size(size, errors)?),
        None => None,
    };
    if path.as_os_str().is_empty() {
        errors.push(ConfigError::at(
            at,
            "backing is empty: give a file or a block device",
        ));
        return None;
    }
    let (kind, existing) = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => (BackingKind::File, meta.len()),
        Ok(meta) if meta.file_type().is_block_device() => {
            match File::open(path).and_then(|mut f| f.seek(SeekFrom::End(0))) {
                Ok(len) => (BackingKind::BlockDevice, len),
                Err(e) => {
                    errors.push(ConfigError::at(
                        at,
                        format!("cannot read the size of {}: {e}", path.display()),
                    ));
                    return None;
                }
            }
        }
        Ok(_) => {
            errors.push(ConfigError::at(
                at,
                format!(
                    "{} is neither a regular file nor a block device",
                    path.display()
                ),
            ));
            return None;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return new_file(section, path, size, errors);
        }
        Err(e) => {
            errors.push(ConfigError::at(
                at,
                format!("cannot read {}: {e}", path.display()),
            ));
            return None;
        }
    };
    let what = match kind {
        BackingKind::BlockDevice => "block device",
        _ => "file",
    };
    if let Some(message) = too_large(existing) {
        errors.push(ConfigError::at(
            at,
            format!("the {what} {}: {message}", path.display()),
        ));
        return None;
    }
    if existing == 0 || !existing.is_multiple_of(BLOCK_SIZE) {
        errors.push(ConfigError::at(
            at,
            format!(
                "the {what} {} holds {existing} bytes, not a non-zero multiple of 4KiB: Fulcrum \
                 replicates whole 4KiB blocks",
                path.display()
            ),
        ));
        return None;
    }
    if let (Some(size), Some(at_size)) = (size, &section.size)
        && size != existing
    {
        errors.push(ConfigError::at(
            at_size,
            format!(
                "size {} does not match the {} of the existing {what} {}: remove `size`, or \
                 give {}",
                Size(size),
                Size(existing),
                path.display(),
                Size(existing)
            ),
        ));
        return None;
    }
    Some(Backing {
        path: path.clone(),
        kind,
        size: existing,
    })
}

/// A `backing` that does not exist: created at `size`, in an existing directory.
fn new_file(
    section: &VolumeSection,
    path: &Path,
    size: Option<u64>,
    errors: &mut Vec<ConfigError>,
) -> Option<Backing> {
    let at = &section.backing;
    // A device node that is not there (a logical volume not created yet, a typo) must not
    // become a regular file in devtmpfs, which lives in RAM and vanishes at reboot.
    if path.starts_with("/dev") {
        errors.push(ConfigError::at(
            at,
            format!(
                "{} does not exist: a device under /dev is never created as a file; create the \
                 block device (e.g. the logical volume) first, or name a file elsewhere",
                path.display()
            ),
        ));
        return None;
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        errors.push(ConfigError::at(
            at,
            format!(
                "{} does not exist, and neither does its directory {}: create the directory",
                path.display(),
                parent.display()
            ),
        ));
        return None;
    }
    let Some(size) = size else {
        errors.push(ConfigError::at(
            at,
            format!(
                "{} does not exist: set `size` (e.g. \"10GiB\") to have it created, or name an \
                 existing file or block device",
                path.display()
            ),
        ));
        return None;
    };
    Some(Backing {
        path: PathBuf::from(path),
        kind: BackingKind::NewFile,
        size,
    })
}

/// The largest volume: its out-of-sync bitmap (a bit per 4 KiB block) is held in memory whole,
/// and at this size takes 8 GiB. A larger `size` would fail to allocate at start, and abort.
pub(super) const MAX_VOLUME_SIZE: u64 = 256 << 40;

/// Why a volume of `bytes` is too large, if it is.
fn too_large(bytes: u64) -> Option<String> {
    (bytes > MAX_VOLUME_SIZE).then(|| {
        format!(
            "{} is more than the largest volume, {}: the out-of-sync bitmap, a bit per 4KiB \
             block, is held in memory, and would take {}",
            Size(bytes),
            Size(MAX_VOLUME_SIZE),
            Size(bytes.div_ceil(BLOCK_SIZE).div_ceil(8)),
        )
    })
}

/// A non-zero multiple of 4KiB, at most [`MAX_VOLUME_SIZE`].
fn check_size(size: &Spanned<Size>, errors: &mut Vec<ConfigError>) -> Option<u64> {
    let bytes = size.get_ref().bytes();
    if let Some(message) = too_large(bytes) {
        errors.push(ConfigError::at(size, format!("size {message}")));
        return None;
    }
    if bytes == 0 || !bytes.is_multiple_of(BLOCK_SIZE) {
        errors.push(ConfigError::at(
            size,
            format!(
                "size {bytes}B is not a non-zero multiple of 4KiB: Fulcrum replicates whole 4KiB \
                 blocks; use binary units, e.g. \"10GiB\" rather than \"10GB\""
            ),
        ));
        return None;
    }
    Some(bytes)
}

fn build_nbd(
    volume: &str,
    section: &NbdSection,
    listen: Option<SocketAddr>,
    errors: &mut Vec<ConfigError>,
) -> Option<NbdConfig> {
    let addr = VOLUME.parse_addr(&section.listen, "nbd.listen", errors);
    if let (Some(addr), Some(listen)) = (addr, listen)
        && binds_overlap(addr, listen)
    {
        errors.push(ConfigError::at(
            &section.listen,
            format!(
                "nbd.listen {addr} takes the replication `listen` {listen}: give NBD a port of \
                 its own (10809 is NBD's)"
            ),
        ));
    }
    let export = match &section.export {
        Some(export) => {
            let text = export.get_ref();
            if text.is_empty() || text.len() > MAX_EXPORT_NAME {
                errors.push(ConfigError::at(
                    export,
                    format!(
                        "nbd.export must be 1 to {MAX_EXPORT_NAME} bytes (NBD's limit), not {}; \
                         leave it out to use the volume's name",
                        text.len()
                    ),
                ));
            }
            text.clone()
        }
        None => volume.to_owned(),
    };
    Some(NbdConfig {
        listen: addr?,
        export,
    })
}

fn build_split_brain(
    section: &SplitBrainSection,
    errors: &mut Vec<ConfigError>,
) -> Option<SplitBrainPolicies> {
    let zero_primaries = parse_policy(&section.zero_primaries, errors);
    let one_primary = parse_policy(&section.one_primary, errors);
    let two_primaries = parse_policy(&section.two_primaries, errors);
    Some(SplitBrainPolicies {
        zero_primaries: zero_primaries?,
        one_primary: one_primary?,
        two_primaries: two_primaries?,
    })
}

/// A policy of case `P`; otherwise an error saying which policies `P` allows, and why the one
/// given is not among them when it is another case's or a DRBD policy Fulcrum lacks.
fn parse_policy<P: Policy>(text: &Spanned<String>, errors: &mut Vec<ConfigError>) -> Option<P> {
    let value = text.get_ref().trim();
    if let Some((_, policy)) = P::CHOICES.iter().find(|(name, _)| *name == value) {
        return Some(*policy);
    }
    let key = P::KEY;
    let allowed: Vec<&str> = P::CHOICES.iter().map(|(name, _)| *name).collect();
    let allowed = list_or_none(&allowed);
    let other_case = [
        policy_case::<super::ZeroPrimariesPolicy>(value),
        policy_case::<super::OnePrimaryPolicy>(value),
        policy_case::<super::TwoPrimariesPolicy>(value),
    ]
    .into_iter()
    .flatten()
    .next();
    let why = if let Some((other_key, other_option)) = other_case {
        format!("`{value}` is a {other_key} policy ({other_option}), not a {key} one")
    } else if let Some((_, reason)) = DRBD_ONLY_POLICIES.iter().find(|(name, _)| *name == value) {
        format!("DRBD's `{value}` is not offered: {reason}")
    } else if value.starts_with("discard-node-") {
        format!(
            "DRBD's `{value}` is not offered: a node named in the config loses whatever \
             happened; choose the victim by what the copies went through instead"
        )
    } else {
        format!("unknown policy `{value}`")
    };
    errors.push(ConfigError::at(
        text,
        format!(
            "after_split_brain.{key}: {why}; {key} ({}) allows: {allowed}",
            P::DRBD_OPTION
        ),
    ));
    None
}

/// The key and DRBD option of case `P`, if `value` is one of its policies.
fn policy_case<P: Policy>(value: &str) -> Option<(&'static str, &'static str)> {
    P::CHOICES
        .iter()
        .any(|(name, _)| *name == value)
        .then_some((P::KEY, P::DRBD_OPTION))
}

fn build_resync_rate(rate: &Spanned<Size>, errors: &mut Vec<ConfigError>) -> Option<u64> {
    let bytes = rate.get_ref().bytes();
    if bytes < BLOCK_SIZE {
        errors.push(ConfigError::at(
            rate,
            format!(
                "resync_rate {} is less than one 4KiB block per second: give e.g. \"100MiB\", or \
                 leave it out for no limit",
                rate.get_ref()
            ),
        ));
        return None;
    }
    Some(bytes)
}

/// `timeout`, `connect_interval` and `ping_interval`: DRBD's ranges, and the timeout shorter than
/// both intervals (drbd.conf(5): "must be lower than connect-int and ping-int").
/// `al_extents`, within DRBD's bounds.
fn build_al_extents(value: &Spanned<u64>, errors: &mut Vec<ConfigError>) -> Option<usize> {
    let extents = *value.get_ref();
    if !AL_EXTENTS.contains(&extents) {
        errors.push(ConfigError::at(
            value,
            format!(
                "al_extents {extents} is out of range: DRBD allows {} to {}",
                AL_EXTENTS.start(),
                AL_EXTENTS.end()
            ),
        ));
        return None;
    }
    usize::try_from(extents).ok()
}

fn check_timers(section: &VolumeSection, errors: &mut Vec<ConfigError>) {
    let in_range = |value: &Spanned<Duration>,
                    range: &RangeInclusive<std::time::Duration>,
                    key: &str,
                    errors: &mut Vec<ConfigError>| {
        let ok = range.contains(&value.get_ref().get());
        if !ok {
            errors.push(ConfigError::at(
                value,
                format!(
                    "{key} {} is out of range: DRBD allows {} to {}",
                    value.get_ref(),
                    Duration(*range.start()),
                    Duration(*range.end())
                ),
            ));
        }
        ok
    };
    let timeout_ok = in_range(&section.timeout, &TIMEOUT, "timeout", errors);
    for (interval, key) in [
        (&section.connect_interval, "connect_interval"),
        (&section.ping_interval, "ping_interval"),
    ] {
        if !in_range(interval, &INTERVAL, key, errors) || !timeout_ok {
            continue;
        }
        if section.timeout.get_ref() >= interval.get_ref() {
            // At the key the user wrote: a default has no place in the file.
            let at = if is_default(&section.timeout) {
                interval
            } else {
                &section.timeout
            };
            errors.push(ConfigError::at(
                at,
                format!(
                    "timeout {} must be shorter than {key} {}: the peer would be declared dead \
                     before it is asked again",
                    section.timeout.get_ref(),
                    interval.get_ref()
                ),
            ));
        }
    }
}

/// Whether a value came from a `default` function rather than the file (those have no span).
fn is_default<T>(value: &Spanned<T>) -> bool {
    value.span() == (0..0)
}

/// No two volumes share a listener (`listen` or `nbd.listen`), a `peer` or a backing store;
/// each clash is reported at the later volume, naming the earlier.
fn check_distinct(built: &[(&VolumeSection, VolumeConfig)], errors: &mut Vec<ConfigError>) {
    let mut binds: Vec<(SocketAddr, &str, &str)> = Vec::new();
    let mut peers: Vec<(SocketAddr, &str)> = Vec::new();
    let mut backings: Vec<(PathBuf, &str)> = Vec::new();
    for (section, volume) in built {
        let name = volume.name.as_str();
        let mut own = vec![(volume.listen, &section.listen, "listen")];
        if let (Some(nbd), Some(nbd_section)) = (&volume.nbd, &section.nbd) {
            own.push((nbd.listen, &nbd_section.listen, "nbd.listen"));
        }
        for (addr, at, key) in &own {
            if let Some((other, other_name, other_key)) = binds
                .iter()
                .find(|(other, ..)| binds_overlap(*addr, *other))
            {
                errors.push(ConfigError::at(
                    *at,
                    format!(
                        "{key} {addr} is also the {other_key} {other} of volume `{other_name}`: \
                         each volume needs its own ports"
                    ),
                ));
            }
        }
        binds.extend(own.iter().map(|(addr, _, key)| (*addr, name, *key)));

        if let Some((_, other_name)) = peers.iter().find(|(p, _)| *p == volume.peer) {
            errors.push(ConfigError::at(
                &section.peer,
                format!(
                    "peer {} is also the peer of volume `{other_name}`: each volume replicates \
                     over its own connection, to its own port",
                    volume.peer
                ),
            ));
        }
        peers.push((volume.peer, name));

        // Through symlinks, so that /dev/disk/by-id names and their /dev/sdX are one device.
        let path = std::fs::canonicalize(&volume.backing.path)
            .unwrap_or_else(|_| volume.backing.path.clone());
        if let Some((_, other_name)) = backings.iter().find(|(p, _)| *p == path) {
            errors.push(ConfigError::at(
                &section.backing,
                format!(
                    "backing {} is also the backing of volume `{other_name}`: two volumes would \
                     overwrite each other",
                    volume.backing.path.display()
                ),
            ));
        }
        backings.push((path, name));
    }
}
