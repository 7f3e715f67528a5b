//! Which `[vrrp]` changes a reload (SIGHUP) can apply to running instances, as keepalived
//! applies a reloaded file: an instance that keeps its name keeps its state, and takes its new
//! priority, virtual addresses, notify scripts, preemption and gratuitous ARP settings in place.
//!
//! The rest names the instance on the wire or in the kernel (interface, VRID, version,
//! interval, authentication, peers) or its tracking, or adds and removes instances: VRRP is then
//! built again, each instance that keeps its identity resuming its state
//! ([`Vrrp::reload`](crate::run::Vrrp::reload)).

use super::{InstanceConfig, VrrpConfig};

/// The first change from `running` to `new` that running instances cannot take in place, as
/// the config key it is at (`vrrp.instance.VI_1.interface`); `None` when a reload can apply
/// `new` to them.
pub fn needs_rebuild(running: &VrrpConfig, new: &VrrpConfig) -> Option<String> {
    let names = |c: &VrrpConfig| {
        c.instances
            .iter()
            .map(|i| i.name.clone())
            .collect::<Vec<_>>()
    };
    if names(running) != names(new) {
        let added = new
            .instances
            .iter()
            .find(|i| running.instance(&i.name).is_none());
        let removed = running
            .instances
            .iter()
            .find(|i| new.instance(&i.name).is_none());
        return Some(match (added, removed) {
            (Some(i), _) => format!("vrrp.instance.{} (added)", i.name),
            (None, Some(i)) => format!("vrrp.instance.{} (removed)", i.name),
            // Same names in another order cannot happen: both are in name order.
            (None, None) => "vrrp.instance".to_owned(),
        });
    }
    if running.scripts != new.scripts {
        return Some("vrrp.script".to_owned());
    }
    if running.groups != new.groups {
        return Some("vrrp.group".to_owned());
    }
    let version = |c: &VrrpConfig| {
        c.instances
            .iter()
            .map(|i| i.fsm.version())
            .collect::<Vec<_>>()
    };
    if version(running) != version(new) {
        return Some("vrrp.version".to_owned());
    }
    if running.checksum != new.checksum {
        return Some("vrrp.v3_checksum_as_v2".to_owned());
    }
    let pairs = || running.instances.iter().zip(&new.instances);
    pairs()
        .find_map(|(old, new)| {
            instance_needs_rebuild(old, new).map(|key| format!("vrrp.instance.{}.{key}", new.name))
        })
        .or_else(|| pairs().find_map(|(_, new)| moved_vip(running, new)))
}

/// A VIP of `new` that another running instance holds: each instance applies its reload on its
/// own, so the one giving the address up could take it off the interface after the other put
/// it there.
fn moved_vip(running: &VrrpConfig, new: &InstanceConfig) -> Option<String> {
    new.virtual_ips.iter().find_map(|vip| {
        let from = (running.instances.iter())
            .find(|other| other.name != new.name && other.virtual_ips.contains(vip))?;
        Some(format!(
            "vrrp.instance.{}.virtual_ips ({vip} moves from {})",
            new.name, from.name
        ))
    })
}

/// The key of the first change of one instance that needs a rebuild.
fn instance_needs_rebuild(old: &InstanceConfig, new: &InstanceConfig) -> Option<&'static str> {
    let (a, b) = (&old.fsm, &new.fsm);
    let owner_changed = a.is_owner() != b.is_owner();
    [
        (old.interface != new.interface, "interface"),
        (a.vrid() != b.vrid(), "virtual_router_id"),
        (old.family != new.family, "virtual_ips (address family)"),
        (
            a.advert_interval() != b.advert_interval(),
            "advert_interval",
        ),
        (old.auth != new.auth, "auth_pass"),
        // An owner takes the addresses at once and never waits: becoming one or ceasing to be
        // one is a start of its own.
        (
            owner_changed,
            "priority (to or from 255, the address owner)",
        ),
        (old.unicast_peers != new.unicast_peers, "unicast_peers"),
        (
            old.check_unicast_src != new.check_unicast_src,
            "check_unicast_src",
        ),
        (old.track_scripts != new.track_scripts, "track_scripts"),
        (
            old.track_interfaces != new.track_interfaces,
            "track_interfaces",
        ),
    ]
    .into_iter()
    .find_map(|(changed, key)| changed.then_some(key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::config::VrrpSection;

    const BASE: &str = r#"
[vrrp]
interface = "eth0"

[vrrp.script.chk]
command = "true"

[vrrp.instance.VI_1]
virtual_router_id = 51
priority = 100
virtual_ips = ["10.0.0.51/32"]
track_scripts = ["chk"]
"#;

    fn built(text: &str) -> VrrpConfig {
        #[derive(serde::Deserialize)]
        struct File {
            vrrp: VrrpSection,
        }
        toml::from_str::<File>(text).unwrap().vrrp.build().unwrap()
    }

    /// `needs_rebuild` from BASE to BASE with `from` replaced by `to`.
    fn change(from: &str, to: &str) -> Option<String> {
        assert!(BASE.contains(from), "{from}");
        needs_rebuild(&built(BASE), &built(&BASE.replace(from, to)))
    }

    #[test]
    fn priority_addresses_notify_preemption_and_garp_apply_in_place() {
        assert_eq!(change("priority = 100", "priority = 90"), None);
        assert_eq!(
            change("[\"10.0.0.51/32\"]", "[\"10.0.0.51/32\", \"10.0.0.52/32\"]"),
            None
        );
        let chk = "track_scripts = [\"chk\"]";
        let more = format!("{chk}\nnotify_master = \"true\"\npreempt = false");
        assert_eq!(change(chk, &more), None);
        assert_eq!(change(chk, &format!("{chk}\nstate = \"master\"")), None);
        assert_eq!(
            change(
                "interface = \"eth0\"",
                "interface = \"eth0\"\ngarp = { repeat = 3 }"
            ),
            None
        );
    }

    #[test]
    fn a_change_to_how_the_instance_is_known_names_its_key() {
        let cases = [
            (
                "virtual_router_id = 51",
                "virtual_router_id = 52",
                "vrrp.instance.VI_1.virtual_router_id",
            ),
            (
                "interface = \"eth0\"",
                "interface = \"eth1\"",
                "vrrp.instance.VI_1.interface",
            ),
            (
                "priority = 100",
                "priority = 255",
                "vrrp.instance.VI_1.priority (to or from 255, the address owner)",
            ),
            (
                "priority = 100",
                "priority = 100\nadvert_interval = \"2s\"",
                "vrrp.instance.VI_1.advert_interval",
            ),
            (
                "priority = 100",
                "priority = 100\nauth_pass = \"s3cret\"",
                "vrrp.instance.VI_1.auth_pass",
            ),
            (
                "priority = 100",
                "priority = 100\nunicast_peers = [\"10.0.0.2\"]",
                "vrrp.instance.VI_1.unicast_peers",
            ),
            (
                "track_scripts = [\"chk\"]",
                "track_scripts = []",
                "vrrp.instance.VI_1.track_scripts",
            ),
            (
                "track_scripts = [\"chk\"]",
                "track_scripts = [\"chk\"]\ntrack_interfaces = [\"eth1\"]",
                "vrrp.instance.VI_1.track_interfaces",
            ),
            (
                "interface = \"eth0\"",
                "interface = \"eth0\"\nversion = 3",
                "vrrp.version",
            ),
            ("command = \"true\"", "command = \"false\"", "vrrp.script"),
            (
                "interface = \"eth0\"",
                "interface = \"eth0\"\nv3_checksum_as_v2 = true",
                "vrrp.v3_checksum_as_v2",
            ),
        ];
        for (from, to, key) in cases {
            assert_eq!(change(from, to).as_deref(), Some(key), "{from} -> {to}");
        }
    }

    #[test]
    fn an_instance_added_or_removed_and_a_vip_that_moves_are_named() {
        let added = format!(
            "{BASE}\n[vrrp.instance.VI_2]\nvirtual_router_id = 52\npriority = 100\nvirtual_ips = [\"10.0.0.52/32\"]\n"
        );
        assert_eq!(
            needs_rebuild(&built(BASE), &built(&added)).as_deref(),
            Some("vrrp.instance.VI_2 (added)")
        );
        assert_eq!(
            needs_rebuild(&built(&added), &built(BASE)).as_deref(),
            Some("vrrp.instance.VI_2 (removed)")
        );
        let moved = added.replace("10.0.0.52/32", "10.0.0.53/32");
        let moved = moved.replace("[\"10.0.0.51/32\"]", "[\"10.0.0.52/32\"]");
        assert_eq!(
            needs_rebuild(&built(&added), &built(&moved)).as_deref(),
            Some("vrrp.instance.VI_1.virtual_ips (10.0.0.52/32 moves from VI_2)")
        );
        let grouped = format!("{BASE}\n[vrrp.group.G1]\ninstances = [\"VI_1\"]\n");
        assert_eq!(
            needs_rebuild(&built(BASE), &built(&grouped)).as_deref(),
            Some("vrrp.group")
        );
    }
}
