//! The rounds: each runs qemu-nbd, a Fulcrum primary alone, then a Fulcrum pair, each on fresh
//! backing files, with the same writes; the pair's secondary is then stopped, the primary
//! written, and the secondary started again to time the resync.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fulcrum_common::UtcTime;
use tempfile::NamedTempFile;
use tracing::{info, warn};

use super::load::{fio_latency, nbdcopy_write};
use super::markdown::render_markdown;
use super::process::{
    EXPORT, Node, Running, free_port, pair_nodes, start_qemu_nbd, sync_disks, volume_size,
};
use super::report::{
    LatencyRun, NbdMachine, NbdReport, NbdRun, NbdSettings, NbdSummary, ResyncRun, SCHEMA,
    WriteRun, mib_per_s,
};
use super::status::wait_status;
use super::{BLOCK, NbdOptions, Server};
use crate::harness::{
    cores, cpu_model_or_unknown, filesystem_of, free_page_reporting, kernel, version_line,
    warn_if_free_page_reporting, write_files,
};

/// How long a pair may take to connect, and a resync to finish.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);
const RESYNC_PATIENCE: Duration = Duration::from_secs(600);
/// How often the resync's end is polled: the resolution of its time.
const POLL: Duration = Duration::from_millis(10);

/// Runs every round and writes the files. Blocking.
pub fn run_nbd(options: &NbdOptions) -> anyhow::Result<NbdReport> {
    validate(options)?;
    let started = UtcTime::now();
    let machine = describe_machine(options)?;
    info!(fulcrum = %machine.fulcrum_version, qemu_nbd = %machine.qemu_nbd_version, "measuring NBD");
    warn_if_free_page_reporting();
    let work = tempfile::Builder::new()
        .prefix("fulcrum-nbd-")
        .tempdir_in(&options.dir)
        .with_context(|| format!("cannot create a temp dir in {}", options.dir.display()))?;
    let source = write_source(&options.source_dir, options.size)?;
    warm_up(options, source.path(), work.path())?;

    let mut runs = Vec::new();
    let mut resyncs = Vec::new();
    for round in 1..=options.rounds {
        for server in Server::ALL {
            if options.cancel.load(Relaxed) {
                bail!("interrupted: every server was stopped, nothing was written");
            }
            let dir = work.path().join(format!("{round}-{server:?}"));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let bench = Round {
                options,
                source: source.path(),
                dir: &dir,
            };
            let (measured, resync) = match server {
                Server::QemuNbd => (bench.qemu_nbd(false), None),
                Server::QemuNbdDirect => (bench.qemu_nbd(true), None),
                Server::FulcrumAlone => (bench.fulcrum_alone(), None),
                Server::FulcrumPair => {
                    let (measured, resync) = bench.fulcrum_pair();
                    (measured, Some(resync))
                }
            };
            let run = match measured {
                Ok((write, latency)) => {
                    info!(round, %server, mib_per_s = write.mib_per_s, p99_us = ?latency.as_ref().map(|l| l.p99_us), "run done");
                    NbdRun {
                        round,
                        server,
                        write: Some(write),
                        latency,
                        error: None,
                    }
                }
                Err(error) => {
                    warn!(round, %server, error = format!("{error:#}"), "run failed");
                    NbdRun {
                        round,
                        server,
                        write: None,
                        latency: None,
                        error: Some(format!("{error:#}")),
                    }
                }
            };
            runs.push(run);
            if let Some(resync) = resync {
                let resync = match resync {
                    Ok(resync) => {
                        info!(round, seconds = ?resync.seconds, mib_per_s = ?resync.mib_per_s, "resync done");
                        ResyncRun { round, ..resync }
                    }
                    Err(error) => {
                        warn!(round, error = format!("{error:#}"), "resync failed");
                        failed_resync(round, &error)
                    }
                };
                resyncs.push(resync);
            }
            // Two 1 GiB files per pair: keep the disk's use to one round's.
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    if let Some(error) = runs.iter().find_map(|r| r.error.as_ref())
        && runs.iter().all(|r| r.error.is_some())
    {
        bail!("every run failed; the first: {error}");
    }

    let summary = NbdSummary::new(&runs, &resyncs);
    let tools = &options.tools;
    let mut report = NbdReport {
        schema: SCHEMA.to_owned(),
        date: started.rfc3339(),
        command: options.command.clone(),
        machine,
        settings: NbdSettings {
            rounds: options.rounds,
            size_bytes: options.size,
            request_size_bytes: options.request_size,
            connections: options.connections,
            latency_duration_s: if tools.fio.is_some() {
                options.latency_duration.as_secs_f64()
            } else {
                0.0
            },
            dir: options.dir.clone(),
            secondary_dir: options.secondary_dir.clone(),
            source_dir: options.source_dir.clone(),
            fulcrum: options.fulcrum.clone(),
            qemu_nbd: tools.qemu_nbd.clone(),
            nbdcopy: tools.nbdcopy.clone(),
            fio: tools.fio.clone(),
        },
        runs,
        resyncs,
        summary,
        files: Vec::new(),
    };
    if let Some(out) = &options.out {
        write_files(
            out,
            "nbd",
            &started.date(),
            &mut report,
            |r| &mut r.files,
            render_markdown,
        )?;
        info!(dir = %out.display(), "results written");
    }
    Ok(report)
}

fn validate(options: &NbdOptions) -> anyhow::Result<()> {
    if options.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if options.size < BLOCK || !options.size.is_multiple_of(BLOCK) {
        bail!("--size must be a non-zero multiple of 4 KiB (Fulcrum replicates 4 KiB blocks)");
    }
    if options.request_size == 0 || options.connections == 0 {
        bail!("--request-size and --connections must be above zero");
    }
    if !options.fulcrum.is_file() {
        bail!(
            "fulcrum: no executable at {} (build it with `cargo build --release --bin fulcrum`)",
            options.fulcrum.display()
        );
    }
    Ok(())
}

/// One server's run in one round.
struct Round<'a> {
    options: &'a NbdOptions,
    source: &'a Path,
    dir: &'a Path,
}

type Measured = anyhow::Result<(WriteRun, Option<LatencyRun>)>;

impl Round<'_> {
    fn qemu_nbd(&self, direct: bool) -> Measured {
        let size = volume_size(self.options.size);
        let (qemu, addr) = start_qemu_nbd(&self.options.tools.qemu_nbd, self.dir, size, direct)?;
        let measured = self.measure(addr)?;
        qemu.terminate()?;
        Ok(measured)
    }

    fn fulcrum_alone(&self) -> Measured {
        // `peer` is a port nothing listens on: the primary carries on alone, as after a loss.
        let node = Node {
            role: "primary",
            dir: self.dir.join("primary"),
            backing: self.dir.join("primary").join("volume.img"),
            listen: free_port()?,
            peer: free_port()?,
            nbd: Some(free_port()?),
            size: volume_size(self.options.size),
            al_extents: self.options.al_extents,
        };
        let primary = node.start(&self.options.fulcrum)?;
        let nbd = wait_primary(&node, &primary)?;
        let measured = self.measure(nbd)?;
        primary.terminate()?;
        Ok(measured)
    }

    /// The pair's writes, then its resync (measured only if the writes were).
    fn fulcrum_pair(&self) -> (Measured, anyhow::Result<ResyncRun>) {
        // Removed, with the secondary's backing file, when the pair is done.
        let secondary_dir = tempfile::Builder::new()
            .prefix("fulcrum-nbd-secondary-")
            .tempdir_in(&self.options.secondary_dir)
            .with_context(|| {
                format!(
                    "cannot create a temp dir in {}",
                    self.options.secondary_dir.display()
                )
            });
        let started = (|| {
            let backing = secondary_dir
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let (primary_node, secondary_node) = pair_nodes(
                self.dir,
                secondary_backing(self.dir, backing.path())?,
                volume_size(self.options.size),
                self.options.al_extents,
            )?;
            let primary = primary_node.start(&self.options.fulcrum)?;
            let nbd = wait_primary(&primary_node, &primary)?;
            let secondary = secondary_node.start(&self.options.fulcrum)?;
            wait_status(
                &primary_node.socket(),
                EXPORT,
                CONNECT_PATIENCE,
                POLL,
                |s| s.in_sync(),
            )
            .context("the pair did not connect UpToDate")?;
            let measured = self.measure(nbd)?;
            anyhow::Ok((
                primary_node,
                secondary_node,
                primary,
                secondary,
                nbd,
                measured,
            ))
        })();
        match started {
            Ok((primary_node, secondary_node, primary, secondary, nbd, measured)) => {
                let resync = self.resync(&primary_node, &secondary_node, secondary, nbd);
                let stopped = primary.terminate();
                (stopped.map(|()| measured), resync)
            }
            Err(error) => {
                let resync = Err(anyhow::anyhow!("the pair did not run: {error:#}"));
                (Err(error), resync)
            }
        }
    }

    /// Stops the secondary, writes `size` on the primary, starts the secondary again and times
    /// it until both nodes are Connected and UpToDate.
    fn resync(
        &self,
        primary_node: &Node,
        secondary_node: &Node,
        secondary: Running,
        nbd: SocketAddr,
    ) -> anyhow::Result<ResyncRun> {
        let options = self.options;
        secondary.terminate()?;
        wait_status(
            &primary_node.socket(),
            EXPORT,
            CONNECT_PATIENCE,
            POLL,
            |s| s.connection != "Connected",
        )
        .context("the primary did not notice its secondary leave")?;
        nbdcopy_write(
            &options.tools.nbdcopy,
            self.source,
            options.size,
            nbd,
            options.request_size,
            options.connections,
        )
        .context("cannot write while the secondary is away")?;
        // The primary marks its writes out of sync a moment after acknowledging them.
        let behind = wait_status(
            &primary_node.socket(),
            EXPORT,
            CONNECT_PATIENCE,
            POLL,
            |s| s.out_of_sync_bytes >= options.size,
        )
        .context("the writes made without the secondary are not all marked out of sync")?;
        sync_disks()?;

        let started = Instant::now();
        let mut secondary = secondary_node.start(&options.fulcrum)?;
        let mut sync_started = None;
        let deadline = started + RESYNC_PATIENCE;
        loop {
            let primary = super::status::volume_status(&primary_node.socket(), EXPORT)?;
            if sync_started.is_none() && primary.syncing() {
                sync_started = Some(Instant::now());
            }
            if primary.in_sync()
                && super::status::volume_status(&secondary_node.socket(), EXPORT)
                    .is_ok_and(|s| s.in_sync())
            {
                break;
            }
            secondary.check_alive()?;
            if Instant::now() >= deadline {
                bail!("the resync did not finish within {RESYNC_PATIENCE:?}; primary: {primary:?}");
            }
            std::thread::sleep(POLL);
        }
        let seconds = started.elapsed().as_secs_f64();
        let sync_seconds = sync_started.map(|at| at.elapsed().as_secs_f64());
        secondary.terminate()?;
        let bytes = behind.out_of_sync_bytes;
        Ok(ResyncRun {
            round: 0,
            bytes: Some(bytes),
            seconds: Some(seconds),
            sync_seconds,
            mib_per_s: Some(mib_per_s(bytes, seconds)),
            sync_mib_per_s: sync_seconds.map(|s| mib_per_s(bytes, s)),
            error: None,
        })
    }

    /// The sequential write, then the random writes, on the export at `addr`.
    fn measure(&self, addr: SocketAddr) -> Measured {
        let options = self.options;
        sync_disks()?;
        let write = nbdcopy_write(
            &options.tools.nbdcopy,
            self.source,
            options.size,
            addr,
            options.request_size,
            options.connections,
        )?;
        let latency = match &options.tools.fio {
            Some(fio) if !options.latency_duration.is_zero() => {
                sync_disks()?;
                Some(fio_latency(fio, addr, options.latency_duration, self.dir)?)
            }
            _ => None,
        };
        Ok((write, latency))
    }
}

/// The secondary's backing file in `tmpfs_dir`, named through a link in `dir`: Fulcrum never
/// creates a missing backing under /dev (there it is a device not made yet), and /dev/shm is
/// where the default `--secondary-dir` lives. Through the link, Fulcrum still creates the
/// file, sparse, so the pair starts as new as the other servers do.
fn secondary_backing(dir: &Path, tmpfs_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let link = dir.join("secondary-backing");
    std::os::unix::fs::symlink(tmpfs_dir, &link)
        .with_context(|| format!("cannot link {} to {}", link.display(), tmpfs_dir.display()))?;
    Ok(link.join("volume.img"))
}

/// One unrecorded qemu-nbd run: the first write after the source file is made runs slower (by
/// up to 3× on the VM of the stored results), and would otherwise always fall on qemu-nbd.
fn warm_up(options: &NbdOptions, source: &Path, work: &Path) -> anyhow::Result<()> {
    let dir = work.join("warm-up");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let round = Round {
        options,
        source,
        dir: &dir,
    };
    let (write, _) = round.qemu_nbd(false).context("the warm-up write failed")?;
    info!(mib_per_s = write.mib_per_s, "warm-up done");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Waits until `node` is primary, and returns where it serves NBD.
fn wait_primary(node: &Node, running: &Running) -> anyhow::Result<SocketAddr> {
    wait_status(&node.socket(), EXPORT, CONNECT_PATIENCE, POLL, |s| {
        s.role == "Primary"
    })
    .with_context(|| format!("fulcrum did not become primary:\n{}", running.log_tail()))?;
    node.nbd.context("the primary has no NBD address")
}

fn failed_resync(round: usize, error: &anyhow::Error) -> ResyncRun {
    ResyncRun {
        round,
        bytes: None,
        seconds: None,
        sync_seconds: None,
        mib_per_s: None,
        sync_mib_per_s: None,
        error: Some(format!("{error:#}")),
    }
}

/// `size` bytes nothing can compress or skip (nbdcopy sends zero blocks as WRITE_ZEROES), in a
/// file in `dir` (tmpfs) removed when dropped.
fn write_source(dir: &Path, size: u64) -> anyhow::Result<NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix("fulcrum-nbd-source-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create the source file in {}", dir.display()))?;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            word.copy_from_slice(&next_random(&mut state).to_le_bytes());
        }
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        file.write_all(&chunk[..n])
            .context("cannot write the source file")?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(file)
}

/// splitmix64: fast, and random enough that no block repeats or is zero.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn describe_machine(options: &NbdOptions) -> anyhow::Result<NbdMachine> {
    let tools = &options.tools;
    Ok(NbdMachine {
        cpu_model: cpu_model_or_unknown(),
        free_page_reporting: free_page_reporting(),
        cores: cores(),
        kernel: kernel(),
        filesystem: filesystem_of(&options.dir),
        secondary_filesystem: filesystem_of(&options.secondary_dir),
        fulcrum_version: version_line(&options.fulcrum, "version")?,
        qemu_nbd_version: version_line(&tools.qemu_nbd, "--version")?,
        nbdcopy_version: version_line(&tools.nbdcopy, "--version")?,
        fio_version: match &tools.fio {
            Some(fio) => Some(version_line(fio, "--version")?),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{next_random, write_source};

    #[test]
    fn the_source_has_no_zero_block_and_no_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_source(dir.path(), 64 * 1024 + 4096).unwrap();
        let data = std::fs::read(file.path()).unwrap();
        assert_eq!(data.len(), 68 * 1024);
        let blocks: Vec<&[u8]> = data.chunks(4096).collect();
        assert!(blocks.iter().all(|b| b.iter().any(|&x| x != 0)));
        let mut unique = blocks.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), blocks.len());
        let mut state = 0;
        assert_ne!(next_random(&mut state), next_random(&mut state));
    }
}
