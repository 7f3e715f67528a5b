//! Starting in two steps against a real kernel: a follower registered between
//! [`Vrrp::prepare`] and [`Prepared::start`] holds even the first `notify_master` of an address
//! owner, which is MASTER the moment it starts. Each test runs in a network namespace of its own
//! with a veth pair; they need root (CI runs them as root) and print "skipped" otherwise.

#![allow(clippy::unwrap_used, reason = "tests")]

use crate::testing::logged_lines;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sched::{CloneFlags, unshare};

use super::*;
use crate::config::VrrpSection;

/// How long the follower takes to "promote": long enough that a `notify_master` that did not
/// wait for it would log first.
const PROMOTION: Duration = Duration::from_millis(300);

#[test]
fn an_owners_first_notify_master_waits_for_a_follower_registered_before_start() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let prepared = Vrrp::prepare(&owner(&log), Options::default())
            .await
            .unwrap();
        let follower = prepared.follower("VI_1").unwrap();
        assert!(prepared.follower("VI_9").is_none());
        let vrrp = prepared.start();
        let promoted = tokio::spawn(promote_on_master(follower, log.clone()));

        let ran = async {
            while !logged_lines(&log).contains(&"master".to_owned()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), ran)
            .await
            .expect("notify_master ran");
        assert_eq!(logged_lines(&log), ["promoted", "master"]);
        vrrp.stop().await;
        // The instance has stopped for good: the follower sees the end.
        tokio::time::timeout(Duration::from_secs(5), promoted)
            .await
            .unwrap()
            .unwrap();
    });
}

// Input: an address owner whose VIP is `va`'s own address (10.0.0.1/24, as RFC 5798's owner
// has), MASTER, then stopped. Output: `va` still has 10.0.0.1/24 (a stop removes the VIPs, and
// took the node's own address with them).
#[test]
fn a_vip_that_is_the_interfaces_own_address_is_kept_at_stop() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let vrrp = start(&owner_of(&log, "10.0.0.1/24")).await;
        wait_state(&vrrp, State::Master).await;
        vrrp.stop().await;
        let shown = Command::new("ip")
            .args(["-4", "addr", "show", "va"])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.contains("10.0.0.1/24"), "{shown}");
    });
}

// Input: an address owner tracking a weight-0 script whose first run fails after 300 ms.
// Output: the instance never runs `notify_master` and ends in FAULT. (It took the VIPs at once,
// as if the script were good, then gave them back.)
#[test]
fn an_owner_waits_for_its_scripts_first_verdict() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let text = owner_tracking(
            &log,
            "1s",
            "command = \"sleep 0.3; exit 1\"\ntimeout = \"5s\"",
        );
        let vrrp = start(&parse(&text)).await;
        wait_state(&vrrp, State::Fault).await;
        // The notify scripts run one after the other: a `master` queued before the fault
        // would have run by the time a later one does.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !logged_lines(&log).contains(&"master".to_owned()),
            "{:?}",
            logged_lines(&log)
        );
        vrrp.stop().await;
    });
}

// Input: an address owner (adverts each 10 s, so Master_Down_Interval is 30 s) tracking a
// weighted script whose first run takes 30 s. Output: MASTER at once, long before the
// script's verdict. (It waited for that verdict, which cannot move an owner's 255, up to
// Master_Down_Interval; keepalived drops weighted scripts from an owner.)
#[test]
fn an_owner_does_not_wait_for_a_weighted_script() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = "command = \"sleep 30\"\ninterval = \"60s\"\ntimeout = \"40s\"\nweight = -10";
        let text = owner_tracking(&log, "10s", script);
        let vrrp = start(&parse(&text)).await;
        wait_state(&vrrp, State::Master).await;
        vrrp.stop().await;
    });
}

// Input: a MASTER owner whose source address (10.0.0.1/24) is removed from `va`, then added
// back. Output: FAULT (VIP removed) while it is gone, MASTER again once it is back. (It stayed
// MASTER with its VIP, every advert failing, while the peer took over too.)
#[test]
fn losing_the_source_address_faults_until_it_is_back() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let vrrp = start(&owner(&dir.path().join("log"))).await;
        let netlink = crate::net::Netlink::new().unwrap();
        let va = netlink.link("va").await.unwrap();
        let vip = "10.0.0.100".parse().unwrap();
        wait_state(&vrrp, State::Master).await;
        ip(&["addr", "del", "10.0.0.1/24", "dev", "va"]);
        wait_state(&vrrp, State::Fault).await;
        assert!(
            !netlink.has_address(&va, vip).await.unwrap(),
            "the VIP stayed"
        );
        ip(&["addr", "add", "10.0.0.1/24", "dev", "va"]);
        wait_state(&vrrp, State::Master).await;
        assert!(netlink.has_address(&va, vip).await.unwrap());
        vrrp.stop().await;
    });
}

// Input: a MASTER owner whose interface is deleted and made again under its name, with the
// same address (`ifdown` and `ifup` of a VLAN). Output: FAULT while it is gone, then MASTER again
// on the new interface, as keepalived: its VIP is on the new one and its adverts reach the
// other end of the new veth pair. (Its sockets stayed bound to the old index: FAULT for good.)
#[test]
fn an_interface_made_again_is_used_again() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = owner(&dir.path().join("log"));
        let vrrp = start(&config).await;
        wait_state(&vrrp, State::Master).await;
        ip(&["link", "del", "va"]);
        wait_state(&vrrp, State::Fault).await;
        ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        ip(&["addr", "add", "10.0.0.1/24", "dev", "va"]);
        ip(&["addr", "add", "10.0.0.2/24", "dev", "vb"]);
        ip(&["link", "set", "va", "up"]);
        ip(&["link", "set", "vb", "up"]);
        wait_state(&vrrp, State::Master).await;

        let netlink = crate::net::Netlink::new().unwrap();
        let va = netlink.link("va").await.unwrap();
        let vip = "10.0.0.100".parse().unwrap();
        assert!(netlink.has_address(&va, vip).await.unwrap());
        let vb = netlink.link("vb").await.unwrap();
        // Both ends are in this namespace: vb must take packets from an address of its own.
        for (key, value) in [
            ("vb/accept_local", "1"),
            ("vb/rp_filter", "0"),
            ("all/rp_filter", "0"),
        ] {
            std::fs::write(format!("/proc/sys/net/ipv4/conf/{key}"), value).unwrap();
        }
        let listener =
            AdvertSocket::open(&vb, Family::Ipv4, "10.0.0.2".parse().unwrap(), false).unwrap();
        let instance = &config.instances[0];
        let expected = [template::expected(
            instance,
            &template::advert_template(instance).unwrap(),
        )];
        let heard = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(Ok(advert)) = listener.recv(config.checksum, &expected).await {
                    return advert;
                }
            }
        })
        .await
        .expect("an advert on the new interface");
        assert_eq!(heard.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        vrrp.stop().await;
    });
}

// Input: a MASTER owner whose interface is deleted and made again, and which never sees it
// down: its tracking input is replaced by one that stays healthy, as when the watch channels
// between the kernel and the instance (each keeps its latest value only) fold a quick
// `ifdown`/`ifup` into no change. Output: its VIP is on the new interface. (It took the new
// socket and link, stayed MASTER, and left its VIP with the old interface.)
#[test]
fn a_master_that_sees_no_fault_still_puts_its_vip_on_the_interface_made_again() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut prepared = Vrrp::prepare(&owner(&dir.path().join("log")), Options::default())
            .await
            .unwrap();
        let (_healthy, tracking) = watch::channel(Some(255));
        prepared.instances[0].1.tracking = tracking;
        let vrrp = prepared.start();
        wait_state(&vrrp, State::Master).await;
        let netlink = crate::net::Netlink::new().unwrap();
        let old = netlink.link("va").await.unwrap();
        ip(&["link", "del", "va"]);
        ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        ip(&["addr", "add", "10.0.0.1/24", "dev", "va"]);
        ip(&["link", "set", "va", "up"]);
        ip(&["link", "set", "vb", "up"]);
        let vip = "10.0.0.100".parse().unwrap();
        let back = async {
            loop {
                if let Ok(va) = netlink.link("va").await
                    && va.index != old.index
                    && netlink.has_address(&va, vip).await.unwrap()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), back)
            .await
            .expect("the VIP on the new interface");
        assert_eq!(vrrp.status()[0].state, State::Master);
        vrrp.stop().await;
    });
}

/// `config` prepared and started, with no follower.
pub(super) async fn start(config: &VrrpConfig) -> Vrrp {
    Vrrp::prepare(config, Options::default())
        .await
        .unwrap()
        .start()
}

/// Waits (at most 10 s) until the first instance of `vrrp` is in `state`.
async fn wait_state(vrrp: &Vrrp, state: State) {
    let reached = async {
        while vrrp.status()[0].state != state {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reached)
        .await
        .unwrap_or_else(|_| panic!("never {state:?}: {:?}", vrrp.status()[0].state));
}

// Input: a VIP left on `va` by a crash (added as VIPs are), and a backup starting with it.
// Output: the backup removes it, as keepalived does, though it keeps an address of the
// interface's own (the test above).
#[test]
fn a_vip_left_by_a_crash_is_removed_at_start() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let netlink = crate::net::Netlink::new().unwrap();
        let va = netlink.link("va").await.unwrap();
        let vip = "10.0.0.100/32".parse().unwrap();
        netlink.add_vip(&va, &vip, "va:53").await.unwrap();
        assert!(netlink.has_address(&va, vip.addr()).await.unwrap());
        let dir = tempfile::tempdir().unwrap();
        // A backup for a long while: 3 adverts of 10 s before it would take over.
        let config = instance(&dir.path().join("log"), "10.0.0.100/32", 100, "10s");
        let vrrp = start(&config).await;
        let removed = async {
            while netlink.has_address(&va, vip.addr()).await.unwrap() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), removed)
            .await
            .expect("the left-over VIP is still there");
        vrrp.stop().await;
    });
}

/// VI_1 on `va` with priority 255 (MASTER at once), logging its `notify_master` to `log`.
fn owner(log: &Path) -> VrrpConfig {
    owner_of(log, "10.0.0.100/32")
}

/// [`owner`] with the VIP `vip`.
fn owner_of(log: &Path, vip: &str) -> VrrpConfig {
    instance(log, vip, 255, "1s")
}

/// VI_1 on `va` with the VIP `vip`, `priority` and `advert_interval`, logging its
/// `notify_master` to `log`.
fn instance(log: &Path, vip: &str, priority: u8, advert_interval: &str) -> VrrpConfig {
    parse(&instance_toml(log, vip, priority, advert_interval))
}

/// The `[vrrp]` file of an address owner of VIP 10.0.0.100 advertising each `advert_interval`,
/// that tracks script `chk`, whose section holds `script`.
fn owner_tracking(log: &Path, advert_interval: &str, script: &str) -> String {
    instance_toml(log, "10.0.0.100/32", 255, advert_interval).replace(
        "[vrrp.instance.VI_1]",
        "[vrrp.instance.VI_1]\ntrack_scripts = [\"chk\"]",
    ) + &format!("\n[vrrp.script.chk]\n{script}\n")
}

/// The `[vrrp]` file of [`instance`].
fn instance_toml(log: &Path, vip: &str, priority: u8, advert_interval: &str) -> String {
    format!(
        r#"
[vrrp]
interface = "va"

[vrrp.instance.VI_1]
virtual_router_id = 53
priority = {priority}
advert_interval = "{advert_interval}"
virtual_ips = ["{vip}"]
notify_master = "echo master >> '{}'"
"#,
        log.display()
    )
}

/// Builds the `[vrrp]` section of `text`.
pub(super) fn parse(text: &str) -> VrrpConfig {
    #[derive(serde::Deserialize)]
    struct File {
        vrrp: VrrpSection,
    }
    toml::from_str::<File>(text)
        .unwrap()
        .vrrp
        .build()
        .unwrap_or_else(|errors| panic!("{errors:#?}"))
}

/// Plays a volume: on MASTER, "promotes" (logs `promoted` after [`PROMOTION`]) and says done;
/// returns when the instance has stopped.
async fn promote_on_master(mut follower: Follower, log: PathBuf) {
    while let Some(transition) = follower.next().await {
        if transition.state() == State::Master {
            tokio::time::sleep(PROMOTION).await;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            writeln!(file, "promoted").unwrap();
        }
        follower.done(&transition);
    }
}

/// Moves this thread into a new network namespace with `lo` up and the veth pair `va`
/// (10.0.0.1/24) <-> `vb` (10.0.0.2/24) up, and builds the test's runtime there (its threads
/// inherit the namespace). Multi-threaded as Fulcrum's own: an instance task runs the moment it
/// is spawned. `None`, after saying so, without root.
pub(super) fn enter_with_veth_pair() -> Option<tokio::runtime::Runtime> {
    if unshare(CloneFlags::CLONE_NEWNET).is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("skipped: needs root to create a network namespace");
        return None;
    }
    ip(&["link", "set", "lo", "up"]);
    ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    ip(&["addr", "add", "10.0.0.1/24", "dev", "va"]);
    ip(&["addr", "add", "10.0.0.2/24", "dev", "vb"]);
    ip(&["link", "set", "va", "up"]);
    ip(&["link", "set", "vb", "up"]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Some(runtime)
}

/// Runs `ip args...`; panics with its stderr if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}
