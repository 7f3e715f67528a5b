//! Seed 004's site in network namespaces, end to end: a client, an L4 director (LVS-NAT's
//! place), two L7 nodes in dual master (HAProxy + keepalived's place) with a replicated volume
//! following VI_1 and their upload directories synced both ways, two web origins and an upload
//! origin. Used by `tests/seed004.rs` and by `fulcrum-bench soak`.
//!
//! ```text
//!                 client 10.40.0.100 (curl, nbdcopy, the alert receiver on :9093)
//!                    |
//!   ------------------------------------------- bridge br0 (10.40.0.0/24)
//!        |                   |                          |
//!   lvs 10.40.0.10     l7a 10.40.0.11              l7b 10.40.0.12
//!   front :80 (rr)     VI_1 master: VIP1 .51       VI_2 master: VIP2 .52
//!   -> VIP1:80,        frontend on VIP1:80 + VIP2:80 (IP_FREEBIND), stats :8404
//!      VIP2:80         volume `data` (protocol C, follows VI_1, NBD on VIP1:10809)
//!                      sync `uploads` A <-> B
//!                      origins web1 :8081 and      origin web2 :8081
//!                      upload :8090 (A's dir)      (B's dir)
//! ```
//!
//! Origins are the caller's to start (the lab cannot depend on `fulcrum-bench`, which has them
//! and depends on the lab): [`Seed004::start`] takes a function that starts one in a namespace
//! and returns a guard that stops it on drop. The origins live in the L7 nodes' namespaces but
//! are separate servers: killing a node's Fulcrum leaves them up, as the seed's web servers
//! stay up when an HAProxy node dies.
//!
//! Addresses are fixed, since each namespace has its own stack; the namespace names are unique
//! per run ([`Netns::new`]), so labs run in parallel. Everything is torn down on drop: origins,
//! then Fulcrum processes (killed and reaped), then namespaces, mounts and the directory.

mod config;
pub mod link_loss;
pub mod load;

use std::{
    any::Any,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use serde_json::Value;

use crate::{
    alerts::AlertReceiver,
    faults::FullDisk,
    fulcrum::FulcrumNode,
    netns::{Bridge, Netns, wait_until},
};

pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 40, 0, 100);
pub const LVS_ADDR: Ipv4Addr = Ipv4Addr::new(10, 40, 0, 10);
pub const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 40, 0, 11);
pub const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 40, 0, 12);
/// VI_1's address: A's by priority, with the volume's NBD export on it.
pub const VIP1: Ipv4Addr = Ipv4Addr::new(10, 40, 0, 51);
/// VI_2's address: B's by priority.
pub const VIP2: Ipv4Addr = Ipv4Addr::new(10, 40, 0, 52);
/// The director's virtual service, where clients go.
pub const FRONT: SocketAddr = SocketAddr::new(IpAddr::V4(LVS_ADDR), 80);
/// The web origins' port, on A (web1) and B (web2).
pub const WEB_PORT: u16 = 8081;
/// The upload origin's port, on A.
pub const UPLOAD_PORT: u16 = 8090;
pub const NBD_PORT: u16 = 10809;
pub const ADMIN_PORT: u16 = 8404;
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "seed004";
pub const RECEIVER_PORT: u16 = 9093;
const VOLUME_PORT: u16 = 7788;
const SYNC_PORT: u16 = 8730;
const PREFIX: &str = "/24";

/// How long the site may take to settle: both VIPs elected (Master_Down_Interval, 3.6 s), the
/// volume connected and synced, the sync set connected, the director's checks passing.
const SETTLE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// An origin the site needs, for the caller's starter to serve.
#[derive(Debug, Clone)]
pub struct OriginSpec {
    /// `web1`, `web2` or `upload`: its `X-Server`.
    pub name: &'static str,
    /// Where it listens, inside the namespace it is started in.
    pub listen: SocketAddr,
    /// The directory it stores and serves `/files/NAME` in (an upload directory).
    pub files: PathBuf,
}

/// Starts an origin inside a namespace (e.g. by binding in [`Netns::enter`]); dropping the
/// returned guard stops it.
pub type StartOrigin<'a> = &'a dyn Fn(&Netns, &OriginSpec) -> Box<dyn Any + Send>;

/// What the site is built from.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// The `fulcrum` binary.
    pub fulcrum: &'a Path,
    pub origins: StartOrigin<'a>,
    /// Mount each L7 node's upload directory on a tmpfs of this size (`"8m"`), so that a test
    /// can fill it ([`FullDisk::fill`]).
    pub uploads_tmpfs: Option<&'a str>,
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("fulcrum", &self.fulcrum)
            .field("uploads_tmpfs", &self.uploads_tmpfs)
            .finish_non_exhaustive()
    }
}

/// The running site. Field order is teardown order.
pub struct Seed004 {
    origins: Vec<Box<dyn Any + Send>>,
    pub lvs: Lvs,
    pub a: L7,
    pub b: L7,
    /// The `[alert]` webhook receiver, in the client namespace.
    pub alerts: AlertReceiver,
    pub client: Netns,
    bridge: Bridge,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Seed004 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seed004")
            .field("lvs", &self.lvs)
            .field("a", &self.a)
            .field("b", &self.b)
            .field("client", &self.client)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// The director.
#[derive(Debug)]
pub struct Lvs {
    pub fulcrum: FulcrumNode,
    pub ns: Netns,
}

/// An L7 node.
#[derive(Debug)]
pub struct L7 {
    /// `A` or `B`: its `[global] node`.
    pub name: &'static str,
    pub addr: Ipv4Addr,
    pub fulcrum: FulcrumNode,
    /// Its upload directory: what its web origin serves and its sync set keeps.
    pub uploads: PathBuf,
    /// The tmpfs under `uploads`, with [`Options::uploads_tmpfs`].
    pub uploads_disk: Option<FullDisk>,
    pub ns: Netns,
}

impl Seed004 {
    /// Whether the director's health checks have both VIPs UP.
    pub fn director_sees_both_up(&self) -> bool {
        self.lvs
            .fulcrum
            .status("l4")
            .and_then(|s| {
                let servers = s[0]["real_servers"].as_array()?.clone();
                Some(servers.len() == 2 && servers.iter().all(|r| r["status"] == "UP"))
            })
            .unwrap_or(false)
    }

    /// Builds the site and waits until it has settled ([`Seed004::health`]): A holds VIP1 and
    /// B VIP2, the director sees both UP, every L7 backend server is UP, A's volume is primary
    /// and both copies are UpToDate, the sync set is connected, and a client request through
    /// the front is answered. Fails the test (with the logs) otherwise.
    pub fn start(options: Options<'_>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fulcrum-seed004-")
            .tempdir()
            .unwrap();
        let bridge = Bridge::new();
        let client = Netns::new("s4c");
        bridge.attach(&client, "eth0", &format!("{CLIENT_ADDR}{PREFIX}"));
        let alerts = AlertReceiver::start(
            &client,
            SocketAddr::new(IpAddr::V4(CLIENT_ADDR), RECEIVER_PORT),
        );
        let url = alerts.url();

        let lvs_ns = Netns::new("s4lvs");
        bridge.attach(&lvs_ns, "eth0", &format!("{LVS_ADDR}{PREFIX}"));
        let (a_ns, b_ns) = (Netns::new("s4a"), Netns::new("s4b"));
        bridge.attach(&a_ns, "eth0", &format!("{A_ADDR}{PREFIX}"));
        bridge.attach(&b_ns, "eth0", &format!("{B_ADDR}{PREFIX}"));

        // Origins first, so that the L7 nodes' first health checks find them up.
        let node_dir = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.join("uploads")).unwrap();
            path
        };
        let (a_dir, b_dir) = (node_dir("a"), node_dir("b"));
        let disk = |node: &Path| {
            options
                .uploads_tmpfs
                .map(|size| FullDisk::mount(&node.join("uploads"), size))
        };
        let (a_disk, b_disk) = (disk(&a_dir), disk(&b_dir));
        let origin = |ns: &Netns, name, addr, port, node: &Path| {
            let spec = OriginSpec {
                name,
                listen: SocketAddr::new(IpAddr::V4(addr), port),
                files: node.join("uploads"),
            };
            (options.origins)(ns, &spec)
        };
        let origins = vec![
            origin(&a_ns, "web1", A_ADDR, WEB_PORT, &a_dir),
            origin(&a_ns, "upload", A_ADDR, UPLOAD_PORT, &a_dir),
            origin(&b_ns, "web2", B_ADDR, WEB_PORT, &b_dir),
        ];

        let l7 = |side: config::Side, ns: Netns, node: PathBuf, disk| {
            let uploads = node.join("uploads");
            let config = config::l7(side, &uploads, &url);
            L7 {
                name: side.node,
                addr: side.own,
                fulcrum: FulcrumNode::start(options.fulcrum, &ns, &node, side.node, &config),
                uploads,
                uploads_disk: disk,
                ns,
            }
        };
        let a = l7(config::A, a_ns, a_dir, a_disk);
        let b = l7(config::B, b_ns, b_dir, b_disk);
        let lvs_dir = dir.path().join("lvs");
        std::fs::create_dir_all(&lvs_dir).unwrap();
        let lvs = Lvs {
            fulcrum: FulcrumNode::start(
                options.fulcrum,
                &lvs_ns,
                &lvs_dir,
                "lvs",
                &config::lvs(&url),
            ),
            ns: lvs_ns,
        };
        let site = Self {
            origins,
            lvs,
            a,
            b,
            alerts,
            client,
            bridge,
            dir,
        };
        site.settle();
        site
    }

    /// Waits for the settled state ([`Seed004::health`]), naming the part that does not come.
    fn settle(&self) {
        let mut missing = "";
        let settled = wait_until(SETTLE, POLL, || match self.health() {
            Ok(()) => true,
            Err(part) => {
                missing = part;
                false
            }
        });
        assert!(
            settled,
            "seed 004 did not settle: {missing}\n{}",
            self.report()
        );
    }

    /// Whether the site is in its settled state, or else the first part that is not: each VIP on
    /// its own master, the director seeing both UP, every L7 backend server UP on both nodes,
    /// A's volume primary with both copies UpToDate, the sync set connected on both nodes, and
    /// a request through the front answered. What a fault's end waits for, as the start does.
    /// Cheap parts are asked first, so a poll during a fault mostly costs one `ip addr` each.
    pub fn health(&self) -> Result<(), &'static str> {
        let check = |ok: bool, part: &'static str| if ok { Ok(()) } else { Err(part) };
        check(
            self.holders(VIP1) == ["A"] && self.holders(VIP2) == ["B"],
            "A holds VIP1 and B holds VIP2",
        )?;
        check(
            self.director_sees_both_up(),
            "the director sees both VIPs UP",
        )?;
        let v = self.a.fulcrum.status_of("volume", "data");
        check(
            v["role"] == "Primary"
                && v["connection"] == "Connected"
                && v["disk"] == "UpToDate"
                && v["peer_disk"] == "UpToDate",
            "A's volume is primary, connected, both copies UpToDate",
        )?;
        check(
            [&self.a, &self.b]
                .iter()
                .all(|n| n.fulcrum.status_of("sync", "uploads")["state"] == "connected"),
            "the sync set is connected on both nodes",
        )?;
        check(
            [&self.a, &self.b]
                .iter()
                .all(|n| self.stats(n).is_some_and(|s| backends_up(&s))),
            "every L7 backend server is UP on both nodes",
        )?;
        check(
            self.curl_front("/", &[]).status == 200,
            "a client request through the front is answered",
        )
    }

    /// The L7 node named `name` (`A` or `B`).
    pub fn l7(&self, name: &str) -> &L7 {
        match name {
            "A" => &self.a,
            "B" => &self.b,
            other => panic!("no L7 node {other}"),
        }
    }

    /// The L7 node named `name`, to signal, kill or restart.
    pub fn l7_mut(&mut self, name: &str) -> &mut L7 {
        match name {
            "A" => &mut self.a,
            "B" => &mut self.b,
            other => panic!("no L7 node {other}"),
        }
    }

    /// Each Fulcrum process by node name (`lvs`, `A`, `B`) with its pid while it runs (`None`
    /// once it has exited), for the soak run's memory samples: a restarted node has a new pid.
    pub fn fulcrum_pids(&mut self) -> Vec<(&'static str, Option<u32>)> {
        let pid = |node: &mut FulcrumNode| (!node.wait_exit(Duration::ZERO)).then(|| node.pid());
        vec![
            ("lvs", pid(&mut self.lvs.fulcrum)),
            ("A", pid(&mut self.a.fulcrum)),
            ("B", pid(&mut self.b.fulcrum)),
        ]
    }

    /// The L7 nodes (`A`, `B`) holding `vip` on eth0 now.
    pub fn holders(&self, vip: Ipv4Addr) -> Vec<&'static str> {
        [&self.a, &self.b]
            .into_iter()
            .filter(|n| n.ns.has_address("eth0", IpAddr::V4(vip)))
            .map(|n| n.name)
            .collect()
    }

    /// A crash of `node` as a whole machine would crash: its Fulcrum gets SIGKILL (no goodbye
    /// advert, nothing flushed) and is reaped, and the VIPs it held leave its interface with it.
    /// A killed Fulcrum alone leaves them configured until it starts again (docs/config.md,
    /// "Start, stop and reload"), and a live kernel answering for a VIP would reset every
    /// connection sent to it; a dead node answers nothing. The node's origins stay up (they are
    /// other servers). Returns when the node is down.
    pub fn crash(&mut self, node: &str) {
        let l7 = self.l7_mut(node);
        l7.fulcrum.kill();
        for vip in [VIP1, VIP2] {
            if l7.ns.has_address("eth0", IpAddr::V4(vip)) {
                l7.ns
                    .ip(&["addr", "del", &format!("{vip}/32"), "dev", "eth0"]);
            }
        }
    }

    /// `curl ARGS http://FRONT/PATH` from the client.
    pub fn curl_front(&self, path: &str, args: &[&str]) -> load::Reply {
        self.curl(&format!("http://{FRONT}{path}"), args)
    }

    /// `curl ARGS URL` from the client.
    pub fn curl(&self, url: &str, args: &[&str]) -> load::Reply {
        let mut all = args.to_vec();
        all.push(url);
        load::fetch(self.client.name(), &all)
    }

    /// Runs `args` (program first) in the client namespace to the end.
    pub fn client_exec(&self, args: &[&str]) -> Output {
        self.client.exec(args)
    }

    /// `http://FRONT`, the base URL for [`load::Load`].
    pub fn front_url(&self) -> String {
        format!("http://{FRONT}")
    }

    /// The stats JSON of an L7 node's admin server (`Accept: application/json`, with the
    /// admin login), fetched from the client; `None` when it does not answer.
    pub fn stats(&self, node: &L7) -> Option<Value> {
        let out = self.client.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-u",
            &format!("{ADMIN_USER}:{ADMIN_PASSWORD}"),
            "-H",
            "Accept: application/json",
            &format!("http://{}:{ADMIN_PORT}/stats", node.addr),
        ]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The site's scratch directory (node directories, cookie jars, NBD files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bridge the nodes hang off, for link faults ([`Bridge::cut`], `set_forwarding`).
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// Everything a failed assertion should show: who holds the VIPs, each node's status, the
    /// alerts, and the tail of each log.
    pub fn report(&self) -> String {
        let tail = |node: &FulcrumNode| {
            let text = node.log_text();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        let mut out = format!(
            "VIP1 on {:?}, VIP2 on {:?}\n",
            self.holders(VIP1),
            self.holders(VIP2)
        );
        for l7 in [&self.a, &self.b] {
            for what in ["vrrp", "volume", "sync"] {
                out.push_str(&format!(
                    "{} status {what}: {}\n",
                    l7.name,
                    l7.fulcrum.status(what).unwrap_or(Value::Null)
                ));
            }
        }
        out.push_str(&format!(
            "lvs status l4: {}\nalerts: {:?}\n",
            self.lvs.fulcrum.status("l4").unwrap_or(Value::Null),
            self.alerts.alerts()
        ));
        for (name, node) in [
            ("lvs", &self.lvs.fulcrum),
            ("A", &self.a.fulcrum),
            ("B", &self.b.fulcrum),
        ] {
            out.push_str(&format!("--- {name} log (tail):\n{}\n", tail(node)));
        }
        out
    }
}

/// Whether every server of every backend in an L7 node's stats JSON is UP.
fn backends_up(stats: &Value) -> bool {
    let backends: Vec<&Value> = stats["proxies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["kind"] == "backend")
        .collect();
    !backends.is_empty()
        && backends.iter().all(|b| {
            b["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["svname"] != "BACKEND")
                .all(|r| r["status"] == "UP")
        })
}

/// The resident set of process `pid` in KiB (`VmRSS` of `/proc/PID/status`), `None` when it
/// is gone.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Drop for Seed004 {
    fn drop(&mut self) {
        // Origins first: their tasks must not outlive the namespaces they serve in. The rest
        // goes in field order (processes, namespaces, mounts, the directory).
        self.origins.clear();
    }
}
