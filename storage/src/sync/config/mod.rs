//! A sync set's configuration: the `[sync.NAME]` section users write ([`section`]) and the
//! validated [`SyncConfig`] a sync set runs on. A `SyncConfig` that exists is one a node can
//! start: the directory there, addresses parsed, the secret read, exclude patterns compiled,
//! the TLS files loaded.

mod build;
pub mod pattern;
pub mod section;
#[cfg(test)]
mod tests;

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use super::tls::SyncTls;

pub use build::build_all;
pub use pattern::{Pattern, PatternError, is_excluded};
pub use section::{SyncSection, SyncTlsSection};

/// The peers authenticate each other with the same kind of key as a volume's peers.
pub use crate::volume::config::SharedSecret;

/// A validated `[sync.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Letters, digits, `-`, `_` and `.`, not starting with `.`: it names the index directory
    /// `state_dir/sync/NAME`.
    pub name: String,
    /// The directory kept in sync: it existed and was a directory when the config was built;
    /// not `/`, and neither inside nor around another set's `path`.
    pub path: PathBuf,
    /// Where this node accepts its peers' connections; a port other than 0.
    pub listen: SocketAddr,
    /// The other nodes' `listen`: at least one, none twice, none equal to `listen`.
    pub peers: Vec<SocketAddr>,
    /// Not empty.
    pub shared_secret: SharedSecret,
    pub direction: Direction,
    /// Paths neither watched, indexed nor sent; see [`is_excluded`].
    pub exclude: Vec<Pattern>,
    /// How long changes are batched before they are sent; at most [`MAX_DELAY`].
    pub delay: Duration,
    pub conflict: ConflictPolicy,
    /// Whether deletions made on a peer are applied here. Deletions made here are always
    /// recorded (as tombstones), so a peer with `delete = true` applies them.
    pub delete: bool,
    /// How long a tombstone is kept before it is forgotten; `None`: for ever. At least
    /// [`MIN_DELETE_RETENTION`] when built from a config.
    pub delete_retention: Option<Duration>,
    /// Whether owners and groups are synced, where this node may set them (as root); see
    /// [`crate::sync::owner`].
    pub owners: bool,
    /// Mutual TLS on every link (see [`crate::sync::tls`]); `None`: plain TCP.
    pub tls: Option<SyncTls>,
}

/// `delete_retention` by default: a year (humantime's, 365.25 days). Syncthing forgets
/// deletions after 15 months; a web server's peer away for a year is rebuilt, not resumed.
pub const DEFAULT_DELETE_RETENTION: Duration = Duration::from_secs(31_557_600);

/// The shortest `delete_retention` other than "for ever": deletions are collected hourly, and
/// a peer that is merely slow must not miss one.
pub const MIN_DELETE_RETENTION: Duration = Duration::from_secs(3600);

/// The longest `delay`: changes sitting unsent longer than this make a two-way sync look broken.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// Which way changes flow between this node and its peers; both by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Changes made here are sent, and changes made on a peer are applied here.
    #[default]
    Both,
    /// Changes made here are sent; a peer's changes are not applied here (lsyncd's one way,
    /// from this node).
    Push,
    /// A peer's changes are applied here; changes made here are not sent.
    Pull,
}

impl Direction {
    /// Every direction with the name users write.
    pub const CHOICES: &'static [(&'static str, Self)] = &[
        ("both", Self::Both),
        ("push", Self::Push),
        ("pull", Self::Pull),
    ];

    /// Whether changes made here go to the peers.
    pub fn sends(self) -> bool {
        matches!(self, Self::Both | Self::Push)
    }

    /// Whether changes made on a peer are applied here.
    pub fn receives(self) -> bool {
        matches!(self, Self::Both | Self::Pull)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::CHOICES
            .iter()
            .find(|(_, d)| d == self)
            .map_or("?", |(name, _)| name);
        f.write_str(name)
    }
}

/// How a conflict (both sides changed a path since their last common version) is resolved.
/// An enum, though it has one value, so that the config and the code name the policy in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConflictPolicy {
    /// The version with the newer mtime wins (a tie goes to the greater node name); the other is
    /// kept beside it as `NAME.conflict-NODE-TIME.EXT`, as Syncthing does. A deletion always
    /// loses to a modification.
    #[default]
    NewestWins,
}

impl ConflictPolicy {
    /// Every policy with the name users write.
    pub const CHOICES: &'static [(&'static str, Self)] = &[("newest-wins", Self::NewestWins)];
}

impl fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("newest-wins")
    }
}
