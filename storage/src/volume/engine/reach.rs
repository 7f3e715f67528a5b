//! Before promoting without the peer, try to reach it now. A node promoted while disconnected
//! starts a generation of its own. If the peer was primary meanwhile (a partition has healed but
//! this node's dialer is still sitting out its backoff), the next connect finds a split brain,
//! and one side's acknowledged writes are lost. So a promotion that finds the link down first asks
//! for the link. The dialer dials at once; the accepting node connects to the peer's listener,
//! which wakes the peer's dialer (see `connect`). The promotion then waits until a session starts
//! (the peer's role is then known), the attempt fails, or [`bound`] passes. Only then does it
//! promote alone, with the peer presumed dead.
//!
//! A peer that is gone costs little: a refused connection ends the wait at once, and a host that
//! does not answer ends it after `timeout` (the dial or the wake-up call times out).

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::info;

use super::connect;
use super::inner::Inner;
use super::status::ConnState;
use crate::volume::peer::DiskState;

/// How long a promotion waits for a session once the peer is asked to connect. A dial and an
/// authentication take `timeout` each at most, and a third `timeout` covers the dialer's wake-up
/// and the Hellos. (A handshake that has started by then holds the role lock, so the promotion
/// still waits for its outcome.)
pub(crate) fn bound(timeout: Duration) -> Duration {
    timeout.saturating_mul(3)
}

/// Waits, if the link is down and a promotion would go ahead without the peer, until the peer's
/// role is known or the peer is presumed dead. Call it without the role lock: the handshake it
/// waits for takes that lock.
pub(crate) async fn before_promotion(inner: &Inner) {
    let conn = {
        let c = inner.control();
        let refused_anyway = c.disk != DiskState::UpToDate || inner.is_detached();
        if refused_anyway || inner.is_primary() || inner.cancel.is_cancelled() {
            return;
        }
        c.conn
    };
    if conn.is_connected() || conn == ConnState::StandAlone {
        // Connected: the peer's role is known. StandAlone: nobody connects until an operator acts.
        return;
    }
    let name = &inner.config.name;
    let started = Instant::now();
    let mut news = inner.link_news.subscribe();
    // An attempt already under way may have begun before the link came back: only the failure
    // of a later one (the one asked for) says the peer is not there.
    let asked_after = news.borrow_and_update().begun;
    if connect::dials(&inner.config) {
        inner.redial.notify_one();
    } else if let Err(error) = wake_peer(inner).await {
        let waited_ms = started.elapsed().as_millis();
        info!(volume = %name, %error, waited_ms, "peer unreachable: promoting without it");
        return;
    }
    let wait = async {
        loop {
            // Read before the state: a change after it is a change `changed` reports.
            let last_failed = news.borrow_and_update().last_failed;
            let conn = inner.control().conn;
            if conn.is_connected() {
                return "connected";
            }
            if conn == ConnState::StandAlone {
                return "StandAlone";
            }
            if last_failed > asked_after {
                return "the attempt failed";
            }
            tokio::select! {
                () = inner.cancel.cancelled() => return "stopping",
                changed = news.changed() => {
                    if changed.is_err() {
                        return "stopping";
                    }
                }
            }
        }
    };
    let outcome = tokio::time::timeout(bound(inner.config.timeout), wait)
        .await
        .unwrap_or("no session in time");
    let waited_ms = started.elapsed().as_millis();
    info!(volume = %name, outcome, waited_ms, "waited for the peer before promoting");
}

/// The accepting node's wake-up call: a bare connection to the peer's listener, closed at once.
/// Refused or unanswered, the peer is not there to dial us.
pub(crate) async fn wake_peer(inner: &Inner) -> std::io::Result<()> {
    let config = &inner.config;
    match tokio::time::timeout(config.timeout, TcpStream::connect(config.peer)).await {
        Ok(stream) => stream.map(drop),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}
