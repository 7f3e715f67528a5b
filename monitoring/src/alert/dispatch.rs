//! The alerter: takes events from the modules without ever making them wait, filters them by
//! category, passes them through the flap limiter, and hands each alert to every sink's own
//! queue; on stop, flushes what is queued and held, within a deadline.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use prometheus::Registry;
use tokio::{
    sync::{mpsc, oneshot},
    task::{AbortHandle, JoinHandle},
    time::{Instant, sleep_until},
};

use super::{
    command::Command,
    config::AlertConfig,
    error::DeliveryError,
    event::{Alert, Category, Event},
    limit::FlapLimiter,
    metrics::Metrics,
    outbox::Outbox,
    sink::{self, Deliver},
    smtp::Email,
    webhook::Webhook,
};

/// Events waiting for the dispatcher; past this `send` drops and counts them.
const QUEUE: usize = 1024;
/// How long [`Alerter::stop`] waits for the last alerts to go out.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// The running alerter. Dropping it stops the dispatch as [`Alerter::stop`] does, without
/// waiting for the deliveries.
#[derive(Debug)]
pub struct Alerter {
    sender: AlertSender,
    stop: oneshot::Sender<()>,
    dispatcher: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
}

/// A cheap handle for sending events, for modules that run apart from the alerter's owner.
#[derive(Debug, Clone)]
pub struct AlertSender {
    queue: mpsc::Sender<(Event, SystemTime)>,
    events: Vec<Category>,
    metrics: Metrics,
}

impl AlertSender {
    /// Queues `event` if its category is alerted on. Never waits: with the queue full (a storm
    /// the sinks cannot keep up with) or the alerter stopped, the event is dropped and counted.
    pub fn send(&self, event: Event) {
        if !self.events.contains(&event.category()) {
            return;
        }
        if let Err(error) = self.queue.try_send((event, SystemTime::now())) {
            let (event, _) = match error {
                mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
            };
            dropped(&self.metrics, &event, "the alert queue is full or stopped");
        }
    }
}

impl Alerter {
    /// Starts the dispatcher and one worker per sink on the current Tokio runtime, and
    /// registers the alert metrics in `registry`. `node` names this node in every alert
    /// (keepalived's `router_id`). A sink that cannot be set up is logged, and its alerts are
    /// counted as failed.
    pub fn start(config: AlertConfig, node: String, registry: &Registry) -> Self {
        let metrics = Metrics::register(registry);
        let retry = config.retry;
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        let mut add = |(queue, worker)| {
            queues.push(queue);
            workers.push(worker);
        };
        if let Some(email) = &config.email {
            add(match Email::new(email) {
                Ok(sink) => sink::spawn(sink, "email".to_owned(), retry, metrics.clone()),
                Err(e) => unusable("email", &e, retry, &metrics),
            });
        }
        for (i, webhook) in config.webhooks.into_iter().enumerate() {
            let name = format!("webhook{i}");
            add(match Webhook::new(webhook) {
                Ok(sink) => sink::spawn(sink, name, retry, metrics.clone()),
                Err(e) => unusable(&name, &e, retry, &metrics),
            });
        }
        if let Some(command) = config.command {
            add(sink::spawn(
                Command::new(command),
                "command".to_owned(),
                retry,
                metrics.clone(),
            ));
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        let limiter = FlapLimiter::new(config.rate_limit.max, config.rate_limit.window);
        let dispatcher = tokio::spawn(dispatch(
            rx,
            stopped,
            limiter,
            node,
            queues,
            metrics.clone(),
        ));
        Self {
            sender: AlertSender {
                queue: tx,
                events: config.events,
                metrics,
            },
            stop,
            dispatcher,
            workers,
        }
    }

    /// Queues `event`; see [`AlertSender::send`].
    pub fn send(&self, event: Event) {
        self.sender.send(event);
    }

    /// A handle that sends to this alerter.
    pub fn sender(&self) -> AlertSender {
        self.sender.clone()
    }

    /// Stops taking events and delivers what is queued or held by the flap limiter (the last
    /// states, such as a VRRP STOP), giving up on what is not delivered within 5s.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let aborts: Vec<AbortHandle> = std::iter::once(&self.dispatcher)
            .chain(&self.workers)
            .map(JoinHandle::abort_handle)
            .collect();
        let all = async {
            let _ = self.dispatcher.await;
            for worker in self.workers {
                let _ = worker.await;
            }
        };
        if tokio::time::timeout(STOP_DEADLINE, all).await.is_err() {
            tracing::warn!(deadline = ?STOP_DEADLINE, "alerts still being delivered at stop were abandoned");
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

/// How often alerts waiting for room in a sink's queue are handed on again.
const OUTBOX_RETRY: Duration = Duration::from_millis(50);

/// Counts a dropped alert, logging the 1st, 2nd, 4th, 8th... so a storm cannot flood the log.
pub(super) fn dropped(metrics: &Metrics, event: &Event, why: &'static str) {
    metrics.dropped.inc();
    let total = metrics.dropped.get();
    if total.is_power_of_two() {
        tracing::warn!(object = %event.object(), state = %event.state(), %why, total, "alert dropped");
    }
}

/// Starts a worker whose every alert fails with why its sink could not be set up.
fn unusable(
    name: &str,
    error: &DeliveryError,
    retry: super::config::Retry,
    metrics: &Metrics,
) -> (mpsc::Sender<Arc<Alert>>, JoinHandle<()>) {
    tracing::error!(sink = %name, %error, "alert sink unusable");
    sink::spawn(
        Unusable(error.to_string()),
        name.to_owned(),
        retry,
        metrics.clone(),
    )
}

struct Unusable(String);

impl Deliver for Unusable {
    type Payload = ();

    fn prepare(&mut self, _: &Alert) -> Result<(), DeliveryError> {
        Err(DeliveryError::Unusable(self.0.clone()))
    }

    async fn deliver(&self, (): &()) -> Result<(), DeliveryError> {
        Err(DeliveryError::Unusable(self.0.clone()))
    }
}

/// The dispatcher task.
async fn dispatch(
    mut events: mpsc::Receiver<(Event, SystemTime)>,
    mut stop: oneshot::Receiver<()>,
    mut limiter: FlapLimiter<(Event, SystemTime)>,
    node: String,
    sinks: Vec<mpsc::Sender<Arc<Alert>>>,
    metrics: Metrics,
) {
    let mut outboxes: Vec<Outbox> = sinks.into_iter().map(Outbox::new).collect();
    let fan_out = |outboxes: &mut [Outbox], item: (Event, SystemTime), suppressed: u32| {
        let (event, time) = item;
        let alert = Arc::new(Alert {
            event,
            node: node.clone(),
            time,
            suppressed,
        });
        for outbox in outboxes {
            outbox.offer(Arc::clone(&alert), &metrics);
        }
    };
    let offer =
        |limiter: &mut FlapLimiter<_>, outboxes: &mut [Outbox], item: (Event, SystemTime)| {
            let key = item.0.flap_key();
            let offered = limiter.offer(Instant::now(), key, item);
            if offered.replaced {
                metrics.suppressed.inc();
            }
            if let Some(r) = offered.released {
                fan_out(outboxes, r.item, r.suppressed);
            }
        };
    loop {
        let deadline = limiter.next_deadline();
        let waiting = outboxes.iter().any(Outbox::is_waiting);
        tokio::select! {
            biased;
            _ = &mut stop => break,
            event = events.recv() => match event {
                Some(item) => offer(&mut limiter, &mut outboxes, item),
                None => break,
            },
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                for r in limiter.due(Instant::now()) {
                    fan_out(&mut outboxes, r.item, r.suppressed);
                }
            }
            () = tokio::time::sleep(OUTBOX_RETRY), if waiting => {
                for outbox in &mut outboxes {
                    outbox.flush(&metrics);
                }
            }
        }
    }
    // Stopping: what was sent before the stop still goes out, through the limiter; then
    // everything held, since the last states matter more than the limit.
    events.close();
    while let Ok(item) = events.try_recv() {
        offer(&mut limiter, &mut outboxes, item);
    }
    for r in limiter.drain() {
        fan_out(&mut outboxes, r.item, r.suppressed);
    }
    // What still waits for room is handed on as the workers take it, all sinks at once (one
    // stuck on a hung receiver must not hold the others' back), within part of the stop's
    // deadline, so that the workers have the rest to deliver it.
    let mut closing = tokio::task::JoinSet::new();
    for outbox in outboxes {
        closing.spawn(outbox.close());
    }
    // Past the deadline, dropping the set aborts what is left, which closes those queues.
    let _ = tokio::time::timeout(STOP_DEADLINE / 2, closing.join_all()).await;
    // Dropping the outboxes closes the queues: each worker ends once its queue is delivered.
}
