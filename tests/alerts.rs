//! `[alert]` end to end: a running `fulcrum` turns its modules' events into alerts. A server
//! that goes DOWN and comes back fires and resolves an Alertmanager alert and runs the alert
//! command; a VRRP instance (in network namespaces) that becomes MASTER, then stops, mails
//! keepalived's subjects to a real SMTP server (Debian's aiosmtpd) while a webhook receiver
//! that never answers holds its connection open; so does a `[vrrp]` a reload adds, then
//! removes.
//!
//! The VRRP test needs root, iproute2 and aiosmtpd (python3-aiosmtpd); it skips with a message
//! without them, and fails in CI (`CI` set), where `.ci/run` installs them.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use fulcrum_lab::alerts::AlertReceiver;
use serde_json::Value;
use support::{
    Fulcrum, PATIENCE, free_addr,
    netns::{Netns, can_use_netns, veth, wait_until},
    vrrp,
};

const POLL: Duration = Duration::from_millis(50);

#[tokio::test(flavor = "multi_thread")]
async fn a_server_down_then_up_fires_then_resolves_and_runs_the_command() {
    let listen = free_addr();
    let s1 = origin(listen).await;
    let receiver = AlertReceiver::on_host(([127, 0, 0, 1], 0).into());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sms.sh");
    let texts = dir.path().join("texts");
    std::fs::write(&script, format!("#!/bin/sh\ncat >> {}\n", texts.display())).unwrap();
    make_executable(&script);
    let fulcrum = Fulcrum::start(&format!(
        "[frontend.main]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"web\"\n\n\
         [backend.web]\nhealth_check = {{ type = \"tcp\", interval = \"100ms\", timeout = \"100ms\", rise = 1, fall = 1 }}\n\
         servers = [{{ name = \"s1\", address = \"{listen}\" }}]\n\n\
         [alert]\nevents = [\"server\"]\n\
         webhooks = [{{ url = \"{}\", format = \"alertmanager\" }}]\n\
         command = \"{}\"\n",
        receiver.url(),
        script.display()
    ));

    // The support harness names each node after its temp dir.
    let node = node_name(&fulcrum);
    s1.stop().await;
    let firing = receiver
        .wait(PATIENCE, |a| {
            a["labels"]["alertname"] == "FulcrumServerDown"
        })
        .expect("no FulcrumServerDown alert");
    assert_eq!(firing["labels"]["proxy"], "web", "{firing}");
    assert_eq!(firing["labels"]["server"], "s1");
    assert_eq!(firing["labels"]["instance"], node.as_str());
    let subject = format!(
        "[{node}] Realserver [{}]:tcp:{} of virtual server web - DOWN",
        listen.ip(),
        listen.port()
    );
    assert!(
        wait_until(PATIENCE, POLL, || read(&texts).contains(&subject)),
        "the command never got the DOWN text: {}",
        read(&texts)
    );

    let _back = origin(listen).await;
    let resolved = receiver
        .wait(PATIENCE, |a| {
            a["labels"]["alertname"] == "FulcrumServerDown" && ended(a)
        })
        .expect("the DOWN alert was never resolved");
    assert_eq!(
        resolved["labels"], firing["labels"],
        "a resolution must carry the firing alert's labels"
    );
    assert_eq!(resolved["startsAt"], firing["startsAt"]);
    assert!(
        wait_until(PATIENCE, POLL, || read(&texts).contains("- UP")),
        "the command never got the UP text: {}",
        read(&texts)
    );
    drop(fulcrum);
}

// Input: a server that is down from the start, checked every 100 ms. Output: its DOWN is
// alerted. (The alerts followed the proxy from their own start, after the rest of the
// appliance: a first failed check before then was never alerted, as CI once showed.)
#[tokio::test(flavor = "multi_thread")]
async fn a_server_down_from_the_start_is_alerted() {
    let receiver = AlertReceiver::on_host(([127, 0, 0, 1], 0).into());
    let _fulcrum = Fulcrum::start(&format!(
        "[frontend.main]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"web\"\n\n\
         [backend.web]\nhealth_check = {{ type = \"tcp\", interval = \"100ms\", timeout = \"100ms\", rise = 1, fall = 1 }}\n\
         servers = [{{ name = \"s1\", address = \"{}\" }}]\n\n\
         [alert]\nevents = [\"server\"]\n\
         webhooks = [{{ url = \"{}\", format = \"alertmanager\" }}]\n",
        support::dead_addr(),
        receiver.url()
    ));
    let firing = receiver
        .wait(PATIENCE, |a| {
            a["labels"]["alertname"] == "FulcrumServerDown"
        })
        .expect("no FulcrumServerDown alert");
    assert_eq!(firing["labels"]["server"], "s1", "{firing}");
}

// Input: a server DOWN with its Alertmanager alert firing, then a reload that removes the
// server. Output: the alert is resolved, with the firing alert's labels. (It stayed firing,
// sent again at every resend, until Fulcrum restarted.)
#[tokio::test(flavor = "multi_thread")]
async fn a_down_server_a_reload_removes_has_its_alert_resolved() {
    let s2 = origin(free_addr()).await;
    // Up at first, and stopped once Fulcrum runs: a server already down at start may fail its
    // first check before the alerts follow the proxy.
    let s1_addr = free_addr();
    let s1 = origin(s1_addr).await;
    let receiver = AlertReceiver::on_host(([127, 0, 0, 1], 0).into());
    let config = |servers: &str| {
        format!(
            "[frontend.main]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"web\"\n\n\
             [backend.web]\nhealth_check = {{ type = \"tcp\", interval = \"100ms\", timeout = \"100ms\", rise = 1, fall = 1 }}\n\
             servers = [{servers}]\n\n\
             [alert]\nevents = [\"server\"]\n\
             webhooks = [{{ url = \"{}\", format = \"alertmanager\" }}]\n",
            receiver.url()
        )
    };
    let s2_entry = format!("{{ name = \"s2\", address = \"{}\" }}", s2.addr());
    let both = format!("{{ name = \"s1\", address = \"{s1_addr}\" }}, {s2_entry}");
    let fulcrum = Fulcrum::start(&config(&both));
    s1.stop().await;
    let firing = receiver
        .wait(PATIENCE, |a| {
            a["labels"]["alertname"] == "FulcrumServerDown" && a["labels"]["server"] == "s1"
        })
        .expect("no FulcrumServerDown alert for s1");
    fulcrum.write_config(&config(&s2_entry));
    assert!(fulcrum.reload());
    let resolved = receiver
        .wait(PATIENCE, |a| {
            a["labels"]["alertname"] == "FulcrumServerDown"
                && a["labels"]["server"] == "s1"
                && ended(a)
        })
        .expect("the removed server's alert was never resolved");
    assert_eq!(resolved["labels"], firing["labels"]);
}

/// VRRP in a namespace pair: node A alone on its link becomes MASTER of VI_1, and mails it with
/// keepalived's subject while its other alert sink, a webhook whose receiver accepts and never
/// answers, hangs; a SIGTERM mails the instance's "Stopping" before the process exits.
#[test]
fn a_vrrp_transition_is_mailed_in_keepalived_shape_while_a_webhook_hangs() {
    if !can_use_netns() || !require_aiosmtpd() {
        return;
    }
    let a = Netns::new("alert-a");
    let b = Netns::new("alert-b");
    veth(&a, "eth0", "10.61.0.1/24", &b, "eth0", "10.61.0.2/24");
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let _smtp = smtp(&a, &maildir);
    // Accepts connections (the kernel's backlog does) and never reads or answers them.
    let _hang = KillOnDrop(
        a.cmd("/usr/bin/python3")
            .args([
                "-c",
                "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', 9093))\ns.listen()\ntime.sleep(3600)",
            ])
            .spawn()
            .unwrap(),
    );
    let mut fulcrum = vrrp::start_fulcrum(
        &a,
        &format!(
            "{}\n\
             [alert]\nevents = [\"vrrp\"]\n\
             email = {{ smtp = \"127.0.0.1:2525\", from = \"fulcrum@example.com\", to = [\"ops@example.com\"] }}\n\
             webhooks = [{{ url = \"http://127.0.0.1:9093/api/v2/alerts\", format = \"alertmanager\", timeout = \"60s\" }}]\n",
            vrrp::fulcrum_vrrp(2, &[vrrp::instance("VI_1", 61, 100, "10.61.0.100", "")])
        ),
    );

    let node = node_name(&fulcrum);
    assert!(
        vrrp::wait_vip(&a, "10.61.0.100", true, PATIENCE),
        "A never became MASTER"
    );
    let mail = wait_mail(&maildir, "Entering MASTER state");
    assert!(
        mail.contains(&format!(
            "Subject: [{node}] VRRP Instance VI_1 - Entering MASTER state\n"
        )),
        "{mail}"
    );
    assert!(
        mail.contains("=> VRRP Instance is now owning VRRP VIPs <="),
        "{mail}"
    );
    assert!(mail.contains("From: fulcrum@example.com"), "{mail}");
    assert!(mail.contains("To: ops@example.com"), "{mail}");

    fulcrum.signal(libc::SIGTERM);
    assert!(fulcrum.wait_exit().success());
    let mail = wait_mail(&maildir, "Stopping");
    assert!(
        mail.contains(&format!(
            "Subject: [{node}] VRRP Instance VI_1 - Stopping\n"
        )),
        "{mail}"
    );
}

/// An origin named s1 on `listen`, so it can come back on the same address.
// Input: an address owner (priority 255), MASTER the moment it starts, with mail alerts.
// Output: its "Entering MASTER state" is mailed. (The alerts subscribed to VRRP after the
// volumes and syncs had started, and missed it.)
#[test]
fn an_owners_first_master_is_mailed() {
    if !can_use_netns() || !require_aiosmtpd() {
        return;
    }
    let a = Netns::new("alert-o");
    let b = Netns::new("alert-p");
    veth(&a, "eth0", "10.62.0.1/24", &b, "eth0", "10.62.0.2/24");
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let _smtp = smtp(&a, &maildir);
    let _fulcrum = vrrp::start_fulcrum(
        &a,
        &format!(
            "{}\n\
             [alert]\nevents = [\"vrrp\"]\n\
             email = {{ smtp = \"127.0.0.1:2525\", from = \"fulcrum@example.com\", to = [\"ops@example.com\"] }}\n",
            vrrp::fulcrum_vrrp(2, &[vrrp::instance("VI_1", 62, 255, "10.62.0.100", "")])
        ),
    );
    let mail = wait_mail(&maildir, "Entering MASTER state");
    assert!(
        mail.contains("VRRP Instance VI_1 - Entering MASTER state"),
        "{mail}"
    );
}

// Input: Fulcrum without `[vrrp]` (mail alerts and an admin server on), reloaded with a
// `[vrrp]` whose instance owns its address (MASTER the moment it starts), then reloaded
// without it. Output: after the first reload the VIP is on, `fulcrum status vrrp` and
// `/metrics` show the instance, and its first MASTER is mailed; after the second the VIP is
// off, the status and `/metrics` show none, and the instance's "Stopping" is mailed (with its
// VIP). Each mail once; one process throughout.
#[test]
fn a_vrrp_added_by_a_reload_starts_and_one_removed_stops() {
    if !can_use_netns() || !require_aiosmtpd() {
        return;
    }
    let a = Netns::new("alert-r");
    let b = Netns::new("alert-s");
    veth(&a, "eth0", "10.63.0.1/24", &b, "eth0", "10.63.0.2/24");
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let _smtp = smtp(&a, &maildir);
    let rest = "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [alert]\nevents = [\"vrrp\"]\n\
         email = { smtp = \"127.0.0.1:2525\", from = \"fulcrum@example.com\", to = [\"ops@example.com\"] }\n";
    let fulcrum = vrrp::start_fulcrum(&a, rest);
    let pid = fulcrum.pid();
    assert_eq!(vrrp::status(&fulcrum), serde_json::json!([]));

    let with_vrrp = format!(
        "{}\n{rest}",
        vrrp::fulcrum_vrrp(2, &[vrrp::instance("VI_1", 63, 255, "10.63.0.100", "")])
    );
    fulcrum.write_config(&with_vrrp);
    assert!(fulcrum.reload());
    assert!(
        vrrp::wait_vip(&a, "10.63.0.100", true, PATIENCE),
        "the added VRRP never took its VIP"
    );
    let mail = wait_mail(&maildir, "Entering MASTER state");
    assert!(
        mail.contains("VRRP Instance VI_1 - Entering MASTER state"),
        "{mail}"
    );
    let now = vrrp::status(&fulcrum);
    assert_eq!(now[0]["name"], "VI_1", "{now:#}");
    assert_eq!(now[0]["state"], "MASTER", "{now:#}");
    let metrics = || {
        let out = a.exec(&[
            "curl",
            "--silent",
            "--max-time",
            "10",
            &format!("http://{}/metrics", fulcrum.admin_addr()),
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = metrics();
    assert!(
        shown.contains("fulcrum_vrrp_state{instance=\"VI_1\",interface=\"eth0\",vrid=\"63\",state=\"MASTER\"} 1"),
        "{shown}"
    );

    fulcrum.write_config(rest);
    assert!(fulcrum.reload());
    assert!(
        vrrp::wait_vip(&a, "10.63.0.100", false, PATIENCE),
        "the removed VRRP kept its VIP"
    );
    let mail = wait_mail(&maildir, "Stopping");
    assert!(mail.contains("VRRP Instance VI_1 - Stopping"), "{mail}");
    assert!(mail.contains("10.63.0.100"), "{mail}");
    fulcrum.wait_log(|l| support::message(l) == "[vrrp] removed: VRRP stopped");
    assert_eq!(vrrp::status(&fulcrum), serde_json::json!([]));
    assert!(!metrics().contains("fulcrum_vrrp_state{"));
    assert_eq!(fulcrum.pid(), pid);
    assert!((fulcrum.logs().iter()).any(|l| support::message(l) == "[vrrp] added: VRRP started"));
    // One feed: each change mailed once.
    std::thread::sleep(Duration::from_millis(500));
    for subject in ["Entering MASTER state", "Stopping"] {
        let sent = mails(&maildir)
            .iter()
            .filter(|m| m.contains(subject))
            .count();
        assert_eq!(sent, 1, "{subject}: {:?}", mails(&maildir));
    }
}

// Input: two address owners VI_1 and VI_2 without `[alert]`; one reload adds `[alert]` (mail)
// and removes VI_2, which rebuilds VRRP. Output: VI_2's "Stopping" is mailed. (The new
// alerter subscribed to VRRP after the rebuild, when VI_2 had already stopped.)
#[test]
fn a_new_alerter_mails_what_the_same_reloads_rebuild_did() {
    if !can_use_netns() || !require_aiosmtpd() {
        return;
    }
    let a = Netns::new("alert-t");
    let b = Netns::new("alert-u");
    veth(&a, "eth0", "10.64.0.1/24", &b, "eth0", "10.64.0.2/24");
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let _smtp = smtp(&a, &maildir);
    let vi_1 = vrrp::instance("VI_1", 64, 255, "10.64.0.100", "");
    let vi_2 = vrrp::instance("VI_2", 65, 255, "10.64.0.102", "");
    let fulcrum = vrrp::start_fulcrum(&a, &vrrp::fulcrum_vrrp(2, &[vi_1.clone(), vi_2]));
    assert!(vrrp::wait_vip(&a, "10.64.0.102", true, PATIENCE));

    fulcrum.write_config(&format!(
        "{}\n[alert]\nevents = [\"vrrp\"]\n\
         email = {{ smtp = \"127.0.0.1:2525\", from = \"fulcrum@example.com\", to = [\"ops@example.com\"] }}\n",
        vrrp::fulcrum_vrrp(2, &[vi_1]),
    ));
    assert!(fulcrum.reload());
    let mail = wait_mail(&maildir, "VRRP Instance VI_2 - Stopping");
    assert!(mail.contains("10.64.0.102"), "{mail}");
}

// Input: an address owner (MASTER at once) with mail alerts, and an admin server whose port
// another program holds, so that the start fails after VRRP has started.
// Output: the process exits with a failure, and the instance's "Stopping" is mailed before it
// does. (The alerts used to stop before VRRP on that path, and its STOP was never sent.)
#[test]
fn a_start_that_fails_after_vrrp_still_mails_its_stop() {
    if !can_use_netns() || !require_aiosmtpd() {
        return;
    }
    let a = Netns::new("alert-v");
    let b = Netns::new("alert-w");
    veth(&a, "eth0", "10.66.0.1/24", &b, "eth0", "10.66.0.2/24");
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let _smtp = smtp(&a, &maildir);
    let _holder = KillOnDrop(a.spawn(&[
        "/usr/bin/python3",
        "-c",
        "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', 8080))\ns.listen()\ntime.sleep(120)",
    ]));
    assert!(
        wait_until(PATIENCE, POLL, || a
            .exec(&["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080"])
            .status
            .success()),
        "the port holder never listened"
    );
    let config = dir.path().join("fulcrum.toml");
    std::fs::write(
        &config,
        format!(
            "[global]\nstate_dir = \"state\"\ncontrol_socket = \"control.sock\"\n\n{}\n\
             [admin]\nlisten = \"127.0.0.1:8080\"\n\n\
             [alert]\nevents = [\"vrrp\"]\n\
             email = {{ smtp = \"127.0.0.1:2525\", from = \"fulcrum@example.com\", to = [\"ops@example.com\"] }}\n",
            vrrp::fulcrum_vrrp(2, &[vrrp::instance("VI_1", 66, 255, "10.66.0.100", "")])
        ),
    )
    .unwrap();
    // The owner is MASTER as soon as its task runs; on a busy machine the admin server may
    // fail before that, leaving nothing to mail: such a run is tried again.
    let mut attempts = 0;
    let log = loop {
        let run = a
            .cmd(env!("CARGO_BIN_EXE_fulcrum"))
            .args(["run", "-c"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(!run.status.success(), "started: {log}");
        assert!(log.contains("cannot start the admin server"), "{log}");
        attempts += 1;
        if log.contains("to=\"MASTER\"") {
            break log;
        }
        assert!(
            attempts < 10,
            "VI_1 was never MASTER before the failure: {log}"
        );
    };
    // The alerter delivers what is queued before the process exits.
    let stopping = mails(&maildir)
        .into_iter()
        .find(|m| m.contains("VRRP Instance VI_1 - Stopping"));
    assert!(
        stopping.is_some(),
        "the stop was not mailed before the exit: {:?}\n{log}",
        mails(&maildir)
    );
    assert!(!a.has_address("eth0", "10.66.0.100".parse().unwrap()));
}

/// Debian's aiosmtpd in `ns`, on 127.0.0.1:2525, keeping the mails it gets in `maildir`; once
/// it listens.
fn smtp(ns: &Netns, maildir: &Path) -> KillOnDrop {
    let server = KillOnDrop(
        ns.cmd("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:2525"])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(PATIENCE, POLL, || ns
            .exec(&["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/2525"])
            .status
            .success()),
        "aiosmtpd never listened"
    );
    server
}

async fn origin(listen: SocketAddr) -> fulcrum_bench::origin::Origin {
    let options = fulcrum_bench::origin::OriginOptions {
        name: "s1".to_owned(),
        ..Default::default()
    };
    fulcrum_bench::origin::start(listen, options).await.unwrap()
}

/// A resolved alert: its `endsAt` is at most a minute after its `startsAt` (a firing one's is
/// four `resend`s, minutes, ahead).
fn ended(alert: &Value) -> bool {
    let seconds = |field: &str| -> Option<i64> {
        // RFC 3339: `2026-11-21T20:44:21.123Z`; the time of day is enough across a minute.
        let time = alert[field].as_str()?.get(11..19)?;
        let mut parts = time.split(':').map(|p| p.parse::<i64>().ok());
        Some(parts.next()?? * 3600 + parts.next()?? * 60 + parts.next()??)
    };
    match (seconds("startsAt"), seconds("endsAt")) {
        (Some(starts), Some(ends)) => (ends - starts).rem_euclid(86_400) < 60,
        _ => false,
    }
}

fn node_name(fulcrum: &Fulcrum) -> String {
    fulcrum
        .dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The first mail in `maildir` whose text contains `needle`, with `\n` line ends.
fn wait_mail(maildir: &Path, needle: &str) -> String {
    let mut found = None;
    let got = wait_until(PATIENCE, POLL, || {
        found = mails(maildir).into_iter().find(|m| m.contains(needle));
        found.is_some()
    });
    assert!(got, "no mail with {needle:?}: {:?}", mails(maildir));
    found.unwrap()
}

fn mails(maildir: &Path) -> Vec<String> {
    let files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files
        .iter()
        .map(|f| read(f).replace("\r\n", "\n"))
        .collect()
}

/// Debian's aiosmtpd, or a skip (a failure in CI).
fn require_aiosmtpd() -> bool {
    let present = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "aiosmtpd (python3-aiosmtpd) is required in CI"
        );
        eprintln!("skipped: aiosmtpd is not installed (apt install python3-aiosmtpd)");
    }
    present
}

/// A child process killed and reaped when the test ends, passed or failed.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
