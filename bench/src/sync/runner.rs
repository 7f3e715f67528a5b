//! The rounds: each measures the latency (Fulcrum pair, then lsyncd → rsync daemon), the
//! initial sync (Fulcrum, then `rsync -a`) and the delta (Fulcrum, then `rsync -a`), the order of
//! the two alternating from one round to the next.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use fulcrum_common::UtcTime;
use tracing::{info, warn};

use super::markdown::render_markdown;
use super::process::{
    Node, connected, pair, start_lsyncd, start_rsync_daemon, sync_status, wait_pair,
};
use super::report::{
    DeltaRun, InitialRun, LatencyRun, SCHEMA, SyncMachine, SyncReport, SyncSettings, SyncSummary,
    Tool, mib_per_s, percentile,
};
use super::tree::{
    change_content, change_in_place, change_regions, list_tree, same_bytes, same_listing,
    verify_copy, write_random_file, write_tree,
};
use super::{DELTA_REGIONS, SyncOptions};
use crate::harness::{
    cores, cpu_model_or_unknown, filesystem_of, kernel, version_line, write_files,
};

/// How long a pair may take to connect, a change to arrive, a tree to be copied.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);
const CHANGE_PATIENCE: Duration = Duration::from_secs(10);
const COPY_PATIENCE: Duration = Duration::from_secs(600);
/// How often B's copy of a latency change is read: the resolution of the latency.
const READ_EVERY: Duration = Duration::from_micros(100);
/// Pause between two latency changes, once the previous one has arrived.
const GAP: Duration = Duration::from_millis(20);

/// Runs every round and writes the files. Blocking.
pub fn run_sync(options: &SyncOptions) -> anyhow::Result<SyncReport> {
    if options.rounds == 0 || options.changes == 0 || options.files == 0 {
        bail!("--rounds, --changes and --files must be at least 1");
    }
    if !options.fulcrum.is_file() {
        bail!(
            "fulcrum: no executable at {} (build it with `cargo build --release --bin fulcrum`)",
            options.fulcrum.display()
        );
    }
    let started = UtcTime::now();
    let machine = describe_machine(options)?;
    info!(fulcrum = %machine.fulcrum_version, rsync = %machine.rsync_version, lsyncd = %machine.lsyncd_version, "measuring sync");
    let work = tempfile::Builder::new()
        .prefix("fulcrum-sync-")
        .tempdir_in(&options.dir)
        .with_context(|| format!("cannot create a temp dir in {}", options.dir.display()))?;
    let tree = work.path().join("tree");
    let t = Instant::now();
    let (files, tree_bytes) = write_tree(&tree, options.files, options.tree_bytes)?;
    info!(
        files,
        bytes = tree_bytes,
        seconds = t.elapsed().as_secs_f64(),
        "tree written"
    );
    let old = work.path().join("delta-old.bin");
    write_random_file(&old, options.delta_file_bytes, 7)?;
    let bench = Bench {
        options,
        work: work.path(),
        tree: &tree,
        files,
        tree_bytes,
        old: &old,
    };

    let (mut latency, mut initial, mut delta) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=options.rounds {
        let order = if round % 2 == 1 {
            [Tool::Fulcrum, Tool::Reference]
        } else {
            [Tool::Reference, Tool::Fulcrum]
        };
        for tool in order {
            check_cancel(options)?;
            let run = bench.latency(round, tool);
            info!(round, %tool, p50_ms = ?run.p50_ms, p99_ms = ?run.p99_ms, error = ?run.error, "latency");
            latency.push(run);
        }
        for tool in order {
            check_cancel(options)?;
            let run = bench.initial(round, tool);
            info!(round, %tool, seconds = ?run.seconds, error = ?run.error, "initial sync");
            initial.push(run);
        }
        for tool in order {
            check_cancel(options)?;
            let run = bench.delta(round, tool);
            info!(round, %tool, bytes_sent = ?run.bytes_sent, error = ?run.error, "delta");
            delta.push(run);
        }
    }
    let delay_ms = options.delay.as_secs_f64() * 1000.0;
    let summary = SyncSummary::new(&latency, &initial, &delta, delay_ms);
    let mut report = SyncReport {
        schema: SCHEMA.to_owned(),
        date: started.rfc3339(),
        command: options.command.clone(),
        machine,
        settings: SyncSettings {
            rounds: options.rounds,
            delay_ms,
            changes: options.changes,
            change_bytes: super::CHANGE_BYTES,
            files,
            tree_bytes,
            delta_file_bytes: options.delta_file_bytes,
            delta_change_bytes: options.delta_change_bytes,
            delta_regions: DELTA_REGIONS,
            dir: options.dir.clone(),
            fulcrum: options.fulcrum.clone(),
            rsync: options.tools.rsync.clone(),
            lsyncd: options.tools.lsyncd.clone(),
        },
        latency,
        initial,
        delta,
        summary,
        files: Vec::new(),
    };
    if let Some(out) = &options.out {
        write_files(
            out,
            "sync",
            &started.date(),
            &mut report,
            |r| &mut r.files,
            render_markdown,
        )?;
    }
    Ok(report)
}

fn check_cancel(options: &SyncOptions) -> anyhow::Result<()> {
    if options.cancel.load(Relaxed) {
        bail!("interrupted: every process was stopped, nothing was written");
    }
    Ok(())
}

struct Bench<'a> {
    options: &'a SyncOptions,
    work: &'a Path,
    tree: &'a Path,
    files: usize,
    tree_bytes: u64,
    old: &'a Path,
}

impl Bench<'_> {
    /// A fresh directory for one run, removed by the caller.
    fn run_dir(&self, round: usize, what: &str, tool: Tool) -> anyhow::Result<PathBuf> {
        let dir = self.work.join(format!("{round}-{what}-{tool:?}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }

    fn latency(&self, round: usize, tool: Tool) -> LatencyRun {
        let measured = self.run_dir(round, "latency", tool).and_then(|dir| {
            let result = match tool {
                Tool::Fulcrum => self.latency_fulcrum(&dir, round),
                Tool::Reference => self.latency_lsyncd(&dir, round),
            };
            let _ = std::fs::remove_dir_all(&dir);
            result
        });
        let changes = self.options.changes;
        match measured {
            Ok(samples) => LatencyRun {
                round,
                tool,
                changes,
                p50_ms: percentile(&samples, 50.0),
                p99_ms: percentile(&samples, 99.0),
                mean_ms: Some(samples.iter().sum::<f64>() / samples.len().max(1) as f64),
                max_ms: samples.iter().copied().reduce(f64::max),
                error: None,
            },
            Err(error) => {
                warn!(round, %tool, error = format!("{error:#}"), "latency run failed");
                LatencyRun {
                    round,
                    tool,
                    changes,
                    p50_ms: None,
                    p99_ms: None,
                    mean_ms: None,
                    max_ms: None,
                    error: Some(format!("{error:#}")),
                }
            }
        }
    }

    fn latency_fulcrum(&self, dir: &Path, round: usize) -> anyhow::Result<Vec<f64>> {
        let (a, b) = pair(dir, dir.join("a"), dir.join("b"), self.options.delay)?;
        let _ra = a.start(&self.options.fulcrum)?;
        let _rb = b.start(&self.options.fulcrum)?;
        wait_pair(
            &a,
            &b,
            CONNECT_PATIENCE,
            Duration::from_millis(20),
            connected,
        )?;
        self.changes(&a.path, &b.path, round)
    }

    fn latency_lsyncd(&self, dir: &Path, round: usize) -> anyhow::Result<Vec<f64>> {
        let (source, target) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&source)?;
        let (_daemon, url) = start_rsync_daemon(&self.options.tools.rsync, dir, &target)?;
        let mut lsyncd = start_lsyncd(
            &self.options.tools.lsyncd,
            dir,
            &source,
            &url,
            self.options.delay,
        )?;
        // lsyncd starts with a full rsync, then watches: the first file through is the sign.
        std::fs::write(source.join("ready"), b"ready")?;
        let deadline = Instant::now() + CONNECT_PATIENCE;
        while !target.join("ready").exists() {
            lsyncd.check_alive()?;
            if Instant::now() >= deadline {
                bail!(
                    "lsyncd did not copy a first file within {CONNECT_PATIENCE:?}:\n{}",
                    lsyncd.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let samples = self.changes(&source, &target, round);
        lsyncd.terminate()?;
        samples
    }

    /// Rewrites `a/change.bin` with new 4 KiB `changes` times, each time reading B's copy every
    /// 100 µs until it holds the new bytes; the time from before the write until then, in ms.
    /// Each version gets its own whole-second mtime: rsync's quick check (lsyncd runs rsync with
    /// `-t`) would skip a same-size file rewritten within the same second.
    fn changes(&self, a: &Path, b: &Path, round: usize) -> anyhow::Result<Vec<f64>> {
        let (on_a, on_b) = (a.join("change.bin"), b.join("change.bin"));
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut samples = Vec::with_capacity(self.options.changes);
        for i in 0..self.options.changes {
            let content = change_content(round, i);
            let start = Instant::now();
            let mut file = File::create(&on_a)?;
            file.write_all(&content)?;
            file.set_modified(epoch + Duration::from_secs(i as u64))?;
            drop(file);
            loop {
                if std::fs::read(&on_b).is_ok_and(|d| d == content) {
                    break;
                }
                if start.elapsed() > CHANGE_PATIENCE {
                    bail!("change {i} did not reach B within {CHANGE_PATIENCE:?}");
                }
                std::thread::sleep(READ_EVERY);
            }
            samples.push(start.elapsed().as_secs_f64() * 1000.0);
            std::thread::sleep(GAP);
        }
        Ok(samples)
    }

    fn initial(&self, round: usize, tool: Tool) -> InitialRun {
        let measured = self.run_dir(round, "initial", tool).and_then(|dir| {
            let result = match tool {
                Tool::Fulcrum => self.initial_fulcrum(&dir),
                Tool::Reference => self.initial_rsync(&dir),
            };
            let _ = std::fs::remove_dir_all(&dir);
            result
        });
        let (seconds, error) = match measured {
            Ok(seconds) => (Some(seconds), None),
            Err(error) => (None, Some(format!("{error:#}"))),
        };
        InitialRun {
            round,
            tool,
            files: self.files,
            bytes: self.tree_bytes,
            seconds,
            mib_per_s: seconds.map(|s| mib_per_s(self.tree_bytes, s)),
            error,
        }
    }

    /// A holds the tree and has indexed it; the time runs from starting B on an empty directory
    /// until A has nothing pending for B and B lists the same files and sizes. The bytes are
    /// compared after the clock stops.
    fn initial_fulcrum(&self, dir: &Path) -> anyhow::Result<f64> {
        let (a, b) = pair(dir, self.tree.to_owned(), dir.join("b"), self.options.delay)?;
        let listing = list_tree(self.tree)?;
        let _ra = a.start(&self.options.fulcrum)?;
        wait_indexed(&a, self.files)?;
        let start = Instant::now();
        let mut rb = b.start(&self.options.fulcrum)?;
        let deadline = start + COPY_PATIENCE;
        loop {
            let (sa, sb) = (sync_status(&a.socket())?, sync_status(&b.socket())?);
            if connected(&sa, &sb) && sa.pending == 0 && same_listing(&listing, &b.path) {
                break;
            }
            rb.check_alive()?;
            if Instant::now() >= deadline {
                bail!("B did not catch up within {COPY_PATIENCE:?}: a {sa:?}, b {sb:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let seconds = start.elapsed().as_secs_f64();
        verify_copy(self.tree, &b.path)?;
        Ok(seconds)
    }

    fn initial_rsync(&self, dir: &Path) -> anyhow::Result<f64> {
        let target = dir.join("b");
        let (_daemon, url) = start_rsync_daemon(&self.options.tools.rsync, dir, &target)?;
        let source = format!("{}/", self.tree.display());
        let start = Instant::now();
        run_rsync(&self.options.tools.rsync, &["-a"], &source, &url)?;
        let seconds = start.elapsed().as_secs_f64();
        verify_copy(self.tree, &target)?;
        Ok(seconds)
    }

    fn delta(&self, round: usize, tool: Tool) -> DeltaRun {
        let measured = self.run_dir(round, "delta", tool).and_then(|dir| {
            let result = match tool {
                Tool::Fulcrum => self.delta_fulcrum(&dir, round),
                Tool::Reference => self.delta_rsync(&dir, round),
            };
            let _ = std::fs::remove_dir_all(&dir);
            result
        });
        let changed_bytes = self.options.delta_change_bytes;
        match measured {
            Ok(run) => DeltaRun {
                round,
                tool,
                changed_bytes,
                ..run
            },
            Err(error) => DeltaRun {
                round,
                tool,
                changed_bytes,
                bytes_sent: None,
                bytes_received: None,
                bytes_saved_by_delta: None,
                seconds: None,
                error: Some(format!("{error:#}")),
            },
        }
    }

    fn regions(&self) -> Vec<(u64, u64)> {
        change_regions(
            self.options.delta_file_bytes,
            self.options.delta_change_bytes,
            DELTA_REGIONS,
        )
    }

    /// B gets the old file from A first (not counted); then A's copy is changed in place and
    /// the counters' growth until B holds the new bytes is the delta's cost.
    fn delta_fulcrum(&self, dir: &Path, round: usize) -> anyhow::Result<DeltaRun> {
        let (a, b) = pair(dir, dir.join("a"), dir.join("b"), self.options.delay)?;
        std::fs::create_dir_all(&a.path)?;
        let (on_a, on_b) = (a.path.join("big.bin"), b.path.join("big.bin"));
        std::fs::copy(self.old, &on_a)?;
        let _ra = a.start(&self.options.fulcrum)?;
        let _rb = b.start(&self.options.fulcrum)?;
        let size = self.options.delta_file_bytes;
        wait_pair(
            &a,
            &b,
            COPY_PATIENCE,
            Duration::from_millis(20),
            |sa, sb| {
                connected(sa, sb)
                    && sa.pending == 0
                    && sb.files_received >= 1
                    && on_b.metadata().is_ok_and(|m| m.len() == size)
            },
        )?;
        if !same_bytes(self.old, &on_b)? {
            bail!("B's first copy of the file differs from A's");
        }
        let (a0, b0) = (sync_status(&a.socket())?, sync_status(&b.socket())?);
        let start = Instant::now();
        change_in_place(&on_a, &self.regions(), round as u64)?;
        let (a1, b1) = wait_pair(&a, &b, COPY_PATIENCE, Duration::from_millis(5), |sa, sb| {
            sa.pending == 0 && sb.files_received > b0.files_received
        })?;
        let seconds = start.elapsed().as_secs_f64();
        if !same_bytes(&on_a, &on_b)? {
            bail!("B's copy differs from A's after the change");
        }
        Ok(DeltaRun {
            round,
            tool: Tool::Fulcrum,
            changed_bytes: 0,
            bytes_sent: Some(a1.bytes_sent - a0.bytes_sent),
            bytes_received: Some(b1.bytes_received - b0.bytes_received),
            bytes_saved_by_delta: Some(b1.bytes_saved_by_delta - b0.bytes_saved_by_delta),
            seconds: Some(seconds),
            error: None,
        })
    }

    /// The daemon's module holds the old file (same size and mtime as the source had); the
    /// source is changed in place, and `rsync -a --stats` sends it.
    fn delta_rsync(&self, dir: &Path, round: usize) -> anyhow::Result<DeltaRun> {
        let (source, target) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&source)?;
        std::fs::create_dir_all(&target)?;
        let on_a = source.join("big.bin");
        std::fs::copy(self.old, &on_a)?;
        std::fs::copy(self.old, target.join("big.bin"))?;
        let (_daemon, url) = start_rsync_daemon(&self.options.tools.rsync, dir, &target)?;
        let old_mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        File::options()
            .write(true)
            .open(target.join("big.bin"))?
            .set_modified(old_mtime)?;
        change_in_place(&on_a, &self.regions(), round as u64)?;
        let start = Instant::now();
        let stats = run_rsync(
            &self.options.tools.rsync,
            &["-a", "--stats"],
            &format!("{}/", source.display()),
            &url,
        )?;
        let seconds = start.elapsed().as_secs_f64();
        if !same_bytes(&on_a, &target.join("big.bin"))? {
            bail!("the daemon's copy differs from the source after rsync");
        }
        Ok(DeltaRun {
            round,
            tool: Tool::Reference,
            changed_bytes: 0,
            bytes_sent: stat_number(&stats, "Total bytes sent:"),
            bytes_received: stat_number(&stats, "Total bytes received:"),
            bytes_saved_by_delta: None,
            seconds: Some(seconds),
            error: None,
        })
    }
}

/// Waits until A has indexed its tree: its queue for B holds at least `files` changes and has
/// stopped growing for half a second.
fn wait_indexed(a: &Node, files: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + COPY_PATIENCE;
    let (mut last, mut since) = (u64::MAX, Instant::now());
    loop {
        let pending = sync_status(&a.socket())?.pending;
        if pending != last {
            (last, since) = (pending, Instant::now());
        } else if pending >= files as u64 && since.elapsed() >= Duration::from_millis(500) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("A did not index its {files} files within {COPY_PATIENCE:?} (pending {pending})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `rsync ARGS SOURCE TARGET`; returns its stdout.
fn run_rsync(rsync: &Path, args: &[&str], source: &str, target: &str) -> anyhow::Result<String> {
    let out = Command::new(rsync)
        .args(args)
        .arg(source)
        .arg(target)
        .output()
        .context("cannot run rsync")?;
    if !out.status.success() {
        bail!(
            "rsync {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number after `label` in rsync's `--stats` (`Total bytes sent: 1,234,567`).
pub(crate) fn stat_number(stats: &str, label: &str) -> Option<u64> {
    let line = stats.lines().find(|l| l.trim_start().starts_with(label))?;
    let digits: String = line[line.find(label)? + label.len()..]
        .chars()
        .filter(|c| !matches!(c, ',' | '.' | ' '))
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn describe_machine(options: &SyncOptions) -> anyhow::Result<SyncMachine> {
    Ok(SyncMachine {
        cpu_model: cpu_model_or_unknown(),
        cores: cores(),
        kernel: kernel(),
        filesystem: filesystem_of(&options.dir),
        fulcrum_version: version_line(&options.fulcrum, "version")?,
        rsync_version: version_line(&options.tools.rsync, "--version")?,
        lsyncd_version: version_line(&options.tools.lsyncd, "--version")?,
    })
}

#[cfg(test)]
mod tests {
    use super::stat_number;

    #[test]
    fn reads_rsync_stats() {
        let stats = "Number of files: 2 (reg: 1, dir: 1)\nTotal bytes sent: 1,123,456\nTotal bytes received: 12,345\n";
        assert_eq!(stat_number(stats, "Total bytes sent:"), Some(1_123_456));
        assert_eq!(stat_number(stats, "Total bytes received:"), Some(12_345));
        assert_eq!(stat_number(stats, "Total file size:"), None);
    }
}
