//! The sockets of one interface and family, opened again when the interface is deleted and made
//! again under its name (`ifdown` and `ifup` of a VLAN or a bond), as keepalived does. Sockets,
//! their multicast membership, the VIPs and the ARP socket all belong to an interface index,
//! which the new interface does not share: until new sockets are open on it, the instances there
//! are in FAULT, and their next action uses the new link.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::net::{AdvertSocket, Link, Netlink, send_state};
use crate::packet::Family;

/// How soon a socket that failed to open on a new interface is tried again, if no change of the
/// interface comes first.
const RETRY: Duration = Duration::from_secs(1);

/// Where the instances of one interface and family send and receive.
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    pub(crate) link: Link,
    pub(crate) socket: Arc<AdvertSocket>,
}

/// The receiving ends of one binding task.
#[derive(Debug)]
pub(crate) struct Binding {
    /// The link and socket in use, replaced when the interface is made again.
    pub(crate) bound: watch::Receiver<Bound>,
    /// Whether the socket reaches the interface: it is up, holds the source address, and is the
    /// one the socket was opened on. It starts `false` and is published once the kernel has
    /// said (see [`Netlink::watch_binding`]).
    pub(crate) usable: watch::Receiver<bool>,
}

/// What [`spawn`] needs to open a socket again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reopen {
    pub(crate) family: Family,
    /// Our address there, which the new interface must hold too.
    pub(crate) local: IpAddr,
    /// Whether every instance there has unicast peers (no multicast membership).
    pub(crate) unicast: bool,
}

/// Starts following the interface of `first`, which `reopen` opened. The task ends when the
/// reader and the instances, which hold the receivers of [`Binding::bound`], are all gone.
pub(crate) fn spawn(netlink: Arc<Netlink>, first: Bound, reopen: Reopen) -> Binding {
    let index = netlink.watch_binding(&first.link.name, reopen.local);
    let (bound_tx, bound) = watch::channel(first);
    let (usable_tx, usable) = watch::channel(false);
    tokio::spawn(follow(netlink, index, bound_tx, usable_tx, reopen));
    Binding { bound, usable }
}

async fn follow(
    netlink: Arc<Netlink>,
    mut index: watch::Receiver<Option<u32>>,
    bound: watch::Sender<Bound>,
    usable: watch::Sender<bool>,
    reopen: Reopen,
) {
    // The watcher's first value is a placeholder until the kernel has answered.
    tokio::select! {
        changed = index.changed() => if changed.is_err() { return },
        () = bound.closed() => return,
    }
    let mut first = true;
    loop {
        let wanted = *index.borrow_and_update();
        let now = match wanted {
            Some(wanted) if wanted == bound.borrow().link.index => true,
            Some(wanted) => open_again(&netlink, &bound, wanted, reopen).await,
            None => false,
        };
        send_state(&usable, now, std::mem::take(&mut first));
        let retry = wanted.is_some() && !now;
        tokio::select! {
            changed = index.changed() => if changed.is_err() { return },
            () = bound.closed() => return,
            () = tokio::time::sleep(RETRY), if retry => {}
        }
    }
}

/// Opens a socket on the interface of index `wanted`, made again under the name of the one in
/// `bound`, and puts it in `bound`. Whether it did.
async fn open_again(
    netlink: &Netlink,
    bound: &watch::Sender<Bound>,
    wanted: u32,
    reopen: Reopen,
) -> bool {
    let (name, was) = {
        let old = bound.borrow();
        (old.link.name.clone(), old.link.index)
    };
    let link = match netlink.link(&name).await {
        Ok(link) if link.index == wanted => link,
        // Changed again since: the notification of that change is on its way.
        Ok(_) => return false,
        Err(error) => {
            warn!(interface = %name, %error, "cannot read the VRRP interface made again");
            return false;
        }
    };
    match AdvertSocket::open(&link, reopen.family, reopen.local, reopen.unicast) {
        Ok(socket) => {
            info!(interface = %name, was, now = wanted,
                "VRRP interface was deleted and made again: its sockets are open on the new one");
            bound.send_replace(Bound {
                link,
                socket: Arc::new(socket),
            });
            true
        }
        Err(error) => {
            warn!(interface = %name, %error, "cannot open the VRRP socket on the interface made again");
            false
        }
    }
}
