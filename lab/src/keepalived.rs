//! keepalived, the VRRP implementation Fulcrum must interoperate with, run in a lab namespace
//! ([`crate::netns::Netns`]) on a config written into a temp dir, with its log kept in a file.
//!
//! Only the VRRP subsystem runs (`--vrrp`), in the foreground, logging to the console. Its pid
//! files live in the temp dir: keepalived refuses to start ("daemon is already running") when
//! the default `/run/keepalived.pid` names a live process, which parallel tests would hit.

use std::{
    fmt::Write as _,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::netns::{Netns, wait_until};

/// Where Debian installs it.
pub const KEEPALIVED: &str = "/usr/sbin/keepalived";

/// The log line the VRRP child writes once its instances are set up.
const STARTED: &str = "Startup complete";
/// What the VRRP child logs once it has read its config again after SIGHUP.
const RELOADED: &str = "Reload complete";

/// How long keepalived may take to start or to stop.
const PATIENCE: Duration = Duration::from_secs(10);

/// Whether keepalived is installed; prints why a test skips. In CI (`CI` set), where `.ci/run`
/// installs it, a missing keepalived is a failure.
pub fn require_keepalived() -> bool {
    let found = Path::new(KEEPALIVED).exists();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "keepalived is required in CI"
        );
        eprintln!("skipped: keepalived not installed (apt-get install keepalived)");
    }
    found
}

/// A running keepalived (parent and VRRP child), killed on drop.
#[derive(Debug)]
pub struct Keepalived {
    child: Option<Child>,
    dir: tempfile::TempDir,
    netns: String,
}

impl Keepalived {
    /// Checks `config` (`keepalived --config-test`, inside `ns` so interface names resolve),
    /// starts keepalived on it in `ns`, and waits for its VRRP child to report startup. Fails
    /// the test, with the log, on a config error or an early exit.
    pub fn start(ns: &Netns, config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fulcrum-keepalived-")
            .tempdir()
            .unwrap();
        let conf = dir.path().join("keepalived.conf");
        std::fs::write(&conf, config).unwrap();

        let check = ns
            .cmd(KEEPALIVED)
            .arg("--config-test")
            .arg("--use-file")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "keepalived rejects the config ({}):\n{}{}\n--- config:\n{config}",
            check.status,
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );

        let log = File::create(dir.path().join("keepalived.log")).unwrap();
        let pid = |name: &str| dir.path().join(name);
        let child = ns
            .cmd(KEEPALIVED)
            .args([
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "--no-syslog",
                "--vrrp",
                // A VRRP child killed by `kill` stays dead instead of being replaced.
                "--dont-respawn",
            ])
            .arg("--use-file")
            .arg(&conf)
            .arg("--pid")
            .arg(pid("keepalived.pid"))
            .arg("--vrrp_pid")
            .arg(pid("vrrp.pid"))
            .arg("--checkers_pid")
            .arg(pid("checkers.pid"))
            .arg("--bfd_pid")
            .arg(pid("bfd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut keepalived = Self {
            child: Some(child),
            dir,
            netns: ns.name().to_owned(),
        };
        let started = wait_until(PATIENCE, Duration::from_millis(20), || {
            keepalived.log().contains(STARTED) || !keepalived.is_running()
        });
        assert!(
            started && keepalived.is_running(),
            "keepalived did not start in {}:\n{}",
            keepalived.netns,
            keepalived.log()
        );
        keepalived
    }

    /// Replaces the config file with `config` and sends SIGHUP, as `systemctl reload keepalived`
    /// does; returns once the VRRP child has read it again. Fails the test if it does not.
    pub fn reload(&self, config: &str) {
        std::fs::write(self.dir.path().join("keepalived.conf"), config).unwrap();
        let before = self.log().matches(RELOADED).count();
        signal("-HUP", self.pid());
        let reloaded = wait_until(PATIENCE, Duration::from_millis(20), || {
            self.log().matches(RELOADED).count() > before
        });
        assert!(reloaded, "keepalived did not reload:\n{}", self.log());
    }

    /// Everything logged so far (stdout and stderr of both processes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("keepalived.log")
    }

    /// Waits until the log contains `needle`; false after `timeout`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(20), || {
            self.log().contains(needle)
        })
    }

    /// The parent's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("keepalived was started").id()
    }

    /// The VRRP child's pid, from its pid file.
    pub fn vrrp_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("vrrp.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the parent still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// A clean shutdown: SIGTERM, then waits for the exit. keepalived sends a priority 0
    /// advert for each instance it was master of (log: `(NAME) sent 0 priority`) and removes
    /// its VIPs, so a backup takes over after its skew time rather than the master down
    /// interval.
    pub fn stop(&mut self) -> ExitStatus {
        signal("-TERM", self.pid());
        self.wait_exit()
    }

    /// A crash: SIGKILL to the VRRP child first, then the parent. Killing only the parent is
    /// not a crash: the child gets SIGTERM when its parent dies and shuts down cleanly. After
    /// this, nothing removes the VIPs: they stay on the interface, as after a real crash.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(vrrp) = self.vrrp_pid() {
            signal("-KILL", vrrp);
        }
        signal("-KILL", self.pid());
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("keepalived was started");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "keepalived did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        // The VRRP child first: killed after its parent, it would shut down cleanly.
        if self.is_running()
            && let Some(vrrp) = self.vrrp_pid()
        {
            let _ = Command::new("kill")
                .args(["-KILL", &vrrp.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `signal` (`-TERM`, `-KILL`) with `kill(1)`: the test crates have no unsafe code.
fn signal(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// One `vrrp_instance` of a keepalived config; [`config`] turns a node's instances into the
/// config text.
#[derive(Debug, Clone)]
pub struct KeepalivedInstance {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    /// Seconds, as keepalived reads it: `"1"`, or `"0.1"` (fractions need version 3).
    pub advert_interval: String,
    /// 2 or 3.
    pub version: u8,
    /// Simple password authentication (VRRPv2 only).
    pub auth_pass: Option<String>,
    /// Virtual addresses in CIDR form, e.g. `10.0.0.51/32`.
    pub vips: Vec<String>,
    /// The source of adverts when unicasting; `None` uses the interface's primary address.
    pub unicast_src: Option<String>,
    /// Unicast adverts to these peers instead of multicast to 224.0.0.18; empty: multicast.
    pub unicast_peers: Vec<String>,
    /// Whether a higher priority takes over from a running master (`nopreempt` when false).
    pub preempt: bool,
    /// A script run on every state change, with `INSTANCE NAME STATE PRIORITY` appended.
    pub notify: Option<String>,
}

impl KeepalivedInstance {
    /// An instance with the usual defaults: VRRPv2, 1 s adverts, multicast, preemption, no
    /// authentication, no VIPs.
    pub fn new(name: &str, interface: &str, vrid: u8, priority: u8) -> Self {
        Self {
            name: name.to_owned(),
            interface: interface.to_owned(),
            vrid,
            priority,
            advert_interval: "1".to_owned(),
            version: 2,
            auth_pass: None,
            vips: Vec::new(),
            unicast_src: None,
            unicast_peers: Vec::new(),
            preempt: true,
            notify: None,
        }
    }

    /// The `vrrp_instance` block.
    pub fn to_config(&self) -> String {
        let mut c = String::new();
        let _ = writeln!(c, "vrrp_instance {} {{", self.name);
        // Every instance starts as backup: a MASTER start state would defeat `nopreempt`, and
        // the election decides anyway.
        c.push_str("    state BACKUP\n");
        let _ = writeln!(c, "    interface {}", self.interface);
        let _ = writeln!(c, "    virtual_router_id {}", self.vrid);
        let _ = writeln!(c, "    priority {}", self.priority);
        let _ = writeln!(c, "    advert_int {}", self.advert_interval);
        let _ = writeln!(c, "    version {}", self.version);
        if !self.preempt {
            c.push_str("    nopreempt\n");
        }
        if let Some(pass) = &self.auth_pass {
            let _ = writeln!(
                c,
                "    authentication {{\n        auth_type PASS\n        auth_pass {pass}\n    }}"
            );
        }
        if let Some(src) = &self.unicast_src {
            let _ = writeln!(c, "    unicast_src_ip {src}");
        }
        if !self.unicast_peers.is_empty() {
            c.push_str("    unicast_peer {\n");
            for peer in &self.unicast_peers {
                let _ = writeln!(c, "        {peer}");
            }
            c.push_str("    }\n");
        }
        if !self.vips.is_empty() {
            c.push_str("    virtual_ipaddress {\n");
            for vip in &self.vips {
                let _ = writeln!(c, "        {vip}");
            }
            c.push_str("    }\n");
        }
        if let Some(notify) = &self.notify {
            let _ = writeln!(c, "    notify \"{notify}\"");
        }
        c.push_str("}\n");
        c
    }
}

/// A whole keepalived config for one node: `global_defs` and `instances`.
///
/// `script_user root` because the default script user, `keepalived_script`, does not exist on
/// Debian. `enable_script_security` because without it a `notify` script draws "SECURITY
/// VIOLATION - scripts are being executed but script_security not enabled", which makes
/// `--config-test` fail (exit 6); scripts in a test's own temp dir (0700, root's) pass its checks.
pub fn config(router_id: &str, instances: &[KeepalivedInstance]) -> String {
    let mut c = format!(
        "global_defs {{\n    router_id {router_id}\n    script_user root\n    enable_script_security\n}}\n\n"
    );
    for instance in instances {
        c.push_str(&instance.to_config());
        c.push('\n');
    }
    c
}
