//! Turns the `[sync.NAME]` sections users wrote into validated [`SyncConfig`]s, collecting every
//! problem found rather than stopping at the first. Building reads the disk: whether `path` is a
//! directory, and `shared_secret_file`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use fulcrum_common::{ConfigError, Duration, Spanned, list_or_none, secret};

use super::{
    ConflictPolicy, Direction, MAX_DELAY, Pattern, SharedSecret, SyncConfig, section::SyncSection,
};

/// The longest set name: it names a directory in `state_dir`.
const MAX_NAME: usize = 64;

impl SyncSection {
    /// Validates the section of the sync set called `name`; every problem is reported, each at
    /// its key.
    pub fn build(&self, name: &Spanned<String>) -> Result<SyncConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        check_name(name, &mut errors);
        let path = check_path(&self.path, &mut errors);
        let listen = parse_addr(&self.listen, "listen", &mut errors);
        if let Some(listen) = listen {
            check_listen(listen, &self.listen, &mut errors);
        }
        let peers = build_peers(self, listen, &mut errors);
        let shared_secret = build_secret(name, self, &mut errors);
        let direction = parse_choice(
            &self.direction,
            "direction",
            Direction::CHOICES,
            &mut errors,
        );
        let conflict = parse_conflict(&self.conflict, &mut errors);
        let exclude = build_exclude(&self.exclude, &mut errors);
        check_delay(&self.delay, &mut errors);

        match (listen, peers, shared_secret, direction, conflict) {
            (Some(listen), Some(peers), Some(shared_secret), Some(direction), Some(conflict))
                if errors.is_empty() =>
            {
                Ok(SyncConfig {
                    name: name.get_ref().clone(),
                    path,
                    listen,
                    peers,
                    shared_secret,
                    direction,
                    exclude,
                    delay: self.delay.get_ref().get(),
                    conflict,
                    delete: self.delete,
                })
            }
            _ => Err(errors),
        }
    }
}

/// Builds every sync set, then checks that no two share a listener or a peer, or sync the same
/// directory (or one inside the other, which would sync its files twice).
pub fn build_all(
    sections: &BTreeMap<Spanned<String>, SyncSection>,
) -> Result<Vec<SyncConfig>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut built = Vec::with_capacity(sections.len());
    for (name, section) in sections {
        match section.build(name) {
            Ok(set) => built.push((section, set)),
            Err(e) => errors.extend(e),
        }
    }
    check_distinct(&built, &mut errors);
    if errors.is_empty() {
        Ok(built.into_iter().map(|(_, set)| set).collect())
    } else {
        Err(errors)
    }
}

fn check_name(name: &Spanned<String>, errors: &mut Vec<ConfigError>) {
    let text = name.get_ref();
    let valid = !text.is_empty()
        && text.len() <= MAX_NAME
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        errors.push(ConfigError::at(
            name,
            format!(
                "`{text}` cannot name a sync set: use 1 to {MAX_NAME} letters, digits, `-`, `_` \
                 or `.`, not starting with `.` (it names a directory in state_dir), e.g. \"web\""
            ),
        ));
    }
}

/// An existing directory other than `/`.
fn check_path(path: &Spanned<PathBuf>, errors: &mut Vec<ConfigError>) -> PathBuf {
    let value = path.get_ref();
    if value.as_os_str().is_empty() {
        errors.push(ConfigError::at(
            path,
            "path is empty: give the directory to keep in sync, e.g. \"/data/www\"",
        ));
        return value.clone();
    }
    match std::fs::metadata(value) {
        Ok(meta) if meta.is_dir() => {
            if std::fs::canonicalize(value).is_ok_and(|p| p == Path::new("/")) {
                errors.push(ConfigError::at(
                    path,
                    format!(
                        "path {} is the root directory: sync a directory of its own, e.g. \
                         \"/data/www\"",
                        value.display()
                    ),
                ));
            }
        }
        Ok(_) => errors.push(ConfigError::at(
            path,
            format!(
                "path {} is not a directory: a sync set keeps a directory tree in sync",
                value.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => errors.push(ConfigError::at(
            path,
            format!(
                "path {} does not exist: create the directory (an empty one is fine: the first \
                 sync fills it from the peers)",
                value.display()
            ),
        )),
        Err(e) => errors.push(ConfigError::at(
            path,
            format!("cannot read path {}: {e}", value.display()),
        )),
    }
    value.clone()
}

/// `IP:port`, with a hint when the port or the brackets of IPv6 are missing.
fn parse_addr(
    text: &Spanned<String>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<SocketAddr> {
    let value = text.get_ref().trim();
    let parsed = value.parse::<SocketAddr>();
    if parsed.is_err() {
        let hint = if value.parse::<std::net::IpAddr>().is_ok() {
            " (the port is missing)"
        } else {
            ""
        };
        errors.push(ConfigError::at(
            text,
            format!(
                "{key}: `{value}` is not IP:port{hint}: write e.g. \"172.16.0.99:8730\", or \
                 \"[2001:db8::1]:8730\" for IPv6"
            ),
        ));
    }
    parsed.ok()
}

/// The port is fixed: the peers' `peers` name it.
fn check_listen(addr: SocketAddr, text: &Spanned<String>, errors: &mut Vec<ConfigError>) {
    if addr.port() == 0 {
        errors.push(ConfigError::at(
            text,
            "listen: port 0 cannot be named by the peers: give a port, e.g. 8730",
        ));
    } else if addr.ip().is_multicast() {
        errors.push(ConfigError::at(
            text,
            format!("listen: {} is a multicast address", addr.ip()),
        ));
    }
}

/// At least one, each a connectable address, none twice, none this node's `listen`.
fn build_peers(
    section: &SyncSection,
    listen: Option<SocketAddr>,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<SocketAddr>> {
    let list = section.peers.get_ref();
    if list.is_empty() {
        errors.push(ConfigError::at(
            &section.peers,
            "peers is empty: name at least one other node's `listen`, e.g. [\"172.16.0.88:8730\"]",
        ));
        return None;
    }
    let mut peers: Vec<SocketAddr> = Vec::with_capacity(list.len());
    let mut ok = true;
    for text in list {
        let Some(peer) = parse_addr(text, "peers", errors) else {
            ok = false;
            continue;
        };
        let problem = if peer.port() == 0 || peer.ip().is_unspecified() || peer.ip().is_multicast()
        {
            Some(format!(
                "peers: {peer} cannot be connected to: give another node's `listen` address"
            ))
        } else if listen == Some(peer) {
            Some(format!(
                "peers: {peer} is this node's own `listen`: `peers` are the other nodes' addresses"
            ))
        } else if peers.contains(&peer) {
            Some(format!("peers: {peer} is listed twice"))
        } else {
            None
        };
        match problem {
            Some(message) => {
                errors.push(ConfigError::at(text, message));
                ok = false;
            }
            None => peers.push(peer),
        }
    }
    ok.then_some(peers)
}

/// `shared_secret` or `shared_secret_file`: exactly one, not empty.
fn build_secret(
    name: &Spanned<String>,
    section: &SyncSection,
    errors: &mut Vec<ConfigError>,
) -> Option<SharedSecret> {
    // `secret::resolve` takes the inline value as a string; it never prints it.
    let inline = section.shared_secret.as_ref().map(|s| {
        Spanned::new(
            s.span(),
            String::from_utf8_lossy(s.get_ref().as_bytes()).into_owned(),
        )
    });
    let file = section.shared_secret_file.as_ref();
    match secret::resolve("shared_secret", inline.as_ref(), file) {
        Ok(Some(value)) if value.is_empty() => {
            let span = inline
                .as_ref()
                .map(Spanned::span)
                .or_else(|| file.map(Spanned::span))
                .unwrap_or_else(|| name.span());
            errors.push(ConfigError::spanned(
                span,
                "shared_secret is empty: the peers authenticate each other with it",
            ));
            None
        }
        Ok(Some(value)) => Some(SharedSecret::new(value)),
        Ok(None) => {
            errors.push(ConfigError::at(
                name,
                format!(
                    "sync set `{}` needs `shared_secret` (or `shared_secret_file`): the peers \
                     authenticate each other with it",
                    name.get_ref()
                ),
            ));
            None
        }
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// One of `choices` by its name; otherwise an error listing them.
fn parse_choice<T: Copy>(
    text: &Spanned<String>,
    key: &str,
    choices: &[(&str, T)],
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let value = text.get_ref().trim();
    if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == value) {
        return Some(*choice);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    errors.push(ConfigError::at(
        text,
        format!(
            "{key}: unknown value `{value}`; allowed: {}",
            list_or_none(&names)
        ),
    ));
    None
}

/// `newest-wins`, with why the policies of other tools are not offered.
fn parse_conflict(text: &Spanned<String>, errors: &mut Vec<ConfigError>) -> Option<ConflictPolicy> {
    let value = text.get_ref().trim();
    let why = match value {
        "keep-both" | "rename" => {
            "newest-wins already keeps both: the losing version is saved as \
             NAME.conflict-NODE-TIME.EXT"
        }
        "local-wins" | "remote-wins" | "ours" | "theirs" | "oldest-wins" | "manual" => {
            "it is not offered: every node must pick the same winner without asking the others, \
             and newest-wins keeps the loser as a conflict copy"
        }
        _ => return parse_choice(text, "conflict", ConflictPolicy::CHOICES, errors),
    };
    errors.push(ConfigError::at(
        text,
        format!("conflict: `{value}`: {why}; allowed: newest-wins"),
    ));
    None
}

fn build_exclude(patterns: &[Spanned<String>], errors: &mut Vec<ConfigError>) -> Vec<Pattern> {
    patterns
        .iter()
        .filter_map(|text| match Pattern::new(text.get_ref()) {
            Ok(pattern) => Some(pattern),
            Err(e) => {
                errors.push(ConfigError::at(text, format!("exclude: {e}")));
                None
            }
        })
        .collect()
}

fn check_delay(delay: &Spanned<Duration>, errors: &mut Vec<ConfigError>) {
    if delay.get_ref().get() > MAX_DELAY {
        errors.push(ConfigError::at(
            delay,
            format!(
                "delay {} is longer than {}: changes would sit unsent for that long; \"0s\" \
                 sends each change at once, 100ms is the default",
                delay.get_ref(),
                Duration(MAX_DELAY)
            ),
        ));
    }
}

/// Whether two listeners cannot both bind: the same port and address, or the same port with a
/// wildcard address of the same family.
fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// No two sets share a listener or a peer address, or directories where one is the other or
/// inside it; each clash is reported at the later set, naming the earlier.
fn check_distinct(built: &[(&SyncSection, SyncConfig)], errors: &mut Vec<ConfigError>) {
    let mut listens: Vec<(SocketAddr, &str)> = Vec::new();
    let mut peers: Vec<(SocketAddr, &str)> = Vec::new();
    let mut paths: Vec<(PathBuf, &str)> = Vec::new();
    for (section, set) in built {
        let name = set.name.as_str();
        if let Some((other, other_name)) = listens
            .iter()
            .find(|(other, _)| binds_overlap(set.listen, *other))
        {
            errors.push(ConfigError::at(
                &section.listen,
                format!(
                    "listen {} is also the listen {other} of sync set `{other_name}`: each set \
                     needs its own port",
                    set.listen
                ),
            ));
        }
        listens.push((set.listen, name));

        for (peer, text) in set.peers.iter().zip(section.peers.get_ref()) {
            if let Some((_, other_name)) = peers.iter().find(|(p, _)| p == peer) {
                errors.push(ConfigError::at(
                    text,
                    format!(
                        "peers: {peer} is also a peer of sync set `{other_name}`: a node's \
                         `listen` serves one set, so each set's peers have their own ports"
                    ),
                ));
            }
        }
        peers.extend(set.peers.iter().map(|peer| (*peer, name)));

        // Through symlinks, so that two names of one directory are seen as one.
        let path = std::fs::canonicalize(&set.path).unwrap_or_else(|_| set.path.clone());
        if let Some((other, other_name)) = paths
            .iter()
            .find(|(other, _)| path.starts_with(other) || other.starts_with(&path))
        {
            let relation = if *other == path {
                "the same directory as"
            } else if path.starts_with(other) {
                "inside"
            } else {
                "around"
            };
            errors.push(ConfigError::at(
                &section.path,
                format!(
                    "path {} is {relation} the path {} of sync set `{other_name}`: its files \
                     would be synced by both sets",
                    set.path.display(),
                    other.display()
                ),
            ));
        }
        paths.push((path, name));
    }
}
