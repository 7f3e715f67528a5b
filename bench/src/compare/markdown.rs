//! The Markdown summary: how and where the comparison ran, then one table per scenario of
//! medians with the Fulcrum/HAProxy ratio (for `tcp-bulk`, also the stream without a proxy and
//! the Fulcrum/direct ratio; for `get-metrics`, Fulcrum with metrics off and on and their ratio
//! instead), and the scenario's goals. It is also what the CLI prints on stdout.

use super::goal::render_check;
use super::report::{CompareReport, ProxyRound, ScenarioReport, SummaryRow};
use super::stats::ratio;

/// Renders the whole summary.
pub fn render_markdown(report: &CompareReport) -> String {
    let m = &report.machine;
    let s = &report.settings;
    // A run of `get-metrics` alone never starts HAProxy, and says so.
    let metrics_only = s.scenarios.iter().all(|s| s.metrics());
    let any_metrics = s.scenarios.iter().any(|s| s.metrics());
    let (title, order) = if metrics_only {
        ("Fulcrum, metrics on vs off", "Fulcrum then Fulcrum+metrics")
    } else {
        (
            "Fulcrum vs HAProxy",
            "Fulcrum first in odd rounds, HAProxy first in even ones",
        )
    };
    let mut out = Vec::new();
    out.push(format!(
        "# {title}, {}",
        report.date.get(..10).unwrap_or(&report.date)
    ));
    out.push(String::new());
    out.push(format!(
        "Made on {} by:\n\n```sh\n{}\n```",
        report.date, report.command
    ));
    out.push(String::new());
    if s.quick {
        out.push(
            "**Quick run** (`--quick`, sized for a smoke test): these numbers only show that \
             the runner works."
                .to_owned(),
        );
        out.push(String::new());
    }
    out.push("| machine | |".to_owned());
    out.push("|---|---|".to_owned());
    out.push(format!(
        "| CPU | {} ({} logical CPUs) |",
        m.cpu_model, m.cores
    ));
    out.push(format!("| kernel | {} |", m.kernel));
    out.push(format!("| HAProxy | {} |", m.haproxy_version));
    out.push(format!("| Fulcrum | {} |", m.fulcrum_version));
    out.push(format!(
        "| pinning | proxy on CPU {}, origins and load generator on CPU {} |",
        s.proxy_cpu, s.load_cpu
    ));
    out.push(format!(
        "| runs | {} round(s) per scenario, {order}; {} s measured after {} s warm-up; {} \
         connections; {} idle connections |",
        s.rounds, s.duration_s, s.warmup_s, s.connections, s.idle_connections
    ));
    if s.scenarios.iter().any(|s| s.bulk()) {
        out.push(format!(
            "| tcp-bulk | one stream of {} MiB per run: without a proxy, then through each \
             proxy in the round's order; proxy CPU from `/proc/PID/task/*/schedstat` |",
            s.bulk_size_bytes >> 20
        ));
    }
    if any_metrics {
        out.push(
            "| get-metrics | each round: Fulcrum without `[admin]` (metrics off), then Fulcrum \
             with `[admin]` on loopback while `fulcrum-bench scrape`, on the load CPU, fetches \
             `/metrics` and the stats JSON (basic auth) once a second during the measured run \
             (metrics on) |"
                .to_owned(),
        );
    }
    out.push(format!(
        "| CPU time | `/proc/PID/stat` user + system, {} ticks/s ({}) |",
        m.clock_ticks_per_second, m.clock_ticks_source
    ));
    out.push(format!(
        "| open files | hard limit {} |",
        m.open_files_hard_limit
            .map_or("unlimited".to_owned(), |n| n.to_string())
    ));
    out.push(String::new());
    if metrics_only {
        out.push(
            "Each cell is the median over the rounds. \"Proxy CPU busy\" well below 100% means \
             the load generator, not the proxy, was the bottleneck of the saturation run: its \
             throughput then says little about the proxy, while CPU per request still does."
                .to_owned(),
        );
    } else {
        out.push(
            "Each cell is the median over the rounds. The ratio is Fulcrum/HAProxy: above 1 is \
             better for throughput and handshakes, below 1 is better for CPU, latency and memory. \
             Latency is measured at a fixed rate of half HAProxy's saturation throughput in the \
             same round. \"Proxy CPU busy\" well below 100% means the load generator, not the \
             proxy, was the bottleneck of the saturation run: its throughput then says little \
             about the proxies, while CPU per request still does. In `tcp-bulk`, \"direct\" is \
             the same stream with no proxy in the way, and the last column is Fulcrum/direct."
                .to_owned(),
        );
    }
    if any_metrics {
        out.push(String::new());
        out.push(
            "In `get-metrics` both columns are Fulcrum, HAProxy does not run: \"Fulcrum\" has no \
             `[admin]` and nobody reads its counters, \"Fulcrum+metrics\" serves them and is \
             scraped. The last column is on/off: what the metrics cost. The scraper's own CPU is \
             not the proxy's; the admin server's work for it is."
                .to_owned(),
        );
    }
    for scenario in &report.scenarios {
        out.push(String::new());
        out.push(render_scenario(scenario));
    }
    out.push(String::new());
    out.join("\n")
}

/// The columns of a scenario's table, after the metric's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// Fulcrum, HAProxy, Fulcrum/HAProxy.
    Haproxy,
    /// Direct first, then as [`Columns::Haproxy`], then Fulcrum/direct (`tcp-bulk`).
    Direct,
    /// Fulcrum (metrics off), Fulcrum+metrics, on/off (`get-metrics`).
    Metrics,
}

/// One scenario's heading, table and goals.
pub(crate) fn render_scenario(scenario: &ScenarioReport) -> String {
    let columns = if scenario.scenario.bulk() {
        Columns::Direct
    } else if scenario.scenario.metrics() {
        Columns::Metrics
    } else {
        Columns::Haproxy
    };
    let mut out = vec![
        format!("## {}: {}", scenario.scenario, scenario.description),
        String::new(),
    ];
    match columns {
        Columns::Direct => {
            out.push(
                "| metric | direct | Fulcrum | HAProxy | Fulcrum/HAProxy | Fulcrum/direct |"
                    .to_owned(),
            );
            out.push("|---|---:|---:|---:|---:|---:|".to_owned());
        }
        Columns::Haproxy => {
            out.push("| metric | Fulcrum | HAProxy | Fulcrum/HAProxy |".to_owned());
            out.push("|---|---:|---:|---:|".to_owned());
        }
        Columns::Metrics => {
            out.push("| metric | Fulcrum | Fulcrum+metrics | metrics on/off |".to_owned());
            out.push("|---|---:|---:|---:|".to_owned());
        }
    }
    out.extend(
        scenario
            .summary
            .iter()
            .filter(|row| row.metric.in_table())
            .map(|row| render_row(row, columns)),
    );
    if columns == Columns::Metrics && !scenario.metrics_rounds.is_empty() {
        // The median of a few rounds hides how far apart they were, which a bound of a few
        // percent needs to be read against.
        let ratios: Vec<String> = scenario
            .metrics_rounds
            .iter()
            .map(|r| {
                let cpu = |side: &ProxyRound| side.saturation.cpu.us_per_request;
                ratio(cpu(&r.on), cpu(&r.off)).map_or("–".to_owned(), |r| format!("{r:.3}"))
            })
            .collect();
        out.push(String::new());
        out.push(format!(
            "CPU per request on/off, round by round: {}.",
            ratios.join(", ")
        ));
    }
    if !scenario.goals.is_empty() {
        out.push(String::new());
        out.extend(
            scenario
                .goals
                .iter()
                .map(|g| format!("- {}", render_check(g))),
        );
    }
    out.join("\n")
}

/// A row in `columns`.
fn render_row(row: &SummaryRow, columns: Columns) -> String {
    let decimals = row.metric.decimals();
    let shown_ratio = |ratio: Option<f64>, decimals: usize| {
        if row.metric.has_ratio() {
            ratio.map_or("–".to_owned(), |r| format!("{r:.decimals$}"))
        } else {
            String::new()
        }
    };
    let mut cells = vec![row.metric.label().to_owned()];
    if columns == Columns::Metrics {
        cells.push(number(row.fulcrum, decimals));
        cells.push(number(row.metrics_on, decimals));
        // A cost of a few percent is the news here: three decimals, not two.
        cells.push(shown_ratio(row.metrics_ratio, 3));
        return format!("| {} |", cells.join(" | "));
    }
    let direct = columns == Columns::Direct;
    if direct {
        cells.push(number(row.direct, decimals));
    }
    cells.push(number(row.fulcrum, decimals));
    cells.push(number(row.haproxy, decimals));
    cells.push(shown_ratio(row.ratio, 2));
    if direct {
        // No ratio to a baseline that was not measured (the proxies' CPU).
        cells.push(if row.direct.is_some() {
            shown_ratio(row.direct_ratio, 2)
        } else {
            String::new()
        });
    }
    format!("| {} |", cells.join(" | "))
}

/// A number with thousands separated by a thin space, so 6-digit rates stay readable.
fn number(value: Option<f64>, decimals: usize) -> String {
    let Some(value) = value else {
        return "–".to_owned();
    };
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, digit) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push('\u{202f}');
        }
        grouped.push(digit);
    }
    let sign = if value < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::{number, render_scenario};
    use crate::compare::goal::check_goals;
    use crate::compare::report::ScenarioReport;
    use crate::compare::scenario::Scenario;
    use crate::compare::summary::tests::{bulk_rounds, metrics_rounds, rounds};
    use crate::compare::summary::{summarize, summarize_bulk, summarize_metrics};

    #[test]
    fn numbers() {
        assert_eq!(number(None, 0), "–");
        assert_eq!(number(Some(950.4), 0), "950");
        assert_eq!(number(Some(45_000.0), 0), "45\u{202f}000");
        assert_eq!(number(Some(1_234_567.891), 1), "1\u{202f}234\u{202f}567.9");
        assert_eq!(number(Some(-2048.0), 0), "-2\u{202f}048");
        assert_eq!(number(Some(-0.01), 0), "0");
    }

    #[test]
    fn scenario_table() {
        let rounds = rounds();
        let scenario = ScenarioReport {
            scenario: Scenario::Get,
            description: Scenario::Get.description().to_owned(),
            summary: summarize(&rounds),
            rounds,
            bulk_rounds: Vec::new(),
            metrics_rounds: Vec::new(),
            goals: Vec::new(),
        };
        let table = render_scenario(&scenario);
        let expected = "\
## get: small GET, keep-alive

| metric | Fulcrum | HAProxy | Fulcrum/HAProxy |
|---|---:|---:|---:|
| throughput (req/s) | 45\u{202f}000 | 25\u{202f}000 | 1.80 |
| CPU per request (µs) | 1.0 | 1.0 | 1.00 |
| proxy CPU busy in that run (%) | 5 | 5 |  |
| latency p50 at fixed rate (µs) | 1\u{202f}200 | 1\u{202f}200 | 1.00 |
| latency p99 at fixed rate (µs) | 800 | 1\u{202f}100 | 0.73 |
| RSS per idle connection (bytes) | 3\u{202f}000 | 2\u{202f}000 | 1.50 |
| errors + non-2xx (all runs) | 6 | 6 |  |";
        assert_eq!(table, expected);
    }

    #[test]
    fn goals_follow_the_table() {
        let rounds = rounds();
        let summary = summarize(&rounds);
        let scenario = ScenarioReport {
            scenario: Scenario::TcpClose,
            description: Scenario::TcpClose.description().to_owned(),
            goals: check_goals(Scenario::TcpClose.goals(), &summary),
            summary,
            rounds,
            bulk_rounds: Vec::new(),
            metrics_rounds: Vec::new(),
        };
        let table = render_scenario(&scenario);
        assert!(
            table.ends_with(
                "| errors + non-2xx (all runs) | 6 | 6 |  |\n\n\
                 - Goal: CPU per request (µs) ≤ 0.70 × HAProxy: **missed** (1.00)"
            ),
            "{table}"
        );
    }

    #[test]
    fn bulk_table_has_the_direct_columns() {
        let rounds = bulk_rounds();
        let summary = summarize_bulk(&rounds);
        let scenario = ScenarioReport {
            scenario: Scenario::TcpBulk,
            description: Scenario::TcpBulk.description().to_owned(),
            goals: check_goals(Scenario::TcpBulk.goals(), &summary),
            summary,
            rounds: Vec::new(),
            bulk_rounds: rounds,
            metrics_rounds: Vec::new(),
        };
        let table = render_scenario(&scenario);
        let expected = "\
## tcp-bulk: one long TCP stream through an L4 relay, and the same stream without a proxy

| metric | direct | Fulcrum | HAProxy | Fulcrum/HAProxy | Fulcrum/direct |
|---|---:|---:|---:|---:|---:|
| throughput (MB/s) | 2\u{202f}147 | 1\u{202f}718 | 671 | 2.56 | 0.80 |
| proxy CPU per GiB (s) | – | 0.250 | 0.500 | 0.50 |  |
| proxy CPU busy in that run (%) | – | 48 | 30 |  |  |

- Goal: throughput (MB/s) ≥ 0.90 × direct: **missed** (0.80)
- Goal: throughput (MB/s) ≥ 1.00 × HAProxy: **met** (2.56)";
        assert_eq!(table, expected);
    }

    #[test]
    fn metrics_table_is_off_on_and_their_ratio() {
        let rounds = metrics_rounds();
        let summary = summarize_metrics(&rounds);
        let scenario = ScenarioReport {
            scenario: Scenario::GetMetrics,
            description: Scenario::GetMetrics.description().to_owned(),
            goals: check_goals(Scenario::GetMetrics.goals(), &summary),
            summary,
            rounds: Vec::new(),
            bulk_rounds: Vec::new(),
            metrics_rounds: rounds,
        };
        let table = render_scenario(&scenario);
        let expected = "\
## get-metrics: small GET, keep-alive, through Fulcrum with metrics off (no [admin]) and on \
([admin], /metrics and the stats JSON scraped every second)

| metric | Fulcrum | Fulcrum+metrics | metrics on/off |
|---|---:|---:|---:|
| throughput (req/s) | 50\u{202f}000 | 50\u{202f}000 | 1.000 |
| CPU per request (µs) | 10.0 | 10.2 | 1.020 |
| proxy CPU busy in that run (%) | 50 | 51 |  |
| errors + non-2xx (all runs) | 3 | 3 |  |
| scrapes answered 200 (all runs) | 0 | 60 |  |

CPU per request on/off, round by round: 1.020, 1.040, 1.010.

- Goal: metrics on costs ≤ 3% more CPU per request (µs) than metrics off (ratio ≤ 1.03): \
**met** (1.020)";
        assert_eq!(table, expected);
    }
}
