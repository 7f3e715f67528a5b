//! Helpers of the VRRP lab tests (`tests/vrrp_*.rs`): Fulcrum's `[vrrp]` written for a node, the
//! node started in its namespace, VIPs watched on `eth0`, and `fulcrum status vrrp` read back.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use super::{
    Fulcrum,
    netns::{Netns, wait_until},
};

/// Long enough for any election in these tests (Master_Down_Interval is 3.6 s at most).
pub const CONVERGE: Duration = Duration::from_secs(10);
/// How often a VIP is looked for.
pub const POLL: Duration = Duration::from_millis(20);

pub fn ip(addr: &str) -> IpAddr {
    addr.parse().unwrap()
}

/// Fulcrum's `[vrrp]` with `instances` (each a `[vrrp.instance.NAME]` table) on eth0.
pub fn fulcrum_vrrp(version: u8, instances: &[String]) -> String {
    format!(
        "[vrrp]\ninterface = \"eth0\"\nversion = {version}\n\n{}",
        instances.join("\n")
    )
}

/// One `[vrrp.instance.NAME]` with an IPv4 `vip`; `extra` holds further keys, one per line.
pub fn instance(name: &str, vrid: u8, priority: u8, vip: &str, extra: &str) -> String {
    format!(
        "[vrrp.instance.{name}]\nvirtual_router_id = {vrid}\npriority = {priority}\nvirtual_ips = [\"{vip}/32\"]\n{extra}\n"
    )
}

/// Fulcrum on `config`, inside `ns`.
pub fn start_fulcrum(ns: &Netns, config: &str) -> Fulcrum {
    Fulcrum::start_wrapped(&["ip", "netns", "exec", ns.name()], config)
}

/// Waits until `ns` holds `vip` on eth0 (`holds`) or not; false on timeout.
pub fn wait_vip(ns: &Netns, vip: &str, holds: bool, timeout: Duration) -> bool {
    wait_until(timeout, POLL, || ns.has_address("eth0", ip(vip)) == holds)
}

/// How long `ns` takes to hold `vip`, from `since`; fails after `timeout`.
pub fn takeover(ns: &Netns, vip: &str, since: Instant, timeout: Duration) -> Duration {
    assert!(wait_vip(ns, vip, true, timeout), "{vip} never moved");
    since.elapsed()
}

/// `fulcrum status vrrp --json` of the running node.
pub fn status(fulcrum: &Fulcrum) -> serde_json::Value {
    let (ok, out, err) = super::fulcrum_on(fulcrum, &["status", "vrrp", "--json"], &[]);
    assert!(ok, "fulcrum status vrrp failed: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Waits until the first instance's `field` in `fulcrum status vrrp --json` is `value`, and
/// returns that status. An instance changes its VIPs on the interface before it publishes its
/// new state, so a test that saw a VIP move may read the status a moment too early.
pub fn wait_status(fulcrum: &Fulcrum, field: &str, value: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let reached = wait_until(CONVERGE, POLL, || {
        last = status(fulcrum);
        last[0][field] == value
    });
    assert!(reached, "{field} never became {value}: {last:#}");
    last
}
