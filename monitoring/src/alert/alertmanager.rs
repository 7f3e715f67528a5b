//! Alerts as Alertmanager takes them (`POST /api/v2/alerts`, a JSON array of `postableAlert`):
//! which alert each event fires or resolves, and the firing set sent again while it lasts.
//!
//! Pairing: a problem fires an alert, and its recovery resolves the alert with the same labels
//! (`endsAt` = the time of the recovery). Firing alerts carry `endsAt` = now + 4 × `resend` and
//! are sent again every `resend`, as Prometheus does, so Alertmanager keeps them firing as long
//! as this node says so, and lets them end by themselves if the node goes away. Events that are
//! not states (conflicts, failed transfers) and VRRP transitions fire with a fixed lifetime and
//! end by themselves. Resolving an alert that Alertmanager never saw firing notifies nobody, so
//! recoveries are always sent, even when the problem was not seen (e.g. before a restart).

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime},
};

use fulcrum_common::UtcTime;
use serde::Serialize;

use super::{
    event::{Alert, Event, SyncEventKind, VolumeEventKind},
    text::Text,
};

/// How long a VRRP transition shows in Alertmanager.
const TRANSITION_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a sync conflict or failed transfer shows.
const INCIDENT_TTL: Duration = Duration::from_secs(60 * 60);

/// Label names and values; sorted, so equal sets compare and hash equal.
pub(super) type Labels = BTreeMap<String, String>;

/// One element of the `postableAlerts` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct PostableAlert {
    pub(super) labels: Labels,
    pub(super) annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt", skip_serializing_if = "Option::is_none")]
    pub(super) starts_at: Option<String>,
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none")]
    pub(super) ends_at: Option<String>,
}

/// What an event does to one Alertmanager alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// A problem that lasts until its recovery.
    Fire,
    /// Something that ends by itself after the given time.
    Notice(Duration),
    Resolve,
}

/// The alerts this node has firing at Alertmanager, with when each started.
#[derive(Debug, Default)]
pub(super) struct Firing {
    alerts: HashMap<Labels, (SystemTime, BTreeMap<String, String>)>,
}

impl Firing {
    /// The array to post for `alert` at `now`, updating the firing set; `resend` is how often
    /// the firing set is sent again (`None`: never, and firing alerts get no `endsAt`).
    pub(super) fn apply(
        &mut self,
        alert: &Alert,
        text: &Text,
        now: SystemTime,
        resend: Option<Duration>,
    ) -> Vec<PostableAlert> {
        let annotations = BTreeMap::from([
            ("summary".to_owned(), text.subject.clone()),
            ("description".to_owned(), text.body.clone()),
        ]);
        effects(&alert.event)
            .into_iter()
            .map(|(effect, labels)| {
                let labels = full_labels(labels, &alert.node);
                match effect {
                    Effect::Fire => {
                        // Still firing: keep when it started, as Alertmanager does.
                        let started = self
                            .alerts
                            .get(&labels)
                            .map_or(alert.time, |(started, _)| *started);
                        self.alerts
                            .insert(labels.clone(), (started, annotations.clone()));
                        PostableAlert {
                            labels,
                            annotations: annotations.clone(),
                            starts_at: Some(rfc3339(started)),
                            ends_at: resend.map(|r| rfc3339(now + r * 4)),
                        }
                    }
                    Effect::Notice(ttl) => PostableAlert {
                        labels,
                        annotations: annotations.clone(),
                        starts_at: Some(rfc3339(alert.time)),
                        ends_at: Some(rfc3339(alert.time + ttl)),
                    },
                    Effect::Resolve => {
                        let started = self.alerts.remove(&labels).map(|(started, _)| started);
                        PostableAlert {
                            labels,
                            annotations: annotations.clone(),
                            starts_at: started.map(rfc3339),
                            ends_at: Some(rfc3339(alert.time.max(started.unwrap_or(alert.time)))),
                        }
                    }
                }
            })
            .collect()
    }

    /// The firing set as it stands at `now`, to be sent again.
    pub(super) fn resend(&self, now: SystemTime, resend: Duration) -> Vec<PostableAlert> {
        self.alerts
            .iter()
            .map(|(labels, (started, annotations))| PostableAlert {
                labels: labels.clone(),
                annotations: annotations.clone(),
                starts_at: Some(rfc3339(*started)),
                ends_at: Some(rfc3339(now + resend * 4)),
            })
            .collect()
    }
}

/// The alerts an event touches: the effect, then `alertname`, `severity` and the object's
/// labels (`instance` is added by the caller).
fn effects(event: &Event) -> Vec<(Effect, Vec<(&'static str, String)>)> {
    let named =
        |name: &'static str, severity: &'static str, mut rest: Vec<(&'static str, String)>| {
            let mut labels = vec![
                ("alertname", name.to_owned()),
                ("severity", severity.to_owned()),
            ];
            labels.append(&mut rest);
            labels
        };
    match event {
        Event::Vrrp {
            instance, state, ..
        } => {
            let object = || vec![("vrrp_instance", instance.clone())];
            let fault = named("FulcrumVrrpFault", "critical", object());
            if state == "FAULT" {
                return vec![(Effect::Fire, fault)];
            }
            let severity = if state == "STOP" { "warning" } else { "info" };
            let mut transition = object();
            transition.push(("state", state.clone()));
            vec![
                (Effect::Resolve, fault),
                (
                    Effect::Notice(TRANSITION_TTL),
                    named("FulcrumVrrpTransition", severity, transition),
                ),
            ]
        }
        Event::Server {
            proxy,
            server,
            state,
            ..
        } => {
            let down = named(
                "FulcrumServerDown",
                "warning",
                vec![("proxy", proxy.clone()), ("server", server.clone())],
            );
            let effect = if state == "DOWN" {
                Effect::Fire
            } else {
                // UP, and the operator's MAINT and DRAIN: the server is no longer failing.
                Effect::Resolve
            };
            vec![(effect, down)]
        }
        Event::Volume { name, kind, .. } => {
            let object = || vec![("volume", name.clone())];
            let disconnected = named("FulcrumVolumeDisconnected", "warning", object());
            let split_brain = named("FulcrumVolumeSplitBrain", "critical", object());
            match kind {
                VolumeEventKind::Disconnected => vec![(Effect::Fire, disconnected)],
                VolumeEventKind::SplitBrain => vec![(Effect::Fire, split_brain)],
                VolumeEventKind::Connected | VolumeEventKind::ResyncDone => vec![
                    (Effect::Resolve, disconnected),
                    (Effect::Resolve, split_brain),
                ],
            }
        }
        Event::Sync {
            name, kind, peer, ..
        } => {
            let object = vec![("sync", name.clone())];
            // Each peer of a set is its own alert: one peer back does not resolve another.
            let mut with_peer = object.clone();
            with_peer.push(("peer", peer.clone().unwrap_or_default()));
            match kind {
                SyncEventKind::PeerLost => {
                    vec![(
                        Effect::Fire,
                        named("FulcrumSyncPeerLost", "warning", with_peer),
                    )]
                }
                SyncEventKind::PeerBack => vec![(
                    Effect::Resolve,
                    named("FulcrumSyncPeerLost", "warning", with_peer),
                )],
                SyncEventKind::Conflict => vec![(
                    Effect::Notice(INCIDENT_TTL),
                    named("FulcrumSyncConflict", "warning", object),
                )],
                SyncEventKind::TransferFailed => vec![(
                    Effect::Notice(INCIDENT_TTL),
                    named("FulcrumSyncTransferFailed", "warning", object),
                )],
            }
        }
    }
}

fn full_labels(labels: Vec<(&'static str, String)>, node: &str) -> Labels {
    labels
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain([("instance".to_owned(), node.to_owned())])
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    UtcTime::from_system(t).rfc3339()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::alert::text::render;

    fn at(secs: u64, event: Event) -> Alert {
        Alert {
            event,
            node: "lb1".into(),
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            suppressed: 0,
        }
    }

    fn server(state: &str) -> Event {
        Event::Server {
            proxy: "www".into(),
            server: "web1".into(),
            addr: None,
            state: state.into(),
            reason: None,
        }
    }

    fn apply(f: &mut Firing, a: &Alert, now: u64) -> Vec<PostableAlert> {
        f.apply(
            a,
            &render(a),
            SystemTime::UNIX_EPOCH + Duration::from_secs(now),
            Some(Duration::from_secs(60)),
        )
    }

    #[test]
    fn down_fires_and_up_resolves_with_the_same_labels() {
        // Input: DOWN at 100s, DOWN again at 130s, UP at 200s.
        // Output: firing from 100s (endsAt now + 4m), then resolved at 200s, same labels.
        let mut f = Firing::default();
        let fired = apply(&mut f, &at(100, server("DOWN")), 100);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].labels["alertname"], "FulcrumServerDown");
        assert_eq!(fired[0].labels["instance"], "lb1");
        assert_eq!(fired[0].starts_at.as_deref(), Some("1970-01-01T00:01:40Z"));
        assert_eq!(fired[0].ends_at.as_deref(), Some("1970-01-01T00:05:40Z"));
        let again = apply(&mut f, &at(130, server("DOWN")), 130);
        assert_eq!(again[0].starts_at, fired[0].starts_at);
        assert_eq!(
            f.resend(SystemTime::UNIX_EPOCH, Duration::from_secs(60))
                .len(),
            1
        );
        let resolved = apply(&mut f, &at(200, server("UP")), 200);
        assert_eq!(resolved[0].labels, fired[0].labels);
        assert_eq!(resolved[0].starts_at, fired[0].starts_at);
        assert_eq!(resolved[0].ends_at.as_deref(), Some("1970-01-01T00:03:20Z"));
        assert!(
            f.resend(SystemTime::UNIX_EPOCH, Duration::from_secs(60))
                .is_empty()
        );
    }

    #[test]
    fn vrrp_faults_pair_and_transitions_expire() {
        let vrrp = |state: &str| Event::Vrrp {
            instance: "VI_1".into(),
            state: state.into(),
            previous: None,
            vips: vec![],
        };
        let mut f = Firing::default();
        let fault = apply(&mut f, &at(10, vrrp("FAULT")), 10);
        assert_eq!(fault[0].labels["alertname"], "FulcrumVrrpFault");
        assert_eq!(fault[0].labels["severity"], "critical");
        let master = apply(&mut f, &at(20, vrrp("MASTER")), 20);
        assert_eq!(master.len(), 2);
        assert_eq!(master[0].labels, fault[0].labels);
        assert_eq!(master[0].ends_at.as_deref(), Some("1970-01-01T00:00:20Z"));
        assert_eq!(master[1].labels["alertname"], "FulcrumVrrpTransition");
        assert_eq!(master[1].labels["state"], "MASTER");
        assert_eq!(master[1].ends_at.as_deref(), Some("1970-01-01T00:05:20Z"));
    }

    // Input: peers A and B of one sync set lost, then B back. Output: B's alert resolved and
    // A's still firing, each with a `peer` label, and the two have flap keys of their own.
    // (They were one alert: B back resolved A's loss, or replaced it in the flap limiter.)
    #[test]
    fn sync_peers_are_lost_and_back_each_on_its_own() {
        let sync = |kind, peer: &str| Event::Sync {
            name: "etc".into(),
            kind,
            detail: String::new(),
            peer: Some(peer.into()),
        };
        let (a, b) = ("10.0.0.2:8730", "10.0.0.3:8730");
        assert_ne!(
            sync(SyncEventKind::PeerLost, a).flap_key(),
            sync(SyncEventKind::PeerBack, b).flap_key()
        );
        let mut f = Firing::default();
        apply(&mut f, &at(1, sync(SyncEventKind::PeerLost, a)), 1);
        apply(&mut f, &at(2, sync(SyncEventKind::PeerLost, b)), 2);
        let back = apply(&mut f, &at(3, sync(SyncEventKind::PeerBack, b)), 3);
        assert_eq!(back[0].labels["peer"], b);
        let firing: Vec<&str> = f.alerts.keys().map(|l| l["peer"].as_str()).collect();
        assert_eq!(firing, [a]);
    }

    #[test]
    fn storage_pairs() {
        let volume = |kind| Event::Volume {
            name: "r0".into(),
            kind,
            detail: None,
        };
        let mut f = Firing::default();
        apply(&mut f, &at(1, volume(VolumeEventKind::SplitBrain)), 1);
        let back = apply(&mut f, &at(2, volume(VolumeEventKind::ResyncDone)), 2);
        assert_eq!(back.len(), 2);
        assert!(back[1].starts_at.is_some(), "the split brain was firing");
        let conflict = apply(
            &mut f,
            &at(
                0,
                Event::Sync {
                    name: "etc".into(),
                    kind: SyncEventKind::Conflict,
                    detail: String::new(),
                    peer: None,
                },
            ),
            0,
        );
        assert_eq!(conflict[0].ends_at.as_deref(), Some("1970-01-01T01:00:00Z"));
    }
}
