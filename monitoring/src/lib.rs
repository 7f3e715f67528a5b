//! Fulcrum's monitoring: the admin web server of `[admin]` (the HAProxy-style stats page with its
//! admin actions, its CSV and JSON forms, and Prometheus `/metrics`), the NRPE agent of `[nrpe]`
//! with its built-in checks, and the alert senders of `[alert]`.
//!
//! The crate depends on no other module: the binary hands [`admin::AdminServer::start`] an
//! [`Appliance`], which gives a [`Snapshot`] of every module and carries out server actions, and
//! a `prometheus::Registry` in which each module has registered its own metrics.

mod accept;
pub mod admin;
pub mod alert;
pub mod checks;
pub mod config;
pub mod nrpe;
pub mod process;
pub mod storage_metrics;

pub use fulcrum_common::{
    action::{ServerAction, ServerRef},
    stats::Snapshot,
};

/// What the admin server asks of the rest of the appliance.
pub trait Appliance: Send + Sync + 'static {
    /// Every module's statistics, now.
    fn snapshot(&self) -> Snapshot;

    /// Carries out `action` on `server`; the message names the server and says what changed (for the page and the
    /// log), the error why nothing did (unknown server, weight out of range, ...).
    fn server_action(&self, server: &ServerRef, action: ServerAction) -> Result<String, String>;
}
