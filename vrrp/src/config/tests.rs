//! `[vrrp]` from TOML text to a validated config: CONFIG.md's example builds, and every class of
//! mistake is reported at its key with what is allowed.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{io::Write, time::Duration};

use super::*;
use crate::fsm::{InitialState, Version};

/// CONFIG.md's `[vrrp]` example: node `haproxy` of seed 004, master of VI_1 and backup of VI_3.
const CONFIG_MD: &str = r#"
[vrrp]
version = 2                       # 2 | 3 (3 allows centisecond advert intervals)
interface = "eth0"                # default for every instance
garp = { delay = "5s", repeat = 5, refresh = "0s" }   # gratuitous ARP after becoming master

[vrrp.script.chk_proxy]
command = "pidof fulcrum"         # or builtin = "proxy": healthy while the local proxy serves
interval = "2s"
timeout = "1s"
weight = -5                       # applied to priority while failing (positive: while succeeding)
fall = 2
rise = 1

[vrrp.instance.VI_1]
state = "master"                  # initial: master | backup
virtual_router_id = 53
priority = 105
advert_interval = "1s"
auth_pass = "2222"                # VRRPv2 simple password, up to 8 characters
virtual_ips = ["192.168.60.78/32"]
track_scripts = ["chk_proxy"]
track_interfaces = ["eth0"]       # a down interface puts the instance in FAULT
preempt = true
preempt_delay = "0s"
unicast_peers = []                # non-empty: send adverts to these instead of multicast
notify_master = "/usr/local/bin/on-master"
notify_backup = ""
notify_fault = ""
notify = ""                       # generic script: called with GROUP|INSTANCE NAME STATE PRIORITY

[vrrp.instance.VI_3]              # the second VIP of a dual-master pair
state = "backup"
virtual_router_id = 56
priority = 99
virtual_ips = ["192.168.60.55/32"]
track_scripts = ["chk_proxy"]

[vrrp.group.G1]                   # sync group: its instances change state together
instances = ["VI_1"]
"#;

/// The peer node of seed 004 (`haproxy2`): the same pair with the roles swapped, as
/// keepalived.conf wrote it (bare VIPs, VI_3's own password).
const SEED_004_PEER: &str = r#"
[vrrp]
interface = "eth0"

[vrrp.script.chk_haproxy]
command = "killall -0 haproxy"
interval = "2s"
weight = -5
fall = 2
rise = 1

[vrrp.instance.VI_1]
state = "backup"
virtual_router_id = 53
priority = 99
auth_pass = "2222"
virtual_ips = ["192.168.60.78"]
track_scripts = ["chk_haproxy"]
notify_master = "/etc/init.d/haproxy  start"
notify_fault = "/etc/init.d/haproxy stop"

[vrrp.instance.VI_3]
state = "master"
virtual_router_id = 56
priority = 105
auth_pass = "1111"
virtual_ips = ["192.168.60.55"]
track_scripts = ["chk_haproxy"]
notify_master = "/etc/init.d/haproxy  start"
notify_fault = "/etc/init.d/haproxy stop"
"#;

fn section(text: &str) -> VrrpSection {
    #[derive(serde::Deserialize)]
    struct File {
        vrrp: VrrpSection,
    }
    toml::from_str::<File>(text).unwrap().vrrp
}

fn built(text: &str) -> VrrpConfig {
    section(text)
        .build()
        .unwrap_or_else(|errors| panic!("{errors:#?}"))
}

/// Each error as (the text its span covers, its message).
fn errors(text: &str) -> Vec<(String, String)> {
    match section(text).build() {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| (text[e.span.unwrap()].to_owned(), e.message))
            .collect(),
    }
}

/// The one error of `text`: where it points and its message.
fn one_error(text: &str) -> (String, String) {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

/// A valid instance plus `extra` lines, under `[vrrp]` lines `head`.
fn with_instance(head: &str, extra: &str) -> String {
    format!(
        "[vrrp]\ninterface = \"eth0\"\n{head}\n\n[vrrp.instance.VI_1]\nvirtual_router_id = 53\n\
         virtual_ips = [\"192.168.60.78/32\"]\n{extra}\n"
    )
}

#[test]
fn the_config_md_example_builds_with_keepalived_defaults() {
    let config = built(CONFIG_MD);
    let vi1 = config.instance("VI_1").unwrap();
    assert_eq!(vi1.fsm.version(), Version::V2);
    assert_eq!(vi1.fsm.vrid(), 53);
    assert_eq!(vi1.fsm.priority(), 105);
    assert_eq!(vi1.fsm.initial_state(), InitialState::Master);
    assert_eq!(vi1.interface, "eth0");
    assert_eq!(vi1.virtual_ips, ["192.168.60.78/32".parse().unwrap()]);
    assert_eq!(vi1.auth, crate::packet::Auth::pass("2222"));
    assert_eq!(vi1.track_scripts, ["chk_proxy"]);
    assert_eq!(vi1.track_interfaces, ["eth0"]);
    assert!(vi1.unicast_peers.is_empty());
    assert_eq!(
        vi1.notify.master.as_deref(),
        Some("/usr/local/bin/on-master")
    );
    assert_eq!(vi1.notify.backup, None, "empty means none");
    assert_eq!(vi1.group.as_deref(), Some("G1"));
    assert_eq!(
        vi1.garp,
        Garp {
            delay: Some(Duration::from_secs(5)),
            repeat: 5,
            refresh: None
        }
    );

    // VI_3 leaves out what keepalived defaults.
    let vi3 = config.instance("VI_3").unwrap();
    assert_eq!(vi3.fsm.priority(), 99);
    assert_eq!(vi3.fsm.initial_state(), InitialState::Backup);
    assert_eq!(vi3.fsm.advert_interval(), Duration::from_secs(1));
    assert!(vi3.fsm.preempts());
    assert_eq!(vi3.fsm.preempt_delay(), Duration::ZERO);
    assert_eq!(vi3.interface, "eth0", "from [vrrp] interface");
    assert_eq!(vi3.auth, crate::packet::Auth::None);
    assert_eq!(vi3.group, None);

    let script = config.script("chk_proxy").unwrap();
    assert_eq!(script.check, ScriptCheck::Command("pidof fulcrum".into()));
    assert_eq!(script.interval, Duration::from_secs(2));
    assert_eq!(script.timeout, Duration::from_secs(1));
    assert_eq!((script.weight, script.fall, script.rise), (-5, 2, 1));
    assert_eq!(config.groups[0].instances, ["VI_1"]);
}

#[test]
fn the_seed_004_peer_builds_with_roles_swapped() {
    let config = built(SEED_004_PEER);
    let vi1 = config.instance("VI_1").unwrap();
    let vi3 = config.instance("VI_3").unwrap();
    assert_eq!(
        (vi1.fsm.initial_state(), vi1.fsm.priority()),
        (InitialState::Backup, 99)
    );
    assert_eq!(
        (vi3.fsm.initial_state(), vi3.fsm.priority()),
        (InitialState::Master, 105)
    );
    assert_eq!(
        vi1.virtual_ips,
        ["192.168.60.78/32".parse().unwrap()],
        "a bare address is a host prefix"
    );
    assert_eq!(vi3.auth, crate::packet::Auth::pass("1111"));
    // keepalived's script defaults: timeout = interval.
    let script = config.script("chk_haproxy").unwrap();
    assert_eq!(script.timeout, script.interval);
}

#[test]
fn script_defaults_are_keepalived_s() {
    let config = built(&with_instance(
        "[vrrp.script.s]\nbuiltin = \"proxy\"",
        "track_scripts = [\"s\"]",
    ));
    let script = config.script("s").unwrap();
    assert_eq!(script.check, ScriptCheck::Builtin(BuiltinCheck::Proxy));
    assert_eq!(script.interval, Duration::from_secs(1));
    assert_eq!(script.timeout, Duration::from_secs(1));
    assert_eq!((script.weight, script.fall, script.rise), (0, 1, 1));
    let vi1 = config.instance("VI_1").unwrap();
    assert_eq!(vi1.fsm.priority(), 100);
    assert_eq!(vi1.garp.delay, Some(Duration::from_secs(5)));
}

#[test]
fn unknown_keys_are_refused_by_the_section_type() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "only deserialized")]
    struct File {
        vrrp: VrrpSection,
    }
    let text = with_instance("", "advert_int = 1");
    let e = toml::from_str::<File>(&text).unwrap_err();
    assert!(e.message().contains("advert_int"), "{e}");
    assert_eq!(&text[e.span().unwrap()], "advert_int");
}

#[test]
fn a_bad_state_is_refused_with_the_choices() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "only deserialized")]
    struct File {
        vrrp: VrrpSection,
    }
    let text = with_instance("", "state = \"primary\"");
    let e = toml::from_str::<File>(&text).unwrap_err();
    assert!(
        e.message()
            .contains("unknown variant `primary`, expected `master` or `backup`"),
        "{e}"
    );
    assert_eq!(&text[e.span().unwrap()], "\"primary\"");
}

#[test]
fn a_bad_version_is_reported_with_the_choices() {
    let (at, message) = one_error(&with_instance("version = 4", ""));
    assert_eq!(at, "4");
    assert!(message.contains("2 (RFC 3768) or 3"), "{message}");
}

#[test]
fn an_instance_without_interface_is_reported_at_its_name() {
    let text = "[vrrp.instance.VI_1]\nvirtual_router_id = 53\nvirtual_ips = [\"10.0.0.1\"]\n";
    let (at, message) = one_error(text);
    assert_eq!(at, "VI_1");
    assert!(
        message.contains("default `interface` in [vrrp]"),
        "{message}"
    );
}

#[test]
fn an_invalid_interface_name_is_reported() {
    let (at, message) = one_error(&with_instance("", "interface = \"eth0:1\""));
    assert_eq!(at, "\"eth0:1\"");
    assert!(message.contains("not an interface name"), "{message}");
    let (at, _) = one_error(&with_instance(
        "",
        "track_interfaces = [\"a-very-long-ifname\"]",
    ));
    assert_eq!(at, "\"a-very-long-ifname\"");
}

#[test]
fn vrid_and_priority_ranges_are_reported_with_the_range() {
    let text = "[vrrp]\ninterface = \"eth0\"\n[vrrp.instance.VI_1]\nvirtual_router_id = 256\n\
                priority = 0\nvirtual_ips = [\"10.0.0.1\"]\n";
    let all = errors(text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0].0, "256");
    assert!(all[0].1.contains("between 1 and 255"), "{}", all[0].1);
    assert_eq!(all[1].0, "0");
    assert!(
        all[1].1.contains("priority must be between 1 and 255"),
        "{}",
        all[1].1
    );
}

#[test]
fn advert_intervals_follow_the_version() {
    let (at, message) = one_error(&with_instance("", "advert_interval = \"1500ms\""));
    assert_eq!(at, "\"1500ms\"");
    assert!(message.contains("whole seconds"), "{message}");
    assert!(message.contains("version = 3"), "{message}");

    let (at, message) = one_error(&with_instance("version = 3", "advert_interval = \"15ms\""));
    assert_eq!(at, "\"15ms\"");
    assert!(message.contains("multiple of 10ms"), "{message}");

    let config = built(&with_instance("version = 3", "advert_interval = \"250ms\""));
    assert_eq!(
        config.instances[0].fsm.advert_interval(),
        Duration::from_millis(250)
    );
}

#[test]
fn an_auth_pass_longer_than_8_is_an_error_not_a_truncation() {
    let (at, message) = one_error(&with_instance("", "auth_pass = \"123456789\""));
    assert_eq!(at, "\"123456789\"");
    assert!(message.contains("uses only the first 8"), "{message}");
    let (at, message) = one_error(&with_instance("", "auth_pass = \"\""));
    assert_eq!(at, "\"\"");
    assert!(message.contains("1 to 8"), "{message}");
}

#[test]
fn vrrp_v3_has_no_authentication() {
    let (at, message) = one_error(&with_instance("version = 3", "auth_pass = \"2222\""));
    assert_eq!(at, "\"2222\"");
    assert!(
        message.contains("VRRPv3 has no authentication"),
        "{message}"
    );
}

#[test]
fn auth_pass_is_read_from_its_file_twin() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "s3cret").unwrap();
    let path = file.path().display().to_string();
    let config = built(&with_instance("", &format!("auth_pass_file = '{path}'")));
    assert_eq!(
        config.instances[0].auth,
        crate::packet::Auth::pass("s3cret")
    );

    let both = with_instance("", &format!("auth_pass = \"x\"\nauth_pass_file = '{path}'"));
    let (at, message) = one_error(&both);
    assert_eq!(at, format!("'{path}'"));
    assert!(message.contains("not both"), "{message}");

    let (at, message) = one_error(&with_instance(
        "",
        "auth_pass_file = \"/nonexistent/fulcrum-vrrp-pass\"",
    ));
    assert_eq!(at, "\"/nonexistent/fulcrum-vrrp-pass\"");
    assert!(
        message.contains("cannot read `auth_pass_file`"),
        "{message}"
    );
}

#[test]
fn virtual_ips_must_parse_and_be_of_one_family() {
    let text = "[vrrp]\ninterface = \"eth0\"\nversion = 3\n[vrrp.instance.VI_1]\n\
                virtual_router_id = 1\nvirtual_ips = [\"10.0.0.1/24\", \"10.0.0.300\", \
                \"2001:db8::1\", \"10.0.0.1\"]\n";
    let all = errors(text);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_eq!(all[0].0, "\"10.0.0.300\"");
    assert!(all[0].1.contains("not an address"), "{}", all[0].1);
    assert_eq!(all[1].0, "\"2001:db8::1\"");
    assert!(all[1].1.contains("mixes IPv4 and IPv6"), "{}", all[1].1);
    assert_eq!(all[2].0, "\"10.0.0.1\"");
    assert!(all[2].1.contains("listed twice"), "{}", all[2].1);
}

#[test]
fn vrrp_v2_is_ipv4_only() {
    let text = "[vrrp]\ninterface = \"eth0\"\n[vrrp.instance.VI_1]\nvirtual_router_id = 1\n\
                virtual_ips = [\"2001:db8::1/64\"]\n";
    let (at, message) = one_error(text);
    assert_eq!(at, "\"2001:db8::1/64\"");
    assert!(message.contains("version = 3"), "{message}");
    // The same under version 3 is fine.
    let config = built(&text.replace("[vrrp]\n", "[vrrp]\nversion = 3\n"));
    assert_eq!(config.instances[0].family, crate::packet::Family::Ipv6);
}

#[test]
fn an_instance_needs_a_virtual_ip() {
    let text = "[vrrp]\ninterface = \"eth0\"\n[vrrp.instance.VI_1]\nvirtual_router_id = 1\n\
                virtual_ips = []\n";
    let (at, message) = one_error(text);
    assert_eq!(at, "[]");
    assert!(message.contains("at least one"), "{message}");
}

#[test]
fn an_undefined_tracked_script_lists_the_defined_ones() {
    let text = with_instance(
        "[vrrp.script.chk_a]\ncommand = \"true\"\n[vrrp.script.chk_b]\nbuiltin = \"proxy\"",
        "track_scripts = [\"chk_a\", \"chk_haproxy\"]",
    );
    let (at, message) = one_error(&text);
    assert_eq!(at, "\"chk_haproxy\"");
    assert!(
        message.contains("not defined (defined: chk_a, chk_b)"),
        "{message}"
    );
}

#[test]
fn the_same_router_twice_on_an_interface_names_both_instances() {
    let text = format!(
        "{}\n[vrrp.instance.VI_9]\nvirtual_router_id = 53\nvirtual_ips = [\"192.168.60.9\"]\n",
        with_instance("", "")
    );
    let (at, message) = one_error(&text);
    assert_eq!(at, "53");
    assert!(
        message
            .contains("instances `VI_1` and `VI_9` both use virtual_router_id 53 on eth0 (IPv4)"),
        "{message}"
    );
    // Another interface, or another family, is another router.
    let other_if = text.replace(
        "[vrrp.instance.VI_9]\n",
        "[vrrp.instance.VI_9]\ninterface = \"eth1\"\n",
    );
    assert!(errors(&other_if).is_empty());
}

#[test]
fn a_vip_in_two_instances_is_reported() {
    let text = format!(
        "{}\n[vrrp.instance.VI_9]\nvirtual_router_id = 54\nvirtual_ips = [\"192.168.60.78/24\"]\n",
        with_instance("", "")
    );
    let (at, message) = one_error(&text);
    assert_eq!(at, "\"192.168.60.78/24\"");
    assert!(message.contains("instance `VI_1` too"), "{message}");
}

#[test]
fn script_mistakes_are_reported_at_their_keys() {
    let text = "[vrrp.script.none]\ninterval = \"0s\"\n\n[vrrp.script.both]\n\
                command = \"true\"\nbuiltin = \"proxy\"\nweight = 254\nfall = 0\ntimeout = \"0s\"\n";
    let all = errors(text);
    let at: Vec<&str> = all.iter().map(|(at, _)| at.as_str()).collect();
    assert_eq!(
        at,
        ["\"proxy\"", "\"0s\"", "254", "0", "none", "\"0s\""],
        "{all:#?}"
    );
    assert!(all[0].1.contains("not both"), "{}", all[0].1);
    assert!(
        all[1].1.contains("timeout must be more than 0s"),
        "{}",
        all[1].1
    );
    assert!(all[2].1.contains("between -253 and 253"), "{}", all[2].1);
    assert!(all[3].1.contains("fall must be at least 1"), "{}", all[3].1);
    assert!(all[4].1.contains("needs `command`"), "{}", all[4].1);
    assert!(
        all[5].1.contains("interval must be more than 0s"),
        "{}",
        all[5].1
    );
}

#[test]
fn group_members_must_exist_and_be_in_one_group() {
    let text = format!(
        "{}\n[vrrp.group.G1]\ninstances = [\"VI_1\"]\n[vrrp.group.G2]\n\
         instances = [\"VI_1\", \"VI_2\"]\n[vrrp.group.G3]\ninstances = []\n",
        with_instance("", "")
    );
    let all = errors(&text);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_eq!(all[0].0, "\"VI_1\"");
    assert!(all[0].1.contains("already in group `G1`"), "{}", all[0].1);
    assert_eq!(all[1].0, "\"VI_2\"");
    assert!(
        all[1].1.contains("not defined (defined: VI_1)"),
        "{}",
        all[1].1
    );
    assert_eq!(all[2].0, "[]");
    assert!(all[2].1.contains("lists no instances"), "{}", all[2].1);
}

#[test]
fn preemption_settings_with_no_effect_are_errors() {
    let (at, message) = one_error(&with_instance("", "state = \"master\"\npreempt = false"));
    assert_eq!(at, "false");
    assert!(message.contains("keepalived clears nopreempt"), "{message}");

    let (at, message) = one_error(&with_instance(
        "",
        "preempt = false\npreempt_delay = \"30s\"",
    ));
    assert_eq!(at, "\"30s\"");
    assert!(message.contains("preempt = false"), "{message}");

    let (at, message) = one_error(&with_instance("", "preempt_delay = \"20m\""));
    assert_eq!(at, "\"20m\"");
    assert!(message.contains("0s to 1000s"), "{message}");

    let config = built(&with_instance("", "preempt_delay = \"30s\""));
    assert_eq!(
        config.instances[0].fsm.preempt_delay(),
        Duration::from_secs(30)
    );
}

#[test]
fn unicast_peers_are_addresses_of_the_instance_s_family() {
    let text = with_instance(
        "",
        "unicast_peers = [\"192.168.60.129\", \"2001:db8::2\", \"10.0.0.1:112\"]",
    );
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0].0, "\"2001:db8::2\"");
    assert!(all[0].1.contains("is not IPv4"), "{}", all[0].1);
    assert_eq!(all[1].0, "\"10.0.0.1:112\"");
    assert!(all[1].1.contains("no port"), "{}", all[1].1);
}

// Input: `check_unicast_src` on a multicast instance, then on a unicast one. Output: an error
// at the key for the first; the second checks its sources.
#[test]
fn check_unicast_src_needs_unicast_peers() {
    let (at, message) = one_error(&with_instance("", "check_unicast_src = true"));
    assert_eq!(at, "true");
    assert!(message.contains("needs unicast_peers"), "{message}");
    let config = built(&with_instance(
        "",
        "unicast_peers = [\"192.168.60.129\"]\ncheck_unicast_src = true",
    ));
    assert!(config.instances[0].check_unicast_src);
}

#[test]
fn garp_repeat_must_send_something() {
    let (at, message) = one_error(&with_instance("garp = { repeat = 0 }", ""));
    assert_eq!(at, "0");
    assert!(message.contains("at least 1"), "{message}");
    let (at, message) = one_error(&with_instance("garp = { repeat = 100000000 }", ""));
    assert_eq!(at, "100000000");
    assert!(message.contains("at most 100"), "{message}");
    let (at, message) = one_error(&with_instance("garp = { refresh = \"1ms\" }", ""));
    assert_eq!(at, "\"1ms\"");
    assert!(message.contains("at least 1s"), "{message}");
    let config = built(&with_instance(
        "garp = { delay = \"0s\", refresh = \"1m\" }",
        "",
    ));
    assert_eq!(
        config.instances[0].garp,
        Garp {
            delay: None,
            repeat: 5,
            refresh: Some(Duration::from_secs(60))
        }
    );
}

#[test]
fn the_v3_checksum_covers_the_pseudo_header_unless_asked_otherwise() {
    let instance = "[vrrp.instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 1\nvirtual_ips = [\"10.0.0.1/32\"]\n";
    let default = built(&format!("[vrrp]\nversion = 3\n{instance}"));
    assert_eq!(default.checksum, crate::packet::ChecksumMode::PseudoHeader);
    let as_v2 = built(&format!(
        "[vrrp]\nversion = 3\nv3_checksum_as_v2 = true\n{instance}"
    ));
    assert_eq!(as_v2.checksum, crate::packet::ChecksumMode::MessageOnly);
}
