//! The L4 tier, LVS-NAT style in userspace: virtual services relaying TCP and UDP to real
//! servers chosen by the IPVS schedulers.
//!
//! - [`sched`]: the schedulers with the kernel's definitions, pure.
//! - [`proxy_protocol`]: HAProxy's PROXY protocol v1/v2, telling real servers the client address.
//! - [`relay`]: one connection relayed both ways, with half-close and the idle timeout.
//!
//! The relays that run virtual services come with the rest of this tier; until then the binary
//! refuses `[virtual_server]` sections, whose config is validated here already.

pub mod proxy_protocol;
pub mod relay;
pub mod sched;
