//! `follow_vrrp`: a replicated volume is primary exactly where its VRRP instance is MASTER, as
//! heartbeat's `drbddisk` resource followed the VIP in seeds 002 and 003. Two nodes in network
//! namespaces of their own, each running `[vrrp]` and `[volume.data]`.
//!
//! Needs root and iproute2; skips with a message otherwise, and fails in CI (`CI` set).

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::{Duration, Instant};

use support::{
    Fulcrum,
    netns::{Netns, can_use_netns, veth, wait_until},
    status_json,
    vrrp::{CONVERGE, POLL, fulcrum_vrrp, instance, start_fulcrum, status as vrrp_status},
};

const VIP: &str = "10.78.0.50";

/// A node's config: VI_1 at `priority`, and a volume that follows it (retrying the peer every
/// second rather than DRBD's 10 s, as the two nodes start one after the other).
fn node(own: &str, peer: &str, priority: u8) -> String {
    format!(
        "{}\n[volume.data]\nbacking = \"data.img\"\nsize = \"16MiB\"\nlisten = \"{own}:7788\"\n\
         peer = \"{peer}:7788\"\nshared_secret = \"s3cret\"\nfollow_vrrp = \"VI_1\"\n\
         connect_interval = \"1s\"\nping_interval = \"1s\"\ntimeout = \"500ms\"\n\
         nbd = {{ listen = \"127.0.0.1:0\", export = \"data\" }}\n",
        fulcrum_vrrp(2, &[instance("VI_1", 61, priority, VIP, "")]),
    )
}

fn volume(node: &Fulcrum) -> serde_json::Value {
    status_json(node, "volume")
}

#[test]
fn the_volume_is_primary_where_its_instance_is_master_and_moves_with_it() {
    if !can_use_netns() {
        return;
    }
    let (na, nb) = (Netns::new("fva"), Netns::new("fvb"));
    veth(&na, "eth0", "10.78.0.1/24", &nb, "eth0", "10.78.0.2/24");
    let a = start_fulcrum(&na, &node("10.78.0.1", "10.78.0.2", 150));
    let b = start_fulcrum(&nb, &node("10.78.0.2", "10.78.0.1", 100));

    // A wins the election (150 > 100) and its volume is promoted; B's stays secondary.
    assert!(
        wait_until(CONVERGE, POLL, || {
            let (va, vb) = (volume(&a), volume(&b));
            va["role"] == "Primary" && vb["role"] == "Secondary" && va["connection"] == "Connected"
        }),
        "A: {} / B: {}",
        volume(&a),
        volume(&b)
    );
    assert_eq!(vrrp_status(&a)[0]["state"], "MASTER");
    assert!(volume(&a)["nbd"].is_string() && volume(&b)["nbd"].is_null());

    // SIGTERM on A: VRRP lets the VIP go first, then the volume; B becomes MASTER and, once
    // A's copy is secondary, primary.
    let stopped = Instant::now();
    a.signal(libc::SIGTERM);
    assert!(
        wait_until(CONVERGE, POLL, || volume(&b)["role"] == "Primary"),
        "B was not promoted: {} / VRRP {}",
        volume(&b),
        vrrp_status(&b)
    );
    eprintln!(
        "B's volume primary {:?} after A's SIGTERM",
        stopped.elapsed()
    );
    assert_eq!(vrrp_status(&b)[0]["state"], "MASTER");
    assert!(volume(&b)["nbd"].is_string());
    assert_eq!(volume(&b)["disk"], "UpToDate");
    drop(a);
    std::thread::sleep(Duration::from_millis(10));
}
