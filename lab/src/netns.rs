//! A network lab for the integration tests: named network namespaces joined by veth pairs or by
//! a bridge whose ports can be cut and healed, each torn down, with every process inside it, on
//! drop (so also when a test panics).
//!
//! Needs root and iproute2; tests ask [`can_use_netns`] first and skip with a message otherwise
//! (in CI, where `CI` is set and tests run as root, that is a failure instead).

use std::{
    net::IpAddr,
    process::{Child, Command, Output, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

/// A named network namespace (`ip netns add`) with `lo` up, deleted on drop after every process
/// in it is killed.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `fc-{tag}-{pid}-{n}`: unique across the parallel test processes of a run and
    /// across calls in one process.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "fc-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        // From here on, drop removes the namespace even if the next step fails.
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` as a command run inside the namespace (`ip netns exec NAME program`).
    pub fn cmd(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `args` (program first) inside the namespace to the end, whatever its exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        let (program, rest) = args.split_first().expect("a program to run");
        self.cmd(program).args(rest).output().unwrap()
    }

    /// Starts `args` (program first) inside the namespace. The namespace's drop kills it (and
    /// anything it started) if it still runs by then.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let (program, rest) = args.split_first().expect("a program to run");
        self.cmd(program)
            .args(rest)
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Runs `f` on a thread of its own that has joined the namespace, and returns its result.
    /// Sockets `f` creates stay in the namespace when the thread ends, so a listener bound here
    /// serves the namespace's addresses from any thread or runtime afterwards (accepted
    /// connections belong to the listener's namespace): how in-process servers (origins, an
    /// alert receiver) join a lab without a process of their own. A panic in `f` is re-raised.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        // Only this thread moves: setns(2) with CLONE_NEWNET changes the calling thread alone,
        // and `ip netns pids` (which the drop kills) looks at each process's main thread.
        let handle = std::fs::File::open(format!("/run/netns/{}", self.name)).unwrap();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    nix::sched::setns(&handle, nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("setns into the lab namespace (needs root)");
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs `ip -n NAME ARGS...`, failing the test on error.
    pub fn ip(&self, args: &[&str]) {
        run(Command::new("ip").args(["-n", &self.name]).args(args));
    }

    /// The addresses on `ifname` (IPv4 and IPv6, link-local included), in the kernel's order.
    pub fn addresses(&self, ifname: &str) -> Vec<IpAddr> {
        let out =
            run(Command::new("ip").args(["-n", &self.name, "-j", "addr", "show", "dev", ifname]));
        let links: Value = serde_json::from_slice(&out.stdout).unwrap();
        links
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|link| link["addr_info"].as_array().into_iter().flatten())
            .filter_map(|a| a["local"].as_str()?.parse().ok())
            .collect()
    }

    /// Whether `addr` is on `ifname`.
    pub fn has_address(&self, ifname: &str, addr: IpAddr) -> bool {
        self.addresses(ifname).contains(&addr)
    }

    /// Sets `ifname` administratively up or down.
    pub fn link_set(&self, ifname: &str, up: bool) {
        self.ip(&["link", "set", ifname, if up { "up" } else { "down" }]);
    }

    /// Whether `addr` answers a TCP connection attempt on port 9 (discard) from here within
    /// `timeout`: an accept or a refusal (RST) both prove two-way IP reachability. Uses bash's
    /// `/dev/tcp`, since `ping` is not on a minimal Debian.
    pub fn reachable(&self, addr: IpAddr, timeout: Duration) -> bool {
        let out = self.tcp_connect(addr, 9, timeout);
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("Connection refused")
    }

    /// Whether a TCP connection to `addr`:`port` from here is accepted within `timeout` (a
    /// refusal is not enough: something must listen there).
    pub fn accepts(&self, addr: IpAddr, port: u16, timeout: Duration) -> bool {
        self.tcp_connect(addr, port, timeout).status.success()
    }

    /// A TCP connection attempt to `addr`:`port` from here with bash's `/dev/tcp`, given up
    /// after `timeout`.
    fn tcp_connect(&self, addr: IpAddr, port: u16, timeout: Duration) -> Output {
        self.cmd("timeout")
            .arg(format!("{}", timeout.as_secs_f64()))
            .args(["bash", "-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")])
            .output()
            .unwrap()
    }

    /// The ids of the processes in the namespace.
    fn pids(&self) -> Vec<String> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Everything in the namespace was started by this test (through `cmd`, `spawn` or a
        // helper built on them), including the children a daemon forked. A namespace with
        // processes left would outlive `ip netns del`, with its interfaces.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Joins `a` and `b` with a veth pair: `a_if` in `a` with `a_addr` (CIDR), `b_if` in `b` with
/// `b_addr`, both up. The pair is created straight into the two namespaces, so its names never
/// exist in the root namespace and may repeat across namespaces (`eth0` everywhere).
pub fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    run(Command::new("ip").args([
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]));
    for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        ns.ip(&["addr", "add", addr, "dev", ifname]);
        ns.link_set(ifname, true);
    }
}

/// A namespace holding the Linux bridge `br0`, a switch the nodes of a lab hang off. Multicast
/// snooping is off, so VRRP adverts (224.0.0.18) reach every port.
#[derive(Debug)]
pub struct Bridge {
    ns: Netns,
    /// (node namespace, bridge-side port) for each attachment.
    ports: Mutex<Vec<(String, String)>>,
}

impl Bridge {
    pub fn new() -> Self {
        let ns = Netns::new("br");
        ns.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ns.link_set("br0", true);
        Self {
            ns,
            ports: Mutex::new(Vec::new()),
        }
    }

    /// The namespace the bridge lives in.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Plugs `node` into the bridge: `node_if` in `node` with `cidr`, up.
    pub fn attach(&self, node: &Netns, node_if: &str, cidr: &str) {
        let mut ports = self.ports.lock().unwrap();
        let port = format!("p{}", ports.len());
        run(Command::new("ip").args([
            "link",
            "add",
            &port,
            "netns",
            &self.ns.name,
            "type",
            "veth",
            "peer",
            "name",
            node_if,
            "netns",
            &node.name,
        ]));
        self.ns.ip(&["link", "set", &port, "master", "br0"]);
        self.ns.link_set(&port, true);
        node.ip(&["addr", "add", cidr, "dev", node_if]);
        node.link_set(node_if, true);
        ports.push((node.name.clone(), port));
    }

    /// Unplugs `node`: its bridge-side ports go down, so its interfaces lose carrier.
    pub fn cut(&self, node: &Netns) {
        self.set_ports(node, false);
    }

    /// Plugs `node` back in after [`Bridge::cut`].
    pub fn heal(&self, node: &Netns) {
        self.set_ports(node, true);
    }

    /// Partitions `node` (`forwarding` false) or joins it again, with its carrier up all along,
    /// unlike [`Bridge::cut`]: its ports stop forwarding (bridge port state 0, disabled) or
    /// forward again (state 3). With STP off, a port may be set to any state.
    pub fn set_forwarding(&self, node: &Netns, forwarding: bool) {
        let state = if forwarding { "3" } else { "0" };
        for port in self.ports_of(node) {
            let out = self
                .ns
                .exec(&["bridge", "link", "set", "dev", &port, "state", state]);
            assert!(out.status.success(), "{out:?}");
        }
    }

    fn set_ports(&self, node: &Netns, up: bool) {
        for port in self.ports_of(node) {
            self.ns.link_set(&port, up);
        }
    }

    /// The bridge-side ports of `node`'s attachments.
    fn ports_of(&self, node: &Netns) -> Vec<String> {
        let ports = self.ports.lock().unwrap();
        let mine: Vec<String> = ports
            .iter()
            .filter(|(ns, _)| *ns == node.name)
            .map(|(_, port)| port.clone())
            .collect();
        assert!(
            !mine.is_empty(),
            "{} is not attached to the bridge",
            node.name
        );
        mine
    }
}

impl Default for Bridge {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether this process may create network namespaces: root and iproute2. Prints why a test
/// skips; in CI (`CI` set), where tests run as root, not being able to is a failure.
pub fn can_use_netns() -> bool {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !(root && ip) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with iproute2: this test must run there"
        );
        eprintln!("skipped: needs root and iproute2 to create network namespaces");
    }
    root && ip
}

/// Polls `condition` every `poll` until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, poll: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(poll);
    }
}

/// Runs `command` to the end, failing the test with its stderr if it fails.
fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
