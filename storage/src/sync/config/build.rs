//! Turns the `[sync.NAME]` sections users wrote into validated [`SyncConfig`]s, collecting every
//! problem found rather than stopping at the first. Building reads the disk: whether `path` is a
//! directory, `shared_secret_file`, and the TLS files.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use fulcrum_common::{ConfigError, Duration, Spanned, list_or_none};

use super::{
    ConflictPolicy, Direction, MAX_DELAY, MIN_DELETE_RETENTION, Pattern, SyncConfig,
    section::{SyncSection, SyncTlsSection},
};
use crate::config_check::{self, Kind, binds_overlap};
use crate::sync::tls::{SyncTls, TlsFile, TlsFiles};

/// How the shared checks speak of a sync set.
const SYNC: Kind = Kind {
    what: "sync set",
    state: "a directory",
    example_name: "web",
    example_addr: "172.16.0.99:8730",
    named_by: "the peers",
};

impl SyncSection {
    /// Validates the section of the sync set called `name`; every problem is reported, each at
    /// its key.
    pub fn build(&self, name: &Spanned<String>) -> Result<SyncConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        SYNC.check_name(name, &mut errors);
        let path = check_path(&self.path, &mut errors);
        let listen = SYNC.parse_addr(&self.listen, "listen", &mut errors);
        if let Some(listen) = listen {
            SYNC.check_listen(listen, &self.listen, &mut errors);
            // A peer knows this node by the address in its own `peers`, which must be this
            // `listen` exactly: a wildcard would be refused by every peer at each connection.
            if listen.ip().is_unspecified() && listen.port() != 0 {
                errors.push(ConfigError::at(
                    &self.listen,
                    format!(
                        "listen {listen} is a wildcard, but peers name this node by its `listen`: give the address the peers list, e.g. \"172.16.0.99:{}\"",
                        listen.port()
                    ),
                ));
            }
        }
        let peers = build_peers(self, listen, &mut errors);
        let shared_secret = SYNC.build_secret(
            name,
            self.shared_secret.as_ref(),
            self.shared_secret_file.as_ref(),
            &mut errors,
        );
        let direction = parse_choice(
            &self.direction,
            "direction",
            Direction::CHOICES,
            &mut errors,
        );
        let conflict = parse_conflict(&self.conflict, &mut errors);
        let exclude = build_exclude(&self.exclude, &mut errors);
        check_delay(&self.delay, &mut errors);
        let delete_retention = check_delete_retention(&self.delete_retention, &mut errors);
        let tls = match (&self.tls, listen, &peers) {
            (Some(section), Some(listen), Some(peers)) => {
                build_tls(section, listen, peers, &mut errors)
            }
            _ => None,
        };

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
                    delete_retention,
                    owners: self.owners,
                    tls,
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
    config_check::build_all(sections, SyncSection::build, check_distinct)
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
        let Some(peer) = SYNC.parse_addr(text, "peers", errors) else {
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

/// Loads the TLS files (checked only once `listen` and `peers` are, as the check of this
/// node's certificate needs them); an error is reported at the key of the file it is about.
fn build_tls(
    section: &SyncTlsSection,
    listen: SocketAddr,
    peers: &[SocketAddr],
    errors: &mut Vec<ConfigError>,
) -> Option<SyncTls> {
    let files = TlsFiles {
        cert: section.cert.get_ref().clone(),
        key: section.key.get_ref().clone(),
        ca: section.ca.get_ref().clone(),
    };
    SyncTls::load(files, listen, peers)
        .map_err(|e| {
            let at = match e.file {
                TlsFile::Cert => &section.cert,
                TlsFile::Key => &section.key,
                TlsFile::Ca => &section.ca,
            };
            errors.push(ConfigError::at(at, e.to_string()));
        })
        .ok()
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

/// `None` for "0s" (for ever); else the retention, which must be at least
/// [`MIN_DELETE_RETENTION`].
fn check_delete_retention(
    retention: &Spanned<Duration>,
    errors: &mut Vec<ConfigError>,
) -> Option<std::time::Duration> {
    let value = retention.get_ref().get();
    if value.is_zero() {
        return None;
    }
    if value < MIN_DELETE_RETENTION {
        errors.push(ConfigError::at(
            retention,
            format!(
                "delete_retention {} is shorter than {}: a peer that is only slow could miss a \
                 deletion and send the file back; \"0s\" keeps deletions for ever, 1y is the \
                 default",
                retention.get_ref(),
                Duration(MIN_DELETE_RETENTION)
            ),
        ));
    }
    Some(value)
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
