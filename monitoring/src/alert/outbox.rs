//! A sink's way in from the dispatcher. When the sink's queue is full (its receiver down or
//! slow during a storm), the overflow waits here instead of being dropped: the last alert per
//! object, in the order the objects came, handed on as the queue frees up. A dropped recovery
//! would otherwise leave its DOWN standing for good: in Alertmanager's firing set, which the
//! webhook sends again every `resend`, and in the last mail a reader got.

use std::{collections::VecDeque, sync::Arc};

use tokio::sync::mpsc::{self, error::TrySendError};

use super::{event::Alert, metrics::Metrics};

/// Objects whose alerts may wait; past this the newest are dropped and counted.
const MAX_WAITING: usize = 4096;

/// One sink's queue, and what waits for room in it.
#[derive(Debug)]
pub(super) struct Outbox {
    queue: mpsc::Sender<Arc<Alert>>,
    /// At most one alert per object (its flap key), oldest object first.
    waiting: VecDeque<(String, Arc<Alert>)>,
}

impl Outbox {
    pub(super) fn new(queue: mpsc::Sender<Arc<Alert>>) -> Self {
        Self {
            queue,
            waiting: VecDeque::new(),
        }
    }

    /// Hands `alert` to the sink, or keeps it for later (behind what already waits, so that the
    /// sink sees the alerts in order). An older alert for the same object still waiting is
    /// replaced (and counted dropped): only the object's last state matters.
    pub(super) fn offer(&mut self, alert: Arc<Alert>, metrics: &Metrics) {
        self.flush(metrics);
        if !self.waiting.is_empty() {
            self.keep(alert, metrics);
            return;
        }
        match self.queue.try_send(alert) {
            Ok(()) => {}
            Err(TrySendError::Full(alert)) => self.keep(alert, metrics),
            Err(TrySendError::Closed(alert)) => {
                super::dispatch::dropped(metrics, &alert.event, "the sink has stopped");
            }
        }
    }

    /// Hands on what waits, as far as the queue has room. A sink that has stopped takes nothing
    /// more: what waits for it is dropped and counted.
    pub(super) fn flush(&mut self, metrics: &Metrics) {
        while let Some((_, alert)) = self.waiting.front() {
            match self.queue.try_send(Arc::clone(alert)) {
                Ok(()) => {
                    self.waiting.pop_front();
                }
                Err(TrySendError::Full(_)) => return,
                Err(TrySendError::Closed(_)) => {
                    for (_, alert) in self.waiting.drain(..) {
                        super::dispatch::dropped(metrics, &alert.event, "the sink has stopped");
                    }
                    return;
                }
            }
        }
    }

    /// Whether alerts wait for room.
    pub(super) fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// At stop: hands on what waits, waiting for room (the caller bounds the wait), then
    /// closes the queue.
    pub(super) async fn close(mut self) {
        for (_, alert) in self.waiting.drain(..) {
            if self.queue.send(alert).await.is_err() {
                return;
            }
        }
    }

    fn keep(&mut self, alert: Arc<Alert>, metrics: &Metrics) {
        let key = alert.event.flap_key();
        if let Some(slot) = self.waiting.iter_mut().find(|(k, _)| *k == key) {
            let older = std::mem::replace(&mut slot.1, alert);
            super::dispatch::dropped(
                metrics,
                &older.event,
                "a newer state of its object replaced it",
            );
        } else if self.waiting.len() < MAX_WAITING {
            self.waiting.push_back((key, alert));
        } else {
            super::dispatch::dropped(metrics, &alert.event, "a sink's queue is full");
        }
    }
}
