//! Starting the comparison's child processes pinned to a CPU, and making sure none outlives it.
//!
//! Every child is spawned with `kill_on_drop`, and no handle is moved into a spawned task, so
//! anything that drops the comparison's future (an error, a panic, Ctrl-C in the CLI) kills every
//! origin, proxy and load generator it started. On the normal path [`Spawned::stop`] stops and
//! reaps the process, so the next proxy never shares its CPU with the last one.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::{Instant, sleep, timeout};

/// How long a child may take to start listening.
const START_PATIENCE: Duration = Duration::from_secs(15);

/// How long a child may take to exit after SIGTERM before it is killed: Fulcrum's grace period
/// in the configs `compare` writes is 1 s.
const STOP_PATIENCE: Duration = Duration::from_secs(5);

/// Raises the open-files limit as far as allowed, then runs the rest of the arguments. `ulimit -n`
/// above the hard limit fails for a non-root user, and then the hard limit is the best there is.
const ULIMIT_SCRIPT: &str =
    "ulimit -n \"$1\" 2>/dev/null || ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; shift; exec \"$@\"";

/// A running child.
#[derive(Debug)]
pub(crate) struct Spawned {
    name: String,
    child: Child,
    /// Where its output goes, quoted in errors.
    log: Option<PathBuf>,
    /// Kept open so a late line on stdout does not meet a closed pipe.
    _stdout: Option<Lines<BufReader<ChildStdout>>>,
}

/// How to run a program: pinned to `cpu` with `taskset`, with the open-files limit raised.
#[derive(Debug, Clone)]
pub(crate) struct Launch<'a> {
    pub(crate) taskset: &'a Path,
    pub(crate) cpu: usize,
    pub(crate) nofile: u64,
    pub(crate) program: &'a Path,
    pub(crate) args: Vec<OsString>,
}

impl Launch<'_> {
    /// `sh -c ULIMIT_SCRIPT sh NOFILE taskset -c CPU PROGRAM ARGS...`: after the two `exec`s the
    /// child's PID is the program's own, which is what `/proc/PID` is read for.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(ULIMIT_SCRIPT)
            .arg("sh")
            .arg(self.nofile.to_string())
            .arg(self.taskset)
            .arg("-c")
            .arg(self.cpu.to_string())
            .arg(self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs the program to the end within `patience` and reads its `--json` report from stdout
    /// with `parse`; `what` names the report in errors (`load`, `bulk`).
    pub(crate) async fn report<T>(
        &self,
        patience: Duration,
        what: &str,
        parse: impl FnOnce(&str) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut command = self.command();
        command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let args: Vec<_> = self.args.iter().map(|a| a.to_string_lossy()).collect();
        let shown = format!("{} {}", self.program.display(), args.join(" "));
        let out = timeout(patience, command.output())
            .await
            .with_context(|| format!("`{shown}` did not finish within {patience:?}"))?
            .with_context(|| format!("cannot run `{shown}`"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("`{shown}` failed ({}): {}", out.status, stderr.trim());
        }
        parse(&String::from_utf8_lossy(&out.stdout)).with_context(|| {
            format!(
                "`{shown}` printed no {what} report; stderr: {}",
                stderr.trim()
            )
        })
    }
}

impl Spawned {
    /// Starts a server that logs to `log` and waits until `listen` accepts connections.
    pub(crate) async fn server(
        name: &str,
        mut command: Command,
        log: PathBuf,
        listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let stderr = file
            .try_clone()
            .with_context(|| format!("cannot reopen {}", log.display()))?;
        command.stdout(file).stderr(stderr);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let mut spawned = Self {
            name: name.to_owned(),
            child,
            log: Some(log),
            _stdout: None,
        };
        spawned.wait_listening(listen).await?;
        Ok(spawned)
    }

    /// Starts a `fulcrum-bench origin` (or anything printing `... listening on ADDR` first on
    /// stdout) and returns the address it printed.
    pub(crate) async fn origin(
        name: &str,
        mut command: Command,
    ) -> anyhow::Result<(Self, SocketAddr)> {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start origin {name}"))?;
        let stdout = child.stdout.take().context("origin stdout is not piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let spawned_line = timeout(START_PATIENCE, lines.next_line()).await;
        let mut spawned = Self {
            name: format!("origin {name}"),
            child,
            log: None,
            _stdout: None,
        };
        let line = match spawned_line {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                let status = spawned.child.wait().await.ok();
                bail!("origin {name} exited before listening ({status:?})");
            }
            Ok(Err(error)) => return Err(error).context("cannot read the origin's stdout"),
            Err(_) => bail!("origin {name} printed no address within {START_PATIENCE:?}"),
        };
        let addr = parse_listening_line(&line)
            .with_context(|| format!("origin {name} printed {line:?}, not its address"))?;
        spawned._stdout = Some(lines);
        Ok((spawned, addr))
    }

    /// The process id, which `/proc` is read by.
    pub(crate) fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .with_context(|| format!("{} has already exited", self.name))
    }

    /// Fails, quoting the end of its log, if the process has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("{} exited ({status}){}", self.name, self.log_tail()),
            Err(error) => Err(error).with_context(|| format!("cannot check on {}", self.name)),
        }
    }

    /// Stops the process as its service manager would, SIGTERM, and waits for it to be gone;
    /// kills it if it lingers. A clean exit is what lets a build instrumented for
    /// profile-guided optimisation write its profile (`scripts/build-pgo.sh`).
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        let pid = self
            .child
            .id()
            .and_then(|id| Pid::from_raw(id.try_into().ok()?));
        if let Some(pid) = pid
            && kill_process(pid, Signal::TERM).is_ok()
            && let Ok(exited) = timeout(STOP_PATIENCE, self.child.wait()).await
        {
            return exited
                .map(drop)
                .with_context(|| format!("cannot wait for {} to stop", self.name));
        }
        self.child
            .kill()
            .await
            .with_context(|| format!("cannot stop {}", self.name))
    }

    /// Waits until `listen` accepts connections, failing if the process exits first.
    pub(crate) async fn wait_listening(&mut self, listen: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            self.check_alive()?;
            if let Ok(Ok(_)) = timeout(Duration::from_secs(1), TcpStream::connect(listen)).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} is not listening on {listen} after {START_PATIENCE:?}{}",
                    self.name,
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines of the log, for an error message.
    fn log_tail(&self) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        if tail.is_empty() {
            format!("; its log {} is empty", log.display())
        } else {
            format!("; end of its log {}:\n{tail}", log.display())
        }
    }
}

/// Reads `origin NAME listening on ADDR`.
pub(crate) fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let (_, addr) = line.rsplit_once(" listening on ")?;
    addr.trim().parse().ok()
}

/// A child's JSON report from its stdout (the whole of it, or else its last JSON line, after
/// anything a tool printed first), refused unless its schema is the one this runner reads.
pub(crate) fn parse_json_report<T: serde::de::DeserializeOwned>(
    stdout: &str,
    what: &str,
    expected: &str,
    schema: impl Fn(&T) -> &str,
) -> anyhow::Result<T> {
    let report: T = match serde_json::from_str(stdout.trim()) {
        Ok(report) => report,
        Err(whole) => stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .with_context(|| format!("stdout is not a JSON {what} report: {whole}"))
            .and_then(|line| {
                serde_json::from_str(line)
                    .with_context(|| format!("the last JSON line is not a {what} report"))
            })?,
    };
    let found = schema(&report);
    if found != expected {
        bail!("the {what} report's schema is {found:?}, this runner reads {expected:?}");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::Path;
    use std::process::Stdio;

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::Command;

    use super::{Launch, Spawned, parse_listening_line};

    #[tokio::test]
    async fn stop_asks_with_sigterm_before_it_kills() {
        // A child that does something only at a clean stop, as an instrumented build writes
        // its profile (`scripts/build-pgo.sh`); SIGKILL would leave no file.
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("stopped");
        let script = format!(
            "trap 'echo cleanly > \"{}\"; exit 0' TERM; echo ready; while :; do sleep 0.01; done",
            marker.display()
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The trap is set once the child says so.
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
        let spawned = Spawned {
            name: "a trapping shell".to_owned(),
            child,
            log: None,
            _stdout: Some(lines),
        };
        spawned.stop().await.unwrap();
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "cleanly\n");
    }

    #[test]
    fn the_origin_line_gives_its_address() {
        assert_eq!(
            parse_listening_line("origin s1 listening on 127.0.0.1:40123"),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(parse_listening_line("origin s1 starting"), None);
        assert_eq!(parse_listening_line("origin s1 listening on nowhere"), None);
    }

    #[tokio::test]
    async fn launch_raises_the_limit_pins_and_execs() {
        // `sh -c 'ulimit -n; cat /proc/self/status'` through the launcher: the limit applies and
        // the PID printed by the program is the child's own (the two `exec`s).
        let launch = Launch {
            taskset: Path::new("taskset"),
            cpu: 0,
            nofile: 1024,
            program: Path::new("sh"),
            args: vec!["-c".into(), "echo $$; ulimit -n".into()],
        };
        if crate::compare::tools::find_in_path("taskset").is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI has util-linux's taskset"
            );
            eprintln!("skipped: taskset is not installed");
            return;
        }
        let mut command = launch.command();
        command.stdout(std::process::Stdio::piped());
        let child = command.spawn().unwrap();
        let pid = child.id().unwrap();
        let out = child.wait_with_output().await.unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), pid.to_string());
        assert_eq!(lines.next().unwrap(), "1024");
    }
}
