//! A reload applied in place ([`Vrrp::adjust`]) against a real kernel: a master moves to its new
//! VIPs and advertises its new priority without leaving MASTER, and a peer that took the same
//! new VIPs goes on hearing it. Needs root, as `start_tests`, and prints "skipped" without.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::IpAddr;
use std::time::Duration;

use super::start_tests::{enter_with_veth_pair, parse, start};
use super::*;
use crate::net::Netlink;

/// A VRRPv3 instance VI_1 on `interface` with 100 ms adverts (a backup takes over after
/// 0.3 s and its skew), `priority` and `vips`.
fn node(interface: &str, priority: u8, vips: &[&str]) -> VrrpConfig {
    parse(&node_text(interface, priority, vips))
}

/// The `[vrrp]` file of [`node`].
fn node_text(interface: &str, priority: u8, vips: &[&str]) -> String {
    let vips: Vec<String> = vips.iter().map(|v| format!("\"{v}/32\"")).collect();
    format!(
        r#"
[vrrp]
interface = "{interface}"
version = 3

[vrrp.instance.VI_1]
virtual_router_id = 53
priority = {priority}
advert_interval = "100ms"
virtual_ips = [{}]
"#,
        vips.join(", ")
    )
}

/// Waits (at most 5 s) until `check` holds for the first instance of `vrrp`.
async fn wait_for(vrrp: &Vrrp, what: &str, check: impl Fn(&InstanceStatus) -> bool) {
    let reached = async {
        while !check(&vrrp.status()[0]) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), reached)
        .await
        .unwrap_or_else(|_| panic!("never {what}: {:?}", vrrp.status()[0]));
}

/// Whether `interface` has `addr` now.
async fn has(netlink: &Netlink, interface: &str, addr: &str) -> bool {
    let link = netlink.link(interface).await.unwrap();
    let addr: IpAddr = addr.parse().unwrap();
    netlink.has_address(&link, addr).await.unwrap()
}

// Input: A (priority 100) MASTER of 10.0.0.100 on `va`, B (50) its backup on `vb`. Both are
// reloaded onto 10.0.0.101, and A to priority 90; after a second, A to priority 40.
// Output: after the first reload A is still MASTER (became master once) and holds only .101,
// advertising 90, and B, hearing those adverts, stays BACKUP. After the second, B takes over.
#[test]
fn a_reload_moves_a_masters_vips_and_priority_without_leaving_master() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    // A and B share the namespace: B's side must take packets from an address of its own.
    for conf in ["all", "vb"] {
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{conf}/accept_local"), "1").unwrap();
    }
    runtime.block_on(async {
        let netlink = Netlink::new().unwrap();
        let a_config = node("va", 100, &["10.0.0.100"]);
        let b_config = node("vb", 50, &["10.0.0.100"]);
        let a = start(&a_config).await;
        let b = start(&b_config).await;
        wait_for(&a, "MASTER", |s| s.state == State::Master).await;
        wait_for(&b, "BACKUP hearing A", |s| {
            s.state == State::Backup && s.master.is_some()
        })
        .await;
        assert!(has(&netlink, "va", "10.0.0.100").await);

        let a_moved = node("va", 90, &["10.0.0.101"]);
        let b_moved = node("vb", 50, &["10.0.0.101"]);
        // B first: A's reload sends an advert at once, which B, still on .100, would drop.
        b.adjust(&b_config, &b_moved).unwrap();
        a.adjust(&a_config, &a_moved).unwrap();
        wait_for(&a, "base priority 90", |s| {
            s.base_priority == 90 && s.effective_priority == 90
        })
        .await;
        // An advert of A's sent between the two reloads may still be refused; none after.
        let dropped_then = b.status()[0].counters.dropped_total();
        // Ten of B's Master_Down_Intervals: B would have taken over had it refused A's adverts.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(has(&netlink, "va", "10.0.0.101").await);
        assert!(!has(&netlink, "va", "10.0.0.100").await);
        let (a_now, b_now) = (&a.status()[0], &b.status()[0]);
        assert_eq!(a_now.state, State::Master);
        assert_eq!(a_now.counters.became_master, 1, "{a_now:?}");
        assert_eq!(a_now.virtual_ips, ["10.0.0.101/32"]);
        assert_eq!(b_now.state, State::Backup);
        assert_eq!(b_now.counters.became_master, 0, "{b_now:?}");
        assert_eq!(b_now.counters.dropped_total(), dropped_then, "{b_now:?}");

        let a_lower = node("va", 40, &["10.0.0.101"]);
        a.adjust(&a_moved, &a_lower).unwrap();
        wait_for(&b, "MASTER after A's priority fell", |s| {
            s.state == State::Master
        })
        .await;
        wait_for(&a, "BACKUP", |s| s.state == State::Backup).await;
        assert!(has(&netlink, "vb", "10.0.0.101").await);
        assert!(!has(&netlink, "va", "10.0.0.101").await);
        a.stop().await;
        b.stop().await;
    });
}

// Input: a MASTER with `garp.refresh = "1s"`, reloaded without a refresh between two refresh
// bursts. Output: the process stays idle over the next two seconds, past the burst that was
// due. (That deadline stayed armed once past and woke the instance at once, forever: a whole
// core.)
#[test]
fn a_garp_refresh_turned_off_by_a_reload_stops() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let plain = node_text("va", 100, &["10.0.0.100"]);
        let refreshing = parse(&plain.replace(
            "version = 3",
            "version = 3\ngarp = { delay = \"0s\", refresh = \"1s\" }",
        ));
        let vrrp = start(&refreshing).await;
        wait_for(&vrrp, "MASTER", |s| s.state == State::Master).await;
        // One refresh done, the next due within the second measured below.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        vrrp.adjust(&refreshing, &parse(&plain)).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = cpu_time();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let used = cpu_time() - before;
        // Idle, this is a few milliseconds; the busy loop took all the time from the refresh
        // that was due on.
        assert!(used < Duration::from_millis(300), "{used:?} of CPU in 2 s");
        vrrp.stop().await;
    });
}

/// The CPU time (user and system) of this process so far.
fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().unsigned_abs())
            + Duration::from_micros(t.tv_usec().unsigned_abs())
    };
    time(usage.user_time()) + time(usage.system_time())
}

// Input: a running instance, then a config whose VRID differs. Output: the change is refused
// with its key, and the instance runs on as it was.
#[test]
fn a_change_that_needs_a_restart_changes_nothing() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let config = node("va", 100, &["10.0.0.100"]);
        let vrrp = start(&config).await;
        wait_for(&vrrp, "MASTER", |s| s.state == State::Master).await;
        let renumbered = parse(
            &node_text("va", 90, &["10.0.0.100"])
                .replace("virtual_router_id = 53", "virtual_router_id = 54"),
        );
        assert_eq!(
            vrrp.adjust(&config, &renumbered).unwrap_err(),
            "vrrp.instance.VI_1.virtual_router_id"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(vrrp.status()[0].base_priority, 100);
        assert_eq!(vrrp.status()[0].effective_priority, 100);
        vrrp.stop().await;
    });
}
