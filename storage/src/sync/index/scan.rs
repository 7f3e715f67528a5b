//! Comparing the disk to the index: what was created, modified or deleted since the index last
//! looked, each change a bump of this node's counter in the path's version vector.
//!
//! A file is hashed only when its size, mtime or mode differ from the index (or always, with
//! [`Rehash::Always`]); a version is made when the content, the mode, a symlink's target, the
//! kind, a file's or symlink's mtime, or (when the index tracks owners) the owner or group
//! changed, so `touch` or `chown` alone is sent (the peers set it without a transfer). An entry
//! without an owner (from an index saved before owners were tracked) takes the disk's in
//! place, without a version. A directory's mtime is stored without a version: it changes with
//! every name made or removed in it, which is a change of its own already. A path
//! that cannot be read is left as it is in the index, never taken for deleted: an unreadable
//! directory must not delete its files on every peer. The sync's own temporary files
//! ([`is_temp_name`]) are never indexed.

use std::{
    collections::HashSet,
    fs::{self, Metadata},
    io::{self, Read},
    ops::Bound,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use tracing::warn;

use super::{
    ContentHasher, Index, IndexError, ScanProgress,
    entry::{Entry, Hash, Kind, NO_HASH, check_path, in_scope, unix_ns},
    version::VersionVector,
};
use crate::sync::{config::Pattern, owner::Owner, watch::is_temp_name};

/// The directory that marks a sync root as the one indexed (see [`Index::check_root_marker`]).
/// Its name is a temporary file's, so it is never indexed, sent or removed as a leftover.
pub const ROOT_MARKER: &str = ".fulcrum-tmp-root";

/// Whether the disk's owner (`None` when owners are not tracked) differs from an entry's that
/// has one: a change. An entry without one is filled in place instead ([`Scan::fill_owner`]).
fn owner_changed(indexed: Option<Owner>, disk: Option<Owner>) -> bool {
    indexed.is_some() && disk.is_some() && indexed != disk
}

/// When a scan hashes a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rehash {
    /// When its size, mtime or mode differ from the index: the normal scan.
    #[default]
    IfChanged,
    /// Always: sees a rewrite that kept the size within one mtime tick (tests, periodic
    /// rescans).
    Always,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// In path order.
    pub changes: Vec<Change>,
    /// Names that are not UTF-8 (or symlinks whose target is not), skipped.
    pub non_utf8: u64,
    /// Paths that could not be read (left as they were in the index).
    pub unreadable: u64,
    /// Sockets, FIFOs and device nodes, skipped.
    pub special: u64,
    /// Files that changed while being hashed, left for the next scan.
    pub changing: u64,
    /// Entries of newly excluded paths, removed without a tombstone.
    pub forgotten: u64,
    /// Files (not directories) named as a receiver's temporary files ([`is_temp_name`]): at
    /// start, what a transfer cut short left beside its target.
    pub temporary: Vec<PathBuf>,
    /// The scan was stopped ([`ScanProgress::stop`]) before it saw everything: it recorded
    /// what it found, but no deletions.
    pub stopped: bool,
}

/// A path whose version changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// New, or back after a deletion.
    Created,
    /// Content, mode, symlink target, kind, or a file's or symlink's mtime changed.
    Modified,
    /// Gone: now a tombstone.
    Deleted,
}

impl Index {
    /// Compares the whole tree under `root` to the index, skipping `exclude`d paths, and records
    /// each change with a bump of this node's counter.
    ///
    /// Fails only when `root` itself cannot be read: then nothing is known, and taking every
    /// file for deleted would delete it on the peers.
    pub fn scan(
        &mut self,
        root: &Path,
        exclude: &[Pattern],
        rehash: Rehash,
    ) -> Result<ScanReport, IndexError> {
        self.scan_with(root, exclude, rehash, &ScanProgress::default())
    }

    /// [`Index::scan`], counting what it examines and hashes in `progress`, and stopping early
    /// when asked to there.
    pub fn scan_with(
        &mut self,
        root: &Path,
        exclude: &[Pattern],
        rehash: Rehash,
        progress: &ScanProgress,
    ) -> Result<ScanReport, IndexError> {
        self.scan_tree(root, exclude, "", rehash, progress, false)
    }

    /// Counts the paths and file octets under `root` (not excluded) into `progress`, by their
    /// metadata alone, changing nothing: the totals of a first scan's progress.
    pub fn measure(
        &mut self,
        root: &Path,
        exclude: &[Pattern],
        progress: &ScanProgress,
    ) -> Result<(), IndexError> {
        self.scan_tree(root, exclude, "", Rehash::IfChanged, progress, true)
            .map(drop)
    }

    /// [`Index::scan`] of one subtree, `under` (a relative path; `""` is the root): after a
    /// watch event, or a watch queue overflow in that tree.
    pub fn scan_under(
        &mut self,
        root: &Path,
        exclude: &[Pattern],
        under: &str,
        rehash: Rehash,
    ) -> Result<ScanReport, IndexError> {
        let progress = ScanProgress::default();
        self.scan_tree(root, exclude, under, rehash, &progress, false)
    }

    /// Scans (or with `measuring`, only measures) `under`.
    fn scan_tree(
        &mut self,
        root: &Path,
        exclude: &[Pattern],
        under: &str,
        rehash: Rehash,
        progress: &ScanProgress,
        measuring: bool,
    ) -> Result<ScanReport, IndexError> {
        let mut scan = Scan {
            index: self,
            exclude,
            rehash,
            progress,
            measuring,
            report: ScanReport::default(),
            seen: HashSet::new(),
            unreadable: Vec::new(),
        };
        if under.is_empty() {
            fs::read_dir(root).map_err(IndexError::io(root))?;
            if !measuring {
                scan.index.check_root_marker(root)?;
            }
            scan.walk(root.to_path_buf(), String::new());
        } else {
            // A subtree's scan after a watch event would tombstone it all just the same when
            // the filesystem went away under a running set.
            if !measuring {
                scan.index.require_marker(root)?;
            }
            check_path(under).map_err(|e| IndexError::Io {
                file: root.join(under),
                source: io::Error::new(io::ErrorKind::InvalidInput, e),
            })?;
            if crate::sync::config::is_excluded(exclude, under, true) {
                return Ok(scan.report);
            }
            scan.visit(root.join(under), under.to_owned());
        }
        if measuring {
            return Ok(scan.report);
        }
        if progress.stopped() {
            // Not everything was seen: what was not is not deleted.
            scan.report.stopped = true;
            return Ok(scan.report);
        }
        scan.finish(under);
        if under.is_empty() {
            // Every file has been seen, so every live hash is a content hash now.
            scan.index.legacy_hashes = false;
        }
        let mut report = scan.report;
        report.changes.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(report)
    }

    /// Before a scan of the whole tree: the root must hold [`ROOT_MARKER`] if it did when the
    /// index was saved. An unmounted filesystem leaves an empty mount point (or the files of
    /// the filesystem below it), which a scan would take for every file deleted, and the peers
    /// would delete them too, as Syncthing's folder marker guards against. A root without the
    /// marker and an index that never saw one (a first start, or an index from before markers)
    /// gets it now.
    fn check_root_marker(&mut self, root: &Path) -> Result<(), IndexError> {
        self.require_marker(root)?;
        let marker = root.join(ROOT_MARKER);
        if !is_marked(root)
            && let Err(error) = fs::create_dir(&marker)
        {
            // A read-only tree cannot be marked, nor changed by a peer either.
            warn!(path = %marker.display(), %error, "sync: cannot create the root marker; an unmounted root would not be told from an emptied one");
            return Ok(());
        }
        if !self.root_marked
            && let Err(error) = fs::File::open(root).and_then(|dir| dir.sync_all())
        {
            // Saved ahead of the marker, the index would, after a power loss, take the root
            // for unmounted.
            return Err(IndexError::io(root)(error));
        }
        if !self.root_marked {
            self.root_marked = true;
            self.dirty = true;
        }
        Ok(())
    }

    /// Fails when the index says `root` was marked and it is not: the filesystem is most likely
    /// not mounted, and nothing may be read as deleted or written there.
    pub fn require_marker(&self, root: &Path) -> Result<(), IndexError> {
        if self.root_marked && !is_marked(root) {
            return Err(IndexError::RootUnmarked {
                root: root.to_path_buf(),
                marker: ROOT_MARKER,
            });
        }
        Ok(())
    }

    /// Records a local change to `entry` (a new version by this node).
    fn bump(&mut self, mut entry: Entry, kind: ChangeKind, report: &mut ScanReport) {
        entry.version.bump(&self.node);
        entry.modified_by = self.node.clone();
        report.changes.push(Change {
            path: entry.path.clone(),
            kind,
        });
        self.record(entry);
    }
}

/// One scan's state.
struct Scan<'a> {
    index: &'a mut Index,
    exclude: &'a [Pattern],
    rehash: Rehash,
    progress: &'a ScanProgress,
    /// Only count paths and octets into `progress` ([`Index::measure`]).
    measuring: bool,
    report: ScanReport,
    /// Paths found on disk (and not excluded).
    seen: HashSet<String>,
    /// Paths that could not be read: they and everything under them keep their entries.
    unreadable: Vec<String>,
}

impl Scan<'_> {
    /// Every path under the directory `dir` (relative path `rel`), depth first, without
    /// recursion (a deep tree cannot overflow the stack).
    fn walk(&mut self, dir: PathBuf, rel: String) {
        let mut stack = vec![(dir, rel)];
        while let Some((dir, rel)) = stack.pop() {
            if self.progress.stopped() {
                return;
            }
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(error) => {
                    self.unreadable(&rel, &dir, &error);
                    continue;
                }
            };
            for child in entries {
                if self.progress.stopped() {
                    return;
                }
                let child = match child {
                    Ok(child) => child,
                    Err(error) => {
                        self.unreadable(&rel, &dir, &error);
                        break;
                    }
                };
                let name = child.file_name();
                let Some(name) = name.to_str() else {
                    self.report.non_utf8 += 1;
                    warn!(dir = %dir.display(), name = ?name, "sync: skipping a name that is not UTF-8");
                    continue;
                };
                // A receiver's file in the making: it becomes its real name by a rename.
                if is_temp_name(name.as_bytes()) {
                    if child.file_type().is_ok_and(|t| !t.is_dir()) {
                        self.report.temporary.push(child.path());
                    }
                    continue;
                }
                let child_rel = if rel.is_empty() {
                    name.to_owned()
                } else {
                    format!("{rel}/{name}")
                };
                if let Some(subdir) = self.observe(child.path(), child_rel) {
                    stack.push(subdir);
                }
            }
        }
    }

    /// `under` itself, then its tree if it is a directory.
    fn visit(&mut self, abs: PathBuf, rel: String) {
        if let Some((dir, rel)) = self.observe(abs, rel) {
            self.walk(dir, rel);
        }
    }

    /// Compares one path to its entry; returns it if it is a directory to descend into.
    fn observe(&mut self, abs: PathBuf, rel: String) -> Option<(PathBuf, String)> {
        let meta = match fs::symlink_metadata(&abs) {
            Ok(meta) => meta,
            // Gone since it was listed: absent, as if the listing had come later.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => {
                self.unreadable(&rel, &abs, &error);
                return None;
            }
        };
        let file_type = meta.file_type();
        let is_dir = file_type.is_dir();
        if self.exclude.iter().any(|p| p.matches(&rel, is_dir)) {
            return None;
        }
        let kind = if is_dir {
            Kind::Dir
        } else if file_type.is_file() {
            Kind::File
        } else if file_type.is_symlink() {
            match fs::read_link(&abs) {
                Ok(target) => match target.into_os_string().into_string() {
                    Ok(target) => Kind::Symlink(target),
                    Err(target) => {
                        self.report.non_utf8 += 1;
                        warn!(link = %abs.display(), ?target, "sync: skipping a symlink whose target is not UTF-8");
                        return None;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
                Err(error) => {
                    self.unreadable(&rel, &abs, &error);
                    return None;
                }
            }
        } else {
            self.report.special += 1;
            return None;
        };
        if self.measuring {
            let octets = if kind == Kind::File { meta.len() } else { 0 };
            self.progress.measured(octets);
            return is_dir.then_some((abs, rel));
        }
        self.seen.insert(rel.clone());
        self.progress.examined();
        self.compare(&abs, &rel, kind, &meta);
        is_dir.then_some((abs, rel))
    }

    /// Records `rel`'s change, if any, against its entry.
    fn compare(&mut self, abs: &Path, rel: &str, kind: Kind, meta: &Metadata) {
        let mode = if matches!(kind, Kind::Symlink(_)) {
            0
        } else {
            meta.mode() & 0o7777
        };
        let size = if kind == Kind::File { meta.len() } else { 0 };
        let mtime_ns = mtime_ns(meta);
        let owner = self.index.track_owners.then(|| Owner::of(meta));
        let old = self.index.entries.get(rel);
        let live = old.filter(|e| !e.deleted);

        let unchanged_stat = live.is_some_and(|e| {
            e.kind == kind
                && e.size == size
                && e.mtime_ns == mtime_ns
                && e.mode == mode
                && !owner_changed(e.owner, owner)
        });
        if unchanged_stat && kind == Kind::File && self.index.legacy_hashes {
            self.rehash_in_place(abs, rel, meta);
            self.fill_owner(rel, owner);
            return;
        }
        if unchanged_stat && (kind != Kind::File || self.rehash == Rehash::IfChanged) {
            self.fill_owner(rel, owner);
            return;
        }
        let hash = if kind == Kind::File {
            match hash_file(abs, meta, self.progress) {
                Ok(Some(hash)) => {
                    self.progress.hashed(size);
                    hash
                }
                Ok(None) => {
                    self.report.changing += 1;
                    return;
                }
                Err(error) => {
                    self.unreadable(rel, abs, &error);
                    return;
                }
            }
        } else {
            NO_HASH
        };
        let fresh = Entry {
            path: rel.to_owned(),
            kind,
            size,
            mtime_ns,
            mode,
            owner,
            hash,
            version: old.map_or_else(VersionVector::new, |e| e.version.clone()),
            modified_by: String::new(),
            deleted: false,
            sequence: 0,
        };
        match live {
            None => self
                .index
                .bump(fresh, ChangeKind::Created, &mut self.report),
            Some(old)
                if !old.same_content(&fresh)
                    || (fresh.kind != Kind::Dir && old.mtime_ns != mtime_ns)
                    || owner_changed(old.owner, owner) =>
            {
                self.index
                    .bump(fresh, ChangeKind::Modified, &mut self.report);
            }
            Some(old) => {
                // A directory whose mode is the same: keep the version, take the new mtime.
                if old.mtime_ns != mtime_ns
                    && let Some(entry) = self.index.entries.get_mut(rel)
                {
                    entry.mtime_ns = mtime_ns;
                    self.index.dirty = true;
                }
                self.fill_owner(rel, owner);
            }
        }
    }

    /// Gives `rel`'s entry the disk's `owner` if it has none, without a version: an index
    /// saved before owners were tracked says nothing about them, so the disk is taken as it is.
    fn fill_owner(&mut self, rel: &str, owner: Option<Owner>) {
        if let Some(owner) = owner
            && let Some(entry) = self.index.entries.get_mut(rel)
            && entry.owner.is_none()
        {
            entry.owner = Some(owner);
            self.index.dirty = true;
        }
    }

    /// Replaces an unchanged file's legacy hash with its content hash: the same content, so
    /// no new version.
    fn rehash_in_place(&mut self, abs: &Path, rel: &str, meta: &Metadata) {
        match hash_file(abs, meta, self.progress) {
            Ok(Some(hash)) => {
                self.progress.hashed(meta.len());
                if let Some(entry) = self.index.entries.get_mut(rel) {
                    entry.hash = hash;
                    self.index.dirty = true;
                }
            }
            Ok(None) => self.report.changing += 1,
            Err(error) => self.unreadable(rel, abs, &error),
        }
    }

    fn unreadable(&mut self, rel: &str, abs: &Path, error: &io::Error) {
        self.report.unreadable += 1;
        warn!(path = %abs.display(), %error, "sync: cannot read, left as indexed");
        self.unreadable.push(rel.to_owned());
    }

    /// Tombstones the live entries in scope that were not seen, and forgets excluded ones.
    fn finish(&mut self, scope: &str) {
        // A scope's entries are all the paths from `scope` to `scope` + `0`: `0` follows `/`.
        let end = format!("{scope}0");
        let candidates: Vec<String> = self
            .index
            .entries
            .range::<str, _>(range_of(scope, &end))
            .filter(|(path, e)| !e.deleted && in_scope(path, scope) && !self.seen.contains(*path))
            .map(|(path, _)| path.clone())
            .collect();
        let now = unix_ns(SystemTime::now());
        // Deepest first: a directory's tombstone then follows those of everything in it, so a
        // peer applying them in sequence order (in batches) finds it empty. In path order a
        // large directory's own tombstone came first, met a directory still full, and was
        // dropped, leaving it behind for good.
        for path in candidates.into_iter().rev() {
            if self.unreadable.iter().any(|u| in_scope(&path, u)) {
                continue;
            }
            let Some(entry) = self.index.entries.get(&path) else {
                continue;
            };
            let is_dir = entry.kind == Kind::Dir;
            if crate::sync::config::is_excluded(self.exclude, &path, is_dir) {
                self.index.forget(&path);
                self.report.forgotten += 1;
                continue;
            }
            let mut tombstone = entry.clone();
            tombstone.deleted = true;
            tombstone.mtime_ns = now;
            self.index
                .bump(tombstone, ChangeKind::Deleted, &mut self.report);
        }
    }
}

/// Whether `root` holds the [`ROOT_MARKER`] directory.
fn is_marked(root: &Path) -> bool {
    fs::symlink_metadata(root.join(ROOT_MARKER)).is_ok_and(|m| m.is_dir())
}

/// The key range holding `scope` and everything under it (and a few siblings such as
/// `scope-x`, which [`in_scope`] filters out).
/// `end` is `scope` + `0`.
fn range_of<'a>(scope: &'a str, end: &'a str) -> (Bound<&'a str>, Bound<&'a str>) {
    if scope.is_empty() {
        (Bound::Unbounded, Bound::Unbounded)
    } else {
        (Bound::Included(scope), Bound::Excluded(end))
    }
}

fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// Read-only, not following a final symlink, not waiting for a FIFO's writer: a path swapped
/// for a FIFO after it was looked at must not block the open for ever (the scan holds the
/// index meanwhile, and a set's stop waits for its threads), nor a symlink lead the read out
/// of the tree.
pub(crate) fn no_wait_options() -> fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW;
    let mut options = fs::OpenOptions::new();
    options.read(true).custom_flags(flags.bits() as i32);
    options
}

/// The file's content hash; `None` if it changed while being read (its size or mtime
/// moved, or it is no longer the file `before` describes), in which case a later event or
/// scan will look again, or if the scan was stopped meanwhile (a large file is not read to
/// its end first).
fn hash_file(path: &Path, before: &Metadata, progress: &ScanProgress) -> io::Result<Option<Hash>> {
    let mut file = no_wait_options().open(path)?;
    let opened = file.metadata()?;
    if !opened.is_file() || (opened.dev(), opened.ino()) != (before.dev(), before.ino()) {
        return Ok(None);
    }
    let mut hasher = ContentHasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if progress.stopped() {
            return Ok(None);
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    let after = file.metadata()?;
    if after.len() != before.len() || mtime_ns(&after) != mtime_ns(before) {
        return Ok(None);
    }
    Ok(Some(hasher.finish()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    // Input: a 1 MiB file hashed with a progress not stopped, then with one stopped. Output:
    // its hash, then nothing: a stopped scan does not read a large file to its end first.
    #[test]
    fn hashing_gives_up_once_the_scan_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let meta = fs::metadata(&path).unwrap();
        let progress = ScanProgress::default();
        let hash = hash_file(&path, &meta, &progress).unwrap();
        assert_eq!(hash, Some(super::super::content_hash(&vec![7u8; 1 << 20])));
        progress.stop();
        assert_eq!(hash_file(&path, &meta, &progress).unwrap(), None);
    }

    // Input: a file looked at, then swapped for a FIFO with no writer before it is hashed.
    // Output: hashing returns at once with no hash. (The open waited for a writer for ever,
    // holding the index: receivers, saves, status and the set's stop all hung.)
    #[test]
    fn a_file_swapped_for_a_fifo_is_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upload");
        fs::write(&path, b"content").unwrap();
        let meta = fs::metadata(&path).unwrap();
        fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(hash_file(&path, &meta, &ScanProgress::default()).unwrap());
        });
        let hashed = rx.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(hashed, Ok(None), "the FIFO's open blocked");
    }
}
