//! The kernel-facing side of VRRP: what the packet codec and the state machine need from Linux.
//!
//! - [`Netlink`]: links, their primary addresses and up/down changes, and adding and removing
//!   VIPs, over rtnetlink.
//! - [`AdvertSocket`]: a raw IP protocol 112 socket on one interface that sends adverts and
//!   receives them through the receive checks of [`packet`](crate::packet).
//! - [`Announcer`]: gratuitous ARP and unsolicited Neighbor Advertisements after a takeover, built
//!   by the pure [`gratuitous_arp`] and [`unsolicited_na`].
//!
//! Everything here needs `CAP_NET_ADMIN` and `CAP_NET_RAW`; `vrrp/tests/net.rs` runs it as root
//! in a network namespace of its own.

mod announce;
mod dump;
mod error;
mod frames;
mod link;
mod socket;
mod vip;
mod watch;

pub use announce::Announcer;
pub use frames::{
    ARP_FRAME_LEN, NA_LEN, gratuitous_arp, unsolicited_na, unsolicited_na_with_router,
};
pub use link::{Link, Netlink};
pub use socket::AdvertSocket;
pub(crate) use watch::send_state;
