//! The receiver's disk operations, all blocking: resolving a peer's path without ever going
//! through a symlinked directory, writing a file under a temporary name (in the
//! [`super::staging`] directory, or beside its target) to be renamed into place, deleting, and
//! telling whether the disk still matches the index.

use std::{
    fs::{self, File, FileTimes, Permissions},
    io::{self, Read, Write},
    os::{
        fd::OwnedFd,
        unix::fs::{MetadataExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::staging::Staging;

use crate::sync::{
    config::{Pattern, is_excluded},
    index::{ContentHasher, Entry, Hash, Kind, no_wait_options},
    owner::Owner,
    watch::{TEMP_PREFIX, is_temp_name},
};

/// Checks every parent directory of `rel` under `root`: none may be a symlink (a peer must not
/// make us write through a link to elsewhere) or a non-directory. With `create`, missing ones
/// are made (one level at a time, each checked), mode 0755. Returns the filesystem of `rel`'s
/// directory (`None` for the root itself).
pub(super) fn check_parents(root: &Path, rel: &str, create: bool) -> io::Result<Option<u64>> {
    let defaults = |_: &str| None;
    parents(root, rel, create.then_some(&defaults))
}

/// The mode and owner a directory is to be made with, if known.
pub(super) type DirAttributes = Option<(u32, Option<Owner>)>;

/// [`check_parents`], making the missing ones each with the mode and owner `known` gives for it
/// (the index's last entry there, a deleted directory's included) where it gives one. A
/// directory made again under a received file thus keeps what it had, rather than coming back
/// 0755 and ours: the scan would take that for a change of this node's, and the peers would
/// apply it over their own directory.
pub(super) fn make_parents(
    root: &Path,
    rel: &str,
    known: &dyn Fn(&str) -> DirAttributes,
) -> io::Result<()> {
    parents(root, rel, Some(known)).map(drop)
}

fn parents(
    root: &Path,
    rel: &str,
    create: Option<&dyn Fn(&str) -> DirAttributes>,
) -> io::Result<Option<u64>> {
    let mut dir = root.to_path_buf();
    let mut dev = None;
    let mut segments: Vec<&str> = rel.split('/').collect();
    segments.pop();
    let mut at = 0;
    for segment in segments {
        dir.push(segment);
        at += segment.len() + 1;
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{} is a symlink", dir.display()),
                ));
            }
            Ok(meta) if meta.is_dir() => dev = Some(meta.dev()),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", dir.display()),
                ));
            }
            // A new directory is on its parent's filesystem: `dev` stays.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(known) = create else {
                    return Err(e);
                };
                match fs::create_dir(&dir) {
                    Ok(()) => {
                        if let Some((mode, owner)) = known(&rel[..at - 1]) {
                            set_attributes(root, &rel[..at - 1], mode, None, owner)?;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(dev)
}

/// Opens `rel` under `root` with `flags` and `mode` so that no part of the way may be a symlink
/// nor lead out of `root` (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`). Whatever is
/// done through it cannot be sent elsewhere by a directory swapped for a symlink after
/// [`check_parents`] looked, whether the peer or a local user swaps it: the open fails (ELOOP).
fn open_beneath(
    root: &Path,
    rel: impl rustix::path::Arg,
    flags: rustix::fs::OFlags,
    mode: rustix::fs::Mode,
) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let root = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    Ok(rustix::fs::openat2(
        &root,
        rel,
        flags | OFlags::CLOEXEC,
        mode,
        resolve,
    )?)
}

/// The directory of `rel` under `root`, through [`open_beneath`], and `rel`'s last component:
/// renames and removals are done relative to it.
fn parent_beneath<'r>(root: &Path, rel: &'r str) -> io::Result<(OwnedFd, &'r str)> {
    use rustix::fs::{Mode, OFlags};
    let (dir, name) = rel.rsplit_once('/').unwrap_or((".", rel));
    let parent = open_beneath(root, dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
    Ok((parent, name))
}

/// Creates the new file `path` (under `root`), mode 0600, through [`open_beneath`]: a staging
/// directory, or a target's directory, swapped for a symlink since it was checked fails the
/// creation instead of making us write where the link points.
fn create_beneath(root: &Path, path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let rel = path
        .strip_prefix(root)
        .map_err(|_| io::Error::other("a temporary file outside the tree"))?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
    let file = open_beneath(root, rel, flags, Mode::from_raw_mode(0o600))?;
    Ok(File::from(file))
}

/// Renames `from` (a temporary file, or a file elsewhere in the tree) to `rel` under `root`,
/// through [`parent_beneath`].
pub(super) fn rename_into(from: &Path, root: &Path, rel: &str) -> io::Result<()> {
    let (parent, name) = parent_beneath(root, rel)?;
    rustix::fs::renameat(rustix::fs::CWD, from, &parent, name)?;
    Ok(())
}

/// Removes the empty directory `rel` under `root`, through [`parent_beneath`].
pub(super) fn remove_dir_beneath(root: &Path, rel: &str) -> io::Result<()> {
    let (parent, name) = parent_beneath(root, rel)?;
    rustix::fs::unlinkat(&parent, name, rustix::fs::AtFlags::REMOVEDIR)?;
    Ok(())
}

/// Renames `from` to `to`, both under `root`, without replacing anything at `to`
/// (`RENAME_NOREPLACE`), through [`parent_beneath`]: a conflict copy never overwrites a file.
pub(super) fn rename_noreplace_beneath(root: &Path, from: &str, to: &str) -> io::Result<()> {
    let (from_dir, from_name) = parent_beneath(root, from)?;
    let (to_dir, to_name) = parent_beneath(root, to)?;
    rustix::fs::renameat_with(
        &from_dir,
        from_name,
        &to_dir,
        to_name,
        rustix::fs::RenameFlags::NOREPLACE,
    )?;
    Ok(())
}

/// A fresh temporary name in `rel`'s directory: the watcher and the scan ignore it.
pub(super) fn temp_path(root: &Path, rel: &str) -> PathBuf {
    let dir = match rel.rfind('/') {
        Some(slash) => root.join(&rel[..slash]),
        None => root.to_path_buf(),
    };
    temp_in(&dir)
}

/// A fresh temporary name in `dir`: a random number drawn once per process, plus a count (no
/// syscall per name; a name taken all the same makes the exclusive create fail, and retry).
fn temp_in(dir: &Path) -> PathBuf {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut random = [0u8; 8];
        // Without randomness, the time still makes names unique enough.
        match getrandom::getrandom(&mut random) {
            Ok(()) => u64::from_le_bytes(random),
            Err(_) => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }
    });
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{seed:016x}-{n}"))
}

/// A file being received: written under a temporary name, and hashed as it is written unless
/// its content is hashed elsewhere. Dropped before it is finished (given up on, or left when a
/// link ends mid-transfer), it is removed: a partial copy would otherwise stay until the next
/// start, one per dropped link for a large file on a flapping one.
pub(super) struct TempFile {
    pub(super) path: TempPath,
    file: File,
    hasher: Option<ContentHasher>,
    pub(super) written: u64,
}

/// A finished temporary file on its way to the disk, not synced yet.
pub(super) struct Unsynced {
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// The content's hash, if the file hashed what was written.
    pub(super) hash: Option<Hash>,
}

impl std::fmt::Debug for TempFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempFile")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish()
    }
}

/// A temporary file's name, removed with it when dropped unless [kept](TempPath::keep).
#[derive(Debug)]
pub(super) struct TempPath(PathBuf);

impl TempPath {
    /// Guards `path`, which the caller has just created.
    pub(super) fn new(path: PathBuf) -> Self {
        Self(path)
    }

    /// The name, no longer removed on drop: the file is on its way into the tree.
    pub(super) fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl std::ops::Deref for TempPath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.0);
        }
    }
}

impl TempFile {
    /// Creates the temporary file for `rel` (its parents checked and created): in `staging`
    /// when a rename from there reaches `rel`, else beside it. With `hashed`, what is written
    /// is hashed.
    pub(super) fn create(
        root: &Path,
        staging: Option<&Staging>,
        rel: &str,
        hashed: bool,
    ) -> io::Result<Self> {
        let dev = check_parents(root, rel, true)?;
        let mut attempts = 0;
        let (path, file) = loop {
            let path = match staging.and_then(|s| s.dir_for(dev)) {
                Some(dir) => temp_in(dir),
                None => temp_path(root, rel),
            };
            let created = create_beneath(root, &path);
            match created {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Self {
            path: TempPath(path),
            file,
            hasher: hashed.then(ContentHasher::new),
            written: 0,
        })
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Gives the file `target`'s owner, mode and mtime, in that order (as [`set_attributes`]),
    /// and starts the writeback, without waiting for it: the file must be synced
    /// ([`File::sync_all`]) before it is renamed into place. Syncing a group of such files one
    /// after the other costs about one journal commit for all of them, where syncing each as
    /// it ends would cost one per file.
    /// On failure the file is removed.
    pub(super) fn finish_unsynced(self, target: &Entry) -> io::Result<Unsynced> {
        let file = &self.file;
        let set = || -> io::Result<()> {
            if let Some(owner) = target.owner
                && Owner::of(&file.metadata()?) != owner
            {
                unless_refused(std::os::unix::fs::fchown(
                    file,
                    Some(owner.uid),
                    Some(owner.gid),
                ))?;
            }
            file.set_permissions(Permissions::from_mode(target.mode))?;
            file.set_times(FileTimes::new().set_modified(system_time(target.mtime_ns)))
        };
        if let Err(e) = set() {
            self.discard();
            return Err(e);
        }
        crate::dirty_pages::start_writeback(&self.file);
        Ok(Unsynced {
            path: self.path.keep(),
            file: self.file,
            hash: self.hasher.map(|hasher| hasher.finish()),
        })
    }

    /// Gives up on the file: closed and removed.
    pub(super) fn discard(self) {
        drop(self);
    }
}

/// `ns` since the epoch as a time.
pub(super) fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

pub(super) fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// The kernel stamps files from its coarse clock, up to a tick (at most 10 ms) behind the
/// time `SystemTime::now` reads.
const COARSE_CLOCK_NS: i64 = 20_000_000;

/// What the index records of a path the receiver has just given an entry's attributes: its
/// mtime and owner as the disk keeps them, so that the scan does not take the filesystem's
/// rounding, or an owner this node could not or did not set, for a change of ours.
#[derive(Debug, Clone, Copy)]
pub(super) struct Applied {
    pub(super) mtime_ns: i64,
    pub(super) owner: Owner,
}

impl Applied {
    /// `path` (not followed) as it is now.
    pub(super) fn read(path: &Path) -> io::Result<Self> {
        let meta = fs::symlink_metadata(path)?;
        Ok(Self {
            mtime_ns: mtime_ns(&meta),
            owner: Owner::of(&meta),
        })
    }

    /// `entry` with this mtime and owner (which [`crate::sync::index::Index::record`] drops
    /// where owners are not synced).
    pub(super) fn onto(self, entry: Entry) -> Entry {
        Entry {
            mtime_ns: self.mtime_ns,
            owner: Some(self.owner),
            ..entry
        }
    }
}

/// `path`, set to mtime `wanted` at `before` (nanoseconds since the epoch, read just before),
/// as it is to be recorded. The mtime is the disk's when it differs only by the filesystem's
/// doing (coarser timestamps, or a range that starts later, as FAT's in 1980), so that the
/// scan does not take that for a change of ours; `wanted` when the disk's is from `before` on,
/// which a local write made since explains, so that the scan finds that write.
pub(super) fn recorded(path: &Path, wanted: i64, before: i64) -> io::Result<Applied> {
    let disk = Applied::read(path)?;
    let written_since =
        disk.mtime_ns != wanted && disk.mtime_ns >= before.saturating_sub(COARSE_CLOCK_NS);
    Ok(Applied {
        mtime_ns: if written_since { wanted } else { disk.mtime_ns },
        ..disk
    })
}

/// Sets the owner (if given), mode and mtime of the file or directory `rel` under `root` (not
/// a symlink's: Linux ignores a link's mode, and its owner and mtime are [`set_owner`]'s and
/// [`set_link_mtime`]'s). The owner goes first: a `chown` clears a file's set-user-ID and
/// set-group-ID bits, which the mode then restores.
///
/// Mode and mtime are set through a descriptor opened beneath `root` ([`open_beneath`]): a
/// parent swapped for a symlink, or the path itself swapped for one (ELOOP), cannot pass the
/// mode (a set-user-ID bit, say) on to a file outside the tree. Opened without waiting, as in
/// [`open_file_no_wait`].
pub(super) fn set_attributes(
    root: &Path,
    rel: &str,
    mode: u32,
    mtime_ns: Option<i64>,
    owner: Option<Owner>,
) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    set_owner(root, rel, owner)?;
    let file = fs::File::from(open_beneath(
        root,
        rel,
        OFlags::RDONLY | OFlags::NONBLOCK,
        Mode::empty(),
    )?);
    rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
    if let Some(ns) = mtime_ns {
        file.set_times(FileTimes::new().set_modified(system_time(ns)))?;
    }
    Ok(())
}

/// Gives `rel` under `root` (a symlink itself, not its target) `owner`, if there is one: an
/// entry has an owner only where owners are synced (see [`crate::sync::owner`]). Through its
/// parent opened beneath `root` ([`parent_beneath`]), so that a `chown` never lands outside the
/// tree. Nothing is done if it has it already: a `chown` also drops a file's capabilities.
pub(super) fn set_owner(root: &Path, rel: &str, owner: Option<Owner>) -> io::Result<()> {
    use rustix::fs::{AtFlags, Gid, Uid};
    let Some(owner) = owner else {
        return Ok(());
    };
    let (parent, name) = parent_beneath(root, rel)?;
    let stat = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if (stat.st_uid, stat.st_gid) == (owner.uid, owner.gid) {
        return Ok(());
    }
    unless_refused(
        rustix::fs::chownat(
            &parent,
            name,
            Some(Uid::from_raw(owner.uid)),
            Some(Gid::from_raw(owner.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from),
    )
}

/// A `chown`'s result, where a refusal (a filesystem without owners, such as FAT, or NFS with
/// `root_squash`; a user namespace that does not map the user) is not a failure: the path
/// keeps the owner it has, as rsync goes on with a warning. What the index records is read
/// from the disk ([`Applied`]), so it stays true. Warned once.
fn unless_refused(chowned: io::Result<()>) -> io::Result<()> {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    match chowned {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput
            ) =>
        {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e,
                    "sync: cannot give received files their owners here; they keep this node's (set owners = false to stop trying)");
            }
            Ok(())
        }
        other => other,
    }
}

/// Sets a symlink's own mtime (not its target's), so that a synced link keeps the sender's.
pub(super) fn set_link_mtime(path: &Path, mtime_ns: i64) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_OMIT, utimensat};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: mtime_ns.div_euclid(1_000_000_000),
            tv_nsec: mtime_ns.rem_euclid(1_000_000_000),
        },
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

/// Whether the disk at `entry`'s path (or `rel`, for no entry) still is what the index says,
/// so that a change not yet scanned is never overwritten: the owner where the index has one,
/// for files size, mtime and mode, for the rest the kind. An unreadable path counts as
/// matching (the scan would leave it).
pub(super) fn disk_matches(root: &Path, rel: &str, entry: Option<&Entry>) -> bool {
    let meta = fs::symlink_metadata(root.join(rel));
    let live = entry.filter(|e| !e.deleted);
    match (live, meta) {
        (None, Err(_)) => true,
        (None, Ok(_)) => false,
        (Some(_), Err(e)) => e.kind() != io::ErrorKind::NotFound,
        (Some(e), Ok(meta)) => {
            let ft = meta.file_type();
            let owner_matches = e.owner.is_none_or(|owner| Owner::of(&meta) == owner);
            owner_matches
                && match &e.kind {
                    Kind::File => {
                        ft.is_file()
                            && meta.len() == e.size
                            && mtime_ns(&meta) == e.mtime_ns
                            && meta.mode() & 0o7777 == e.mode
                    }
                    Kind::Dir => ft.is_dir(),
                    Kind::Symlink(_) => ft.is_symlink(),
                }
        }
    }
}

/// Removes whatever is at `rel` under `root` to make room for another kind of entry: a file or
/// symlink, or an empty directory; through [`parent_beneath`], so that a parent swapped for a
/// symlink cannot send the removal out of `root`.
pub(super) fn remove_any(root: &Path, rel: &str) -> io::Result<()> {
    use rustix::fs::{AtFlags, FileType};
    let (parent, name) = parent_beneath(root, rel)?;
    let flags = match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
            AtFlags::REMOVEDIR
        }
        Ok(_) => AtFlags::empty(),
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    rustix::fs::unlinkat(&parent, name, flags)?;
    Ok(())
}

/// What deleting a path did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deleted {
    /// Removed, or was not there.
    Yes,
    /// A directory that still holds entries that are not excluded: kept.
    NotEmpty,
}

/// Deletes `rel`: a file or link, or a directory holding nothing but excluded entries (and
/// our own temporary files), which go with it.
pub(super) fn delete(root: &Path, rel: &str, exclude: &[Pattern]) -> io::Result<Deleted> {
    let path = root.join(rel);
    let meta = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Deleted::Yes),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        // Through the parent as it is now (see [`parent_beneath`]), not a path that a directory
        // swapped for a symlink since the check would send elsewhere.
        let (parent, name) = parent_beneath(root, rel)?;
        rustix::fs::unlinkat(&parent, name, rustix::fs::AtFlags::empty())?;
        return Ok(Deleted::Yes);
    }
    // Read and emptied through a descriptor opened beneath the root: by path, a parent swapped
    // for a symlink since the check would have these removals done elsewhere, recursively.
    let dir = open_beneath(
        root,
        rel,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )?;
    let mut leftovers = Vec::new();
    for (name, is_dir) in entries_at(&dir)? {
        let shown = name.to_string_lossy();
        let child_rel = format!("{rel}/{shown}");
        if is_temp_name(name.to_bytes()) || is_excluded(exclude, &child_rel, is_dir) {
            leftovers.push((name, is_dir));
        } else {
            return Ok(Deleted::NotEmpty);
        }
    }
    remove_entries_at(&dir, leftovers)?;
    remove_dir_beneath(root, rel)?;
    Ok(Deleted::Yes)
}

/// The entries of the open directory `dir` but `.` and `..`, each with whether it is a
/// directory (not following symlinks).
fn entries_at(dir: &OwnedFd) -> io::Result<Vec<(std::ffi::CString, bool)>> {
    use rustix::fs::{AtFlags, FileType};
    let mut entries = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => {
                let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                FileType::from_raw_mode(stat.st_mode)
            }
            kind => kind,
        };
        entries.push((name.to_owned(), kind == FileType::Directory));
    }
    Ok(entries)
}

/// Removes `entries` (as [`entries_at`] gives them) from the open directory `dir`, each
/// directory with all it holds.
fn remove_entries_at(dir: &OwnedFd, entries: Vec<(std::ffi::CString, bool)>) -> io::Result<()> {
    for (name, is_dir) in entries {
        if is_dir {
            remove_tree_at(dir, &name)?;
        } else {
            rustix::fs::unlinkat(dir, name.as_c_str(), rustix::fs::AtFlags::empty())?;
        }
    }
    Ok(())
}

/// Removes the directory `name` in `parent` and all it holds, each level opened from the one
/// above without following symlinks: a symlink inside is removed, never followed.
fn remove_tree_at(parent: &OwnedFd, name: &std::ffi::CStr) -> io::Result<()> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    remove_entries_at(&dir, entries_at(&dir)?)?;
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// Copies the regular file `from` into a new temporary file for `rel`, hashing it.
pub(super) fn copy_to_temp(
    root: &Path,
    staging: Option<&Staging>,
    from: &Path,
    rel: &str,
) -> io::Result<TempFile> {
    let meta = fs::symlink_metadata(from)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let (mut source, _) = open_file_no_wait(from)?;
    let mut temp = TempFile::create(root, staging, rel, true)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                temp.discard();
                return Err(e);
            }
        };
        if let Err(e) = temp.write(&buf[..n]) {
            temp.discard();
            return Err(e);
        }
    }
    Ok(temp)
}

/// Opens `path` for reading if it is a regular file, with its metadata, without following a
/// final symlink and without waiting: a path swapped for a FIFO after it was checked would
/// otherwise block the open for ever, and with it the set's stop, which waits for its threads.
pub(super) fn open_file_no_wait(path: &Path) -> io::Result<(File, fs::Metadata)> {
    let file = no_wait_options().open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

/// Opens `rel` for a peer: a regular file reached without any symlink. Through
/// [`open_beneath`], so that a directory on the way swapped for a symlink after
/// [`check_parents`] looked fails the open, rather than sending a file from outside the tree.
/// Without waiting: a FIFO put there is opened and refused, not waited on.
pub(super) fn open_regular(root: &Path, rel: &str) -> io::Result<(File, fs::Metadata)> {
    use rustix::fs::{Mode, OFlags};
    check_parents(root, rel, false)?;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK;
    let file = File::from(open_beneath(root, rel, flags, Mode::empty())?);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::sync::index::unix_ns;

    /// The scan, the watcher and the receiver tell the sync's files by name: the names made
    /// here must be the ones `is_temp_name` knows.
    #[test]
    fn temporary_names_are_known_as_the_syncs_own() {
        let dir = Path::new("/d");
        for _ in 0..3 {
            let name = temp_in(dir);
            let name = name.file_name().unwrap();
            assert!(is_temp_name(name.as_encoded_bytes()), "{name:?}");
        }
    }

    // Input: a directory `d` of the tree swapped for a symlink to a directory outside it, after
    // a file for `d/passwd` was received into a temporary file. Output: renaming it into place
    // fails (the link is not followed), and nothing lands outside the tree; a plain `d` takes
    // it.
    #[test]
    fn a_received_file_is_never_renamed_through_a_symlinked_directory() {
        let (root, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let temp = root.path().join(".fulcrum-tmp-x");
        fs::write(&temp, b"from the peer").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("d")).unwrap();
        assert!(rename_into(&temp, root.path(), "d/passwd").is_err());
        assert!(
            !outside.path().join("passwd").exists(),
            "written outside the tree"
        );
        // Nor through `..`, whatever a path check missed.
        assert!(rename_into(&temp, root.path(), "../escaped").is_err());

        fs::remove_file(root.path().join("d")).unwrap();
        fs::create_dir(root.path().join("d")).unwrap();
        rename_into(&temp, root.path(), "d/passwd").unwrap();
        assert_eq!(
            fs::read(root.path().join("d/passwd")).unwrap(),
            b"from the peer"
        );
    }

    // Input: the staging directory swapped for a symlink to a directory outside the tree after
    // it was opened. Output: a temporary file for a received file cannot be created (the link
    // is not followed); nothing appears outside.
    #[test]
    fn a_temporary_file_is_never_created_through_a_swapped_staging_directory() {
        let (root, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let staging = Staging::open(root.path()).unwrap();
        let dir = root.path().join(super::super::staging::STAGING_DIR);
        fs::remove_dir(&dir).unwrap();
        std::os::unix::fs::symlink(outside.path(), &dir).unwrap();
        assert!(TempFile::create(root.path(), Some(&staging), "f", false).is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        // Beside its target, in a plain directory, it is made.
        fs::create_dir(root.path().join("d")).unwrap();
        let temp = TempFile::create(root.path(), None, "d/f", false).unwrap();
        assert!(temp.path.starts_with(root.path().join("d")));
    }

    // Input: a peer's deletion of `d/passwd` where `d` became a symlink to a directory outside
    // the tree. Output: refused; the outside file stays.
    #[test]
    fn a_deletion_never_goes_through_a_symlinked_directory() {
        let (root, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(outside.path().join("passwd"), b"root:x:0:0").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("d")).unwrap();
        assert!(delete(root.path(), "d/passwd", &[]).is_err());
        assert!(outside.path().join("passwd").exists());
    }

    // Input: a peer's deletion of the directory `d/cache`, and a room made for another kind
    // at `d/cache`, where `d` became a symlink to a directory outside the tree whose `cache`
    // holds only excluded files (`*.tmp`) and an excluded directory. Output: both refused;
    // everything outside stays. (The directory's excluded content was read and removed through
    // the link, recursively, before its own removal was refused.)
    #[test]
    fn a_directory_is_never_emptied_through_a_symlinked_directory() {
        let (root, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cache = outside.path().join("cache");
        fs::create_dir_all(cache.join("sub.tmp")).unwrap();
        fs::write(cache.join("a.tmp"), b"outside").unwrap();
        fs::write(cache.join("sub.tmp/b"), b"outside").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("d")).unwrap();
        let exclude = [Pattern::new("*.tmp").unwrap()];
        assert!(delete(root.path(), "d/cache", &exclude).is_err());
        assert!(remove_any(root.path(), "d/cache").is_err());
        assert!(cache.join("a.tmp").exists() && cache.join("sub.tmp/b").exists());

        // In a plain directory, the same goes whole, excluded content and all.
        let plain = root.path().join("p/cache");
        fs::create_dir_all(plain.join("sub.tmp")).unwrap();
        fs::write(plain.join("a.tmp"), b"x").unwrap();
        fs::write(plain.join("sub.tmp/b"), b"x").unwrap();
        std::os::unix::fs::symlink("/", plain.join("sub.tmp/link")).unwrap();
        assert_eq!(
            delete(root.path(), "p/cache", &exclude).unwrap(),
            Deleted::Yes
        );
        assert!(!plain.exists());
        fs::write(root.path().join("p/file"), b"x").unwrap();
        remove_any(root.path(), "p/file").unwrap();
        assert!(!root.path().join("p/file").exists());
    }

    // Input: the mode of a peer's entry applied to a path that was swapped for a symlink to a
    // file outside the tree. Output: refused; the outside file keeps its mode (no set-user-ID
    // bit passed on through the link).
    #[test]
    fn a_mode_is_never_applied_through_a_symlink() {
        let (root, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let target = outside.path().join("bash");
        fs::write(&target, b"#!").unwrap();
        fs::set_permissions(&target, Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&target, root.path().join("f")).unwrap();
        assert!(set_attributes(root.path(), "f", 0o4755, None, None).is_err());
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o755);
    }

    // Input: a peer's mode, mtime and owner for `d/bash`, where `d` became a symlink to a
    // directory outside the tree. Output: each refused; the outside file keeps its mode, mtime
    // and owner. (They were set by path, through the link: a set-user-ID bit, or root's
    // `chown`, could land on any file.)
    #[test]
    fn attributes_are_never_set_through_a_symlinked_directory() {
        let (root, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let target = outside.path().join("bash");
        fs::write(&target, b"#!").unwrap();
        fs::set_permissions(&target, Permissions::from_mode(0o755)).unwrap();
        let before = fs::metadata(&target).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("d")).unwrap();
        let owner = Owner {
            uid: before.uid() + 1,
            gid: before.gid() + 1,
        };
        assert!(set_attributes(root.path(), "d/bash", 0o4755, Some(1), None).is_err());
        assert!(set_owner(root.path(), "d/bash", Some(owner)).is_err());
        let after = fs::metadata(&target).unwrap();
        assert_eq!(after.mode() & 0o7777, 0o755);
        assert_eq!(mtime_ns(&after), mtime_ns(&before));
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    }

    // Input: a conflict copy's name taken by an existing file. Output: the existing file is
    // kept; the rename refuses.
    #[test]
    fn a_conflict_copy_never_replaces_a_file() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("a.txt"), b"loser").unwrap();
        fs::write(root.path().join("a.conflict.txt"), b"older copy").unwrap();
        let refused = rename_noreplace_beneath(root.path(), "a.txt", "a.conflict.txt");
        assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            fs::read(root.path().join("a.conflict.txt")).unwrap(),
            b"older copy"
        );
    }

    // Input: chown results: refused by the filesystem (EPERM), by a user namespace (EINVAL),
    // and failed otherwise (EIO). Output: the refusals are not failures, the rest is.
    #[test]
    fn a_refused_chown_is_not_a_failure() {
        let errno = |code| Err(io::Error::from_raw_os_error(code));
        assert!(unless_refused(errno(1)).is_ok(), "EPERM");
        assert!(unless_refused(errno(22)).is_ok(), "EINVAL");
        assert!(unless_refused(errno(5)).is_err(), "EIO");
        assert!(unless_refused(Ok(())).is_ok());
    }

    // Input: a file set to the wanted mtime; then one whose filesystem kept another mtime
    // (FAT's range starts in 1980); then one written after the mtime was set. Output: the
    // disk's mtime is recorded for the first two, the wanted one for the written file, so that
    // the scan finds that write.
    #[test]
    fn the_recorded_mtime_tells_the_filesystems_doing_from_a_local_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"content").unwrap();
        let wanted = 1_700_000_000_123_456_789;
        let before = unix_ns(SystemTime::now());
        set_attributes(dir.path(), "f", 0o644, Some(wanted), None).unwrap();
        assert_eq!(recorded(&path, wanted, before).unwrap().mtime_ns, wanted);

        let clamped = 315_532_800_000_000_000;
        set_attributes(dir.path(), "f", 0o644, Some(clamped), None).unwrap();
        assert_eq!(recorded(&path, 0, before).unwrap().mtime_ns, clamped);

        let before = unix_ns(SystemTime::now());
        set_attributes(dir.path(), "f", 0o644, Some(wanted), None).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        fs::write(&path, b"edited!").unwrap();
        assert_eq!(recorded(&path, wanted, before).unwrap().mtime_ns, wanted);
        assert_ne!(mtime_ns(&fs::metadata(&path).unwrap()), wanted);
    }

    // Input: a FIFO where a file was (no writer ever comes), and a symlink to a file. Output:
    // both refused at once; a plain open would block on the FIFO for ever.
    #[test]
    fn a_fifo_or_a_symlink_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("was-a-file");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = open_file_no_wait(&fifo).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        fs::write(dir.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("link")).unwrap();
        assert!(open_file_no_wait(&dir.path().join("link")).is_err());
        assert!(open_file_no_wait(&dir.path().join("f")).is_ok());
    }
}
