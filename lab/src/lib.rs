//! The network lab of issue 10: named network namespaces joined by veth pairs or a bridge,
//! keepalived and Fulcrum nodes run inside them, fault injectors (signals, links, packet loss, a
//! full disk), and seed 004's whole site built from them. Used by the root package's
//! integration tests and by `fulcrum-bench failover`.
//!
//! Everything it creates is torn down on drop, so also when a test panics. It needs root and
//! iproute2 ([`netns::can_use_netns`]) and, for [`keepalived`], keepalived itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    reason = "a test harness: a failed setup step is a test failure, reported by the panic"
)]

pub mod alerts;
pub mod faults;
pub mod fulcrum;
pub mod keepalived;
pub mod netns;
pub mod seed004;
