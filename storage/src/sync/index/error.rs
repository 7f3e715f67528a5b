//! Errors of the index; each names the file it concerns, and none is resolved by silently
//! starting from an empty index (which would look like a node whose files all appeared at once).

use std::{io, path::PathBuf};

use crate::volume::meta::MetaError;

/// Scanning, loading or saving an index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Reading or writing a file or directory failed.
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The index file is not valid (magic, checksum, length or a field).
    #[error("{}: corrupt sync index: {reason}; move it away to rebuild the index from the disk \
             (every file is then new to the peers and compared by hash)", file.display())]
    Corrupt { file: PathBuf, reason: String },
    /// The index file was written by a newer, incompatible Fulcrum.
    #[error("{}: sync index format version {version} is not supported (this Fulcrum reads \
             version {supported})", file.display())]
    Version {
        file: PathBuf,
        version: u32,
        supported: u32,
    },
    /// The root lacks the marker directory the index says it had: most likely the filesystem
    /// the set lives on is not mounted, and the empty mount point would read as every file
    /// deleted, on every node.
    #[error("{}: no `{marker}` directory, though this set's index says it was there: the directory is \
             most likely not mounted (or not the one indexed). Nothing is taken for deleted. If \
             the files are there on purpose, `mkdir {}` and restart", root.display(), root.join(marker).display())]
    RootUnmarked { root: PathBuf, marker: &'static str },
    /// No randomness for a new index's id.
    #[error("no randomness for a new index id: {0}")]
    Random(getrandom::Error),
}

impl IndexError {
    pub(crate) fn io(file: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let file = file.into();
        move |source| Self::Io { file, source }
    }

    pub(super) fn corrupt(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            file: file.into(),
            reason: reason.into(),
        }
    }
}

/// The crash-safe write is the volume metadata's (`volume::meta::durable`); its only failures
/// are I/O.
impl From<MetaError> for IndexError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Io { file, source } => Self::Io { file, source },
            other => Self::Io {
                file: PathBuf::new(),
                source: io::Error::other(other.to_string()),
            },
        }
    }
}
