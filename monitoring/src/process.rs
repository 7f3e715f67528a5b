//! The standard Prometheus process metrics (`process_cpu_seconds_total`, memory, file
//! descriptors, start time), read from `/proc/self` at each scrape, and `fulcrum_build_info`.
//!
//! Names, types and help texts follow the Prometheus client libraries' process collector, so the
//! dashboards and alerts written for any exporter work unchanged. The `procfs` crate would do the
//! parsing for us but brings a large dependency tree for six numbers; the three files read here
//! have stable, documented formats (proc(5)).

use std::{collections::HashMap, fs};

use prometheus::{
    IntGaugeVec, Opts, Registry,
    core::{Collector, Desc},
    proto::{Counter, Gauge, Metric, MetricFamily, MetricType},
};

/// Registers the process collector and `fulcrum_build_info{version}` in `registry`.
///
/// The version is this crate's, which is the workspace's and so the binary's.
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(ProcessCollector::new()?))?;
    let build = IntGaugeVec::new(
        Opts::new(
            "fulcrum_build_info",
            "A metric with a constant '1' value labelled by the version Fulcrum was built from.",
        ),
        &["version"],
    )?;
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(build))
}

/// How long this process has run, for the stats page's summary.
pub(crate) fn uptime_secs() -> Option<u64> {
    let stat = Stat::read()?;
    let start = stat.start_time_seconds(boot_time()?, rustix::param::clock_ticks_per_second());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    // Truncation is what a person reading "up 3h2m" expects.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a non-negative number of seconds, far below u64::MAX"
    )]
    Some((now - start).max(0.0) as u64)
}

/// The node's host name, for the stats page's summary.
pub(crate) fn node_name() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

const CPU: (&str, &str) = (
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
);
const OPEN_FDS: (&str, &str) = ("process_open_fds", "Number of open file descriptors.");
const MAX_FDS: (&str, &str) = (
    "process_max_fds",
    "Maximum number of open file descriptors.",
);
const VIRTUAL: (&str, &str) = (
    "process_virtual_memory_bytes",
    "Virtual memory size in bytes.",
);
const RESIDENT: (&str, &str) = (
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
);
const START: (&str, &str) = (
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
);
const THREADS: (&str, &str) = ("process_threads", "Number of OS threads in the process.");

/// Reads `/proc/self` on each collection: no background task, no state but the descriptors.
#[derive(Debug)]
struct ProcessCollector {
    descs: Vec<Desc>,
    ticks_per_second: u64,
    page_size: u64,
}

impl ProcessCollector {
    fn new() -> prometheus::Result<Self> {
        let descs = [CPU, OPEN_FDS, MAX_FDS, VIRTUAL, RESIDENT, START, THREADS]
            .into_iter()
            .map(|(name, help)| Desc::new(name.into(), help.into(), Vec::new(), HashMap::new()))
            .collect::<prometheus::Result<_>>()?;
        Ok(Self {
            descs,
            ticks_per_second: rustix::param::clock_ticks_per_second(),
            page_size: rustix::param::page_size() as u64,
        })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    /// Each metric whose source cannot be read is left out rather than reported as 0, which
    /// would look like a real value on a graph.
    #[allow(
        clippy::cast_precision_loss,
        reason = "counts and byte sizes well inside f64's exact range, as every client reports them"
    )]
    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = Vec::with_capacity(self.descs.len());
        if let Some(stat) = Stat::read() {
            let ticks = self.ticks_per_second.max(1) as f64;
            families.push(family(
                CPU,
                MetricType::COUNTER,
                (stat.utime + stat.stime) as f64 / ticks,
            ));
            families.push(family(VIRTUAL, MetricType::GAUGE, stat.vsize as f64));
            families.push(family(
                RESIDENT,
                MetricType::GAUGE,
                stat.rss_pages.saturating_mul(self.page_size) as f64,
            ));
            if let Some(boot) = boot_time() {
                families.push(family(
                    START,
                    MetricType::GAUGE,
                    stat.start_time_seconds(boot, self.ticks_per_second),
                ));
            }
            families.push(family(THREADS, MetricType::GAUGE, stat.threads as f64));
        }
        if let Ok(dir) = fs::read_dir("/proc/self/fd") {
            families.push(family(OPEN_FDS, MetricType::GAUGE, dir.count() as f64));
        }
        if let Some(max) = fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| max_open_files(&limits))
        {
            families.push(family(MAX_FDS, MetricType::GAUGE, max as f64));
        }
        families
    }
}

fn family((name, help): (&str, &str), kind: MetricType, value: f64) -> MetricFamily {
    let mut metric = Metric::default();
    if kind == MetricType::COUNTER {
        let mut counter = Counter::default();
        counter.set_value(value);
        metric.set_counter(counter);
    } else {
        let mut gauge = Gauge::default();
        gauge.set_value(value);
        metric.set_gauge(gauge);
    }
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(vec![metric]);
    family
}

/// The fields of `/proc/self/stat` used here (proc(5) numbers them from 1).
#[derive(Debug, PartialEq)]
struct Stat {
    /// Fields 14 and 15, in clock ticks.
    utime: u64,
    stime: u64,
    /// Field 20.
    threads: u64,
    /// Field 22, clock ticks after boot.
    starttime: u64,
    /// Field 23, bytes.
    vsize: u64,
    /// Field 24, pages.
    rss_pages: u64,
}

impl Stat {
    fn read() -> Option<Self> {
        Self::parse(&fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// The command name (field 2) is in parentheses and may itself hold spaces and `)`, so the
    /// fields are counted from the last `)`.
    fn parse(text: &str) -> Option<Self> {
        let (_, rest) = text.rsplit_once(')')?;
        // `rest` starts at field 3 (state): field N is at index N - 3.
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            threads: field(20)?,
            starttime: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }

    #[allow(
        clippy::cast_precision_loss,
        reason = "seconds since 1970 and ticks since boot are exact in f64"
    )]
    fn start_time_seconds(&self, boot_time: u64, ticks_per_second: u64) -> f64 {
        boot_time as f64 + self.starttime as f64 / ticks_per_second.max(1) as f64
    }
}

/// `btime` of `/proc/stat`: when the system booted, in seconds since the epoch.
fn boot_time() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a `)` in it, as a process may choose.
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1234 \
                    10485760 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                utime: 250,
                stime: 50,
                threads: 7,
                starttime: 1234,
                vsize: 10_485_760,
                rss_pages: 300,
            })
        );
        assert_eq!(Stat::parse("garbage"), None);
        assert_eq!(Stat::parse("1 (x) S 1 2"), None);
    }

    #[test]
    fn max_open_files_reads_the_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             127698               127698               processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
    }

    #[test]
    fn the_process_metrics_of_this_process_are_there() {
        let registry = Registry::new();
        register(&registry).unwrap();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for name in [
            "fulcrum_build_info",
            "process_cpu_seconds_total",
            "process_max_fds",
            "process_open_fds",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_virtual_memory_bytes",
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
        assert!(uptime_secs().is_some());
    }
}
