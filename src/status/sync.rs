//! `fulcrum status sync`: each directory sync set with its peers, the changes they have not
//! acknowledged, the last complete sync, conflicts and transfer counters.

use std::{fmt::Write, path::Path, process::ExitCode};

use fulcrum_common::stats::SyncSet;
use fulcrum_storage::sync::{describe_scan, index::ScanCounts};

use crate::control;

/// Asks the running process and prints its sync sets (or the raw JSON with `json`).
pub(crate) fn sync(config_path: &Path, socket: Option<&Path>, json: bool) -> ExitCode {
    super::show(
        config_path,
        socket,
        control::SHOW_SYNC,
        json,
        |sets: Vec<SyncSet>| render(&sets),
    )
}

/// The listing, as text.
pub(crate) fn render(sets: &[SyncSet]) -> String {
    if sets.is_empty() {
        return "No sync set configured.\n".to_owned();
    }
    let mut out = String::new();
    for s in sets {
        let last = s.last_sync_secs.map_or_else(
            || "never".to_owned(),
            |secs| format!("{} ago", super::l4::age(secs)),
        );
        let _ = writeln!(out, "sync set {} ({}): {}", s.name, s.path, s.state);
        for peer in &s.peers {
            let _ = writeln!(out, "  peer         {peer}");
        }
        let _ = writeln!(
            out,
            "  pending      {} change(s)   last sync {last}",
            s.pending
        );
        if let Some(error) = &s.scan_error {
            let _ = writeln!(out, "  scan failed  {error} (tried again every 30 s)");
        }
        if s.state == "scanning" {
            let counts = ScanCounts {
                examined: s.scan_examined,
                hashed: s.scan_hashed,
                total_paths: s.scan_total_paths,
                total_bytes: s.scan_total_bytes,
            };
            let bar = counts
                .fraction()
                .map(|(done, total)| format!("{}  ", progress_bar(done, total)))
                .unwrap_or_default();
            let _ = writeln!(out, "  scanning     {bar}{}", describe_scan(&counts));
        }
        if s.catch_up_total > 0 {
            let _ = writeln!(
                out,
                "  catching up  {}  {} of {} change(s)",
                progress_bar(s.catch_up_done, s.catch_up_total),
                s.catch_up_done,
                s.catch_up_total
            );
        }
        let _ = writeln!(out, "  conflicts    {}", s.conflicts);
        let _ = writeln!(
            out,
            "  transfers    sent {} file(s) / {} KiB, received {} file(s) / {} KiB, {} KiB saved by deltas",
            s.files_sent,
            s.bytes_sent / 1024,
            s.files_received,
            s.bytes_received / 1024,
            s.bytes_saved_by_delta / 1024
        );
        let _ = writeln!(out, "  overflows    {}   errors {}", s.overflows, s.errors);
    }
    out
}

/// `[#########...........]  45 %`: `done` of `total`, in 20 steps.
fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 20;
    let done = done.min(total);
    let filled = (done * WIDTH / total.max(1)) as usize;
    let percent = done * 100 / total.max(1);
    format!(
        "[{}{}] {percent:>3} %",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_shows_its_peers_queue_and_counters() {
        let out = render(&[SyncSet {
            name: "web".into(),
            path: "/data/www".into(),
            state: "connected".into(),
            peers: vec!["172.16.0.88:8730 (web2) up".into()],
            pending: 2,
            conflicts: 1,
            last_sync_secs: Some(5),
            files_sent: 3,
            bytes_sent: 4096,
            ..SyncSet::default()
        }]);
        assert!(out.contains("sync set web (/data/www): connected"), "{out}");
        assert!(
            out.contains("peer         172.16.0.88:8730 (web2) up"),
            "{out}"
        );
        assert!(
            out.contains("pending      2 change(s)   last sync 00:05 ago"),
            "{out}"
        );
        assert!(out.contains("sent 3 file(s) / 4 KiB"), "{out}");
    }

    #[test]
    fn a_catch_up_shows_a_progress_bar_and_only_while_it_runs() {
        let set = |done, total| SyncSet {
            name: "web".into(),
            catch_up_done: done,
            catch_up_total: total,
            ..SyncSet::default()
        };
        let out = render(&[set(4500, 10_000)]);
        assert!(
            out.contains("catching up  [#########...........]  45 %  4500 of 10000 change(s)"),
            "{out}"
        );
        assert!(!render(&[set(0, 0)]).contains("catching up"));
        assert_eq!(progress_bar(3, 3), "[####################] 100 %");
    }

    // Input: a set scanning a measured tree (1 of 4 GiB hashed), a restart's scan (paths
    // against the index's entries), one with no total, and a set done scanning. Output: a
    // bar by octets, a bar by paths, counts alone, and no scan line.
    #[test]
    fn a_start_up_scan_shows_its_progress_while_it_runs() {
        const MIB: u64 = 1024 * 1024;
        let scanning = |examined, hashed, total_paths, total_bytes| SyncSet {
            name: "web".into(),
            state: "scanning".into(),
            scan_examined: examined,
            scan_hashed: hashed,
            scan_total_paths: total_paths,
            scan_total_bytes: total_bytes,
            ..SyncSet::default()
        };
        let out = render(&[scanning(2_000, 1024 * MIB, 9_000, 4096 * MIB)]);
        assert!(out.contains("sync set web (): scanning"), "{out}");
        assert!(
            out.contains("scanning     [#####...............]  25 %  1024 of 4096 MiB hashed"),
            "{out}"
        );
        let out = render(&[scanning(4_500, 0, 10_000, 0)]);
        assert!(
            out.contains("[#########...........]  45 %  4500 of 10000 paths examined"),
            "{out}"
        );
        let out = render(&[scanning(1_200, 3 * MIB, 0, 0)]);
        assert!(
            out.contains("scanning     1200 paths examined, 3 MiB hashed"),
            "{out}"
        );
        let done = SyncSet {
            state: "connected".into(),
            ..scanning(0, 0, 0, 0)
        };
        assert!(!render(&[done]).contains("scanning"));
        let failed = SyncSet {
            state: "scan failed".into(),
            scan_error: Some("cannot write the index: Is a directory".into()),
            ..scanning(10, 0, 0, 0)
        };
        assert!(
            render(&[failed]).contains(
                "scan failed  cannot write the index: Is a directory (tried again every 30 s)"
            ),
            "a failed scan says why"
        );
    }

    #[test]
    fn no_set_says_so() {
        assert_eq!(render(&[]), "No sync set configured.\n");
    }
}
