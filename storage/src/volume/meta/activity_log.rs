//! The activity log (DRBD's AL): the 4 MiB extents that may hold writes in flight, recorded
//! durably before such a write starts, so after a crash only those extents need a resync instead
//! of the whole volume.
//!
//! The log is an append-only file of transactions, each fsynced before the write that needed it
//! proceeds. At most `capacity` extents are active (DRBD's `al-extents`); bringing in a new one
//! evicts the least recently used idle one, and the eviction is logged only after the caller has
//! persisted that extent's bitmap bits (the `before_evict` hook), because once it leaves the log a
//! crash no longer marks it out of sync.
//!
//! The API is synchronous (`std::fs`, fsync per transaction): metadata I/O is small and strictly
//! ordered, so the volume task calls it from a blocking context (`spawn_blocking` or a dedicated
//! thread) rather than interleaving it on the runtime.
//!
//! An idle extent leaves only once a flush of both copies covers its last write (DRBD keeps a
//! request's extent until the peer's barrier ack): a write the client was told is done may
//! still sit in either node's cache, and once its extent is out of the log a power cut there
//! would leave the two copies different with no bit saying so. [`ActivityLog::begin_write`]
//! then answers [`MetaError::ActivityLogUnflushed`], the caller flushes both nodes between
//! [`ActivityLog::begin_flush`] and [`ActivityLog::end_flush`], and asks again.
//!
//! A write into extents already in the log needs no transaction, only a count, so it may start
//! from any thread through [`HotExtents`] without a round trip to the log's owner. For that the
//! active set sits behind a mutex shared with those handles, held for in-memory changes only.
//! An evicted extent leaves the set *before* its transaction is written, and a new one joins it
//! only *after* its transaction is fsynced: a handle never lets a write into an extent that a
//! crash would not mark.
//!
//! ```text
//! transaction = header, then `count` entries of 8 bytes (little endian):
//!  0                   4       5       8                              16
//! +-------------------+-------+-------+-------------------------------+
//! | magic "FLAL"      | ver 1 | 0 0 0 | seq (u64, +1 per transaction) |
//! +-------------------+-------+-------+-------------------------------+
//! | count (u32)       | 0 (u32)       | check (u64): SHA-256[..8] of  |
//! |                   |               | bytes 0..24 and the entries   |
//! +-------------------+---------------+-------------------------------+
//! entry: extent number (bits 0..62); bit 63 set = the extent leaves the log
//! ```
//! A crash can only tear the last transaction (the next starts after the previous was fsynced,
//! or after a failed one the whole log is rewritten first), and a torn one never let a write
//! through, so replay stops at the first invalid transaction.

use super::durable::{self, check64};
use super::error::MetaError;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes covered by one activity-log extent (DRBD's `AL_EXTENT_SIZE`).
pub const EXTENT_SIZE: u64 = 4 << 20;

/// Default number of active extents (DRBD's default `al-extents`): about 4.8 GiB of hot region.
pub const DEFAULT_EXTENTS: usize = 1237;

const MAGIC: [u8; 4] = *b"FLAL";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 32;
const LEAVING: u64 = 1 << 63;

/// The active set and the log file backing it.
#[derive(Debug)]
pub struct ActivityLog {
    dir: PathBuf,
    name: String,
    file: File,
    capacity: usize,
    next_seq: u64,
    active: HotExtents,
    /// Transactions in the file, to know when to compact it.
    transactions: u64,
    /// Whether the file is unsafe to append to: it may end in a torn transaction, or the
    /// handle may be to a file already replaced (see [`ActivityLog::transact`]).
    stale: bool,
}

/// The extents in the log and the writes in flight in each; shared with [`HotExtents`].
#[derive(Debug, Default)]
struct Active {
    slots: HashMap<u64, Slot>,
    /// Logical clock for least-recently-used eviction.
    tick: u64,
    /// Set by [`ActivityLog::close`] and [`HotExtents::refuse`]: no hot start any more.
    closed: bool,
    /// Flushes begun ([`ActivityLog::begin_flush`]): a write ending now is covered by the next.
    flushes_begun: u64,
    /// Every write stamped with this flush or an earlier one is on both nodes' disks.
    flushed_through: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    in_flight: u32,
    last_used: u64,
    /// The first flush to begin after the extent's last write ended; 0: never written.
    covered_by: u64,
}

impl Slot {
    /// Whether the extent may leave the log: no write in it is in flight, and every write that
    /// ended is flushed on both nodes.
    fn evictable(&self, flushed_through: u64) -> bool {
        self.in_flight == 0 && self.covered_by <= flushed_through
    }
}

impl Active {
    /// Counts one more write in each extent of `touched`, all of which are in the set.
    fn pin(&mut self, touched: Range<u64>) {
        self.tick += 1;
        let tick = self.tick;
        for e in touched {
            let slot = self.slots.entry(e).or_insert(Slot {
                in_flight: 0,
                last_used: 0,
                covered_by: 0,
            });
            slot.in_flight += 1;
            slot.last_used = tick;
        }
    }
}

/// The log's active set, for starting writes into extents already in it from any thread.
#[derive(Debug, Clone, Default)]
pub struct HotExtents(Arc<Mutex<Active>>);

impl HotExtents {
    /// [`ActivityLog::begin_write`] for a write whose extents are all in the log already, which
    /// needs no transaction. Returns whether the write started; when not, the log's owner must
    /// start it. Paired with [`ActivityLog::end_write`] like the owner's.
    pub fn try_begin_write(&self, offset: u64, len: u64) -> bool {
        let touched = extents(offset, len);
        let mut active = self.lock();
        if active.closed || !touched.clone().all(|e| active.slots.contains_key(&e)) {
            return false;
        }
        active.pin(touched);
        true
    }

    /// Refuses every hot start from now on: the log's owner is gone, so nothing would end
    /// the writes or mark what they change.
    pub fn refuse(&self) {
        self.lock().closed = true;
    }

    fn lock(&self) -> MutexGuard<'_, Active> {
        // Every change under this lock is complete before it is released: a panic elsewhere
        // cannot leave the set half changed.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ActivityLog {
    /// The extents the log at `path` lists as active: after an unclean shutdown, each may hold
    /// writes the peer lacks (or the peer's that we lack) and must be resynced. Sorted.
    pub fn recover(path: &Path) -> Result<Vec<u64>, MetaError> {
        let bytes = fs::read(path).map_err(MetaError::io(path))?;
        let mut active = std::collections::BTreeSet::new();
        let mut pos = 0;
        let mut expect_seq = None;
        while pos < bytes.len() {
            let Some((seq, entries, len)) = parse(&bytes[pos..]) else {
                break;
            };
            if expect_seq.is_some_and(|s| s != seq) {
                return Err(MetaError::corrupt(
                    path,
                    format!("transaction {seq} out of order"),
                ));
            }
            for entry in entries {
                if entry & LEAVING == 0 {
                    active.insert(entry);
                } else {
                    active.remove(&(entry & !LEAVING));
                }
            }
            expect_seq = Some(seq + 1);
            pos += len;
        }
        if pos < bytes.len() {
            tracing::warn!(file = %path.display(), ignored = bytes.len() - pos, "torn activity-log tail ignored");
        }
        Ok(active.into_iter().collect())
    }

    /// Starts an empty log `dir/name` holding at most `capacity` extents, replacing any previous
    /// one atomically (after its extents were recovered).
    pub fn create(dir: &Path, name: &str, capacity: usize) -> Result<Self, MetaError> {
        durable::write_atomic(dir, name, &[])?;
        let file = open_append(&dir.join(name))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            file,
            capacity: capacity.max(1),
            next_seq: 0,
            active: HotExtents::default(),
            transactions: 0,
            stale: false,
        })
    }

    /// Before writing `[offset, offset + len)`: makes sure every extent it touches is in the log,
    /// durably, evicting idle extents if the log is full. `before_evict` runs first with the
    /// extents about to leave (the caller persists their bitmap bits there); if it fails nothing
    /// changes. If the transaction fails, the extents stay out of the set. Every successful call
    /// must be paired with [`ActivityLog::end_write`].
    ///
    /// Only idle extents whose writes a flush has covered are evicted: when too few are, this
    /// fails with [`MetaError::ActivityLogUnflushed`] and changes nothing.
    pub fn begin_write(
        &mut self,
        offset: u64,
        len: u64,
        before_evict: impl FnOnce(&[u64]) -> Result<(), MetaError>,
    ) -> Result<(), MetaError> {
        let touched = extents(offset, len);
        let count = touched.end - touched.start;
        if count > self.capacity as u64 {
            return Err(MetaError::WriteTooLarge {
                extents: count,
                capacity: self.capacity,
            });
        }
        let (add, evicted) = {
            let mut active = self.active.lock();
            let add: Vec<u64> = touched
                .clone()
                .filter(|e| !active.slots.contains_key(e))
                .collect();
            if add.is_empty() {
                // Already in the log: no transaction.
                active.pin(touched);
                return Ok(());
            }
            let over = (active.slots.len() + add.len()).saturating_sub(self.capacity);
            let idle = |s: &Slot| s.in_flight == 0;
            let others = || active.slots.iter().filter(|(e, _)| !touched.contains(*e));
            if others().filter(|(_, s)| idle(s)).count() < over {
                return Err(MetaError::ActivityLogBusy {
                    capacity: self.capacity,
                });
            }
            let mut idle: Vec<(u64, u64)> = others()
                .filter(|(_, s)| s.evictable(active.flushed_through))
                .map(|(&e, s)| (s.last_used, e))
                .collect();
            if idle.len() < over {
                return Err(MetaError::ActivityLogUnflushed {
                    capacity: self.capacity,
                });
            }
            let mut evicted = Vec::new();
            if over > 0 {
                idle.select_nth_unstable(over - 1);
                // Out of the set before the transaction: no write may start in them meanwhile.
                evicted = idle[..over]
                    .iter()
                    .filter_map(|&(_, e)| active.slots.remove_entry(&e))
                    .collect();
            }
            (add, evicted)
        };
        let evict: Vec<u64> = evicted.iter().map(|&(e, _)| e).collect();
        if !evict.is_empty()
            && let Err(error) = before_evict(&evict)
        {
            // Nothing written: still in the log on disk, so back in the set.
            self.active.lock().slots.extend(evicted);
            return Err(error);
        }
        // From here the evicted extents stay out of the set even if the transaction fails: it
        // may have reached the disk, and their bits are persisted, so out is safe either way.
        let entries: Vec<u64> = evict
            .iter()
            .map(|e| e | LEAVING)
            .chain(add.iter().copied())
            .collect();
        self.transact(&entries)?;
        self.active.lock().pin(touched);
        if self.transactions > 4 * self.capacity as u64 + 64
            && let Err(error) = self.compact()
        {
            // This write's transaction is durable, so the write goes on; the next rewrites.
            tracing::warn!(%error, "activity log not compacted; retried with the next transaction");
            self.stale = true;
        }
        Ok(())
    }

    /// After the write `[offset, offset + len)` finished (on both nodes, or marked out of sync):
    /// its extents become evictable once no other write uses them and the next flush to begin
    /// has ended.
    pub fn end_write(&mut self, offset: u64, len: u64) {
        let mut active = self.active.lock();
        let covered_by = active.flushes_begun + 1;
        for e in extents(offset, len) {
            if let Some(slot) = active.slots.get_mut(&e) {
                slot.in_flight = slot.in_flight.saturating_sub(1);
                slot.covered_by = covered_by;
            }
        }
    }

    /// Before a flush of both nodes' disks: returns its number for [`ActivityLog::end_flush`].
    /// It covers every write ended before this call.
    pub fn begin_flush(&mut self) -> u64 {
        let mut active = self.active.lock();
        active.flushes_begun += 1;
        active.flushes_begun
    }

    /// Flush `flush` reached both nodes' disks (or the peer's part was marked out of sync): the
    /// idle extents it covers may leave the log.
    pub fn end_flush(&mut self, flush: u64) {
        let mut active = self.active.lock();
        active.flushed_through = active.flushed_through.max(flush);
    }

    /// Writes between `begin_write` and `end_write`.
    pub fn in_flight(&self) -> u64 {
        in_flight(&self.active.lock())
    }

    /// Before the owner closes the metadata: refuses hot starts ([`HotExtents`]) from now on,
    /// unless writes are in flight; then returns how many, and changes nothing.
    pub fn close(&mut self) -> Result<(), u64> {
        let mut active = self.active.lock();
        match in_flight(&active) {
            0 => {
                active.closed = true;
                Ok(())
            }
            n => Err(n),
        }
    }

    /// Whether `extent` is in the log (so a crash would mark it out of sync).
    pub fn contains(&self, extent: u64) -> bool {
        self.active.lock().slots.contains_key(&extent)
    }

    /// The active extents, unordered.
    pub fn active(&self) -> Vec<u64> {
        self.active.lock().slots.keys().copied().collect()
    }

    /// A handle for starting writes into active extents without this owner.
    pub fn hot_extents(&self) -> HotExtents {
        self.active.clone()
    }

    /// The byte range of extent `extent`.
    pub fn extent_range(extent: u64) -> Range<u64> {
        let start = extent.saturating_mul(EXTENT_SIZE);
        start..start.saturating_add(EXTENT_SIZE)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// Logs one transaction. After a failed append or compaction the whole log is rewritten
    /// first: the file may end in a torn transaction, which would hide every later one from
    /// [`ActivityLog::recover`], or the handle may be to a file already replaced.
    fn transact(&mut self, entries: &[u64]) -> Result<(), MetaError> {
        if self.stale {
            self.compact()?;
            self.stale = false;
        }
        self.append(entries).inspect_err(|_| self.stale = true)
    }

    /// Appends one transaction and fsyncs it.
    fn append(&mut self, entries: &[u64]) -> Result<(), MetaError> {
        let bytes = encode(self.next_seq, entries);
        let path = self.path();
        self.file.write_all(&bytes).map_err(MetaError::io(&path))?;
        self.file.sync_data().map_err(MetaError::io(&path))?;
        self.next_seq += 1;
        self.transactions += 1;
        Ok(())
    }

    /// Rewrites the log as one transaction listing the active set, so it does not grow forever.
    fn compact(&mut self) -> Result<(), MetaError> {
        let entries = self.active();
        durable::write_atomic(&self.dir, &self.name, &encode(self.next_seq, &entries))?;
        self.file = open_append(&self.path())?;
        self.next_seq += 1;
        self.transactions = 1;
        Ok(())
    }
}

fn in_flight(active: &Active) -> u64 {
    active.slots.values().map(|s| u64::from(s.in_flight)).sum()
}

/// Extent numbers `[first, last]` touched by a byte range (empty for an empty range).
pub(super) fn extents(offset: u64, len: u64) -> Range<u64> {
    if len == 0 {
        return 0..0;
    }
    let last = offset.saturating_add(len - 1) / EXTENT_SIZE;
    offset / EXTENT_SIZE..last + 1
}

fn open_append(path: &Path) -> Result<File, MetaError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(MetaError::io(path))
}

fn encode(seq: u64, entries: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 8 * entries.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&seq.to_le_bytes());
    // A transaction holds at most 2 * capacity entries, far below u32::MAX.
    out.extend_from_slice(
        &u32::try_from(entries.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&[0; 4]);
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    let check = check64(&[&out[..24], &body[..]].concat());
    out.extend_from_slice(&check.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// One transaction at the start of `bytes`: (seq, entries, length), or None if torn or invalid.
fn parse(bytes: &[u8]) -> Option<(u64, Vec<u64>, usize)> {
    let header = bytes.get(..HEADER_LEN)?;
    if header[..4] != MAGIC || header[4] != VERSION {
        return None;
    }
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let count = usize::try_from(u32::from_le_bytes(header[16..20].try_into().ok()?)).ok()?;
    let check = u64::from_le_bytes(header[24..32].try_into().ok()?);
    let len = HEADER_LEN.checked_add(count.checked_mul(8)?)?;
    let body = bytes.get(HEADER_LEN..len)?;
    if check64(&[&header[..24], body].concat()) != check {
        return None;
    }
    let entries = body
        .chunks_exact(8)
        .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
        .collect();
    Some((seq, entries, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "activity-log";
    const MIB: u64 = 1 << 20;

    fn no_evict(_: &[u64]) -> Result<(), MetaError> {
        Ok(())
    }

    /// Ends a write and flushes it on both nodes, so that its extents may leave the log.
    fn finish(al: &mut ActivityLog, offset: u64, len: u64) {
        al.end_write(offset, len);
        let flush = al.begin_flush();
        al.end_flush(flush);
    }

    #[test]
    fn an_extent_leaves_only_once_a_flush_begun_after_its_last_write_has_ended() {
        // Input: capacity 1; a write to extent 0 ends, then a write to extent 1 comes. Output:
        // refused until a flush covers extent 0's write, with nothing changed; a write into
        // extent 0 ending after a flush began needs a later flush; then extent 0 leaves.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(NAME);
        let mut al = ActivityLog::create(dir.path(), NAME, 1).expect("create");
        let hot = al.hot_extents();
        al.begin_write(0, 1, no_evict).expect("write");
        al.end_write(0, 1);
        let unflushed = al.begin_write(EXTENT_SIZE, 1, no_evict);
        assert!(
            matches!(
                unflushed,
                Err(MetaError::ActivityLogUnflushed { capacity: 1 })
            ),
            "{unflushed:?}"
        );
        assert_eq!(ActivityLog::recover(&path).expect("recover"), vec![0]);
        assert!(hot.try_begin_write(0, 1), "extent 0 stays in the log");
        let first = al.begin_flush();
        al.end_write(0, 1);
        al.end_flush(first);
        assert!(
            matches!(
                al.begin_write(EXTENT_SIZE, 1, no_evict),
                Err(MetaError::ActivityLogUnflushed { .. })
            ),
            "the second write ended after the flush began"
        );
        let second = al.begin_flush();
        al.end_flush(second);
        al.end_flush(first);
        al.begin_write(EXTENT_SIZE, 1, no_evict)
            .expect("extent 0 flushed: evicted");
        assert_eq!(ActivityLog::recover(&path).expect("recover"), vec![1]);
    }

    #[test]
    fn extents_of_a_write() {
        assert_eq!(extents(0, 0), 0..0);
        assert_eq!(extents(0, 1), 0..1);
        assert_eq!(extents(EXTENT_SIZE - 1, 2), 0..2);
        assert_eq!(extents(3 * EXTENT_SIZE, EXTENT_SIZE), 3..4);
    }

    #[test]
    fn recovery_lists_the_extents_of_writes_in_flight() {
        // Input: writes in extents 0, 2 and 5 (one spanning 1-2), log dropped without cleanup.
        // Output: recover lists 0, 1, 2, 5.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut al = ActivityLog::create(dir.path(), NAME, 8).expect("create");
        al.begin_write(0, 4096, no_evict).expect("write");
        al.begin_write(2 * EXTENT_SIZE - MIB, 2 * MIB, no_evict)
            .expect("write");
        al.begin_write(5 * EXTENT_SIZE, 1, no_evict).expect("write");
        al.begin_write(10, 10, no_evict)
            .expect("already active: no transaction");
        assert_eq!(al.transactions, 3);
        drop(al);
        assert_eq!(
            ActivityLog::recover(&dir.path().join(NAME)).expect("recover"),
            vec![0, 1, 2, 5]
        );
    }

    #[test]
    fn eviction_takes_the_least_recently_used_idle_extent_after_the_hook() {
        // Input: capacity 2; writes to extents 0, 1 (0 finished, 1 still in flight), then 2.
        // Output: 0 is evicted (1 is busy), the hook sees [0] first, recovery lists 1 and 2.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut al = ActivityLog::create(dir.path(), NAME, 2).expect("create");
        al.begin_write(0, 1, no_evict).expect("write");
        finish(&mut al, 0, 1);
        al.begin_write(EXTENT_SIZE, 1, no_evict).expect("write");
        let mut seen = Vec::new();
        al.begin_write(2 * EXTENT_SIZE, 1, |e| {
            seen.extend_from_slice(e);
            Ok(())
        })
        .expect("write");
        assert_eq!(seen, vec![0]);
        assert_eq!(
            ActivityLog::recover(&dir.path().join(NAME)).expect("recover"),
            vec![1, 2]
        );
        // Both remaining extents are busy now: a fourth extent cannot come in.
        let busy = al.begin_write(3 * EXTENT_SIZE, 1, no_evict);
        assert!(matches!(
            busy,
            Err(MetaError::ActivityLogBusy { capacity: 2 })
        ));
        assert!(matches!(
            al.begin_write(0, 3 * EXTENT_SIZE, no_evict),
            Err(MetaError::WriteTooLarge { .. })
        ));
        assert_eq!(al.in_flight(), 2);
    }

    #[test]
    fn hot_extents_start_writes_only_in_extents_already_logged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut al = ActivityLog::create(dir.path(), NAME, 2).expect("create");
        let hot = al.hot_extents();
        assert!(!hot.try_begin_write(0, 4096), "extent 0 is not logged yet");
        al.begin_write(0, 4096, no_evict).expect("write");
        assert!(hot.try_begin_write(MIB, 4096), "extent 0 is logged");
        assert!(
            !hot.try_begin_write(EXTENT_SIZE - 1, 2),
            "the write spans into extent 1, which is not logged"
        );
        assert_eq!(al.in_flight(), 2);
        assert_eq!(al.transactions, 1, "the hot start wrote no transaction");
        finish(&mut al, 0, 4096);
        finish(&mut al, MIB, 4096);
        assert_eq!(al.in_flight(), 0);
    }

    #[test]
    fn an_extent_being_evicted_takes_no_hot_write_while_its_transaction_is_written() {
        // Input: capacity 1, extent 0 logged and idle; a write to extent 1 evicts it. Inside
        // the eviction hook (before the transaction), a hot start in extent 0 or 1 is tried.
        // Output: both refused; once logged, extent 1 takes hot writes and extent 0 does not.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut al = ActivityLog::create(dir.path(), NAME, 1).expect("create");
        let hot = al.hot_extents();
        al.begin_write(0, 1, no_evict).expect("write");
        finish(&mut al, 0, 1);
        let mut tried = Vec::new();
        al.begin_write(EXTENT_SIZE, 1, |evicted| {
            assert_eq!(evicted, [0]);
            tried.push(hot.try_begin_write(0, 1));
            tried.push(hot.try_begin_write(EXTENT_SIZE, 1));
            Ok(())
        })
        .expect("write");
        assert_eq!(tried, [false, false]);
        assert!(hot.try_begin_write(EXTENT_SIZE + 1, 1));
        assert!(!hot.try_begin_write(0, 1));
        assert_eq!(
            ActivityLog::recover(&dir.path().join(NAME)).expect("recover"),
            vec![1]
        );
    }

    #[test]
    fn a_failed_eviction_keeps_its_extents_hot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut al = ActivityLog::create(dir.path(), NAME, 1).expect("create");
        let hot = al.hot_extents();
        al.begin_write(0, 1, no_evict).expect("write");
        finish(&mut al, 0, 1);
        let err = al.begin_write(EXTENT_SIZE, 1, |_| Err(MetaError::WritesInFlight(9)));
        assert!(err.is_err());
        assert!(
            hot.try_begin_write(0, 1),
            "extent 0 is still in the log on disk"
        );
    }

    #[test]
    fn after_a_failed_transaction_the_log_is_rewritten_before_the_next() {
        // Input: capacity 1, extent 0 logged and idle; the transaction bringing in extent 1
        // (evicting 0) fails, then a write to extent 2 comes. Output: extent 0 is out of the set
        // after the failure, and the next transaction rewrites the log, so recovery is right.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(NAME);
        let mut al = ActivityLog::create(dir.path(), NAME, 1).expect("create");
        let hot = al.hot_extents();
        al.begin_write(0, 1, no_evict).expect("write");
        finish(&mut al, 0, 1);
        // A handle that cannot write, as a full or failing disk would have.
        al.file = File::open(&path).expect("read-only handle");
        assert!(al.begin_write(EXTENT_SIZE, 1, no_evict).is_err());
        assert!(
            !hot.try_begin_write(0, 1),
            "extent 0's leaving may be on the disk"
        );
        assert!(
            !hot.try_begin_write(EXTENT_SIZE, 1),
            "extent 1 was never logged"
        );
        // Torn tail: half a transaction, which would hide every later one from recovery.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&encode(al.next_seq, &[5])[..20]))
            .expect("torn tail");
        al.begin_write(2 * EXTENT_SIZE, 1, no_evict).expect("write");
        assert_eq!(ActivityLog::recover(&path).expect("recover"), vec![2]);
        assert!(hot.try_begin_write(2 * EXTENT_SIZE + 1, 1));
    }

    #[test]
    fn a_failed_compaction_does_not_fail_the_write_and_is_retried() {
        // Input: the log is due for compaction, but its temp file's name is taken by a
        // directory, so the rewrite fails (even as root). Output: the write that triggered it
        // still starts (its transaction is durable) and ends; once the name is free, the next
        // transaction rewrites the log and recovery is right.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(NAME);
        let mut al = ActivityLog::create(dir.path(), NAME, 1).expect("create");
        let blocker = dir.path().join(format!("{NAME}{}", durable::TEMP_SUFFIX));
        fs::create_dir(&blocker).expect("block the temp name");
        al.transactions = 4 * al.capacity as u64 + 64;
        al.begin_write(0, 1, no_evict)
            .expect("the write starts though the compaction failed");
        assert_eq!(al.in_flight(), 1);
        finish(&mut al, 0, 1);
        assert_eq!(al.in_flight(), 0);
        fs::remove_dir(&blocker).expect("unblock");
        al.begin_write(EXTENT_SIZE, 1, no_evict).expect("write");
        assert_eq!(al.transactions, 2, "rewritten, then appended");
        assert_eq!(ActivityLog::recover(&path).expect("recover"), vec![1]);
    }

    #[test]
    fn close_waits_for_hot_writes_and_then_refuses_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut al = ActivityLog::create(dir.path(), NAME, 4).expect("create");
        let hot = al.hot_extents();
        al.begin_write(0, 1, no_evict).expect("write");
        finish(&mut al, 0, 1);
        assert!(hot.try_begin_write(0, 1));
        assert_eq!(al.close(), Err(1), "a hot write is in flight");
        assert!(hot.try_begin_write(0, 1), "a refused close changes nothing");
        finish(&mut al, 0, 1);
        finish(&mut al, 0, 1);
        assert_eq!(al.close(), Ok(()));
        assert!(!hot.try_begin_write(0, 1), "closed");
    }

    #[test]
    fn a_failing_hook_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut al = ActivityLog::create(dir.path(), NAME, 1).expect("create");
        al.begin_write(0, 1, no_evict).expect("write");
        finish(&mut al, 0, 1);
        let err = al.begin_write(EXTENT_SIZE, 1, |_| Err(MetaError::WritesInFlight(9)));
        assert!(matches!(err, Err(MetaError::WritesInFlight(9))));
        assert_eq!(al.active(), vec![0]);
        assert_eq!(
            ActivityLog::recover(&dir.path().join(NAME)).expect("recover"),
            vec![0]
        );
    }

    #[test]
    fn a_torn_last_transaction_is_ignored() {
        // Input: a valid transaction, then half of another (a crash mid-append). Output: only
        // the first counts.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(NAME);
        let mut bytes = encode(0, &[7]);
        bytes.extend_from_slice(&encode(1, &[8, 9])[..40]);
        fs::write(&path, &bytes).expect("write");
        assert_eq!(ActivityLog::recover(&path).expect("recover"), vec![7]);
        // A flipped bit in the last transaction: also torn.
        let mut bytes = encode(0, &[7]);
        let mut second = encode(1, &[8]);
        second[33] ^= 1;
        bytes.extend_from_slice(&second);
        fs::write(&path, &bytes).expect("write");
        assert_eq!(ActivityLog::recover(&path).expect("recover"), vec![7]);
    }

    #[test]
    fn compaction_keeps_the_active_set() {
        // Input: capacity 1, many writes cycling through extents (each evicts the last).
        // Output: the file is compacted along the way and recovery still lists the last one.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut al = ActivityLog::create(dir.path(), NAME, 1).expect("create");
        for i in 0..100u64 {
            al.begin_write(i * EXTENT_SIZE, 1, no_evict).expect("write");
            finish(&mut al, i * EXTENT_SIZE, 1);
        }
        assert!(al.transactions < 68, "compacted: {}", al.transactions);
        assert_eq!(
            ActivityLog::recover(&dir.path().join(NAME)).expect("recover"),
            vec![99]
        );
    }

    #[test]
    fn a_missing_log_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = ActivityLog::recover(&dir.path().join(NAME)).expect_err("missing");
        assert!(err.to_string().contains(NAME), "{err}");
    }
}
