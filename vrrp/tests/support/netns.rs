//! A network namespace of the test's own, with a veth pair to run the kernel-facing code against.
//!
//! Each test unshares its thread into a new network namespace before building its runtime, so
//! the runtime, the netlink sockets and the `ip` commands all live there; the namespace goes
//! away with the test process (nextest runs each test in a process of its own).

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use fulcrum_vrrp::net::Link;
use nix::sched::{CloneFlags, unshare};

/// How long a test waits for the kernel before failing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

/// Moves this thread into a new network namespace and builds the test's runtime there; `None`,
/// after saying so, when that needs privileges the test does not have.
pub(crate) fn enter() -> Option<tokio::runtime::Runtime> {
    if unshare(CloneFlags::CLONE_NEWNET).is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("skipped: needs root to create a network namespace");
        return None;
    }
    // Addresses are usable at once instead of after a second of duplicate address detection.
    for conf in ["all", "default"] {
        sysctl(&format!("net/ipv6/conf/{conf}/accept_dad"), "0");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    Some(runtime)
}

/// [`enter`], then [`veth_pair`]: the namespace every test starts from.
pub(crate) fn enter_with_veth_pair() -> Option<tokio::runtime::Runtime> {
    let runtime = enter()?;
    veth_pair();
    Some(runtime)
}

/// `lo` up, and the veth pair `va` (10.0.0.1/24) <-> `vb` (10.0.0.2/24), both up. Without
/// duplicate address detection in the namespace: a link-local address is tentative for about
/// a second otherwise, and an IPv6 advert sent from it in that time fails (EINVAL).
fn veth_pair() {
    // The calling thread is in the test's namespace: /proc/sys/net is that namespace's.
    std::fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0").expect("accept_dad");
    ip(&["link", "set", "lo", "up"]);
    ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    ip(&["addr", "add", "10.0.0.1/24", "dev", "va"]);
    ip(&["addr", "add", "10.0.0.2/24", "dev", "vb"]);
    ip(&["link", "set", "va", "up"]);
    ip(&["link", "set", "vb", "up"]);
}

/// Moves `vb` into a network namespace of its own, as a peer router's interface would be, gives
/// it 10.0.0.2/24 there and runs `body` in that namespace (on a thread of its own): sockets it
/// opens are on the far side of the link.
///
/// Needed for IPv4 between `va` and `vb`: within one namespace the kernel delivers a packet to
/// 10.0.0.2 through `lo`, not the veth, and drops one arriving with a local source address
/// (10.0.0.1) as martian. The namespace lives as long as a socket opened in it.
pub(crate) fn beyond_vb<T: Send>(body: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (moved_tx, moved_rx) = mpsc::channel();
        let peer = scope.spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).expect("a peer network namespace");
            tid_tx.send(thread_id()).expect("test thread waits");
            moved_rx.recv().expect("vb moved");
            ip(&["link", "set", "lo", "up"]);
            ip(&["addr", "add", "10.0.0.2/24", "dev", "vb"]);
            ip(&["link", "set", "vb", "up"]);
            body()
        });
        let tid = tid_rx.recv().expect("peer thread started");
        // `ip` takes a thread id for a pid: the namespace is the thread's.
        ip(&["link", "set", "vb", "netns", &tid]);
        moved_tx.send(()).expect("peer thread waits");
        peer.join().expect("peer thread")
    })
}

/// This thread's id, as `/proc/thread-self` names it (`<pid>/task/<tid>`).
fn thread_id() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name()
        .and_then(|tid| tid.to_str())
        .expect("a thread id")
        .to_owned()
}

/// The interface `name` of this thread's namespace, read with `ip` (for threads without a
/// runtime of their own to ask rtnetlink from).
pub(crate) fn link(name: &str) -> Link {
    let (index, mac) = index_and_mac(name);
    Link {
        name: name.to_owned(),
        index,
        mac: Some(mac),
        up: true,
    }
}

/// Waits until `name` has a link-local IPv6 address that is no longer tentative. Even without
/// duplicate address detection the kernel adds the address tentative and clears the flag from
/// a work queue a moment later; sending from it before then fails (EINVAL).
pub(crate) fn wait_for_link_local(name: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let shown = ip(&["-6", "-o", "addr", "show", "dev", name, "scope", "link"]);
        if shown.lines().any(|line| !line.contains("tentative")) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} has no usable link-local address: {shown}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `ip args...` and returns its output; panics with its stderr if it fails.
pub(crate) fn ip(args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("the ip command runs");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes a sysctl of this namespace (`/proc/sys/net` is the opening thread's namespace's).
pub(crate) fn sysctl(name: &str, value: &str) {
    std::fs::write(format!("/proc/sys/{name}"), value).expect("sysctl written");
}

/// The interface's index and MAC as `ip -o link` prints them.
pub(crate) fn index_and_mac(name: &str) -> (u32, [u8; 6]) {
    let line = ip(&["-o", "link", "show", "dev", name]);
    let index = line
        .split(':')
        .next()
        .and_then(|index| index.trim().parse().ok())
        .expect("an index");
    let mac = line
        .split_whitespace()
        .skip_while(|word| *word != "link/ether")
        .nth(1)
        .expect("a MAC");
    let mut bytes = [0u8; 6];
    for (byte, hex) in bytes.iter_mut().zip(mac.split(':')) {
        *byte = u8::from_str_radix(hex, 16).expect("hex");
    }
    (index, bytes)
}
