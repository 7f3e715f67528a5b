//! The VRRP lab: real keepalived nodes in network namespaces, the reference Fulcrum's VRRP must
//! interoperate with, and the bridge lab the failover tests cut links in.
//!
//! Needs root, iproute2 and keepalived; skips with a message otherwise, and fails in CI (`CI`
//! set) where it must run.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{net::IpAddr, time::Duration};

use support::{
    keepalived::{Keepalived, KeepalivedInstance, config, require_keepalived},
    netns::{Bridge, Netns, can_use_netns, veth, wait_until},
};

/// The virtual address of VRID 51, which node A (priority 105 to B's 99) should hold.
const VIP_51: &str = "10.51.0.51";
/// The virtual address of VRID 52, which node B (priority 105 to A's 99) should hold.
const VIP_52: &str = "10.51.0.52";

/// How long an election may take: the master down interval (3 adverts of 1 s plus the skew
/// time) and a preemption, with room to spare.
const ELECTION: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

#[test]
fn two_keepalived_nodes_in_dual_master_each_hold_one_vip() {
    if !can_use_netns() || !require_keepalived() {
        return;
    }
    let (a, b) = pair();
    let ka = Keepalived::start(&a, &dual_master("node_a", 105, 99));
    let kb = Keepalived::start(&b, &dual_master("node_b", 99, 105));

    let settled = wait_until(ELECTION, POLL, || {
        vips_on(&a) == [ip(VIP_51)] && vips_on(&b) == [ip(VIP_52)]
    });
    assert!(
        settled,
        "A holds {:?} (expected {VIP_51}), B holds {:?} (expected {VIP_52})\n{}",
        vips_on(&a),
        vips_on(&b),
        logs(&ka, &kb)
    );
    for vip in [VIP_51, VIP_52] {
        let holders = [&a, &b]
            .iter()
            .filter(|ns| vips_on(ns).contains(&ip(vip)))
            .count();
        assert_eq!(holders, 1, "{vip} must be on exactly one node");
    }
}

#[test]
fn a_stopped_keepalived_hands_its_vip_to_the_peer() {
    if !can_use_netns() || !require_keepalived() {
        return;
    }
    let (a, b) = pair();
    let mut ka = Keepalived::start(&a, &dual_master("node_a", 105, 99));
    let kb = Keepalived::start(&b, &dual_master("node_b", 99, 105));
    let settled = wait_until(ELECTION, POLL, || {
        vips_on(&a) == [ip(VIP_51)] && vips_on(&b) == [ip(VIP_52)]
    });
    assert!(settled, "no dual master to start from\n{}", logs(&ka, &kb));

    ka.stop();
    // The priority 0 advert A sends on its way out lets B take over after its skew time (under
    // a second), not the 3 s master down interval.
    assert!(
        ka.log().contains("(VI_51) sent 0 priority"),
        "A did not resign VRID 51:\n{}",
        ka.log()
    );
    let taken_over = wait_until(Duration::from_secs(4), POLL, || {
        vips_on(&a).is_empty() && vips_on(&b) == [ip(VIP_51), ip(VIP_52)]
    });
    assert!(
        taken_over,
        "after A stopped, A holds {:?} and B holds {:?} (expected both)\n{}",
        vips_on(&a),
        vips_on(&b),
        logs(&ka, &kb)
    );
}

#[test]
fn the_bridge_lab_cuts_and_heals_a_node() {
    if !can_use_netns() {
        return;
    }
    let bridge = Bridge::new();
    let nodes: Vec<Netns> = (1..=3).map(|i| Netns::new(&format!("n{i}"))).collect();
    for (i, node) in nodes.iter().enumerate() {
        bridge.attach(node, "eth0", &format!("10.53.0.{}/24", i + 1));
    }
    let (n1, n3) = (&nodes[0], &nodes[2]);
    let (to_n2, to_n3) = (ip("10.53.0.2"), ip("10.53.0.3"));
    let probe = Duration::from_secs(1);

    assert!(n1.reachable(to_n2, probe), "n1 cannot reach n2");
    assert!(n1.reachable(to_n3, probe), "n1 cannot reach n3");

    bridge.cut(n3);
    assert!(
        !n1.reachable(to_n3, probe),
        "n3 is still reachable after the cut"
    );
    assert!(n1.reachable(to_n2, probe), "the cut of n3 took n2 down too");

    bridge.heal(n3);
    assert!(
        wait_until(Duration::from_secs(5), POLL, || n1.reachable(to_n3, probe)),
        "n3 is still unreachable after healing"
    );
}

/// Two namespaces joined by a veth pair: A with 10.51.0.1/24, B with 10.51.0.2/24, both on
/// `eth0`. Each test has its own namespaces, so the subnet is the same in all of them.
fn pair() -> (Netns, Netns) {
    let a = Netns::new("a");
    let b = Netns::new("b");
    veth(&a, "eth0", "10.51.0.1/24", &b, "eth0", "10.51.0.2/24");
    (a, b)
}

/// A node of the dual-master pair: VRID 51 (VIP .51) at `priority_51`, VRID 52 (VIP .52) at
/// `priority_52`, VRRPv2 with password authentication.
fn dual_master(router_id: &str, priority_51: u8, priority_52: u8) -> String {
    let instance = |vrid: u8, priority: u8, vip: &str| KeepalivedInstance {
        auth_pass: Some("fulcrum".to_owned()),
        vips: vec![format!("{vip}/32")],
        ..KeepalivedInstance::new(&format!("VI_{vrid}"), "eth0", vrid, priority)
    };
    config(
        router_id,
        &[
            instance(51, priority_51, VIP_51),
            instance(52, priority_52, VIP_52),
        ],
    )
}

/// Which of the two VIPs `ns` holds on `eth0`, in VRID order.
fn vips_on(ns: &Netns) -> Vec<IpAddr> {
    let held = ns.addresses("eth0");
    [VIP_51, VIP_52]
        .into_iter()
        .map(ip)
        .filter(|vip| held.contains(vip))
        .collect()
}

fn ip(addr: &str) -> IpAddr {
    addr.parse().unwrap()
}

/// Both nodes' logs, for a failure message.
fn logs(a: &Keepalived, b: &Keepalived) -> String {
    format!(
        "--- keepalived A:\n{}\n--- keepalived B:\n{}",
        a.log(),
        b.log()
    )
}
