//! A sink's worker: one task per sink, so a slow mail relay never holds up a webhook. It
//! delivers its queue in order (a resolve never overtakes its firing), tries each alert again
//! with a doubling wait, then gives it up, logging and counting every outcome.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, sleep, sleep_until},
};

use super::{config::Retry, error::DeliveryError, event::Alert, metrics::Metrics};

/// Alerts waiting for one sink; past this the dispatcher drops and counts them.
pub(super) const QUEUE: usize = 256;

/// The longest wait between two tries: doubling from `backoff` 19 times would reach days, with
/// the sink's whole queue held behind the one alert.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

/// The wait after `wait`: twice as long, up to [`MAX_RETRY_WAIT`].
fn next_wait(wait: Duration) -> Duration {
    wait.saturating_mul(2).min(MAX_RETRY_WAIT)
}

/// What a sink does with an alert.
pub(super) trait Deliver: Send + 'static {
    /// The alert as this sink sends it, built once for every try.
    type Payload: Send + Sync + 'static;

    fn prepare(&mut self, alert: &Alert) -> Result<Self::Payload, DeliveryError>;

    fn deliver(
        &self,
        payload: &Self::Payload,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// How often [`Self::resend_payload`] is sent, for sinks that repeat themselves.
    fn resend_every(&self) -> Option<Duration> {
        None
    }

    /// What to send again now, if anything.
    fn resend_payload(&mut self) -> Option<Self::Payload> {
        None
    }
}

/// Starts `sink`'s worker; it ends once the returned sender is dropped and its queue is done.
pub(super) fn spawn<S: Deliver>(
    sink: S,
    name: String,
    retry: Retry,
    metrics: Metrics,
) -> (mpsc::Sender<Arc<Alert>>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(sink, name, rx, retry, metrics));
    (tx, task)
}

async fn run<S: Deliver>(
    mut sink: S,
    name: String,
    mut queue: mpsc::Receiver<Arc<Alert>>,
    retry: Retry,
    metrics: Metrics,
) {
    let mut next_resend = sink.resend_every().map(|every| Instant::now() + every);
    loop {
        tokio::select! {
            biased;
            alert = queue.recv() => match alert {
                Some(alert) => deliver(&mut sink, &name, &alert, retry, &metrics).await,
                None => break,
            },
            () = sleep_until(next_resend.unwrap_or_else(Instant::now)), if next_resend.is_some() => {
                if let Some(payload) = sink.resend_payload()
                    && let Err(error) = sink.deliver(&payload).await
                {
                    // The next resend repairs this one; nothing to retry.
                    tracing::warn!(sink = %name, %error, "alert resend failed");
                }
                next_resend = sink.resend_every().map(|every| Instant::now() + every);
            }
        }
    }
}

/// Delivers one alert, trying again while the error allows and tries remain.
async fn deliver<S: Deliver>(
    sink: &mut S,
    name: &str,
    alert: &Alert,
    retry: Retry,
    metrics: &Metrics,
) {
    let object = alert.event.object();
    let state = alert.event.state().to_owned();
    let payload = match sink.prepare(alert) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::warn!(sink = %name, %object, %state, %error, "alert given up");
            metrics.failed.with_label_values(&[name]).inc();
            return;
        }
    };
    let mut wait = retry.backoff.min(MAX_RETRY_WAIT);
    for attempt in 1..=retry.tries.max(1) {
        match sink.deliver(&payload).await {
            Ok(()) => {
                tracing::debug!(sink = %name, %object, %state, attempt, "alert sent");
                metrics.sent.with_label_values(&[name]).inc();
                return;
            }
            Err(error) if error.is_retryable() && attempt < retry.tries => {
                tracing::warn!(sink = %name, %object, %state, attempt, %error, retry_in = ?wait, "alert delivery failed");
                metrics.retries.with_label_values(&[name]).inc();
                sleep(wait).await;
                wait = next_wait(wait);
            }
            Err(error) => {
                tracing::warn!(sink = %name, %object, %state, attempts = attempt, %error, "alert given up");
                metrics.failed.with_label_values(&[name]).inc();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: the waits from a 1 s backoff over 20 tries. Output: 1, 2, 4 ... 256 s, then 300 s
    // each. (The 19th wait was 2^18 s, three days.)
    #[test]
    fn retry_waits_double_up_to_five_minutes() {
        let mut wait = Duration::from_secs(1);
        let mut waits = vec![wait];
        for _ in 2..20 {
            wait = next_wait(wait);
            waits.push(wait);
        }
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs[..9], [1, 2, 4, 8, 16, 32, 64, 128, 256]);
        assert!(secs[9..].iter().all(|&s| s == 300), "{secs:?}");
    }
}
