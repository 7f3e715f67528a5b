//! One raw socket per interface and family, shared by the instances there as keepalived shares
//! its sockets: a reader task runs the receive checks against every local instance's
//! expectations and hands each accepted advert to the instance of its VRID, so an advert for
//! another local instance is not counted as an unknown VRID.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::binding::Bound;
use super::mismatch::Mismatches;
use crate::packet::{Accepted, ChecksumMode, DropCounters, DropReason, Expected};

/// Where the adverts of one VRID go.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) vrid: u8,
    pub(crate) to: mpsc::Sender<Accepted>,
}

/// Reads the socket in `bound`, and the next one when the interface is made again, until
/// aborted, checking each packet against the latest of `expectations` (what the instances
/// there accept, which a reload may change). `local` is our own address there: adverts from it
/// are our own (unicast peers may list us) and are skipped.
pub(crate) fn spawn_reader(
    mut bound: watch::Receiver<Bound>,
    local: IpAddr,
    checksum: ChecksumMode,
    routes: Vec<Route>,
    mut expectations: watch::Receiver<Vec<Expected>>,
    dropped: Arc<DropCounters>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut expected = expectations.borrow_and_update().clone();
        let mut mismatches = Mismatches::default();
        let mut socket = Arc::clone(&bound.borrow_and_update().socket);
        loop {
            let received = tokio::select! {
                biased;
                changed = bound.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    socket = Arc::clone(&bound.borrow_and_update().socket);
                    continue;
                }
                Ok(()) = expectations.changed() => {
                    expected = expectations.borrow_and_update().clone();
                    continue;
                }
                received = socket.recv(checksum, &expected) => received,
            };
            match received {
                Ok(Ok(accepted)) => {
                    if accepted.src == local {
                        continue;
                    }
                    for warning in &accepted.warnings {
                        tracing::debug!(vrid = accepted.advert.vrid(), src = %accepted.src, "{warning}");
                    }
                    let vrid = accepted.advert.vrid();
                    if let Some(route) = routes.iter().find(|r| r.vrid == vrid) {
                        // A full queue means the instance is far behind; dropping an advert
                        // then is what the network would do, and the next one follows.
                        if route.to.try_send(accepted).is_err() {
                            let reason = DropReason::InstanceBusy { vrid };
                            tracing::debug!(%reason, "VRRP advert dropped");
                            dropped.record(&reason);
                        }
                    }
                }
                Ok(Err(reason)) => {
                    if mismatches.warn(&reason, std::time::Instant::now()) {
                        tracing::warn!(%reason, "VRRP advert dropped (the first of its kind this minute; all are counted)");
                    } else {
                        tracing::debug!(%reason, "VRRP packet dropped");
                    }
                    dropped.record(&reason);
                }
                Err(error) => {
                    tracing::warn!(%error, "VRRP socket receive failed");
                    // An error that repeats (the interface went away) must not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}
