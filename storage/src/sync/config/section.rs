//! The serde types of `[sync.NAME]`, as users write it (the key names are CONFIG.md's and a
//! contract with users). [`SyncSection::build`] turns one into a validated
//! [`super::SyncConfig`].
//!
//! Addresses, `direction` and `conflict` are read as strings, so that a mistake is reported with
//! what is allowed rather than as a type error.

use std::path::PathBuf;

use fulcrum_common::{Duration, Spanned};
use serde::Deserialize;

use super::SharedSecret;

/// `[sync.NAME]`: one directory kept the same on this node and its peers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSection {
    /// The directory to keep in sync; it must exist. The binary makes a relative path relative
    /// to the config file's directory.
    pub path: Spanned<PathBuf>,
    /// `IP:port` where this node accepts its peers' connections.
    pub listen: Spanned<String>,
    /// `IP:port` of each other node's `listen`; at least one.
    pub peers: Spanned<Vec<Spanned<String>>>,
    /// The key of the peers' HMAC challenge-response. This or `shared_secret_file` is required.
    pub shared_secret: Option<Spanned<SharedSecret>>,
    /// A file holding `shared_secret`.
    pub shared_secret_file: Option<Spanned<PathBuf>>,
    /// `"both"` (the default), `"push"` or `"pull"`.
    #[serde(default = "default_direction")]
    pub direction: Spanned<String>,
    /// Patterns of paths not to sync, gitignore-style: `*.tmp`, `cache/` (a directory),
    /// `/uploads/tmp` (anchored at `path`), `**/thumbs/`. None by default.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// How long changes are batched before they are sent, up to 5m; 100ms by default.
    #[serde(default = "default_delay")]
    pub delay: Spanned<Duration>,
    /// `"newest-wins"`, the default and only policy.
    #[serde(default = "default_conflict")]
    pub conflict: Spanned<String>,
    /// Whether deletions made on a peer are applied here; true by default, as lsyncd's
    /// `delete`. With false, a file deleted on a peer stays here (rsync without `--delete`), and
    /// is not sent back to the peer that deleted it.
    #[serde(default = "default_delete")]
    pub delete: bool,
    /// How long a deletion is remembered (its tombstone kept in the index), so that it reaches
    /// a peer that was away; then forgotten, as Syncthing does. `"0s"` keeps deletions for
    /// ever; otherwise at least 1h. 1 year by default.
    #[serde(default = "default_delete_retention")]
    pub delete_retention: Spanned<Duration>,
    /// Whether files' owners and groups are synced, as `rsync -o -g`; true by default. It takes
    /// effect only when Fulcrum runs as root (only root may `chown`), as with rsync.
    #[serde(default = "default_owners")]
    pub owners: bool,
    /// Mutual TLS on every link of the set; without it, plain TCP (authenticated by the
    /// shared secret, not encrypted).
    pub tls: Option<SyncTlsSection>,
}

/// `tls = { cert = "etc/tls/sync.pem", key = "etc/tls/sync.key", ca = "etc/tls/sync-ca.pem" }`.
/// The binary makes relative paths relative to the config file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncTlsSection {
    /// This node's certificate (then its chain), presented to every peer.
    pub cert: Spanned<PathBuf>,
    /// Its private key.
    pub key: Spanned<PathBuf>,
    /// The certificates a peer's certificate must chain to (a CA, or the peers' self-signed
    /// certificates).
    pub ca: Spanned<PathBuf>,
}

fn default_direction() -> Spanned<String> {
    Spanned::new(0..0, "both".to_owned())
}

fn default_delay() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_millis(100))
}

fn default_conflict() -> Spanned<String> {
    Spanned::new(0..0, "newest-wins".to_owned())
}

fn default_delete() -> bool {
    true
}

fn default_owners() -> bool {
    true
}

fn default_delete_retention() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(super::DEFAULT_DELETE_RETENTION))
}
