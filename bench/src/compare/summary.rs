//! From rounds to table rows: the median of each metric over the rounds for each proxy (and for
//! the stream without a proxy, in `tcp-bulk`; for Fulcrum with metrics off and on, in
//! `get-metrics`), and their ratios.

use super::report::{
    BulkRound, BulkRun, Metric, MetricsRound, ProxyRound, RoundReport, SummaryRow,
};
use super::stats::{median, ratio};
use crate::load::Report;

/// One row per metric that at least one proxy has a value for.
pub(crate) fn summarize(rounds: &[RoundReport]) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    for (metric, value) in METRICS {
        let fulcrum = median_of(rounds, |r| &r.fulcrum, value);
        let haproxy = median_of(rounds, |r| &r.haproxy, value);
        if fulcrum.is_some() || haproxy.is_some() {
            rows.push(SummaryRow {
                fulcrum,
                haproxy,
                ratio: ratio(fulcrum, haproxy),
                ..SummaryRow::new(metric)
            });
        }
    }
    if !rounds.is_empty() {
        let sum = |side: fn(&RoundReport) -> &ProxyRound| {
            rounds.iter().map(|r| round_errors(side(r))).sum::<u64>() as f64
        };
        rows.push(SummaryRow {
            fulcrum: Some(sum(|r| &r.fulcrum)),
            haproxy: Some(sum(|r| &r.haproxy)),
            ..SummaryRow::new(Metric::Errors)
        });
    }
    rows
}

/// The rows of `get-metrics`: the same metrics as [`summarize`], metrics off in the `fulcrum`
/// column and on in `metrics_on`, their ratio on/off; then the errors and the scrapes, summed.
pub(crate) fn summarize_metrics(rounds: &[MetricsRound]) -> Vec<SummaryRow> {
    let row = |metric: Metric, off: Option<f64>, on: Option<f64>| SummaryRow {
        fulcrum: off,
        metrics_on: on,
        metrics_ratio: if metric.has_ratio() {
            ratio(on, off)
        } else {
            None
        },
        ..SummaryRow::new(metric)
    };
    let mut rows = Vec::new();
    for (metric, value) in METRICS {
        let off = median_of(rounds, |r| &r.off, value);
        let on = median_of(rounds, |r| &r.on, value);
        if off.is_some() || on.is_some() {
            rows.push(row(metric, off, on));
        }
    }
    if !rounds.is_empty() {
        let sum = |side: fn(&MetricsRound) -> &ProxyRound, count: fn(&ProxyRound) -> u64| {
            Some(rounds.iter().map(|r| count(side(r))).sum::<u64>() as f64)
        };
        rows.push(row(
            Metric::Errors,
            sum(|r| &r.off, round_errors),
            sum(|r| &r.on, round_errors),
        ));
        rows.push(row(
            Metric::Scrapes,
            sum(|r| &r.off, round_scrapes),
            sum(|r| &r.on, round_scrapes),
        ));
    }
    rows
}

/// The rows of `tcp-bulk`: throughput for all three, the proxies' CPU per GiB and how busy they
/// were. No error row: a stream that comes short fails the run instead.
pub(crate) fn summarize_bulk(rounds: &[BulkRound]) -> Vec<SummaryRow> {
    type BulkValue = fn(&BulkRun) -> Option<f64>;
    const BULK_METRICS: [(Metric, BulkValue); 3] = [
        (Metric::ThroughputMegabytesPerSecond, |r| {
            Some(r.transfer.megabytes_per_second)
        }),
        (Metric::CpuSecondsPerGib, BulkRun::cpu_seconds_per_gib),
        (Metric::ProxyCpuBusyPercent, BulkRun::busy_percent),
    ];
    let mut rows = Vec::new();
    for (metric, value) in BULK_METRICS {
        let direct = median_of(rounds, |r| &r.direct, value);
        let fulcrum = median_of(rounds, |r| &r.fulcrum, value);
        let haproxy = median_of(rounds, |r| &r.haproxy, value);
        if direct.is_some() || fulcrum.is_some() || haproxy.is_some() {
            rows.push(SummaryRow {
                direct,
                fulcrum,
                haproxy,
                ratio: ratio(fulcrum, haproxy),
                direct_ratio: ratio(fulcrum, direct),
                ..SummaryRow::new(metric)
            });
        }
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

/// The median over `rounds` of one `side`'s `value`, where it has one.
fn median_of<R, S>(rounds: &[R], side: fn(&R) -> &S, value: fn(&S) -> Option<f64>) -> Option<f64> {
    median(
        &rounds
            .iter()
            .filter_map(|r| value(side(r)))
            .collect::<Vec<_>>(),
    )
}

/// Failed requests and non-2xx answers over every run of one proxy in one round.
pub(crate) fn round_errors(round: &ProxyRound) -> u64 {
    round.runs().map(|m| report_errors(&m.load)).sum()
}

/// Good scrapes of the admin server over every run of one proxy in one round.
pub(crate) fn round_scrapes(round: &ProxyRound) -> u64 {
    round
        .runs()
        .filter_map(|m| m.scrapes.as_ref())
        .map(|s| s.ok())
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

    use super::{report_errors, summarize, summarize_bulk, summarize_metrics};
    use crate::bulk::{BulkReport, SCHEMA};
    use crate::compare::load_run::{parse_report, tests::REPORT};
    use crate::compare::report::{
        BulkCpu, BulkRound, BulkRun, CpuUse, IdleMemory, Measured, Metric, MetricsRound,
        ProxyRound, RoundReport, SummaryRow,
    };
    use crate::compare::scrape_run::{parse_scrape_report, tests::REPORT as SCRAPES};

    /// A round where the proxy did `rps` requests per second, with every optional measurement.
    pub(crate) fn proxy_round(rps: f64, p99: u64, rss: f64) -> ProxyRound {
        let mut load = parse_report(REPORT).unwrap();
        load.throughput_rps = rps;
        load.latency_us.p99 = p99;
        let measured = |load: crate::load::Report| Measured {
            cpu: CpuUse::new(40, 10, 100, load.requests, load.duration_s),
            load,
            scrapes: None,
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

    /// A `get-metrics` round: saturation runs only, `off_ticks` and `on_ticks` of CPU over the
    /// same 500 000 requests, the second scraped 20 times.
    pub(crate) fn metrics_round(round: usize, off_ticks: u64, on_ticks: u64) -> MetricsRound {
        let side = |ticks: u64, scraped: bool| {
            let mut side = proxy_round(50_000.0, 900, 0.0);
            side.fixed_rate = None;
            side.idle = None;
            let load = &side.saturation.load;
            side.saturation.cpu = CpuUse::new(ticks, 0, 100, load.requests, load.duration_s);
            side.saturation.scrapes = scraped.then(|| parse_scrape_report(SCRAPES).unwrap());
            side
        };
        MetricsRound {
            round,
            off: side(off_ticks, false),
            on: side(on_ticks, true),
        }
    }

    /// Three rounds where metrics on cost 2%, 4% and 1% more: a median of 2%.
    pub(crate) fn metrics_rounds() -> Vec<MetricsRound> {
        vec![
            metrics_round(1, 500, 510),
            metrics_round(2, 500, 520),
            metrics_round(3, 400, 404),
        ]
    }

    #[test]
    fn metrics_on_over_off() {
        let rows = summarize_metrics(&metrics_rounds());
        let metrics: Vec<Metric> = rows.iter().map(|r| r.metric).collect();
        assert_eq!(
            metrics,
            [
                Metric::ThroughputRps,
                Metric::CpuUsPerRequest,
                Metric::ProxyCpuBusyPercent,
                Metric::Errors,
                Metric::Scrapes
            ]
        );
        let cpu = row(&rows, Metric::CpuUsPerRequest);
        // Medians of 10, 10, 8 µs off and 10.2, 10.4, 8.08 on.
        assert_eq!(cpu.fulcrum, Some(10.0));
        assert_eq!(cpu.metrics_on, Some(10.2));
        assert!((cpu.metrics_ratio.unwrap() - 1.02).abs() < 1e-12);
        assert_eq!(
            (cpu.haproxy, cpu.ratio),
            (None, None),
            "HAProxy did not run"
        );
        let throughput = row(&rows, Metric::ThroughputRps);
        assert_eq!(throughput.metrics_ratio, Some(1.0));
        let scrapes = row(&rows, Metric::Scrapes);
        // 20 good scrapes per metrics-on round, none with metrics off.
        assert_eq!(
            (scrapes.fulcrum, scrapes.metrics_on),
            (Some(0.0), Some(60.0))
        );
        assert_eq!(scrapes.metrics_ratio, None);
        // One read error per saturation run.
        assert_eq!(row(&rows, Metric::Errors).metrics_on, Some(3.0));
        assert!(summarize_metrics(&[]).is_empty());
    }

    /// A stream of 1 GiB that took `seconds`, through a proxy that used `cpu` seconds.
    pub(crate) fn bulk_run(seconds: f64, cpu: Option<f64>) -> BulkRun {
        let bytes = 1 << 30;
        BulkRun {
            transfer: BulkReport {
                schema: SCHEMA.to_owned(),
                addr: "127.0.0.1:1".parse().unwrap(),
                bytes,
                seconds,
                megabytes_per_second: bytes as f64 / seconds / 1e6,
            },
            proxy_cpu: cpu.map(|seconds| BulkCpu {
                seconds,
                source: "schedstat".to_owned(),
                user_ticks: 0,
                system_ticks: (seconds * 100.0) as u64,
                ticks_per_second: 100,
            }),
        }
    }

    pub(crate) fn bulk_rounds() -> Vec<BulkRound> {
        [
            (1, 0.5, 0.5, 0.25, 1.0, 0.5),
            (2, 0.4, 0.8, 0.2, 1.6, 0.4),
            (3, 0.5, 0.625, 0.3, 2.0, 0.6),
        ]
        .into_iter()
        .map(
            |(round, direct, fulcrum, f_cpu, haproxy, h_cpu)| BulkRound {
                round,
                direct: bulk_run(direct, None),
                fulcrum: bulk_run(fulcrum, Some(f_cpu)),
                haproxy: bulk_run(haproxy, Some(h_cpu)),
            },
        )
        .collect()
    }

    #[test]
    fn bulk_medians_and_ratios() {
        let rows = summarize_bulk(&bulk_rounds());
        let metrics: Vec<Metric> = rows.iter().map(|r| r.metric).collect();
        assert_eq!(
            metrics,
            [
                Metric::ThroughputMegabytesPerSecond,
                Metric::CpuSecondsPerGib,
                Metric::ProxyCpuBusyPercent
            ]
        );
        let mb = |seconds: f64| (1u64 << 30) as f64 / seconds / 1e6;
        let throughput = &rows[0];
        // Medians of the times 0.5, 0.4, 0.5 / 0.5, 0.8, 0.625 / 1.0, 1.6, 2.0.
        assert_eq!(throughput.direct, Some(mb(0.5)));
        assert_eq!(throughput.fulcrum, Some(mb(0.625)));
        assert_eq!(throughput.haproxy, Some(mb(1.6)));
        assert!((throughput.direct_ratio.unwrap() - 0.8).abs() < 1e-12);
        assert!((throughput.ratio.unwrap() - 2.56).abs() < 1e-12);
        let cpu = &rows[1];
        assert_eq!((cpu.direct, cpu.direct_ratio), (None, None));
        assert_eq!((cpu.fulcrum, cpu.haproxy), (Some(0.25), Some(0.5)));
        assert_eq!(cpu.ratio, Some(0.5));
        // Busy: 0.25 / 0.5 s, 0.2 / 0.8 s, 0.3 / 0.625 s of Fulcrum's rounds.
        assert_eq!(rows[2].fulcrum, Some(48.0));
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
