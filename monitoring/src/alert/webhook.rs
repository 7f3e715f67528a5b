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
    sync::Arc,
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
    firing: Firing,
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
        Ok(Self {
            config,
            tls,
            firing: Firing::default(),
        })
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
            WebhookFormat::Alertmanager => serde_json::to_vec(&self.firing.apply(
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
        let alerts = self.firing.resend(SystemTime::now(), every);
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
}
