//! Fault injectors of issue 10 besides the ones on the processes and links themselves
//! ([`crate::fulcrum::FulcrumNode::signal`] and `kill`, [`crate::netns::Bridge::cut`] and
//! `set_forwarding`): a lossy or slow link with `tc netem`, and a full disk on a small tmpfs.
//!
//! Each is undone by its own call or guard, and by the lab's teardown anyway: a qdisc goes with
//! its namespace, a mount with its guard.

use std::{
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
    process::Command,
};

use crate::netns::Netns;

/// Puts `tc netem SPEC` on `ifname`'s egress in `ns` (replacing any earlier one): `"loss 10%"`,
/// `"delay 50ms 10ms"`, `"loss 5% delay 20ms"`. Only what leaves through `ifname` is affected:
/// for both directions of a link, set it at both ends.
pub fn netem(ns: &Netns, ifname: &str, spec: &str) {
    let mut args = vec!["tc", "qdisc", "replace", "dev", ifname, "root", "netem"];
    args.extend(spec.split_whitespace());
    let out = ns.exec(&args);
    assert!(
        out.status.success(),
        "tc {spec} on {ifname}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the `netem` [`netem`] put on `ifname` (nothing there is fine).
pub fn clear_netem(ns: &Netns, ifname: &str) {
    let _ = ns.exec(&["tc", "qdisc", "del", "dev", ifname, "root"]);
}

/// Whether `tc netem` works here: `tc` installed (iproute2) and the kernel's `sch_netem`
/// available (some VM kernels are built without it). Tries it on the loopback of a scratch
/// namespace, and prints why a test skips; in CI (`CI` set) it is a failure.
pub fn can_use_netem() -> bool {
    let scratch = Netns::new("netem");
    let out = scratch
        .cmd("tc")
        .args(["qdisc", "add", "dev", "lo", "root", "netem", "loss", "0%"])
        .output();
    let works = out.as_ref().is_ok_and(|out| out.status.success());
    if !works {
        let why = out.map_or_else(
            |e| e.to_string(),
            |out| String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "tc netem is required in CI: {why}"
        );
        eprintln!(
            "skipped: tc netem does not work here ({why}): needs iproute2 and the kernel's sch_netem"
        );
    }
    works
}

/// A tmpfs of a few MiB mounted on a directory, to fill up: the full disk of issue 10.
/// Unmounted on drop.
///
/// Mount it **before** starting a process that is to see it: `ip netns exec` gives each process
/// a copy of the mount table, and with the root mount private (as in containers) a later mount
/// does not reach the copies. What any process writes lands in the one tmpfs all the same, so
/// [`FullDisk::fill`] fills it for everyone.
#[derive(Debug)]
pub struct FullDisk {
    dir: PathBuf,
}

/// The file [`FullDisk::fill`] writes: hidden, so a sync set excluding dot files leaves it out.
const FILLER: &str = ".fulcrum-lab-filler";

impl FullDisk {
    /// Mounts a tmpfs of `size` (`"4m"`, mount(8)'s units) on `dir`, which must exist.
    pub fn mount(dir: &Path, size: &str) -> Self {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "fulcrum-lab"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir: dir.to_owned(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fills the file system until a write fails with "no space left", and returns how many
    /// bytes it took.
    pub fn fill(&self) -> u64 {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(FILLER))
            .unwrap();
        let block = vec![0xa5u8; 64 << 10];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(error) if error.kind() == ErrorKind::StorageFull => break,
                Err(error) => panic!("filling {}: {error}", self.dir.display()),
            }
        }
        // A partial last block may fit in a page; a second, smaller round takes it.
        let byte = [0u8; 1];
        while file.write(&byte).is_ok_and(|n| n == 1) {
            written += 1;
        }
        written
    }

    /// Frees what [`FullDisk::fill`] took.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.dir.join(FILLER));
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there (or a namespace's copy of the mount) must
        // not keep the lab from tearing down.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{FullDisk, can_use_netem, clear_netem, netem};
    use crate::netns::{Netns, can_use_netns, veth};

    #[test]
    fn netem_loss_shows_in_the_qdisc_and_clears() {
        if !can_use_netns() || !can_use_netem() {
            return;
        }
        let (a, b) = (Netns::new("tca"), Netns::new("tcb"));
        veth(&a, "eth0", "10.39.0.1/24", &b, "eth0", "10.39.0.2/24");
        let qdisc = || {
            String::from_utf8_lossy(&a.exec(&["tc", "qdisc", "show", "dev", "eth0"]).stdout)
                .into_owned()
        };
        netem(&a, "eth0", "loss 100%");
        assert!(qdisc().contains("loss 100%"), "{}", qdisc());
        // Every packet from A is lost: B cannot be reached.
        assert!(!a.reachable("10.39.0.2".parse().unwrap(), Duration::from_millis(300)));
        clear_netem(&a, "eth0");
        assert!(!qdisc().contains("netem"), "{}", qdisc());
        assert!(a.reachable("10.39.0.2".parse().unwrap(), Duration::from_secs(2)));
    }

    #[test]
    fn a_full_disk_refuses_writes_until_freed() {
        if !can_use_netns() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = FullDisk::mount(dir.path(), "1m");
        let taken = disk.fill();
        assert!((512 << 10..=1 << 20).contains(&taken), "{taken}");
        let error = std::fs::write(dir.path().join("upload"), b"x".repeat(8192)).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::StorageFull);
        disk.free();
        std::fs::write(dir.path().join("upload"), b"x".repeat(8192)).unwrap();
        drop(disk);
        // Unmounted: the directory is the plain (empty) one again.
        assert!(!dir.path().join("upload").exists());
    }
}
