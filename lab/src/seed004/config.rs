//! The config files of seed 004's nodes: the L4 director in front, and the two L7 nodes in
//! dual master, each the other's mirror (VIP, priorities, own and peer addresses).

use std::{net::Ipv4Addr, path::Path};

use super::{
    A_ADDR, ADMIN_PASSWORD, ADMIN_PORT, ADMIN_USER, B_ADDR, FRONT, NBD_PORT, SYNC_PORT,
    UPLOAD_PORT, VIP1, VIP2, VOLUME_PORT, WEB_PORT,
};

/// One L7 node's side of the pair.
#[derive(Debug, Clone, Copy)]
pub(super) struct Side {
    /// `[global] node`, also the sync set's name for this node.
    pub(super) node: &'static str,
    pub(super) own: Ipv4Addr,
    pub(super) peer: Ipv4Addr,
    /// Whether this node is VI_1's master (A) or VI_2's (B).
    pub(super) first: bool,
}

pub(super) const A: Side = Side {
    node: "A",
    own: A_ADDR,
    peer: B_ADDR,
    first: true,
};

pub(super) const B: Side = Side {
    node: "B",
    own: B_ADDR,
    peer: A_ADDR,
    first: false,
};

/// The director: LVS-NAT's `ipvsadm -A -t FRONT -s rr` with the two VIPs as real servers, and
/// ldirectord-style checks. A real server that fails its check is quiesced (weight 0), so new
/// clients go to the other VIP until its takeover; `timeout.connect` is long enough for a
/// connection caught in that gap to reach the new master by SYN retransmission instead of
/// failing.
pub(super) fn lvs(alerts: &str) -> String {
    format!(
        r#"[virtual_server.front]
listen = "{FRONT}"
scheduler = "rr"
quiescent = true
health_check = {{ type = "tcp", interval = "500ms", rise = 1, fall = 1 }}
timeout = {{ connect = "15s" }}
real_servers = [{{ address = "{VIP1}:80" }}, {{ address = "{VIP2}:80" }}]

[alert]
events = ["server"]
webhooks = [{{ url = "{alerts}", format = "json" }}]
"#
    )
}

/// An L7 node: seed 004's HAProxy (POSTs to the upload server, cookie insert nocache over the
/// two web servers, stats with auth) and keepalived (VI_1 and VI_2 in dual master, a proxy
/// check), plus what the seed did by hand: the uploads synced both ways, and a replicated
/// volume that follows VI_1, exported over NBD on VIP1.
pub(super) fn l7(side: Side, uploads: &Path, alerts: &str) -> String {
    let (own, peer) = (side.own, side.peer);
    // The seed's priorities: 105 for the node's own VIP, 99 for its peer's.
    let (p1, p2) = if side.first { (105, 99) } else { (99, 105) };
    let state = |p: u8| if p == 105 { "master" } else { "backup" };
    format!(
        r#"[frontend.main]
bind = ["{VIP1}:80", "{VIP2}:80"]
acl.is_post = "method -i POST PUT"
use_backend = [{{ backend = "upload", if = "is_post" }}]
default_backend = "web"
forward_for = true

[backend.web]
balance = "roundrobin"
cookie = {{ name = "webserver", mode = "insert", nocache = true }}
health_check = {{ type = "http", path = "/", interval = "1s", rise = 2, fall = 3 }}
redispatch = true
servers = [
  {{ name = "s1", address = "{A_ADDR}:{WEB_PORT}", cookie = "s1" }},
  {{ name = "s2", address = "{B_ADDR}:{WEB_PORT}", cookie = "s2" }},
]

[backend.upload]
health_check = {{ type = "tcp", interval = "1s" }}
servers = [{{ name = "up", address = "{A_ADDR}:{UPLOAD_PORT}" }}]

[admin]
listen = "{own}:{ADMIN_PORT}"
users = [{{ name = "{ADMIN_USER}", password = "{ADMIN_PASSWORD}" }}]
refresh = "1s"

[vrrp]
version = 2
interface = "eth0"

[vrrp.script.chk_proxy]
builtin = "proxy"
interval = "1s"
weight = -5
fall = 2
rise = 1

[vrrp.instance.VI_1]
state = "{s1}"
virtual_router_id = 53
priority = {p1}
auth_pass = "2222"
virtual_ips = ["{VIP1}/32"]
track_scripts = ["chk_proxy"]

[vrrp.instance.VI_2]
state = "{s2}"
virtual_router_id = 56
priority = {p2}
auth_pass = "1111"
virtual_ips = ["{VIP2}/32"]
track_scripts = ["chk_proxy"]

[volume.data]
backing = "data.img"
size = "16MiB"
protocol = "C"
listen = "{own}:{VOLUME_PORT}"
peer = "{peer}:{VOLUME_PORT}"
shared_secret = "seed004-volume"
follow_vrrp = "VI_1"
connect_interval = "1s"
ping_interval = "1s"
timeout = "500ms"
nbd = {{ listen = "{VIP1}:{NBD_PORT}", export = "data" }}

[sync.uploads]
path = "{uploads}"
listen = "{own}:{SYNC_PORT}"
peers = ["{peer}:{SYNC_PORT}"]
shared_secret = "seed004-sync"
delay = "50ms"
exclude = ["*.tmp", ".fulcrum-lab-*"]

[alert]
webhooks = [{{ url = "{alerts}", format = "json" }}]
"#,
        s1 = state(p1),
        s2 = state(p2),
        uploads = uploads.display(),
    )
}
