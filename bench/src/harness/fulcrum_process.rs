//! The programs under test as child processes, each killed when its handle drops, so an error or
//! Ctrl-C leaves nothing running; `fulcrum run` on a config of its own, and questions to its
//! control socket.

use std::fs::File;
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::compare::free_port;

/// How long a program may take to start serving, or to stop after SIGTERM.
const PATIENCE: Duration = Duration::from_secs(15);

/// How long one question to the control socket may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// A running child, killed on drop.
#[derive(Debug)]
pub(crate) struct Running {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Running {
    /// Starts `command` as `name`, its stdout and stderr to `log`.
    pub(crate) fn spawn(name: &str, mut command: Command, log: PathBuf) -> anyhow::Result<Self> {
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

    /// SIGTERM (a clean stop: Fulcrum closes its metadata clean), then SIGKILL (on drop) if it
    /// lingers.
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

    /// The last 20 lines of the log.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Returns once `addr` accepts a TCP connection; fails if the child exits first or takes
    /// too long.
    pub(crate) fn wait_listening(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                bail!(
                    "{} did not listen on {addr} within {PATIENCE:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `config` as `dir/fulcrum.toml` (unless `keep` and it is already there) and starts
/// `fulcrum run` on it as node `node`, logging to `dir/fulcrum-NODE.log`; returns once
/// `answers()` (a question to its control socket) holds.
pub(crate) fn start_fulcrum(
    fulcrum: &Path,
    dir: &Path,
    node: &str,
    config: &str,
    keep: bool,
    answers: impl Fn() -> bool,
) -> anyhow::Result<Running> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("fulcrum.toml");
    if !(keep && path.exists()) {
        std::fs::write(&path, config)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut command = Command::new(fulcrum);
    command.arg("run").arg("-c").arg(&path);
    let log = dir.join(format!("fulcrum-{node}.log"));
    let mut running = Running::spawn(&format!("fulcrum ({node})"), command, log)?;
    let deadline = Instant::now() + PATIENCE;
    while !answers() {
        running.check_alive()?;
        if Instant::now() >= deadline {
            bail!(
                "fulcrum ({node}) did not answer on its control socket within {PATIENCE:?}:\n{}",
                running.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(running)
}

/// Sends `command` (`show volume`) to the control socket `socket`; its whole answer.
pub(crate) fn ask(socket: &Path, command: &str) -> anyhow::Result<String> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    stream.set_read_timeout(Some(ASK_TIMEOUT))?;
    stream.set_write_timeout(Some(ASK_TIMEOUT))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .with_context(|| format!("no answer on {}", socket.display()))?;
    Ok(answer)
}

/// Two free loopback addresses for a pair of nodes, the lower first: the node whose `listen`
/// sorts lower dials (Fulcrum's rule), so give it to the node that is restarted, and it
/// connects at once instead of waiting out the other's backoff.
pub(crate) fn pair_ports() -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let (x, y) = (free_port()?, free_port()?);
    if x == y {
        bail!("the kernel gave port {x} twice");
    }
    Ok(if x < y { (x, y) } else { (y, x) })
}
