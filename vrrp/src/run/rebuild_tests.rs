//! A reload that rebuilds VRRP ([`Vrrp::reload`]) against a real kernel: instances added and
//! removed while a master that stays keeps its state, its VIP, its followers and its counters,
//! and runs no notify script again. Needs root, as `start_tests`, and prints "skipped" without.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::start_tests::{enter_with_veth_pair, parse, start};
use super::*;
use crate::net::Netlink;
use crate::testing::logged_lines;

/// A VRRPv3 `[vrrp]` on `interface` with 200 ms adverts (a backup takes over after 0.6 s and its
/// skew). `instances` are `(name, VRID,
/// priority, VIP)`; each logs `NAME master` to `log` on MASTER.
fn config(interface: &str, log: &Path, instances: &[(&str, u8, u8, &str)]) -> VrrpConfig {
    let mut text = format!("[vrrp]\ninterface = \"{interface}\"\nversion = 3\n");
    for (name, vrid, priority, vip) in instances {
        text.push_str(&format!(
            "\n[vrrp.instance.{name}]\nvirtual_router_id = {vrid}\npriority = {priority}\n\
             advert_interval = \"200ms\"\nvirtual_ips = [\"{vip}/32\"]\n\
             notify_master = \"echo '{name} master' >> '{}'\"\n",
            log.display()
        ));
    }
    parse(&text)
}

/// The status of `name` in `vrrp`.
fn instance(vrrp: &Vrrp, name: &str) -> Option<InstanceStatus> {
    vrrp.status().into_iter().find(|s| s.name == name)
}

/// Waits (at most 5 s) until `check` holds for instance `name` of `vrrp`.
async fn wait_for(vrrp: &Vrrp, name: &str, what: &str, check: impl Fn(&InstanceStatus) -> bool) {
    let reached = async {
        while !instance(vrrp, name).is_some_and(|s| check(&s)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), reached)
        .await
        .unwrap_or_else(|_| panic!("{name} never {what}: {:?}", vrrp.status()));
}

/// Whether `interface` has `addr` now.
async fn has(netlink: &Netlink, interface: &str, addr: &str) -> bool {
    let link = netlink.link(interface).await.unwrap();
    let addr: IpAddr = addr.parse().unwrap();
    netlink.has_address(&link, addr).await.unwrap()
}

/// Plays a volume that acts at once on each change of its instance, until the instance is gone.
async fn follow(mut follower: Follower) {
    while let Some(transition) = follower.next().await {
        follower.done(&transition);
    }
}

fn is_master(s: &InstanceStatus) -> bool {
    s.state == State::Master
}

// Input: A has VI_1 (VRID 53, priority 100, 10.0.0.100), MASTER, with a follower; B has VI_1 at
// priority 50, BACKUP, both at 200 ms. A is reloaded with VI_1's interval changed (300 ms,
// which needs a rebuild) and VI_2 added (VRID 54, 10.0.0.102); then with VI_1 removed.
// Output: after the first reload A's VI_1 is still MASTER, became master once, ran
// `notify_master` once, kept 10.0.0.100 and its advert count; B never took over; VI_2 became
// MASTER with its VIP; a status handle taken before the reload shows both. The second reload
// is refused while the follower holds VI_1; once it is dropped, VI_1 leaves with priority 0 and
// B takes 10.0.0.100 for that reason (`MasterReleased`), while VI_2 stays MASTER.
#[test]
fn a_rebuild_adds_and_removes_instances_and_a_master_that_stays_stays_master() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    // A and B share the namespace: B's side must take packets from an address of its own.
    for conf in ["all", "vb"] {
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{conf}/accept_local"), "1").unwrap();
    }
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let netlink = Netlink::new().unwrap();
        let one = config("va", &log, &[("VI_1", 53, 100, "10.0.0.100")]);
        let prepared = Vrrp::prepare(&one, Options::default()).await.unwrap();
        let following = tokio::spawn(follow(prepared.follower("VI_1").unwrap()));
        let mut a = prepared.start();
        let b = start(&config(
            "vb",
            &dir.path().join("b"),
            &[("VI_1", 53, 50, "10.0.0.100")],
        ))
        .await;
        let handle = a.status_handle();
        wait_for(&a, "VI_1", "MASTER", is_master).await;
        wait_for(&b, "VI_1", "BACKUP hearing A", |s| s.master.is_some()).await;
        wait_for(&a, "VI_1", "notified", |_| logged_lines(&log).len() == 1).await;
        let sent_before = instance(&a, "VI_1").unwrap().counters.adverts_sent;

        let two = two_instances(&log);
        assert_eq!(a.reload(&one, &two).await, Ok(Reloaded::Rebuilt));
        wait_for(&a, "VI_2", "MASTER", is_master).await;
        assert!(has(&netlink, "va", "10.0.0.102").await);
        // More than B's Master_Down_Interval (1.14 s once it follows A's 300 ms adverts): B
        // would have taken over had the rebuilt VI_1 started over as a backup.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let vi_1 = instance(&a, "VI_1").unwrap();
        assert_eq!(vi_1.state, State::Master, "{vi_1:?}");
        assert_eq!(vi_1.counters.became_master, 1, "{vi_1:?}");
        assert!(vi_1.counters.adverts_sent > sent_before, "{vi_1:?}");
        assert!(has(&netlink, "va", "10.0.0.100").await);
        let b_now = instance(&b, "VI_1").unwrap();
        assert_eq!(b_now.state, State::Backup, "{b_now:?}");
        assert_eq!(b_now.counters.became_master, 0, "{b_now:?}");
        let mut notified = logged_lines(&log);
        notified.sort();
        assert_eq!(notified, ["VI_1 master", "VI_2 master"]);
        let names: Vec<String> = handle.instances().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["VI_1", "VI_2"]);

        let only_two = config("va", &log, &[("VI_2", 54, 100, "10.0.0.102")]);
        let refused = a.reload(&two, &only_two).await.unwrap_err();
        assert!(
            refused.contains("vrrp.instance.VI_1 (a volume follows it"),
            "{refused}"
        );
        assert!(instance(&a, "VI_1").is_some_and(|s| is_master(&s)));
        // Still following across the first rebuild: it would have ended with the old instance.
        assert!(!following.is_finished());
        following.abort();
        assert!(following.await.unwrap_err().is_cancelled());
        assert_eq!(a.reload(&two, &only_two).await, Ok(Reloaded::Rebuilt));
        // Priority 0 from VI_1: B takes over after its skew, not after Master_Down_Interval.
        wait_for(&b, "VI_1", "MASTER", is_master).await;
        let b_now = instance(&b, "VI_1").unwrap();
        assert_eq!(b_now.reason, Some(Reason::MasterReleased), "{b_now:?}");
        assert!(!has(&netlink, "va", "10.0.0.100").await);
        assert!(has(&netlink, "vb", "10.0.0.100").await);
        let names: Vec<String> = handle.instances().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["VI_2"]);
        let vi_2 = instance(&a, "VI_2").unwrap();
        assert_eq!(
            (vi_2.state, vi_2.counters.became_master),
            (State::Master, 1)
        );
        a.stop().await;
        b.stop().await;
    });
}

/// A's config of the first reload: VI_1 at a 300 ms interval, and VI_2.
fn two_instances(log: &Path) -> VrrpConfig {
    let text = format!(
        "[vrrp]\ninterface = \"va\"\nversion = 3\n\
         [vrrp.instance.VI_1]\nvirtual_router_id = 53\npriority = 100\n\
         advert_interval = \"300ms\"\nvirtual_ips = [\"10.0.0.100/32\"]\n\
         notify_master = \"echo 'VI_1 master' >> '{log}'\"\n\
         [vrrp.instance.VI_2]\nvirtual_router_id = 54\npriority = 100\n\
         advert_interval = \"100ms\"\nvirtual_ips = [\"10.0.0.102/32\"]\n\
         notify_master = \"echo 'VI_2 master' >> '{log}'\"\n",
        log = log.display()
    );
    parse(&text)
}

// Input: a MASTER, then a reload adding an instance on an interface that does not exist.
// Output: the reload fails naming the interface, and the instance runs on: still MASTER, its
// advert count growing.
#[test]
fn a_rebuild_that_cannot_start_changes_nothing() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let one = config("va", &log, &[("VI_1", 53, 100, "10.0.0.100")]);
        let mut vrrp = start(&one).await;
        wait_for(&vrrp, "VI_1", "MASTER", is_master).await;
        let text = format!(
            "[vrrp]\ninterface = \"va\"\nversion = 3\n\
             [vrrp.instance.VI_1]\nvirtual_router_id = 53\npriority = 100\n\
             advert_interval = \"100ms\"\nvirtual_ips = [\"10.0.0.100/32\"]\n\
             notify_master = \"echo 'VI_1 master' >> '{}'\"\n\
             [vrrp.instance.VI_9]\ninterface = \"nope0\"\nvirtual_router_id = 59\n\
             virtual_ips = [\"10.0.0.109/32\"]\n",
            log.display()
        );
        let error = vrrp.reload(&one, &parse(&text)).await.unwrap_err();
        assert!(error.contains("nope0"), "{error}");
        let sent = instance(&vrrp, "VI_1").unwrap().counters.adverts_sent;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = instance(&vrrp, "VI_1").unwrap();
        assert_eq!(now.state, State::Master);
        assert!(now.counters.adverts_sent > sent, "{now:?}");
        assert_eq!(vrrp.status().len(), 1);
        vrrp.stop().await;
    });
}

// Input: a MASTER tracking a script (weight +20, every 10 s) that logs each run, then a reload
// adding an instance. Output: after the rebuild the script has still run once, and the
// priority is still 120: the checker and its verdict were kept. (A new checker would run the
// script again at once, the priority at 100 until its first verdict.)
#[test]
fn a_rebuild_keeps_an_unchanged_scripts_checker_and_verdict() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let text = |extra: &str| {
            format!(
                "[vrrp]\ninterface = \"va\"\nversion = 3\n\
                 [vrrp.script.chk]\ncommand = \"echo run >> '{}'\"\ninterval = \"10s\"\nweight = 20\n\
                 [vrrp.instance.VI_1]\nvirtual_router_id = 53\npriority = 100\n\
                 advert_interval = \"100ms\"\nvirtual_ips = [\"10.0.0.100/32\"]\n\
                 track_scripts = [\"chk\"]\n{extra}",
                runs.display()
            )
        };
        let one = parse(&text(""));
        let mut vrrp = start(&one).await;
        wait_for(&vrrp, "VI_1", "MASTER at 120", |s| {
            is_master(s) && s.effective_priority == 120
        })
        .await;
        let two = parse(&text(
            "[vrrp.instance.VI_2]\nvirtual_router_id = 54\n\
             virtual_ips = [\"10.0.0.102/32\"]\n",
        ));
        assert_eq!(vrrp.reload(&one, &two).await, Ok(Reloaded::Rebuilt));
        // Sampled: a new checker would put it at 100 until its first run's verdict.
        for _ in 0..30 {
            let priority = instance(&vrrp, "VI_1").unwrap().effective_priority;
            assert_eq!(priority, 120);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(logged_lines(&runs), ["run"]);
        let vi_1 = instance(&vrrp, "VI_1").unwrap();
        assert_eq!((vi_1.state, vi_1.effective_priority), (State::Master, 120));
        vrrp.stop().await;
    });
}

// Input: VI_1 (10.0.0.100, 10.0.0.20-34, 10.0.0.103) and VI_2 (10.0.0.102), both MASTER with
// no peer; five reloads move 10.0.0.20-34 and 10.0.0.103 to VI_2 and back (a VIP moving
// between instances rebuilds VRRP). Output: after each, 10.0.0.103 is on `va` under the label
// of the instance that now holds it, and both are still MASTER. (When each successor took
// its predecessor's dropped VIPs off itself, VI_1's sixteen removals ran beside VI_2's adds,
// and 10.0.0.103 came off after VI_2 had put it on again: on no node.)
#[test]
fn a_vip_moved_between_two_masters_by_a_rebuild_stays_on() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let text = |one: &str, two: &str| {
            parse(&format!(
                "[vrrp]\ninterface = \"va\"\nversion = 3\n\
                 [vrrp.instance.VI_1]\nvirtual_router_id = 53\nadvert_interval = \"100ms\"\n\
                 virtual_ips = [{one}]\n\
                 [vrrp.instance.VI_2]\nvirtual_router_id = 54\nadvert_interval = \"100ms\"\n\
                 virtual_ips = [{two}]\n"
            ))
        };
        let moving: Vec<String> = (20..35)
            .map(|i| format!("\"10.0.0.{i}/32\""))
            .chain(["\"10.0.0.103/32\"".to_owned()])
            .collect();
        let moving = moving.join(", ");
        let on_one = text(&format!("\"10.0.0.100/32\", {moving}"), "\"10.0.0.102/32\"");
        let on_two = text("\"10.0.0.100/32\"", &format!("\"10.0.0.102/32\", {moving}"));
        let mut vrrp = start(&on_one).await;
        wait_for(&vrrp, "VI_1", "MASTER", is_master).await;
        wait_for(&vrrp, "VI_2", "MASTER", is_master).await;
        let mut running = on_one.clone();
        for round in 0..5 {
            let (next, label) = if round % 2 == 0 {
                (on_two.clone(), "va:54")
            } else {
                (on_one.clone(), "va:53")
            };
            assert_eq!(vrrp.reload(&running, &next).await, Ok(Reloaded::Rebuilt));
            running = next;
            // The taker puts it on within its first moments; one taken off after stays off.
            let labelled = || {
                let shown = std::process::Command::new("ip")
                    .args(["-4", "-o", "addr", "show", "dev", "va"])
                    .output()
                    .unwrap();
                let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
                shown
                    .lines()
                    .find(|l| l.contains("10.0.0.103/32"))
                    .map(str::to_owned)
            };
            let mut line = None;
            for _ in 0..250 {
                line = labelled();
                if line.as_deref().is_some_and(|l| l.contains(label)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let line = line.unwrap_or_else(|| panic!("round {round}: 10.0.0.103 is gone"));
            assert!(line.contains(label), "round {round}: {line}");
            for name in ["VI_1", "VI_2"] {
                assert!(
                    instance(&vrrp, name).is_some_and(|s| is_master(&s)),
                    "{name}"
                );
            }
        }
        vrrp.stop().await;
    });
}

// Input: a MASTER rebuilt twenty times (an instance added, then removed, in turn). Output: the
// process holds as many descriptors after the last rebuild as after the first two: each
// rebuild's sockets, netlink connection and tasks end with the VRRP it replaced.
#[test]
fn rebuilds_leave_no_descriptors_behind() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let one = config("va", &log, &[("VI_1", 53, 100, "10.0.0.100")]);
        let two = config(
            "va",
            &log,
            &[
                ("VI_1", 53, 100, "10.0.0.100"),
                ("VI_2", 54, 100, "10.0.0.102"),
            ],
        );
        let mut vrrp = start(&one).await;
        wait_for(&vrrp, "VI_1", "MASTER", is_master).await;
        let open = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let mut counts = Vec::new();
        for round in 0..20 {
            let (from, to) = if round % 2 == 0 {
                (&one, &two)
            } else {
                (&two, &one)
            };
            assert_eq!(vrrp.reload(from, to).await, Ok(Reloaded::Rebuilt));
            // Dropped tasks end on the runtime's next turns.
            tokio::time::sleep(Duration::from_millis(50)).await;
            counts.push(open());
        }
        assert!(instance(&vrrp, "VI_1").is_some_and(|s| is_master(&s)));
        // Rounds 2 and 20 both end with VI_1 alone.
        assert!(counts[19] <= counts[1], "{counts:?}");
        vrrp.stop().await;
    });
}

/// An address owner (priority 255) on `va` tracking a weight-0 script whose first run takes a
/// second and passes, logging `notify_master` to `log`; `extra` is appended to the file.
fn owner_waiting(log: &Path, extra: &str) -> VrrpConfig {
    parse(&format!(
        "[vrrp]\ninterface = \"va\"\nversion = 3\n\
         [vrrp.script.slow]\ncommand = \"sleep 1\"\ninterval = \"10s\"\ntimeout = \"5s\"\n\
         [vrrp.instance.VI_1]\nvirtual_router_id = 53\npriority = 255\n\
         advert_interval = \"200ms\"\nvirtual_ips = [\"10.0.0.100/32\"]\n\
         track_scripts = [\"slow\"]\n\
         notify_master = \"echo master >> '{}'\"\n{extra}",
        log.display()
    ))
}

// Input: an address owner still waiting for its script's first verdict (a second) when a
// rebuild comes 100 ms after its start. Output: 300 ms later it has not taken the VIP (it
// started again, waiting on), and it becomes MASTER once its wait ends (at most a
// Master_Down_Interval, 0.6 s here). (It resumed its Initialize as a plain startup: MASTER at
// once.)
#[test]
fn an_owner_waiting_for_its_scripts_waits_on_across_a_rebuild() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let netlink = Netlink::new().unwrap();
        let one = owner_waiting(&log, "");
        let two = owner_waiting(
            &log,
            "[vrrp.instance.VI_2]\nvirtual_router_id = 54\nvirtual_ips = [\"10.0.0.102/32\"]\n",
        );
        let mut vrrp = start(&one).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(vrrp.reload(&one, &two).await, Ok(Reloaded::Rebuilt));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let vi_1 = instance(&vrrp, "VI_1").unwrap();
        assert_ne!(vi_1.state, State::Master, "{vi_1:?}");
        assert!(!has(&netlink, "va", "10.0.0.100").await);
        wait_for(&vrrp, "VI_1", "MASTER", is_master).await;
        assert!(has(&netlink, "va", "10.0.0.100").await);
        vrrp.stop().await;
    });
}

// Input: an address owner stopped while it waits for its script's first verdict. Output: its
// `notify_master` never runs and it never reports MASTER. (The stop fell through to a startup:
// MASTER, VIPs and `notify_master`, then priority 0.)
#[test]
fn an_owner_stopped_while_waiting_for_its_scripts_is_never_master() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let vrrp = start(&owner_waiting(&log, "")).await;
        let mut events = vrrp.subscribe();
        tokio::time::sleep(Duration::from_millis(100)).await;
        vrrp.stop().await;
        assert!(logged_lines(&log).is_empty(), "{:?}", logged_lines(&log));
        while let Ok(event) = events.try_recv() {
            assert_ne!(event.to, State::Master, "{event:?}");
        }
    });
}

/// VI_1 alone on `va` with VRID `vrid`, logging `VI_1 master` and, after `stop_sleep` seconds,
/// `VI_1 stop` to `log`.
fn slow_to_stop(log: &Path, vrid: u8, stop_sleep: u32) -> VrrpConfig {
    parse(&format!(
        "[vrrp]\ninterface = \"va\"\nversion = 3\n\
         [vrrp.instance.VI_1]\nvirtual_router_id = {vrid}\npriority = 100\n\
         advert_interval = \"200ms\"\nvirtual_ips = [\"10.0.0.100/32\"]\n\
         notify_master = \"echo 'VI_1 master' >> '{log}'\"\n\
         notify_stop = \"sleep {stop_sleep}; echo 'VI_1 stop' >> '{log}'\"\n",
        log = log.display()
    ))
}

// Input: VI_1 (VRID 53) MASTER alone on its link, whose `notify_stop` takes 5 s; a reload
// changes its VRID to 54, which removes it and adds a new VI_1 that becomes MASTER in about
// 0.7 s (Master_Down_Interval at 200 ms). The rebuild waits 2 s for the old one, then goes on.
// Output: the log reads master, stop, master: the new VI_1's `notify_master` waited for its
// predecessor's `notify_stop`, where it would otherwise have run about 2 s before it ended.
#[test]
fn a_recreated_instances_scripts_wait_for_its_predecessors_notify_stop() {
    let Some(runtime) = enter_with_veth_pair() else {
        return;
    };
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let old = slow_to_stop(&log, 53, 5);
        let mut a = start(&old).await;
        wait_for(&a, "VI_1", "notified", |_| logged_lines(&log).len() == 1).await;

        let new = slow_to_stop(&log, 54, 0);
        assert_eq!(a.reload(&old, &new).await, Ok(Reloaded::Rebuilt));
        let three = async {
            while logged_lines(&log).len() < 3 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(15), three)
            .await
            .unwrap_or_else(|_| panic!("the log never had 3 lines: {:?}", logged_lines(&log)));
        assert_eq!(
            logged_lines(&log),
            ["VI_1 master", "VI_1 stop", "VI_1 master"]
        );
        assert!(instance(&a, "VI_1").is_some_and(|s| is_master(&s)));
        a.stop().await;
    });
}
