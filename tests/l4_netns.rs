//! The L4 tier across real network hops: a client, the load balancer and a real server each in
//! its own network namespace, joined by veth pairs, as an LVS-NAT site is wired.
//!
//! Needs root (namespaces, addresses, routing rules) and iproute2; skips with a message
//! otherwise, and fails in CI (`CI` set) where it must run.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::process::Command;

use support::{Fulcrum, PATIENCE, message};

/// Runs `ip ARGS...`, failing the test on error.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this process may create network namespaces.
fn can_use_netns() -> bool {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let tools = support::require_tool("ip");
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: this test must run there"
        );
        eprintln!("SKIPPED: needs root for network namespaces");
    }
    root && tools
}

/// Three namespaces, client - lb - server, removed on drop:
///
/// ```text
/// client 10.77.1.2 --- 10.77.1.1 lb 10.77.2.1 --- 10.77.2.2 server
/// ```
///
/// The client and server route everything through the lb, as LVS-NAT real servers must.
struct Site {
    client: String,
    lb: String,
    server: String,
}

impl Site {
    fn new() -> Self {
        // veth names are limited to 15 bytes: a short random tag keeps parallel runs apart.
        let tag = format!("{:05x}", fastrand_tag());
        let site = Self {
            client: format!("fl-c-{tag}"),
            lb: format!("fl-l-{tag}"),
            server: format!("fl-s-{tag}"),
        };
        for ns in [&site.client, &site.lb, &site.server] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let (vc, vlc, vls, vs) = (
            format!("c{tag}"),
            format!("lc{tag}"),
            format!("ls{tag}"),
            format!("s{tag}"),
        );
        ip(&[
            "link",
            "add",
            &vc,
            "netns",
            &site.client,
            "type",
            "veth",
            "peer",
            "name",
            &vlc,
            "netns",
            &site.lb,
        ]);
        ip(&[
            "link",
            "add",
            &vs,
            "netns",
            &site.server,
            "type",
            "veth",
            "peer",
            "name",
            &vls,
            "netns",
            &site.lb,
        ]);
        for (ns, dev, addr) in [
            (&site.client, &vc, "10.77.1.2/24"),
            (&site.lb, &vlc, "10.77.1.1/24"),
            (&site.lb, &vls, "10.77.2.1/24"),
            (&site.server, &vs, "10.77.2.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&[
            "-n",
            &site.client,
            "route",
            "add",
            "default",
            "via",
            "10.77.1.1",
        ]);
        ip(&[
            "-n",
            &site.server,
            "route",
            "add",
            "default",
            "via",
            "10.77.2.1",
        ]);
        // The routing docs/config.md gives for transparent mode: what comes back from the real
        // servers is delivered locally, to the sockets bound to client addresses.
        ip(&["-n", &site.lb, "rule", "add", "iif", &vls, "lookup", "100"]);
        ip(&[
            "-n",
            &site.lb,
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            "100",
        ]);
        site
    }

    fn exec(ns: &str) -> [&str; 4] {
        ["ip", "netns", "exec", ns]
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth pair, and with it the pair.
        for ns in [&self.client, &self.lb, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A tag that differs between test processes and between calls.
fn fastrand_tag() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    static N: AtomicU32 = AtomicU32::new(0);
    (std::process::id().wrapping_mul(31) + N.fetch_add(1, Relaxed)) & 0xf_ffff
}

/// The client address the real server logged for its last request.
fn client_seen_by(server: &Fulcrum) -> String {
    let record = server.wait_log(|l| l["target"] == "access" || message(l).contains("GET /"));
    record["client"]
        .as_str()
        .or_else(|| record["fields"]["client"].as_str())
        .unwrap_or_else(|| panic!("no client in {record:#}"))
        .to_owned()
}

#[test]
fn transparent_mode_shows_real_servers_the_client_address_and_nat_mode_does_not() {
    if !can_use_netns() || !support::require_tool("curl") {
        return;
    }
    let site = Site::new();
    let real = Fulcrum::start_wrapped(
        &Site::exec(&site.server),
        r#"
[frontend.echo]
bind = ["10.77.2.2:8080"]
acl.any = "path_beg /"
return = [{ if = "any", status = 200, content_type = "text/plain", body = "real server\n" }]
"#,
    );
    let _lb = Fulcrum::start_wrapped(
        &Site::exec(&site.lb),
        r#"
[virtual_server.transparent]
listen = "10.77.1.1:80"
scheduler = "rr"
transparent = true
real_servers = [{ address = "10.77.2.2:8080" }]

[virtual_server.nat]
listen = "10.77.1.1:81"
scheduler = "rr"
real_servers = [{ address = "10.77.2.2:8080" }]
"#,
    );
    let curl = |port: u16| {
        let url = format!("http://10.77.1.1:{port}/");
        let out = Command::new("ip")
            .args(["netns", "exec", &site.client, "curl", "-sS", "--max-time"])
            .arg(PATIENCE.as_secs().to_string())
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    assert_eq!(curl(80), "real server\n");
    let seen = client_seen_by(&real);
    assert!(
        seen.starts_with("10.77.1.2:"),
        "transparent: the real server sees the client, got {seen}"
    );

    let before = real.log_len();
    assert_eq!(curl(81), "real server\n");
    let record = real.wait_log_from(before, |l| l["target"] == "access");
    let seen = record["client"].as_str().unwrap_or_default();
    assert!(
        seen.starts_with("10.77.2.1:"),
        "without transparent the real server sees the load balancer, got {seen}"
    );
}
