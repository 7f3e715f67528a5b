//! Fault injectors of issue 10 besides the ones on the processes and links themselves
//! ([`crate::fulcrum::FulcrumNode::signal`] and `kill`, [`crate::netns::Bridge::cut`] and
//! `set_forwarding`): a lossy link, and a full disk on a small tmpfs.
//!
//! Packet loss is an nftables rule dropping a random share of what leaves an interface
//! (`numgen random`), rather than `tc netem loss`: the same fault, and it works on kernels built
//! without `sch_netem` (this project's CI machines are), while nf_tables is everywhere.
//!
//! Each is undone by its own call or guard, and by the lab's teardown anyway: a ruleset goes
//! with its namespace, a mount with its guard.

use std::{
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
    process::Command,
};

use crate::netns::Netns;

/// The nftables table the loss rules live in, one per namespace.
const TABLE: &str = "fulcrum_lab_loss";

/// Drops `percent` % of the packets leaving through `ifname` in `ns`, at random (replacing any
/// earlier loss on any interface of `ns`). Only what leaves through `ifname` is affected: for
/// both directions of a link, set it at both ends.
pub fn packet_loss(ns: &Netns, ifname: &str, percent: u8) {
    assert!(percent <= 100, "a loss of {percent}%");
    clear_packet_loss(ns);
    let share = random_share(percent);
    let ruleset = format!(
        "table inet {TABLE} {{\n\
         \tchain lab_output {{\n\
         \t\ttype filter hook output priority 0; policy accept;\n\
         \t\toifname \"{ifname}\" {share}drop\n\
         \t}}\n\
         \tchain lab_forward {{\n\
         \t\ttype filter hook forward priority 0; policy accept;\n\
         \t\toifname \"{ifname}\" {share}drop\n\
         \t}}\n\
         }}\n"
    );
    apply_ruleset(ns, &ruleset, &format!("{percent}% loss on {ifname}"));
}

/// The match of an nftables rule that picks `percent` % of the packets at random (nothing for
/// 100 %: nftables compares the random number with a value below the modulus).
pub(crate) fn random_share(percent: u8) -> String {
    match percent {
        100 => String::new(),
        p => format!("numgen random mod 100 < {p} "),
    }
}

/// Loads `ruleset` into `ns` with `nft -f -`; panics naming `what` if nft refuses it.
pub(crate) fn apply_ruleset(ns: &Netns, ruleset: &str, what: &str) {
    let mut child = ns
        .cmd("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft is installed (apt-get install nftables)");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(ruleset.as_bytes())
        .expect("nft reads its ruleset");
    let out = child.wait_with_output().expect("nft runs");
    assert!(
        out.status.success(),
        "nft: {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the loss [`packet_loss`] put in `ns` (nothing there is fine).
pub fn clear_packet_loss(ns: &Netns) {
    let _ = ns.exec(&["nft", "delete", "table", "inet", TABLE]);
}

/// Whether [`packet_loss`] can work here: `nft` installed (nftables) and nf_tables in the
/// kernel. Tries a table in a scratch namespace, and prints why a test skips; in CI (`CI` set)
/// it is a failure.
pub fn can_drop_packets() -> bool {
    let scratch = Netns::new("nft");
    let out = scratch
        .cmd("nft")
        .args(["add", "table", "inet", TABLE])
        .output();
    let works = out.as_ref().is_ok_and(|out| out.status.success());
    if !works {
        let why = out.map_or_else(
            |e| e.to_string(),
            |out| String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "nftables is required in CI: {why}"
        );
        eprintln!("skipped: nft does not work here ({why}): needs nftables and nf_tables");
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

    use super::{FullDisk, can_drop_packets, clear_packet_loss, packet_loss};
    use crate::netns::{Netns, can_use_netns, veth};

    #[test]
    fn packet_loss_drops_what_leaves_and_clears() {
        if !can_use_netns() || !can_drop_packets() {
            return;
        }
        let (a, b) = (Netns::new("tca"), Netns::new("tcb"));
        veth(&a, "eth0", "10.39.0.1/24", &b, "eth0", "10.39.0.2/24");
        let ruleset =
            || String::from_utf8_lossy(&a.exec(&["nft", "list", "ruleset"]).stdout).into_owned();
        packet_loss(&a, "eth0", 100);
        assert!(ruleset().contains("oifname \"eth0\" drop"), "{}", ruleset());
        // Every packet from A is lost: B cannot be reached.
        assert!(!a.reachable("10.39.0.2".parse().unwrap(), Duration::from_millis(300)));
        // A share: of 20 connection attempts (one SYN each, no time to retransmit), some get
        // through and some do not (all or none has odds of 2 in a million).
        packet_loss(&a, "eth0", 50);
        let through = (0..20)
            .filter(|_| a.reachable("10.39.0.2".parse().unwrap(), Duration::from_millis(200)))
            .count();
        assert!((1..20).contains(&through), "{through} of 20 got through");
        clear_packet_loss(&a);
        assert!(!ruleset().contains("drop"), "{}", ruleset());
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
