//! The serde types of `[volume.NAME]`, as users write it (the key names are CONFIG.md's and a
//! contract with users). [`VolumeSection::build`] turns one into a validated
//! [`super::VolumeConfig`].
//!
//! Addresses and split-brain policies are read as strings, so that a mistake is reported with
//! what is allowed rather than as a type error. Defaults are DRBD 8.4's (`drbd_limits.h`,
//! drbd.conf(5)), each named where it is set.

use std::path::PathBuf;

use fulcrum_common::{Duration, Size, Spanned};
use serde::Deserialize;

use super::{IoErrorPolicy, Protocol, Role, SharedSecret};

/// `[volume.NAME]`: DRBD's `resource`, for two nodes, exported over NBD.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSection {
    /// A regular file (created at `size` if missing) or a block device.
    pub backing: Spanned<PathBuf>,
    /// A non-zero multiple of 4KiB. Required when `backing` is a file that does not exist yet;
    /// otherwise optional, and then equal to the existing file's or device's size.
    pub size: Option<Spanned<Size>>,
    /// `"A"`, `"B"` or `"C"`; C by default (DRBD's `protocol`, `DRBD_PROTOCOL_DEF`).
    #[serde(default)]
    pub protocol: Protocol,
    /// `IP:port` where this node accepts the peer's replication connection (DRBD's `address`).
    pub listen: Spanned<String>,
    /// `IP:port` of the other node's `listen`.
    pub peer: Spanned<String>,
    /// The key of the peers' HMAC challenge-response (DRBD's `shared-secret`). This or
    /// `shared_secret_file` is required.
    pub shared_secret: Option<Spanned<SharedSecret>>,
    /// A file holding `shared_secret`.
    pub shared_secret_file: Option<Spanned<PathBuf>>,
    /// The initial role, `"primary"` or `"secondary"`; secondary by default, as DRBD (a node is
    /// primary only when told). Ignored when `follow_vrrp` is set.
    #[serde(default)]
    pub role: Role,
    /// A `[vrrp.instance.NAME]`: this node is primary exactly while that instance is MASTER.
    pub follow_vrrp: Option<Spanned<String>>,
    /// The NBD export; none by default (the volume is replicated only).
    pub nbd: Option<NbdSection>,
    /// Automatic split-brain recovery; none by default.
    #[serde(default)]
    pub after_split_brain: SplitBrainSection,
    /// `"detach"` (the default, as DRBD's `DRBD_ON_IO_ERROR_DEF`) or `"pass_on"`.
    #[serde(default)]
    pub on_io_error: IoErrorPolicy,
    /// Resync bandwidth per second, at least 4KiB; unthrottled by default. (DRBD 8.4's fixed
    /// `resync-rate` default, 250KiB/s, is overridden by its dynamic controller, enabled by
    /// default; Fulcrum has no controller, so a limit is the user's choice.)
    pub resync_rate: Option<Spanned<Size>>,
    /// The peer is considered dead when an expected answer takes longer; 100ms..=60s, shorter
    /// than `connect_interval` and `ping_interval`. 6s by default (DRBD's `timeout`,
    /// `DRBD_TIMEOUT_DEF`).
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<Duration>,
    /// How often to retry connecting to the peer, 1s..=120s; 10s by default (DRBD's
    /// `connect-int`, `DRBD_CONNECT_INT_DEF`).
    #[serde(default = "default_interval")]
    pub connect_interval: Spanned<Duration>,
    /// How often to probe an idle connection, 1s..=120s; 10s by default (DRBD's `ping-int`,
    /// `DRBD_PING_INT_DEF`).
    #[serde(default = "default_interval")]
    pub ping_interval: Spanned<Duration>,
    /// Resync sends only the blocks whose checksums differ; off by default (DRBD's `csums-alg`,
    /// unset by default).
    #[serde(default)]
    pub checksum_resync: bool,
    /// Writes of whole 4 KiB blocks go to the backing with `O_DIRECT`, past the page cache, as
    /// DRBD's go straight to its lower device; on by default.
    #[serde(default = "default_direct_io")]
    pub direct_io: bool,
    /// How many 4 MiB extents the activity log keeps hot, 67..=65534; 1237 by default (DRBD's
    /// `al-extents`, `DRBD_AL_EXTENTS_DEF`, within `DRBD_AL_EXTENTS_MIN` and `_MAX`).
    #[serde(default = "default_al_extents")]
    pub al_extents: Spanned<u64>,
}

fn default_al_extents() -> Spanned<u64> {
    Spanned::new(
        0..0,
        crate::volume::meta::activity_log::DEFAULT_EXTENTS as u64,
    )
}

fn default_direct_io() -> bool {
    true
}

fn default_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(6))
}

fn default_interval() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(10))
}

/// `nbd = { listen = "IP:port", export = "NAME" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NbdSection {
    /// `IP:port` of the NBD server; 10809 is NBD's port.
    pub listen: Spanned<String>,
    /// The export name clients ask for, 1 to 4096 bytes; the volume's name by default.
    pub export: Option<Spanned<String>>,
}

/// `after_split_brain = { zero_primaries, one_primary, two_primaries }`: DRBD's `after-sb-0pri`,
/// `after-sb-1pri` and `after-sb-2pri`, with DRBD's policy names. Each is `"disconnect"` by
/// default (`DRBD_AFTER_SB_*P_DEF`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitBrainSection {
    /// Neither node is primary: `disconnect`, `discard-younger-primary`,
    /// `discard-older-primary`, `discard-zero-changes` or `discard-least-changes`.
    pub zero_primaries: Spanned<String>,
    /// One node is primary: `disconnect`, `consensus` or `discard-secondary`.
    pub one_primary: Spanned<String>,
    /// Both nodes are primary: `disconnect`.
    pub two_primaries: Spanned<String>,
}

impl Default for SplitBrainSection {
    fn default() -> Self {
        let disconnect = || Spanned::new(0..0, "disconnect".to_owned());
        Self {
            zero_primaries: disconnect(),
            one_primary: disconnect(),
            two_primaries: disconnect(),
        }
    }
}
