//! The loads: `nbdcopy` for sequential writes (timed from start to exit, its final FLUSH
//! included) and fio's nbd engine for 4 KiB random writes at queue depth 1.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::process::EXPORT;
use super::report::{LatencyRun, WriteRun, mib_per_s};

/// `nbd://ADDR/EXPORT`.
pub(crate) fn uri(addr: SocketAddr) -> String {
    format!("nbd://{addr}/{EXPORT}")
}

/// Copies `source` (`bytes` long) to the export with nbdcopy and times it.
pub(crate) fn nbdcopy_write(
    nbdcopy: &Path,
    source: &Path,
    bytes: u64,
    addr: SocketAddr,
    request_size: u64,
    connections: usize,
) -> anyhow::Result<WriteRun> {
    let started = Instant::now();
    let out = Command::new(nbdcopy)
        .arg("--flush")
        .arg(format!("--request-size={request_size}"))
        .arg(format!("--connections={connections}"))
        .arg(source)
        .arg(uri(addr))
        .stdin(Stdio::null())
        .output()
        .context("cannot run nbdcopy")?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "nbdcopy failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(WriteRun {
        bytes,
        seconds,
        mib_per_s: mib_per_s(bytes, seconds),
    })
}

/// fio writes 4 KiB blocks at random offsets, one at a time, for `duration` after a 1 s ramp.
pub(crate) fn fio_latency(
    fio: &Path,
    addr: SocketAddr,
    duration: Duration,
    dir: &Path,
) -> anyhow::Result<LatencyRun> {
    let output = dir.join("fio.json");
    let out = Command::new(fio)
        .args(["--name=randwrite", "--ioengine=nbd"])
        .arg(format!("--uri={}", uri(addr)))
        .args(["--rw=randwrite", "--bs=4k", "--iodepth=1", "--time_based"])
        .args([
            "--ramp_time=1s",
            "--lat_percentiles=1",
            "--output-format=json",
        ])
        .arg(format!("--runtime={}ms", duration.as_millis().max(1)))
        .arg(format!("--output={}", output.display()))
        .stdin(Stdio::null())
        .output()
        .context("cannot run fio")?;
    if !out.status.success() {
        bail!(
            "fio failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let json = std::fs::read_to_string(&output)
        .with_context(|| format!("fio wrote no {}", output.display()))?;
    parse_fio(&json)
}

/// The first job's writes from fio's JSON: total latency (submission to completion) p50 and p99
/// from `lat_ns.percentile` (there with `--lat_percentiles=1`), the mean, IOPS and the count.
fn parse_fio(json: &str) -> anyhow::Result<LatencyRun> {
    let report: Value = serde_json::from_str(json).context("fio's JSON does not parse")?;
    let job = &report["jobs"][0];
    if let Some(error) = job["error"].as_i64().filter(|e| *e != 0) {
        bail!("fio's job failed with error {error}");
    }
    let write = &job["write"];
    let lat = &write["lat_ns"];
    let percentile = |p: &str| {
        lat["percentile"][p]
            .as_f64()
            .with_context(|| format!("fio's JSON has no write lat_ns percentile {p}"))
    };
    let ios = write["total_ios"].as_u64().context("no write total_ios")?;
    if ios == 0 {
        bail!("fio completed no write");
    }
    Ok(LatencyRun {
        ios,
        iops: write["iops"].as_f64().context("no write iops")?,
        p50_us: percentile("50.000000")? / 1000.0,
        p99_us: percentile("99.000000")? / 1000.0,
        mean_us: lat["mean"].as_f64().context("no write lat_ns mean")? / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::parse_fio;

    #[test]
    fn latency_comes_from_the_total_latency_percentiles() {
        // Input: the parts of fio 3.33's JSON that are read. Output: µs, not ns.
        let json = r#"{"jobs":[{"error":0,"write":{"total_ios":21130,"iops":7040.98,
            "lat_ns":{"mean":141251.5,"percentile":{"50.000000":104960,"99.000000":733184}},
            "clat_ns":{"percentile":{"50.000000":1,"99.000000":2}}}}]}"#;
        let run = parse_fio(json).unwrap();
        assert_eq!(run.ios, 21130);
        assert_eq!(run.p50_us, 104.96);
        assert_eq!(run.p99_us, 733.184);
        assert_eq!(run.mean_us, 141.2515);
        let failed = r#"{"jobs":[{"error":5,"write":{}}]}"#;
        assert!(parse_fio(failed).is_err());
        let nothing = r#"{"jobs":[{"error":0,"write":{"total_ios":0,"iops":0,
            "lat_ns":{"mean":0,"percentile":{"50.000000":0,"99.000000":0}}}}]}"#;
        assert!(parse_fio(nothing).is_err());
    }
}
