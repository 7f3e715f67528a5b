//! Smoke test of `fulcrum-bench compare`: a `--quick` comparison end to end, with the real
//! `fulcrum-bench` (origins, load and bulk streams) and the `fulcrum` binary named by
//! `FULCRUM_BIN`, checking that the report has every field, the files are written, and nothing is
//! left running. The quick scenarios cover the L7 tier (`get`, `cookie`) and the L4 tier
//! (`tcp-close`, and `tcp-bulk` with 16 MiB streams); a second quick run covers `get-metrics`
//! (Fulcrum with its admin server scraped, against Fulcrum without).
//!
//! The `fulcrum` binary is `FULCRUM_BIN`, or else the one built beside `fulcrum-bench` (a workspace
//! build, as CI's, builds both). A missing binary or HAProxy skips the test, except in CI (`CI`
//! set), which builds the one and installs the other.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fulcrum_bench::compare::{
    Baseline, CompareOptions, CompareReport, Metric, SCHEMA, Scenario, ScenarioReport,
    find_haproxy, render_markdown, run_compare,
};

#[test]
fn quick_comparison_reports_every_field() {
    let fulcrum = std::env::var_os("FULCRUM_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_fulcrum-bench")).with_file_name("fulcrum"),
        PathBuf::from,
    );
    if !fulcrum.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing, and CI builds it",
            fulcrum.display()
        );
        eprintln!(
            "skipped: no fulcrum binary at {} (build the workspace or set FULCRUM_BIN)",
            fulcrum.display()
        );
        return;
    }
    if find_haproxy(None).is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "haproxy is not installed, and CI must have it"
        );
        eprintln!("skipped: haproxy is not installed");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let mut options = quick_options(fulcrum);
    options.out = Some(out.path().to_owned());

    let report = run_compare(&options).unwrap();
    check_report(&report, &options);
    assert_no_children();

    // The files: the JSON reads back to the same report, the tables are in both Markdown files.
    assert_eq!(report.files.len(), 4, "{:?}", report.files);
    for file in &report.files {
        assert!(file.is_file(), "{} was not written", file.display());
    }
    let json = report
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "json"));
    let read: CompareReport =
        serde_json::from_str(&std::fs::read_to_string(json.unwrap()).unwrap()).unwrap();
    // Floats may come back one ulp off, so the numbers are compared by the summary's medians.
    assert_eq!(read.machine, report.machine);
    assert_eq!(read.settings, report.settings);
    assert_eq!(read.files, report.files);
    assert_eq!(read.scenarios.len(), report.scenarios.len());
    for (read, written) in read.scenarios.iter().zip(&report.scenarios) {
        assert_eq!(read.rounds.len(), written.rounds.len());
        assert_eq!(read.bulk_rounds.len(), written.bulk_rounds.len());
        assert_eq!(read.summary.len(), written.summary.len());
        for (r, w) in read.summary.iter().zip(&written.summary) {
            assert_eq!(r.metric, w.metric);
            let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                (a, b) => a == b,
            };
            assert!(
                close(r.fulcrum, w.fulcrum)
                    && close(r.haproxy, w.haproxy)
                    && close(r.direct, w.direct),
                "{r:?}"
            );
        }
        let goals = |s: &ScenarioReport| s.goals.iter().map(|g| g.goal).collect::<Vec<_>>();
        assert_eq!(goals(read), goals(written));
    }
    let latest = std::fs::read_to_string(out.path().join("latest.md")).unwrap();
    for heading in ["## get: ", "## cookie: ", "## tcp-close: ", "## tcp-bulk: "] {
        assert!(latest.contains(heading), "{heading} missing from\n{latest}");
    }
    assert!(latest.contains("| throughput (req/s) |"), "{latest}");
    assert!(latest.contains("| throughput (MB/s) |"), "{latest}");
    assert!(latest.contains("- Goal: "), "{latest}");
    let svg = report
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "svg"));
    let svg = std::fs::read_to_string(svg.unwrap()).unwrap();
    assert!(svg.contains("Fulcrum") && svg.contains("HAProxy"));

    // Metrics on against off: both runs are Fulcrum, the second scraped.
    let mut metrics = quick_options(options.fulcrum.clone());
    metrics.scenarios = vec![Scenario::GetMetrics];
    check_metrics(&run_compare(&metrics).unwrap());
    assert_no_children();

    // A failure part-way (here the load generator) still stops every process.
    let mut failing = quick_options(options.fulcrum.clone());
    failing.load_cmd = PathBuf::from("/bin/false");
    let error = format!("{:#}", run_compare(&failing).unwrap_err());
    assert!(error.contains("/bin/false"), "{error}");
    assert_no_children();
}

fn quick_options(fulcrum: PathBuf) -> CompareOptions {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_fulcrum-bench"));
    let mut options = CompareOptions::quick(bench, fulcrum);
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        // One CPU: everything shares it; the flow is what is tested.
        options.load_cpu = 0;
    }
    options
}

fn check_report(report: &CompareReport, options: &CompareOptions) {
    assert_eq!(report.schema, SCHEMA);
    assert!(
        report.date.ends_with('Z') && report.date.len() == 20,
        "{}",
        report.date
    );
    assert!(!report.command.is_empty());
    let m = &report.machine;
    assert!(!m.cpu_model.is_empty() && m.cores >= 1 && !m.kernel.is_empty());
    assert!(
        m.haproxy_version.contains("HAProxy"),
        "{}",
        m.haproxy_version
    );
    assert!(
        m.fulcrum_version.starts_with("fulcrum "),
        "{}",
        m.fulcrum_version
    );
    assert!(m.clock_ticks_per_second > 0 && !m.clock_ticks_source.is_empty());
    assert!(report.settings.quick);
    assert_eq!(report.settings.rounds, 1);
    assert_eq!(report.settings.bulk_size_bytes, options.bulk_size);
    let quick = vec![
        Scenario::Get,
        Scenario::Cookie,
        Scenario::TcpClose,
        Scenario::TcpBulk,
    ];
    assert_eq!(report.settings.scenarios, quick);

    let scenarios: Vec<Scenario> = report.scenarios.iter().map(|s| s.scenario).collect();
    assert_eq!(scenarios, quick);
    for scenario in &report.scenarios {
        let name = scenario.scenario;
        // Every goal has a ratio to judge by; whether it is met means nothing in a quick run.
        assert_eq!(scenario.goals.len(), name.goals().len(), "{name}");
        for check in &scenario.goals {
            assert!(
                check.ratio.is_some() && check.met.is_some(),
                "{name}: {check:?}"
            );
        }
        if name == Scenario::TcpBulk {
            check_bulk(scenario, options);
            continue;
        }
        assert!(scenario.bulk_rounds.is_empty(), "{name}");
        assert_eq!(scenario.rounds.len(), 1, "{name}");
        let round = &scenario.rounds[0];
        for proxy in [&round.fulcrum, &round.haproxy] {
            let saturation = &proxy.saturation;
            assert!(saturation.load.requests > 0, "{name}: {saturation:?}");
            assert!(saturation.cpu.us_per_request.is_some(), "{name}");
            assert!(proxy.handshakes.is_none(), "{name}");
            if name == Scenario::Get {
                let fixed = proxy.fixed_rate.as_ref().unwrap();
                assert!(fixed.load.rate.is_some() && fixed.load.requests > 0);
                assert!(!fixed.load.distribution.is_empty());
                let idle = proxy.idle.as_ref().unwrap();
                assert_eq!(idle.connections, options.idle_connections);
                assert_eq!(idle.closed_early, 0);
                assert!(idle.rss_after_bytes > 0 && idle.bytes_per_connection.is_finite());
            } else {
                assert!(proxy.fixed_rate.is_none() && proxy.idle.is_none(), "{name}");
            }
        }
        let metrics: Vec<Metric> = scenario.summary.iter().map(|r| r.metric).collect();
        let expected = if name == Scenario::Get {
            vec![
                Metric::ThroughputRps,
                Metric::CpuUsPerRequest,
                Metric::ProxyCpuBusyPercent,
                Metric::LatencyP50Us,
                Metric::LatencyP90Us,
                Metric::LatencyP99Us,
                Metric::LatencyP999Us,
                Metric::RssBytesPerConnection,
                Metric::Errors,
            ]
        } else {
            vec![
                Metric::ThroughputRps,
                Metric::CpuUsPerRequest,
                Metric::ProxyCpuBusyPercent,
                Metric::Errors,
            ]
        };
        assert_eq!(metrics, expected, "{name}");
        for row in &scenario.summary {
            assert!(
                row.fulcrum.is_some() && row.haproxy.is_some(),
                "{name}: {row:?}"
            );
            if row.metric == Metric::Errors {
                // Both proxies answer every request of a quick run.
                assert_eq!((row.fulcrum, row.haproxy), (Some(0.0), Some(0.0)), "{name}");
            } else if row.metric.has_ratio() {
                assert!(row.ratio.is_some(), "{name}: {row:?}");
            }
        }
    }
}

/// `tcp-bulk`: one round of three streams, each of the whole size, and the proxies' CPU.
fn check_bulk(scenario: &ScenarioReport, options: &CompareOptions) {
    assert!(scenario.rounds.is_empty());
    assert_eq!(scenario.bulk_rounds.len(), 1);
    let round = &scenario.bulk_rounds[0];
    for run in [&round.direct, &round.fulcrum, &round.haproxy] {
        assert_eq!(run.transfer.bytes, options.bulk_size);
        assert!(run.transfer.megabytes_per_second > 0.0, "{run:?}");
    }
    assert!(round.direct.proxy_cpu.is_none());
    for run in [&round.fulcrum, &round.haproxy] {
        let cpu = run.proxy_cpu.as_ref().unwrap();
        assert!(cpu.seconds >= 0.0 && !cpu.source.is_empty(), "{cpu:?}");
        assert!(run.cpu_seconds_per_gib().is_some());
    }
    let metrics: Vec<Metric> = scenario.summary.iter().map(|r| r.metric).collect();
    assert_eq!(
        metrics,
        [
            Metric::ThroughputMegabytesPerSecond,
            Metric::CpuSecondsPerGib,
            Metric::ProxyCpuBusyPercent
        ]
    );
    let throughput = &scenario.summary[0];
    assert!(throughput.direct.is_some() && throughput.direct_ratio.is_some());
    assert!(throughput.ratio.is_some());
    let baselines: Vec<Baseline> = scenario.goals.iter().map(|g| g.goal.baseline).collect();
    assert_eq!(baselines, [Baseline::Direct, Baseline::Haproxy]);
}

/// `get-metrics`: one round of Fulcrum off then on, every scrape of the second good and counted.
fn check_metrics(report: &CompareReport) {
    let [scenario] = &report.scenarios[..] else {
        panic!("one scenario: {:?}", report.scenarios);
    };
    assert_eq!(scenario.scenario, Scenario::GetMetrics);
    assert!(scenario.rounds.is_empty() && scenario.bulk_rounds.is_empty());
    let [round] = &scenario.metrics_rounds[..] else {
        panic!("one round: {:?}", scenario.metrics_rounds);
    };
    assert!(
        round.off.saturation.scrapes.is_none(),
        "nobody scrapes metrics off"
    );
    let scrapes = round.on.saturation.scrapes.as_ref().unwrap();
    // `/metrics` and the stats JSON, at least once each in a 1 s run.
    assert_eq!(scrapes.targets.len(), 2, "{scrapes:?}");
    assert!(
        scrapes.ok() >= 2 && scrapes.ok() == scrapes.attempts(),
        "{scrapes:?}"
    );
    assert!(scrapes.targets.iter().all(|t| t.bytes > 0), "{scrapes:?}");
    for side in [&round.off, &round.on] {
        assert!(side.saturation.load.requests > 0);
        assert!(side.saturation.cpu.us_per_request.is_some());
        assert!(side.fixed_rate.is_none() && side.idle.is_none() && side.handshakes.is_none());
    }
    let row = |metric: Metric| {
        scenario
            .summary
            .iter()
            .find(|r| r.metric == metric)
            .unwrap()
    };
    let cpu = row(Metric::CpuUsPerRequest);
    assert!(cpu.fulcrum.is_some() && cpu.metrics_on.is_some() && cpu.metrics_ratio.is_some());
    assert_eq!(
        (cpu.haproxy, cpu.ratio),
        (None, None),
        "HAProxy does not run"
    );
    assert_eq!(row(Metric::Scrapes).metrics_on, Some(scrapes.ok() as f64));
    assert_eq!(row(Metric::Errors).metrics_on, Some(0.0));
    let [goal] = &scenario.goals[..] else {
        panic!("one goal: {:?}", scenario.goals);
    };
    assert_eq!(goal.goal.baseline, Baseline::MetricsOff);
    assert!(goal.ratio.is_some() && goal.met.is_some(), "{goal:?}");
    let markdown = render_markdown(report);
    assert!(
        markdown.starts_with("# Fulcrum, metrics on vs off, "),
        "{markdown}"
    );
    assert!(
        markdown.contains("| metric | Fulcrum | Fulcrum+metrics | metrics on/off |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("- Goal: metrics on costs ≤ 3% more CPU per request (µs)"),
        "{markdown}"
    );
}

/// Waits a little for killed children to finish dying, then fails if any is left.
fn assert_no_children() {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !children().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(children(), Vec::<String>::new(), "processes left running");
}

/// This process's living children, as `PID (COMMAND)` (zombies are not running anything).
fn children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // Fields after the command name: state (3), ppid (4).
        if fields.get(1) == Some(&me.as_str()) && fields.first() != Some(&"Z") {
            found.push(stat[..=close].to_owned());
        }
    }
    found
}
