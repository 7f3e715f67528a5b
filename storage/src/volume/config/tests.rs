//! `[volume.NAME]` from TOML text to a validated config: CONFIG.md's example builds, defaults are
//! DRBD's, and every class of mistake is reported at its key with what is allowed.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{collections::BTreeMap, io::Write, path::Path, time::Duration};

use fulcrum_common::{ConfigError, Spanned};

use super::*;

/// CONFIG.md's `[volume.nfs]`, with `backing` in a scratch directory (`{dir}`).
const CONFIG_MD: &str = r#"
[volume.nfs]
backing = '{dir}/nfs.img'   # a file (created at `size`) or a block device
size = "10GiB"
protocol = "C"                    # A: ack when sent; B: when the peer received; C: when on both disks
listen = "10.1.88.175:7788"
peer = "10.1.88.179:7788"
shared_secret = "MySQL-HA"        # HMAC challenge-response between the peers
role = "secondary"                # initial role, unless follow_vrrp is set
follow_vrrp = "VI_1"              # primary exactly while this VRRP instance is master
nbd = { listen = "127.0.0.1:10809", export = "nfs" }   # served only while primary
after_split_brain = { zero_primaries = "discard-younger-primary", one_primary = "discard-secondary", two_primaries = "disconnect" }
on_io_error = "detach"
resync_rate = "100MiB"            # per second
"#;

/// The keys of a minimal valid volume `nfs` whose backing file is to be created in `dir`.
fn base(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("backing", format!("'{}/nfs.img'", dir.display())),
        ("size", "\"1MiB\"".to_owned()),
        ("listen", "\"10.0.0.1:7788\"".to_owned()),
        ("peer", "\"10.0.0.2:7788\"".to_owned()),
        ("shared_secret", "\"s3cret\"".to_owned()),
    ]
}

/// `[volume.nfs]` with `base`'s keys, each of `changes` replacing (or, with an empty value,
/// removing) the key of that name or adding it.
fn volume(dir: &Path, changes: &[(&'static str, &str)]) -> String {
    let mut keys = base(dir);
    for (key, value) in changes {
        keys.retain(|(k, _)| k != key);
        if !value.is_empty() {
            keys.push((key, (*value).to_owned()));
        }
    }
    let mut text = "[volume.nfs]\n".to_owned();
    for (key, value) in keys {
        text.push_str(&format!("{key} = {value}\n"));
    }
    text
}

#[derive(Debug, serde::Deserialize)]
struct File {
    volume: BTreeMap<Spanned<String>, VolumeSection>,
}

fn built_all(text: &str) -> Result<Vec<VolumeConfig>, Vec<ConfigError>> {
    build_all(&toml::from_str::<File>(text).unwrap().volume)
}

fn built(text: &str) -> VolumeConfig {
    crate::test_support::only(built_all(text))
}

/// Each error as (the text its span covers, its message).
fn errors(text: &str) -> Vec<(String, String)> {
    crate::test_support::error_spans(text, built_all(text))
}

/// The one error of `text`: where it points and its message.
fn one_error(text: &str) -> (String, String) {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

/// The serde error of `text`: where it points and its message.
fn parse_error(text: &str) -> (String, String) {
    let e = toml::from_str::<File>(text).unwrap_err();
    (text[e.span().unwrap()].to_owned(), e.message().to_owned())
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn the_config_md_example_builds() {
    let dir = scratch();
    let text = CONFIG_MD.replace("{dir}", &dir.path().display().to_string());
    let nfs = built(&text);
    assert_eq!(nfs.name, "nfs");
    assert_eq!(
        nfs.backing,
        Backing {
            path: dir.path().join("nfs.img"),
            kind: BackingKind::NewFile,
            size: 10 << 30,
        }
    );
    assert_eq!(nfs.protocol, Protocol::C);
    assert_eq!(nfs.listen, "10.1.88.175:7788".parse().unwrap());
    assert_eq!(nfs.peer, "10.1.88.179:7788".parse().unwrap());
    assert_eq!(nfs.shared_secret.as_bytes(), b"MySQL-HA");
    assert_eq!(nfs.role, Role::Secondary);
    let follow = nfs.follow_vrrp.as_ref().unwrap();
    assert_eq!(follow.get_ref(), "VI_1");
    assert_eq!(&text[follow.span()], "\"VI_1\"");
    assert_eq!(
        nfs.nbd,
        Some(NbdConfig {
            listen: "127.0.0.1:10809".parse().unwrap(),
            export: "nfs".to_owned(),
        })
    );
    assert_eq!(
        nfs.after_split_brain,
        SplitBrainPolicies {
            zero_primaries: ZeroPrimariesPolicy::DiscardYoungerPrimary,
            one_primary: OnePrimaryPolicy::DiscardSecondary,
            two_primaries: TwoPrimariesPolicy::Disconnect,
        }
    );
    assert_eq!(nfs.on_io_error, IoErrorPolicy::Detach);
    assert_eq!(nfs.resync_rate, Some(100 << 20));
    assert!(check_follow_vrrp(std::slice::from_ref(&nfs), &["VI_1", "VI_3"]).is_empty());
}

#[test]
fn defaults_are_drbd_s() {
    let dir = scratch();
    let v = built(&volume(dir.path(), &[]));
    assert_eq!(v.protocol, Protocol::C, "DRBD_PROTOCOL_DEF");
    assert_eq!(v.role, Role::Secondary);
    assert_eq!(v.follow_vrrp, None);
    assert_eq!(v.nbd, None);
    assert_eq!(v.after_split_brain, SplitBrainPolicies::default());
    assert_eq!(
        v.after_split_brain.zero_primaries,
        ZeroPrimariesPolicy::Disconnect
    );
    assert_eq!(
        v.after_split_brain.one_primary,
        OnePrimaryPolicy::Disconnect
    );
    assert_eq!(v.on_io_error, IoErrorPolicy::Detach, "DRBD_ON_IO_ERROR_DEF");
    assert_eq!(v.resync_rate, None, "unthrottled");
    assert_eq!(v.timeout, Duration::from_secs(6), "DRBD_TIMEOUT_DEF");
    assert_eq!(v.connect_interval, Duration::from_secs(10));
    assert_eq!(v.ping_interval, Duration::from_secs(10));
    assert!(!v.checksum_resync);
    assert_eq!(v.al_extents, 1237, "DRBD_AL_EXTENTS_DEF");
}

#[test]
fn every_key_can_be_set() {
    let dir = scratch();
    let v = built(&volume(
        dir.path(),
        &[
            ("protocol", "\"A\""),
            ("role", "\"primary\""),
            ("nbd", "{ listen = \"[::1]:10809\" }"),
            (
                "after_split_brain",
                "{ zero_primaries = \"discard-least-changes\", one_primary = \"consensus\" }",
            ),
            ("on_io_error", "\"pass_on\""),
            ("timeout", "\"500ms\""),
            ("connect_interval", "\"2s\""),
            ("ping_interval", "\"1s\""),
            ("checksum_resync", "true"),
            ("al_extents", "3389"),
        ],
    ));
    assert_eq!(v.protocol, Protocol::A);
    assert_eq!(v.role, Role::Primary);
    let nbd = v.nbd.unwrap();
    assert_eq!(nbd.export, "nfs", "the volume's name by default");
    assert_eq!(nbd.listen, "[::1]:10809".parse().unwrap());
    assert_eq!(
        v.after_split_brain,
        SplitBrainPolicies {
            zero_primaries: ZeroPrimariesPolicy::DiscardLeastChanges,
            one_primary: OnePrimaryPolicy::Consensus,
            two_primaries: TwoPrimariesPolicy::Disconnect,
        }
    );
    assert_eq!(v.after_split_brain.one_primary.to_string(), "consensus");
    assert_eq!(v.on_io_error, IoErrorPolicy::PassOn);
    assert_eq!(v.timeout, Duration::from_millis(500));
    assert_eq!(v.connect_interval, Duration::from_secs(2));
    assert_eq!(v.ping_interval, Duration::from_secs(1));
    assert!(v.checksum_resync);
    assert_eq!(v.al_extents, 3389);
}

#[test]
fn al_extents_outside_drbds_bounds_is_refused_at_its_value() {
    let dir = scratch();
    for value in ["66", "65535"] {
        let (at, message) = one_error(&volume(dir.path(), &[("al_extents", value)]));
        assert_eq!(at, value);
        assert!(
            message.contains(&format!(
                "al_extents {value} is out of range: DRBD allows 67 to 65534"
            )),
            "{message}"
        );
    }
    let dir = scratch();
    let v = built(&volume(dir.path(), &[("al_extents", "67")]));
    assert_eq!(v.al_extents, 67);
}

#[test]
fn enums_and_units_are_refused_with_the_choices() {
    let dir = scratch();
    let (at, message) = parse_error(&volume(dir.path(), &[("protocol", "\"D\"")]));
    assert_eq!(at, "\"D\"");
    assert!(
        message.contains("expected one of `A`, `B`, `C`"),
        "{message}"
    );

    let (at, message) = parse_error(&volume(dir.path(), &[("size", "\"10\"")]));
    assert_eq!(at, "\"10\"");
    assert!(message.contains("has no unit"), "{message}");

    let (at, message) = parse_error(&volume(dir.path(), &[("role", "\"master\"")]));
    assert_eq!(at, "\"master\"");
    assert!(
        message.contains("expected `primary` or `secondary`"),
        "{message}"
    );

    let (at, message) = parse_error(&volume(dir.path(), &[("on_io_error", "\"pass-on\"")]));
    assert_eq!(at, "\"pass-on\"");
    assert!(
        message.contains("expected `detach` or `pass_on`"),
        "{message}"
    );

    let (at, message) = parse_error(&volume(dir.path(), &[("timeout", "\"60\"")]));
    assert_eq!(at, "\"60\"");
    assert!(message.contains("no unit"), "{message}");
}

#[test]
fn unknown_keys_are_refused_by_the_section_types() {
    let dir = scratch();
    let (at, message) = parse_error(&volume(dir.path(), &[("after-sb-0pri", "\"disconnect\"")]));
    assert_eq!(at, "after-sb-0pri");
    assert!(message.contains("unknown field"), "{message}");
    let (at, _) = parse_error(&volume(
        dir.path(),
        &[("nbd", "{ listen = \"127.0.0.1:10809\", name = \"x\" }")],
    ));
    assert_eq!(at, "name");
    let (at, _) = parse_error(&volume(
        dir.path(),
        &[("after_split_brain", "{ zero_primary = \"disconnect\" }")],
    ));
    assert_eq!(at, "zero_primary");
}

#[test]
fn sizes_are_non_zero_multiples_of_4kib() {
    let dir = scratch();
    let (at, message) = one_error(&volume(dir.path(), &[("size", "\"10GB\"")]));
    assert_eq!(at, "\"10GB\"");
    assert!(message.contains("multiple of 4KiB"), "{message}");
    assert!(
        message.contains("\"10GiB\" rather than \"10GB\""),
        "{message}"
    );
    let (at, _) = one_error(&volume(dir.path(), &[("size", "\"0B\"")]));
    assert_eq!(at, "\"0B\"");
    // The bitmap of a million TiB would take 32TiB of memory: the start aborted on it.
    let (at, message) = one_error(&volume(dir.path(), &[("size", "\"1000000TiB\"")]));
    assert_eq!(at, "\"1000000TiB\"");
    assert!(
        message.contains("more than the largest volume, 256TiB"),
        "{message}"
    );
    assert_eq!(
        built(&volume(dir.path(), &[("size", "\"256TiB\"")]))
            .backing
            .size,
        256 << 40
    );
}

#[test]
fn an_existing_file_gives_the_size() {
    let dir = scratch();
    let path = dir.path().join("nfs.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();

    let v = built(&volume(dir.path(), &[("size", "")]));
    assert_eq!(v.backing.kind, BackingKind::File);
    assert_eq!(v.backing.size, 2 << 20);
    let v = built(&volume(dir.path(), &[("size", "\"2MiB\"")]));
    assert_eq!(v.backing.size, 2 << 20);

    let (at, message) = one_error(&volume(dir.path(), &[("size", "\"4MiB\"")]));
    assert_eq!(at, "\"4MiB\"");
    assert!(
        message.contains("size 4MiB does not match the 2MiB of the existing file"),
        "{message}"
    );

    std::fs::File::create(&path).unwrap().set_len(5000).unwrap();
    let (at, message) = one_error(&volume(dir.path(), &[("size", "")]));
    assert_eq!(at, format!("'{}'", path.display()));
    assert!(
        message.contains("holds 5000 bytes, not a non-zero multiple of 4KiB"),
        "{message}"
    );
}

#[test]
fn a_missing_backing_needs_a_size_and_a_directory() {
    let dir = scratch();
    let (at, message) = one_error(&volume(dir.path(), &[("size", "")]));
    assert_eq!(at, format!("'{}/nfs.img'", dir.path().display()));
    assert!(message.contains("does not exist: set `size`"), "{message}");

    let nowhere = dir.path().join("missing");
    let (_, message) = one_error(&volume(
        dir.path(),
        &[("backing", &format!("'{}/nfs.img'", nowhere.display()))],
    ));
    assert!(message.contains("neither does its directory"), "{message}");

    let (_, message) = one_error(&volume(
        dir.path(),
        &[("backing", &format!("'{}'", dir.path().display()))],
    ));
    assert!(
        message.contains("neither a regular file nor a block device"),
        "{message}"
    );
}

#[test]
fn a_missing_device_under_dev_is_never_created_as_a_file() {
    let dir = scratch();
    let (at, message) = one_error(&volume(
        dir.path(),
        &[("backing", "'/dev/vg_fulcrum_test/no_such_lv'")],
    ));
    assert_eq!(at, "'/dev/vg_fulcrum_test/no_such_lv'");
    assert!(message.contains("never created as a file"), "{message}");
    // /dev itself exists, so without the rule a `size` would have made it a RAM-backed file.
    let (_, message) = one_error(&volume(
        dir.path(),
        &[("backing", "'/dev/no_such_fulcrum_disk'")],
    ));
    assert!(message.contains("create the block device"), "{message}");
}

#[test]
fn a_policy_not_allowed_for_its_case_names_the_allowed_ones() {
    let dir = scratch();
    let sb = |policies: &str| volume(dir.path(), &[("after_split_brain", policies)]);

    let (at, message) = one_error(&sb("{ zero_primaries = \"discard-secondary\" }"));
    assert_eq!(at, "\"discard-secondary\"");
    assert_eq!(
        message,
        "after_split_brain.zero_primaries: `discard-secondary` is a one_primary policy \
         (after-sb-1pri), not a zero_primaries one; zero_primaries (after-sb-0pri) allows: \
         disconnect, discard-younger-primary, discard-older-primary, discard-zero-changes, \
         discard-least-changes"
    );

    let (at, message) = one_error(&sb("{ two_primaries = \"violently-as0p\" }"));
    assert_eq!(at, "\"violently-as0p\"");
    assert!(
        message.contains("DRBD's `violently-as0p` is not offered"),
        "{message}"
    );
    assert!(message.ends_with("two_primaries (after-sb-2pri) allows: disconnect"));

    let (_, message) = one_error(&sb("{ zero_primaries = \"discard-node-lb1\" }"));
    assert!(
        message.contains("DRBD's `discard-node-lb1` is not offered"),
        "{message}"
    );

    let (_, message) = one_error(&sb("{ one_primary = \"discard_secondary\" }"));
    assert!(
        message.contains(
            "unknown policy `discard_secondary`; one_primary (after-sb-1pri) allows: disconnect, \
             consensus, discard-secondary"
        ),
        "{message}"
    );

    // Each key on its own: all three wrong, three errors.
    let all = errors(&sb(
        "{ zero_primaries = \"x\", one_primary = \"y\", two_primaries = \"z\" }",
    ));
    let at: Vec<&str> = all.iter().map(|(at, _)| at.as_str()).collect();
    assert_eq!(at, ["\"x\"", "\"y\"", "\"z\""]);
}

#[test]
fn the_secret_is_required_once_and_not_empty() {
    let dir = scratch();
    let (at, message) = one_error(&volume(dir.path(), &[("shared_secret", "")]));
    assert_eq!(at, "nfs");
    assert!(
        message.contains("volume `nfs` needs `shared_secret` (or `shared_secret_file`)"),
        "{message}"
    );

    let (at, message) = one_error(&volume(dir.path(), &[("shared_secret", "\"\"")]));
    assert_eq!(at, "\"\"");
    assert!(message.contains("shared_secret is empty"), "{message}");

    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "from-a-file").unwrap();
    let path = format!("'{}'", file.path().display());
    let v = built(&volume(
        dir.path(),
        &[("shared_secret", ""), ("shared_secret_file", &path)],
    ));
    assert_eq!(v.shared_secret.as_bytes(), b"from-a-file");

    let (at, message) = one_error(&volume(dir.path(), &[("shared_secret_file", &path)]));
    assert_eq!(at, path);
    assert!(message.contains("set either `shared_secret` or `shared_secret_file`, not both"));

    let (at, message) = one_error(&volume(
        dir.path(),
        &[
            ("shared_secret", ""),
            ("shared_secret_file", "'/nonexistent/fulcrum-volume-secret'"),
        ],
    ));
    assert_eq!(at, "'/nonexistent/fulcrum-volume-secret'");
    assert!(
        message.contains("cannot read `shared_secret_file`"),
        "{message}"
    );
}

#[test]
fn the_secret_stays_out_of_debug_output() {
    let dir = scratch();
    let v = built(&volume(dir.path(), &[]));
    let shown = format!("{v:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("SharedSecret(<redacted>)"), "{shown}");
    let section = toml::from_str::<File>(&volume(dir.path(), &[])).unwrap();
    assert!(!format!("{section:?}").contains("s3cret"));
}

#[test]
fn addresses_are_ip_and_port_and_listen_is_not_peer() {
    let dir = scratch();
    let (at, message) = one_error(&volume(dir.path(), &[("peer", "\"10.0.0.1:7788\"")]));
    assert_eq!(at, "\"10.0.0.1:7788\"");
    assert!(message.contains("peer is the same as listen"), "{message}");

    let (at, message) = one_error(&volume(dir.path(), &[("listen", "\"10.0.0.1\"")]));
    assert_eq!(at, "\"10.0.0.1\"");
    assert!(
        message.contains("listen: `10.0.0.1` is not IP:port (the port is missing)"),
        "{message}"
    );

    let (_, message) = one_error(&volume(dir.path(), &[("peer", "\"2001:db8::2:7788\"")]));
    assert!(
        message.contains("\"[2001:db8::1]:7788\" for IPv6"),
        "{message}"
    );

    let (_, message) = one_error(&volume(dir.path(), &[("listen", "\"10.0.0.1:0\"")]));
    assert!(
        message.contains("port 0 cannot be named by the peer"),
        "{message}"
    );

    let (_, message) = one_error(&volume(dir.path(), &[("peer", "\"0.0.0.0:7788\"")]));
    assert!(message.contains("cannot be connected to"), "{message}");

    let (at, message) = one_error(&volume(dir.path(), &[("peer", "\"[2001:db8::2]:7788\"")]));
    assert_eq!(at, "\"[2001:db8::2]:7788\"");
    assert!(message.contains("different address families"), "{message}");

    // Two nodes on one host (a lab): the same address on another port.
    let v = built(&volume(
        dir.path(),
        &[
            ("listen", "\"127.0.0.1:7788\""),
            ("peer", "\"127.0.0.1:7789\""),
        ],
    ));
    assert_eq!(v.peer.port(), 7789);
    // A wildcard listen, the peer's address given.
    built(&volume(dir.path(), &[("listen", "\"0.0.0.0:7788\"")]));
}

#[test]
fn nbd_mistakes_are_reported_at_their_keys() {
    let dir = scratch();
    let nbd = |table: &str| volume(dir.path(), &[("nbd", table)]);

    let (at, message) = one_error(&nbd("{ listen = \"10.0.0.1:7788\" }"));
    assert_eq!(at, "\"10.0.0.1:7788\"");
    assert!(
        message.contains("takes the replication `listen`"),
        "{message}"
    );
    let (_, message) = one_error(&nbd("{ listen = \"0.0.0.0:7788\" }"));
    assert!(
        message.contains("takes the replication `listen`"),
        "{message}"
    );

    let (at, message) = one_error(&nbd("{ listen = \"127.0.0.1:10809\", export = \"\" }"));
    assert_eq!(at, "\"\"");
    assert!(
        message.contains("nbd.export must be 1 to 4096 bytes"),
        "{message}"
    );
    let long = format!(
        "{{ listen = \"127.0.0.1:10809\", export = \"{}\" }}",
        "x".repeat(4097)
    );
    let (_, message) = one_error(&nbd(&long));
    assert!(message.contains("not 4097"), "{message}");

    let (_, message) = one_error(&nbd("{ listen = \"localhost:10809\" }"));
    assert!(message.contains("nbd.listen: `localhost:10809` is not IP:port"));

    let (_, message) = parse_error(&nbd("{ export = \"nfs\" }"));
    assert!(message.contains("missing field `listen`"), "{message}");

    let v = built(&nbd("{ listen = \"127.0.0.1:0\", export = \"data\" }"));
    assert_eq!(v.nbd.unwrap().export, "data");
}

#[test]
fn timers_follow_drbd_s_ranges_and_order() {
    let dir = scratch();
    let (at, message) = one_error(&volume(dir.path(), &[("timeout", "\"90s\"")]));
    assert_eq!(at, "\"90s\"");
    assert!(
        message.contains("timeout 1m 30s is out of range: DRBD allows 100ms to 1m"),
        "{message}"
    );
    let (at, _) = one_error(&volume(dir.path(), &[("ping_interval", "\"0s\"")]));
    assert_eq!(at, "\"0s\"");
    let (at, _) = one_error(&volume(dir.path(), &[("connect_interval", "\"5m\"")]));
    assert_eq!(at, "\"5m\"");

    // The default timeout (6s) against an interval set shorter: reported at the interval.
    let (at, message) = one_error(&volume(dir.path(), &[("ping_interval", "\"5s\"")]));
    assert_eq!(at, "\"5s\"");
    assert!(
        message.contains("timeout 6s must be shorter than ping_interval 5s"),
        "{message}"
    );
    // A timeout set longer than the default intervals: reported at the timeout, once per interval.
    let all = errors(&volume(dir.path(), &[("timeout", "\"10s\"")]));
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all.iter().all(|(at, _)| at == "\"10s\""));
}

#[test]
fn resync_rate_is_at_least_a_block_per_second() {
    let dir = scratch();
    let (at, message) = one_error(&volume(dir.path(), &[("resync_rate", "\"1KiB\"")]));
    assert_eq!(at, "\"1KiB\"");
    assert!(
        message.contains("less than one 4KiB block per second"),
        "{message}"
    );
    let v = built(&volume(dir.path(), &[("resync_rate", "\"4KiB\"")]));
    assert_eq!(v.resync_rate, Some(4096));
}

#[test]
fn volume_names_are_file_name_safe() {
    let dir = scratch();
    for bad in ["\"../etc\"", "\"a b\"", "\".hidden\"", "\"-x\"", "\"\""] {
        let text = volume(dir.path(), &[]).replace("[volume.nfs]", &format!("[volume.{bad}]"));
        let (at, message) = one_error(&text);
        assert_eq!(at, bad);
        assert!(message.contains("cannot name a volume"), "{message}");
    }
    let text = volume(dir.path(), &[]).replace("[volume.nfs]", "[volume.\"db-1_v2.0\"]");
    assert_eq!(built(&text).name, "db-1_v2.0");
}

#[test]
fn follow_vrrp_must_name_an_instance() {
    let dir = scratch();
    let v = built(&volume(
        dir.path(),
        &[("follow_vrrp", "\"VI_9\""), ("role", "\"primary\"")],
    ));
    assert_eq!(v.role, Role::Primary, "kept; follow_vrrp wins at run time");
    let errors = check_follow_vrrp(&[v], &["VI_1", "VI_3"]);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].message,
        "volume `nfs` follows VRRP instance `VI_9`, which is not defined (defined: VI_1, VI_3)"
    );
    assert!(errors[0].span.is_some());

    let (at, message) = one_error(&volume(dir.path(), &[("follow_vrrp", "\" \"")]));
    assert_eq!(at, "\" \"");
    assert!(message.contains("follow_vrrp is empty"), "{message}");
}

#[test]
fn two_volumes_share_no_port_peer_or_backing() {
    let dir = scratch();
    let nfs = volume(dir.path(), &[("nbd", "{ listen = \"0.0.0.0:10809\" }")]);
    let other = |changes: &[(&'static str, &str)]| {
        let mut all = vec![
            ("backing", format!("'{}/web.img'", dir.path().display())),
            ("listen", "\"10.0.0.1:7789\"".to_owned()),
            ("peer", "\"10.0.0.2:7789\"".to_owned()),
        ];
        for (key, value) in changes {
            all.retain(|(k, _)| k != key);
            all.push((key, (*value).to_owned()));
        }
        let changes: Vec<(&'static str, &str)> =
            all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        format!(
            "{nfs}\n{}",
            volume(dir.path(), &changes).replace("[volume.nfs]", "[volume.web]")
        )
    };
    assert_eq!(built_all(&other(&[])).unwrap().len(), 2);

    let (at, message) = one_error(&other(&[("listen", "\"10.0.0.1:7788\"")]));
    assert_eq!(at, "\"10.0.0.1:7788\"");
    assert_eq!(
        message,
        "listen 10.0.0.1:7788 is also the listen 10.0.0.1:7788 of volume `nfs`: each volume \
         needs its own ports"
    );
    let (_, message) = one_error(&other(&[("nbd", "{ listen = \"127.0.0.1:10809\" }")]));
    assert!(
        message.contains("is also the nbd.listen 0.0.0.0:10809 of volume `nfs`"),
        "{message}"
    );
    let (at, message) = one_error(&other(&[("peer", "\"10.0.0.2:7788\"")]));
    assert_eq!(at, "\"10.0.0.2:7788\"");
    assert!(
        message.contains("also the peer of volume `nfs`"),
        "{message}"
    );
    let same = format!("'{}/nfs.img'", dir.path().display());
    let (at, message) = one_error(&other(&[("backing", &same)]));
    assert_eq!(at, same);
    assert!(
        message.contains("also the backing of volume `nfs`"),
        "{message}"
    );
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let dir = scratch();
    let all = errors(&volume(
        dir.path(),
        &[
            ("size", ""),
            ("peer", "\"10.0.0.1:7788\""),
            ("shared_secret", ""),
            ("resync_rate", "\"1B\""),
            ("after_split_brain", "{ two_primaries = \"consensus\" }"),
        ],
    ));
    assert_eq!(all.len(), 5, "{all:#?}");
}
