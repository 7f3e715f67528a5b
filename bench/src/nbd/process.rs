//! The servers under test as child processes: `qemu-nbd` on a raw file, and `fulcrum run` with one
//! `[volume]`, each in a directory of its own. Every child is killed when its handle is dropped,
//! so an error or Ctrl-C leaves nothing running.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::BLOCK;
pub(crate) use crate::compare::free_port;
pub(crate) use crate::harness::Running;
use crate::harness::{pair_ports, start_fulcrum};

/// The volume's name, and its NBD export's.
pub(crate) const EXPORT: &str = "bench";

/// `qemu-nbd` on a fresh sparse file in `dir`: through the page cache (`--cache=writeback`,
/// the goals' reference), or with `direct` past it (`--cache=none --aio=native`, as qemu
/// recommends for `O_DIRECT`).
pub(crate) fn start_qemu_nbd(
    qemu_nbd: &Path,
    dir: &Path,
    size: u64,
    direct: bool,
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
        // FLUSH and FUA become fdatasync either way.
        .args(if direct {
            ["--cache=none", "--aio=native"]
        } else {
            ["--cache=writeback", "--aio=threads"]
        })
        .arg("--persistent")
        .arg(&file);
    let mut running = Running::spawn("qemu-nbd", command, dir.join("qemu-nbd.log"))?;
    running.wait_listening(addr)?;
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
    /// The volume's `al_extents`; Fulcrum's default without.
    pub(crate) al_extents: Option<u64>,
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
        let al_extents = self
            .al_extents
            .map_or_else(String::new, |n| format!("al_extents = {n}\n"));
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
             {nbd}{al_extents}",
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
        let socket = self.socket();
        start_fulcrum(fulcrum, &self.dir, self.role, &self.config(), true, || {
            super::status::volume_status(&socket, EXPORT).is_ok()
        })
    }
}

/// The addresses of a pair: the secondary's `listen` sorts lower, so it is the node that dials
/// (Fulcrum's rule), and a restarted secondary connects at once instead of waiting out the
/// primary's backoff.
pub(crate) fn pair_nodes(
    dir: &Path,
    secondary_backing: PathBuf,
    size: u64,
    al_extents: Option<u64>,
) -> anyhow::Result<(Node, Node)> {
    let (low, high) = pair_ports()?;
    let primary = Node {
        role: "primary",
        dir: dir.join("primary"),
        backing: dir.join("primary").join("volume.img"),
        listen: high,
        peer: low,
        nbd: Some(free_port()?),
        size,
        al_extents,
    };
    let secondary = Node {
        role: "secondary",
        dir: dir.join("secondary"),
        backing: secondary_backing,
        listen: low,
        peer: high,
        nbd: None,
        size,
        al_extents,
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
            pair_nodes(Path::new("/tmp/x"), "/dev/shm/s.img".into(), 1 << 30, None).unwrap();
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
