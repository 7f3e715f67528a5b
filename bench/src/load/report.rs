//! What one load run measured, as `fulcrum-bench load --json` prints it and `compare` reads it.
//! The schema is versioned: fields are only added, never renamed, within one `SCHEMA`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The schema name and version written in every report.
pub const SCHEMA: &str = "fulcrum-bench/load/v1";

/// One run's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    pub url: String,
    /// `"closed"` (as fast as answers come) or `"rate"` (fixed arrival rate).
    pub mode: String,
    /// `"http1"` or `"h2"`.
    pub protocol: String,
    /// HTTP/1.1 connections reused between requests.
    pub keep_alive: bool,
    pub connections: usize,
    /// Requests per second asked for in rate mode.
    pub rate: Option<f64>,
    /// Measured wall time of the run, warm-up excluded.
    pub duration_s: f64,
    /// Completed requests (any status).
    pub requests: u64,
    pub errors: Errors,
    /// Responses by status code.
    pub status: BTreeMap<u16, u64>,
    /// Completed requests per second.
    pub throughput_rps: f64,
    /// Response bytes read (heads and bodies).
    pub bytes_read: u64,
    pub latency_us: Latency,
    /// The latency distribution for plots: `(percentile, microseconds)` pairs from 0 to 100,
    /// denser towards the tail.
    pub distribution: Vec<(f64, u64)>,
}

/// Failures by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    /// Responses that could not be parsed.
    pub protocol: u64,
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}
