//! A volume's configuration: the `[volume.NAME]` section users write ([`section`]) and the
//! validated [`VolumeConfig`] a volume runs on. A `VolumeConfig` that exists is one a node can
//! start: addresses parsed, the backing store's size known, the secret read, policies allowed for
//! their case.

mod build;
pub mod section;
#[cfg(test)]
mod tests;

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use fulcrum_common::Spanned;
use serde::Deserialize;

pub use build::{build_all, check_follow_vrrp};
pub use section::{NbdSection, SplitBrainSection, VolumeSection};

/// The block size Fulcrum replicates and tracks out-of-sync data in (DRBD's bitmap granularity):
/// sizes are whole multiples of it.
pub const BLOCK_SIZE: u64 = 4096;

/// The values `al_extents` may take: DRBD's `DRBD_AL_EXTENTS_MIN` to `DRBD_AL_EXTENTS_MAX`.
pub const AL_EXTENTS: std::ops::RangeInclusive<u64> = 67..=65534;

/// A validated `[volume.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeConfig {
    /// Letters, digits, `-`, `_` and `.`, not starting with `.`: it names files in `state_dir`
    /// and is an argument of the NRPE `volume` check.
    pub name: String,
    pub backing: Backing,
    pub protocol: Protocol,
    /// Where this node accepts the peer's replication connection.
    pub listen: SocketAddr,
    /// The other node's `listen`; not `listen`, of the same family.
    pub peer: SocketAddr,
    /// Not empty.
    pub shared_secret: SharedSecret,
    /// The initial role; ignored when `follow_vrrp` is set.
    pub role: Role,
    /// The `[vrrp.instance.NAME]` whose MASTER state makes this node primary; its span lets the
    /// binary report a name that is not defined ([`check_follow_vrrp`]).
    pub follow_vrrp: Option<Spanned<String>>,
    /// `None`: no NBD export (the volume is replicated only).
    pub nbd: Option<NbdConfig>,
    pub after_split_brain: SplitBrainPolicies,
    pub on_io_error: IoErrorPolicy,
    /// Bytes per second, at least [`BLOCK_SIZE`]; `None`: unthrottled.
    pub resync_rate: Option<u64>,
    /// The peer is considered dead when an expected answer takes longer; shorter than both
    /// intervals.
    pub timeout: Duration,
    /// How often to retry connecting to the peer while disconnected.
    pub connect_interval: Duration,
    /// How often to probe an idle connection.
    pub ping_interval: Duration,
    /// Resync compares block checksums and sends only the blocks that differ.
    pub checksum_resync: bool,
    /// Whole-block writes bypass the page cache (`O_DIRECT`) where the backing allows it.
    pub direct_io: bool,
    /// Extents the activity log keeps hot, within [`AL_EXTENTS`].
    pub al_extents: usize,
}

/// The local store of a volume's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backing {
    pub path: PathBuf,
    pub kind: BackingKind,
    /// Bytes, a non-zero multiple of [`BLOCK_SIZE`]: the existing file's or device's size, or
    /// `size` for a file yet to be created.
    pub size: u64,
}

/// What `backing` named when the config was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackingKind {
    /// An existing regular file.
    File,
    /// A file that did not exist, in an existing directory: create it (`create_new`) at
    /// [`Backing::size`].
    NewFile,
    /// An existing block device.
    BlockDevice,
}

/// When a write is acknowledged to the NBD client (DRBD's `protocol`); C by default
/// (`DRBD_PROTOCOL_DEF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
pub enum Protocol {
    /// Once written locally and sent to the peer: a primary crash can lose the last writes.
    A,
    /// Once written locally and received by the peer (in its memory).
    B,
    /// Once written on both disks: no acknowledged write is lost while one node survives.
    #[default]
    C,
}

/// A node's role for a volume: only the primary serves NBD and accepts writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    /// DRBD's default: a node is primary only when told.
    #[default]
    Secondary,
}

/// What a failed read or write of the backing store does (DRBD's `on-io-error`); `detach` by
/// default (`DRBD_ON_IO_ERROR_DEF` is `EP_DETACH` in DRBD 8.4 and 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoErrorPolicy {
    /// Stop using the local store and keep serving from the peer's copy (DRBD's "diskless"
    /// mode); the failed request is retried on the peer, so the client sees no error.
    #[default]
    Detach,
    /// Report the error to the NBD client and keep the local store, marking the block out of
    /// sync so that a resync repairs it.
    PassOn,
}

/// `[volume.NAME] nbd`: the NBD export, served only while this node is primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdConfig {
    /// Not `listen`; port 0 picks a free port (for tests).
    pub listen: SocketAddr,
    /// The name clients ask for, 1 to [`MAX_EXPORT_NAME`] bytes; the volume's name by default.
    pub export: String,
}

/// The longest export name the NBD protocol allows (NBD's `proto.md`: "MUST NOT exceed 4096
/// bytes").
pub const MAX_EXPORT_NAME: usize = 4096;

/// How the nodes recover from a split brain (both sides wrote while disconnected), by how many
/// of them are primary when they reconnect. DRBD's `after-sb-0pri`, `-1pri` and `-2pri`; each
/// `disconnect` by default (`DRBD_AFTER_SB_*P_DEF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SplitBrainPolicies {
    pub zero_primaries: ZeroPrimariesPolicy,
    pub one_primary: OnePrimaryPolicy,
    pub two_primaries: TwoPrimariesPolicy,
}

/// Recovery when neither node is primary (DRBD's `after-sb-0pri`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ZeroPrimariesPolicy {
    /// Stay disconnected: an operator chooses the victim.
    #[default]
    Disconnect,
    /// Discard the changes of the node that became primary last.
    DiscardYoungerPrimary,
    /// Discard the changes of the node that became primary first.
    DiscardOlderPrimary,
    /// If only one node wrote, sync from it; if both did, disconnect.
    DiscardZeroChanges,
    /// Discard the changes of the node that wrote fewer blocks.
    DiscardLeastChanges,
}

/// Recovery when one node is primary (DRBD's `after-sb-1pri`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnePrimaryPolicy {
    /// Stay disconnected: an operator chooses the victim.
    #[default]
    Disconnect,
    /// Discard the secondary's changes if the `zero_primaries` policy would discard them too;
    /// otherwise disconnect.
    Consensus,
    /// Discard the secondary's changes.
    DiscardSecondary,
}

/// Recovery when both nodes are primary (DRBD's `after-sb-2pri`). DRBD's other choices
/// (`violently-as0p`, `call-pri-lost-after-sb`) throw away data a primary is serving, so
/// Fulcrum only disconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TwoPrimariesPolicy {
    #[default]
    Disconnect,
}

/// A split-brain policy and the names users write for it (DRBD's).
pub trait Policy: Copy + PartialEq + 'static {
    /// The key of `after_split_brain` it is written under.
    const KEY: &'static str;
    /// DRBD's option for the same case.
    const DRBD_OPTION: &'static str;
    /// Every policy of the case with its name.
    const CHOICES: &'static [(&'static str, Self)];

    /// The name users write, DRBD's.
    fn name(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("?", |(name, _)| name)
    }
}

impl Policy for ZeroPrimariesPolicy {
    const KEY: &'static str = "zero_primaries";
    const DRBD_OPTION: &'static str = "after-sb-0pri";
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("disconnect", Self::Disconnect),
        ("discard-younger-primary", Self::DiscardYoungerPrimary),
        ("discard-older-primary", Self::DiscardOlderPrimary),
        ("discard-zero-changes", Self::DiscardZeroChanges),
        ("discard-least-changes", Self::DiscardLeastChanges),
    ];
}

impl Policy for OnePrimaryPolicy {
    const KEY: &'static str = "one_primary";
    const DRBD_OPTION: &'static str = "after-sb-1pri";
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("disconnect", Self::Disconnect),
        ("consensus", Self::Consensus),
        ("discard-secondary", Self::DiscardSecondary),
    ];
}

impl Policy for TwoPrimariesPolicy {
    const KEY: &'static str = "two_primaries";
    const DRBD_OPTION: &'static str = "after-sb-2pri";
    const CHOICES: &'static [(&'static str, Self)] = &[("disconnect", Self::Disconnect)];
}

impl fmt::Display for ZeroPrimariesPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for OnePrimaryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for TwoPrimariesPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The key both peers prove they hold (HMAC challenge-response). It stays out of `Debug`, so out
/// of logs and panics.
///
/// Equality is for comparing configs on reload: peers authenticate with an HMAC, never by
/// comparing secrets.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SharedSecret(String);

impl SharedSecret {
    /// A secret from its text (tests and tools; configs get theirs from
    /// [`VolumeSection::build`]).
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The key's bytes, for the HMAC.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The key's text (the config builders hand it to `secret::resolve`, which never prints it).
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}
