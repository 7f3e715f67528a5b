//! The webhook sink: POSTs each alert as one plain JSON object (`format = "json"`) or as
//! Alertmanager's alert array (`format = "alertmanager"`, see [`super::alertmanager`]).
//!
//! The plain object:
//!
//! ```json
//! {"node": "lb1", "category": "server", "object": "www/web1", "state": "DOWN", "firing": true,
//!  "subject": "[lb1] Realserver ... - DOWN", "text": "=> CHECK failed ... <=", "suppressed": 0,
//!  "time": "2025-01-31T10:00:00Z", "event": {"category": "server", "proxy": "www", ...}}
//! ```

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use fulcrum_common::UtcTime;
use serde::Serialize;

use super::{
    alertmanager::Firing,
    config::{WebhookConfig, WebhookFormat},
    error::DeliveryError,
    event::{Alert, Event},
    http,
    sink::Deliver,
    text, tls,
};

/// One webhook receiver.
pub(super) struct Webhook {
    config: WebhookConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// What is firing at this receiver: shared with the sink a reload replaces (see
    /// [`firing_at`]).
    firing: Arc<Mutex<Firing>>,
}

/// The firing sets of the Alertmanager receivers, by URL, while a sink holds one.
static FIRING: Mutex<BTreeMap<String, Weak<Mutex<Firing>>>> = Mutex::new(BTreeMap::new());

/// The firing set of the receiver at `url`: the one a running sink for it holds, or a new one.
/// A reload that changes `[alert]` starts new sinks before it stops the old: without it, the
/// new sink would not know what fires, never send those alerts again, and Alertmanager would
/// resolve them at their `endsAt` while the problem went on.
fn firing_at(url: &str) -> Arc<Mutex<Firing>> {
    let mut all = FIRING.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|_, firing| firing.strong_count() > 0);
    if let Some(firing) = all.get(url).and_then(Weak::upgrade) {
        return firing;
    }
    let firing = Arc::new(Mutex::new(Firing::default()));
    all.insert(url.to_owned(), Arc::downgrade(&firing));
    firing
}

impl Webhook {
    /// The sink for `config`; fails only if an `https://` receiver has no usable CA.
    pub(super) fn new(config: WebhookConfig) -> Result<Self, DeliveryError> {
        let tls = if config.endpoint.https {
            Some(
                tls::client_config(config.ca_pem.as_deref()).map_err(|reason| {
                    DeliveryError::Tls {
                        host: config.endpoint.host.clone(),
                        reason,
                    }
                })?,
            )
        } else {
            None
        };
        let firing = firing_at(&config.endpoint.url);
        Ok(Self {
            config,
            tls,
            firing,
        })
    }
}

impl Webhook {
    fn firing(&self) -> std::sync::MutexGuard<'_, Firing> {
        self.firing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Deliver for Webhook {
    type Payload = Bytes;

    fn prepare(&mut self, alert: &Alert) -> Result<Bytes, DeliveryError> {
        let text = text::render(alert);
        let body = match self.config.format {
            WebhookFormat::Json => serde_json::to_vec(&Plain {
                node: &alert.node,
                category: alert.event.category().name(),
                object: alert.event.object(),
                state: alert.event.state(),
                firing: alert.event.is_problem(),
                subject: &text.subject,
                text: &text.body,
                suppressed: alert.suppressed,
                time: UtcTime::from_system(alert.time).rfc3339(),
                event: &alert.event,
            }),
            WebhookFormat::Alertmanager => serde_json::to_vec(&self.firing().apply(
                alert,
                &text,
                SystemTime::now(),
                self.config.resend,
            )),
        };
        // Serialising strings and maps of strings cannot fail.
        Ok(body.map(Bytes::from).unwrap_or_default())
    }

    async fn deliver(&self, body: &Bytes) -> Result<(), DeliveryError> {
        http::post_json(
            &self.config.endpoint,
            self.tls.as_ref(),
            body.clone(),
            self.config.timeout,
        )
        .await
    }

    fn resend_every(&self) -> Option<Duration> {
        match self.config.format {
            WebhookFormat::Alertmanager => self.config.resend,
            WebhookFormat::Json => None,
        }
    }

    fn resend_payload(&mut self) -> Option<Bytes> {
        let every = self.resend_every()?;
        let alerts = self.firing().resend(SystemTime::now(), every);
        if alerts.is_empty() {
            return None;
        }
        serde_json::to_vec(&alerts).ok().map(Bytes::from)
    }
}

/// The `format = "json"` body.
#[derive(Serialize)]
struct Plain<'a> {
    node: &'a str,
    category: &'static str,
    object: String,
    state: &'a str,
    firing: bool,
    subject: &'a str,
    text: &'a str,
    suppressed: u32,
    time: String,
    event: &'a Event,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::alert::{Endpoint, SyncEventKind};

    #[test]
    fn plain_json() {
        let mut w = Webhook::new(WebhookConfig {
            endpoint: Endpoint::parse("http://127.0.0.1:1/").unwrap(),
            format: WebhookFormat::Json,
            timeout: Duration::from_secs(1),
            resend: None,
            ca_pem: None,
        })
        .unwrap();
        let body = w
            .prepare(&Alert {
                event: Event::Sync {
                    name: "etc".into(),
                    kind: SyncEventKind::PeerLost,
                    detail: "lb2 unreachable".into(),
                    peer: None,
                },
                node: "lb1".into(),
                time: SystemTime::UNIX_EPOCH,
                suppressed: 1,
            })
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["node"], "lb1");
        assert_eq!(v["category"], "sync");
        assert_eq!(v["state"], "PeerLost");
        assert_eq!(v["firing"], true);
        assert_eq!(v["subject"], "[lb1] Sync etc - Peer lost");
        assert_eq!(v["time"], "1970-01-01T00:00:00Z");
        assert_eq!(v["event"]["kind"], "PeerLost");
        assert_eq!(v["event"]["detail"], "lb2 unreachable");
        assert_eq!(w.resend_every(), None);
    }

    // Input: an Alertmanager sink that sent a DOWN, then a second sink for the same receiver
    // started beside it, as a reload that changes `[alert]` starts one. Output: the new sink
    // sends the DOWN again at its next resend. (It started with nothing firing, sent nothing
    // again, and Alertmanager resolved the alert at its endsAt while the server was down.)
    #[test]
    fn a_sink_started_by_a_reload_knows_what_fires() {
        let config = || WebhookConfig {
            endpoint: Endpoint::parse("http://127.0.0.1:2/reload-handover").unwrap(),
            format: WebhookFormat::Alertmanager,
            timeout: Duration::from_secs(1),
            resend: Some(Duration::from_secs(60)),
            ca_pem: None,
        };
        let mut old = Webhook::new(config()).unwrap();
        let down = Alert {
            event: Event::Server {
                proxy: "www".into(),
                server: "web1".into(),
                addr: None,
                state: "DOWN".into(),
                reason: None,
            },
            node: "lb1".into(),
            time: SystemTime::now(),
            suppressed: 0,
        };
        old.prepare(&down).unwrap();
        let mut new = Webhook::new(config()).unwrap();
        drop(old);
        let resent = new.resend_payload().expect("the DOWN is sent again");
        let v: serde_json::Value = serde_json::from_slice(&resent).unwrap();
        assert_eq!(v[0]["labels"]["alertname"], "FulcrumServerDown", "{v}");
    }
}
