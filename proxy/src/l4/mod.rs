//! The L4 tier, LVS-NAT style in userspace: virtual services relaying TCP and UDP to real
//! servers chosen by the IPVS schedulers.
//!
//! - [`sched`]: the schedulers with the kernel's definitions, pure.
//! - [`proxy_protocol`]: HAProxy's PROXY protocol v1/v2, telling real servers the client address.
//! - [`relay`]: one connection relayed both ways, with half-close and the idle timeout;
//!   [`splice`] does the same without copying through userspace.
//! - `persist`: `ipvsadm -p` persistence templates, pure.
//! - `service`: one virtual service's runtime state and its scheduling decision.
//! - `tcp`, `udp`: the connection and datagram paths.
//! - `tier`: binding, starting, reloading and stopping services, and their health checks.
//! - [`status`]: the `ipvsadm -L -n` view of it all.

pub(crate) mod persist;
pub mod proxy_protocol;
pub mod relay;
pub mod sched;
pub(crate) mod service;
pub mod splice;
pub mod status;
mod tcp;
pub(crate) mod tier;
mod udp;
