//! Getting an authenticated, introduced connection to each peer. Every node listens; of two
//! peers the one whose `listen` sorts lower dials (the volume engine's rule), so there is one
//! connection per pair and no race of two to resolve. The dialer waits on a [`Backoff`] after
//! each failure; a wrong secret is refused and logged on both sides by the handshake (inside a
//! span naming the set). A link whose Hello the peer refused is a failure too: the backoff
//! grows, and the accepting side logs the same refusal at most once a minute ([`Throttle`]).
//!
//! With `tls` set, every link is TLS (see [`crate::sync::tls`]): the TLS handshake comes first,
//! then the same HMAC handshake inside it. A failed TLS handshake is a refusal, logged (with
//! the peer's address and the likely cause) at most once a minute on each side and counted.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tracing::{Instrument, debug, info, info_span, warn};

use super::{Shared, session};
pub(super) use crate::sync::tls::{LinkRead, LinkWrite};
use crate::sync::{
    proto::{
        self, AUTH_LABEL, FLAG_RECEIVES, FLAG_SENDS, Hello, Message, ProtoReader, ProtoWriter,
    },
    tls::{self, LinkStream},
};
use crate::volume::peer::{self, AuthError, Backoff};

/// How often the same refusal is logged at most.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(60);

/// Rate-limits identical warnings: the first is logged, then at most one per `every`, with how
/// many were left out in between.
#[derive(Debug)]
pub(super) struct Throttle {
    every: Duration,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Throttle {
    pub(super) fn new(every: Duration) -> Self {
        Self {
            every,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to log `key` at `now`: `Some(n)` with the `n` identical ones not logged since
    /// the last that was, `None` to leave this one out.
    pub(super) fn admit(&self, key: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((last, left_out)) = seen.get_mut(key) {
            if now.saturating_duration_since(*last) < self.every {
                *left_out += 1;
                return None;
            }
            let n = *left_out;
            (*last, *left_out) = (now, 0);
            return Some(n);
        }
        // Bounded: keys not seen for a while are forgotten first.
        if seen.len() >= 1024 {
            let every = self.every;
            seen.retain(|_, (last, _)| now.saturating_duration_since(*last) < every);
        }
        seen.insert(key.to_owned(), (now, 0));
        Some(0)
    }
}

/// An introduced connection.
pub(super) struct Introduced {
    pub(super) peer: usize,
    pub(super) hello: Hello,
    pub(super) reader: ProtoReader<LinkRead>,
    pub(super) writer: ProtoWriter<LinkWrite>,
}

/// Accepts the peers that dial us until the set stops, then waits for their sessions to end:
/// a stopped set leaves no fetcher behind still writing into the tree (a reload starts the set
/// again at once).
pub(super) async fn accept(shared: Arc<Shared>, listener: TcpListener) {
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shared.cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
            // Reaps the sessions that ended.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(set = %shared.config.name, %error, "sync: accept failed");
                tokio::time::sleep(peer::MIN_CONNECT_INTERVAL).await;
                continue;
            }
        };
        sessions.spawn(incoming(Arc::clone(&shared), stream, from));
    }
    drop(listener);
    // Each session ends on the cancel by itself, its blocking threads included.
    while sessions.join_next().await.is_some() {}
}

/// One accepted connection: the handshake, cut short if the set stops, then its session,
/// which ends on the stop by itself.
async fn incoming(shared: Arc<Shared>, stream: TcpStream, from: SocketAddr) {
    let cancel = shared.cancel.clone();
    let link = tokio::select! {
        () = cancel.cancelled() => return,
        link = handshake(&shared, stream, from) => link,
    };
    if let Some(link) = link {
        let _ = session::run(&shared, link).await;
    }
}

/// TLS if set, the authentication and the Hello of an accepted connection; `None` (counted and
/// logged) if it fails.
async fn handshake(
    shared: &Arc<Shared>,
    stream: TcpStream,
    from: SocketAddr,
) -> Option<Introduced> {
    let _ = stream.set_nodelay(true);
    let mut stream = match &shared.config.tls {
        None => LinkStream::Plain(stream),
        Some(tls) => match tls.accept(stream, shared.timeout).await {
            Ok(stream) => stream,
            Err(reason) => {
                shared.error();
                refused(shared, from, &reason);
                return None;
            }
        },
    };
    let auth = peer::authenticate_labelled(
        &mut stream,
        shared.config.shared_secret.as_bytes(),
        AUTH_LABEL,
        peer::Side::Accepting,
        shared.timeout,
        &shared.challenges,
    )
    .instrument(info_span!("sync", set = %shared.config.name, %from))
    .await;
    if let Err(error) = auth {
        shared.error();
        match speaks_tls(&error) {
            Some(reason) => refused(shared, from, reason),
            None => {
                debug!(set = %shared.config.name, %from, %error, "sync: incoming peer not authenticated")
            }
        }
        return None;
    }
    match introduce(shared, stream, None).await {
        Ok(link) => Some(link),
        Err(reason) => {
            shared.error();
            refused(shared, from, &reason);
            None
        }
    }
}

/// Logs that `peer` was refused (or refused us) for `reason`, at most once a minute for the
/// same peer address and reason.
fn refused(shared: &Shared, peer: SocketAddr, reason: &str) {
    let key = format!("{} {reason}", peer.ip());
    if let Some(left_out) = shared.refusals.admit(&key, Instant::now()) {
        warn!(set = %shared.config.name, %peer, %reason, repeated = left_out,
            "sync: peer refused (repeats logged at most once a minute)");
    }
}

/// The reason to log when the HMAC handshake failed because the peer began a TLS record (a
/// handshake or an alert) where a plain node expects its greeting: it has `tls` set, we do not.
fn speaks_tls(error: &AuthError) -> Option<&'static str> {
    match error {
        AuthError::NotFulcrum { magic, .. } if matches!(magic >> 8, 0x15 | 0x16) => Some(
            "the peer speaks TLS (it has `tls` set) and this node does not: set `tls` on every node of the set, or on none",
        ),
        _ => None,
    }
}

/// Dials peer `i` (whose `listen` sorts above ours) until the set stops.
pub(super) async fn dial(shared: Arc<Shared>, i: usize) {
    let addr = shared.peers[i].addr;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        if shared.cancel.is_cancelled() {
            return;
        }
        let attempt = async {
            let stream = tokio::time::timeout(shared.timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let mut stream = match &shared.config.tls {
                None => LinkStream::Plain(stream),
                Some(tls) => tls
                    .connect(stream, addr.ip(), shared.timeout)
                    .await
                    .inspect_err(|reason| {
                        shared.error();
                        refused(&shared, addr, reason);
                    })?,
            };
            peer::authenticate_labelled(
                &mut stream,
                shared.config.shared_secret.as_bytes(),
                AUTH_LABEL,
                peer::Side::Connecting,
                shared.timeout,
                &shared.challenges,
            )
            .instrument(info_span!("sync", set = %shared.config.name, peer = %addr))
            .await
            .map_err(|e| {
                if e.is_rejection() {
                    shared.error();
                }
                if let Some(reason) = speaks_tls(&e) {
                    refused(&shared, addr, reason);
                }
                if let AuthError::Io(io) = &e
                    && let Some(reason) = tls::refusal(io)
                {
                    shared.error();
                    refused(&shared, addr, &reason);
                }
                format!("authentication: {e}")
            })?;
            introduce(&shared, stream, Some(i))
                .await
                .inspect_err(|_| shared.error())
        };
        let result = tokio::select! {
            () = shared.cancel.cancelled() => return,
            result = attempt => result,
        };
        match result {
            Ok(link) => {
                // Only a link the peer accepted resets the backoff: a refused Hello (which
                // comes after the peer's own Hello) is a failure, or we would re-dial at the
                // shortest delay forever.
                if session::run(&shared, link).await {
                    backoff.succeeded();
                }
            }
            Err(reason) => {
                debug!(set = %shared.config.name, peer = %addr, %reason, "sync: no link")
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Exchanges Hellos and checks the peer's: same set, another node, one of our peers (the one
/// dialed, if we dialed), and a peer that should have dialed us if it did.
async fn introduce(
    shared: &Shared,
    stream: LinkStream,
    dialed: Option<usize>,
) -> Result<Introduced, String> {
    let (read, write) = stream.into_split();
    let mut reader = ProtoReader::new(read);
    if !shared.index().tracks_owners() {
        // Its owners are dropped on arrival: no name lookup on this (tokio) thread for them.
        reader = reader.ignoring_owner_names();
    }
    let mut writer = ProtoWriter::new(write);
    let direction = shared.config.direction;
    let flags = if direction.sends() { FLAG_SENDS } else { 0 }
        | if direction.receives() {
            FLAG_RECEIVES
        } else {
            0
        };
    let ours = Hello {
        version: proto::VERSION,
        set: shared.config.name.clone(),
        node: shared.node.clone(),
        listen: shared.config.listen.to_string(),
        index_id: shared.index().id(),
        flags,
    };
    let exchange = async {
        writer
            .send(&Message::Hello(ours))
            .await
            .map_err(|e| e.to_string())?;
        match reader.next().await {
            Ok(Some(Message::Hello(hello))) => Ok(hello),
            Ok(Some(Message::Refuse { reason })) => Err(format!("the peer refused us: {reason}")),
            Ok(Some(other)) => Err(format!("{} instead of Hello", other.name())),
            Ok(None) => Err("closed before Hello".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    };
    let hello = tokio::time::timeout(shared.timeout, exchange)
        .await
        .map_err(|_| "no Hello in time".to_owned())??;
    let check = || -> Result<usize, String> {
        if hello.version != proto::VERSION {
            return Err(format!(
                "protocol version {}, this node speaks {} (upgrade both nodes)",
                hello.version,
                proto::VERSION
            ));
        }
        if hello.set != shared.config.name {
            return Err(format!("set {:?}, not ours", hello.set));
        }
        if hello.node.is_empty() || hello.node == shared.node {
            return Err(format!("node name {:?} is ours (or empty)", hello.node));
        }
        let listen: SocketAddr = hello
            .listen
            .parse()
            .map_err(|_| format!("listen {:?} is not an address", hello.listen))?;
        let i = shared
            .peers
            .iter()
            .position(|p| p.addr == listen)
            .ok_or_else(|| format!("{listen} is not one of our peers"))?;
        match dialed {
            Some(d) if d != i => Err(format!(
                "dialed {}, answered by {listen}",
                shared.peers[d].addr
            )),
            None if shared.config.listen < listen => {
                Err(format!("{listen} dialed us, but we dial it"))
            }
            _ => Ok(i),
        }
    };
    match check() {
        Ok(peer) => {
            info!(set = %shared.config.name, peer = %shared.peers[peer].addr, node = %hello.node,
                "sync: peer introduced");
            Ok(Introduced {
                peer,
                hello,
                reader,
                writer,
            })
        }
        Err(reason) => {
            // Best effort, and no longer than the Hello exchange could take: a peer that does
            // not read must not hold this task.
            let refuse = Message::Refuse {
                reason: reason.clone(),
            };
            let _ = tokio::time::timeout(shared.timeout, writer.send(&refuse)).await;
            Err(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: the same refusal 100 times within a minute, then once after it, and another
    // refusal. Output: the first logged, the next 99 left out, the one after the minute logged
    // with 99; another key is logged at once.
    #[test]
    fn identical_refusals_are_logged_at_most_once_a_minute() {
        let throttle = Throttle::new(WARN_EVERY);
        let start = Instant::now();
        assert_eq!(throttle.admit("10.0.0.1 not ours", start), Some(0));
        for i in 1..100 {
            let at = start + Duration::from_millis(i * 100);
            assert_eq!(throttle.admit("10.0.0.1 not ours", at), None);
        }
        assert_eq!(throttle.admit("10.0.0.2 not ours", start), Some(0));
        let later = start + WARN_EVERY;
        assert_eq!(throttle.admit("10.0.0.1 not ours", later), Some(99));
        assert_eq!(throttle.admit("10.0.0.1 not ours", later), None);
    }
}
