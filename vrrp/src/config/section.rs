//! The serde types of `[vrrp]`, as users write it (the key names are CONFIG.md's and a contract
//! with users). [`VrrpSection::build`] turns them into a validated [`super::VrrpConfig`].
//!
//! Numbers are read as `i64` (TOML's integer) so that an out-of-range value is reported with the
//! range allowed rather than as a type error. Defaults are keepalived 2.2's, each named where it
//! is set.

use std::{collections::BTreeMap, path::PathBuf};

use fulcrum_common::{Duration, Spanned};
use serde::Deserialize;

use crate::fsm::InitialState;

/// `[vrrp]`: keepalived's `vrrp_instance`s, `vrrp_script`s and `vrrp_sync_group`s.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpSection {
    /// `2` (RFC 3768) or `3` (RFC 5798) for every instance; 2 by default, as keepalived's
    /// `vrrp_version`.
    #[serde(default = "default_version")]
    pub version: Spanned<i64>,
    /// The interface of every instance that does not name its own.
    pub interface: Option<Spanned<String>>,
    /// Gratuitous ARP (IPv6: unsolicited neighbour advertisements) after becoming master.
    #[serde(default)]
    pub garp: GarpSection,
    /// `[vrrp.script.NAME]`.
    #[serde(default)]
    pub script: BTreeMap<Spanned<String>, ScriptSection>,
    /// `[vrrp.instance.NAME]`.
    #[serde(default)]
    pub instance: BTreeMap<Spanned<String>, InstanceSection>,
    /// `[vrrp.group.NAME]`: sync groups, whose instances change state together.
    #[serde(default)]
    pub group: BTreeMap<Spanned<String>, GroupSection>,
    /// VRRPv3 over IPv4: sum the checksum over the message alone, without the IPv4
    /// pseudo-header (RFC 9568's reading; keepalived 2.2.8's `v3_checksum_as_v2`). Both ends
    /// must agree; keepalived 2.2.7 always uses the pseudo-header.
    #[serde(default)]
    pub v3_checksum_as_v2: bool,
}

fn default_version() -> Spanned<i64> {
    Spanned::new(0..0, 2)
}

/// `garp = { delay, repeat, refresh }`: keepalived's `vrrp_garp_master_*` globals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GarpSection {
    /// How long after becoming master the second burst is sent; `"0s"`: no second burst.
    /// 5s by default (keepalived `vrrp_garp_master_delay`).
    pub delay: Duration,
    /// Gratuitous ARPs per burst, at least 1; 5 by default (keepalived
    /// `vrrp_garp_master_repeat`).
    pub repeat: Spanned<i64>,
    /// While master, repeat a burst this often, at least each second; `"0s"` (the default, as
    /// keepalived's `vrrp_garp_master_refresh`): never.
    pub refresh: Spanned<Duration>,
}

impl Default for GarpSection {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(5),
            repeat: Spanned::new(0..0, 5),
            refresh: Spanned::new(0..0, Duration::from_secs(0)),
        }
    }
}

/// `[vrrp.script.NAME]`: keepalived's `vrrp_script`, a check whose result moves the priority of
/// the instances tracking it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSection {
    /// A command run through `sh -c`; healthy while it exits 0. Set this or `builtin`.
    pub command: Option<Spanned<String>>,
    /// A check Fulcrum runs itself instead of a command.
    pub builtin: Option<Spanned<BuiltinCheck>>,
    /// 1s by default (keepalived `VRRP_SCRIPT_DI`).
    #[serde(default = "default_script_interval")]
    pub interval: Spanned<Duration>,
    /// A run taking longer fails. Defaults to `interval`, as keepalived does when `timeout` is
    /// unset (`VRRP_SCRIPT_DT` is 0, read as "the interval" by `vrrp_script_thread`).
    pub timeout: Option<Spanned<Duration>>,
    /// Added to the priority while the check succeeds (positive) or fails (negative), within
    /// -253..=253 as keepalived. 0, the default (keepalived `VRRP_SCRIPT_DW`): a failing check
    /// puts the instance in FAULT instead.
    #[serde(default = "default_zero")]
    pub weight: Spanned<i64>,
    /// Consecutive failures before the check counts as failing; 1 by default (keepalived).
    #[serde(default = "default_one")]
    pub fall: Spanned<i64>,
    /// Consecutive successes before the check counts as healthy again; 1 by default
    /// (keepalived).
    #[serde(default = "default_one")]
    pub rise: Spanned<i64>,
}

fn default_script_interval() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(1))
}

fn default_zero() -> Spanned<i64> {
    Spanned::new(0..0, 0)
}

fn default_one() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}

/// `builtin = "proxy"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltinCheck {
    /// Healthy while no backend or virtual service of the local proxy is DOWN (without a usable
    /// server).
    Proxy,
}

/// `[vrrp.instance.NAME]`: keepalived's `vrrp_instance`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSection {
    /// The initial state; `backup` by default (keepalived: BACKUP unless `state MASTER`).
    #[serde(default = "default_state")]
    pub state: Spanned<InitialState>,
    /// Falls back to `[vrrp] interface`.
    pub interface: Option<Spanned<String>>,
    /// 1..=255; must be the same on both nodes and unique per interface and address family.
    pub virtual_router_id: Spanned<i64>,
    /// 1..=255 (255: the address owner); 100 by default (keepalived).
    #[serde(default = "default_priority")]
    pub priority: Spanned<i64>,
    /// 1s by default (keepalived `advert_int`). VRRPv2: whole seconds, 1s..=255s; VRRPv3:
    /// multiples of 10ms, 10ms..=40.95s.
    #[serde(default = "default_advert_interval")]
    pub advert_interval: Spanned<Duration>,
    /// VRRPv2 simple password (keepalived `auth_type PASS`), at most 8 bytes. None by default.
    pub auth_pass: Option<Spanned<String>>,
    /// A file holding `auth_pass`.
    pub auth_pass_file: Option<Spanned<PathBuf>>,
    /// `"192.168.60.78/32"`, or a bare address (a host prefix). All of one family.
    pub virtual_ips: Spanned<Vec<Spanned<String>>>,
    /// Names of `[vrrp.script.NAME]`s.
    #[serde(default)]
    pub track_scripts: Vec<Spanned<String>>,
    /// A down interface puts the instance in FAULT.
    #[serde(default)]
    pub track_interfaces: Vec<Spanned<String>>,
    /// A backup takes over from a lower-priority master; true by default (keepalived, unless
    /// `nopreempt`).
    #[serde(default = "default_true")]
    pub preempt: Spanned<bool>,
    /// How long a backup waits before preempting, 0s..=1000s as keepalived; 0s by default.
    #[serde(default = "default_preempt_delay")]
    pub preempt_delay: Spanned<Duration>,
    /// Non-empty: send adverts to these addresses instead of multicast.
    #[serde(default)]
    pub unicast_peers: Vec<Spanned<String>>,
    /// With `unicast_peers`: drop an advert whose source is not one of them (keepalived's
    /// `check_unicast_src`); off by default, as there.
    #[serde(default = "default_false")]
    pub check_unicast_src: Spanned<bool>,
    /// Commands run on a state change; empty or absent: none.
    #[serde(default)]
    pub notify_master: String,
    #[serde(default)]
    pub notify_backup: String,
    #[serde(default)]
    pub notify_fault: String,
    /// Run when the instance stops (keepalived's `notify_stop`).
    #[serde(default)]
    pub notify_stop: String,
    /// Run on every change with `INSTANCE NAME STATE PRIORITY` (keepalived's `notify`).
    #[serde(default)]
    pub notify: String,
}

fn default_state() -> Spanned<InitialState> {
    Spanned::new(0..0, InitialState::Backup)
}

fn default_preempt_delay() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(0))
}

fn default_priority() -> Spanned<i64> {
    Spanned::new(0..0, 100)
}

fn default_advert_interval() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(1))
}

fn default_false() -> Spanned<bool> {
    Spanned::new(0..0, false)
}

fn default_true() -> Spanned<bool> {
    Spanned::new(0..0, true)
}

/// `[vrrp.group.NAME]`: keepalived's `vrrp_sync_group`. When one of its instances goes to
/// MASTER, BACKUP or FAULT, the others follow, so VIPs that must live on the same node (a
/// front VIP and its gateway VIP) never split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSection {
    /// Names of `[vrrp.instance.NAME]`s; an instance belongs to at most one group.
    pub instances: Spanned<Vec<Spanned<String>>>,
}
