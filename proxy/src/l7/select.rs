//! Picking a server for one request: persistence first, then the backend's balancer among the
//! servers that take new clients (backups only when no active server does), then waiting in the
//! queue while every candidate is at its `max_connections`, up to `timeout queue`.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use super::balance::{Candidate, PickKey};
use crate::{
    config::Backend,
    state::{
        BackendState, Seen, ServerState,
        counters::{Gauge, Total},
    },
    table::BackendEntry,
};

/// How often a request waiting for a server whose limit may grow looks again.
const RELOOK: Duration = Duration::from_secs(1);

/// Why no server could be had; both are a 503 to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoServer {
    /// No server of the backend is UP.
    NoneUp,
    /// Servers are UP but all stayed full for `timeout queue`.
    QueueTimeout,
}

/// A connection slot on a server, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) index: usize,
    pub(crate) server: Arc<ServerState>,
    backend: Arc<BackendState>,
    /// The server's session epoch when the slot was taken, for `shutdown sessions`.
    epoch: u64,
}

impl Slot {
    /// Runs `work` (the request's exchange with the server) unless an operator shuts the
    /// server's sessions down first, which gives `None`.
    pub(crate) async fn unless_shut<F: std::future::Future>(&self, work: F) -> Option<F::Output> {
        // Pinned here, so the select below holds a reference rather than another copy of it.
        let work = std::pin::pin!(work);
        tokio::select! {
            biased;
            out = work => Some(out),
            () = self.server.sessions_shut(self.epoch) => None,
        }
    }

    /// Adds `n` to the backend's and the server's `total` (bytes in or out).
    pub(crate) fn count_bytes(&self, total: Total, n: u64) {
        self.backend.counters.totals.add(total, n);
        self.server.counters.totals.add(total, n);
    }

    /// Counts a response with `status` for the backend and the server.
    pub(crate) fn count_response(&self, status: u16) {
        self.backend.counters.totals.response(status);
        self.server.counters.totals.response(status);
        self.server.observer.saw(Seen::Response(status));
    }

    /// Counts a bad, aborted or timed-out response head, or a malformed body, for the backend
    /// and the server, and for the server's passive check.
    pub(crate) fn count_resp_error(&self) {
        self.count_resp_error_unobserved();
        self.server.observer.saw(Seen::BadResponse);
    }

    /// Counts a response error that passive checks do not hold against the server, as
    /// HAProxy's `health_adjust` does not: a body it cut short or sent too slowly, or a
    /// response the client's HTTP version cannot carry.
    pub(crate) fn count_resp_error_unobserved(&self) {
        self.backend.counters.totals.inc(Total::ResponseErrors);
        self.server.counters.totals.inc(Total::ResponseErrors);
    }

    /// Records a response time for the backend and the server.
    pub(crate) fn observe(&self, elapsed: Duration) {
        self.backend.counters.totals.observe(elapsed);
        self.server.counters.totals.observe(elapsed);
    }

    /// Resolves once an operator shuts the server's sessions down; owns what it needs, for a
    /// response body that outlives the request handler.
    pub(crate) fn shut(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let server = Arc::clone(&self.server);
        let epoch = self.epoch;
        async move { server.sessions_shut(epoch).await }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.server.release_slot();
        self.backend.slot_freed.notify_one();
    }
}

/// Picks a server and takes a slot on it. `sticky` is the server a valid persistence cookie
/// names; `avoid` a server that just failed to connect (redispatch).
pub(crate) async fn select(
    cfg: &Backend,
    entry: &BackendEntry,
    mut sticky: Option<usize>,
    avoid: Option<usize>,
    key: &PickKey<'_>,
) -> Result<(Slot, Duration), NoServer> {
    // Most requests find room at once, and need not register for freed slots (a lock and a
    // waiter list entry each time). One that finds none registers, then looks again below.
    let target = match sticky {
        Some(index) => Target::Server(index),
        None => pick(cfg, entry, avoid, key),
    };
    if let Target::Server(index) = target
        && try_take(cfg, entry, index)
    {
        return Ok((take_slot(entry, index), Duration::ZERO));
    }
    // The clock is read only once the request has to wait.
    let mut started = None;
    let mut deadline = None;
    // Counted in a queue while set; dropped with the request too, when its client goes away
    // while it waits (an HTTP/2 stream reset drops this future).
    let mut queued: Option<InQueue<'_>> = None;
    let result = loop {
        // Register interest before looking, so a slot freed in between is not missed. Boxed,
        // so that a request that turns out to wait for one server drops it at once: it would
        // otherwise take the backend's wake-ups (the oldest waiter gets each) and sit on them,
        // while a request that can take any server slept next to an idle one.
        let mut backend_freed = Some(Box::pin(entry.state.slot_freed.notified()));
        if let Some(freed) = backend_freed.as_mut() {
            freed.as_mut().enable();
        }

        // The sticky server's state changes too: registered before it is looked at.
        let status_changed = sticky.map(|index| entry.servers[index].status_changed.notified());
        tokio::pin!(status_changed);
        if let Some(changed) = status_changed.as_mut().as_pin_mut() {
            changed.enable();
        }
        // A sticky server that went into MAINT or DOWN while this request waited for it no
        // longer gets it: balanced afresh, the request is answered with a new cookie. The
        // wake-up this request may have taken from that server's freed slot is passed on, so
        // the next request waiting there looks again too.
        if let Some(index) = sticky
            && !entry.servers[index].takes_sticky_clients()
        {
            sticky = None;
            entry.servers[index].slot_freed.notify_one();
        }
        let target = match sticky {
            Some(index) => Target::Server(index),
            None => pick(cfg, entry, avoid, key),
        };
        let waiting_on = match target {
            Target::None => break Err(NoServer::NoneUp),
            Target::Server(index) => {
                let server = &entry.servers[index];
                if try_take(cfg, entry, index) {
                    break Ok(index);
                }
                Some(server)
            }
            Target::AllFull => None,
        };
        // As HAProxy counts them: a request that waits for one server (sticky, hashed, or
        // retried there) in that server's queue, one that any server will do in the backend's.
        // A sticky server that goes DOWN hands its requests to the backend's.
        let queue = match waiting_on {
            Some(server) => &server.counters.queue,
            None => &entry.state.counters.queue,
        };
        if !queued.as_ref().is_some_and(|q| q.is(queue)) {
            // Out of the old queue before into the new, so no moment counts it twice.
            drop(queued.take());
            queued = Some(InQueue::enter(queue));
        }
        if started.is_none() {
            let now = Instant::now();
            started = Some(now);
            // Zero `timeout queue` means no limit, as every zero timeout.
            deadline = (!cfg.timeout_queue.is_zero()).then(|| now + cfg.timeout_queue);
        }
        let expiry = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // A limit can grow with no slot freed: a `slow_start` step, an agent's larger
        // `maxconn`. Looked at again every second then (the ramp's steps are a second or
        // more), where HAProxy's warmup hands its queue on at each step.
        let relook = async {
            if cfg.slow_start.is_some() || cfg.agent.is_some() {
                tokio::time::sleep(RELOOK).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let woke = match waiting_on {
            Some(server) => {
                // Dropped unawaited, a wake-up it took passes to the next waiter.
                drop(backend_freed.take());
                let server_freed = server.slot_freed.notified();
                // A hashed request's server too may go DOWN while it waits: picked afresh, it
                // goes to a live one, as HAProxy redistributes a DOWN server's queue.
                let server_changed = server.status_changed.notified();
                let left = async {
                    match status_changed.as_mut().as_pin_mut() {
                        Some(changed) => changed.await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = server_freed => true,
                    () = left => true,
                    () = server_changed => true,
                    () = relook => true,
                    () = expiry => false,
                }
            }
            None => {
                let freed = async {
                    match backend_freed.as_mut() {
                        Some(freed) => freed.await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = freed => true,
                    () = relook => true,
                    () = expiry => false,
                }
            }
        };
        if !woke {
            break Err(NoServer::QueueTimeout);
        }
    };
    drop(queued);
    let index = result?;
    Ok((
        take_slot(entry, index),
        started.map_or(Duration::ZERO, |t| t.elapsed()),
    ))
}

/// A request counted in a queue (its backend's or one server's) until dropped.
struct InQueue<'a>(&'a Gauge);

impl<'a> InQueue<'a> {
    fn enter(queue: &'a Gauge) -> Self {
        queue.up();
        Self(queue)
    }

    fn is(&self, queue: &Gauge) -> bool {
        std::ptr::eq(self.0, queue)
    }
}

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.down();
    }
}

/// The slot just taken on server `index`, counted as load balanced.
fn take_slot(entry: &BackendEntry, index: usize) -> Slot {
    let server = Arc::clone(&entry.servers[index]);
    server.counters.totals.inc(Total::LoadBalanced);
    entry.state.counters.totals.inc(Total::LoadBalanced);
    let epoch = server.sessions_epoch();
    Slot {
        index,
        server,
        backend: Arc::clone(&entry.state),
        epoch,
    }
}

enum Target {
    Server(usize),
    AllFull,
    None,
}

fn pick(cfg: &Backend, entry: &BackendEntry, avoid: Option<usize>, key: &PickKey<'_>) -> Target {
    let mut found = candidates(cfg, entry, false, avoid);
    if found.is_empty() && avoid.is_some() && !candidates(cfg, entry, false, None).is_empty() {
        // The active server avoided is the only one: it is tried again, as HAProxy does,
        // rather than a backup, which takes clients only while no active server can (and
        // whose cookie would then keep the client there).
        return pick(cfg, entry, None, key);
    }
    if found.is_empty() {
        found = candidates_backup(cfg, entry, avoid);
    }
    if found.is_empty() {
        // Redispatching away from the only server left still beats refusing the request.
        return match avoid {
            Some(_) => pick(cfg, entry, None, key),
            None => Target::None,
        };
    }
    match entry.balancer.pick(&found, key) {
        Some(index) => Target::Server(index),
        None => Target::AllFull,
    }
}

/// The candidates of one pick; backends rarely have more servers than fit on the stack.
type Candidates = smallvec::SmallVec<[Candidate; 16]>;

fn candidates_backup(cfg: &Backend, entry: &BackendEntry, avoid: Option<usize>) -> Candidates {
    candidates(cfg, entry, true, avoid)
}

/// The servers of one kind (active or backup) that take new clients now.
fn candidates(
    cfg: &Backend,
    entry: &BackendEntry,
    backup: bool,
    avoid: Option<usize>,
) -> Candidates {
    cfg.servers
        .iter()
        .zip(&entry.servers)
        .enumerate()
        .filter(|(i, (s, state))| {
            s.backup == backup && Some(*i) != avoid && state.takes_new_clients()
        })
        .map(|(index, (s, state))| Candidate {
            index,
            weight: state.weight_now(cfg.slow_start),
            active: state.active(),
            max: state.max_connections_now(s.max_connections, cfg.slow_start),
        })
        .collect()
}

fn try_take(cfg: &Backend, entry: &BackendEntry, index: usize) -> bool {
    let state = &entry.servers[index];
    state.try_take_slot(
        state.max_connections_now(cfg.servers[index].max_connections, cfg.slow_start),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        config::{Sections, build, section::BackendSection},
        state::{AdminState, Registry},
        table::Table,
    };

    fn table(backend: &str) -> Table {
        let section: BackendSection = toml::from_str(backend).unwrap();
        let sections = Sections {
            backend: [("web".to_owned(), section)].into_iter().collect(),
            ..Sections::default()
        };
        Table::build(build(&sections).unwrap(), &Registry::default())
    }

    const TWO: &str = r#"
timeout = { queue = "1s" }
servers = [{ name = "s1", address = "127.0.0.1:1", max_connections = 1 }, { name = "s2", address = "127.0.0.1:2", max_connections = 1 }]
"#;

    #[tokio::test]
    async fn drain_takes_sticky_clients_only_and_maint_takes_none() {
        let t = table(TWO);
        let (cfg, entry) = t.backend(0).unwrap();
        let key = PickKey::default();
        entry.servers[0].set_admin(AdminState::Drain);
        for _ in 0..4 {
            let (slot, _) = select(cfg, entry, None, None, &key).await.unwrap();
            assert_eq!(slot.index, 1, "a draining server gets no new client");
        }
        let (slot, _) = select(cfg, entry, Some(0), None, &key).await.unwrap();
        assert_eq!(slot.index, 0, "a draining server keeps its sticky clients");
        assert!(entry.servers[0].takes_sticky_clients());
        entry.servers[0].set_admin(AdminState::Maint);
        assert!(!entry.servers[0].takes_sticky_clients());
        entry.servers[1].set_admin(AdminState::Maint);
        drop(slot);
        assert_eq!(
            select(cfg, entry, None, None, &key).await.unwrap_err(),
            NoServer::NoneUp
        );
    }

    #[tokio::test(start_paused = true)]
    async fn full_servers_queue_until_a_slot_frees_or_the_queue_times_out() {
        let t = table(TWO);
        let (cfg, entry) = t.backend(0).unwrap();
        let key = PickKey::default();
        let (a, _) = select(cfg, entry, None, None, &key).await.unwrap();
        let (b, _) = select(cfg, entry, None, None, &key).await.unwrap();
        assert_ne!(a.index, b.index);

        // Both full: the next request waits, and gets the slot `a` frees.
        let freed = a.index;
        let waiter = async {
            let (slot, waited) = select(cfg, entry, None, None, &key).await.unwrap();
            (slot.index, waited)
        };
        let release = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(a);
        };
        let ((index, waited), ()) = tokio::join!(waiter, release);
        assert_eq!(index, freed);
        assert_eq!(waited, Duration::from_millis(300));
        assert_eq!(entry.state.counters.queue.get(), 0);

        // Full again (`b` and `_c` held): the next request times out after `timeout queue`.
        let (_c, _) = select(cfg, entry, None, None, &key).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(
            select(cfg, entry, None, None, &key).await.unwrap_err(),
            NoServer::QueueTimeout
        );
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        drop(b);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_dropped_while_queued_leaves_the_queue() {
        let t = table(TWO);
        let (cfg, entry) = t.backend(0).unwrap();
        let key = PickKey::default();
        let _held = [
            select(cfg, entry, None, None, &key).await.unwrap(),
            select(cfg, entry, None, None, &key).await.unwrap(),
        ];
        // Its client goes away (an HTTP/2 stream reset) after 100 ms in the queue.
        let waited = tokio::time::timeout(
            Duration::from_millis(100),
            select(cfg, entry, None, None, &key),
        )
        .await;
        assert!(waited.is_err());
        assert_eq!(entry.state.counters.queue.get(), 0);
    }

    #[tokio::test]
    async fn backups_serve_only_when_no_active_server_is_up() {
        let t = table(
            r#"servers = [{ name = "a", address = "127.0.0.1:1" }, { name = "bk", address = "127.0.0.1:2", backup = true }]"#,
        );
        let (cfg, entry) = t.backend(0).unwrap();
        let key = PickKey::default();
        assert_eq!(
            select(cfg, entry, None, None, &key).await.unwrap().0.index,
            0
        );
        entry.servers[0].set_healthy(false);
        assert_eq!(
            select(cfg, entry, None, None, &key).await.unwrap().0.index,
            1
        );
    }

    // Input: one active server, up, and a backup; a redispatch away from the active server
    // (its connection was refused). Output: the active server is picked again, not the backup.
    // (The backup took the retry, and its cookie then kept the client there while the active
    // server was up.)
    #[tokio::test]
    async fn a_redispatch_from_the_only_active_server_does_not_go_to_a_backup() {
        let t = table(
            r#"servers = [{ name = "a", address = "127.0.0.1:1" }, { name = "bk", address = "127.0.0.1:2", backup = true }]"#,
        );
        let (cfg, entry) = t.backend(0).unwrap();
        let key = PickKey::default();
        assert_eq!(
            select(cfg, entry, None, Some(0), &key)
                .await
                .unwrap()
                .0
                .index,
            0
        );
    }
}
