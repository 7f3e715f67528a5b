//! The human summary of a report, in the spirit of wrk's output.

use std::fmt::{self, Write};

use super::report::{Latency, Report};

/// The report as a few lines of text.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut out, report);
    out
}

fn write_summary(out: &mut String, report: &Report) -> fmt::Result {
    let protocol = match (report.protocol.as_str(), report.streams) {
        ("h2", Some(streams)) => format!("HTTP/2, {streams} streams per connection"),
        ("h2", None) => "HTTP/2".to_owned(),
        _ if report.keep_alive => "HTTP/1.1 keep-alive".to_owned(),
        _ => "HTTP/1.1, a connection per request".to_owned(),
    };
    let pacing = match report.rate {
        Some(rate) => format!("{rate} req/s (latency from intended send times)"),
        None => "closed loop".to_owned(),
    };
    writeln!(out, "Load {}", report.url)?;
    let plural =
        |count: usize, noun: &str| format!("{count} {noun}{}", if count == 1 { "" } else { "s" });
    writeln!(
        out,
        "  {}, {}, {protocol}, {pacing}",
        plural(report.connections, "connection"),
        plural(report.threads, "thread")
    )?;
    writeln!(
        out,
        "  Latency    {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "mean", "stdev", "p50", "p99", "p99.9", "max"
    )?;
    write_latency(out, "latency", &report.latency_us)?;
    if report.rate.is_some() {
        write_latency(out, "service", &report.service_us)?;
    }
    writeln!(out, "  Latency distribution")?;
    for &(percentile, micros) in &report.distribution {
        if [50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0].contains(&percentile) {
            writeln!(out, "    {percentile:>7}% {:>10}", duration(micros as f64))?;
        }
    }
    writeln!(
        out,
        "  {} requests in {:.2}s, {} read, {} connections opened",
        report.requests,
        report.duration_s,
        bytes(report.bytes_read as f64),
        report.connects
    )?;
    let errors = &report.errors;
    writeln!(
        out,
        "  Errors: connect {}, read {}, write {}, timeout {}, protocol {}",
        errors.connect, errors.read, errors.write, errors.timeout, errors.protocol
    )?;
    let statuses: Vec<String> = report
        .status
        .iter()
        .map(|(status, count)| format!("{status} {count}"))
        .collect();
    writeln!(out, "  Status: {}", statuses.join(", "))?;
    writeln!(out, "Requests/sec: {:>12.2}", report.throughput_rps)?;
    let transfer = if report.duration_s > 0.0 {
        report.bytes_read as f64 / report.duration_s
    } else {
        0.0
    };
    writeln!(out, "Transfer/sec: {:>12}", bytes(transfer))
}

fn write_latency(out: &mut String, name: &str, latency: &Latency) -> fmt::Result {
    writeln!(
        out,
        "  {name:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        duration(latency.mean),
        duration(latency.stdev),
        duration(latency.p50 as f64),
        duration(latency.p99 as f64),
        duration(latency.p999 as f64),
        duration(latency.max as f64),
    )
}

/// Microseconds in the unit that reads best.
fn duration(micros: f64) -> String {
    if micros < 1_000.0 {
        format!("{micros:.0}us")
    } else if micros < 1_000_000.0 {
        format!("{:.2}ms", micros / 1e3)
    } else {
        format!("{:.2}s", micros / 1e6)
    }
}

/// Bytes in binary units, as wrk prints them.
fn bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::{bytes, duration, summary};
    use crate::load::report::Report;

    #[test]
    fn units_read_well() {
        assert_eq!(duration(850.0), "850us");
        assert_eq!(duration(1_500.0), "1.50ms");
        assert_eq!(duration(2_250_000.0), "2.25s");
        assert_eq!(bytes(512.0), "512.00B");
        assert_eq!(bytes(1536.0), "1.50KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.00MiB");
    }

    #[test]
    fn names_the_numbers_a_reader_looks_for() {
        let report = Report {
            url: "http://127.0.0.1:1/".into(),
            requests: 1000,
            duration_s: 2.0,
            throughput_rps: 500.0,
            status: [(200, 990), (503, 10)].into(),
            ..Report::default()
        };
        let text = summary(&report);
        for expected in [
            "1000 requests in 2.00s",
            "Requests/sec:       500.00",
            "Status: 200 990, 503 10",
            "Errors: connect 0",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
    }
}
