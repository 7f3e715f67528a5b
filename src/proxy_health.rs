//! The input of VRRP's built-in tracking script (`builtin = "proxy"`, in place of keepalived's
//! `killall -0 haproxy`): the local proxy is healthy while no backend or virtual service is DOWN
//! (HAProxy's word for one without a usable server). It follows the proxy's server events and
//! reloads, so a backend losing its last server, or a reload removing a DOWN backend, is seen at
//! once, not at the next poll.

use std::sync::Arc;

use fulcrum_common::stats::{ProxyStats, RowKind};
use fulcrum_proxy::Proxy;
use tokio::sync::{broadcast::error::RecvError, watch};

/// Starts following `proxy`; the task ends when every receiver is dropped.
pub(crate) fn watch(proxy: Arc<Proxy>) -> watch::Receiver<bool> {
    let mut events = proxy.subscribe();
    let (tx, rx) = watch::channel(healthy(&proxy.stats()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tx.closed() => return,
                event = events.recv() => {
                    if let Err(RecvError::Closed) = event {
                        return;
                    }
                    // A lagged receiver lost events, not the state: reading it again is enough.
                    let now = healthy(&proxy.stats());
                    tx.send_if_modified(|was| std::mem::replace(was, now) != now);
                }
            }
        }
    });
    rx
}

/// Whether no backend or virtual service is DOWN (HAProxy's backend status: no usable server).
fn healthy(stats: &[ProxyStats]) -> bool {
    stats
        .iter()
        .flat_map(|p| &p.rows)
        .filter(|row| row.kind == RowKind::Backend)
        .all(|row| !row.status.starts_with("DOWN"))
}
