//! Crash-safe whole-file replacement: write a temp file, fsync it, rename it over the target,
//! fsync the directory. After a crash the target is either the old or the new content, never a
//! mix; a leftover temp file is garbage that [`remove_temps`] clears.

use super::error::MetaError;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Suffix of temp files; nothing else in a metadata directory ends with it.
pub(super) const TEMP_SUFFIX: &str = ".tmp";

/// Replaces `dir/name` with `bytes` atomically and durably.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), MetaError> {
    let target = dir.join(name);
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(MetaError::io(&temp))?;
    file.write_all(bytes).map_err(MetaError::io(&temp))?;
    file.sync_all().map_err(MetaError::io(&temp))?;
    drop(file);
    fs::rename(&temp, &target).map_err(MetaError::io(&target))?;
    sync_dir(dir)
}

/// Makes renames and creations in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), MetaError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(MetaError::io(dir))
}

/// Deletes temp files a crash left behind: they never became the real file, so they hold nothing
/// that counts.
pub(crate) fn remove_temps(dir: &Path) -> Result<(), MetaError> {
    for entry in fs::read_dir(dir).map_err(MetaError::io(dir))? {
        let entry = entry.map_err(MetaError::io(dir))?;
        if entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
            let path = entry.path();
            tracing::info!(file = %path.display(), "removing leftover temp file");
            fs::remove_file(&path).map_err(MetaError::io(&path))?;
        }
    }
    Ok(())
}

/// The first 8 bytes of SHA-256 over `bytes`, for per-record checks.
pub(super) fn check64(bytes: &[u8]) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_le_bytes(out)
}

/// SHA-256 over `bytes`, for whole-file checksums.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
