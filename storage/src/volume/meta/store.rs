//! The metadata directory of one volume (`state_dir/volume/NAME/`): the superblock, the bitmap
//! file and the activity log, kept consistent across crashes.
//!
//! - `superblock`: size, generation ids, disk states and role flags, replaced atomically
//!   (temp, fsync, rename, fsync dir) and checked with SHA-256. It carries the clean flag: false
//!   from open to close, so finding it false means a crash.
//! - `bitmap`: the out-of-sync bitmap, same atomic replacement; written on checkpoints, on clean
//!   close, and before an extent leaves the activity log. It may lag the in-memory bitmap only
//!   for extents still in the activity log, which a crash marks out of sync wholesale.
//! - `activity-log`: see [`super::activity_log`].
//!
//! A missing or corrupt superblock or bitmap is an error naming the file, never a silent reset:
//! resetting would forget which blocks differ from the peer.

use super::activity_log::{self, ActivityLog, HotExtents};
use super::bitmap::{BLOCK_SIZE, Bitmap};
use super::durable::{self, sha256};
use super::error::MetaError;
use super::generation::{DiskState, GenerationIds};
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

const SUPERBLOCK: &str = "superblock";
const BITMAP: &str = "bitmap";
const ACTIVITY_LOG: &str = "activity-log";

/// The persistent state a caller reads and changes through [`Meta::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Generation identifiers.
    pub ids: GenerationIds,
    /// This node's disk.
    pub disk: DiskState,
    /// The peer's disk as last known (`None`: never connected or unknown).
    pub peer_disk: Option<DiskState>,
    /// This node is Primary (set on promotion, cleared on demotion), so a crash knows.
    pub primary: bool,
    /// This node crashed while Primary (DRBD's `CRASHED_PRIMARY`): it may hold writes the peer
    /// lacks. Set by [`Meta::open`]; the caller clears it after the next successful handshake.
    pub crashed_primary: bool,
}

/// What [`Meta::open`] found after an unclean shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Activity-log extents marked out of sync, sorted.
    pub extents: Vec<u64>,
    /// Out-of-sync bytes after marking them.
    pub out_of_sync_bytes: u64,
}

/// An open metadata directory. Dropping it without [`Meta::close`] is what a crash looks like.
#[derive(Debug)]
pub struct Meta {
    dir: PathBuf,
    size: u64,
    state: State,
    bitmap: Bitmap,
    al: ActivityLog,
    /// Extents whose bitmap bits were set since the bitmap file was last written.
    unpersisted: HashSet<u64>,
    recovery: Option<Recovery>,
}

impl Meta {
    /// Creates the metadata of a new volume of `size` bytes in `dir` (created if needed), with the
    /// just-created generation id. `disk` is `UpToDate` when Fulcrum created the backing file
    /// itself (zeros, so two such nodes are equal and connect without a sync) and `Inconsistent`
    /// when it adopted existing data. Refuses to overwrite existing metadata.
    pub fn create(dir: &Path, size: u64, disk: DiskState) -> Result<Self, MetaError> {
        Self::create_with(dir, size, disk, activity_log::DEFAULT_EXTENTS)
    }

    /// Opens existing metadata. After an unclean shutdown every extent in the activity log is
    /// marked out of sync (and persisted) and [`Meta::recovery`] says what was found.
    pub fn open(dir: &Path) -> Result<Self, MetaError> {
        Self::open_with(dir, activity_log::DEFAULT_EXTENTS)
    }

    /// [`Meta::create`] with an activity log of `al_extents` extents.
    pub fn create_with(
        dir: &Path,
        size: u64,
        disk: DiskState,
        al_extents: usize,
    ) -> Result<Self, MetaError> {
        fs::create_dir_all(dir).map_err(MetaError::io(dir))?;
        let sb_path = dir.join(SUPERBLOCK);
        if sb_path.exists() {
            return Err(MetaError::Exists { file: sb_path });
        }
        durable::remove_temps(dir)?;
        let mut bitmap = Bitmap::new(size);
        if disk == DiskState::Inconsistent {
            // Data this metadata knows nothing of (an existing backing adopted): every block
            // differs from the peer's until a sync says otherwise, so whichever sync comes is a
            // full one, as after DRBD's create-md.
            bitmap.set_all();
        }
        write_bitmap(dir, &bitmap)?;
        let al = ActivityLog::create(dir, ACTIVITY_LOG, al_extents)?;
        let state = State {
            ids: GenerationIds::just_created(),
            disk,
            peer_disk: None,
            primary: false,
            crashed_primary: false,
        };
        // The superblock goes last: until it exists, the volume was not created.
        Self::mark_open(dir, size, state, bitmap, al, None)
    }

    /// [`Meta::open`] with an activity log of `al_extents` extents (it may differ from the
    /// last open's).
    pub fn open_with(dir: &Path, al_extents: usize) -> Result<Self, MetaError> {
        let sb_path = dir.join(SUPERBLOCK);
        if !sb_path.exists() {
            return Err(MetaError::Missing { file: sb_path });
        }
        durable::remove_temps(dir)?;
        let Superblock {
            size,
            clean,
            mut state,
        } = read_superblock(&sb_path)?;
        let mut bitmap = read_bitmap(&dir.join(BITMAP), size)?;
        let mut recovery = None;
        if !clean {
            // Each step below is idempotent, so a crash during recovery just recovers again.
            let extents = ActivityLog::recover(&dir.join(ACTIVITY_LOG))?;
            for &e in &extents {
                let r = ActivityLog::extent_range(e);
                bitmap.set_range(r.start, r.end - r.start);
            }
            write_bitmap(dir, &bitmap)?;
            state.crashed_primary |= state.primary;
            state.primary = false;
            state.ids.set_role(false);
            tracing::warn!(
                dir = %dir.display(),
                extents = extents.len(),
                out_of_sync = bitmap.out_of_sync_bytes(),
                crashed_primary = state.crashed_primary,
                "unclean shutdown: activity log applied"
            );
            recovery = Some(Recovery {
                extents,
                out_of_sync_bytes: bitmap.out_of_sync_bytes(),
            });
        }
        // Only after the recovered bits are in the bitmap file may the old log go.
        let al = ActivityLog::create(dir, ACTIVITY_LOG, al_extents)?;
        Self::mark_open(dir, size, state, bitmap, al, recovery)
    }

    /// Writes the superblock as open (not clean, so that a crash from now on is found) and
    /// returns the open metadata.
    fn mark_open(
        dir: &Path,
        size: u64,
        state: State,
        bitmap: Bitmap,
        al: ActivityLog,
        recovery: Option<Recovery>,
    ) -> Result<Self, MetaError> {
        write_superblock(
            dir,
            &Superblock {
                size,
                clean: false,
                state,
            },
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
            size,
            state,
            bitmap,
            al,
            unpersisted: HashSet::new(),
            recovery,
        })
    }

    /// The volume size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The persistent state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Changes the persistent state and writes the superblock before returning; on error the
    /// state is unchanged. For generation changes, role changes and disk states.
    pub fn update(&mut self, change: impl FnOnce(&mut State)) -> Result<(), MetaError> {
        let mut next = self.state;
        change(&mut next);
        write_superblock(
            &self.dir,
            &Superblock {
                size: self.size,
                clean: false,
                state: next,
            },
        )?;
        self.state = next;
        Ok(())
    }

    /// What the last open recovered from, if the shutdown before it was unclean.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// The out-of-sync bitmap.
    pub fn bitmap(&self) -> &Bitmap {
        &self.bitmap
    }

    /// Before a write to `[offset, offset + len)` reaches the local disk: records its extents in
    /// the activity log (durably). Pair with [`Meta::end_write`].
    pub fn begin_write(&mut self, offset: u64, len: u64) -> Result<(), MetaError> {
        let (dir, bitmap, unpersisted) = (&self.dir, &self.bitmap, &mut self.unpersisted);
        self.al.begin_write(offset, len, |evicted| {
            // An extent leaving the log is no longer covered by crash recovery: its bits must
            // be in the bitmap file first.
            if evicted.iter().any(|e| unpersisted.contains(e)) {
                write_bitmap(dir, bitmap)?;
                unpersisted.clear();
            }
            Ok(())
        })
    }

    /// Starts writes into extents already in the activity log from any thread, without this
    /// owner (see [`HotExtents`]).
    pub fn hot_extents(&self) -> HotExtents {
        self.al.hot_extents()
    }

    /// After the write finished locally and on the peer (or was marked out of sync).
    pub fn end_write(&mut self, offset: u64, len: u64) {
        self.al.end_write(offset, len);
    }

    /// Before flushing both nodes' disks; see [`ActivityLog::begin_flush`].
    pub fn begin_flush(&mut self) -> u64 {
        self.al.begin_flush()
    }

    /// After flush `flush` reached both disks; see [`ActivityLog::end_flush`].
    pub fn end_flush(&mut self, flush: u64) {
        self.al.end_flush(flush);
    }

    /// Marks `[offset, offset + len)` out of sync (a write the peer did not get). Covered by the
    /// activity log when inside a write in flight; otherwise persisted at once.
    pub fn mark_out_of_sync(&mut self, offset: u64, len: u64) -> Result<(), MetaError> {
        self.bitmap.set_range(offset, len);
        let r = activity_log::extents(offset, len);
        if r.clone().all(|e| self.al.contains(e)) {
            self.unpersisted.extend(r);
            Ok(())
        } else {
            self.persist_bitmap()
        }
    }

    /// Marks every extent of the activity log out of sync, persisted: after a failed flush of
    /// the local disk, any write since the last good one may be lost here, and the kernel
    /// reports such a loss only once.
    pub fn mark_log_out_of_sync(&mut self) -> Result<(), MetaError> {
        for extent in self.al.active() {
            let range = ActivityLog::extent_range(extent);
            self.bitmap.set_range(range.start, range.end - range.start);
        }
        self.persist_bitmap()
    }

    /// Marks `[offset, offset + len)` in sync (resync progress). Not persisted at once: a stale
    /// bit only makes a later resync copy a block again.
    pub fn mark_in_sync(&mut self, offset: u64, len: u64) {
        self.bitmap.clear_range(offset, len);
    }

    /// Adds the peer's bitmap (received in the handshake) and persists the result.
    pub fn merge_peer_bitmap(&mut self, bytes: &[u8]) -> Result<(), MetaError> {
        self.bitmap.union_bytes(bytes)?;
        self.persist_bitmap()
    }

    /// Marks the whole volume out of sync (a full sync) and persists it.
    pub fn set_all_out_of_sync(&mut self) -> Result<(), MetaError> {
        self.bitmap.set_all();
        self.persist_bitmap()
    }

    /// Writes the bitmap and the superblock, bounding what a crash leaves to the activity log.
    pub fn checkpoint(&mut self) -> Result<(), MetaError> {
        self.persist_bitmap()?;
        write_superblock(
            &self.dir,
            &Superblock {
                size: self.size,
                clean: false,
                state: self.state,
            },
        )
    }

    /// Clean shutdown: writes the bitmap, then the superblock with the clean flag, so the next
    /// open needs no recovery. Refused while writes are in flight (the metadata is then left as
    /// after a crash, which is safe).
    pub fn close(mut self) -> Result<(), MetaError> {
        self.al.close().map_err(MetaError::WritesInFlight)?;
        self.persist_bitmap()?;
        write_superblock(
            &self.dir,
            &Superblock {
                size: self.size,
                clean: true,
                state: self.state,
            },
        )
    }

    fn persist_bitmap(&mut self) -> Result<(), MetaError> {
        write_bitmap(&self.dir, &self.bitmap)?;
        self.unpersisted.clear();
        Ok(())
    }
}

struct Superblock {
    size: u64,
    clean: bool,
    state: State,
}

/// ```text
///  0                               8               12              16
/// +-------------------------------+---------------+---------------+
/// | magic "FLCRMETA"              | version (1)   | flags         |
/// +-------------------------------+---------------+---------------+
/// | volume size in bytes (u64)    | block size    | AL extent size|
/// +-------+-------+---------------+---------------+---------------+
/// | disk  | peer  | 0 (6 bytes)           | current id (u64)      |
/// +-------+-------+-----------------------+-----------------------+
/// | bitmap id (u64)               | history[0] (u64)              |
/// +-------------------------------+-------------------------------+
/// | history[1] (u64)              | SHA-256 of bytes 0..72 (32 bytes)
/// +-------------------------------+------------------------------ ...
/// ```
/// Little endian. flags: bit 0 clean, bit 1 primary, bit 2 crashed primary. disk: 0 Inconsistent,
/// 1 Outdated, 2 UpToDate; peer: 0 unknown, else disk + 1.
const SB_MAGIC: [u8; 8] = *b"FLCRMETA";
const SB_VERSION: u32 = 1;
const SB_BODY: usize = 72;
const SB_LEN: usize = SB_BODY + 32;
const FLAG_CLEAN: u32 = 1;
const FLAG_PRIMARY: u32 = 2;
const FLAG_CRASHED_PRIMARY: u32 = 4;

fn write_superblock(dir: &Path, sb: &Superblock) -> Result<(), MetaError> {
    let s = &sb.state;
    let flags = [
        (sb.clean, FLAG_CLEAN),
        (s.primary, FLAG_PRIMARY),
        (s.crashed_primary, FLAG_CRASHED_PRIMARY),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |acc, (_, flag)| acc | flag);
    let mut b = Vec::with_capacity(SB_LEN);
    b.extend_from_slice(&SB_MAGIC);
    b.extend_from_slice(&SB_VERSION.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&sb.size.to_le_bytes());
    b.extend_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
    b.extend_from_slice(&(activity_log::EXTENT_SIZE as u32).to_le_bytes());
    b.push(disk_code(s.disk));
    b.push(s.peer_disk.map_or(0, |d| disk_code(d) + 1));
    b.extend_from_slice(&[0; 6]);
    for id in [
        s.ids.current,
        s.ids.bitmap,
        s.ids.history[0],
        s.ids.history[1],
    ] {
        b.extend_from_slice(&id.to_le_bytes());
    }
    let sum = sha256(&b);
    b.extend_from_slice(&sum);
    durable::write_atomic(dir, SUPERBLOCK, &b)
}

/// Refuses a file (whose magic was checked) of another format version than `expected`.
fn check_version(path: &Path, b: &[u8], expected: u32) -> Result<(), MetaError> {
    let version = le32(&b[8..12]);
    if version != expected {
        return Err(MetaError::Version {
            file: path.to_path_buf(),
            version,
        });
    }
    Ok(())
}

fn read_superblock(path: &Path) -> Result<Superblock, MetaError> {
    let b = fs::read(path).map_err(MetaError::io(path))?;
    let corrupt = |why: &str| MetaError::corrupt(path, why);
    if b.len() < 12 || b[..8] != SB_MAGIC {
        return Err(corrupt("not a Fulcrum superblock (bad magic)"));
    }
    check_version(path, &b, SB_VERSION)?;
    if b.len() != SB_LEN {
        return Err(corrupt(&format!("{} bytes, expected {SB_LEN}", b.len())));
    }
    if sha256(&b[..SB_BODY]) != b[SB_BODY..] {
        return Err(corrupt("checksum mismatch"));
    }
    if u64::from(le32(&b[24..28])) != BLOCK_SIZE
        || u64::from(le32(&b[28..32])) != activity_log::EXTENT_SIZE
    {
        return Err(corrupt("unexpected block or extent size"));
    }
    let flags = le32(&b[12..16]);
    let disk = disk_from(b[32]).ok_or_else(|| corrupt("bad disk state"))?;
    let peer_disk = match b[33] {
        0 => None,
        n => Some(disk_from(n - 1).ok_or_else(|| corrupt("bad peer disk state"))?),
    };
    let id = |at: usize| le64(&b[at..at + 8]);
    Ok(Superblock {
        size: le64(&b[16..24]),
        clean: flags & FLAG_CLEAN != 0,
        state: State {
            ids: GenerationIds {
                current: id(40),
                bitmap: id(48),
                history: [id(56), id(64)],
            },
            disk,
            peer_disk,
            primary: flags & FLAG_PRIMARY != 0,
            crashed_primary: flags & FLAG_CRASHED_PRIMARY != 0,
        },
    })
}

/// ```text
/// magic "FLCRBMAP" (8) | version (u32) | block size (u32) | volume size (u64)
/// | bits (Bitmap::to_bytes) | SHA-256 of everything before (32)
/// ```
const BM_MAGIC: [u8; 8] = *b"FLCRBMAP";
const BM_VERSION: u32 = 1;
const BM_HEADER: usize = 24;

fn write_bitmap(dir: &Path, bitmap: &Bitmap) -> Result<(), MetaError> {
    let bits = bitmap.to_bytes();
    let mut b = Vec::with_capacity(BM_HEADER + bits.len() + 32);
    b.extend_from_slice(&BM_MAGIC);
    b.extend_from_slice(&BM_VERSION.to_le_bytes());
    b.extend_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
    b.extend_from_slice(&bitmap.size().to_le_bytes());
    b.extend_from_slice(&bits);
    let sum = sha256(&b);
    b.extend_from_slice(&sum);
    durable::write_atomic(dir, BITMAP, &b)
}

fn read_bitmap(path: &Path, size: u64) -> Result<Bitmap, MetaError> {
    let b = fs::read(path).map_err(MetaError::io(path))?;
    let corrupt = |why: &str| MetaError::corrupt(path, why);
    if b.len() < BM_HEADER + 32 || b[..8] != BM_MAGIC {
        return Err(corrupt("not a Fulcrum bitmap (bad magic or too short)"));
    }
    check_version(path, &b, BM_VERSION)?;
    let body = b.len() - 32;
    if sha256(&b[..body]) != b[body..] {
        return Err(corrupt("checksum mismatch"));
    }
    if u64::from(le32(&b[12..16])) != BLOCK_SIZE || le64(&b[16..24]) != size {
        return Err(corrupt(
            "block size or volume size differs from the superblock",
        ));
    }
    Bitmap::from_bytes(size, &b[BM_HEADER..body]).map_err(|e| corrupt(&e.to_string()))
}

fn disk_code(d: DiskState) -> u8 {
    match d {
        DiskState::Inconsistent => 0,
        DiskState::Outdated => 1,
        DiskState::UpToDate => 2,
    }
}

fn disk_from(code: u8) -> Option<DiskState> {
    match code {
        0 => Some(DiskState::Inconsistent),
        1 => Some(DiskState::Outdated),
        2 => Some(DiskState::UpToDate),
        _ => None,
    }
}

// Callers pass slices of exactly 4 / 8 bytes cut from length-checked buffers.
fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
