//! The programs under test as child processes, each killed when its handle drops: `fulcrum
//! run` with one `[sync.bench]`, the rsync daemon the references write to, and lsyncd. Also
//! the sync set's status from Fulcrum's control socket (`show sync`, the JSON of `fulcrum
//! status sync --json`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fulcrum_common::stats::SyncSet;

use crate::compare::free_port;
pub(crate) use crate::harness::Running;
use crate::harness::{ask, pair_ports, start_fulcrum};

/// The sync set's name, and the rsync daemon's module.
pub(crate) const NAME: &str = "bench";

/// One `fulcrum run` node of the sync set.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// `a` or `b`: its `node` name.
    pub(crate) name: &'static str,
    /// Its config, state and control socket.
    pub(crate) dir: PathBuf,
    /// The synced directory.
    pub(crate) path: PathBuf,
    pub(crate) listen: SocketAddr,
    pub(crate) peer: SocketAddr,
    pub(crate) delay: Duration,
}

impl Node {
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("fulcrum.sock")
    }

    pub(crate) fn config(&self) -> String {
        format!(
            "[global]\n\
             node = \"{name}\"\n\
             state_dir = \"state\"\n\
             control_socket = \"fulcrum.sock\"\n\
             log = {{ level = \"warn\", access_log = false }}\n\
             \n\
             [sync.{NAME}]\n\
             path = {path:?}\n\
             listen = \"{listen}\"\n\
             peers = [\"{peer}\"]\n\
             shared_secret = \"fulcrum-bench\"\n\
             delay = \"{delay}ms\"\n",
            name = self.name,
            path = self.path,
            listen = self.listen,
            peer = self.peer,
            delay = self.delay.as_millis(),
        )
    }

    /// Writes the config and starts `fulcrum run` on it; returns once the control socket
    /// answers.
    pub(crate) fn start(&self, fulcrum: &Path) -> anyhow::Result<Running> {
        std::fs::create_dir_all(&self.path)
            .with_context(|| format!("cannot create {}", self.path.display()))?;
        let socket = self.socket();
        start_fulcrum(fulcrum, &self.dir, self.name, &self.config(), false, || {
            sync_status(&socket).is_ok()
        })
    }
}

/// Nodes `a` and `b` under `dir`, syncing `a_path` and `b_path`. B's `listen` sorts lower, so
/// B dials (Fulcrum's rule): a B started later connects at once instead of waiting out A's
/// backoff.
pub(crate) fn pair(
    dir: &Path,
    a_path: PathBuf,
    b_path: PathBuf,
    delay: Duration,
) -> anyhow::Result<(Node, Node)> {
    let (low, high) = pair_ports()?;
    let a = Node {
        name: "a",
        dir: dir.join("node-a"),
        path: a_path,
        listen: high,
        peer: low,
        delay,
    };
    let b = Node {
        name: "b",
        dir: dir.join("node-b"),
        path: b_path,
        listen: low,
        peer: high,
        delay,
    };
    Ok((a, b))
}

/// The sync set of the process behind `socket`.
pub(crate) fn sync_status(socket: &Path) -> anyhow::Result<SyncSet> {
    parse_sync(&ask(socket, "show sync")?)
}

fn parse_sync(answer: &str) -> anyhow::Result<SyncSet> {
    let sets: Vec<SyncSet> = serde_json::from_str(answer)
        .with_context(|| format!("`show sync` answered {:?}", answer.trim()))?;
    match sets.into_iter().find(|s| s.name == NAME) {
        Some(set) => Ok(set),
        None => bail!("`show sync` does not list sync set {NAME}"),
    }
}

/// Polls both nodes every `every` until `done(a, b)`, for at most `patience`.
pub(crate) fn wait_pair(
    a: &Node,
    b: &Node,
    patience: Duration,
    every: Duration,
    mut done: impl FnMut(&SyncSet, &SyncSet) -> bool,
) -> anyhow::Result<(SyncSet, SyncSet)> {
    let deadline = Instant::now() + patience;
    loop {
        let last = match (sync_status(&a.socket()), sync_status(&b.socket())) {
            (Ok(sa), Ok(sb)) if done(&sa, &sb) => return Ok((sa, sb)),
            (Ok(sa), Ok(sb)) => format!("a: {sa:?}; b: {sb:?}"),
            (Err(error), _) | (_, Err(error)) => format!("{error:#}"),
        };
        if Instant::now() >= deadline {
            bail!("the sync set did not reach the state wanted within {patience:?}; last: {last}");
        }
        std::thread::sleep(every);
    }
}

/// Both nodes connected.
pub(crate) fn connected(a: &SyncSet, b: &SyncSet) -> bool {
    a.state == "connected" && b.state == "connected"
}

/// An rsync daemon on loopback whose module `bench` is `path` (writable, as root or not).
pub(crate) fn start_rsync_daemon(
    rsync: &Path,
    dir: &Path,
    path: &Path,
) -> anyhow::Result<(Running, String)> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    let addr = free_port()?;
    let config = dir.join("rsyncd.conf");
    // As root the daemon would otherwise drop to `nobody`, who cannot write the module.
    let ids = if is_root() {
        "uid = root\ngid = root\n"
    } else {
        ""
    };
    std::fs::write(
        &config,
        format!(
            "use chroot = no\nlog file = {log}\n[{NAME}]\npath = {path}\nread only = false\n{ids}",
            log = dir.join("rsyncd.log").display(),
            path = path.display(),
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let mut command = Command::new(rsync);
    command
        .arg("--daemon")
        .arg("--no-detach")
        .arg(format!("--config={}", config.display()))
        .arg(format!("--port={}", addr.port()))
        .arg(format!("--address={}", addr.ip()));
    let mut running = Running::spawn("rsync --daemon", command, dir.join("rsyncd.out"))?;
    running.wait_listening(addr)?;
    Ok((running, format!("rsync://{addr}/{NAME}/")))
}

/// lsyncd's config: `default.rsync` from `source` to `target`, with `delay`.
pub(crate) fn lsyncd_config(dir: &Path, source: &Path, target: &str, delay: Duration) -> String {
    format!(
        "settings {{\n    nodaemon = true,\n    insist = true,\n    logfile = {log:?},\n    statusFile = {status:?},\n}}\n\
         sync {{\n    default.rsync,\n    source = {source:?},\n    target = {target:?},\n    delay = {delay},\n}}\n",
        log = dir.join("lsyncd.log"),
        status = dir.join("lsyncd.status"),
        source = source,
        delay = delay.as_secs_f64(),
    )
}

/// Starts lsyncd on its config.
pub(crate) fn start_lsyncd(
    lsyncd: &Path,
    dir: &Path,
    source: &Path,
    target: &str,
    delay: Duration,
) -> anyhow::Result<Running> {
    let config = dir.join("lsyncd.lua");
    std::fs::write(&config, lsyncd_config(dir, source, target, delay))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let mut command = Command::new(lsyncd);
    command.arg(&config);
    Running::spawn("lsyncd", command, dir.join("lsyncd.out"))
}

fn is_root() -> bool {
    // `id -u`: the workspace forbids the unsafe `geteuid` needs.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::Path;
    use std::time::Duration;

    use super::{lsyncd_config, pair, parse_sync};

    #[test]
    fn configs_carry_the_delay_and_b_dials() {
        let (a, b) = pair(
            Path::new("/tmp/x"),
            "/dev/shm/a".into(),
            "/dev/shm/b".into(),
            Duration::from_millis(10),
        )
        .unwrap();
        assert!(b.listen < a.listen, "the lower listen dials");
        let config = a.config();
        assert!(config.contains("[sync.bench]"), "{config}");
        assert!(config.contains("path = \"/dev/shm/a\""), "{config}");
        assert!(config.contains("delay = \"10ms\""), "{config}");
        assert!(config.contains(&format!("peers = [\"{}\"]", b.listen)));
        let lua = lsyncd_config(
            Path::new("/tmp/x"),
            Path::new("/dev/shm/a"),
            "rsync://127.0.0.1:1/bench/",
            Duration::from_millis(10),
        );
        assert!(lua.contains("delay = 0.01,"), "{lua}");
        assert!(lua.contains("default.rsync"), "{lua}");
    }

    #[test]
    fn parses_what_show_sync_answers() {
        let answer = r#"[{"name":"bench","path":"/x","state":"connected","peers":[],"pending":3,"conflicts":0,"last_sync_secs":null,"files_sent":1,"files_received":0,"bytes_sent":4096,"bytes_received":0,"bytes_saved_by_delta":0,"overflows":0,"errors":0}]"#;
        let set = parse_sync(answer).unwrap();
        assert_eq!((set.pending, set.bytes_sent), (3, 4096));
        assert!(parse_sync("[]").is_err());
    }
}
