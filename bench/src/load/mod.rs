//! The load generator: HTTP/1.1 (keep-alive or a connection per request) and HTTP/2 clients,
//! closed-loop (as fast as the server answers) or at a fixed rate with latency measured from each
//! request's intended send time, so a stalled server is not hidden by coordinated omission.

mod report;

pub use report::{Errors, Latency, Report, SCHEMA};
