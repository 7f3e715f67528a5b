//! One round's lab: a bridge with node A (10.88.0.1), node B (10.88.0.2) and a client
//! (10.88.0.100), a Fulcrum listener on the VIP on both nodes, and VRRP either in those Fulcrum
//! processes or in a keepalived beside each. Everything is torn down on drop, every process in
//! the namespaces with it.

use std::fmt::Write as _;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use fulcrum_lab::keepalived::{Keepalived, KeepalivedInstance, config};
use fulcrum_lab::netns::{Bridge, Netns, wait_until};

use super::{Case, Contender};

/// The virtual address the nodes share.
pub(crate) const VIP: &str = "10.88.0.50";
/// The port the proxies listen on at the VIP.
pub(crate) const PORT: u16 = 8080;
/// The VRID of the one virtual router.
const VRID: u8 = 50;
/// A's priority: the master.
const PRIORITY_A: u8 = 150;
/// B's priority: the backup, whose skew time is the SIGTERM gap.
pub(crate) const PRIORITY_B: u8 = 100;

/// How long Fulcrum may take to start, and the first election to settle.
const PATIENCE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

/// The programs a round runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Programs<'a> {
    pub(crate) fulcrum: &'a Path,
}

/// A running round's lab. Field order is drop order: processes first, then the namespaces (whose
/// drop would kill them anyway), the bridge last.
#[derive(Debug)]
pub(crate) struct Lab {
    pub(crate) a: Node,
    pub(crate) b: Node,
    pub(crate) client: Netns,
    _bridge: Bridge,
}

/// A node: its namespace, its Fulcrum and, for the keepalived contender, its keepalived.
#[derive(Debug)]
pub(crate) struct Node {
    fulcrum: FulcrumProcess,
    keepalived: Option<Keepalived>,
    pub(crate) ns: Netns,
}

impl Lab {
    /// Builds the lab and starts both nodes for `contender` in `case`, then waits until A holds
    /// the VIP, B does not, and the client reaches the VIP.
    pub(crate) fn start(
        programs: Programs<'_>,
        case: Case,
        contender: Contender,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let bridge = Bridge::new();
        let client = Netns::new("cl");
        bridge.attach(&client, "eth0", "10.88.0.100/24");
        let node = |name: &str, addr: &str, priority: u8| -> anyhow::Result<Node> {
            let ns = Netns::new(name);
            bridge.attach(&ns, "eth0", addr);
            let node_dir = dir.join(name);
            std::fs::create_dir_all(&node_dir)
                .with_context(|| format!("cannot create {}", node_dir.display()))?;
            let vrrp = (contender == Contender::Fulcrum).then_some((case, priority));
            let fulcrum = FulcrumProcess::start(&ns, programs.fulcrum, &node_dir, vrrp)?;
            let keepalived = (contender == Contender::Keepalived).then(|| {
                let instance = keepalived_instance(case, priority);
                Keepalived::start(&ns, &config(&format!("node_{name}"), &[instance]))
            });
            Ok(Node {
                fulcrum,
                keepalived,
                ns,
            })
        };
        let lab = Self {
            a: node("a", "10.88.0.1/24", PRIORITY_A)?,
            b: node("b", "10.88.0.2/24", PRIORITY_B)?,
            client,
            _bridge: bridge,
        };
        let vip = vip();
        let settled = wait_until(PATIENCE, POLL, || lab.a.holds_vip() && !lab.b.holds_vip());
        if !settled {
            bail!(
                "{contender} did not elect A: A holds the VIP: {}, B: {}\n--- A:\n{}\n--- B:\n{}",
                lab.a.holds_vip(),
                lab.b.holds_vip(),
                lab.a.log(),
                lab.b.log()
            );
        }
        // The client's first packet to the VIP resolves its ARP entry (A's MAC); any answer,
        // even a refusal on port 9, proves it.
        let reached = wait_until(Duration::from_secs(5), POLL, || {
            lab.client.reachable(vip, Duration::from_millis(500))
        });
        if !reached {
            bail!("the client cannot reach the VIP on A");
        }
        // And A's listener is up on it: on a loaded machine it may bind after the VIP came,
        // and a refusal then, before A fails, would void the round.
        let listening = wait_until(Duration::from_secs(5), POLL, || {
            lab.client.accepts(vip, PORT, Duration::from_millis(500))
        });
        if !listening {
            bail!(
                "nothing accepts on the VIP's port {PORT} on A\n--- A:\n{}",
                lab.a.log()
            );
        }
        Ok(lab)
    }
}

impl Node {
    pub(crate) fn holds_vip(&self) -> bool {
        self.ns.has_address("eth0", vip())
    }

    /// Fails the node the way `case` says: its VRRP speaker gets SIGTERM or SIGKILL. For the
    /// Fulcrum contender that is the Fulcrum process, proxy included; for keepalived only
    /// keepalived, the listener stays (as HAProxy would beside it).
    pub(crate) fn fail(&mut self, case: Case) -> anyhow::Result<()> {
        match (&mut self.keepalived, case) {
            (Some(keepalived), Case::Sigterm) => {
                keepalived.stop();
            }
            (Some(keepalived), Case::Sigkill) => {
                keepalived.kill();
            }
            (None, case) => self.fulcrum.signal(case.signal())?,
        }
        Ok(())
    }

    /// The logs of its VRRP speaker and listener, for an error message.
    pub(crate) fn log(&self) -> String {
        let mut log = self.fulcrum.log();
        if let Some(keepalived) = &self.keepalived {
            let _ = write!(log, "\n--- keepalived:\n{}", keepalived.log());
        }
        log
    }
}

/// The VIP as an address.
pub(crate) fn vip() -> IpAddr {
    IpAddr::from([10, 88, 0, 50])
}

/// keepalived's `vrrp_instance` equivalent to Fulcrum's `[vrrp]` for `case`.
fn keepalived_instance(case: Case, priority: u8) -> KeepalivedInstance {
    KeepalivedInstance {
        version: case.vrrp_version(),
        advert_interval: case.keepalived_advert_int().to_owned(),
        vips: vec![format!("{VIP}/32")],
        ..KeepalivedInstance::new("VI_1", "eth0", VRID, priority)
    }
}

/// A `fulcrum run` inside a node, its JSON log in a file.
#[derive(Debug)]
struct FulcrumProcess {
    child: Child,
    log: PathBuf,
}

impl FulcrumProcess {
    /// Writes the node's config into `dir`, checks it, starts Fulcrum in `ns` and waits for
    /// `fulcrum started`. With `vrrp`, the config carries the VRRP instance for that case and
    /// priority.
    fn start(
        ns: &Netns,
        fulcrum: &Path,
        dir: &Path,
        vrrp: Option<(Case, u8)>,
    ) -> anyhow::Result<Self> {
        let conf = dir.join("fulcrum.toml");
        std::fs::write(&conf, fulcrum_config(dir, vrrp))
            .with_context(|| format!("cannot write {}", conf.display()))?;
        let check = Command::new(fulcrum)
            .args(["check", "-c"])
            .arg(&conf)
            .output()
            .with_context(|| format!("cannot run {}", fulcrum.display()))?;
        if !check.status.success() {
            bail!(
                "fulcrum check refuses {}: {}",
                conf.display(),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        let log = dir.join("fulcrum.log");
        let file =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = ns
            .cmd(&fulcrum.to_string_lossy())
            .args(["run", "-c"])
            .arg(&conf)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {}", fulcrum.display()))?;
        let process = Self { child, log };
        let started = wait_until(PATIENCE, POLL, || {
            let log = process.log();
            log.contains("fulcrum started") || log.contains("not starting")
        });
        if !(started && process.log().contains("fulcrum started")) {
            bail!("fulcrum did not start in {}:\n{}", ns.name(), process.log());
        }
        Ok(process)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`TERM`, `KILL`) with `kill(1)`: the workspace forbids the unsafe a libc
    /// call needs. `ip netns exec` execs Fulcrum, so the child's pid is Fulcrum's.
    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.child.id());
        }
        Ok(())
    }
}

impl Drop for FulcrumProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's config: a frontend on the VIP that answers every request itself, and with `vrrp`
/// the VRRP instance. The control socket lives in the node's dir: two nodes as root would
/// otherwise share `/run/fulcrum.sock`.
fn fulcrum_config(dir: &Path, vrrp: Option<(Case, u8)>) -> String {
    let mut c = format!(
        "[global]\nthreads = 1\ngrace = \"1s\"\ncontrol_socket = \"{}\"\n\
         log = {{ format = \"json\", level = \"info\", access_log = false }}\n\n\
         [frontend.vip]\nbind = [\"{VIP}:{PORT}\"]\n\
         return = [{{ status = 200, body = \"ok\\n\" }}]\n",
        dir.join("control.sock").display()
    );
    if let Some((case, priority)) = vrrp {
        let _ = write!(
            c,
            "\n[vrrp]\nversion = {}\ninterface = \"eth0\"\n\n\
             [vrrp.instance.VI_1]\nvirtual_router_id = {VRID}\npriority = {priority}\n\
             advert_interval = \"{}\"\nvirtual_ips = [\"{VIP}/32\"]\n",
            case.vrrp_version(),
            case.fulcrum_advert_interval()
        );
    }
    c
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Case, fulcrum_config, keepalived_instance};

    #[test]
    fn both_contenders_run_the_same_virtual_router() {
        let fulcrum = fulcrum_config(Path::new("/tmp/x"), Some((Case::Sigkill, 100)));
        for line in [
            "bind = [\"10.88.0.50:8080\"]",
            "control_socket = \"/tmp/x/control.sock\"",
            "version = 3",
            "virtual_router_id = 50",
            "priority = 100",
            "advert_interval = \"100ms\"",
            "virtual_ips = [\"10.88.0.50/32\"]",
        ] {
            assert!(fulcrum.contains(line), "{line} not in:\n{fulcrum}");
        }
        let keepalived = keepalived_instance(Case::Sigkill, 100).to_config();
        for line in [
            "virtual_router_id 50",
            "priority 100",
            "advert_int 0.1",
            "version 3",
            "10.88.0.50/32",
        ] {
            assert!(keepalived.contains(line), "{line} not in:\n{keepalived}");
        }
        let listener_only = fulcrum_config(Path::new("/tmp/x"), None);
        assert!(!listener_only.contains("[vrrp]"), "{listener_only}");
        let v2 = fulcrum_config(Path::new("/tmp/x"), Some((Case::Sigterm, 150)));
        assert!(v2.contains("version = 2") && v2.contains("advert_interval = \"1s\""));
    }
}
