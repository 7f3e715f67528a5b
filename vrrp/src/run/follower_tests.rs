//! Heartbeat's order between followers and notify scripts, with followers played by the test: no
//! sockets, no state machine.

#![allow(clippy::unwrap_used, reason = "tests")]

use crate::testing::logged_lines;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::Notify;

/// A notifier whose MASTER and BACKUP scripts log their state, the BACKUP one slowly.
fn notifier(log: &Path) -> Notifier {
    let notify = Notify {
        master: Some(format!("echo master >> '{}'", log.display())),
        backup: Some(format!("sleep 0.2; echo backup >> '{}'", log.display())),
        ..Notify::default()
    };
    Notifier::spawn("INSTANCE", "VI_1".to_owned(), notify)
}

fn append(log: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

/// A follower that, on each MASTER change, "promotes" after `ms` (logging `name`) and reports.
fn promote_slowly(mut follower: Follower, name: &'static str, log: PathBuf, ms: u64) {
    tokio::spawn(async move {
        while let Some(transition) = follower.next().await {
            if transition.state() == State::Master {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                append(&log, name);
            }
            follower.done(&transition);
        }
    });
}

#[tokio::test]
async fn notify_master_runs_after_every_follower_has_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let notifier = notifier(&log);
    let (mut leader, roster) = Leader::new("VI_1".to_owned(), Duration::from_secs(10));
    promote_slowly(roster.follower(), "nfs", log.clone(), 100);
    promote_slowly(roster.follower(), "mysql", log.clone(), 300);
    leader.changed(State::Master, 100, &notifier);
    notifier.drain().await;
    assert_eq!(logged_lines(&log), ["nfs", "mysql", "master"]);
}

#[tokio::test]
async fn leaving_master_a_follower_acts_after_the_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let notifier = notifier(&log);
    let (mut leader, roster) = Leader::new("VI_1".to_owned(), Duration::from_secs(10));
    let mut follower = roster.follower();
    leader.changed(State::Backup, 100, &notifier);
    let transition = follower.next().await.unwrap();
    assert_eq!(transition.state(), State::Backup);
    follower.done(&transition);
    transition.notified().await;
    append(&log, "demoted");
    assert_eq!(logged_lines(&log), ["backup", "demoted"]);
}

#[tokio::test]
async fn a_follower_skipping_to_a_later_change_releases_master() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let notifier = notifier(&log);
    let (mut leader, roster) = Leader::new("VI_1".to_owned(), Duration::from_secs(10));
    let mut follower = roster.follower();
    leader.changed(State::Master, 100, &notifier);
    leader.changed(State::Backup, 100, &notifier);
    // Only where the instance is now matters: MASTER is skipped, and acting on BACKUP covers it.
    let latest = follower.next().await.unwrap();
    assert_eq!(latest.state(), State::Backup);
    follower.done(&latest);
    tokio::time::timeout(Duration::from_secs(3), latest.notified())
        .await
        .unwrap();
    assert_eq!(logged_lines(&log), ["master", "backup"]);
}

#[tokio::test]
async fn a_dropped_follower_counts_as_done() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let notifier = notifier(&log);
    let (mut leader, roster) = Leader::new("VI_1".to_owned(), Duration::from_secs(10));
    let follower = roster.follower();
    leader.changed(State::Master, 100, &notifier);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(logged_lines(&log).is_empty(), "notify_master did not wait");
    drop(follower);
    tokio::time::timeout(Duration::from_secs(3), notifier.drain())
        .await
        .unwrap();
    assert_eq!(logged_lines(&log), ["master"]);
}

#[tokio::test]
async fn the_wait_for_followers_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let notifier = notifier(&log);
    let (mut leader, roster) = Leader::new("VI_1".to_owned(), Duration::from_millis(200));
    let _silent = roster.follower();
    let started = Instant::now();
    leader.changed(State::Master, 100, &notifier);
    tokio::time::timeout(Duration::from_secs(3), notifier.drain())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(logged_lines(&log), ["master"]);
}

#[tokio::test]
async fn without_followers_notify_master_runs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let notifier = notifier(&log);
    let (mut leader, _roster) = Leader::new("VI_1".to_owned(), Duration::from_secs(10));
    leader.changed(State::Master, 100, &notifier);
    tokio::time::timeout(Duration::from_secs(3), notifier.drain())
        .await
        .unwrap();
    assert_eq!(logged_lines(&log), ["master"]);
}

#[tokio::test]
async fn a_follower_starts_from_the_current_state_and_ends_with_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let notifier = notifier(&dir.path().join("log"));
    let (mut leader, roster) = Leader::new("VI_1".to_owned(), Duration::from_secs(10));
    let mut before = roster.follower();
    let start = before.current();
    assert_eq!(start.state(), State::Initialize);
    assert!(Notified::ready().is_done());
    start.notified().await;

    leader.changed(State::Backup, 100, &notifier);
    let mut late = roster.follower();
    assert_eq!(late.instance(), "VI_1");
    assert_eq!(late.current().state(), State::Backup);
    leader.changed(State::Initialize, 100, &notifier);
    drop(leader);
    // The last change still arrives, then the end.
    assert_eq!(late.next().await.unwrap().state(), State::Initialize);
    assert!(late.next().await.is_none());
    assert_eq!(before.next().await.unwrap().state(), State::Initialize);
    assert!(before.next().await.is_none());
}

#[test]
fn a_follower_knows_when_its_instance_is_gone() {
    let (leader, roster) = Leader::new("VI_1".to_owned(), FOLLOWERS_TIMEOUT);
    let follower = roster.follower();
    assert!(!follower.is_gone());
    drop(leader);
    assert!(follower.is_gone(), "the leader is gone, its state stale");
}
