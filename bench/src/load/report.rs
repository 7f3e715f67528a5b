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
    /// Time from when each request was actually sent to the end of its answer, in microseconds:
    /// what a client that ignores coordinated omission would report. The same as `latency_us` in
    /// closed-loop mode; in rate mode, far below it when the server stalled.
    #[serde(default)]
    pub service_us: Latency,
    /// Connections established during the measurement: one per request with a connection per
    /// request; with keep-alive, the first ones too when there is no warm-up, then only
    /// reconnections.
    #[serde(default)]
    pub connects: u64,
    /// Load generator threads, each with its share of the connections.
    #[serde(default)]
    pub threads: usize,
    /// Concurrent streams per connection, for HTTP/2.
    #[serde(default)]
    pub streams: Option<usize>,
}

impl Default for Report {
    /// An empty report of the current schema, for building one field by field.
    fn default() -> Self {
        Self {
            schema: SCHEMA.to_owned(),
            url: String::new(),
            mode: String::new(),
            protocol: String::new(),
            keep_alive: false,
            connections: 0,
            rate: None,
            duration_s: 0.0,
            requests: 0,
            errors: Errors::default(),
            status: BTreeMap::new(),
            throughput_rps: 0.0,
            bytes_read: 0,
            latency_us: Latency::default(),
            distribution: Vec::new(),
            service_us: Latency::default(),
            connects: 0,
            threads: 0,
            streams: None,
        }
    }
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
