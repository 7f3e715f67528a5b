//! Why a volume operation failed: the operator's request was refused (and why), or local
//! storage failed.

use std::io;
use std::path::PathBuf;

use super::status::ConnState;
use crate::volume::meta::MetaError;
use crate::volume::peer::DiskState;

/// A volume operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The backing file or device could not be opened, created or used.
    #[error("backing {}: {source}", path.display())]
    Backing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The metadata in `state_dir` failed (it names its file).
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    /// The metadata was made for a volume of another size.
    #[error("metadata is for {meta} bytes, the backing is {backing} bytes")]
    SizeMismatch { meta: u64, backing: u64 },
    /// A listener could not be bound (replication or NBD).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Promotion refused: the local copy is not UpToDate (use `force` to take it anyway).
    #[error("local disk is {0:?}, not UpToDate")]
    NotUpToDate(DiskState),
    /// Promotion refused: the peer is primary.
    #[error("the peer is primary")]
    PeerPrimary,
    /// Promotion refused while this node is receiving a resync.
    #[error("a resync into this node is running")]
    SyncTarget,
    /// Online verify needs a Connected peer (not StandAlone, connecting or resyncing).
    #[error("the peer is not connected in sync (connection {0}): verify needs Connected")]
    NotConnected(ConnState),
    /// Online verify needs the peer's disk UpToDate (`None`: not known).
    #[error("the peer's disk is {0:?}, not UpToDate")]
    PeerNotUpToDate(Option<DiskState>),
    /// Another online verify of this volume is running.
    #[error("an online verify of this volume is already running")]
    VerifyRunning,
    /// The connection was lost (or the volume stopped) before the operation finished.
    #[error("the connection to the peer was lost")]
    ConnectionLost,
    /// Not implemented in this version.
    #[error("{0} is not supported yet")]
    NotSupported(&'static str),
    /// The volume is stopping or stopped.
    #[error("the volume is stopped")]
    Stopped,
    /// A local I/O error (not of the backing's opening).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}
