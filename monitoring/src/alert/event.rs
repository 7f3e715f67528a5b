//! What an alert is about: the state changes the modules report, as plain data the binary builds
//! from its module events, and the few facts every sink asks of them (category, object, state,
//! whether it is a problem).

use std::time::SystemTime;

use serde::Serialize;

/// A state change worth telling an operator about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "category", rename_all = "lowercase")]
pub enum Event {
    /// A VRRP instance changed state.
    Vrrp {
        instance: String,
        /// `MASTER`, `BACKUP`, `FAULT` or `STOP`, as keepalived names them.
        state: String,
        previous: Option<String>,
        /// The instance's virtual addresses, for the text.
        vips: Vec<String>,
    },
    /// A proxy's server changed state.
    Server {
        proxy: String,
        server: String,
        /// `ip:port` (or `host:port`) when known.
        addr: Option<String>,
        /// `UP`, `DOWN`, `MAINT` or `DRAIN`, as HAProxy names them.
        state: String,
        /// Why, e.g. the failed check's message.
        reason: Option<String>,
    },
    /// A replicated volume's link changed.
    Volume {
        name: String,
        kind: VolumeEventKind,
        detail: Option<String>,
    },
    /// A directory sync set's peer or transfer changed.
    Sync {
        name: String,
        kind: SyncEventKind,
        detail: String,
        /// The peer a PeerLost or PeerBack is about (its configured address): each peer of a
        /// set is lost and back on its own.
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
    },
}

/// What happened to a replicated volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum VolumeEventKind {
    Connected,
    Disconnected,
    SplitBrain,
    ResyncDone,
}

/// What happened to a directory sync set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SyncEventKind {
    PeerLost,
    PeerBack,
    Conflict,
    TransferFailed,
}

/// The `events` categories of `[alert]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Vrrp,
    Server,
    Volume,
    Sync,
}

impl Category {
    /// Every category, in the order the docs list them.
    pub const ALL: [Self; 4] = [Self::Vrrp, Self::Server, Self::Volume, Self::Sync];

    /// The name users write in `events`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vrrp => "vrrp",
            Self::Server => "server",
            Self::Volume => "volume",
            Self::Sync => "sync",
        }
    }

    /// The category named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl Event {
    /// Which `events` entry lets this event through.
    pub fn category(&self) -> Category {
        match self {
            Self::Vrrp { .. } => Category::Vrrp,
            Self::Server { .. } => Category::Server,
            Self::Volume { .. } => Category::Volume,
            Self::Sync { .. } => Category::Sync,
        }
    }

    /// The object the event is about, as operators name it: `VI_1`, `www/web1`, `r0`.
    pub fn object(&self) -> String {
        match self {
            Self::Vrrp { instance, .. } => instance.clone(),
            Self::Server { proxy, server, .. } => format!("{proxy}/{server}"),
            Self::Volume { name, .. } | Self::Sync { name, .. } => name.clone(),
        }
    }

    /// The new state, one word: `MASTER`, `DOWN`, `SplitBrain`, `PeerLost`.
    pub fn state(&self) -> &str {
        match self {
            Self::Vrrp { state, .. } | Self::Server { state, .. } => state,
            Self::Volume { kind, .. } => match kind {
                VolumeEventKind::Connected => "Connected",
                VolumeEventKind::Disconnected => "Disconnected",
                VolumeEventKind::SplitBrain => "SplitBrain",
                VolumeEventKind::ResyncDone => "ResyncDone",
            },
            Self::Sync { kind, .. } => match kind {
                SyncEventKind::PeerLost => "PeerLost",
                SyncEventKind::PeerBack => "PeerBack",
                SyncEventKind::Conflict => "Conflict",
                SyncEventKind::TransferFailed => "TransferFailed",
            },
        }
    }

    /// True when the new state is a problem someone should act on (the JSON's `firing`).
    pub fn is_problem(&self) -> bool {
        match self {
            Self::Vrrp { state, .. } => state == "FAULT",
            Self::Server { state, .. } => state == "DOWN",
            Self::Volume { kind, .. } => matches!(
                kind,
                VolumeEventKind::Disconnected | VolumeEventKind::SplitBrain
            ),
            Self::Sync { kind, .. } => kind != &SyncEventKind::PeerBack,
        }
    }

    /// The flap limiter's key: events with the same key are successive states of one thing, so
    /// the last one tells the whole story. Conflicts and transfer failures are not states, so
    /// they get keys of their own, and a burst of them cannot hide a lost peer.
    pub(super) fn flap_key(&self) -> String {
        let kind = match self {
            Self::Vrrp { .. } => "vrrp",
            Self::Server { .. } => "server",
            Self::Volume { .. } => "volume",
            Self::Sync { kind, peer, .. } => match kind {
                SyncEventKind::PeerLost | SyncEventKind::PeerBack => {
                    let peer = peer.as_deref().unwrap_or_default();
                    return format!("sync:{}:{peer}", self.object());
                }
                SyncEventKind::Conflict => "sync-conflict",
                SyncEventKind::TransferFailed => "sync-transfer",
            },
        };
        format!("{kind}:{}", self.object())
    }
}

/// An event on its way to the sinks: who saw it, when, and how many changes of the same object
/// the flap limiter held back before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Alert {
    pub(super) event: Event,
    /// The node's name (keepalived's `router_id`).
    pub(super) node: String,
    pub(super) time: SystemTime,
    pub(super) suppressed: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(state: &str) -> Event {
        Event::Server {
            proxy: "www".into(),
            server: "web1".into(),
            addr: None,
            state: state.into(),
            reason: None,
        }
    }

    #[test]
    fn categories_round_trip_their_names() {
        for c in Category::ALL {
            assert_eq!(Category::from_name(c.name()), Some(c));
        }
        assert_eq!(Category::from_name("disk"), None);
    }

    #[test]
    fn problems_and_keys() {
        assert!(server("DOWN").is_problem());
        assert!(!server("MAINT").is_problem());
        assert_eq!(server("UP").flap_key(), "server:www/web1");
        let conflict = Event::Sync {
            name: "etc".into(),
            kind: SyncEventKind::Conflict,
            detail: String::new(),
            peer: None,
        };
        assert!(conflict.is_problem());
        assert_eq!(conflict.flap_key(), "sync-conflict:etc");
        assert_eq!(conflict.state(), "Conflict");
    }
}
