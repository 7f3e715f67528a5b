//! Two volumes of one pair in one test process: configs on loopback with free ports, temp
//! directories for state and backing, and waits on their status.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fulcrum_storage::volume::config::VolumeConfig;
use fulcrum_storage::volume::config::{
    Backing, BackingKind, IoErrorPolicy, NbdConfig, SharedSecret, SplitBrainPolicies,
};
use fulcrum_storage::volume::{ConnState, Protocol, Role, Volume, VolumeEvent, VolumeStatus};
use tokio::sync::broadcast;

pub(crate) const NAME: &str = "r0";

/// A free port on a loopback address of this test process's own (127.X.Y.Z, from its pid and
/// a count), bound and released. Each node of a pair must know the other's address before
/// either starts, so the port is freed before the volume binds it again; on 127.0.0.1 another
/// test took it in between now and then (EADDRINUSE in 2 of 96 runs 24 at a time). No other
/// process binds this address, nor picks it as a source for its connections.
pub(crate) fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU8, Ordering};
    static COUNT: AtomicU8 = AtomicU8::new(0);
    let pid = std::process::id();
    let ip = std::net::Ipv4Addr::new(
        127,
        1 + (pid >> 8) as u8 % 254,
        pid as u8,
        1 + COUNT.fetch_add(1, Ordering::Relaxed) % 254,
    );
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    listener.local_addr().unwrap()
}

/// One node's directories and config.
pub(crate) struct Node {
    pub(crate) name: &'static str,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: VolumeConfig,
}

impl Node {
    pub(crate) fn backing(&self) -> PathBuf {
        self.config.backing.path.clone()
    }

    pub(crate) fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) async fn start(&self) -> Volume {
        Volume::start(self.config.clone(), self.state_dir(), self.name)
            .await
            .unwrap()
    }
}

/// Two nodes configured as peers: `a` listens on the lower port (it dials).
pub(crate) fn pair(size: u64, protocol: Protocol, a_role: Role) -> (Node, Node) {
    let (mut x, mut y) = (free_addr(), free_addr());
    if y < x {
        std::mem::swap(&mut x, &mut y);
    }
    let node = |name: &'static str, listen, peer, role| {
        let dir = tempfile::tempdir().unwrap();
        let config = VolumeConfig {
            name: NAME.to_owned(),
            backing: Backing {
                path: dir.path().join("backing.img"),
                kind: BackingKind::NewFile,
                size,
            },
            protocol,
            listen,
            peer,
            shared_secret: SharedSecret::new("s3cret"),
            role,
            follow_vrrp: None,
            nbd: Some(NbdConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                export: NAME.to_owned(),
            }),
            after_split_brain: SplitBrainPolicies::default(),
            on_io_error: IoErrorPolicy::Detach,
            resync_rate: None,
            timeout: Duration::from_secs(2),
            connect_interval: Duration::from_millis(100),
            ping_interval: Duration::from_millis(500),
            checksum_resync: false,
            direct_io: true,
            al_extents: fulcrum_storage::volume::meta::activity_log::DEFAULT_EXTENTS,
        };
        Node { name, dir, config }
    };
    (node("a", x, y, a_role), node("b", y, x, Role::Secondary))
}

/// Waits (up to 8 s) until `check` holds for the volume's status.
pub(crate) async fn wait_for(volume: &Volume, what: &str, check: impl Fn(&VolumeStatus) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let status = volume.status();
        if check(&status) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}: {status:#?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (up to 8 s) for the event that ends a resync: `ResyncDone` or `ResyncIncomplete`.
/// The status shows the resync over just before the event is sent, so a test that waited on
/// the status may still have to wait for the event.
pub(crate) async fn resync_end(events: &mut broadcast::Receiver<VolumeEvent>) -> VolumeEvent {
    let end = async {
        loop {
            match events.recv().await {
                Ok(event @ (VolumeEvent::ResyncDone | VolumeEvent::ResyncIncomplete(_))) => {
                    return event;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the volume stopped"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(8), end)
        .await
        .expect("timed out waiting for the end of the resync")
}

/// Waits until the volume is Connected and in sync (no resync running).
pub(crate) async fn wait_connected(volume: &Volume) {
    wait_for(volume, "Connected", |s| {
        s.connection == ConnState::Connected && s.resync.is_none()
    })
    .await;
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Overwrites `data` at `offset` in a backing file behind its volume's back (a disk that
/// silently changed).
pub(crate) fn overwrite(path: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(data, offset).unwrap();
    file.sync_all().unwrap();
}

/// Asserts two backing files are byte-identical, reporting the first difference.
pub(crate) fn assert_same_files(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(x.len(), y.len(), "sizes differ");
    if let Some(i) = x.iter().zip(&y).position(|(p, q)| p != q) {
        panic!(
            "backing files differ first at byte {i} (block {})",
            i / 4096
        );
    }
}
