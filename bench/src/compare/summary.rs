//! From rounds to table rows: the median of each metric over the rounds for each proxy, and
//! their ratio.

use super::report::{Metric, ProxyRound, RoundReport, SummaryRow};
use super::stats::{median, ratio};
use crate::load::Report;

/// One row per metric that at least one proxy has a value for.
pub(crate) fn summarize(rounds: &[RoundReport]) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    for (metric, value) in METRICS {
        let fulcrum = median(&values(rounds, |r| &r.fulcrum, value));
        let haproxy = median(&values(rounds, |r| &r.haproxy, value));
        if fulcrum.is_some() || haproxy.is_some() {
            rows.push(SummaryRow {
                metric,
                fulcrum,
                haproxy,
                ratio: ratio(fulcrum, haproxy),
            });
        }
    }
    if !rounds.is_empty() {
        let sum = |side: fn(&RoundReport) -> &ProxyRound| {
            rounds.iter().map(|r| round_errors(side(r))).sum::<u64>() as f64
        };
        rows.push(SummaryRow {
            metric: Metric::Errors,
            fulcrum: Some(sum(|r| &r.fulcrum)),
            haproxy: Some(sum(|r| &r.haproxy)),
            ratio: None,
        });
    }
    rows
}

type Value = fn(&ProxyRound) -> Option<f64>;

/// Where each median metric comes from in a round.
const METRICS: [(Metric, Value); 10] = [
    (Metric::ThroughputRps, |r| {
        Some(r.saturation.load.throughput_rps)
    }),
    (Metric::CpuUsPerRequest, |r| r.saturation.cpu.us_per_request),
    (Metric::ProxyCpuBusyPercent, |r| {
        r.saturation.cpu.busy_percent
    }),
    (Metric::HandshakesPerSecond, |r| {
        r.handshakes.as_ref().map(|m| m.load.throughput_rps)
    }),
    (Metric::CpuUsPerHandshake, |r| {
        r.handshakes.as_ref().and_then(|m| m.cpu.us_per_request)
    }),
    (Metric::LatencyP50Us, |r| {
        r.fixed_rate.as_ref().map(|m| m.load.latency_us.p50 as f64)
    }),
    (Metric::LatencyP90Us, |r| {
        r.fixed_rate.as_ref().map(|m| m.load.latency_us.p90 as f64)
    }),
    (Metric::LatencyP99Us, |r| {
        r.fixed_rate.as_ref().map(|m| m.load.latency_us.p99 as f64)
    }),
    (Metric::LatencyP999Us, |r| {
        r.fixed_rate.as_ref().map(|m| m.load.latency_us.p999 as f64)
    }),
    (Metric::RssBytesPerConnection, |r| {
        r.idle.as_ref().map(|i| i.bytes_per_connection)
    }),
];

fn values(rounds: &[RoundReport], side: fn(&RoundReport) -> &ProxyRound, value: Value) -> Vec<f64> {
    rounds.iter().filter_map(|r| value(side(r))).collect()
}

/// Failed requests and non-2xx answers over every run of one proxy in one round.
pub(crate) fn round_errors(round: &ProxyRound) -> u64 {
    [
        Some(&round.saturation),
        round.handshakes.as_ref(),
        round.fixed_rate.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|m| report_errors(&m.load))
    .sum()
}

/// Failed requests and non-2xx answers of one run.
pub(crate) fn report_errors(report: &Report) -> u64 {
    let e = &report.errors;
    let failed = e.connect + e.read + e.write + e.timeout + e.protocol;
    let not_ok: u64 = report
        .status
        .iter()
        .filter(|(status, _)| !(200..300).contains(*status))
        .map(|(_, count)| count)
        .sum();
    failed + not_ok
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{report_errors, summarize};
    use crate::compare::load_run::{parse_report, tests::REPORT};
    use crate::compare::report::{
        CpuUse, IdleMemory, Measured, Metric, ProxyRound, RoundReport, SummaryRow,
    };

    /// A round where the proxy did `rps` requests per second, with every optional measurement.
    pub(crate) fn proxy_round(rps: f64, p99: u64, rss: f64) -> ProxyRound {
        let mut load = parse_report(REPORT).unwrap();
        load.throughput_rps = rps;
        load.latency_us.p99 = p99;
        let measured = |load: crate::load::Report| Measured {
            cpu: CpuUse::new(40, 10, 100, load.requests, load.duration_s),
            load,
        };
        ProxyRound {
            saturation: measured(load.clone()),
            handshakes: None,
            fixed_rate: Some(measured(load)),
            idle: Some(IdleMemory {
                connections: 100,
                tls: false,
                rss_before_bytes: 1 << 20,
                rss_after_bytes: (1 << 20) + (rss * 100.0) as u64,
                closed_early: 0,
                bytes_per_connection: rss,
            }),
        }
    }

    pub(crate) fn rounds() -> Vec<RoundReport> {
        [
            (1, 40_000.0, 900, 20_000.0, 1000),
            (2, 50_000.0, 800, 25_000.0, 1200),
            (3, 45_000.0, 700, 30_000.0, 1100),
        ]
        .into_iter()
        .map(|(round, f_rps, f_p99, h_rps, h_p99)| RoundReport {
            round,
            fulcrum: proxy_round(f_rps, f_p99, 3000.0),
            haproxy: proxy_round(h_rps, h_p99, 2000.0),
        })
        .collect()
    }

    fn row(rows: &[SummaryRow], metric: Metric) -> &SummaryRow {
        rows.iter().find(|r| r.metric == metric).unwrap()
    }

    #[test]
    fn medians_and_ratios() {
        let rows = summarize(&rounds());
        let throughput = row(&rows, Metric::ThroughputRps);
        assert_eq!(throughput.fulcrum, Some(45_000.0));
        assert_eq!(throughput.haproxy, Some(25_000.0));
        assert_eq!(throughput.ratio, Some(1.8));
        let p99 = row(&rows, Metric::LatencyP99Us);
        assert_eq!(p99.fulcrum, Some(800.0));
        assert_eq!(p99.haproxy, Some(1100.0));
        assert_eq!(row(&rows, Metric::RssBytesPerConnection).ratio, Some(1.5));
        // 50 ticks at 100 Hz over 500 000 requests.
        assert_eq!(row(&rows, Metric::CpuUsPerRequest).fulcrum, Some(1.0));
        // No handshake runs, so no handshake rows.
        assert!(rows.iter().all(|r| r.metric != Metric::HandshakesPerSecond));
        // One read error per run, two runs per round, three rounds.
        assert_eq!(row(&rows, Metric::Errors).fulcrum, Some(6.0));
    }

    #[test]
    fn errors_count_failures_and_non_2xx() {
        let mut report = parse_report(REPORT).unwrap();
        report.status.insert(503, 7);
        report.status.insert(204, 2);
        report.errors.timeout = 2;
        assert_eq!(report_errors(&report), 1 + 2 + 7);
    }
}
