//! The staging directory, `ROOT/.fulcrum-tmp-staging`: received files are written there and
//! renamed into place. Nothing watches it (its name is a temporary file's, which the watcher
//! and the scan skip), so a received file costs the watcher one event, the rename into its
//! directory, instead of one for each write, mode, mtime, close and rename of a temporary file
//! beside it; and what a crash leaves behind is in one place, emptied at start.
//!
//! A file whose directory is on another filesystem than the staging directory (a mount inside
//! the tree) is still written beside its target, since a rename cannot cross filesystems; so
//! is every file when the staging directory cannot be made (a read-only root, or something
//! that is not our directory in its place).

use std::{
    ffi::{CStr, CString},
    fs::{self, Permissions},
    io,
    os::fd::AsFd,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use tracing::warn;

/// The staging directory's name in the root (one of [`crate::sync::watch::is_temp_name`]).
pub(super) const STAGING_DIR: &str = ".fulcrum-tmp-staging";

/// A usable staging directory.
#[derive(Debug)]
pub(super) struct Staging {
    dir: PathBuf,
    /// Its filesystem.
    dev: u64,
}

impl Staging {
    /// Creates the staging directory under `root`, or empties the one a previous run left;
    /// `None` (logged) when it cannot be used. Call it before any transfer starts.
    pub(super) fn open(root: &Path) -> Option<Self> {
        let dir = root.join(STAGING_DIR);
        let made = || -> io::Result<(fs::File, u64)> {
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            // Not a symlink planted to make us write elsewhere (opened without following one,
            // so that the mode goes to what was checked), and on the root's filesystem.
            let opened = fs::File::from(rustix::fs::open(
                &dir,
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?);
            let meta = opened.metadata()?;
            if meta.dev() != fs::metadata(root)?.dev() {
                return Err(io::Error::other("on another filesystem than the root"));
            }
            opened.set_permissions(Permissions::from_mode(0o700))?;
            Ok((opened, meta.dev()))
        };
        let (opened, dev) = match made() {
            Ok(made) => made,
            Err(error) => {
                warn!(dir = %dir.display(), %error,
                    "sync: no staging directory, temporary files go beside their targets");
                return None;
            }
        };
        empty(&opened, &dir);
        Some(Self { dir, dev })
    }

    /// Where a temporary file for a target in a directory on filesystem `dev` goes: here, if
    /// a rename from here can reach it.
    pub(super) fn dir_for(&self, dev: Option<u64>) -> Option<&Path> {
        match dev {
            Some(dev) if dev != self.dev => None,
            _ => Some(&self.dir),
        }
    }
}

/// Removes what a previous run left in the staging directory (only ever our temporary files),
/// through `dir`, the directory `path` that [`Staging::open`] opened and checked: one swapped
/// for a symlink since cannot make us remove what the link points to.
fn empty(dir: &fs::File, path: &Path) {
    let names = match children(dir) {
        Ok(names) => names,
        Err(error) => {
            warn!(dir = %path.display(), %error, "sync: cannot list the staging directory");
            return;
        }
    };
    for name in names {
        if let Err(error) = remove_at(dir, &name) {
            warn!(dir = %path.display(), name = %name.to_string_lossy(), %error,
                "sync: cannot remove a leftover temporary file");
        }
    }
}

/// The names in `dir`, but `.` and `..`.
fn children(dir: impl AsFd) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Removes `name` from `dir`, a directory with all it holds, never following a symlink.
fn remove_at(dir: impl AsFd, name: &CStr) -> io::Result<()> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
        Err(rustix::io::Errno::ISDIR) => {}
        done => return Ok(done?),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let child = rustix::fs::openat(&dir, name, flags, Mode::empty())?;
    for grandchild in children(&child)? {
        remove_at(&child, &grandchild)?;
    }
    rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::sync::watch::is_temp_name;

    #[test]
    fn the_staging_directory_is_skipped_like_a_temporary_file() {
        assert!(is_temp_name(STAGING_DIR.as_bytes()));
    }

    // Input: a staging directory holding a leftover file and a directory with a file in it,
    // opened, then moved away and replaced by a symlink to a directory holding a file.
    // Output: emptying it removes both leftovers from the moved directory, and nothing where
    // the link points (by path, `victim/keep` would be gone).
    #[test]
    fn emptying_goes_through_the_opened_directory_not_its_path() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(STAGING_DIR);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join(".fulcrum-tmp-0123"), b"half").unwrap();
        fs::write(dir.join("sub/x"), b"half").unwrap();
        let opened = fs::File::open(&dir).unwrap();
        let moved = root.path().join("moved");
        fs::rename(&dir, &moved).unwrap();
        let victim = root.path().join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("keep"), b"mine").unwrap();
        std::os::unix::fs::symlink(&victim, &dir).unwrap();
        empty(&opened, &dir);
        assert!(victim.join("keep").exists(), "emptied through the symlink");
        assert_eq!(fs::read_dir(&moved).unwrap().count(), 0);
    }

    // Input: a root whose staging directory holds a leftover file. Output: opening it keeps
    // the directory, empties it, and places targets on the same filesystem in it.
    #[test]
    fn opening_empties_leftovers() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(STAGING_DIR);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(".fulcrum-tmp-0123"), b"half").unwrap();
        let staging = Staging::open(root.path()).unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        let dev = fs::metadata(root.path()).unwrap().dev();
        assert_eq!(staging.dir_for(Some(dev)), Some(dir.as_path()));
        assert_eq!(staging.dir_for(None), Some(dir.as_path()));
        assert_eq!(staging.dir_for(Some(dev + 1)), None);
    }

    // Input: a symlink to a directory outside the tree where the staging directory goes.
    // Output: not used (temporary files then go beside their targets), and the outside
    // directory neither emptied nor given mode 0700 through the link.
    #[test]
    fn a_symlink_in_its_place_is_not_used() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        fs::write(elsewhere.path().join("keep"), b"x").unwrap();
        fs::set_permissions(elsewhere.path(), Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join(STAGING_DIR)).unwrap();
        assert!(Staging::open(root.path()).is_none());
        assert!(elsewhere.path().join("keep").exists());
        let mode = fs::metadata(elsewhere.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o755);
    }
}
