//! Following an interface's up/down state for `track_interface` and for the FAULT state, and
//! for an instance's own interface where its sockets can reach it ([`Netlink::watch_binding`]).
//!
//! The watcher subscribes to rtnetlink's RTNLGRP_LINK notifications on a connection of its own
//! (what `ip monitor link` does), so a change is seen as soon as the kernel makes it; it does
//! not poll. It subscribes before reading the current state, so no change between the two is
//! lost: each notification carries the link's whole state, and the last one applied is the
//! newest.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt;
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::Netlink;
use super::link::{is_up, query_link};
use super::vip::address_present;

/// How long to wait before subscribing again after the subscription failed or closed.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

impl Netlink {
    /// Whether the interface `name` is up (`IFF_UP` and `IFF_RUNNING`, keepalived's rule for
    /// `track_interface`), now and on every change; `false` while it does not exist.
    ///
    /// The receiver starts at `false` and its first `changed()` resolves with the state read from
    /// the kernel (within milliseconds), whatever it is; after that `changed()` resolves on real
    /// changes only. Changes arrive by rtnetlink notification (RTNLGRP_LINK), not by polling.
    /// The watcher task ends when every receiver is dropped.
    pub fn watch_link(&self, name: &str) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        self.spawn_watcher(name, None, Publish::Up(tx));
        rx
    }

    /// As [`Netlink::watch_link`], for the interface an instance's sockets are bound to: the
    /// index of the interface named `name` while it is up and holds `local`, the address adverts
    /// go from (a removed source address fails every send); `None` otherwise, as at first. The
    /// index changes when the interface is deleted and made again under its name (`ifdown` and
    /// `ifup` of a VLAN or a bond), which sockets bound to the old one do not reach: the caller
    /// opens new ones. Address changes arrive by notification too (RTNLGRP_IPV4_IFADDR,
    /// RTNLGRP_IPV6_IFADDR).
    pub fn watch_binding(&self, name: &str, local: IpAddr) -> watch::Receiver<Option<u32>> {
        let (tx, rx) = watch::channel(None);
        self.spawn_watcher(name, Some(local), Publish::Usable(tx));
        rx
    }

    fn spawn_watcher(&self, name: &str, local: Option<IpAddr>, tx: Publish) {
        let watcher = Watcher {
            handle: self.handle.clone(),
            name: name.to_owned(),
            index: None,
            local,
            first: true,
            tx,
        };
        self.runtime.spawn(watcher.run());
    }
}

/// The task behind one [`Netlink::watch_link`] receiver.
struct Watcher {
    /// For reading the current state: on start, after resubscribing, and after an overrun.
    handle: rtnetlink::Handle,
    name: String,
    /// The index the name had when last seen, to notice the interface being renamed away.
    index: Option<u32>,
    /// For [`Netlink::watch_binding`]: the address the interface must hold.
    local: Option<IpAddr>,
    /// Whether nothing has been published yet (the first state is published even if `false`).
    first: bool,
    tx: Publish,
}

/// Where a watcher publishes, and what.
enum Publish {
    /// [`Netlink::watch_link`]: whether the link is up.
    Up(watch::Sender<bool>),
    /// [`Netlink::watch_binding`]: the index at which the link is usable.
    Usable(watch::Sender<Option<u32>>),
}

impl Publish {
    async fn closed(&self) {
        match self {
            Publish::Up(tx) => tx.closed().await,
            Publish::Usable(tx) => tx.closed().await,
        }
    }
}

/// Why a subscription ended.
enum Ended {
    /// Every receiver is gone: the task ends.
    Unwatched,
    /// The notification socket failed or closed: subscribe again.
    Lost,
}

impl Watcher {
    async fn run(mut self) {
        loop {
            if let Ended::Unwatched = self.subscribe().await {
                debug!(interface = %self.name, "link watcher stopped");
                return;
            }
            tokio::select! {
                () = self.tx.closed() => return,
                () = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
            }
        }
    }

    /// Subscribes, reads the current state, then follows notifications until the subscription
    /// ends or nobody listens.
    async fn subscribe(&mut self) -> Ended {
        let groups: &[MulticastGroup] = match self.local {
            None => &[MulticastGroup::Link],
            Some(_) => &[
                MulticastGroup::Link,
                MulticastGroup::Ipv4Ifaddr,
                MulticastGroup::Ipv6Ifaddr,
            ],
        };
        let (connection, _handle, mut events) = match rtnetlink::new_multicast_connection(groups) {
            Ok(subscription) => subscription,
            Err(error) => {
                warn!(interface = %self.name, %error, "cannot subscribe to link changes");
                return Ended::Lost;
            }
        };
        // Driven here rather than spawned, so it stops with this task.
        let mut connection = std::pin::pin!(connection);
        self.refresh().await;
        loop {
            tokio::select! {
                () = self.tx.closed() => return Ended::Unwatched,
                () = &mut connection => {
                    warn!(interface = %self.name, "link notification socket closed");
                    return Ended::Lost;
                }
                event = events.next() => match event {
                    Some((message, _)) => self.on_event(message).await,
                    None => {
                        warn!(interface = %self.name, "link notification stream ended");
                        return Ended::Lost;
                    }
                },
            }
        }
    }

    async fn on_event(&mut self, message: NetlinkMessage<RouteNetlinkMessage>) {
        if self.local.is_some() {
            // Rare events: any about our name or index is answered by reading the state again,
            // the address included.
            let ours = match &message.payload {
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewLink(link) | RouteNetlinkMessage::DelLink(link),
                ) => self.index == Some(link.header.index) || self.names_ours(link),
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewAddress(address)
                    | RouteNetlinkMessage::DelAddress(address),
                ) => self.index == Some(address.header.index),
                NetlinkPayload::Overrun(_) => true,
                _ => false,
            };
            if ours {
                self.refresh().await;
            }
            return;
        }
        let (link, deleted) = match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => (link, false),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => (link, true),
            // The kernel dropped notifications (our socket buffer was full): ask for the state.
            NetlinkPayload::Overrun(_) => {
                warn!(interface = %self.name, "link notifications lost; reading the state again");
                self.refresh().await;
                return;
            }
            _ => return,
        };
        if let Some(up) = self.state_from(&link, deleted) {
            self.publish(up.then_some(link.header.index));
        }
    }

    /// The state a notification gives our interface, `None` if it is about another one. A link
    /// renamed away from our name counts as gone.
    fn state_from(&mut self, link: &LinkMessage, deleted: bool) -> Option<bool> {
        let index = link.header.index;
        if self.names_ours(link) {
            self.index = (!deleted).then_some(index);
            Some(!deleted && is_up(link.header.flags))
        } else if self.index == Some(index) {
            self.index = None;
            Some(false)
        } else {
            None
        }
    }

    fn names_ours(&self, link: &LinkMessage) -> bool {
        link.attributes
            .iter()
            .any(|attribute| matches!(attribute, LinkAttribute::IfName(name) if *name == self.name))
    }

    /// Reads the current state from the kernel and publishes it. A failed read is logged and
    /// leaves the last state standing; the next notification corrects it.
    async fn refresh(&mut self) {
        let link = match query_link(&self.handle, &self.name).await {
            Ok(link) => link,
            Err(error) => {
                warn!(interface = %self.name, %error, "cannot read link state");
                return;
            }
        };
        self.index = link.as_ref().map(|link| link.index);
        let up = link.filter(|link| link.up).map(|link| link.index);
        let Some(local) = self.local else {
            self.publish(up);
            return;
        };
        let usable = match up {
            Some(index) => match address_present(&self.handle, index, local).await {
                Ok(present) => {
                    if !present {
                        warn!(interface = %self.name, address = %local,
                            "VRRP source address is gone from the interface: adverts cannot be sent from it");
                    }
                    present.then_some(index)
                }
                Err(error) => {
                    warn!(interface = %self.name, %error, "cannot read the interface's addresses");
                    return;
                }
            },
            None => None,
        };
        self.publish(usable);
    }

    /// Publishes `usable` (the index while usable) if it changed, or if it is the first state.
    fn publish(&mut self, usable: Option<u32>) {
        let first = std::mem::take(&mut self.first);
        let changed = match &self.tx {
            Publish::Up(tx) => send_state(tx, usable.is_some(), first),
            Publish::Usable(tx) => send_state(tx, usable, first),
        };
        if changed {
            debug!(interface = %self.name, ?usable, first, "link state");
        }
    }
}

/// Sends `value` if it differs from the last one, or in any case if it is the `first`: receivers
/// wait for a first state, whatever it is. Whether it was sent.
pub(crate) fn send_state<T: PartialEq>(tx: &watch::Sender<T>, value: T, first: bool) -> bool {
    if first {
        tx.send_replace(value);
        return true;
    }
    tx.send_if_modified(|state| {
        let changed = *state != value;
        *state = value;
        changed
    })
}
