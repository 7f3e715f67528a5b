//! Fulcrum's embedded VRRP (RFC 3768 v2, RFC 5798 v3): the packet codec, the per-instance state
//! machine, the raw-socket and unicast transports, VIP handling with gratuitous ARP,
//! tracked scripts and interfaces, and notify scripts. It interoperates with keepalived on the
//! same LAN.
//!
//! - [`config`]: the `[vrrp]` section as users write it (keepalived's instances, scripts and sync
//!   groups, in CONFIG.md's key names) and the validated config each instance runs on.
//! - [`packet`]: encoding and decoding adverts, with the receive checks of RFC 3768 §7.1 and a
//!   counter per reason a packet is dropped.
//! - [`fsm`]: the Initialize / Backup / Master state machine, pure and clock-injected: events in,
//!   actions out, no sockets and no sleeps.
//! - [`net`]: the kernel side: rtnetlink (links, VIPs, link watching), the raw advert socket,
//!   and gratuitous ARP / unsolicited NA.
//! - [`track`]: tracked scripts' checkers (fall/rise) and the priority or fault they and tracked
//!   interfaces give an instance.
//! - [`notify`]: an instance's notify scripts, run in order off the state machine's path.
//! - [`run`]: the running instances ([`run::Vrrp`]): sockets, timers, VIPs, tracking and notify
//!   wired around each state machine.

pub mod config;
pub mod fsm;
pub mod net;
pub mod notify;
pub mod packet;
pub mod run;
#[cfg(test)]
mod testing;
pub mod track;
