//! The tables of an nbd run: the machine and the set-up, the medians per server with their
//! ratios to qemu-nbd, the resync, the goals, and every round.

use std::fmt::Write as _;

use super::report::{NbdReport, NbdRun, ResyncRun};
use crate::harness::{first_line, markdown_header, number, render_goals};

/// The whole Markdown file.
pub fn render_markdown(report: &NbdReport) -> String {
    let mut md = String::new();
    let m = &report.machine;
    let s = &report.settings;
    let size = size_text(s.size_bytes);
    markdown_header(
        &mut md,
        "NBD export, Fulcrum vs qemu-nbd",
        &report.date,
        &report.command,
        (&m.cpu_model, m.cores, &m.kernel),
    );
    let _ = writeln!(
        md,
        "| backing files | {} ({}), fresh sparse files every run |",
        s.dir.display(),
        m.filesystem
    );
    let _ = writeln!(
        md,
        "| free page reporting | {} |",
        m.free_page_reporting.as_deref().unwrap_or("none")
    );
    let _ = writeln!(md, "| Fulcrum | {} |", m.fulcrum_version);
    let _ = writeln!(md, "| qemu-nbd | {} |", m.qemu_nbd_version);
    let _ = writeln!(md, "| nbdcopy | {} |", m.nbdcopy_version);
    let _ = writeln!(
        md,
        "| fio | {} |",
        m.fio_version.as_deref().unwrap_or("not found: no latency")
    );
    let _ = writeln!(
        md,
        "| qemu-nbd | `qemu-nbd -f raw --cache=writeback --aio=threads --persistent`: the page cache, fdatasync on FLUSH and FUA; the goals' reference |"
    );
    let _ = writeln!(
        md,
        "| qemu-nbd, cache=none | `qemu-nbd -f raw --cache=none --aio=native --persistent`: O_DIRECT, fdatasync on FLUSH and FUA, as Fulcrum's writes of 128 KiB or more (`direct_io`, on by default) |"
    );
    let _ = writeln!(
        md,
        "| Fulcrum | `fulcrum run` with one `[volume]` of {size}, protocol C, no `resync_rate`: alone, its `peer` a closed port; as a pair, a secondary on loopback, Connected and UpToDate before the writes, its backing file in {} ({}) |",
        s.secondary_dir.display(),
        m.secondary_filesystem
    );
    let _ = writeln!(
        md,
        "| writes | `nbdcopy --flush --request-size={} --connections={}` of {size} from a random file in {} (the final FLUSH is timed) |",
        s.request_size_bytes,
        s.connections,
        s.source_dir.display()
    );
    if s.latency_duration_s > 0.0 {
        let _ = writeln!(
            md,
            "| latency | fio `--ioengine=nbd --rw=randwrite --bs=4k --iodepth=1`, 1 s ramp then {} s; submission to completion |",
            s.latency_duration_s
        );
    }
    let _ = writeln!(
        md,
        "| resync | the pair's secondary gets SIGTERM, {size} is written on the primary, the secondary starts again; timed from its start until both nodes show Connected and UpToDate (polled every 10 ms) |"
    );
    let _ = writeln!(
        md,
        "| runs | {} round(s), each qemu-nbd, qemu-nbd with cache=none, Fulcrum alone, the Fulcrum pair; `sync` before each timed step |\n",
        s.rounds
    );

    md.push_str("Each cell is the median over the rounds; ratios are over qemu-nbd's median (the goals' reference), and the write's also over qemu-nbd with cache=none.\n\n");
    md.push_str("| server | seq write (MiB/s) | ×qemu-nbd | ×cache=none | 4 KiB randwrite p50 (µs) | p99 (µs) | p99 ×qemu-nbd | IOPS |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in &report.summary.servers {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.server,
            number(row.write_mib_per_s, 0),
            number(row.write_ratio, 2),
            number(row.write_ratio_direct, 2),
            number(row.p50_us, 0),
            number(row.p99_us, 0),
            number(row.p99_ratio, 2),
            number(row.iops, 0),
        );
    }
    let sum = &report.summary;
    let _ = writeln!(
        md,
        "\nResync of {size}: {} s from the secondary's start, {} MiB/s; the transfer alone (from SyncSource on the primary), {} MiB/s.\n",
        number(sum.resync_seconds, 2),
        number(sum.resync_mib_per_s, 0),
        number(sum.resync_sync_mib_per_s, 0),
    );

    render_goals(&mut md, "goal (issue 7)", "≥", &sum.goals);

    md.push_str("\n## Rounds\n\n");
    md.push_str("| round | server | seq write (MiB/s) | seconds | p50 (µs) | p99 (µs) | IOPS |\n");
    md.push_str("|---:|---|---:|---:|---:|---:|---:|\n");
    for run in &report.runs {
        render_run(&mut md, run);
    }
    md.push_str("\n| round | resync bytes | seconds from start | MiB/s | transfer MiB/s |\n");
    md.push_str("|---:|---:|---:|---:|---:|\n");
    for resync in &report.resyncs {
        render_resync(&mut md, resync);
    }
    md
}

fn render_run(md: &mut String, run: &NbdRun) {
    if let Some(error) = &run.error {
        let _ = writeln!(
            md,
            "| {} | {} | failed: {} | | | | |",
            run.round,
            run.server,
            first_line(error)
        );
        return;
    }
    let write = run.write.as_ref();
    let latency = run.latency.as_ref();
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} | {} |",
        run.round,
        run.server,
        number(write.map(|w| w.mib_per_s), 0),
        number(write.map(|w| w.seconds), 2),
        number(latency.map(|l| l.p50_us), 0),
        number(latency.map(|l| l.p99_us), 0),
        number(latency.map(|l| l.iops), 0),
    );
}

fn render_resync(md: &mut String, resync: &ResyncRun) {
    if let Some(error) = &resync.error {
        let _ = writeln!(
            md,
            "| {} | failed: {} | | | |",
            resync.round,
            first_line(error)
        );
        return;
    }
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} |",
        resync.round,
        resync
            .bytes
            .map_or_else(|| "–".to_owned(), |b| b.to_string()),
        number(resync.seconds, 2),
        number(resync.mib_per_s, 0),
        number(resync.sync_mib_per_s, 0),
    );
}

/// `1 GiB`, `16 MiB`, or bytes.
fn size_text(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    match bytes {
        b if b >= 1 << 30 && b.is_multiple_of(1 << 30) => format!("{} GiB", b >> 30),
        b if b.is_multiple_of(MIB) => format!("{} MiB", b / MIB),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::size_text;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(1 << 30), "1 GiB");
        assert_eq!(size_text(16 << 20), "16 MiB");
        assert_eq!(size_text(4096), "4096 bytes");
    }
}
