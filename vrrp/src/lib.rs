//! Embedded VRRP (v2/v3): packets, the per-instance state machine, transports and VIP handling.
//!
//! Empty until its issue lands; the crate exists so the workspace has its final shape.
