//! Getting a server connection for one request: pick a server and take a slot ([`select`]), then
//! take a pooled connection or open one, retrying failed connects up to `retries` times and, with
//! `redispatch`, sending the last retry (or a sticky client whose server refuses) elsewhere.

use std::{sync::Arc, time::Duration};

use http::StatusCode;

use super::{
    balance::PickKey,
    log::{Ended, Phase, Record},
    select::{NoServer, Slot, select},
    upstream::{self, Upstream},
};
use crate::{
    config::Backend,
    state::{Seen, counters::Total, unix_millis},
    table::BackendEntry,
};

/// A server slot and a connection to that server.
#[derive(Debug)]
pub(crate) struct Acquired {
    pub(crate) slot: Slot,
    pub(crate) up: Upstream,
}

/// State of one request's search for a server, kept across attempts.
#[derive(Debug)]
pub(crate) struct Attempts<'k> {
    pub(crate) key: PickKey<'k>,
    /// The server a valid persistence cookie names, until a redispatch drops it.
    pub(crate) sticky: Option<usize>,
    /// Skip the pool: a pooled connection just failed.
    pub(crate) fresh_only: bool,
    /// The request can be sent again on another connection (its body, if any, is in hand);
    /// one that cannot only takes pooled connections that pass a liveness probe.
    replayable: bool,
    /// The server a failed connect is retried on.
    retry_on: Option<usize>,
    retries: u32,
    avoid: Option<usize>,
    queued: Duration,
}

impl<'k> Attempts<'k> {
    pub(crate) fn new(key: PickKey<'k>, sticky: Option<usize>, replayable: bool) -> Self {
        Self {
            key,
            sticky,
            fresh_only: false,
            replayable,
            retry_on: None,
            retries: 0,
            avoid: None,
            queued: Duration::ZERO,
        }
    }
}

/// Finds a server and connects to it; on failure the log says why and the status to answer is
/// returned.
pub(crate) async fn acquire(
    bcfg: &Backend,
    bentry: &BackendEntry,
    attempts: &mut Attempts<'_>,
    log: &mut Record,
) -> Result<Acquired, StatusCode> {
    loop {
        log.reached(Phase::Queue);
        let (slot, waited) = match select(
            bcfg,
            bentry,
            attempts.retry_on.or(attempts.sticky),
            attempts.avoid,
            &attempts.key,
        )
        .await
        {
            Ok(found) => found,
            Err(NoServer::NoneUp) => {
                log.end(Ended::ServerAbort, Phase::Connect);
                return Err(StatusCode::SERVICE_UNAVAILABLE);
            }
            Err(NoServer::QueueTimeout) => {
                log.t_queue = Some(attempts.queued + bcfg.timeout_queue);
                log.end(Ended::ServerTimeout, Phase::Queue);
                return Err(StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        attempts.queued += waited;
        log.t_queue = Some(attempts.queued);
        log.reached(Phase::Connect);
        let server = Arc::clone(&slot.server);
        log.set_server(&server.name);
        let connect_started = log.clock();
        let pooled = if attempts.fresh_only {
            None
        } else {
            server.pool.take(!attempts.replayable)
        };
        let connected = match pooled {
            Some(conn) => {
                // Established, as HAProxy's `back_establish` reports a reused connection too.
                server.observer.saw(Seen::Connected);
                Ok(Upstream { conn, reused: true })
            }
            None => {
                let connected = upstream::connect(server.addr, bcfg.timeout_connect).await;
                match &connected {
                    Ok(_) => server.observer.saw(Seen::Connected),
                    Err(error) if error.local_failure().is_some() => {}
                    Err(_) => server.observer.saw(Seen::ConnectFailed),
                }
                connected
            }
        };
        match connected {
            Ok(up) => {
                log.t_connect = connect_started.map(|t| t.elapsed());
                server.counters.totals.session_started(unix_millis());
                return Ok(Acquired { slot, up });
            }
            Err(error) => {
                server.counters.totals.inc(Total::ConnectErrors);
                bentry.state.counters.totals.inc(Total::ConnectErrors);
                let local = error.local_failure();
                match local {
                    Some(e) => crate::net::warn_local_failure(server.addr, e),
                    None => {
                        tracing::debug!(backend = %bcfg.name, server = %server.name, %error, "connect failed");
                    }
                }
                if attempts.retries >= bcfg.retries {
                    // `RC` for a local shortage, as HAProxy logs it; `SC` for the server.
                    let ended = if local.is_some() {
                        Ended::Resource
                    } else {
                        Ended::ServerAbort
                    };
                    log.end(ended, Phase::Connect);
                    return Err(StatusCode::SERVICE_UNAVAILABLE);
                }
                attempts.retries += 1;
                log.retries = attempts.retries;
                server.counters.totals.inc(Total::Retries);
                bentry.state.counters.totals.inc(Total::Retries);
                // HAProxy retries the same server; with `option redispatch` the last retry goes
                // to another one, and a sticky client is not held to a server that refuses
                // connections.
                if bcfg.redispatch
                    && (attempts.retries == bcfg.retries || attempts.sticky.is_some())
                {
                    attempts.avoid = Some(slot.index);
                    attempts.sticky = None;
                    attempts.retry_on = None;
                    log.redispatched = true;
                    server.counters.totals.inc(Total::Redispatches);
                    bentry.state.counters.totals.inc(Total::Redispatches);
                } else {
                    attempts.retry_on = Some(slot.index);
                    // HAProxy's turn-around: a server restarting refuses connections for a
                    // moment, which retries made back to back would all meet. The slot is
                    // freed meanwhile.
                    drop(slot);
                    tokio::time::sleep(turn_around(bcfg.timeout_connect)).await;
                }
            }
        }
    }
}

/// The most a retry on the same server waits after a failed connection (HAProxy's
/// min(`timeout connect`, 1 s)).
const RETRY_TURN_AROUND: std::time::Duration = std::time::Duration::from_secs(1);

/// The wait before a retry on the same server: min(`timeout.connect`, 1 s), where a zero
/// `timeout.connect` is no limit, as HAProxy reads `timeout connect 0`, not no wait: with it,
/// a server refusing connections met every retry back to back.
fn turn_around(connect: std::time::Duration) -> std::time::Duration {
    if connect.is_zero() {
        RETRY_TURN_AROUND
    } else {
        connect.min(RETRY_TURN_AROUND)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // Input: `timeout.connect` of 0 (no limit), 200 ms, 5 s. Output: a turn-around of 1 s,
    // 200 ms and 1 s. (Zero waited nothing, and a refusing server met every retry at once.)
    #[test]
    fn a_retry_waits_the_lesser_of_the_connect_timeout_and_a_second_zero_being_no_limit() {
        assert_eq!(turn_around(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            turn_around(Duration::from_millis(200)),
            Duration::from_millis(200)
        );
        assert_eq!(turn_around(Duration::from_secs(5)), Duration::from_secs(1));
    }
}
