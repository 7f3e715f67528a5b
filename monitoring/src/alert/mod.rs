//! Alerts: state changes of VRRP instances, servers, volumes and sync sets, sent by email
//! (keepalived's mail), to webhooks (plain JSON or Alertmanager) and to a command, as
//! keepalived's `smtp_alert` and `notify` scripts did.
//!
//! The binary builds an [`Event`] from each module event and calls [`Alerter::send`], which
//! never waits. Each sink has its own task and queue, so a slow relay delays nobody else; a
//! failed delivery is tried again after `backoff`, 2 × `backoff`, ... up to `tries` times, then
//! given up; all of it is logged (`warn`, with the sink and the error) and counted. Per object,
//! at most `rate_limit.max` alerts go out per `rate_limit.window`; past that the newest state
//! is held and sent when the window allows, saying how many changes it replaced, so the last
//! state always arrives.
//!
//! # Config
//!
//! ```toml
//! [alert]
//! events = ["vrrp", "server", "volume", "sync"]   # default: all
//! email = { smtp = "192.168.60.128:25", from = "fulcrum@example.com", to = ["root@localhost"] }
//! webhooks = [{ url = "http://127.0.0.1:9093/api/v2/alerts", format = "alertmanager" }]  # or "json" (default)
//! command = "/usr/local/bin/send-sms"   # the alert's text on standard input
//! ```
//!
//! Optional keys, with their defaults:
//! - `email`: `tls = "none"` (as keepalived; or `"opportunistic"`: STARTTLS when offered,
//!   `"starttls"`: STARTTLS or fail, `"smtps"`: TLS from the start, port 465 by default), `ca`
//!   (a PEM file of extra CAs for the relay; the system's are always trusted), `user` with
//!   `password` or `password_file` (AUTH, refused unless `tls` is `"starttls"` or `"smtps"`, or
//!   `allow_plain_auth = true`), `timeout = "10s"`. `smtp` is `host`, `host:port` or
//!   `[v6]:port`, port 25 by default.
//! - `webhooks` entries: `timeout = "10s"`, `ca` (as for email, for `https://`), and for
//!   Alertmanager `resend = "1m"` (firing alerts are sent again this often, with `endsAt` 4 ×
//!   `resend` ahead, as Prometheus does; `"0s"`: never). URLs with credentials are refused.
//! - `command_timeout = "30s"`; `rate_limit = { max = 3, window = "5m" }`; `tries = 5`;
//!   `backoff = "1s"`.
//!
//! # Email
//!
//! keepalived's shapes: headers `Date`, `From`, `Subject`, `X-Mailer`, `To`, and
//!
//! ```text
//! [NODE] VRRP Instance VI_1 - Entering MASTER state   => VRRP Instance is now owning VRRP VIPs <=
//! [NODE] VRRP Instance VI_1 - Entering BACKUP state   => VRRP Instance is no longer owning VRRP VIPs <=
//! [NODE] VRRP Instance VI_1 - Entering FAULT state    => VRRP Instance is no longer owning VRRP VIPs <=
//! [NODE] VRRP Instance VI_1 - Stopping                => VRRP Instance stopping <=
//! [NODE] Realserver [10.0.0.1]:tcp:80 of virtual server www - DOWN   => CHECK failed on service : REASON <=
//! [NODE] Realserver [10.0.0.1]:tcp:80 of virtual server www - UP     => CHECK succeed on service <=
//! [NODE] Volume r0 - Disconnected | Connected | Split brain | Resync done
//! [NODE] Sync etc - Peer lost | Peer back | Conflict | Transfer failed
//! ```
//!
//! The body's first line is keepalived's; Fulcrum's details follow after a blank line.
//!
//! # Command
//!
//! Run without a shell (the string is split into words as a shell would), with the same text on
//! standard input (subject, blank line, body) and `FULCRUM_ALERT_NODE`, `_CATEGORY`, `_OBJECT`,
//! `_STATE`, `_FIRING` (`1` for a problem) and `_SUBJECT` in its environment; a non-zero exit
//! or running past `command_timeout` (its process group is then killed) is a failure.
//!
//! # Webhooks, `format = "json"`
//!
//! One object per alert: `node`, `category`, `object` (`VI_1`, `www/web1`, `r0`), `state`,
//! `firing` (true for FAULT, DOWN, Disconnected, SplitBrain, PeerLost, Conflict,
//! TransferFailed), `subject`, `text` (the body), `suppressed`, `time` (RFC 3339), and `event`
//! (the event's own fields).
//!
//! # Alertmanager
//!
//! Every alert has the labels `alertname`, `severity`, `instance` (the node's name) and those
//! of its object; `summary` and `description` annotations hold the mail's subject and body.
//! A recovery resolves its alert with the same labels and `endsAt` = the time of the recovery.
//! Firing alerts carry `endsAt` = now + 4 × `resend` and are sent again every `resend`, as
//! Prometheus does, so they stay firing while this node says so and end by themselves if it
//! goes away. No `generatorURL` is sent.
//!
//! | alertname                   | severity            | labels                   | fires on             | ends                  |
//! |-----------------------------|---------------------|--------------------------|----------------------|-----------------------|
//! | `FulcrumVrrpFault`          | critical            | `vrrp_instance`          | FAULT                | any other state       |
//! | `FulcrumVrrpTransition`     | info; STOP: warning | `vrrp_instance`, `state` | MASTER, BACKUP, STOP | by itself after 5 min |
//! | `FulcrumServerDown`         | warning             | `proxy`, `server`        | DOWN                 | UP, MAINT, DRAIN, REMOVED |
//! | `FulcrumVolumeDisconnected` | warning             | `volume`                 | Disconnected         | Connected, ResyncDone |
//! | `FulcrumVolumeSplitBrain`   | critical            | `volume`                 | SplitBrain           | Connected, ResyncDone |
//! | `FulcrumSyncPeerLost`       | warning             | `sync`, `peer`           | PeerLost             | PeerBack              |
//! | `FulcrumSyncConflict`       | warning             | `sync`                   | Conflict             | by itself after 1 h   |
//! | `FulcrumSyncTransferFailed` | warning             | `sync`                   | TransferFailed       | by itself after 1 h   |
//!
//! # Metrics
//!
//! `fulcrum_alerts_sent_total{sink}`, `fulcrum_alerts_failed_total{sink}` (given up),
//! `fulcrum_alert_retries_total{sink}`, `fulcrum_alerts_suppressed_total` (replaced by a newer
//! state under the flap limit), `fulcrum_alerts_dropped_total` (a full queue, or after stop);
//! `sink` is `email`, `command`, or `webhook0`, `webhook1`, ... in the order of `webhooks`.

mod alertmanager;
mod command;
mod config;
mod dispatch;
mod error;
mod event;
mod http;
mod limit;
mod metrics;
mod outbox;
mod sink;
mod smtp;
mod text;
mod tls;
mod webhook;

pub use config::{
    AlertConfig, AlertSection, CommandConfig, EmailConfig, EmailSection, RateLimit,
    RateLimitSection, Retry, SmtpAuth, SmtpTls, WebhookConfig, WebhookFormat, WebhookSection,
};
pub use dispatch::{AlertSender, Alerter};
pub use event::{Category, Event, SyncEventKind, VolumeEventKind};
pub use http::Endpoint;
