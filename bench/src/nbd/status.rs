//! Reading a volume's state from a running Fulcrum's control socket (`show volume`, the JSON of
//! `fulcrum status volume --json`), and waiting for a state.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::harness::ask;

/// The fields of one volume the benchmark looks at; the others are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct VolumeStatus {
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) connection: String,
    pub(crate) disk: String,
    pub(crate) peer_disk: Option<String>,
    pub(crate) out_of_sync_bytes: u64,
}

impl VolumeStatus {
    /// Connected, and both copies UpToDate: nothing left to resync.
    pub(crate) fn in_sync(&self) -> bool {
        self.connection == "Connected"
            && self.disk == "UpToDate"
            && self.peer_disk.as_deref() == Some("UpToDate")
    }

    /// A resync runs, in either direction.
    pub(crate) fn syncing(&self) -> bool {
        self.connection == "SyncSource" || self.connection == "SyncTarget"
    }
}

/// Asks the process behind `socket` for volume `name`.
pub(crate) fn volume_status(socket: &Path, name: &str) -> anyhow::Result<VolumeStatus> {
    parse_volume(&ask(socket, "show volume")?, name)
}

fn parse_volume(answer: &str, name: &str) -> anyhow::Result<VolumeStatus> {
    let volumes: Vec<VolumeStatus> = serde_json::from_str(answer)
        .with_context(|| format!("`show volume` answered {:?}", answer.trim()))?;
    match volumes.into_iter().find(|v| v.name == name) {
        Some(volume) => Ok(volume),
        None => bail!("`show volume` does not list volume {name}"),
    }
}

/// Polls `socket` every `every` until `done` holds, for at most `patience`; returns the status
/// that satisfied it. Errors (a socket not there yet) count as "not yet".
pub(crate) fn wait_status(
    socket: &Path,
    name: &str,
    patience: Duration,
    every: Duration,
    mut done: impl FnMut(&VolumeStatus) -> bool,
) -> anyhow::Result<VolumeStatus> {
    let deadline = Instant::now() + patience;
    loop {
        let last = match volume_status(socket, name) {
            Ok(status) if done(&status) => return Ok(status),
            Ok(status) => format!("{status:?}"),
            Err(error) => format!("{error:#}"),
        };
        if Instant::now() >= deadline {
            bail!("volume {name} did not reach the state wanted within {patience:?}; last: {last}");
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::parse_volume;

    #[test]
    fn parses_what_show_volume_answers() {
        // Input: `show volume` on a primary with its peer Connected. Output: the fields kept.
        let answer = r#"[{"name":"v","role":"Primary","peer_role":"Secondary","connection":"Connected","disk":"UpToDate","peer_disk":"UpToDate","protocol":"C","out_of_sync_bytes":0,"resync_percent":null,"resync_bytes_per_sec":null,"nbd":"127.0.0.1:10810","net_sent_bytes":0,"net_received_bytes":0,"disk_written_bytes":0,"disk_read_bytes":0}]"#;
        let v = parse_volume(answer, "v").unwrap();
        assert!(v.in_sync());
        assert!(!v.syncing());
        assert_eq!(v.role, "Primary");
        // Input: a primary whose peer is away. Output: not in sync, peer disk unknown.
        let answer = r#"[{"name":"v","role":"Primary","peer_role":null,"connection":"WFConnection","disk":"UpToDate","peer_disk":null,"out_of_sync_bytes":4096}]"#;
        let v = parse_volume(answer, "v").unwrap();
        assert!(!v.in_sync());
        assert_eq!(v.out_of_sync_bytes, 4096);
        assert!(parse_volume(answer, "w").is_err());
        assert!(parse_volume("unknown command", "v").is_err());
    }
}
