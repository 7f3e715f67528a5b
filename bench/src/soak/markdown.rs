//! The tables of a soak run: the machine and the set-up, the goals, each fault with its window
//! and failover, the requests inside and outside the windows, the writes checked at the end,
//! and the memory series, with the chart below.

use std::fmt::Write as _;

use super::FaultKind;
use super::chart::chart_file;
use super::report::{FaultReport, SoakReport};
use crate::harness::{first_line, markdown_header, number, render_goals_by};

/// The whole Markdown file.
pub fn render_markdown(report: &SoakReport) -> String {
    let mut md = String::new();
    let m = &report.machine;
    let s = &report.settings;
    markdown_header(
        &mut md,
        "Soak run: seed 004 under steady load and rotating faults",
        &report.date,
        &report.command,
        (&m.cpu_model, m.cores, &m.kernel),
    );
    let _ = writeln!(md, "| Fulcrum | {} |", m.fulcrum_version);
    if let Some(source) = &m.source {
        let _ = writeln!(
            md,
            "| source | `{source}` (`git describe --always --dirty`) |"
        );
    }
    md.push_str(
        "| site | the lab's seed 004 in network namespaces on one bridge: a client, the director \
         (L4, rr over VIP1 and VIP2), L7 nodes A and B in dual master (VIP1 on A, VIP2 on B; \
         POSTs to the upload origin on A, cookie-sticky web1/web2), a protocol C volume \
         following VI_1 with NBD on VIP1, the upload directories synced both ways (64 MiB \
         tmpfs each) |\n",
    );
    md.push_str(
        "| load | in-process clients in the client namespace, one connection per request \
         through the director: anonymous GETs, three cookie-keeping browsers (starting with s1, \
         s2, none), each every 50 ms; an upload (a 1.5 KiB POST) every 200 ms, over 200 file \
         names rewritten in turn; a 4 KiB NBD write and flush to VIP1 every 200 ms, each to a \
         slot of its own |\n",
    );
    let kinds: Vec<&str> = s.faults.iter().map(|k| k.name()).collect();
    let director = if s.faults.contains(&FaultKind::Director) {
        " (the director: 2 s)"
    } else {
        ""
    };
    let aimed = s
        .node
        .as_ref()
        .map_or_else(String::new, |n| format!("; every L7 fault on {n}"));
    let _ = writeln!(
        md,
        "| faults | one every {} s from {} s on, in rotation: {}{aimed}; each held {} s{director}, then undone; a window is capped at {} s |",
        s.fault_every_s,
        s.fault_every_s,
        kinds.join(", "),
        s.hold_s,
        s.window_cap_s
    );
    let _ = writeln!(
        md,
        "| run | {:.0} s of load (asked: {:.0} s); memory sampled every 2 s, growth from {:.0} s after a process's first sample to its last |\n",
        report.ran_s, s.duration_s, s.warmup_s
    );
    md.push_str(
        "A fault window runs from the injection until the site is healthy again: each VIP on \
         its own master, the director seeing both UP, every L7 backend server UP on both nodes, \
         A's volume primary, connected and UpToDate on both sides, the sync set connected on \
         both nodes, and a request through the front answered. A request counts inside a window \
         when it was under way at some point of it. How the run works, and what it has turned \
         up: [README.md](README.md).\n\n",
    );

    md.push_str("## Goals\n\n");
    render_goals_by(&mut md, "goal", &report.goals, |goal| {
        if goal.name == "rss-growth" {
            "<"
        } else {
            "≤"
        }
    });

    if let Some(dir) = &report.kept_logs {
        let _ = writeln!(
            md,
            "\nA goal failed: the nodes' logs, the alerts and the site's state were kept in `{}`.",
            dir.display()
        );
    }
    md.push_str("\n## Faults\n\n");
    for kind in &s.faults {
        let _ = writeln!(md, "- `{kind}`: {}", kind.description());
    }
    md.push_str(
        "\n| # | at (s) | fault | node | failover | window (s) | recovered | requests in window | failed | notes |\n\
         |---:|---:|---|---|---|---:|---|---:|---|---|\n",
    );
    for f in &report.faults {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {} | {} | {} | {:.1} | {} | {} | {} | {} |",
            f.n,
            f.injected_at_s,
            f.kind,
            f.node,
            failover(f),
            f.window_s,
            if f.recovered {
                "yes".to_owned()
            } else {
                format!("**no**: {}", f.unhealthy.as_deref().unwrap_or("not undone"))
            },
            f.requests,
            failed(f),
            f.notes
                .iter()
                .map(|n| first_line(n))
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    md.push('\n');
    summary_by_kind(&mut md, report);

    md.push_str("\n## Requests\n\n| kind | requests | failed inside windows | failed outside |\n|---|---:|---:|---:|\n");
    for k in &report.requests.by_kind {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            k.kind.name(),
            k.total,
            k.failed_inside,
            k.failed_outside
        );
    }
    let t = &report.requests;
    let _ = writeln!(
        md,
        "| **all** | {} | {} | {} |\n",
        t.total, t.failed_inside, t.failed_outside
    );
    let _ = writeln!(
        md,
        "Sticky answers from another web server than the cookie named, outside the windows: {}.\n",
        t.sticky_broken_outside
    );
    if !report.failed_outside.is_empty() {
        md.push_str("Failed outside the windows:\n\n| at (s) | kind | worker | took (ms) | error |\n|---:|---|---:|---:|---|\n");
        for r in &report.failed_outside {
            let _ = writeln!(
                md,
                "| {:.1} | {} | {} | {:.0} | {} |",
                r.at_s,
                r.kind.name(),
                r.worker,
                r.took_ms,
                first_line(&r.error)
            );
        }
        md.push('\n');
    }

    md.push_str("## Acknowledged writes\n\n| write | attempted | acknowledged | checked | lost |\n|---|---:|---:|---:|---:|\n");
    for (what, check) in [
        (
            "uploads (201), on both nodes byte for byte, before the name is reused and at the end",
            &report.uploads,
        ),
        (
            "NBD writes (flush returned), read back from VIP1",
            &report.nbd_writes,
        ),
    ] {
        let _ = writeln!(
            md,
            "| {what} | {} | {} | {} | {} |",
            check.attempted, check.acknowledged, check.checked, check.lost
        );
        for example in &check.lost_examples {
            let _ = writeln!(md, "\n- lost: {}", first_line(example));
        }
    }

    md.push_str("\n## Memory (VmRSS)\n\n| process | pid | first sample (s) | last sample (s) | warm (MiB) | last (MiB) | span (s) | growth |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for series in &report.memory {
        let (first, last) = (
            series.samples.first().map(|s| s.0),
            series.samples.last().map(|s| s.0),
        );
        let mib = |kib: Option<u64>| number(kib.map(|k| k as f64 / 1024.0), 1);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} |",
            series.node,
            series.pid,
            number(first, 0),
            number(last, 0),
            mib(series.warm_kib),
            mib(series.last_kib),
            series.span_s,
            series
                .growth_pct
                .map_or_else(|| "– (too short)".to_owned(), |g| format!("{g:+.2} %")),
        );
    }
    let _ = writeln!(
        md,
        "\n![requests per second with the fault windows shaded, and each process's RSS]({})",
        chart_file(&report.date)
    );
    md
}

/// `VIP1 → B 3.4 s`, each VIP that moved, or `–`.
fn failover(f: &FaultReport) -> String {
    if f.takeovers.is_empty() {
        return "–".to_owned();
    }
    f.takeovers
        .iter()
        .map(|t| format!("{} → {} {:.1} s", t.vip, t.to, t.after_s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `12 (get 3, nbd-write 9)`.
fn failed(f: &FaultReport) -> String {
    if f.failed == 0 {
        return "0".to_owned();
    }
    let by: Vec<String> = f
        .failed_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!("{} ({})", f.failed, by.join(", "))
}

/// One row per fault kind: how many, the median window and takeover, the failed requests.
fn summary_by_kind(md: &mut String, report: &SoakReport) {
    md.push_str("| fault | injected | recovered | window (s), median / max | takeover (s), median | failed requests |\n|---|---:|---:|---|---:|---:|\n");
    for kind in FaultKind::ALL {
        let of: Vec<&FaultReport> = report.faults.iter().filter(|f| f.kind == kind).collect();
        if of.is_empty() {
            continue;
        }
        let windows: Vec<f64> = of.iter().map(|f| f.window_s).collect();
        let takeovers: Vec<f64> = of
            .iter()
            .flat_map(|f| f.takeovers.iter().map(|t| t.after_s))
            .collect();
        let _ = writeln!(
            md,
            "| {kind} | {} | {} | {} / {} | {} | {} |",
            of.len(),
            of.iter().filter(|f| f.recovered).count(),
            number(crate::compare::median(&windows), 1),
            number(windows.iter().copied().reduce(f64::max), 1),
            number(crate::compare::median(&takeovers), 1),
            of.iter().map(|f| f.failed).sum::<usize>(),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::soak::clients::Kind;

    #[test]
    fn kinds_have_table_names() {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["get", "sticky", "upload", "nbd-write"]);
    }
}
