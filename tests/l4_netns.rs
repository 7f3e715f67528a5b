//! The L4 tier across real network hops: a client, the load balancer and a real server each in
//! its own network namespace, joined by veth pairs, as an LVS-NAT site is wired.
//!
//! Needs root (namespaces, addresses, routing rules) and iproute2; skips with a message
//! otherwise, and fails in CI (`CI` set) where it must run.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use support::{
    Fulcrum, PATIENCE, message,
    netns::{Netns, can_use_netns, veth},
};

/// Three namespaces, client - lb - server, removed on drop:
///
/// ```text
/// client 10.77.1.2 --- 10.77.1.1 lb 10.77.2.1 --- 10.77.2.2 server
/// ```
///
/// The client and server route everything through the lb, as LVS-NAT real servers must.
struct Site {
    client: Netns,
    lb: Netns,
    server: Netns,
}

impl Site {
    fn new() -> Self {
        let site = Self {
            client: Netns::new("c"),
            lb: Netns::new("l"),
            server: Netns::new("s"),
        };
        veth(
            &site.client,
            "eth0",
            "10.77.1.2/24",
            &site.lb,
            "to-client",
            "10.77.1.1/24",
        );
        veth(
            &site.lb,
            "to-server",
            "10.77.2.1/24",
            &site.server,
            "eth0",
            "10.77.2.2/24",
        );
        site.client
            .ip(&["route", "add", "default", "via", "10.77.1.1"]);
        site.server
            .ip(&["route", "add", "default", "via", "10.77.2.1"]);
        // The routing docs/config.md gives for transparent mode: what comes back from the real
        // servers is delivered locally, to the sockets bound to client addresses.
        site.lb
            .ip(&["rule", "add", "iif", "to-server", "lookup", "100"]);
        site.lb.ip(&[
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

    fn exec(ns: &Netns) -> [&str; 4] {
        ["ip", "netns", "exec", ns.name()]
    }
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
        let out = site
            .client
            .cmd("curl")
            .args(["-sS", "--max-time"])
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
