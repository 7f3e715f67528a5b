//! The tables of a sync run: the machine and the set-up, the medians with Fulcrum's ratio to
//! the reference, the goals, and every round.

use std::fmt::Write as _;

use super::report::SyncReport;
use crate::harness::{first_line, markdown_header, number, render_goals};

/// The whole Markdown file.
pub fn render_markdown(report: &SyncReport) -> String {
    let mut md = String::new();
    let (m, s, sum) = (&report.machine, &report.settings, &report.summary);
    markdown_header(
        &mut md,
        "Directory sync, Fulcrum vs lsyncd and rsync",
        &report.date,
        &report.command,
        (&m.cpu_model, m.cores, &m.kernel),
    );
    let _ = writeln!(md, "| trees | {} ({}) |", s.dir.display(), m.filesystem);
    let _ = writeln!(md, "| Fulcrum | {} |", m.fulcrum_version);
    let _ = writeln!(md, "| rsync | {} |", m.rsync_version);
    let _ = writeln!(md, "| lsyncd | {} |", m.lsyncd_version);
    let _ = writeln!(
        md,
        "| Fulcrum | two `fulcrum run` processes on loopback, one `[sync.bench]` each, `delay = \"{}ms\"` |",
        s.delay_ms
    );
    let _ = writeln!(
        md,
        "| references | an rsync daemon on loopback (`rsync --daemon`, a writable module on B's directory); lsyncd `default.rsync` to it with `delay = {}`; `rsync -a` to it |",
        s.delay_ms / 1000.0
    );
    let _ = writeln!(
        md,
        "| latency | {} rewrites of a {}-byte file on A (new bytes and mtime each time), each timed until B's copy reads back the new bytes (read every 100 µs) |",
        s.changes, s.change_bytes
    );
    let _ = writeln!(
        md,
        "| initial sync | {} files, {} bytes (most below 64 KiB, 1 in 1000 large); Fulcrum: from starting B on an empty directory (A up and indexed) until A has nothing pending and B lists the same files; rsync: `rsync -a` wall time |",
        s.files, s.tree_bytes
    );
    let _ = writeln!(
        md,
        "| delta | {} of a {}-byte file rewritten in place in {} regions; Fulcrum: A's `bytes_sent` (file data and deltas); rsync: `--stats` Total bytes sent |",
        s.delta_change_bytes, s.delta_file_bytes, s.delta_regions
    );
    let _ = writeln!(
        md,
        "| runs | {} round(s); Fulcrum first in odd rounds, the reference first in even ones |\n",
        s.rounds
    );

    md.push_str(
        "Each cell is the median over the rounds; the ratio is Fulcrum's over the reference's.\n\n",
    );
    md.push_str(
        "| measure | Fulcrum | reference | reference is | ×reference |\n|---|---:|---:|---|---:|\n",
    );
    let rows = [
        (
            "4 KiB change, p50 (ms)",
            sum.fulcrum_p50_ms,
            sum.lsyncd_p50_ms,
            "lsyncd + rsync daemon",
            sum.p50_ratio,
            1,
        ),
        (
            "4 KiB change, p99 (ms)",
            sum.fulcrum_p99_ms,
            sum.lsyncd_p99_ms,
            "lsyncd + rsync daemon",
            sum.p99_ratio,
            1,
        ),
        (
            "initial sync (s)",
            sum.fulcrum_initial_s,
            sum.rsync_initial_s,
            "`rsync -a` to the daemon",
            sum.initial_ratio,
            2,
        ),
        (
            "bytes sent for the 1% change",
            sum.fulcrum_delta_bytes,
            sum.rsync_delta_bytes,
            "`rsync -a` to the daemon",
            sum.delta_ratio,
            0,
        ),
    ];
    for (name, fulcrum, reference, what, ratio, decimals) in rows {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {what} | {} |",
            number(fulcrum, decimals),
            number(reference, decimals),
            number(ratio, 2)
        );
    }
    md.push('\n');
    render_goals(&mut md, "goal (issue 8)", "≤", &sum.goals);

    md.push_str("\n## Rounds\n\n| round | latency | p50 (ms) | p99 (ms) | mean (ms) | max (ms) |\n|---:|---|---:|---:|---:|---:|\n");
    for r in &report.latency {
        let cells = [r.p50_ms, r.p99_ms, r.mean_ms, r.max_ms].map(|v| number(v, 1));
        round_row(
            &mut md,
            r.round,
            label(r.tool, "lsyncd"),
            r.error.as_deref(),
            &cells,
        );
    }
    md.push_str("\n| round | initial sync | seconds | MiB/s |\n|---:|---|---:|---:|\n");
    for r in &report.initial {
        let cells = [number(r.seconds, 2), number(r.mib_per_s, 0)];
        round_row(
            &mut md,
            r.round,
            label(r.tool, "rsync -a"),
            r.error.as_deref(),
            &cells,
        );
    }
    md.push_str("\n| round | delta | bytes sent | bytes received | saved by delta | seconds |\n|---:|---|---:|---:|---:|---:|\n");
    for r in &report.delta {
        let int = |v: Option<u64>| v.map_or_else(|| "–".to_owned(), |v| v.to_string());
        let cells = [
            int(r.bytes_sent),
            int(r.bytes_received),
            int(r.bytes_saved_by_delta),
            number(r.seconds, 2),
        ];
        round_row(
            &mut md,
            r.round,
            label(r.tool, "rsync -a"),
            r.error.as_deref(),
            &cells,
        );
    }
    md
}

/// One round's row: its `cells`, or, for a failed round, the first line of its error in the
/// first cell and the others left empty.
fn round_row(md: &mut String, round: usize, tool: &str, error: Option<&str>, cells: &[String]) {
    let _ = match error {
        Some(e) => writeln!(
            md,
            "| {round} | {tool} | failed: {} |{}",
            first_line(e),
            " |".repeat(cells.len().saturating_sub(1))
        ),
        None => writeln!(md, "| {round} | {tool} | {} |", cells.join(" | ")),
    };
}

fn label(tool: super::Tool, reference: &'static str) -> &'static str {
    match tool {
        super::Tool::Fulcrum => "Fulcrum",
        super::Tool::Reference => reference,
    }
}
