//! One path's record in the index: what the path is on disk (kind, size, mtime, mode, owner,
//! content hash), which version it is (a version vector), and whether it was deleted (a tombstone).

use super::version::VersionVector;
use crate::sync::owner::Owner;

/// A file's content hash ([`super::content_hash`]).
pub type Hash = [u8; 32];

/// The hash of nothing: directories', symlinks' and tombstones' of paths never a file.
pub const NO_HASH: Hash = [0; 32];

/// The longest relative path accepted, Linux's `PATH_MAX`.
pub const MAX_PATH: usize = 4096;

/// `time` in nanoseconds since the Unix epoch, as entries keep mtimes (0 before the epoch).
pub fn unix_ns(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link and its target, synced as a link (never followed).
    Symlink(String),
}

/// A path's state and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the synced directory, `/`-separated, UTF-8, without `.`, `..` or empty
    /// segments (see [`check_path`]).
    pub path: String,
    /// For a tombstone, what the path last was.
    pub kind: Kind,
    /// Bytes, for files; 0 otherwise.
    pub size: u64,
    /// Nanoseconds since the Unix epoch. For a tombstone, when the deletion was found, so that
    /// old tombstones can be forgotten ([`super::Index::forget_deletions_before`]).
    pub mtime_ns: i64,
    /// Permission bits (`0o7777`); 0 for symlinks, whose mode Linux ignores.
    pub mode: u32,
    /// The owner and group, when the node that made this version syncs them (`owners`, as
    /// root); `None` otherwise, and then a receiver leaves its copy's owner as it is.
    pub owner: Option<Owner>,
    /// The content hash ([`super::content_hash`]), for files (kept in a tombstone, so a rename can be recognised);
    /// [`NO_HASH`] otherwise.
    pub hash: Hash,
    pub version: VersionVector,
    /// The node that made this version: the tie-break of newest-wins, and the NODE of a
    /// conflict copy's name.
    pub modified_by: String,
    /// A tombstone: the path was deleted. Kept so that the deletion propagates and a peer that
    /// has not seen it does not bring the path back.
    pub deleted: bool,
    /// This index's change counter when the entry last changed: a peer that has seen up to N
    /// needs the entries above N. Local to one index; meaningless in a peer's entry.
    pub sequence: u64,
}

impl Entry {
    /// Whether two entries hold the same thing, ignoring mtime, owner and version: both
    /// tombstones, or both the same kind with the same content and mode. Two nodes that made the
    /// same file merge it rather than keep a conflict copy when only its owner differs.
    pub fn same_content(&self, other: &Self) -> bool {
        if self.deleted || other.deleted {
            return self.deleted == other.deleted;
        }
        self.kind == other.kind
            && self.mode == other.mode
            && (self.kind != Kind::File || (self.hash == other.hash && self.size == other.size))
    }

    /// Whether the entry is a live regular file.
    pub fn is_file(&self) -> bool {
        !self.deleted && self.kind == Kind::File
    }
}

/// Why a relative path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {path:?} refused: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: &'static str,
}

impl PathError {
    /// The refusal of `path` for `reason`, naming at most its first 256 characters: a peer's
    /// path may be long, and the error goes into logs.
    pub(crate) fn new(path: &str, reason: &'static str) -> Self {
        Self {
            path: path.chars().take(256).collect(),
            reason,
        }
    }
}

/// A relative path that stays inside the synced directory: not empty, no leading `/`, no empty,
/// `.` or `..` segment, no NUL, at most [`MAX_PATH`] bytes. Every path from a peer or from disk
/// is checked, so that `../` cannot escape the root.
pub fn check_path(path: &str) -> Result<(), PathError> {
    let fail = |reason| Err(PathError::new(path, reason));
    if path.is_empty() {
        return fail("empty");
    }
    if path.len() > MAX_PATH {
        return fail("longer than 4096 bytes");
    }
    if path.contains('\0') {
        return fail("contains NUL");
    }
    if path.starts_with('/') {
        return fail("absolute");
    }
    for segment in path.split('/') {
        match segment {
            "" => return fail("has an empty segment"),
            "." | ".." => return fail("has a `.` or `..` segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `path` is `scope` or inside it; everything is inside the empty scope (the root).
pub(super) fn in_scope(path: &str, scope: &str) -> bool {
    scope.is_empty()
        || path == scope
        || (path.len() > scope.len()
            && path.starts_with(scope)
            && path.as_bytes()[scope.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_escape_or_are_malformed_are_refused() {
        for ok in ["a", "a/b", "a b/c.d", "...", "a/..b", "é/ü"] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "./a",
            "a//b",
            "a/",
            "a\0b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&"a".repeat(MAX_PATH + 1)).is_err());
    }

    #[test]
    fn scope() {
        assert!(in_scope("a/b", ""));
        assert!(in_scope("a/b", "a"));
        assert!(in_scope("a", "a"));
        assert!(!in_scope("ab", "a"));
        assert!(!in_scope("a", "a/b"));
    }
}
