//! The load generator: HTTP/1.1 (keep-alive or a connection per request) and HTTP/2 clients,
//! closed-loop (as fast as the server answers) or at a fixed rate with latency measured from each
//! request's intended send time, so a stalled server is not hidden by coordinated omission.
//!
//! [`run_blocking`] (or [`run`] from async code) takes [`LoadOptions`] and returns a [`Report`];
//! [`summary`] renders one for people.

mod connect;
mod h2;
mod http1;
mod options;
mod recorder;
mod report;
mod request;
mod runner;
mod schedule;
mod stats;
mod summary;
mod target;
mod tls;
mod worker;

#[cfg(test)]
mod tests;

pub use options::{LoadOptions, Protocol, Stop};
pub use report::{Errors, Latency, Report, SCHEMA};
pub use runner::{run, run_blocking};
pub use stats::DISTRIBUTION_PERCENTILES;
pub use summary::summary;
