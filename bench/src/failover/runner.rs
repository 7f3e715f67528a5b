//! The rounds: for each case, each round runs Fulcrum then keepalived, each on a fresh lab; a
//! probe in the client's namespace connects to the VIP all along, and A fails partway through.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fulcrum_common::UtcTime;
use fulcrum_lab::netns::wait_until;
use tracing::{info, warn};

use super::lab::{Lab, PORT, Programs, VIP};
use super::markdown::render_markdown;
use super::probe::{Outcome, ProbeReport, client_gap};
use super::report::{
    CaseReport, FailoverMachine, FailoverReport, FailoverRound, FailoverSettings, SCHEMA, ms,
};
use super::{Case, Contender, FailoverOptions};
use crate::harness::{cores, cpu_model_or_unknown, kernel, version_line, write_files};

/// How long B may take to hold the VIP after A failed before the round is a failure.
const TAKEOVER_PATIENCE: Duration = Duration::from_secs(10);

/// The least time the client must have connected without a failure before A fails.
const STEADY: Duration = Duration::from_secs(1);

/// Runs every round of every case and writes the files. Blocking; needs root (namespaces,
/// VRRP's raw sockets) and keepalived.
pub fn run_failover(options: &FailoverOptions) -> anyhow::Result<FailoverReport> {
    validate(options)?;
    let started = UtcTime::now();
    let machine = describe_machine(options)?;
    info!(fulcrum = %machine.fulcrum_version, keepalived = %machine.keepalived_version, "measuring failover");
    let dir = tempfile::Builder::new()
        .prefix("fulcrum-failover-")
        .tempdir()
        .context("cannot create a temp dir")?;

    let mut cases = Vec::new();
    for &case in &options.cases {
        let mut rounds = Vec::new();
        for round in 1..=options.rounds {
            for contender in Contender::ALL {
                if options.cancel.load(Relaxed) {
                    bail!("interrupted: every lab was torn down, nothing was written");
                }
                let round_dir = dir.path().join(format!("{case}-{round}-{contender}"));
                let result = run_round(options, case, contender, &round_dir);
                let result = match result {
                    Ok(result) => {
                        info!(%case, round, %contender, gap_ms = ?result.gap_ms, takeover_ms = ?result.takeover_ms, "round done");
                        result
                    }
                    Err(error) => {
                        warn!(%case, round, %contender, error = format!("{error:#}"), "round failed");
                        failed_round(round, contender, &error)
                    }
                };
                rounds.push(FailoverRound { round, ..result });
            }
        }
        cases.push(CaseReport::new(case, rounds));
    }
    if options.cancel.load(Relaxed) {
        bail!("interrupted: every lab was torn down, nothing was written");
    }
    let all = cases.iter().flat_map(|c| &c.rounds);
    if let Some(error) = all.clone().find_map(|r| r.error.as_ref())
        && all.clone().all(|r| r.error.is_some())
    {
        bail!("every round failed; the first: {error}");
    }

    let mut report = FailoverReport {
        schema: SCHEMA.to_owned(),
        date: started.rfc3339(),
        command: options.command.clone(),
        machine,
        settings: FailoverSettings {
            cases: options.cases.clone(),
            rounds: options.rounds,
            interval_ms: ms(options.interval),
            timeout_ms: ms(options.timeout),
            duration_s: options.duration.as_secs_f64(),
            fail_after_s: options.fail_after.as_secs_f64(),
            fulcrum: options.fulcrum.clone(),
            keepalived: options.keepalived.clone(),
        },
        cases,
        files: Vec::new(),
    };
    if let Some(out) = &options.out {
        write_files(
            out,
            "failover",
            &started.date(),
            &mut report,
            |r| &mut r.files,
            render_markdown,
        )?;
        info!(dir = %out.display(), "results written");
    }
    Ok(report)
}

fn validate(options: &FailoverOptions) -> anyhow::Result<()> {
    if options.cases.is_empty() {
        bail!("no case selected");
    }
    if options.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if options.interval.is_zero() || options.timeout.is_zero() {
        bail!("--interval and --timeout must be above zero");
    }
    if options.fail_after < STEADY + Duration::from_millis(200) {
        bail!("--fail-after must leave the client at least 1.2 s of steady connects");
    }
    // The slowest takeover (sigterm, ~0.6 s) and the first connects to B need room.
    if options.duration < options.fail_after + Duration::from_secs(2) {
        bail!("--duration must be at least --fail-after + 2s");
    }
    for (what, path) in [
        ("fulcrum", &options.fulcrum),
        ("fulcrum-bench", &options.bench),
        ("keepalived", &options.keepalived),
    ] {
        if !path.is_file() {
            bail!("{what}: no executable at {}", path.display());
        }
    }
    Ok(())
}

/// One round, its lab built and torn down. A panic of the lab harness (a failed `ip` command)
/// is this round's error.
fn run_round(
    options: &FailoverOptions,
    case: Case,
    contender: Contender,
    dir: &Path,
) -> anyhow::Result<FailoverRound> {
    std::panic::catch_unwind(AssertUnwindSafe(|| measure(options, case, contender, dir)))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            bail!("the lab failed: {message}")
        })
}

fn measure(
    options: &FailoverOptions,
    case: Case,
    contender: Contender,
    dir: &Path,
) -> anyhow::Result<FailoverRound> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let programs = Programs {
        fulcrum: &options.fulcrum,
    };
    let mut lab = Lab::start(programs, case, contender, dir)?;

    let spawned = Instant::now();
    let probe = lab
        .client
        .cmd(&options.bench.to_string_lossy())
        .arg("probe")
        .args(["--addr", &format!("{VIP}:{PORT}")])
        .args([
            "--interval",
            &humantime::format_duration(options.interval).to_string(),
        ])
        .args([
            "--timeout",
            &humantime::format_duration(options.timeout).to_string(),
        ])
        .args([
            "--duration",
            &humantime::format_duration(options.duration).to_string(),
        ])
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the probe")?;
    sleep_unless_cancelled(options, options.fail_after)?;

    // The probe's clock starts a few ms after `spawned`, so this is the signal's time on it
    // give or take those ms.
    let failed_at = spawned.elapsed();
    // B is watched from another thread, from the signal on: `Keepalived::stop` returns only
    // once keepalived has exited, which may be after B took over.
    let signalled = Instant::now();
    let (a, b) = (&mut lab.a, &lab.b);
    let (failed, takeover) = std::thread::scope(|scope| {
        let watch = scope.spawn(|| {
            wait_until(TAKEOVER_PATIENCE, Duration::from_millis(5), || {
                b.holds_vip()
            })
            .then(|| signalled.elapsed())
        });
        let failed = a.fail(case);
        (failed, watch.join().unwrap_or(None))
    });
    failed?;
    let took_over = takeover.is_some();

    let out = probe
        .wait_with_output()
        .context("cannot wait for the probe")?;
    if !out.status.success() {
        bail!(
            "the probe failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: ProbeReport =
        serde_json::from_slice(&out.stdout).context("the probe's JSON does not parse")?;
    if !took_over {
        bail!(
            "B did not take the VIP within {TAKEOVER_PATIENCE:?}\n--- B:\n{}",
            lab.b.log()
        );
    }
    check_steady(&report, failed_at)?;
    let gap = client_gap(&report.attempts)?;
    let count = |outcome: Outcome| {
        report
            .attempts
            .iter()
            .filter(|a| a.outcome == outcome)
            .count()
    };
    Ok(FailoverRound {
        round: 0,
        contender,
        gap_ms: Some(gap.map_or(0.0, |g| ms(g.length()))),
        gap_from_ms: gap.map(|g| ms(g.from) - ms(failed_at)),
        failures: gap.map_or(0, |g| g.failures),
        refused: count(Outcome::Refused),
        timeouts: count(Outcome::Timeout),
        errors: count(Outcome::Error),
        takeover_ms: takeover.map(ms),
        error: None,
    })
}

/// The client must have connected steadily for [`STEADY`] before A failed, or the gap could be
/// something else's.
fn check_steady(report: &ProbeReport, failed_at: Duration) -> anyhow::Result<()> {
    // 50 ms of slack for the probe's late start.
    let before = failed_at.saturating_sub(Duration::from_millis(50));
    let early: Vec<_> = report.attempts.iter().filter(|a| a.at() < before).collect();
    let steady_from = early.first().map(|a| a.at());
    if let Some(bad) = early.iter().find(|a| !a.ok()) {
        bail!(
            "a connect failed ({:?}) at {:?}, before A failed at {failed_at:?}",
            bad.outcome,
            bad.at()
        );
    }
    match steady_from {
        Some(from) if before.saturating_sub(from) >= STEADY => Ok(()),
        _ => bail!("the client did not connect for {STEADY:?} before A failed"),
    }
}

fn failed_round(round: usize, contender: Contender, error: &anyhow::Error) -> FailoverRound {
    FailoverRound {
        round,
        contender,
        gap_ms: None,
        gap_from_ms: None,
        failures: 0,
        refused: 0,
        timeouts: 0,
        errors: 0,
        takeover_ms: None,
        error: Some(format!("{error:#}")),
    }
}

/// Sleeps for `d`, waking every 50 ms to see whether the run was cancelled.
fn sleep_unless_cancelled(options: &FailoverOptions, d: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + d;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if options.cancel.load(Relaxed) {
            bail!("interrupted");
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
        if left.is_zero() {
            break;
        }
    }
    Ok(())
}

fn describe_machine(options: &FailoverOptions) -> anyhow::Result<FailoverMachine> {
    Ok(FailoverMachine {
        cpu_model: cpu_model_or_unknown(),
        cores: cores(),
        kernel: kernel(),
        fulcrum_version: version_line(&options.fulcrum, "version")?,
        // keepalived prints its version on stderr.
        keepalived_version: version_line(&options.keepalived, "--version")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::check_steady;
    use crate::failover::{Attempt, Outcome, ProbeReport};

    fn report(pattern: &str) -> ProbeReport {
        ProbeReport {
            addr: "10.88.0.50:8080".parse().unwrap(),
            interval_us: 100_000,
            timeout_us: 50_000,
            attempts: pattern
                .chars()
                .zip(0u64..)
                .map(|(c, i)| Attempt {
                    at_us: i * 100_000,
                    outcome: if c == '+' {
                        Outcome::Ok
                    } else {
                        Outcome::Timeout
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn the_client_must_connect_steadily_before_the_failure() {
        let failed_at = Duration::from_millis(2000);
        // Input: attempts every 100 ms, A fails at 2 s. Output: steady or not.
        assert!(check_steady(&report("++++++++++++++++++++tt+++"), failed_at).is_ok());
        // A failure before the signal.
        assert!(check_steady(&report("+++++t++++++++++++++tt+++"), failed_at).is_err());
        // Nothing before the signal.
        assert!(check_steady(&report(""), failed_at).is_err());
        // Less than a second of connects before it.
        assert!(check_steady(&report("+++"), Duration::from_millis(1000)).is_err());
    }
}
