//! The servers under test as child processes: `qemu-nbd` on a raw file, and `fulcrum run` with one
//! `[volume]`, each in a directory of its own. Every child is killed when its handle is dropped,
//! so an error or Ctrl-C leaves nothing running.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::BLOCK;

/// The volume's name, and its NBD export's.
pub(crate) const EXPORT: &str = "bench";

/// How long a server may take to start serving, or to stop after SIGTERM.
const PATIENCE: Duration = Duration::from_secs(15);

/// A running child, killed on drop.
#[derive(Debug)]
pub(crate) struct Running {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Running {
    fn spawn(name: &str, mut command: Command, log: PathBuf) -> anyhow::Result<Self> {
        let file =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Fails with the log's tail if the child has already exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let tail = self.log_tail();
            let last = tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            bail!("{} exited ({status}): {last}\n{tail}", self.name);
        }
        Ok(())
    }

    /// SIGTERM (a clean stop: Fulcrum closes its metadata clean), then SIGKILL if it lingers.
    pub(crate) fn terminate(mut self) -> anyhow::Result<()> {
        // `kill(1)`: the workspace forbids the unsafe a libc call needs.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("{} did not stop within {PATIENCE:?} of SIGTERM", self.name)
    }

    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `qemu-nbd -f raw --cache=writeback` serving `file` (created sparse at `size`) on `port`.
pub(crate) fn start_qemu_nbd(
    qemu_nbd: &Path,
    dir: &Path,
    size: u64,
) -> anyhow::Result<(Running, SocketAddr)> {
    let file = dir.join("qemu.img");
    File::create(&file)
        .and_then(|f| f.set_len(size))
        .with_context(|| format!("cannot create {}", file.display()))?;
    let addr = free_port()?;
    let mut command = Command::new(qemu_nbd);
    command
        .args(["-f", "raw", "-x", EXPORT, "-b"])
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        // The same I/O path as Fulcrum's: the page cache, with fdatasync on FLUSH and FUA.
        .args(["--cache=writeback", "--aio=threads", "--persistent"])
        .arg(&file);
    let mut running = Running::spawn("qemu-nbd", command, dir.join("qemu-nbd.log"))?;
    wait_listening(&mut running, addr)?;
    Ok((running, addr))
}

/// One `fulcrum run` node of the volume.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// `primary` or `secondary`: its `node` name, role and directory.
    pub(crate) role: &'static str,
    pub(crate) dir: PathBuf,
    /// The backing file, absolute; Fulcrum creates it.
    pub(crate) backing: PathBuf,
    pub(crate) listen: SocketAddr,
    pub(crate) peer: SocketAddr,
    /// The primary's NBD address.
    pub(crate) nbd: Option<SocketAddr>,
    pub(crate) size: u64,
}

impl Node {
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("fulcrum.sock")
    }

    /// The node's config: a fresh backing file Fulcrum creates at `size`, protocol C, no
    /// `resync_rate`, every timer at its default.
    pub(crate) fn config(&self) -> String {
        let nbd = self.nbd.map_or_else(String::new, |addr| {
            format!("nbd = {{ listen = \"{addr}\", export = \"{EXPORT}\" }}\n")
        });
        format!(
            "[global]\n\
             node = \"{role}\"\n\
             state_dir = \"state\"\n\
             control_socket = \"fulcrum.sock\"\n\
             log = {{ level = \"warn\", access_log = false }}\n\
             \n\
             [volume.{EXPORT}]\n\
             backing = {backing:?}\n\
             size = \"{kib}KiB\"\n\
             protocol = \"C\"\n\
             listen = \"{listen}\"\n\
             peer = \"{peer}\"\n\
             shared_secret = \"fulcrum-bench\"\n\
             role = \"{role}\"\n\
             {nbd}",
            role = self.role,
            backing = self.backing,
            kib = self.size / 1024,
            listen = self.listen,
            peer = self.peer,
        )
    }

    /// Writes the config (first time only) and starts `fulcrum run` on it; returns once the
    /// control socket answers.
    pub(crate) fn start(&self, fulcrum: &Path) -> anyhow::Result<Running> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let config = self.dir.join("fulcrum.toml");
        if !config.exists() {
            std::fs::write(&config, self.config())
                .with_context(|| format!("cannot write {}", config.display()))?;
        }
        let mut command = Command::new(fulcrum);
        command.arg("run").arg("-c").arg(&config);
        let log = self.dir.join(format!("fulcrum-{}.log", self.role));
        let mut running = Running::spawn(&format!("fulcrum ({})", self.role), command, log)?;
        let deadline = Instant::now() + PATIENCE;
        while super::status::volume_status(&self.socket(), EXPORT).is_err() {
            running.check_alive()?;
            if Instant::now() >= deadline {
                bail!(
                    "fulcrum ({}) did not answer on its control socket within {PATIENCE:?}:\n{}",
                    self.role,
                    running.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(running)
    }
}

/// The addresses of a pair: the secondary's `listen` sorts lower, so it is the node that dials
/// (Fulcrum's rule), and a restarted secondary connects at once instead of waiting out the
/// primary's backoff.
pub(crate) fn pair_nodes(
    dir: &Path,
    secondary_backing: PathBuf,
    size: u64,
) -> anyhow::Result<(Node, Node)> {
    let (a, b) = (free_port()?, free_port()?);
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    if low == high {
        bail!("the kernel gave port {low} twice");
    }
    let primary = Node {
        role: "primary",
        dir: dir.join("primary"),
        backing: dir.join("primary").join("volume.img"),
        listen: high,
        peer: low,
        nbd: Some(free_port()?),
        size,
    };
    let secondary = Node {
        role: "secondary",
        dir: dir.join("secondary"),
        backing: secondary_backing,
        listen: low,
        peer: high,
        nbd: None,
        size,
    };
    Ok((primary, secondary))
}

/// `sync(1)`: the previous run's dirty pages go to disk before the next run is timed.
pub(crate) fn sync_disks() -> anyhow::Result<()> {
    let status = Command::new("sync").status().context("cannot run sync")?;
    if !status.success() {
        bail!("sync failed ({status})");
    }
    Ok(())
}

/// A `127.0.0.1` address whose port was free a moment ago. Another process could take it in
/// between, and the server then fails to start with its own error.
pub(crate) fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot bind 127.0.0.1:0 to find a free port")?;
    listener
        .local_addr()
        .context("cannot read the port of 127.0.0.1:0")
}

fn wait_listening(running: &mut Running, addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        running.check_alive()?;
        if Instant::now() >= deadline {
            bail!(
                "{} did not listen on {addr} within {PATIENCE:?}:\n{}",
                running.name,
                running.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The volume size the run uses: `size` rounded down to whole 4 KiB blocks.
pub(crate) fn volume_size(size: u64) -> u64 {
    size / BLOCK * BLOCK
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::Path;

    use super::pair_nodes;

    #[test]
    fn the_secondary_dials_and_the_primary_serves() {
        let (primary, secondary) =
            pair_nodes(Path::new("/tmp/x"), "/dev/shm/s.img".into(), 1 << 30).unwrap();
        assert!(secondary.listen < primary.listen, "the lower listen dials");
        assert_eq!(primary.peer, secondary.listen);
        assert_eq!(secondary.peer, primary.listen);
        let config = primary.config();
        assert!(config.contains("size = \"1048576KiB\""), "{config}");
        assert!(config.contains("backing = \"/tmp/x/primary/volume.img\""));
        assert!(secondary.config().contains("backing = \"/dev/shm/s.img\""));
        assert!(config.contains("role = \"primary\""));
        assert!(config.contains("nbd = { listen = \"127.0.0.1:"));
        assert!(!config.contains("resync_rate"));
        assert!(!secondary.config().contains("nbd ="));
    }
}
