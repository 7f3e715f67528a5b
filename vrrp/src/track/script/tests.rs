//! The checker against real `sh` processes, with short intervals and real time (the child
//! processes do not follow a paused clock).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{path::Path, time::Duration};

use tokio::{sync::watch, time::timeout};

use super::*;

fn command(command: String, fall: u32, rise: u32) -> ScriptConfig {
    ScriptConfig {
        name: "chk".to_owned(),
        check: ScriptCheck::Command(command),
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(500),
        weight: -10,
        fall,
        rise,
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// Waits (at most 1.5 s) until the verdict is `want`.
async fn until(rx: &mut watch::Receiver<ScriptHealth>, want: ScriptHealth) {
    let seen = timeout(
        Duration::from_millis(1500),
        rx.wait_for(|health| *health == want),
    )
    .await;
    assert!(seen.is_ok_and(|r| r.is_ok()), "never became {want:?}");
}

#[test]
fn the_first_result_decides_as_keepalived_starts_a_script() {
    // A first failure fails at once, whatever `fall`; then `rise` successes are needed.
    let mut verdict = Verdict::new(3, 2);
    assert_eq!(verdict.record(false), Some(ScriptHealth::Bad));
    assert_eq!(verdict.record(true), None);
    assert_eq!(verdict.record(true), Some(ScriptHealth::Good));
    // A first success is Good at once, whatever `rise`.
    let mut verdict = Verdict::new(3, 2);
    assert_eq!(verdict.record(true), Some(ScriptHealth::Good));
    assert_eq!(verdict.record(false), None);
}

#[test]
fn verdict_follows_fall_and_rise() {
    let mut verdict = Verdict::new(2, 3);
    assert_eq!(verdict.record(true), Some(ScriptHealth::Good));
    // One failure is forgiven; a success in between resets the count.
    assert_eq!(verdict.record(false), None);
    assert_eq!(verdict.record(true), None);
    assert_eq!(verdict.record(false), None);
    assert_eq!(verdict.record(false), Some(ScriptHealth::Bad));
    assert_eq!(verdict.record(false), None);
    assert_eq!(verdict.record(true), None);
    assert_eq!(verdict.record(true), None);
    assert_eq!(verdict.record(false), None);
    assert_eq!(verdict.record(true), None);
    assert_eq!(verdict.record(true), None);
    assert_eq!(verdict.record(true), Some(ScriptHealth::Good));
    assert_eq!(verdict.record(true), None);
}

#[test]
fn verdict_with_fall_and_rise_one_flips_at_once() {
    let mut verdict = Verdict::new(1, 1);
    assert_eq!(verdict.record(true), Some(ScriptHealth::Good));
    assert_eq!(verdict.record(false), Some(ScriptHealth::Bad));
    assert_eq!(verdict.record(true), Some(ScriptHealth::Good));
}

#[tokio::test]
async fn passing_script_stays_good() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut rx = spawn_script(command(format!("echo >> '{}'", runs.display()), 1, 1), None);
    timeout(Duration::from_millis(1500), async {
        while lines(&runs) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(*rx.borrow_and_update(), ScriptHealth::Good);
    assert!(
        !rx.has_changed().unwrap(),
        "a passing script publishes its first verdict only"
    );
}

#[tokio::test]
async fn failing_script_turns_bad_after_fall() {
    let dir = tempfile::tempdir().unwrap();
    let failures = dir.path().join("failures");
    let flag = dir.path().join("failing");
    // Passes until the flag exists, then fails, noting each failed run.
    let mut rx = spawn_script(
        command(
            format!(
                "test ! -f '{}' || {{ echo >> '{}'; false; }}",
                flag.display(),
                failures.display()
            ),
            2,
            1,
        ),
        None,
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(&flag, b"").unwrap();
    until(&mut rx, ScriptHealth::Bad).await;
    // Bad only once the second failure is in: the first one was forgiven.
    assert!(
        lines(&failures) >= 2,
        "Bad after {} failure(s)",
        lines(&failures)
    );
}

#[tokio::test]
async fn a_script_failing_from_the_start_is_bad_after_its_first_run() {
    // One run only (the next would come a minute later), and a fall of 3: Bad all the same.
    let config = ScriptConfig {
        interval: Duration::from_secs(60),
        ..command("false".to_owned(), 3, 1)
    };
    let mut rx = spawn_script(config, None);
    until(&mut rx, ScriptHealth::Bad).await;
}

#[tokio::test]
async fn recovering_script_turns_good_after_rise() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag");
    let mut rx = spawn_script(command(format!("test -f '{}'", flag.display()), 1, 1), None);
    until(&mut rx, ScriptHealth::Bad).await;
    std::fs::write(&flag, b"").unwrap();
    until(&mut rx, ScriptHealth::Good).await;
}

#[tokio::test]
async fn timed_out_script_fails_and_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("pid");
    // The shell records the pid of the `sleep` it forked, then waits for it: both must die.
    let mut config = command(
        format!("sleep 5 & echo $! > '{}'; wait", pid.display()),
        1,
        1,
    );
    config.timeout = Duration::from_millis(50);
    config.interval = Duration::from_millis(200);
    let mut rx = spawn_script(config, None);
    until(&mut rx, ScriptHealth::Bad).await;
    let sleep_pid = std::fs::read_to_string(&pid).unwrap().trim().to_owned();
    assert!(!sleep_pid.is_empty());
    timeout(Duration::from_millis(1000), async {
        while alive(&sleep_pid) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("sleep {sleep_pid} outlived its timeout"));
}

/// Alive and not a zombie (an orphan's reaper may be slow, or absent, in a container).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[tokio::test]
async fn builtin_follows_the_proxy_after_fall() {
    let (proxy, healthy) = watch::channel(true);
    let config = ScriptConfig {
        check: ScriptCheck::Builtin(BuiltinCheck::Proxy),
        ..command(String::new(), 3, 2)
    };
    let mut rx = spawn_script(config, Some(healthy));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*rx.borrow_and_update(), ScriptHealth::Good);
    let started = tokio::time::Instant::now();
    proxy.send_replace(false);
    until(&mut rx, ScriptHealth::Bad).await;
    // Three samples, two intervals apart at least.
    assert!(
        started.elapsed() >= Duration::from_millis(40),
        "{:?}",
        started.elapsed()
    );
    proxy.send_replace(true);
    until(&mut rx, ScriptHealth::Good).await;
}

#[tokio::test]
async fn builtin_without_a_proxy_fails() {
    let config = ScriptConfig {
        check: ScriptCheck::Builtin(BuiltinCheck::Proxy),
        ..command(String::new(), 1, 1)
    };
    let mut rx = spawn_script(config, None);
    until(&mut rx, ScriptHealth::Bad).await;

    let (proxy, healthy) = watch::channel(true);
    let config = ScriptConfig {
        check: ScriptCheck::Builtin(BuiltinCheck::Proxy),
        ..command(String::new(), 1, 1)
    };
    let mut rx = spawn_script(config, Some(healthy));
    drop(proxy);
    until(&mut rx, ScriptHealth::Bad).await;
}

#[tokio::test]
async fn dropping_the_receiver_stops_the_checks() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let rx = spawn_script(command(format!("echo >> '{}'", runs.display()), 1, 1), None);
    timeout(Duration::from_millis(1500), async {
        while lines(&runs) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    drop(rx);
    // Let a run in flight finish (or be killed), then no new runs may start.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = lines(&runs);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lines(&runs), after_drop);
}

#[tokio::test]
async fn dropping_the_receiver_kills_a_run_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("pid");
    let mut config = command(
        format!("sleep 5 & echo $! > '{}'; wait", pid.display()),
        1,
        1,
    );
    config.timeout = Duration::from_secs(10);
    let rx = spawn_script(config, None);
    let sleep_pid = timeout(Duration::from_millis(1500), async {
        loop {
            let text = std::fs::read_to_string(&pid).unwrap_or_default();
            if text.ends_with('\n') {
                return text.trim().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    drop(rx);
    timeout(Duration::from_millis(1000), async {
        while alive(&sleep_pid) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("sleep {sleep_pid} outlived its checker"));
}
