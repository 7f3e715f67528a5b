//! The tables of a failover run: the machine and the set-up, one summary row per case, and the
//! rounds one by one.

use std::fmt::Write as _;

use super::report::{CaseReport, FailoverReport, FailoverRound};
use super::{Case, Contender};
use crate::harness::markdown_header;

/// The whole Markdown file.
pub fn render_markdown(report: &FailoverReport) -> String {
    let mut md = String::new();
    let m = &report.machine;
    let s = &report.settings;
    markdown_header(
        &mut md,
        "Failover gap, Fulcrum vs keepalived",
        &report.date,
        &report.command,
        (&m.cpu_model, m.cores, &m.kernel),
    );
    let _ = writeln!(md, "| Fulcrum | {} |", m.fulcrum_version);
    let _ = writeln!(md, "| keepalived | {} |", m.keepalived_version);
    let _ = writeln!(
        md,
        "| lab | network namespaces on one Linux bridge: node A 10.88.0.1 (priority 150), node B 10.88.0.2 (priority 100), client 10.88.0.100; VIP 10.88.0.50/32, VRID 50 |"
    );
    let _ = writeln!(
        md,
        "| listeners | `fulcrum run` on each node, a frontend on 10.88.0.50:8080 answering 200 itself (bound with IP_FREEBIND) |"
    );
    let _ = writeln!(
        md,
        "| Fulcrum | `[vrrp]` in those processes; A's process gets the signal, its proxy dies with it |"
    );
    let _ = writeln!(
        md,
        "| keepalived | keepalived `--vrrp` beside Fulcrum without `[vrrp]`; A's keepalived gets the signal (SIGKILL: its VRRP child first), A's listener keeps running |"
    );
    let _ = writeln!(
        md,
        "| client | `fulcrum-bench probe` in the client namespace: a TCP connect every {} ms, {} ms timeout each, for {} s; A fails {} s in |",
        s.interval_ms, s.timeout_ms, s.duration_s, s.fail_after_s
    );
    let _ = writeln!(
        md,
        "| runs | {} round(s) per case, Fulcrum then keepalived, a fresh lab each |\n",
        s.rounds
    );
    md.push_str(
        "The gap is the longest time the client could not connect: from the start of the last \
         successful connect before a run of failures to the start of the first successful one \
         after it, so it has the probe's resolution (one interval). Takeover is the time from \
         the signal until B held the VIP, polled with `ip addr` every ~5 ms. Each cell is the \
         median over the rounds.\n\n",
    );

    md.push_str("| case | Fulcrum gap (ms) | keepalived gap (ms) | Fulcrum/keepalived | expected (ms) | goal for Fulcrum | met | Fulcrum takeover (ms) | keepalived takeover (ms) |\n");
    md.push_str("|---|---:|---:|---:|---:|---|---|---:|---:|\n");
    for case in &report.cases {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | ≤ {} ms | {} | {} | {} |",
            case.case,
            number(case.fulcrum_gap_ms),
            number(case.keepalived_gap_ms),
            ratio(case.ratio),
            number(Some(case.expected_ms)),
            number(Some(case.goal_ms)),
            match case.goal_met {
                Some(true) => "**met**",
                Some(false) => "**not met**",
                None => "not measured",
            },
            number(case.fulcrum_takeover_ms),
            number(case.keepalived_takeover_ms),
        );
    }
    md.push('\n');
    for case in &report.cases {
        render_case(&mut md, case);
    }
    md
}

fn render_case(md: &mut String, case: &CaseReport) {
    let _ = writeln!(md, "## {}: {}\n", case.case, case.case.description());
    let _ = writeln!(md, "{}\n", expectation(case.case));
    md.push_str("| round | contender | gap (ms) | gap began (ms after the signal) | failed connects in the gap | refused / timed out / other (whole probe) | takeover (ms) |\n");
    md.push_str("|---:|---|---:|---:|---:|---|---:|\n");
    for round in &case.rounds {
        render_round(md, round);
    }
    md.push('\n');
}

fn render_round(md: &mut String, round: &FailoverRound) {
    if let Some(error) = &round.error {
        let _ = writeln!(
            md,
            "| {} | {} | failed: {} | | | | |",
            round.round,
            round.contender,
            error.lines().next().unwrap_or_default().replace('|', "\\|")
        );
        return;
    }
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} / {} / {} | {} |",
        round.round,
        round.contender,
        number(round.gap_ms),
        number(round.gap_from_ms),
        round.failures,
        round.refused,
        round.timeouts,
        round.errors,
        number(round.takeover_ms),
    );
}

/// What the timers predict and what the contenders' failure looks like to the client.
fn expectation(case: Case) -> String {
    let skew = case.skew().as_secs_f64() * 1000.0;
    match case {
        Case::Sigterm => format!(
            "A resigns with a priority 0 advert and drops the VIP, so B takes over after its \
             skew time, (256 − 100)/256 s = {skew:.1} ms. Until B's gratuitous ARP arrives the \
             client's packets go to A, which no longer holds the VIP: connects time out."
        ),
        Case::Sigkill => format!(
            "Nothing tells B; it takes over a master down interval, 3 × 100 ms + skew \
             {skew:.1} ms = {:.1} ms, after the last advert it heard, which came 0 to 100 ms \
             before the signal: so 100 ms less at best. The VIP stays on A. With {}, A's proxy died with its \
             VRRP, so connects are refused until B's gratuitous ARP; with {}, A's listener still \
             answers on the VIP it still holds, so the client may see no gap at all.",
            case.expected().as_secs_f64() * 1000.0,
            Contender::Fulcrum,
            Contender::Keepalived
        ),
    }
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"))
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}
