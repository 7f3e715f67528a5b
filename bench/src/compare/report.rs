//! What a comparison found, as written to `compare-DATE.json`: the machine, the settings, and for
//! every scenario every round's raw numbers for both proxies (and, for `tcp-bulk`, for the stream
//! without a proxy; for `get-metrics`, for Fulcrum with metrics off and on, with the scrapes),
//! with the medians, ratios and goals the Markdown table shows. The schema is versioned like the
//! load report's.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::goal::{GoalCheck, check_goals};
use super::scenario::Scenario;
use crate::bulk::BulkReport;
use crate::load::Report;
use crate::scrape::ScrapeReport;

/// The schema name and version written in every comparison report.
pub const SCHEMA: &str = "fulcrum-bench/compare/v1";

/// A whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// When it started, RFC 3339 in UTC.
    pub date: String,
    /// The command line that made it, quoted for a POSIX shell.
    pub command: String,
    pub machine: Machine,
    pub settings: Settings,
    pub scenarios: Vec<ScenarioReport>,
    /// The files written (empty when no output directory was given).
    pub files: Vec<PathBuf>,
}

/// Where it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Logical CPUs the runner may use.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// First line of `haproxy -v`.
    pub haproxy_version: String,
    /// `fulcrum version`.
    pub fulcrum_version: String,
    /// Clock ticks per second of `/proc/PID/stat` CPU times.
    pub clock_ticks_per_second: u64,
    /// `"getconf CLK_TCK"`, or `"assumed"` when it could not be read and 100 was taken.
    pub clock_ticks_source: String,
    /// The hard limit on open files the proxies inherit (`None`: unlimited). Below twice the
    /// idle connections, HAProxy runs with fewer descriptors than it would reserve.
    pub open_files_hard_limit: Option<u64>,
}

/// How it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub scenarios: Vec<Scenario>,
    pub rounds: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: usize,
    pub idle_connections: usize,
    /// Bytes of each `tcp-bulk` stream (absent from reports made before it existed).
    #[serde(default)]
    pub bulk_size_bytes: u64,
    /// The CPU both proxies are pinned to, one at a time.
    pub proxy_cpu: usize,
    /// The CPU the origins and the load generator are pinned to.
    pub load_cpu: usize,
    pub quick: bool,
    pub fulcrum: PathBuf,
    pub haproxy: PathBuf,
    pub load_cmd: PathBuf,
}

/// One scenario: rounds alternating Fulcrum and HAProxy, then their medians.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub scenario: Scenario,
    pub description: String,
    /// The load runs' rounds against HAProxy; empty for `tcp-bulk` and `get-metrics`.
    pub rounds: Vec<RoundReport>,
    /// The streams' rounds of `tcp-bulk`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bulk_rounds: Vec<BulkRound>,
    /// The rounds of `get-metrics`: Fulcrum with metrics off, then on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics_rounds: Vec<MetricsRound>,
    /// Medians over the rounds and Fulcrum/HAProxy ratios, one row per metric measured.
    pub summary: Vec<SummaryRow>,
    /// The scenario's goals and whether this run met them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<GoalCheck>,
}

impl ScenarioReport {
    /// `scenario` with the `summary` of its rounds and its goals checked against it. Every list
    /// of rounds is empty: the caller fills in the one it ran.
    pub(crate) fn new(scenario: Scenario, summary: Vec<SummaryRow>) -> Self {
        Self {
            scenario,
            description: scenario.description().to_owned(),
            rounds: Vec::new(),
            bulk_rounds: Vec::new(),
            metrics_rounds: Vec::new(),
            goals: check_goals(scenario.goals(), &summary),
            summary,
        }
    }
}

/// One round: each proxy measured once, Fulcrum first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// From 1.
    pub round: usize,
    pub fulcrum: ProxyRound,
    pub haproxy: ProxyRound,
}

/// One round of `get-metrics`: Fulcrum measured without metrics, then with them, each fresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRound {
    /// From 1.
    pub round: usize,
    /// No `[admin]`, nobody scraping.
    pub off: ProxyRound,
    /// `[admin]` on, and its saturation run's `scrapes`.
    pub on: ProxyRound,
}

/// What one proxy did in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyRound {
    /// Closed-loop saturation run: throughput and CPU per request.
    pub saturation: Measured,
    /// TLS handshakes: closed loop with a new connection per request (`tls` only).
    pub handshakes: Option<Measured>,
    /// Fixed rate at half of HAProxy's saturation throughput: latency (`get` only).
    pub fixed_rate: Option<Measured>,
    /// Memory per idle keep-alive connection (`get` and `tls`).
    pub idle: Option<IdleMemory>,
}

impl ProxyRound {
    /// Its load runs: saturation, then handshakes and fixed rate where they ran.
    pub(crate) fn runs(&self) -> impl Iterator<Item = &Measured> {
        std::iter::once(&self.saturation)
            .chain(&self.handshakes)
            .chain(&self.fixed_rate)
    }
}

/// One load run and the proxy's CPU time during it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// The load generator's report, as it printed it.
    pub load: Report,
    pub cpu: CpuUse,
    /// What the scraper of the admin server got during the run (Fulcrum+metrics only). Every
    /// scrape in it passed: a failed one fails the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrapes: Option<ScrapeReport>,
}

/// CPU time of the proxy process (all threads) over one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    pub user_ticks: u64,
    pub system_ticks: u64,
    pub ticks_per_second: u64,
    /// (user + system) / completed requests, in microseconds; `None` when nothing completed.
    pub us_per_request: Option<f64>,
    /// (user + system) / the run's wall time, in percent of one CPU. Well below 100 in a
    /// saturation run means the load side, not the proxy, was the bottleneck, so the throughput
    /// compares the load generator more than the proxies (CPU per request still holds).
    pub busy_percent: Option<f64>,
}

impl CpuUse {
    /// CPU use of a run of `duration_s` seconds and `requests` requests that took `user` +
    /// `system` ticks.
    pub fn new(
        user_ticks: u64,
        system_ticks: u64,
        ticks_per_second: u64,
        requests: u64,
        duration_s: f64,
    ) -> Self {
        let seconds = (user_ticks + system_ticks) as f64 / ticks_per_second.max(1) as f64;
        let us_per_request =
            (requests > 0 && ticks_per_second > 0).then(|| seconds * 1e6 / requests as f64);
        let busy_percent =
            (duration_s > 0.0 && ticks_per_second > 0).then(|| seconds * 100.0 / duration_s);
        Self {
            user_ticks,
            system_ticks,
            ticks_per_second,
            us_per_request,
            busy_percent,
        }
    }
}

/// One round of `tcp-bulk`: the stream without a proxy, through Fulcrum, through HAProxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkRound {
    /// From 1.
    pub round: usize,
    pub direct: BulkRun,
    pub fulcrum: BulkRun,
    pub haproxy: BulkRun,
}

/// One stream and, through a proxy, the proxy's CPU time while it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkRun {
    /// What `fulcrum-bench bulk fetch` reported.
    pub transfer: BulkReport,
    /// `None` for the stream without a proxy.
    pub proxy_cpu: Option<BulkCpu>,
}

/// The proxy's CPU time (all threads) over one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkCpu {
    /// From `/proc/PID/task/TID/schedstat` (nanoseconds) where the kernel keeps it, else from
    /// the ticks below: at 100 per second those are too coarse for a stream of a fraction of a
    /// second.
    pub seconds: f64,
    /// `"schedstat"` or `"stat"`: where `seconds` came from.
    pub source: String,
    /// `/proc/PID/stat` user and system ticks over the same time, as the other scenarios count.
    pub user_ticks: u64,
    pub system_ticks: u64,
    pub ticks_per_second: u64,
}

impl BulkRun {
    /// Proxy CPU seconds per GiB moved.
    pub fn cpu_seconds_per_gib(&self) -> Option<f64> {
        let cpu = self.proxy_cpu.as_ref()?;
        let gib = self.transfer.bytes as f64 / (1u64 << 30) as f64;
        (gib > 0.0).then(|| cpu.seconds / gib)
    }

    /// Proxy CPU over the stream's wall time, in percent of one CPU.
    pub fn busy_percent(&self) -> Option<f64> {
        let cpu = self.proxy_cpu.as_ref()?;
        (self.transfer.seconds > 0.0).then(|| cpu.seconds * 100.0 / self.transfer.seconds)
    }
}

/// RSS growth while idle keep-alive connections were held open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleMemory {
    /// Connections opened, each after one request and response.
    pub connections: usize,
    /// Over TLS.
    pub tls: bool,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    /// Connections the proxy closed before RSS was read (should be 0).
    pub closed_early: usize,
    /// (after - before) / connections; negative if the proxy gave memory back meanwhile.
    pub bytes_per_connection: f64,
}

/// One line of a scenario's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub metric: Metric,
    /// Median over the rounds without a proxy (`tcp-bulk` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<f64>,
    /// Median over the rounds.
    pub fulcrum: Option<f64>,
    pub haproxy: Option<f64>,
    /// fulcrum / haproxy.
    pub ratio: Option<f64>,
    /// fulcrum / direct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_ratio: Option<f64>,
    /// Median over the rounds of Fulcrum with metrics on (`get-metrics` only, where `fulcrum`
    /// is Fulcrum with metrics off and HAProxy was not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_on: Option<f64>,
    /// metrics_on / fulcrum: what the metrics cost (`get-metrics` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_ratio: Option<f64>,
}

impl SummaryRow {
    /// A row of `metric` with every value missing, for the constructors to fill in theirs.
    pub(crate) fn new(metric: Metric) -> Self {
        Self {
            metric,
            direct: None,
            fulcrum: None,
            haproxy: None,
            ratio: None,
            direct_ratio: None,
            metrics_on: None,
            metrics_ratio: None,
        }
    }
}

/// The metrics a table can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ThroughputRps,
    CpuUsPerRequest,
    /// Proxy CPU busy during the saturation run, in percent of one CPU.
    ProxyCpuBusyPercent,
    HandshakesPerSecond,
    CpuUsPerHandshake,
    LatencyP50Us,
    LatencyP90Us,
    LatencyP99Us,
    LatencyP999Us,
    RssBytesPerConnection,
    /// A bulk stream's bytes per second, in 10^6.
    ThroughputMegabytesPerSecond,
    /// Proxy CPU seconds per GiB of a bulk stream.
    CpuSecondsPerGib,
    /// Failed requests and non-2xx answers over every run of the scenario (a sum, not a median).
    Errors,
    /// Scrapes of the admin server that answered 200 with a good body, over every run (a sum).
    Scrapes,
}

impl Metric {
    /// The row's label in the Markdown table.
    pub fn label(self) -> &'static str {
        match self {
            Self::ThroughputRps => "throughput (req/s)",
            Self::CpuUsPerRequest => "CPU per request (µs)",
            Self::ProxyCpuBusyPercent => "proxy CPU busy in that run (%)",
            Self::HandshakesPerSecond => "TLS handshakes/s (new connection per request)",
            Self::CpuUsPerHandshake => "CPU per handshake + request (µs)",
            Self::LatencyP50Us => "latency p50 at fixed rate (µs)",
            Self::LatencyP90Us => "latency p90 at fixed rate (µs)",
            Self::LatencyP99Us => "latency p99 at fixed rate (µs)",
            Self::LatencyP999Us => "latency p99.9 at fixed rate (µs)",
            Self::RssBytesPerConnection => "RSS per idle connection (bytes)",
            Self::ThroughputMegabytesPerSecond => "throughput (MB/s)",
            Self::CpuSecondsPerGib => "proxy CPU per GiB (s)",
            Self::Errors => "errors + non-2xx (all runs)",
            Self::Scrapes => "scrapes answered 200 (all runs)",
        }
    }

    /// Whether the Markdown table shows it; the JSON has them all.
    pub fn in_table(self) -> bool {
        !matches!(self, Self::LatencyP90Us | Self::LatencyP999Us)
    }

    /// Whether the table shows a ratio: a ratio of error counts or of how busy the CPU was says
    /// nothing about which proxy is better.
    pub fn has_ratio(self) -> bool {
        !matches!(
            self,
            Self::Errors | Self::Scrapes | Self::ProxyCpuBusyPercent
        )
    }

    /// Digits after the decimal point in the table.
    pub fn decimals(self) -> usize {
        match self {
            Self::CpuUsPerRequest | Self::CpuUsPerHandshake => 1,
            Self::CpuSecondsPerGib => 3,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CpuUse;

    #[test]
    fn cpu_per_request_in_microseconds() {
        // 150 ticks at 100 Hz = 1.5 s over 100 000 requests = 15 µs each.
        let cpu = CpuUse::new(100, 50, 100, 100_000, 2.0);
        assert_eq!(cpu.us_per_request, Some(15.0));
        // 1.5 s of CPU over a 2 s run.
        assert_eq!(cpu.busy_percent, Some(75.0));
        assert_eq!(CpuUse::new(1, 1, 100, 0, 1.0).us_per_request, None);
        assert_eq!(CpuUse::new(1, 1, 100, 0, 0.0).busy_percent, None);
    }
}
