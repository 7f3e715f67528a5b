//! The run: start the site, start the clients, then one control loop that injects a fault on
//! schedule, steps the open window (undo after the hold, close once healthy), and samples the
//! processes' memory; at the end, stop the clients, check every acknowledged write, and write
//! the report.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fulcrum_common::UtcTime;
use fulcrum_lab::seed004::load::thread_in;
use fulcrum_lab::seed004::{FRONT, NBD_PORT, Seed004, VIP1, vm_rss_kib};
use tracing::{info, warn};

use super::chart::{chart_file, soak_svg};
use super::clients::{self, Request, WORKERS_COUNT};
use super::markdown::render_markdown;
use super::nbd::{self, BLOCK, Client};
use super::report::{SCHEMA, SoakMachine, SoakReport, SoakSettings, classify, goals};
use super::rss::{Sampler, max_growth};
use super::site::Site;
use super::uploads::{self, Dirs};
use super::verify::{check_nbd, check_uploads};
use super::window::Window;
use super::{FaultKind, SoakOptions, faults};
use crate::harness::{cores, cpu_model_or_unknown, kernel, version_line, write_files};

/// The control loop's period: how often the VIPs are looked at during a window.
const TICK: Duration = Duration::from_millis(100);
/// How often the processes' memory is sampled.
const RSS_EVERY: Duration = Duration::from_secs(2);
/// The least calm after a window closes before the next fault.
const MIN_CALM: Duration = Duration::from_secs(5);
/// The volume's NBD export (seed 004's `nbd = { export = "data" }`).
const EXPORT: &str = "data";

/// Runs the soak and writes the files. Blocking; needs root (namespaces, VRRP, mounts).
pub fn run_soak(options: &SoakOptions) -> anyhow::Result<SoakReport> {
    validate(options)?;
    let started = UtcTime::now();
    let machine = SoakMachine {
        cpu_model: cpu_model_or_unknown(),
        cores: cores(),
        kernel: kernel(),
        fulcrum_version: version_line(&options.fulcrum, "--version")?,
        source: git_describe(),
    };
    info!(fulcrum = %machine.fulcrum_version, "starting seed 004");
    let mut site = Site::start(&options.fulcrum)?;
    let nbd_addr = SocketAddr::new(IpAddr::V4(VIP1), NBD_PORT);
    let slots = {
        let size = thread_in(&site.site.client, move || {
            Client::connect(nbd_addr, EXPORT).map(|c| {
                let size = c.size;
                c.close();
                size
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the NBD probe panicked"))?
        .map_err(|e| anyhow::anyhow!("the volume's NBD export does not answer: {e}"))?;
        size / BLOCK as u64
    };
    if slots == 0 {
        bail!("the volume's export is smaller than one block");
    }
    info!(slots, "site settled; load starting");

    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let dirs: Dirs = [
        ("A", site.site.a.uploads.clone()),
        ("B", site.site.b.uploads.clone()),
    ];
    let browsers = clients::start(&site.site.client, FRONT, &stop);
    let uploader = uploads::start(
        &site.site.client,
        FRONT,
        WORKERS_COUNT,
        dirs.clone(),
        t0,
        &stop,
    );
    let writer = nbd::start_writer(
        &site.site.client,
        nbd_addr,
        EXPORT,
        WORKERS_COUNT + 1,
        slots,
        &stop,
    );

    let (windows, sampler) = control_loop(&mut site.site, options, t0);
    let ran_s = t0.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    info!(ran_s, "load stopped; checking the writes");
    let mut requests: Vec<Request> = Vec::new();
    for worker in browsers {
        requests.extend(worker.join().unwrap_or_default());
    }
    let uploaded = uploader.join().unwrap_or_default();
    let written = writer.join().unwrap_or_default();
    let upload_check = check_uploads(t0, &uploaded, &dirs);
    requests.extend(uploaded.requests);
    requests.extend(written.requests);
    requests.sort_by_key(|r| r.started);

    let nbd_check = check_nbd(&site.site.client, nbd_addr, EXPORT, &written.writes, slots);
    let memory = sampler.finish(options.warmup);
    let max_growth_pct = max_growth(&memory);
    let classified = classify(t0, &requests, &windows);
    let goals = goals(
        &classified.totals,
        &upload_check,
        &nbd_check,
        max_growth_pct,
        &classified.faults,
    );
    // The site's directory goes with it: keep what explains a lost write or a failure.
    let kept_logs = if upload_check.lost + nbd_check.lost > 0
        || classified.totals.failed_outside > 0
        || classified.faults.iter().any(|f| !f.recovered)
    {
        match keep_logs(&site.site, &started) {
            Ok(dir) => {
                warn!(dir = %dir.display(), "a goal failed: the site's logs are kept");
                Some(dir)
            }
            Err(error) => {
                warn!(error = format!("{error:#}"), "cannot keep the site's logs");
                None
            }
        }
    } else {
        None
    };
    drop(site);

    let mut report = SoakReport {
        schema: SCHEMA.to_owned(),
        date: started.rfc3339(),
        command: options.command.clone(),
        machine,
        settings: SoakSettings {
            duration_s: options.duration.as_secs_f64(),
            fault_every_s: options.fault_every.as_secs_f64(),
            hold_s: options.hold.as_secs_f64(),
            window_cap_s: options.window_cap.as_secs_f64(),
            warmup_s: options.warmup.as_secs_f64(),
            faults: options.faults.clone(),
            node: options.node.map(|n| n.name().to_owned()),
            fulcrum: options.fulcrum.clone(),
        },
        ran_s,
        faults: classified.faults,
        requests: classified.totals,
        failed_outside: classified.failed_outside,
        uploads: upload_check,
        nbd_writes: nbd_check,
        memory,
        max_growth_pct,
        timeline: classified.timeline,
        goals,
        kept_logs,
        files: Vec::new(),
    };
    if let Some(out) = &options.out {
        let svg = soak_svg(&report)?;
        write_files(
            out,
            "soak",
            &started.date(),
            &mut report,
            |r| &mut r.files,
            render_markdown,
        )?;
        let chart = out.join(chart_file(&report.date));
        std::fs::write(&chart, svg).with_context(|| format!("cannot write {}", chart.display()))?;
        report.files.push(chart);
        info!(dir = %out.display(), "results written");
    }
    Ok(report)
}

/// Runs until the duration is over (or Ctrl-C), then until the last window closes. Returns the
/// windows and the memory samples.
fn control_loop(site: &mut Seed004, options: &SoakOptions, t0: Instant) -> (Vec<Window>, Sampler) {
    let mut sampler = Sampler::new(t0);
    let mut windows: Vec<Window> = Vec::new();
    let mut occurrences = vec![0usize; FaultKind::ALL.len()];
    let mut next_fault = t0 + options.fault_every;
    let mut next_rss = t0;
    let end = t0 + options.duration;
    loop {
        let now = Instant::now();
        if now >= next_rss {
            next_rss += RSS_EVERY;
            sample(site, &mut sampler, now);
        }
        let open = windows.last_mut().filter(|w| w.closed.is_none());
        let stopping = now >= end || options.cancel.load(Relaxed);
        match open {
            Some(window) => {
                window.step(site);
            }
            None if stopping => break,
            None => {
                let calm_since = windows.last().and_then(|w| w.closed);
                let due = calm_since.map_or(next_fault, |c| next_fault.max(c + MIN_CALM));
                // A fault only when its window has a period to close in before the load stops.
                if now >= due && due + options.fault_every <= end {
                    let kind = options.faults[windows.len() % options.faults.len()];
                    let slot = FaultKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
                    let node = faults::target(kind, occurrences[slot], options.node);
                    occurrences[slot] += 1;
                    windows.push(Window::open(
                        site,
                        windows.len() + 1,
                        kind,
                        node,
                        options.hold,
                        options.window_cap,
                    ));
                    while next_fault <= now {
                        next_fault += options.fault_every;
                    }
                }
            }
        }
        if stopping && windows.last().is_none_or(|w| w.closed.is_some()) {
            break;
        }
        std::thread::sleep(TICK);
    }
    (windows, sampler)
}

/// Copies each node's log, the alerts received and the site's state to a directory under the
/// system's temp dir (not `--out`: megabytes of logs do not belong with the report).
fn keep_logs(site: &Seed004, started: &UtcTime) -> anyhow::Result<PathBuf> {
    let stamp: String = started
        .rfc3339()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let dir = std::env::temp_dir().join(format!("fulcrum-soak-{stamp}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, node) in [
        ("lvs", &site.lvs.fulcrum),
        ("A", &site.a.fulcrum),
        ("B", &site.b.fulcrum),
    ] {
        std::fs::write(dir.join(format!("{name}.log")), node.log_text())?;
    }
    let alerts = serde_json::to_string_pretty(&site.alerts.alerts())?;
    std::fs::write(dir.join("alerts.json"), alerts)?;
    std::fs::write(dir.join("site.txt"), site.report())?;
    Ok(dir)
}

/// One memory sample of every Fulcrum process that runs.
fn sample(site: &mut Seed004, sampler: &mut Sampler, now: Instant) {
    let processes: Vec<(&str, u32, u64)> = site
        .fulcrum_pids()
        .into_iter()
        .filter_map(|(node, pid)| {
            let pid = pid?;
            Some((node, pid, vm_rss_kib(pid)?))
        })
        .collect();
    sampler.sample(now, &processes);
}

/// `git describe --always --dirty` in the current directory: which code the binary was most
/// likely built from (a dirty tree says so). Without optional locks, so that it never rewrites
/// the index's stat cache under a developer's feet.
fn git_describe() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn validate(options: &SoakOptions) -> anyhow::Result<()> {
    if options.faults.is_empty() {
        bail!("no fault kind selected");
    }
    if options.fault_every < Duration::from_secs(10) {
        bail!("--fault-every must be at least 10s: a fault needs time to be undone and healed");
    }
    if options.hold >= options.fault_every {
        bail!("--hold must be shorter than --fault-every");
    }
    if options.duration < 2 * options.fault_every {
        bail!("--duration must be at least twice --fault-every, for one fault and its window");
    }
    if !options.fulcrum.is_file() {
        bail!(
            "no fulcrum binary at {} (cargo build --release, or --fulcrum PATH)",
            options.fulcrum.display()
        );
    }
    Ok(())
}
