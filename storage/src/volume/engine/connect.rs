//! The connection manager: one task per volume that gets a link to the peer, authenticates it,
//! runs the handshake and the session, and starts over, until the volume stops.
//!
//! Both nodes listen; the node whose `listen` address sorts lower dials and the other accepts,
//! so there is never a race of two connections to resolve (DRBD keeps one of two crossed
//! connections; keeping only the lower node's dial is the same rule applied up front). The
//! dialer waits on a [`Backoff`] after every failure, so a wrong secret is never retried in a
//! tight loop. While StandAlone nobody dials, and incoming connections are closed at once.
//!
//! A promotion that finds the link down asks for the peer now (see `reach`): the dialer's pause
//! ends early when its own node wakes it, or when the accepting node connects to the dialer's
//! listener, which the dialer otherwise never reads, to say "dial me". The accepting node also
//! says so when it starts, so that a pair started one node after the other connects at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::counting::{Counted, Direction};
use super::handshake::{self, Failure};
use super::inner::Inner;
use super::link::Request;
use super::reach;
use super::session::{self, End};
use super::status::{ConnState, Counters, VolumeEvent};
use crate::volume::config::VolumeConfig;
use crate::volume::meta::GenerationIds;
use crate::volume::peer::{self, Backoff, MessageReader, MessageWriter};

/// Requests the write path may queue ahead of the session.
const REQUEST_QUEUE: usize = 256;

/// Runs until the volume is cancelled.
pub(crate) async fn run(inner: Arc<Inner>, listener: TcpListener) {
    let config = &inner.config;
    let dialer = dials(config);
    let mut backoff = Backoff::new(
        config.connect_interval,
        (config.connect_interval * 32).max(Duration::from_secs(30)),
    );
    let mut admin = inner.admin.subscribe();
    if !dialer {
        // The dialer may have started first and be sitting out its backoff: our start is
        // worth a dial now, as when both of DRBD's nodes dial.
        let waker = Arc::clone(&inner);
        tokio::spawn(async move {
            if let Err(error) = reach::wake_peer(&waker).await {
                debug!(volume = %waker.config.name, %error, "peer not there to wake at start");
            }
        });
    }
    loop {
        if inner.cancel.is_cancelled() {
            return;
        }
        if inner.is_detached() {
            // No copy here to resync into while serving: wait for the restart (see `detach`).
            inner.set_conn(ConnState::StandAlone);
            warn!(volume = %config.name, "disk detached and peer lost: not reconnecting until restart");
            inner.cancel.cancelled().await;
            return;
        }
        let state = *admin.borrow_and_update();
        if state.standalone {
            inner.set_conn(ConnState::StandAlone);
            tokio::select! {
                () = inner.cancel.cancelled() => return,
                _ = admin.changed() => {}
                accepted = listener.accept() => {
                    if let Ok((_, from)) = accepted {
                        info!(volume = %config.name, %from, "StandAlone: connection closed");
                    }
                }
            }
            continue;
        }
        inner.set_conn(ConnState::Connecting);
        let link = tokio::select! {
            () = inner.cancel.cancelled() => return,
            _ = admin.changed() => continue,
            link = async {
                if dialer {
                    dial_authenticated(&inner).await
                } else {
                    accept_authenticated(&inner, &listener).await
                }
            } => link,
        };
        let (attempt, stream) = match link {
            Ok(link) => link,
            Err(attempt) => {
                inner.attempt_failed(attempt);
                if dialer {
                    pause(&inner, &listener, &mut backoff).await;
                }
                continue;
            }
        };
        match connected(&inner, stream, dialer, state.discard_my_data).await {
            Outcome::Ended(End::Shutdown) => return,
            Outcome::Ended(End::Admin) | Outcome::Refused(Failure::StandAlone) => {
                inner.admin.send_modify(|a| {
                    a.standalone = true;
                    a.discard_my_data = false;
                });
            }
            Outcome::Ended(_) => {
                backoff.succeeded();
                if dialer {
                    pause(&inner, &listener, &mut backoff).await;
                }
            }
            Outcome::Refused(Failure::Retry) => {
                inner.attempt_failed(attempt);
                if dialer {
                    pause(&inner, &listener, &mut backoff).await;
                }
            }
        }
    }
}

enum Outcome {
    Refused(Failure),
    Ended(End),
}

/// The most handshakes the accepting node runs side by side; connections past them are closed.
const MAX_HANDSHAKES: usize = 16;

/// A link to the peer, authenticated, with its attempt's number; `Err` with the number of the
/// attempt that failed.
type Link = Result<(u64, TcpStream), u64>;

/// Dials the peer and authenticates.
async fn dial_authenticated(inner: &Inner) -> Link {
    let config = &inner.config;
    let attempt = inner.attempt_begun();
    let mut stream =
        match tokio::time::timeout(config.timeout, TcpStream::connect(config.peer)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                debug!(volume = %config.name, peer = %config.peer, %error, "connect failed");
                return Err(attempt);
            }
            Err(_) => return Err(attempt),
        };
    if authenticate(inner, &mut stream, peer::Side::Connecting).await {
        Ok((attempt, stream))
    } else {
        Err(attempt)
    }
}

/// The first accepted connection that authenticates. The handshakes run side by side, each
/// within `timeout`: with one at a time, anyone able to reach the port could hold it with a
/// connection that sends nothing, and the peer's own would time out behind it, again and again.
async fn accept_authenticated(inner: &Arc<Inner>, listener: &TcpListener) -> Link {
    // Dropped with the handshakes still running when one has passed.
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut stream, from)) => {
                    let attempt = inner.attempt_begun();
                    if handshakes.len() >= MAX_HANDSHAKES {
                        debug!(volume = %inner.config.name, %from, "too many handshakes at once: connection closed");
                        inner.attempt_failed(attempt);
                        continue;
                    }
                    let inner = Arc::clone(inner);
                    handshakes.spawn(async move {
                        if authenticate(&inner, &mut stream, peer::Side::Accepting).await {
                            Ok((attempt, stream))
                        } else {
                            Err(attempt)
                        }
                    });
                }
                Err(error) => {
                    warn!(volume = %inner.config.name, %error, "accept failed");
                    // Out of descriptors and the like: do not spin.
                    tokio::time::sleep(peer::MIN_CONNECT_INTERVAL).await;
                }
            },
            Some(done) = handshakes.join_next() => match done {
                Ok(Ok(link)) => return Ok(link),
                Ok(Err(attempt)) => inner.attempt_failed(attempt),
                // A handshake cannot panic; were one to, the others go on.
                Err(_) => {}
            },
        }
    }
}

/// Authenticates a connection to or from the peer, counting a refusal; whether it passed.
async fn authenticate(inner: &Inner, stream: &mut TcpStream, side: peer::Side) -> bool {
    // Acks must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    Counters::add(&inner.counters.connect_attempts, 1);
    let config = &inner.config;
    let auth = peer::authenticate(
        stream,
        config.shared_secret.as_bytes(),
        side,
        config.timeout,
        &peer::OwnChallenges::of(&inner.node),
    )
    .await;
    if let Err(error) = auth {
        if error.is_rejection() {
            Counters::add(&inner.counters.auth_failures, 1);
            inner.emit(VolumeEvent::AuthRefused);
        }
        return false;
    }
    true
}

/// Whether this node dials (the other accepts): the one whose `listen` sorts lower.
pub(crate) fn dials(config: &VolumeConfig) -> bool {
    config.listen < config.peer
}

/// The dialer's wait before its next attempt. A promotion on either node, or the accepting
/// node's start, cuts it short, but never below [`peer::MIN_CONNECT_INTERVAL`] from its start,
/// so that wake-ups repeated by a confused or hostile peer cannot make a tight loop; the
/// backoff itself is left as it is.
async fn pause(inner: &Inner, listener: &TcpListener, backoff: &mut Backoff) {
    let delay = backoff.next_delay();
    let now = Instant::now();
    let until = now + delay;
    let floor = (now + peer::MIN_CONNECT_INTERVAL).min(until);
    let by = tokio::select! {
        () = inner.cancel.cancelled() => return,
        () = tokio::time::sleep_until(until) => return,
        () = inner.redial.notified() => "this node",
        accepted = listener.accept() => match accepted {
            // A connection from the accepting node, which never dials: its wake-up call.
            Ok((_, from)) => {
                debug!(volume = %inner.config.name, %from, "woken up by the peer");
                "the peer"
            }
            Err(error) => {
                // Out of descriptors and the like: sit the pause out without the listener.
                debug!(volume = %inner.config.name, %error, "accept failed while pausing");
                tokio::select! {
                    () = inner.cancel.cancelled() => {}
                    () = tokio::time::sleep_until(until) => {}
                }
                return;
            }
        },
    };
    info!(volume = %inner.config.name, by, "redialing the peer at once: woken");
    // The early dial is the promotion's, not a retry of the schedule's: its failure must not
    // lengthen the next wait (a node promoted at start, before its peer runs, would otherwise
    // wait twice the connect interval for a peer that starts a moment later).
    backoff.woken();
    tokio::select! {
        () = inner.cancel.cancelled() => {}
        () = tokio::time::sleep_until(floor) => {}
    }
}

/// An authenticated link: attach the write path, handshake, run the session, detach.
async fn connected(inner: &Arc<Inner>, stream: TcpStream, dialer: bool, discard: bool) -> Outcome {
    let (read, write) = stream.into_split();
    let mut reader = MessageReader::new(Counted::new(read, Arc::clone(inner), Direction::Received));
    let mut writer = MessageWriter::new(Counted::new(write, Arc::clone(inner), Direction::Sent));
    let (tx, requests) = mpsc::channel::<Request>(REQUEST_QUEUE);
    // Attached before the Hello: every write from now on is queued for the peer, and every
    // earlier one is in the bitmap we are about to describe.
    *inner.gate.write().await = Some(tx);
    let est = {
        // Roles stay put while the Hello reports them.
        let _roles = inner.role_lock.lock().await;
        handshake::run(inner, &mut reader, &mut writer, dialer, discard).await
    };
    let outcome = match est {
        Ok(est) => {
            if discard {
                inner.admin.send_modify(|a| a.discard_my_data = false);
            }
            let end = session::run(
                inner,
                reader,
                writer,
                est,
                requests,
                inner.admin.subscribe(),
            )
            .await;
            if end != End::Shutdown {
                after_session(inner).await;
            }
            Outcome::Ended(end)
        }
        Err(failure) => {
            drop(requests);
            Outcome::Refused(failure)
        }
    };
    *inner.gate.write().await = None;
    outcome
}

/// The peer is gone: a primary starts a new generation (its writes from now on are known only
/// here, so the next connect syncs from the bitmap, or sees a split brain).
async fn after_session(inner: &Arc<Inner>) {
    // A demotion holds the role lock while it drains the NBD clients, and the writes it lets
    // finish now are this node's alone: a primary at the loss starts a new generation even if it
    // is secondary once the lock is free. Else its current id stays the peer's, and a peer
    // promoted meanwhile would resync over those acknowledged writes instead of seeing a split
    // brain. Read first, so that a drain ending meanwhile is still counted.
    let was_primary = inner.is_primary();
    // Detach first so that writes stop queueing for a session that is gone.
    *inner.gate.write().await = None;
    {
        let mut c = inner.control();
        c.peer_role = None;
        c.peer_disk = None;
        c.resync = None;
    }
    inner.set_conn(ConnState::Connecting);
    inner.emit(VolumeEvent::Disconnected);
    let _roles = inner.role_lock.lock().await;
    let primary = inner.is_primary();
    if was_primary || primary {
        let Ok(id) = GenerationIds::random_id() else {
            return;
        };
        let result = inner
            .meta
            .try_call(move |m| {
                m.update(|s| {
                    s.ids.lost_peer(id, was_primary, primary);
                    s.peer_disk = None;
                })
            })
            .await;
        if let Err(error) = result {
            warn!(volume = %inner.config.name, %error, "cannot start a new generation");
        }
    }
}
