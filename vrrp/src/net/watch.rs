//! Following an interface's up/down state for `track_interface` and for the FAULT state.
//!
//! The watcher subscribes to rtnetlink's RTNLGRP_LINK notifications on a connection of its own
//! (what `ip monitor link` does), so a change is seen as soon as the kernel makes it; it does
//! not poll. It subscribes before reading the current state, so no change between the two is
//! lost: each notification carries the link's whole state, and the last one applied is the
//! newest.

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
        let watcher = Watcher {
            handle: self.handle.clone(),
            name: name.to_owned(),
            index: None,
            first: true,
            tx,
        };
        self.runtime.spawn(watcher.run());
        rx
    }
}

/// The task behind one [`Netlink::watch_link`] receiver.
struct Watcher {
    /// For reading the current state: on start, after resubscribing, and after an overrun.
    handle: rtnetlink::Handle,
    name: String,
    /// The index the name had when last seen, to notice the interface being renamed away.
    index: Option<u32>,
    /// Whether nothing has been published yet (the first state is published even if `false`).
    first: bool,
    tx: watch::Sender<bool>,
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
        let (connection, _handle, mut events) =
            match rtnetlink::new_multicast_connection(&[MulticastGroup::Link]) {
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
            self.publish(up);
        }
    }

    /// The state a notification gives our interface, `None` if it is about another one. A link
    /// renamed away from our name counts as gone.
    fn state_from(&mut self, link: &LinkMessage, deleted: bool) -> Option<bool> {
        let index = link.header.index;
        let named_ours = link.attributes.iter().any(
            |attribute| matches!(attribute, LinkAttribute::IfName(name) if *name == self.name),
        );
        if named_ours {
            self.index = (!deleted).then_some(index);
            Some(!deleted && is_up(link.header.flags))
        } else if self.index == Some(index) {
            self.index = None;
            Some(false)
        } else {
            None
        }
    }

    /// Reads the current state from the kernel and publishes it. A failed read is logged and
    /// leaves the last state standing; the next notification corrects it.
    async fn refresh(&mut self) {
        match query_link(&self.handle, &self.name).await {
            Ok(link) => {
                self.index = link.as_ref().map(|link| link.index);
                self.publish(link.is_some_and(|link| link.up));
            }
            Err(error) => warn!(interface = %self.name, %error, "cannot read link state"),
        }
    }

    fn publish(&mut self, up: bool) {
        if std::mem::take(&mut self.first) {
            self.tx.send_replace(up);
            debug!(interface = %self.name, up, "link state");
        } else if self
            .tx
            .send_if_modified(|state| std::mem::replace(state, up) != up)
        {
            debug!(interface = %self.name, up, "link state changed");
        }
    }
}
