//! An alert's subject and body, in keepalived's shapes (keepalived's `smtp.c` and
//! `vrrp_notify.c`), so filters written for keepalived's mail keep working:
//!
//! ```text
//! [lb1] VRRP Instance VI_1 - Entering MASTER state
//! => VRRP Instance is now owning VRRP VIPs <=
//!
//! [lb1] Realserver [10.0.0.1]:tcp:80 of virtual server www - DOWN
//! => CHECK failed on service : connection refused <=
//! ```
//!
//! keepalived's mails stop at that one line; ours add what Fulcrum knows beyond it after a
//! blank line (the VIPs, the server's name, the previous state, the suppressed changes).

use std::net::SocketAddr;

use super::event::{Alert, Event, SyncEventKind, VolumeEventKind};

/// A rendered alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Text {
    pub(super) subject: String,
    pub(super) body: String,
}

impl Text {
    /// The form a program reads on standard input: subject, blank line, body.
    pub(super) fn to_message(&self) -> String {
        format!("{}\n\n{}\n", self.subject, self.body)
    }
}

/// The subject and body of `alert`.
pub(super) fn render(alert: &Alert) -> Text {
    let node = &alert.node;
    let mut details = Vec::new();
    let (subject, line) = match &alert.event {
        Event::Vrrp {
            instance,
            state,
            previous,
            vips,
        } => {
            let (what, line) = match state.as_str() {
                "MASTER" => (
                    "Entering MASTER state".to_owned(),
                    "=> VRRP Instance is now owning VRRP VIPs <=".to_owned(),
                ),
                "BACKUP" | "FAULT" => (
                    format!("Entering {state} state"),
                    "=> VRRP Instance is no longer owning VRRP VIPs <=".to_owned(),
                ),
                "STOP" => (
                    "Stopping".to_owned(),
                    "=> VRRP Instance stopping <=".to_owned(),
                ),
                other => (
                    format!("Entering {other} state"),
                    format!("=> VRRP Instance is now {other} <="),
                ),
            };
            if !vips.is_empty() {
                details.push(format!("VIPs: {}", vips.join(", ")));
            }
            if let Some(previous) = previous {
                details.push(format!("Previous state: {previous}"));
            }
            (format!("[{node}] VRRP Instance {instance} - {what}"), line)
        }
        Event::Server {
            proxy,
            server,
            addr,
            state,
            reason,
        } => {
            let rs = addr
                .as_deref()
                .map_or_else(|| server.clone(), keepalived_rs);
            let line = match (state.as_str(), reason) {
                ("UP", _) => "=> CHECK succeed on service <=".to_owned(),
                ("DOWN", Some(reason)) => format!("=> CHECK failed on service : {reason} <="),
                ("DOWN", None) => "=> CHECK failed on service <=".to_owned(),
                ("MAINT", _) => "=> Realserver put in maintenance <=".to_owned(),
                ("DRAIN", _) => "=> Realserver draining: no new connections <=".to_owned(),
                (other, _) => format!("=> Realserver is now {other} <="),
            };
            details.push(format!("Server: {proxy}/{server}"));
            if state != "DOWN"
                && let Some(reason) = reason
            {
                details.push(format!("Reason: {reason}"));
            }
            (
                format!("[{node}] Realserver {rs} of virtual server {proxy} - {state}"),
                line,
            )
        }
        Event::Volume { name, kind, detail } => {
            let (what, line) = match kind {
                VolumeEventKind::Connected => ("Connected", "=> Volume replication link is up <="),
                VolumeEventKind::Disconnected => (
                    "Disconnected",
                    "=> Volume replication link lost: writes are not replicated <=",
                ),
                VolumeEventKind::SplitBrain => (
                    "Split brain",
                    "=> Volume split brain: both nodes wrote, manual resolution needed <=",
                ),
                VolumeEventKind::ResyncDone => ("Resync done", "=> Volume resync done: in sync <="),
            };
            if let Some(detail) = detail {
                details.push(detail.clone());
            }
            (format!("[{node}] Volume {name} - {what}"), line.to_owned())
        }
        Event::Sync {
            name, kind, detail, ..
        } => {
            let (what, line) = match kind {
                SyncEventKind::PeerLost => ("Peer lost", "=> Sync peer unreachable <="),
                SyncEventKind::PeerBack => ("Peer back", "=> Sync peer reachable again <="),
                SyncEventKind::Conflict => ("Conflict", "=> Sync conflict <="),
                SyncEventKind::TransferFailed => ("Transfer failed", "=> Sync transfer failed <="),
            };
            if !detail.is_empty() {
                details.push(detail.clone());
            }
            (format!("[{node}] Sync {name} - {what}"), line.to_owned())
        }
    };
    if alert.suppressed > 0 {
        details.push(format!(
            "{} earlier change(s) of this object were not sent (flap limit); this is the latest.",
            alert.suppressed
        ));
    }
    let mut body = line;
    if !details.is_empty() {
        body.push_str("\n\n");
        body.push_str(&details.join("\n"));
    }
    Text { subject, body }
}

/// keepalived's `[ip]:tcp:port` for a real server; any other address as written.
fn keepalived_rs(addr: &str) -> String {
    match addr.parse::<SocketAddr>() {
        Ok(sa) => format!("[{}]:tcp:{}", sa.ip(), sa.port()),
        Err(_) => addr.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn alert(event: Event) -> Alert {
        Alert {
            event,
            node: "lb1".into(),
            time: SystemTime::UNIX_EPOCH,
            suppressed: 0,
        }
    }

    #[test]
    fn vrrp_in_keepalived_shape() {
        let t = render(&alert(Event::Vrrp {
            instance: "VI_1".into(),
            state: "MASTER".into(),
            previous: Some("BACKUP".into()),
            vips: vec!["192.0.2.10".into()],
        }));
        assert_eq!(
            t.subject,
            "[lb1] VRRP Instance VI_1 - Entering MASTER state"
        );
        assert_eq!(
            t.body,
            "=> VRRP Instance is now owning VRRP VIPs <=\n\nVIPs: 192.0.2.10\nPrevious state: BACKUP"
        );
        let t = render(&alert(Event::Vrrp {
            instance: "VI_1".into(),
            state: "STOP".into(),
            previous: None,
            vips: vec![],
        }));
        assert_eq!(t.subject, "[lb1] VRRP Instance VI_1 - Stopping");
        assert_eq!(t.body, "=> VRRP Instance stopping <=");
        assert_eq!(
            t.to_message(),
            "[lb1] VRRP Instance VI_1 - Stopping\n\n=> VRRP Instance stopping <=\n"
        );
    }

    #[test]
    fn servers_in_keepalived_shape() {
        let mut a = alert(Event::Server {
            proxy: "www".into(),
            server: "web1".into(),
            addr: Some("10.0.0.1:80".into()),
            state: "DOWN".into(),
            reason: Some("connection refused".into()),
        });
        a.suppressed = 2;
        let t = render(&a);
        assert_eq!(
            t.subject,
            "[lb1] Realserver [10.0.0.1]:tcp:80 of virtual server www - DOWN"
        );
        assert!(
            t.body.starts_with(
                "=> CHECK failed on service : connection refused <=\n\nServer: www/web1\n2 earlier"
            ),
            "{}",
            t.body
        );
        let t = render(&alert(Event::Server {
            proxy: "www".into(),
            server: "web1".into(),
            addr: None,
            state: "UP".into(),
            reason: None,
        }));
        assert_eq!(
            t.subject,
            "[lb1] Realserver web1 of virtual server www - UP"
        );
        assert!(t.body.starts_with("=> CHECK succeed on service <="));
        assert_eq!(keepalived_rs("[2001:db8::1]:443"), "[2001:db8::1]:tcp:443");
    }

    #[test]
    fn storage() {
        let t = render(&alert(Event::Volume {
            name: "r0".into(),
            kind: VolumeEventKind::SplitBrain,
            detail: None,
        }));
        assert_eq!(t.subject, "[lb1] Volume r0 - Split brain");
        let t = render(&alert(Event::Sync {
            name: "etc".into(),
            kind: SyncEventKind::TransferFailed,
            detail: "haproxy.cfg: permission denied".into(),
            peer: None,
        }));
        assert_eq!(t.subject, "[lb1] Sync etc - Transfer failed");
        assert!(t.body.ends_with("\n\nhaproxy.cfg: permission denied"));
    }
}
