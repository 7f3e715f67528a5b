//! The admin web (stats page, admin actions, Prometheus `/metrics`), the NRPE agent and alerts.
//!
//! Empty until its issue lands; the crate exists so the workspace has its final shape.
