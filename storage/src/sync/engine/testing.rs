//! For the engine's unit tests: a [`Shared`] over a scratch root, without sockets, watcher or
//! tasks, so that one part (the file server, the fetcher, the index sender) can be driven by
//! hand through its channels.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{Peer, PeerState, Shared, link, staging::Staging, status::Counters};
use crate::sync::{
    config::{ConflictPolicy, Direction, SharedSecret, SyncConfig},
    index::{Index, Rehash},
};

/// A set "t" of node "a" over `root` (scanned into its index, saved in `state`), with one peer.
pub(super) fn shared(root: &Path, state: &Path) -> Arc<Shared> {
    let root = root.canonicalize().unwrap();
    let mut index = Index::new("a").unwrap();
    index.scan(&root, &[], Rehash::IfChanged).unwrap();
    index.save(state).unwrap();
    let config = SyncConfig {
        name: "t".to_owned(),
        path: root.clone(),
        listen: "127.0.0.1:1".parse().unwrap(),
        peers: vec!["127.0.0.1:2".parse().unwrap()],
        shared_secret: SharedSecret::new("s"),
        direction: Direction::default(),
        exclude: Vec::new(),
        delay: Duration::from_millis(10),
        conflict: ConflictPolicy::NewestWins,
        delete: true,
        delete_retention: None,
        owners: false,
        tls: None,
    };
    let (changed, _) = watch::channel(index.published());
    let (events, _) = broadcast::channel(16);
    Arc::new(Shared {
        loaded_sequence: index.sequence(),
        staging: Staging::open(&root),
        root,
        node: "a".to_owned(),
        index_dir: state.to_path_buf(),
        index: Mutex::new(index),
        changed,
        unsaved: tokio::sync::Notify::new(),
        counters: Counters::default(),
        events,
        peers: vec![Peer {
            addr: config.peers[0],
            state: Mutex::new(PeerState::default()),
        }],
        cancel: CancellationToken::new(),
        disk_work: tokio_util::task::TaskTracker::new(),
        timeout: Duration::from_secs(5),
        keepalive: Duration::from_secs(10),
        peer_timeout: Duration::from_secs(30),
        parked_retry: Duration::from_secs(30),
        refusals: link::Throttle::new(link::WARN_EVERY),
        challenges: crate::volume::peer::OwnChallenges::of("testing"),
        scan: crate::sync::index::ScanProgress::default(),
        // Scanned above.
        scanning: std::sync::atomic::AtomicBool::new(false),
        scan_failed: Mutex::new(None),
        touched: super::touched::TouchedDirs::default(),
        config,
    })
}
