//! `[nrpe]` end to end: Debian's `check_nrpe` asks a running `fulcrum` for each built-in check
//! and an external plugin, and reads the answers a Nagios server would: the exit code and the
//! plugin's first line. The appliance checks see the appliance's real state (a backend with a
//! dead server, a volume without its peer, a sync set without its peer, a VRRP instance whose
//! link is down).
//!
//! Needs check_nrpe (nagios-nrpe-plugin) and check_users (monitoring-plugins-basic); the VRRP
//! test also needs root and iproute2. Each skips with a message without them, and fails in CI
//! (`CI` set), where `.ci/run` installs them.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use support::{
    Fulcrum, PATIENCE, dead_addr, free_addr,
    netns::{Netns, can_use_netns, veth, wait_until},
    origin, vrrp,
};

const CHECK_NRPE: &str = "/usr/lib/nagios/plugins/check_nrpe";
const CHECK_USERS: &str = "/usr/lib/nagios/plugins/check_users";

#[tokio::test(flavor = "multi_thread")]
async fn check_nrpe_runs_every_builtin_check_and_an_external_plugin() {
    if !support::require_tool(CHECK_NRPE) || !support::require_tool(CHECK_USERS) {
        return;
    }
    let s1 = origin("s1").await;
    let web = s1.addr();
    let nrpe = free_addr();
    let dead = dead_addr();
    let refused = format!("TCP CRITICAL - connect to address {}", dead.ip());
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    std::fs::create_dir(&uploads).unwrap();
    let commands = [
        (
            "load",
            "builtin load -w 1000,1000,1000 -c 2000,2000,2000".to_owned(),
        ),
        (
            "load_r",
            "builtin load -r -w 0,0,0 -c 1000,1000,1000".to_owned(),
        ),
        ("disk", "builtin disk -w 0% -c 0% -p /".to_owned()),
        ("disk_full", "builtin disk -w 100% -c 100% -p /".to_owned()),
        ("swap", "builtin swap -w 0% -c 0% -n ok".to_owned()),
        ("procs", "builtin procs -w 1: -c 1:".to_owned()),
        ("users", "builtin users -w 1000 -c 2000".to_owned()),
        ("tcp", format!("builtin tcp -H 127.0.0.1 -p {}", web.port())),
        (
            "tcp_refused",
            format!("builtin tcp -H {} -p {}", dead.ip(), dead.port()),
        ),
        (
            "http",
            format!("builtin http -H 127.0.0.1 -p {} -u / -s s1", web.port()),
        ),
        (
            "http_miss",
            format!("builtin http -H 127.0.0.1 -p {} -u / -s nosuch", web.port()),
        ),
        ("backends", "builtin backends".to_owned()),
        ("backend_web", "builtin backends -b web".to_owned()),
        ("vrrp", "builtin vrrp".to_owned()),
        ("volume", "builtin volume data".to_owned()),
        ("volume_unknown", "builtin volume nosuch".to_owned()),
        ("sync", "builtin sync uploads".to_owned()),
        ("external", format!("{CHECK_USERS} -w 1000 -c 2000")),
    ];
    let command_lines: String = commands
        .iter()
        .map(|(name, line)| format!("check_{name} = \"{line}\"\n"))
        .collect();
    let (volume_addr, volume_peer, sync_addr, sync_peer) =
        (free_addr(), free_addr(), free_addr(), free_addr());
    let fulcrum = Fulcrum::start(&format!(
        "[frontend.main]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"web\"\n\n\
         [backend.web]\nhealth_check = {{ type = \"tcp\", interval = \"100ms\", timeout = \"100ms\" }}\n\
         servers = [{{ name = \"s1\", address = \"{web}\" }}]\n\n\
         [backend.dead]\nhealth_check = {{ type = \"tcp\", interval = \"100ms\", timeout = \"100ms\", fall = 1 }}\n\
         servers = [{{ name = \"gone\", address = \"{}\" }}]\n\n\
         [volume.data]\nbacking = \"data.img\"\nsize = \"16MiB\"\nlisten = \"{volume_addr}\"\n\
         peer = \"{volume_peer}\"\nshared_secret = \"s3cret\"\nrole = \"primary\"\n\n\
         [sync.uploads]\npath = \"{}\"\nlisten = \"{sync_addr}\"\npeers = [\"{sync_peer}\"]\n\
         shared_secret = \"s3cret\"\n\n\
         [nrpe]\nlisten = \"{nrpe}\"\n\n[nrpe.command]\n{command_lines}",
        dead_addr(),
        uploads.display(),
    ));
    // The dead backend's one check has failed once the agent reports it.
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || check(
            nrpe,
            "check_backends"
        )
        .0 == 2),
        "the dead backend never showed: {:?}",
        check(nrpe, "check_backends")
    );

    // `check_load_r` warns above a scaled load of 0: an idle machine has none to show.
    until_the_load_average_is_above_zero();
    let expected = [
        ("check_load", 0, "LOAD OK - total load average: "),
        ("check_load_r", 1, "LOAD WARNING - scaled load average: "),
        ("check_disk", 0, "DISK OK - free space: / "),
        ("check_disk_full", 2, "DISK CRITICAL - free space: / "),
        ("check_swap", 0, "SWAP OK - "),
        ("check_procs", 0, "PROCS OK: "),
        ("check_users", 0, "USERS OK - "),
        ("check_tcp", 0, "TCP OK - "),
        ("check_tcp_refused", 2, refused.as_str()),
        ("check_http", 0, "HTTP OK: HTTP/1.1 200 OK - "),
        (
            "check_http_miss",
            2,
            "HTTP CRITICAL: HTTP/1.1 200 OK - string 'nosuch' not found",
        ),
        ("check_backends", 2, "BACKENDS CRITICAL - "),
        ("check_backend_web", 0, "BACKENDS OK - "),
        ("check_vrrp", 3, "VRRP UNKNOWN - "),
        (
            "check_volume",
            2,
            "VOLUME CRITICAL - data: Primary, WFConnection",
        ),
        ("check_volume_unknown", 3, "VOLUME UNKNOWN - "),
        ("check_sync", 2, "SYNC CRITICAL - uploads: connecting"),
        ("check_external", 0, "USERS OK - "),
    ];
    for (command, code, start) in expected {
        let (got, text) = check(nrpe, command);
        assert!(
            got == code && text.starts_with(start),
            "{command}: exit {got}, {text:?}; expected exit {code}, {start:?}..."
        );
        // A measured answer carries perfdata after `|`, as a Nagios graph needs (a refused
        // connection or a missing object has nothing to measure, as with the real plugins).
        if !["check_vrrp", "check_volume_unknown", "check_tcp_refused"].contains(&command) {
            assert!(text.contains('|'), "{command}: no perfdata in {text:?}");
        }
    }
    // The external plugin's text is passed through as it printed it.
    let plugin = Command::new(CHECK_USERS)
        .args(["-w", "1000", "-c", "2000"])
        .output()
        .unwrap();
    assert_eq!(
        check(nrpe, "check_external").1,
        String::from_utf8_lossy(&plugin.stdout).trim_end()
    );
    drop(fulcrum);
}

/// keepalived's FAULT, as a Nagios server sees it: the instance's interface goes down and
/// `builtin vrrp` turns CRITICAL; back up, the instance is BACKUP then MASTER and OK again.
#[test]
fn the_vrrp_check_is_critical_while_an_instance_is_in_fault() {
    if !can_use_netns() || !support::require_tool(CHECK_NRPE) {
        return;
    }
    let a = Netns::new("nrpe-a");
    let b = Netns::new("nrpe-b");
    veth(&a, "eth0", "10.62.0.1/24", &b, "eth0", "10.62.0.2/24");
    let _fulcrum = vrrp::start_fulcrum(
        &a,
        &format!(
            "{}\n[nrpe]\nlisten = \"127.0.0.1:5666\"\n[nrpe.command]\ncheck_vrrp = \"builtin vrrp\"\n",
            vrrp::fulcrum_vrrp(2, &[vrrp::instance("VI_1", 62, 100, "10.62.0.100", "")])
        ),
    );
    let in_a = |command: &str| {
        let out = a
            .cmd(CHECK_NRPE)
            .args(["-n", "-H", "127.0.0.1", "-c", command])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
        )
    };
    assert!(
        vrrp::wait_vip(&a, "10.62.0.100", true, PATIENCE),
        "A never became MASTER"
    );
    // The VIP comes up just before the instance publishes MASTER.
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || {
            let (code, text) = in_a("check_vrrp");
            code == 0 && text.starts_with("VRRP OK - VI_1 MASTER")
        }),
        "the check never saw MASTER: {:?}",
        in_a("check_vrrp")
    );

    a.link_set("eth0", false);
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || in_a("check_vrrp").0
            == 2),
        "the check never saw the FAULT: {:?}",
        in_a("check_vrrp")
    );
    assert!(
        in_a("check_vrrp")
            .1
            .starts_with("VRRP CRITICAL - VI_1 FAULT")
    );

    a.link_set("eth0", true);
    assert!(
        wait_until(PATIENCE, Duration::from_millis(50), || in_a("check_vrrp").0
            == 0),
        "the check never recovered: {:?}",
        in_a("check_vrrp")
    );
}

/// `check_nrpe -n -H 127.0.0.1 -p PORT -c COMMAND`: its exit code and first output line.
fn check(nrpe: SocketAddr, command: &str) -> (i32, String) {
    let out = Command::new(CHECK_NRPE)
        .args([
            "-n",
            "-H",
            &nrpe.ip().to_string(),
            "-p",
            &nrpe.port().to_string(),
        ])
        .args(["-t", "20", "-c", command])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        text.lines().next().unwrap_or("").to_owned(),
    )
}

/// Keeps a thread busy until the kernel's load average (sampled every 5 s) is above 0, if it is
/// not already (a machine idle for minutes shows 0.00).
fn until_the_load_average_is_above_zero() {
    let idle = || {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap();
        text.split_whitespace()
            .take(3)
            .all(|v| v.parse::<f64>().unwrap() == 0.0)
    };
    if !idle() {
        return;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinning = std::sync::Arc::clone(&stop);
    let spinner = std::thread::spawn(move || {
        while !spinning.load(std::sync::atomic::Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while idle() {
        assert!(Instant::now() < deadline, "the load average stays at 0");
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spinner.join().unwrap();
}
