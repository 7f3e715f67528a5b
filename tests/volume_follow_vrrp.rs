//! `follow_vrrp`: a replicated volume is primary exactly where its VRRP instance is MASTER, as
//! heartbeat's `drbddisk` resource followed the VIP in seeds 002 and 003. Two nodes in network
//! namespaces of their own, each running `[vrrp]` and `[volume.data]`, with notify scripts that
//! record whether the volume's NBD export answers when they run: heartbeat's order
//! (`IPaddr drbddisk Filesystem nfs`) has the volume primary before `notify_master` and still
//! primary while `notify_backup` / `notify_stop` run.
//!
//! Needs root, iproute2 and `nbdinfo`; skips with a message otherwise, and fails in CI (`CI`
//! set).

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{path::Path, time::Instant};

use support::{
    Fulcrum, PATIENCE,
    netns::{Netns, can_use_netns, veth, wait_until},
    require_tool, status_json,
    vrrp::{CONVERGE, POLL, fulcrum_vrrp, instance, start_fulcrum, status as vrrp_status},
};

const VIP: &str = "10.78.0.50";

/// The NBD export, on each namespace's own loopback.
const NBD: &str = "nbd://127.0.0.1:10809/data";

/// A notify script: `probe.sh STATE LOG` appends `STATE serving` or `STATE not-serving` to LOG,
/// as the export answers or not. Leaving MASTER it first sleeps a second, as a script stopping
/// NFS and unmounting takes time: the export must still answer after it.
const PROBE: &str = r#"case "$1" in master) ;; *) sleep 1 ;; esac
if nbdinfo --size "$NBD" >/dev/null 2>&1; then r=serving; else r=not-serving; fi
echo "$1 $r" >> "$2"
"#;

/// A node's config: VI_1 at `priority` with the probe as its notify scripts, logging to `log`,
/// and a volume that follows it (retrying the peer every second rather than DRBD's 10 s, as
/// the two nodes start one after the other).
fn node(own: &str, peer: &str, priority: u8, probe: &Path, log: &Path) -> String {
    let (probe, log) = (probe.display(), log.display());
    let run = |state: &str| format!("NBD={NBD} sh '{probe}' {state} '{log}'");
    let notify = format!(
        "notify_master = \"{}\"\nnotify_backup = \"{}\"\nnotify_stop = \"{}\"",
        run("master"),
        run("backup"),
        run("stop"),
    );
    format!(
        "{}\n[volume.data]\nbacking = \"data.img\"\nsize = \"16MiB\"\nlisten = \"{own}:7788\"\n\
         peer = \"{peer}:7788\"\nshared_secret = \"s3cret\"\nfollow_vrrp = \"VI_1\"\n\
         connect_interval = \"1s\"\nping_interval = \"1s\"\ntimeout = \"500ms\"\n\
         nbd = {{ listen = \"127.0.0.1:10809\", export = \"data\" }}\n",
        fulcrum_vrrp(2, &[instance("VI_1", 61, priority, VIP, &notify)]),
    )
}

/// What a node's notify scripts recorded, one line per run.
fn records(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn volume(node: &Fulcrum) -> serde_json::Value {
    status_json(node, "volume")
}

/// Two namespaces linked by a veth pair, A (10.78.0.1) and B (10.78.0.2), and a temp dir with
/// the probe script and each node's notify log.
struct Lab {
    na: Netns,
    nb: Netns,
    scripts: tempfile::TempDir,
}

impl Lab {
    /// A lab in namespaces named `names`.
    fn new(names: (&str, &str)) -> Lab {
        let scripts = tempfile::tempdir().unwrap();
        std::fs::write(scripts.path().join("probe.sh"), PROBE).unwrap();
        let (na, nb) = (Netns::new(names.0), Netns::new(names.1));
        veth(&na, "eth0", "10.78.0.1/24", &nb, "eth0", "10.78.0.2/24");
        Lab { na, nb, scripts }
    }

    /// The notify log of node `name` ("a" or "b").
    fn log(&self, name: &str) -> std::path::PathBuf {
        self.scripts.path().join(format!("{name}.log"))
    }

    /// A's config ([`node`]) at `priority`.
    fn a(&self, priority: u8) -> String {
        let probe = self.scripts.path().join("probe.sh");
        node("10.78.0.1", "10.78.0.2", priority, &probe, &self.log("a"))
    }

    /// B's config at `priority`.
    fn b(&self, priority: u8) -> String {
        let probe = self.scripts.path().join("probe.sh");
        node("10.78.0.2", "10.78.0.1", priority, &probe, &self.log("b"))
    }
}

/// A node's config split into its `[vrrp]` and its `[volume.data]`.
fn split(config: &str) -> (&str, &str) {
    config.split_at(config.find("[volume.data]").unwrap())
}

/// Waits until `ns` holds `vip`; false after [`CONVERGE`].
fn holds(ns: &Netns, vip: &str) -> bool {
    wait_until(CONVERGE, POLL, || {
        ns.has_address("eth0", vip.parse().unwrap())
    })
}

#[test]
fn the_volume_is_primary_where_its_instance_is_master_and_moves_with_it() {
    if !can_use_netns() || !require_tool("nbdinfo") {
        return;
    }
    let lab = Lab::new(("fva", "fvb"));
    let (log_a, log_b) = (lab.log("a"), lab.log("b"));
    let mut a = start_fulcrum(&lab.na, &lab.a(150));
    let b = start_fulcrum(&lab.nb, &lab.b(100));

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
    // notify_master ran once the volume was primary (promotion first, as heartbeat's drbddisk
    // before Filesystem).
    assert!(
        wait_until(PATIENCE, POLL, || records(&log_a).len() >= 2),
        "{:?}",
        records(&log_a)
    );
    assert_eq!(records(&log_a), ["backup not-serving", "master serving"]);

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
    // A's notify_stop still found the export answering a second in: the volume was demoted
    // after it. B's notify_master waited for B's promotion, which waited for A's demotion.
    assert!(
        wait_until(PATIENCE, POLL, || {
            records(&log_a).len() >= 3 && records(&log_b).len() >= 2
        }),
        "A: {:?} / B: {:?}",
        records(&log_a),
        records(&log_b)
    );
    assert_eq!(
        (records(&log_a), records(&log_b)),
        (
            vec![
                "backup not-serving".to_owned(),
                "master serving".to_owned(),
                "stop serving".to_owned()
            ],
            vec!["backup not-serving".to_owned(), "master serving".to_owned()]
        )
    );
    // A stopped as it should: the volume's metadata closed clean, the process exiting 0.
    assert!(a.wait_exit().success(), "A's stop failed: {:#?}", a.logs());
    assert!(
        (a.logs().iter()).any(|l| support::message(l) == "volume stopped"),
        "A's volume was not stopped cleanly"
    );
}

// Input: one node whose volume follows VI_1 (its peer never comes), reloaded first with VI_1
// replaced by VI_2, then without `[vrrp]` (and without `follow_vrrp`, which then has nothing
// to name). Output: both reloads leave VRRP as it was, each warning that a volume follows
// VI_1; VI_1 keeps the VIP.
#[test]
fn a_reload_does_not_take_a_followed_instance_away() {
    if !can_use_netns() {
        return;
    }
    let lab = Lab::new(("fvr", "fvs"));
    let na = &lab.na;
    let followed = lab.a(150);
    let section = split(&followed).1;
    let a = start_fulcrum(na, &followed);
    assert!(holds(na, VIP), "A never took the VIP");
    let refused = |from: usize| {
        a.wait_log_from(from, |l| {
            support::message(l)
                == "[vrrp] changed: VRRP keeps running on the old settings until fulcrum restarts"
        })["change"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let renamed = followed.replace("[vrrp.instance.VI_1]", "[vrrp.instance.VI_2]");
    let from = a.log_len();
    a.write_config(&renamed.replace("follow_vrrp = \"VI_1\"", "follow_vrrp = \"VI_2\""));
    assert!(a.reload());
    assert!(refused(from).starts_with("vrrp.instance.VI_1 (a volume follows it"));

    let from = a.log_len();
    a.write_config(&section.replace("follow_vrrp = \"VI_1\"\n", ""));
    assert!(a.reload());
    assert!(refused(from).starts_with("vrrp.instance.VI_1 (a volume follows it"));
    let now = vrrp_status(&a);
    assert_eq!(now[0]["name"], "VI_1", "{now:#}");
    assert_eq!(now[0]["state"], "MASTER", "{now:#}");
    assert!(na.has_address("eth0", VIP.parse().unwrap()));
}

// Input: one node running VI_1 alone (its peer never comes), reloaded to add a volume that
// follows VI_1; then, the volume demoted by hand, reloaded without the volume and with VI_1
// replaced by VI_2. Output: the added volume is promoted by the MASTER it follows and serves
// NBD; the second reload stops the volume before VRRP applies the file, so VI_1, no longer
// followed, is removed (its VIP gone) and VI_2 takes its own.
#[test]
fn a_reload_adds_a_volume_that_follows_a_running_master_and_removes_it_with_its_instance() {
    if !can_use_netns() || !require_tool("nbdinfo") {
        return;
    }
    const VIP2: &str = "10.78.0.51";
    let lab = Lab::new(("fvn", "fvo"));
    let na = &lab.na;
    let followed = lab.a(150);
    let vrrp = split(&followed).0;
    let a = start_fulcrum(na, vrrp);
    assert!(holds(na, VIP), "A never took the VIP");
    assert!(
        status_json(&a, "volume").is_null(),
        "a volume before the reload"
    );

    a.write_config(&followed);
    assert!(a.reload());
    assert!(
        wait_until(PATIENCE, POLL, || volume(&a)["role"] == "Primary"),
        "the added volume was not promoted by the MASTER it follows: {}",
        volume(&a)
    );
    assert!(volume(&a)["nbd"].is_string());
    assert_eq!(
        vrrp_status(&a)[0]["became_master"],
        1,
        "VI_1 went through MASTER again"
    );

    let (ok, out, err) = support::fulcrum_on(&a, &["volume"], &["secondary", "data"]);
    assert!(ok, "demote: {out} {err}");
    let replaced = vrrp
        .replace("[vrrp.instance.VI_1]", "[vrrp.instance.VI_2]")
        .replace(VIP, VIP2);
    a.write_config(&replaced);
    assert!(a.reload());
    assert!(holds(na, VIP2), "VI_2 never came: {}", vrrp_status(&a));
    assert!(
        !na.has_address("eth0", VIP.parse().unwrap()),
        "VI_1's VIP stayed"
    );
    let now = vrrp_status(&a);
    assert_eq!(now.as_array().unwrap().len(), 1, "{now:#}");
    assert_eq!(now[0]["name"], "VI_2", "{now:#}");
    assert!(status_json(&a, "volume").is_null(), "the volume still runs");
}

// Input: one node running VI_1, reloaded to add VI_2 on an interface that does not exist and a
// volume that follows VI_2 (VRRP keeps its old instances; the volume starts following
// nothing), then reloaded with VI_2 on eth0 and the volume's section unchanged. Output: the
// second reload gives the running volume its follower, and VI_2's MASTER promotes it.
#[test]
fn a_volume_whose_instance_could_not_start_follows_it_once_a_reload_starts_it() {
    if !can_use_netns() {
        return;
    }
    const VIP2: &str = "10.78.0.52";
    let lab = Lab::new(("fvq", "fvp"));
    let na = &lab.na;
    let followed = lab.a(150);
    let (vrrp, section) = split(&followed);
    let a = start_fulcrum(na, vrrp);
    let follows_vi_2 = section.replace("follow_vrrp = \"VI_1\"", "follow_vrrp = \"VI_2\"");
    let with_vi_2 = |extra: &str| {
        format!(
            "{vrrp}\n{}\n{follows_vi_2}",
            instance("VI_2", 62, 150, VIP2, extra)
        )
    };

    let from = a.log_len();
    a.write_config(&with_vi_2("interface = \"eth9\""));
    assert!(a.reload());
    a.wait_log_from(from, |l| {
        support::message(l)
            == "follow_vrrp: no such VRRP instance running; the volume does not follow it"
    });
    assert_eq!(volume(&a)["role"], "Secondary");

    a.write_config(&with_vi_2(""));
    assert!(a.reload());
    assert!(holds(na, VIP2), "VI_2 never came: {}", vrrp_status(&a));
    assert!(
        wait_until(PATIENCE, POLL, || volume(&a)["role"] == "Primary"),
        "the volume was not promoted by the MASTER it follows: {}",
        volume(&a)
    );
}

// Input: B MASTER of VI_1 with the volume primary, A its backup with the volume secondary and
// a second instance VI_3 whose notify_stop takes 1.9 s (a rebuild waits up to 2 s for it). A
// is reloaded with its volume's section changed and VI_3 removed, and B is stopped while A's
// reload waits for VI_3's script. Output: A's VI_1 becomes MASTER while its volume is
// restarting, and its notify_master still finds the volume serving: the restarted volume took
// over the follower the stopped one held, so the MASTER waited for its promotion.
#[test]
fn a_master_that_comes_while_its_volume_restarts_waits_for_the_restarted_volume() {
    if !can_use_netns() || !require_tool("nbdinfo") {
        return;
    }
    let lab = Lab::new(("fvh", "fvi"));
    let log_a = lab.log("a");
    let a_node = lab.a(100);
    let (vrrp, volume_section) = split(&a_node);
    let slow_stop = instance("VI_3", 63, 100, "10.78.0.53", "notify_stop = \"sleep 1.9\"");
    let a = start_fulcrum(&lab.na, &format!("{vrrp}\n{slow_stop}\n{volume_section}"));
    let mut b = start_fulcrum(&lab.nb, &lab.b(150));
    assert!(
        wait_until(CONVERGE, POLL, || {
            let (va, vb) = (volume(&a), volume(&b));
            vb["role"] == "Primary" && va["role"] == "Secondary" && va["connection"] == "Connected"
        }),
        "A: {} / B: {}",
        volume(&a),
        volume(&b)
    );
    assert!(
        wait_until(PATIENCE, POLL, || records(&log_a) == ["backup not-serving"]),
        "{:?}",
        records(&log_a)
    );

    let changed = volume_section.replace("ping_interval = \"1s\"", "ping_interval = \"2s\"");
    assert_ne!(changed, volume_section);
    let from = a.log_len();
    a.write_config(&format!("{vrrp}\n{changed}"));
    a.signal(libc::SIGHUP);
    a.wait_log_from(from, |l| {
        support::message(l) == "[volume] section changed or removed: stopping the volume"
    });
    b.signal(libc::SIGTERM);
    assert!(b.wait_exit().success());
    assert!(
        wait_until(CONVERGE, POLL, || records(&log_a).len() >= 2),
        "A's notify_master never ran: {:?} / VRRP {}",
        records(&log_a),
        vrrp_status(&a)
    );
    assert_eq!(records(&log_a), ["backup not-serving", "master serving"]);
    assert_eq!(volume(&a)["role"], "Primary");
    // VI_1 became MASTER before the restarted volume was up, as meant.
    let logs = a.logs();
    let position = |message: &str| logs.iter().position(|l| support::message(l) == message);
    let started = position("volume started on the reloaded [volume] section").unwrap();
    let master = (logs.iter())
        .position(|l| l["instance"] == "VI_1" && l["to"] == "MASTER")
        .unwrap_or_else(|| panic!("no MASTER line: {logs:#?}"));
    assert!(
        master < started,
        "VI_1 became MASTER only after the restart: {logs:#?}"
    );
}
