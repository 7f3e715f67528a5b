//! `fulcrum status volume`: each replicated volume as DRBD 8.4's `/proc/drbd` shows it, so DRBD
//! users read connection state (`cs`), roles (`ro`), disk states (`ds`), protocol, traffic in
//! KiB (`ns` `nr` `dw` `dr`), out-of-sync KiB (`oos`) and a resync bar at a glance.

use std::{fmt::Write, path::Path, process::ExitCode};

use fulcrum_common::stats::Volume;

use crate::control;

/// Asks the running process and prints its volumes (or the raw JSON with `json`).
pub(crate) fn volume(config_path: &Path, socket: Option<&Path>, json: bool) -> ExitCode {
    super::show(
        config_path,
        socket,
        control::SHOW_VOLUME,
        json,
        |volumes: Vec<Volume>| render(&volumes),
    )
}

/// The listing, as text.
pub(crate) fn render(volumes: &[Volume]) -> String {
    if volumes.is_empty() {
        return "No replicated volume configured.\n".to_owned();
    }
    let mut out = String::new();
    let kib = |bytes: u64| bytes / 1024;
    for v in volumes {
        let peer = |s: &Option<String>, none: &str| s.clone().unwrap_or_else(|| none.to_owned());
        let nbd = v
            .nbd
            .as_deref()
            .map(|a| format!(" nbd:{a}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            " {}: cs:{} ro:{}/{} ds:{}/{} {}{nbd}",
            v.name,
            v.connection,
            v.role,
            peer(&v.peer_role, "Unknown"),
            v.disk,
            peer(&v.peer_disk, "DUnknown"),
            v.protocol,
        );
        let _ = writeln!(
            out,
            "    ns:{} nr:{} dw:{} dr:{} oos:{}",
            kib(v.net_sent_bytes),
            kib(v.net_received_bytes),
            kib(v.disk_written_bytes),
            kib(v.disk_read_bytes),
            kib(v.out_of_sync_bytes),
        );
        if let Some(percent) = v.resync_percent {
            let filled = ((percent / 5.0) as usize).min(20);
            let bar: String = "=".repeat(filled) + ">" + &".".repeat(20 - filled);
            let _ = writeln!(
                out,
                "\t[{bar}] sync'ed: {percent:.1}% ({} KiB left)",
                kib(v.out_of_sync_bytes)
            );
            if let Some(speed) = v.resync_bytes_per_sec {
                let _ = writeln!(out, "\tspeed: {} K/sec", kib(speed));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_reads_like_proc_drbd() {
        let out = render(&[Volume {
            name: "nfs".into(),
            role: "Primary".into(),
            peer_role: Some("Secondary".into()),
            connection: "SyncSource".into(),
            disk: "UpToDate".into(),
            peer_disk: Some("Inconsistent".into()),
            protocol: "C".into(),
            out_of_sync_bytes: 768 * 1024,
            resync_percent: Some(25.0),
            resync_bytes_per_sec: Some(100 * 1024 * 1024),
            nbd: Some("127.0.0.1:10809".into()),
            net_sent_bytes: 2048,
            disk_written_bytes: 4096,
            ..Volume::default()
        }]);
        assert!(
            out.contains(" nfs: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C nbd:127.0.0.1:10809"),
            "{out}"
        );
        assert!(out.contains("    ns:2 nr:0 dw:4 dr:0 oos:768"), "{out}");
        assert!(
            out.contains("[=====>...............] sync'ed: 25.0% (768 KiB left)"),
            "{out}"
        );
        assert!(out.contains("speed: 102400 K/sec"), "{out}");
    }

    #[test]
    fn a_disconnected_peer_is_unknown() {
        let out = render(&[Volume {
            name: "r0".into(),
            role: "Secondary".into(),
            connection: "WFConnection".into(),
            disk: "UpToDate".into(),
            protocol: "C".into(),
            ..Volume::default()
        }]);
        assert!(
            out.contains("ro:Secondary/Unknown ds:UpToDate/DUnknown"),
            "{out}"
        );
        assert!(!out.contains("sync'ed"));
    }
}
