//! Sync nodes in one test process: configs on 127.0.0.1 with listeners bound first (port 0),
//! roots and state dirs in temporary directories (on /dev/shm when there is one), tree
//! comparison and polling.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fulcrum_storage::sync::config::{ConflictPolicy, Direction, SharedSecret, SyncConfig};
use fulcrum_storage::sync::proto::{
    self, AUTH_LABEL, FLAG_SENDS, Hello, Message, ProtoError, ProtoReader, ProtoWriter,
};
use fulcrum_storage::sync::watch::TEMP_PREFIX;
use fulcrum_storage::sync::{SyncOptions, SyncSet, SyncStatus};
use fulcrum_storage::volume::peer::{OwnChallenges, Side, authenticate_labelled};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub(crate) const SET: &str = "uploads";
pub(crate) const SECRET: &str = "correct horse battery staple";

/// The `listen` a raw peer claims: it sorts below any node's, so the node expects it to dial.
pub(crate) const RAW_PEER_LISTEN: &str = "127.0.0.1:1";

/// A temporary directory, in memory when possible.
pub(crate) fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("fulcrum-sync-")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// Sets `path`'s mtime, as `touch -d` does.
pub(crate) fn set_mtime(path: &Path, mtime: std::time::SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// The mtime of `path` (following a symlink).
pub(crate) fn mtime(path: &Path) -> std::time::SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

/// The owner and group of `path` (not followed).
pub(crate) fn owner(path: &Path) -> (u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

/// One node: its root, state dir, address and config.
pub(crate) struct Node {
    pub(crate) name: String,
    _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) state: PathBuf,
    pub(crate) addr: SocketAddr,
    pub(crate) config: SyncConfig,
    listener: Option<TcpListener>,
}

impl Node {
    /// A node bound to a free port; peers are set by [`nodes`].
    pub(crate) fn new(name: &str) -> Self {
        let dir = temp_dir();
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        fs::create_dir_all(&root).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = SyncConfig {
            name: SET.to_owned(),
            path: root.clone(),
            listen: addr,
            peers: Vec::new(),
            shared_secret: SharedSecret::new(SECRET),
            direction: Direction::Both,
            exclude: Vec::new(),
            delay: Duration::from_millis(20),
            conflict: ConflictPolicy::NewestWins,
            delete: true,
            delete_retention: None,
            owners: true,
            tls: None,
        };
        Self {
            name: name.to_owned(),
            _dir: dir,
            root,
            state,
            addr,
            config,
            listener: Some(listener),
        }
    }

    pub(crate) async fn start(&mut self) -> SyncSet {
        self.start_with(SyncOptions::default()).await
    }

    /// Starts the node and waits for its start-up scan, as most tests expect of a started
    /// node (a stop during the scan would stop it short).
    pub(crate) async fn start_with(&mut self, options: SyncOptions) -> SyncSet {
        let set = self.start_scanning(options).await;
        let scanned = wait_for(Duration::from_secs(30), || set.status().scan.is_none()).await;
        assert!(
            scanned.is_some(),
            "{}'s start-up scan never ended",
            self.name
        );
        set
    }

    /// Starts the node: `SyncSet::start_with` returns before the start-up scan is done.
    pub(crate) async fn start_scanning(&mut self, mut options: SyncOptions) -> SyncSet {
        let listener = match self.listener.take() {
            Some(listener) => listener,
            None => TcpListener::bind(self.addr).unwrap(),
        };
        options.listener = Some(listener);
        SyncSet::start_with(self.config.clone(), &self.state, &self.name, options)
            .await
            .unwrap()
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub(crate) fn write(&self, rel: &str, content: &[u8]) {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, content).unwrap();
    }

    /// Writes `rel` as an upload handler should: elsewhere, then renamed into place, so that
    /// the watcher never sees it half-written.
    pub(crate) fn write_atomic(&self, rel: &str, content: &[u8]) {
        let staging = self.state.join("staging");
        fs::create_dir_all(self.state.as_path()).unwrap();
        fs::write(&staging, content).unwrap();
        fs::rename(&staging, self.path(rel)).unwrap();
    }
}

/// A node (not started) whose only peer is the raw peer of [`raw_peer`].
pub(crate) fn node_for_raw_peer(name: &str) -> Node {
    let mut node = Node::new(name);
    node.config.peers = vec![RAW_PEER_LISTEN.parse().unwrap()];
    node
}

/// Nodes "a" and "b", each the other's peer, both started with `options()`; A is connected.
pub(crate) async fn started_pair_with(
    options: impl Fn() -> SyncOptions,
) -> (Vec<Node>, SyncSet, SyncSet) {
    let mut n = nodes(&["a", "b"]);
    let a = n[0].start_with(options()).await;
    let b = n[1].start_with(options()).await;
    connected(&a, Duration::from_secs(5)).await;
    (n, a, b)
}

/// [`started_pair_with`] the default options.
pub(crate) async fn started_pair() -> (Vec<Node>, SyncSet, SyncSet) {
    started_pair_with(SyncOptions::default).await
}

/// Stops both sets, each without error.
pub(crate) async fn stop_both(a: SyncSet, b: SyncSet) {
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// One end of the sync protocol, driven by hand.
pub(crate) type Reader = ProtoReader<OwnedReadHalf>;
pub(crate) type Writer = ProtoWriter<OwnedWriteHalf>;

/// Authenticates `stream` as `side` with [`SECRET`] (5 s at most) and splits it into the
/// protocol's reader and writer.
pub(crate) async fn authenticated(mut stream: TcpStream, side: Side) -> (Reader, Writer) {
    authenticate_labelled(
        &mut stream,
        SECRET.as_bytes(),
        AUTH_LABEL,
        side,
        Duration::from_secs(5),
        &OwnChallenges::of("raw peer"),
    )
    .await
    .unwrap();
    let (r, w) = stream.into_split();
    (ProtoReader::new(r), ProtoWriter::new(w))
}

/// A Hello for [`SET`] from `node`, which sends.
pub(crate) fn hello(node: &str, listen: String, index_id: u64) -> Message {
    Message::Hello(Hello {
        version: proto::VERSION,
        set: SET.to_owned(),
        node: node.to_owned(),
        listen,
        index_id,
        flags: FLAG_SENDS,
    })
}

/// A raw peer "evil" (index id 7, listening on [`RAW_PEER_LISTEN`]) connected to `node`:
/// authenticated, its Hello sent and `node`'s Hello received.
pub(crate) async fn raw_peer(node: &Node) -> (Reader, Writer) {
    let stream = TcpStream::connect(node.addr).await.unwrap();
    let (mut reader, mut writer) = authenticated(stream, Side::Connecting).await;
    writer
        .send(&hello("evil", RAW_PEER_LISTEN.to_owned(), 7))
        .await
        .unwrap();
    assert!(matches!(reader.next().await, Ok(Some(Message::Hello(_)))));
    (reader, writer)
}

/// The next message from `reader`, which must come within `limit`.
pub(crate) async fn next_within(
    reader: &mut Reader,
    limit: Duration,
) -> Result<Option<Message>, ProtoError> {
    tokio::time::timeout(limit, reader.next()).await.unwrap()
}

/// `n` nodes, each the others' peer.
pub(crate) fn nodes(names: &[&str]) -> Vec<Node> {
    let mut nodes: Vec<Node> = names.iter().map(|n| Node::new(n)).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    for node in &mut nodes {
        node.config.peers = addrs.iter().copied().filter(|a| *a != node.addr).collect();
    }
    nodes
}

/// What a tree holds, for comparison: per path its kind, owner and group, mode, and for files
/// the SHA-256 and mtime, for symlinks the target and the link's own mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Dir {
        owner: (u32, u32),
        mode: u32,
    },
    File {
        owner: (u32, u32),
        mode: u32,
        mtime_ns: i64,
        sha256: Vec<u8>,
    },
    Link {
        owner: (u32, u32),
        target: PathBuf,
        mtime_ns: i64,
    },
}

pub(crate) fn tree(root: &Path) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    walk(root, "", &mut |child, path, meta| {
        let mode = meta.mode() & 0o7777;
        let owner = (meta.uid(), meta.gid());
        if meta.is_dir() {
            out.insert(child, Item::Dir { owner, mode });
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(path).unwrap_or_default();
            let mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
            out.insert(
                child,
                Item::Link {
                    owner,
                    target,
                    mtime_ns,
                },
            );
        } else if let Ok(content) = fs::read(path) {
            let sha256 = ring::digest::digest(&ring::digest::SHA256, &content)
                .as_ref()
                .to_vec();
            let mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
            out.insert(
                child,
                Item::File {
                    owner,
                    mode,
                    mtime_ns,
                    sha256,
                },
            );
        }
    });
    out
}

/// Calls `visit` with the path relative to the root, the path and the metadata (not followed)
/// of every entry below `dir` (at `rel`) but the watcher's temporaries, a directory before
/// what it holds.
fn walk(dir: &Path, rel: &str, visit: &mut impl FnMut(String, &Path, &fs::Metadata)) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        visit(child.clone(), &entry.path(), &meta);
        if meta.is_dir() {
            walk(&entry.path(), &child, visit);
        }
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns how long it took.
pub(crate) async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `set` counts at least `files` files received, and returns its count. The count
/// goes up just after the rename that shows a file, so a test that has seen the file's
/// content may read the count a moment early.
pub(crate) async fn wait_received(set: &SyncSet, files: u64) -> u64 {
    let received = || set.status().counters.files_received;
    let waited = wait_for(Duration::from_secs(10), || received() >= files).await;
    assert!(
        waited.is_some(),
        "{} of {files} files counted received",
        received()
    );
    received()
}

/// A tree by stat only (kind, size, mode, mtime, owner and group): cheap enough to poll.
type Stat = (bool, u64, u32, i64, (u32, u32));

fn stat_tree(root: &Path) -> BTreeMap<String, Stat> {
    let mut out = BTreeMap::new();
    walk(root, "", &mut |child, _, meta| {
        let (size, mtime) = if meta.is_file() {
            (meta.len(), meta.mtime() * 1_000_000_000 + meta.mtime_nsec())
        } else {
            (0, 0)
        };
        let owner = (meta.uid(), meta.gid());
        out.insert(
            child,
            (meta.is_dir(), size, meta.mode() & 0o7777, mtime, owner),
        );
    });
    out
}

/// Waits until both trees are the same (polled by stat, then checked by content hashes);
/// panics with the difference after `limit`.
pub(crate) async fn converge(a: &Node, b: &Node, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let remaining = limit.saturating_sub(start.elapsed());
        let same_stat = wait_for(remaining, || stat_tree(&a.root) == stat_tree(&b.root)).await;
        let (ta, tb) = (tree(&a.root), tree(&b.root));
        if same_stat.is_some() && ta == tb {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            let only_a: Vec<_> = ta
                .iter()
                .filter(|(k, v)| tb.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            let only_b: Vec<_> = tb
                .iter()
                .filter(|(k, v)| ta.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            panic!(
                "{} and {} did not converge in {limit:?}: differing on {}: {only_a:?}; on {}: {only_b:?}",
                a.name, b.name, a.name, b.name
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every peer of `set` is connected.
pub(crate) async fn connected(set: &SyncSet, limit: Duration) {
    let ok = wait_for(limit, || {
        let status: SyncStatus = set.status();
        status.peers.iter().all(|p| p.connected)
    })
    .await;
    assert!(ok.is_some(), "not connected: {:?}", set.status());
}
