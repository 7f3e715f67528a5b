//! VRRP's configuration: the `[vrrp]` section users write ([`section`]) and the validated
//! [`VrrpConfig`] the instances run on. A `VrrpConfig` that exists is one every instance can run:
//! ranges of the wire format checked, references resolved, secrets read.

mod adjust;
mod build;
pub mod section;
#[cfg(test)]
mod tests;

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;

pub use adjust::needs_rebuild;
pub use section::{
    BuiltinCheck, GarpSection, GroupSection, InstanceSection, ScriptSection, VrrpSection,
};

use crate::{fsm, packet::Auth, packet::ChecksumMode, packet::Family};

/// A validated `[vrrp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    /// In name order.
    pub instances: Vec<InstanceConfig>,
    /// In name order.
    pub scripts: Vec<ScriptConfig>,
    /// In name order.
    pub groups: Vec<SyncGroup>,
    /// How VRRPv3 over IPv4 sums its checksum (`v3_checksum_as_v2`).
    pub checksum: ChecksumMode,
}

/// A validated `[vrrp.instance.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    pub name: String,
    /// What the state machine runs on: version, VRID, priority, interval, preemption, initial
    /// state.
    pub fsm: fsm::Config,
    pub interface: String,
    /// The family of every address of the instance: its VIPs and its unicast peers.
    pub family: Family,
    /// At least one, at most [`crate::packet::MAX_ADDRESSES`], no duplicates.
    pub virtual_ips: Vec<IpNet>,
    /// [`Auth::None`] unless a VRRPv2 instance sets `auth_pass`.
    pub auth: Auth,
    /// Names of [`VrrpConfig::scripts`], each defined.
    pub track_scripts: Vec<String>,
    pub track_interfaces: Vec<String>,
    /// Empty: multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// Adverts are taken only from `unicast_peers` (keepalived's `check_unicast_src`).
    pub check_unicast_src: bool,
    pub notify: Notify,
    pub garp: Garp,
    /// The sync group the instance belongs to, if any.
    pub group: Option<String>,
}

/// Notify commands of an instance; `None` where the config left them empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    pub master: Option<String>,
    pub backup: Option<String>,
    pub fault: Option<String>,
    pub stop: Option<String>,
    /// Called on every change with `INSTANCE NAME STATE PRIORITY`.
    pub any: Option<String>,
}

/// Gratuitous ARP (or unsolicited NA) settings, from `[vrrp] garp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Garp {
    /// When the second burst follows the first; `None`: no second burst.
    pub delay: Option<Duration>,
    /// Packets per burst, at least 1.
    pub repeat: u32,
    /// While master, a burst this often; `None`: never.
    pub refresh: Option<Duration>,
}

/// A validated `[vrrp.script.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptConfig {
    pub name: String,
    pub check: ScriptCheck,
    /// Not zero.
    pub interval: Duration,
    /// Not zero; the interval unless set.
    pub timeout: Duration,
    /// -253..=253; 0: a failing check puts the tracking instances in FAULT.
    pub weight: i16,
    /// At least 1.
    pub fall: u32,
    /// At least 1.
    pub rise: u32,
}

/// What a tracking script runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptCheck {
    /// A command for `sh -c`, healthy while it exits 0.
    Command(String),
    Builtin(BuiltinCheck),
}

/// A validated `[vrrp.group.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    pub name: String,
    /// Names of [`VrrpConfig::instances`], each in no other group.
    pub instances: Vec<String>,
}

impl VrrpConfig {
    /// The instance called `name`.
    pub fn instance(&self, name: &str) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// The script called `name`.
    pub fn script(&self, name: &str) -> Option<&ScriptConfig> {
        self.scripts.iter().find(|s| s.name == name)
    }
}
