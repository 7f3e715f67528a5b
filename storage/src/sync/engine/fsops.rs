//! The receiver's disk operations, all blocking: resolving a peer's path without ever going
//! through a symlinked directory, writing a file under a temporary name (in the
//! [`super::staging`] directory, or beside its target) to be renamed into place, deleting, and
//! telling whether the disk still matches the index.

use std::{
    fs::{self, File, FileTimes, OpenOptions, Permissions},
    io::{self, Read, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
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
    index::{ContentHasher, Entry, Hash, Kind},
    watch::TEMP_PREFIX,
};

/// Checks every parent directory of `rel` under `root`: none may be a symlink (a peer must not
/// make us write through a link to elsewhere) or a non-directory. With `create`, missing ones
/// are made (one level at a time, each checked), mode 0755. Returns the filesystem of `rel`'s
/// directory (`None` for the root itself).
pub(super) fn check_parents(root: &Path, rel: &str, create: bool) -> io::Result<Option<u64>> {
    let mut dir = root.to_path_buf();
    let mut dev = None;
    let mut segments: Vec<&str> = rel.split('/').collect();
    segments.pop();
    for segment in segments {
        dir.push(segment);
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
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(dev)
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
/// its content is hashed elsewhere.
pub(super) struct TempFile {
    pub(super) path: PathBuf,
    file: File,
    hasher: Option<ContentHasher>,
    pub(super) written: u64,
}

impl std::fmt::Debug for TempFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempFile")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish()
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
            let created = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            match created {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Self {
            path,
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

    /// Flushes to disk, sets `mode` and `mtime_ns`, and returns the content's hash if it
    /// was hashed; the file is then ready to be renamed into place.
    pub(super) fn finish(self, mode: u32, mtime_ns: i64) -> io::Result<(PathBuf, Option<Hash>)> {
        self.file.set_permissions(Permissions::from_mode(mode))?;
        self.file
            .set_times(FileTimes::new().set_modified(system_time(mtime_ns)))?;
        self.file.sync_all()?;
        let hash = self.hasher.map(|hasher| hasher.finish());
        Ok((self.path, hash))
    }

    /// Gives up on the file.
    pub(super) fn discard(self) {
        drop(self.file);
        let _ = fs::remove_file(&self.path);
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

/// The mtime to record for `path` once it was set to `wanted`: the disk's when it is `wanted`
/// rounded down (a filesystem with coarser timestamps), so that the scan does not take the
/// rounding for a change of ours; `wanted` when the disk's is later, which only a local write
/// made since can explain, so that the scan finds that write.
pub(super) fn recorded_mtime(path: &Path, wanted: i64) -> io::Result<i64> {
    let disk = mtime_ns(&fs::symlink_metadata(path)?);
    Ok(disk.min(wanted))
}

/// Sets a file's or directory's mode and mtime (not a symlink's: Linux ignores a link's mode,
/// and its mtime is [`set_link_mtime`]'s).
pub(super) fn set_attributes(path: &Path, mode: u32, mtime_ns: Option<i64>) -> io::Result<()> {
    fs::set_permissions(path, Permissions::from_mode(mode))?;
    if let Some(ns) = mtime_ns {
        File::open(path)?.set_times(FileTimes::new().set_modified(system_time(ns)))?;
    }
    Ok(())
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
/// so that a change not yet scanned is never overwritten: for files size, mtime and mode,
/// for the rest the kind. An unreadable path counts as matching (the scan would leave it).
pub(super) fn disk_matches(root: &Path, rel: &str, entry: Option<&Entry>) -> bool {
    let meta = fs::symlink_metadata(root.join(rel));
    let live = entry.filter(|e| !e.deleted);
    match (live, meta) {
        (None, Err(_)) => true,
        (None, Ok(_)) => false,
        (Some(_), Err(e)) => e.kind() != io::ErrorKind::NotFound,
        (Some(e), Ok(meta)) => {
            let ft = meta.file_type();
            match &e.kind {
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

/// Removes whatever is at `path` to make room for another kind of entry: a file or symlink,
/// or an empty directory.
pub(super) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
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
        fs::remove_file(&path)?;
        return Ok(Deleted::Yes);
    }
    let mut leftovers = Vec::new();
    for child in fs::read_dir(&path)? {
        let child = child?;
        let name = child.file_name();
        let name = name.to_string_lossy();
        let is_dir = child.file_type()?.is_dir();
        let child_rel = format!("{rel}/{name}");
        if name.starts_with(TEMP_PREFIX) || is_excluded(exclude, &child_rel, is_dir) {
            leftovers.push((child.path(), is_dir));
        } else {
            return Ok(Deleted::NotEmpty);
        }
    }
    for (child, is_dir) in leftovers {
        if is_dir {
            fs::remove_dir_all(child)?;
        } else {
            fs::remove_file(child)?;
        }
    }
    fs::remove_dir(&path)?;
    Ok(Deleted::Yes)
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
    let mut source = File::open(from)?;
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

/// Opens `rel` for a peer: a regular file reached without any symlink.
pub(super) fn open_regular(root: &Path, rel: &str) -> io::Result<(File, fs::Metadata)> {
    check_parents(root, rel, false)?;
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let file = File::open(&path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}
