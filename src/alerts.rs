//! `[alert]` in this process: the events that cross modules (VRRP transitions, servers going UP
//! or DOWN, volume links, sync peers and conflicts) turned into alerts and handed to the
//! monitoring crate's [`Alerter`], which sends them off the events' path: a slow mail server
//! never delays a failover.

use std::{collections::BTreeSet, sync::Arc};

use fulcrum_monitoring::alert::{
    AlertConfig, AlertSender, Alerter, Event, SyncEventKind, VolumeEventKind,
};
use fulcrum_proxy::Proxy;
use fulcrum_storage::{sync::SyncEvent, volume::VolumeEvent};
use fulcrum_vrrp::{
    fsm::State,
    run::{Vrrp, VrrpEvent, state_name},
};
use tokio::{
    sync::{
        broadcast::{self, error::RecvError},
        watch,
    },
    task::JoinSet,
};

use crate::{syncs::Syncs, volumes::Volumes};

/// The alerter of `[alert]` and the tasks feeding it, one per event source, with the config it
/// runs; `None` inside without `[alert]`.
#[derive(Debug, Default)]
pub(crate) struct Alerts(Option<Running>);

#[derive(Debug)]
struct Running {
    config: AlertConfig,
    alerter: Alerter,
    feeds: JoinSet<()>,
    /// Tells the feeds to take what their sources have sent so far, then end.
    stop_feeds: watch::Sender<bool>,
}

/// Where the events come from.
#[derive(Clone, Copy)]
pub(crate) struct Sources<'a> {
    pub(crate) proxy: &'a Arc<Proxy>,
    pub(crate) vrrp: Option<&'a Vrrp>,
    pub(crate) volumes: &'a Volumes,
    pub(crate) syncs: &'a Syncs,
    pub(crate) node: &'a str,
    pub(crate) registry: &'a prometheus::Registry,
}

impl Alerts {
    /// Starts the alerter of `config` and subscribes to every source now, so no event after
    /// start is missed; VRRP's events come from `vrrp_events` if given, a receiver subscribed
    /// before the instances started, and those of the volumes and sets in `started` from their
    /// own start, so that their first changes are not missed either.
    pub(crate) fn start(
        config: Option<AlertConfig>,
        sources: Sources<'_>,
        started: Started,
        vrrp_events: Option<broadcast::Receiver<VrrpEvent>>,
    ) -> Self {
        let Some(config) = config else {
            return Self(None);
        };
        let alerter = Alerter::start(config.clone(), sources.node.to_owned(), sources.registry);
        let (stop_feeds, stopping) = watch::channel(false);
        let feeds = subscribe(&alerter.sender(), &stopping, sources, started, vrrp_events);
        tracing::info!(categories = ?config.events, "alerts ready");
        Self(Some(Running {
            config,
            alerter,
            feeds,
            stop_feeds,
        }))
    }

    /// Follows a reload: a changed `[alert]` starts a new alerter before the old one flushes
    /// and stops, so no event falls between them (one in the overlap may go out twice). An
    /// unchanged one keeps running and follows the sync sets and volumes the reload `started`,
    /// and VRRP when the reload started it; a stopped set's, volume's or VRRP's feed ends with
    /// its events. `vrrp` holds VRRP's events from before the reload changed it, so
    /// that a new alerter has the changes a rebuild or a start made.
    pub(crate) async fn follow(
        &mut self,
        config: Option<AlertConfig>,
        sources: Sources<'_>,
        started: Started,
        vrrp: VrrpFeed,
    ) {
        if self.0.as_ref().map(|r| &r.config) == config.as_ref() {
            if let Some(running) = &mut self.0 {
                // The feeds of sets the reload stopped have ended: reaped here, not kept until
                // the alerts stop.
                while running.feeds.try_join_next().is_some() {}
                let stopping = running.stop_feeds.subscribe();
                let mut feeds = Feeds {
                    tasks: std::mem::take(&mut running.feeds),
                    sender: &running.alerter.sender(),
                    stopping: &stopping,
                };
                add_syncs(&mut feeds, started.syncs);
                add_volumes(&mut feeds, started.volumes);
                // A running VRRP has its feed already.
                if let (Some(_), Some(events)) = (sources.vrrp, vrrp.started) {
                    add_vrrp(&mut feeds, events);
                }
                running.feeds = feeds.tasks;
            }
            return;
        }
        let events = vrrp.started.or(vrrp.before);
        let old = std::mem::replace(self, Self::start(config, sources, started, events));
        old.stop().await;
    }

    /// Takes the events the sources have sent so far (the VRRP transitions of a shutdown
    /// included), then lets the alerter deliver what is queued within its deadline.
    pub(crate) async fn stop(self) {
        if let Some(running) = self.0 {
            let _ = running.stop_feeds.send(true);
            running.feeds.join_all().await;
            running.alerter.stop().await;
        }
    }
}

/// What a reload started, whose feeds are new: the events of each sync set and volume, by
/// name, subscribed as each started. A reload goes on for seconds after a set starts (VRRP's
/// rebuild waits for notify scripts), and a set's catch-up with its peer may find conflicts in
/// that time.
#[derive(Debug, Default)]
pub(crate) struct Started {
    pub(crate) syncs: Vec<(String, broadcast::Receiver<SyncEvent>)>,
    pub(crate) volumes: Vec<(String, broadcast::Receiver<VolumeEvent>)>,
    /// The proxy's events from its start on, at start-up: a server that fails its first check
    /// while the rest of the appliance starts is alerted too.
    pub(crate) proxy: Option<broadcast::Receiver<fulcrum_proxy::Event>>,
}

/// VRRP's events around a reload, each subscribed before the instances could change.
#[derive(Debug, Default)]
pub(crate) struct VrrpFeed {
    /// From the VRRP that ran before the reload (a rebuild keeps its sender).
    pub(crate) before: Option<broadcast::Receiver<VrrpEvent>>,
    /// From a VRRP the reload started.
    pub(crate) started: Option<broadcast::Receiver<VrrpEvent>>,
}

/// One task per event source, converting its events to alerts for `sender`.
fn subscribe(
    sender: &AlertSender,
    stopping: &watch::Receiver<bool>,
    sources: Sources<'_>,
    started: Started,
    vrrp_events: Option<broadcast::Receiver<VrrpEvent>>,
) -> JoinSet<()> {
    let mut feeds = Feeds {
        tasks: JoinSet::new(),
        sender,
        stopping,
    };
    let proxy = Arc::clone(sources.proxy);
    let mut down = BTreeSet::new();
    let events = started.proxy.unwrap_or_else(|| sources.proxy.subscribe());
    feeds.add(events, move |event| proxy_events(&proxy, &mut down, event));
    if let Some(vrrp) = sources.vrrp {
        add_vrrp(&mut feeds, vrrp_events.unwrap_or_else(|| vrrp.subscribe()));
    }
    add_volumes(
        &mut feeds,
        since_start(sources.volumes.subscribe(), started.volumes),
    );
    add_syncs(
        &mut feeds,
        since_start(sources.syncs.subscribe(), started.syncs),
    );
    feeds.tasks
}

/// The receivers of `now`, each replaced by the one of `started` of the same name: subscribed
/// when its source started, it holds what the source sent since.
fn since_start<T>(
    now: Vec<(String, broadcast::Receiver<T>)>,
    mut started: Vec<(String, broadcast::Receiver<T>)>,
) -> Vec<(String, broadcast::Receiver<T>)> {
    let older: Vec<_> = now
        .into_iter()
        .filter(|(name, _)| !started.iter().any(|(s, _)| s == name))
        .collect();
    started.extend(older);
    started
}

/// The feed of VRRP's state changes.
fn add_vrrp(feeds: &mut Feeds<'_>, events: broadcast::Receiver<VrrpEvent>) {
    feeds.add(events, |event| Some(vrrp_event(event)));
}

/// A feed for each volume's events.
fn add_volumes(feeds: &mut Feeds<'_>, volumes: Vec<(String, broadcast::Receiver<VolumeEvent>)>) {
    for (name, events) in volumes {
        feeds.add(events, move |event| volume_event(&name, event));
    }
}

/// A feed for each sync set's events.
fn add_syncs(feeds: &mut Feeds<'_>, sets: Vec<(String, broadcast::Receiver<SyncEvent>)>) {
    for (name, events) in sets {
        feeds.add(events, move |event| Some(sync_event(&name, event)));
    }
}

/// The feed tasks being spawned, and what each gets.
struct Feeds<'a> {
    tasks: JoinSet<()>,
    sender: &'a AlertSender,
    stopping: &'a watch::Receiver<bool>,
}

impl Feeds<'_> {
    /// Spawns a task forwarding `events`, converted by `convert`, to the alerter.
    fn add<T, F, A>(&mut self, mut events: broadcast::Receiver<T>, mut convert: F)
    where
        T: Clone + Send + 'static,
        F: FnMut(T) -> A + Send + 'static,
        A: IntoIterator<Item = Event>,
    {
        let sender = self.sender.clone();
        let mut stopping = self.stopping.clone();
        let mut forward = move |event| {
            for alert in convert(event) {
                sender.send(alert);
            }
        };
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    // Events first: those sent before the stop are all forwarded.
                    biased;
                    received = events.recv() => match received {
                        Ok(event) => forward(event),
                        // Only a burst of thousands of events lags a receiver; the states
                        // that follow still arrive, so the last word on each object is right.
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "alerts fell behind the events; some were skipped");
                        }
                        Err(RecvError::Closed) => return,
                    },
                    _ = stopping.changed() => {
                        while let Ok(event) = events.try_recv() {
                            forward(event);
                        }
                        return;
                    }
                }
            }
        });
    }
}

/// The alerts of one of the proxy's events: a server's new status; and after a reload, a
/// `REMOVED` for each server last reported DOWN that the reload took away, which resolves its
/// alert instead of leaving it firing for good. `down` holds the servers last reported DOWN.
fn proxy_events(
    proxy: &Proxy,
    down: &mut BTreeSet<(String, String)>,
    event: fulcrum_proxy::Event,
) -> Vec<Event> {
    if let fulcrum_proxy::Event::Reloaded = event {
        let present: BTreeSet<(String, String)> = proxy
            .stats()
            .into_iter()
            .flat_map(|p| {
                let name = p.name;
                p.rows
                    .into_iter()
                    .map(move |row| (name.clone(), row.svname))
            })
            .collect();
        let gone: Vec<_> = down.difference(&present).cloned().collect();
        return gone
            .into_iter()
            .map(|(backend, server)| {
                down.remove(&(backend.clone(), server.clone()));
                Event::Server {
                    proxy: backend,
                    server,
                    addr: None,
                    state: "REMOVED".to_owned(),
                    reason: Some("removed from the configuration by a reload".to_owned()),
                }
            })
            .collect();
    }
    let Some(event) = server_event(proxy, event) else {
        return Vec::new();
    };
    if let Event::Server {
        proxy,
        server,
        state,
        ..
    } = &event
    {
        let key = (proxy.clone(), server.clone());
        if state == "DOWN" {
            down.insert(key);
        } else {
            down.remove(&key);
        }
    }
    vec![event]
}

fn server_event(proxy: &Proxy, event: fulcrum_proxy::Event) -> Option<Event> {
    let fulcrum_proxy::Event::ServerStatus {
        backend,
        server,
        to,
        reason,
        ..
    } = event
    else {
        return None;
    };
    // The address, for keepalived's "Realserver [ip]:port" subject, from the stats rows.
    let addr = proxy
        .stats()
        .into_iter()
        .filter(|p| p.name == backend)
        .flat_map(|p| p.rows)
        .find(|row| row.svname == server)
        .and_then(|row| row.addr);
    Some(Event::Server {
        proxy: backend,
        server,
        addr,
        state: to.to_string(),
        reason: (!reason.is_empty()).then_some(reason),
    })
}

fn vrrp_event(event: VrrpEvent) -> Event {
    // keepalived's notify_stop and its "Stopping" mail: the instance left for good.
    let state = match event.to {
        State::Initialize => "STOP",
        to => state_name(to),
    };
    Event::Vrrp {
        instance: event.instance,
        state: state.to_owned(),
        previous: Some(state_name(event.from).to_owned()),
        vips: event.virtual_ips,
    }
}

fn volume_event(name: &str, event: VolumeEvent) -> Option<Event> {
    let kind = match event {
        VolumeEvent::Connected => VolumeEventKind::Connected,
        VolumeEvent::Disconnected => VolumeEventKind::Disconnected,
        VolumeEvent::SplitBrain => VolumeEventKind::SplitBrain,
        VolumeEvent::ResyncDone => VolumeEventKind::ResyncDone,
        // A refused peer never connects, so its Disconnected-free silence would hide it: say
        // so as a link problem. Detaching a failed disk loses the local copy: the same, and so
        // does an incomplete resync.
        VolumeEvent::AuthRefused => {
            return Some(Event::Volume {
                name: name.to_owned(),
                kind: VolumeEventKind::Disconnected,
                detail: Some(
                    "the peer failed authentication (check shared_secret on both nodes)".to_owned(),
                ),
            });
        }
        VolumeEvent::Detached => {
            return Some(Event::Volume {
                name: name.to_owned(),
                kind: VolumeEventKind::Disconnected,
                detail: Some(
                    "the local disk failed and was detached; I/O goes to the peer".to_owned(),
                ),
            });
        }
        // No second good copy either, until a later resync: a warning, as a lost link is.
        VolumeEvent::ResyncIncomplete(bytes) => {
            return Some(Event::Volume {
                name: name.to_owned(),
                kind: VolumeEventKind::Disconnected,
                detail: Some(format!(
                    "the resync ended with {bytes} bytes that could not be copied (a disk failed them); the SyncTarget stays Inconsistent until a later resync"
                )),
            });
        }
        VolumeEvent::ResyncStarted | VolumeEvent::RoleChanged(_) | VolumeEvent::IoError => {
            return None;
        }
    };
    Some(Event::Volume {
        name: name.to_owned(),
        kind,
        detail: None,
    })
}

fn sync_event(name: &str, event: SyncEvent) -> Event {
    let peer = match &event {
        SyncEvent::PeerConnected { addr, .. } | SyncEvent::PeerLost { addr } => {
            Some(addr.to_string())
        }
        _ => None,
    };
    let (kind, detail) = match event {
        SyncEvent::Conflict { path, kept_as } => (
            SyncEventKind::Conflict,
            match kept_as {
                Some(kept) => {
                    format!("{path}: both nodes changed it; this node's version kept as {kept}")
                }
                None => format!("{path}: both nodes changed it; this node's version won"),
            },
        ),
        SyncEvent::PeerConnected { addr, node } => (
            SyncEventKind::PeerBack,
            format!("peer {node} ({addr}) connected"),
        ),
        SyncEvent::PeerLost { addr } => (SyncEventKind::PeerLost, format!("peer {addr} lost")),
        SyncEvent::TransferFailed { path, error, .. } => {
            (SyncEventKind::TransferFailed, format!("{path}: {error}"))
        }
    };
    Event::Sync {
        name: name.to_owned(),
        kind,
        detail,
        peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_resync_is_a_warning_naming_what_was_left() {
        let event = volume_event("r0", VolumeEvent::ResyncIncomplete(4096));
        let Some(Event::Volume { name, kind, detail }) = event else {
            panic!("no volume alert: {event:?}");
        };
        assert_eq!((name.as_str(), kind), ("r0", VolumeEventKind::Disconnected));
        assert!(
            detail.is_some_and(|d| d.contains("4096 bytes") && d.contains("Inconsistent")),
            "the detail says what is left"
        );
    }
}
