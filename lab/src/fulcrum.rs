//! A `fulcrum run` inside a lab namespace: its config and state in a directory of its own, its
//! JSON log in a file beside them, its control socket for `fulcrum status`, and the signals a
//! fault test sends it. Killed and reaped on drop, so also when a test panics.
//!
//! The binary is a parameter: the root package's tests pass `env!("CARGO_BIN_EXE_fulcrum")`,
//! `fulcrum-bench` the path it was given.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::netns::{Netns, wait_until};

/// How long Fulcrum may take to start (VRRP, volumes and sync sets included).
const START: Duration = Duration::from_secs(20);

/// The `[global]` every lab node runs with: JSON logs the lab can read back, and the control
/// socket and state in the node's directory, so parallel labs never share one.
const GLOBAL: &str = "control_socket = \"control.sock\"\nstate_dir = \"state\"\n\
                      grace = \"2s\"\nlog = { format = \"json\", level = \"info\" }\n";

/// A signal a fault test sends to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGKILL: a crash, nothing said to the peers.
    Kill,
    /// SIGTERM: a graceful stop (VRRP sends priority 0 first).
    Term,
    /// SIGHUP: reload the config file.
    Hup,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Self::Kill => "KILL",
            Self::Term => "TERM",
            Self::Hup => "HUP",
        }
    }
}

/// A running (or, after [`FulcrumNode::kill`], dead and reaped) Fulcrum node.
#[derive(Debug)]
pub struct FulcrumNode {
    bin: PathBuf,
    dir: PathBuf,
    /// The namespace it runs in, by name, to start it again there.
    netns: String,
    child: Child,
    exited: bool,
}

impl FulcrumNode {
    /// Writes `config` (without `[global]`: the lab adds it, with `node = NODE`) to
    /// `dir/fulcrum.toml`, checks it with `fulcrum check`, starts `fulcrum run` on it inside
    /// `ns` and waits for `fulcrum started`. Fails the test with the log when it does not start.
    /// `dir` must exist; relative paths in `config` are taken from it.
    pub fn start(bin: &Path, ns: &Netns, dir: &Path, node: &str, config: &str) -> Self {
        let conf = dir.join("fulcrum.toml");
        std::fs::write(
            &conf,
            format!("[global]\nnode = \"{node}\"\n{GLOBAL}\n{config}"),
        )
        .unwrap();
        let check = Command::new(bin)
            .args(["check", "-c"])
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "fulcrum check refuses {}: {}",
            conf.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        File::create(dir.join("fulcrum.log")).unwrap();
        let child = spawn(bin, ns.name(), &conf);
        let mut node = Self {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            netns: ns.name().to_owned(),
            child,
            exited: false,
        };
        node.wait_started(0);
        node
    }

    /// Starts the node again on the same config, directory and state after it exited (a
    /// [`FulcrumNode::kill`], or a SIGTERM and [`FulcrumNode::wait_exit`]), as an operator
    /// restarts a service; the log goes on in the same file. Waits for `fulcrum started`.
    pub fn restart(&mut self) {
        assert!(self.has_exited(), "restart of a node that still runs");
        let from = self.logs().len();
        self.child = spawn(&self.bin, &self.netns, &self.dir.join("fulcrum.toml"));
        self.exited = false;
        self.wait_started(from);
    }

    /// Waits for `fulcrum started` among the log records after the first `from`.
    fn wait_started(&mut self, from: usize) {
        let started = wait_until(START, Duration::from_millis(20), || {
            self.has_exited()
                || self
                    .logs()
                    .iter()
                    .skip(from)
                    .any(|l| message(l) == "fulcrum started")
        });
        assert!(
            started && !self.exited,
            "fulcrum {self} did not start:\n{}",
            self.log_text()
        );
    }

    /// The node's directory: config, log, control socket, state.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (through `ip netns exec`, the child is Fulcrum itself, not a wrapper).
    pub fn signal(&self, signal: Signal) {
        assert!(!self.exited, "the node has already exited");
        let status = Command::new("kill")
            .arg(format!("-{}", signal.name()))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{} failed", signal.name());
    }

    /// `kill -9` and reap: once this returns the process is gone and every socket it had is
    /// closed (the kernel closes them before the process becomes a zombie).
    pub fn kill(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exited = true;
        }
    }

    /// Waits up to `timeout` for the process to exit (after a SIGTERM); true when it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(20), || self.has_exited())
    }

    fn has_exited(&mut self) -> bool {
        if !self.exited {
            self.exited = self.child.try_wait().unwrap().is_some();
        }
        self.exited
    }

    /// The log as written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("fulcrum.log")).unwrap_or_default()
    }

    /// The JSON log records so far (a line that is not JSON becomes a string).
    pub fn logs(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| Value::from(line)))
            .collect()
    }

    /// The first log record `matches` picks.
    pub fn find_log(&self, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        self.logs().into_iter().find(|l| matches(l))
    }

    /// `fulcrum status WHAT --json` over the control socket (`what`: `vrrp`, `volume`, `sync`,
    /// `l4`), or `None` when the node does not answer (it is dead, or not up yet).
    pub fn status(&self, what: &str) -> Option<Value> {
        let out = Command::new(&self.bin)
            .args(["status", what, "--json", "--socket"])
            .arg(self.dir.join("control.sock"))
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The entry of `fulcrum status WHAT --json` whose `name` is `name`; `Value::Null` when the
    /// node does not answer or has no such entry.
    pub fn status_of(&self, what: &str, name: &str) -> Value {
        self.status(what)
            .and_then(|all| {
                all.as_array()?
                    .iter()
                    .find(|entry| entry["name"] == name)
                    .cloned()
            })
            .unwrap_or(Value::Null)
    }
}

/// `fulcrum run -c CONF` inside namespace `netns`, its log appended to `fulcrum.log` beside
/// the config.
fn spawn(bin: &Path, netns: &str, conf: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(conf.with_file_name("fulcrum.log"))
        .unwrap();
    Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(bin)
        .args(["run", "-c"])
        .arg(conf)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl std::fmt::Display for FulcrumNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.dir.display())
    }
}

impl Drop for FulcrumNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `message` of a JSON log record.
pub fn message(record: &Value) -> &str {
    record["message"].as_str().unwrap_or_default()
}

/// Waits up to `timeout` for `node`'s log to have a record `matches` picks, and returns it;
/// `None` on timeout.
pub fn wait_log(
    node: &FulcrumNode,
    timeout: Duration,
    matches: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = node.find_log(&matches) {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
