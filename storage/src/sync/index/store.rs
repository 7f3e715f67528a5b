//! The index on disk: one file, `state_dir/sync/NAME/index`, replaced whole and crash-safely
//! (temp file, fsync, rename, fsync of the directory: the volume metadata's `write_atomic`), so
//! after a crash it is the old or the new index, never a mix.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "FULSYNCI"
//!      8     4  format version (u32 LE, FORMAT_VERSION)
//!     12     8  body length in bytes (u64 LE)
//!     20     n  body
//!   20+n    32  SHA-256 of bytes 0..20+n
//!
//! body (integers LE; str16/str32 = u16/u32 length + UTF-8 bytes):
//!   node str16 | id u64 | sequence u64
//!   names: u32 count, str16 each          node names, referred to by their position
//!   peers: u32 count, (name u32, index_id u64, sequence u64) each
//!   entries: u64 count, each:
//!     path str32 | deleted u8 | kind u8 (0 file, 1 dir, 2 symlink)
//!     size u64 | mtime_ns i64 | mode u32 | sequence u64
//!     owner u8 (0 none, 1 uid u32 | gid u32 follow)   format 4 on
//!     hash [32]          files only: BLAKE3 of the content (SHA-256 in format 1)
//!     target str32       symlinks only
//!     modified_by u32 (name)
//!     version: u16 count, (name u32, counter u64) each
//!   acked: u32 count, (addr str16, sequence u64, applies u8) each
//!                      how far each peer acknowledged this index (format 3 on)
//!   root_marked u8     the root held its marker directory (format 5 on; read as 0 before)
//! ```
//!
//! Format 3 has no owners: its entries are read with none, and the start-up scan of a node
//! that syncs owners puts the disk's in place without a new version, as it does with format 1's
//! hashes below. Format 2 has no `acked` list either: it is read as an empty one. Format 1
//! differs from format 2
//! only in its hashes. It is still read, for an upgrade: its tombstones lose
//! their hashes (they served only to spot renames), and the start-up scan hashes every file
//! again and puts the new hash in place without a new version, since the content is the same
//! (a file whose size or mtime changed meanwhile is a change as usual). Peers then agree on
//! every hash without sending anything again.
//!
//! Binary rather than text: 50,000 entries are about 5 MB and encode or decode in tens of
//! milliseconds. Loading refuses a file that fails any check, naming it; it never starts over
//! from an empty index on its own.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use super::{
    AckedMark, Index, IndexError, PeerMark,
    entry::{Entry, Kind, check_path},
    version::VersionVector,
};
use crate::{sync::owner::Owner, volume::meta::durable};

/// The index file's name in its directory.
pub const INDEX_FILE: &str = "index";

/// The format written; every format from [`LEGACY_FORMAT`] on is read too.
pub const FORMAT_VERSION: u32 = 5;

/// The first format that says whether the root was marked.
const MARKED_SINCE: u32 = 5;

/// The first format with owners.
const OWNERS_SINCE: u32 = 4;

/// The first format with the peers' acknowledged marks.
const ACKED_SINCE: u32 = 3;

/// The format of SHA-256 hashes, read for an upgrade.
const LEGACY_FORMAT: u32 = 1;

const MAGIC: &[u8; 8] = b"FULSYNCI";
const HEADER: usize = 20;
const CHECKSUM: usize = 32;

/// The directory of sync set `name`'s index: `state_dir/sync/NAME`.
pub fn index_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("sync").join(name)
}

impl Index {
    /// The index saved in `dir`, or a new empty one for `node` if there is none. A leftover
    /// temp file from a crash is removed. An index saved under another node name keeps its
    /// entries and takes `node`: later changes are counted under the new name, and versions
    /// still order correctly.
    pub fn open(dir: &Path, node: &str) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir).map_err(IndexError::io(dir))?;
        durable::remove_temps(dir)?;
        let file = dir.join(INDEX_FILE);
        if !file.exists() {
            return Self::new(node);
        }
        let mut index = Self::load(&file)?;
        if index.node != node {
            tracing::warn!(file = %file.display(), old = %index.node, new = %node,
                "sync index: this node's name changed");
            index.node = node.to_owned();
            index.dirty = true;
        }
        Ok(index)
    }

    /// Reads and checks the index file `file`.
    pub fn load(file: &Path) -> Result<Self, IndexError> {
        let bytes = std::fs::read(file).map_err(IndexError::io(file))?;
        decode(&bytes).map_err(|e| match e {
            DecodeError::Version(version) => IndexError::Version {
                file: file.to_owned(),
                version,
                supported: FORMAT_VERSION,
            },
            DecodeError::Corrupt(reason) => IndexError::corrupt(file, reason),
        })
    }

    /// Writes the index to `dir/index`, crash-safely, if it changed since loaded or saved.
    pub fn save(&mut self, dir: &Path) -> Result<(), IndexError> {
        if !self.is_dirty() {
            return Ok(());
        }
        std::fs::create_dir_all(dir).map_err(IndexError::io(dir))?;
        durable::write_atomic(dir, INDEX_FILE, &encode(self))?;
        (self.dirty, self.marks_dirty) = (false, false);
        self.published = self.sequence;
        Ok(())
    }

    /// [`Index::save`] in two steps, so that the index is held only while it is encoded, not
    /// while the file is written and fsynced: the bytes to save if the index changed since
    /// loaded or saved (it then counts as saved). Write them with [`Index::write_snapshot`];
    /// if that succeeds, call [`Index::publish`] with the [`Index::sequence`] the snapshot was
    /// taken at; if it fails, call [`Index::mark_dirty`]. One saver at a time, or an older snapshot
    /// could land after a newer one.
    pub fn take_snapshot(&mut self) -> Option<Vec<u8>> {
        if !self.is_dirty() {
            return None;
        }
        (self.dirty, self.marks_dirty) = (false, false);
        Some(encode(self))
    }

    /// Writes a snapshot to `dir/index`, crash-safely.
    pub fn write_snapshot(dir: &Path, bytes: &[u8]) -> Result<(), IndexError> {
        std::fs::create_dir_all(dir).map_err(IndexError::io(dir))?;
        durable::write_atomic(dir, INDEX_FILE, bytes)?;
        Ok(())
    }

    /// Counts the index as changed since saved (a snapshot that could not be written).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }
}

/// The file's bytes, in the current format (until a scan has redone its hashes, a legacy
/// index is saved as what it still is).
pub(super) fn encode(index: &Index) -> Vec<u8> {
    let format = if index.legacy_hashes {
        LEGACY_FORMAT
    } else {
        FORMAT_VERSION
    };
    encode_as(index, format)
}

/// The file's bytes in `format`, one of those [`decode`] reads: what an older release wrote,
/// without the fields it did not know.
pub(super) fn encode_as(index: &Index, format: u32) -> Vec<u8> {
    // Names first, so the table precedes the entries that refer to it (entries' names in entry
    // order, then the peers'); the entries then look their names up again, which is cheap.
    let mut names = NameTable::default();
    for entry in index.entries.values() {
        names.id(&entry.modified_by);
        for (node, _) in entry.version.iter() {
            names.id(node);
        }
    }
    for peer in index.peers.keys() {
        names.id(peer);
    }

    // Header, body and checksum in one buffer: the body's length is filled in at the end.
    let mut out = Vec::with_capacity(HEADER + 64 + index.entries.len() * 120 + CHECKSUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    put_str16(&mut out, &index.node);
    out.extend_from_slice(&index.id.to_le_bytes());
    out.extend_from_slice(&index.sequence.to_le_bytes());
    out.extend_from_slice(&(names.names.len() as u32).to_le_bytes());
    for name in &names.names {
        put_str16(&mut out, name);
    }
    out.extend_from_slice(&(index.peers.len() as u32).to_le_bytes());
    for (peer, mark) in &index.peers {
        out.extend_from_slice(&names.id(peer).to_le_bytes());
        out.extend_from_slice(&mark.index_id.to_le_bytes());
        out.extend_from_slice(&mark.sequence.to_le_bytes());
    }
    out.extend_from_slice(&(index.entries.len() as u64).to_le_bytes());
    for entry in index.entries.values() {
        put_str32(&mut out, &entry.path);
        out.push(u8::from(entry.deleted));
        out.push(match entry.kind {
            Kind::File => 0,
            Kind::Dir => 1,
            Kind::Symlink(_) => 2,
        });
        out.extend_from_slice(&entry.size.to_le_bytes());
        out.extend_from_slice(&entry.mtime_ns.to_le_bytes());
        out.extend_from_slice(&entry.mode.to_le_bytes());
        out.extend_from_slice(&entry.sequence.to_le_bytes());
        if format >= OWNERS_SINCE {
            match entry.owner {
                None => out.push(0),
                Some(owner) => {
                    out.push(1);
                    out.extend_from_slice(&owner.uid.to_le_bytes());
                    out.extend_from_slice(&owner.gid.to_le_bytes());
                }
            }
        }
        match &entry.kind {
            Kind::File => out.extend_from_slice(&entry.hash),
            Kind::Symlink(target) => put_str32(&mut out, target),
            Kind::Dir => {}
        }
        out.extend_from_slice(&names.id(&entry.modified_by).to_le_bytes());
        out.extend_from_slice(&(entry.version.len() as u16).to_le_bytes());
        for (node, counter) in entry.version.iter() {
            out.extend_from_slice(&names.id(node).to_le_bytes());
            out.extend_from_slice(&counter.to_le_bytes());
        }
    }
    if format >= ACKED_SINCE {
        out.extend_from_slice(&(index.acked.len() as u32).to_le_bytes());
        for (addr, mark) in &index.acked {
            put_str16(&mut out, addr);
            out.extend_from_slice(&mark.sequence.to_le_bytes());
            out.push(u8::from(mark.applies));
        }
    }
    if format >= MARKED_SINCE {
        out.push(u8::from(index.root_marked));
    }
    let body_len = (out.len() - HEADER) as u64;
    out[12..HEADER].copy_from_slice(&body_len.to_le_bytes());
    let checksum = durable::sha256(&out);
    out.extend_from_slice(&checksum);
    out
}

/// Node names by their position in the file. There are few (the nodes of a set), so a lookup
/// is a scan of a short list; a map takes over if there are many.
#[derive(Default)]
struct NameTable<'a> {
    names: Vec<&'a str>,
    ids: HashMap<&'a str, u32>,
}

impl<'a> NameTable<'a> {
    /// Past this many names, lookups go through the map.
    const SCAN: usize = 16;

    fn id(&mut self, name: &'a str) -> u32 {
        if self.names.len() <= Self::SCAN {
            if let Some(i) = self.names.iter().position(|n| *n == name) {
                return i as u32;
            }
        } else if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name);
        if self.names.len() > Self::SCAN {
            if self.ids.is_empty() {
                self.ids = self.names.iter().zip(0..).map(|(n, i)| (*n, i)).collect();
            } else {
                self.ids.insert(name, id);
            }
        }
        id
    }
}

// Lengths: a name is at most 255 bytes in practice and a node name is short, a path at most
// MAX_PATH; the encoder's `as` casts cannot truncate an index that `decode` would accept.
fn put_str16(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_str32(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

enum DecodeError {
    Version(u32),
    Corrupt(String),
}

fn corrupt(reason: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt(reason.into())
}

fn decode(bytes: &[u8]) -> Result<Index, DecodeError> {
    if bytes.len() < HEADER + CHECKSUM {
        return Err(corrupt(format!(
            "{} bytes, shorter than a header and a checksum",
            bytes.len()
        )));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("bad magic: not a sync index"));
    }
    let mut r = Reader {
        bytes: &bytes[8..HEADER],
    };
    let version = r.u32()?;
    if !(LEGACY_FORMAT..=FORMAT_VERSION).contains(&version) {
        return Err(DecodeError::Version(version));
    }
    let legacy_hashes = version == LEGACY_FORMAT;
    let body_len = r.u64()?;
    let expected = (HEADER as u64)
        .checked_add(body_len)
        .and_then(|n| n.checked_add(CHECKSUM as u64));
    if expected != Some(bytes.len() as u64) {
        return Err(corrupt(format!(
            "{} bytes, but the header says {}: truncated or extended",
            bytes.len(),
            expected.map_or_else(|| "too many".to_owned(), |n| n.to_string())
        )));
    }
    let (content, checksum) = bytes.split_at(bytes.len() - CHECKSUM);
    if durable::sha256(content) != checksum {
        return Err(corrupt("checksum mismatch"));
    }
    let mut r = Reader {
        bytes: &content[HEADER..],
    };
    let node = r.str16()?;
    let id = r.u64()?;
    let sequence = r.u64()?;
    let name_count = r.u32()?;
    let mut names = Vec::new();
    for _ in 0..name_count {
        names.push(r.str16()?);
    }
    let name = |i: u32| -> Result<&String, DecodeError> {
        names
            .get(i as usize)
            .ok_or_else(|| corrupt(format!("node name #{i} of {} names", names.len())))
    };
    let mut peers = BTreeMap::new();
    for _ in 0..r.u32()? {
        let peer = name(r.u32()?)?.clone();
        let mark = PeerMark {
            index_id: r.u64()?,
            sequence: r.u64()?,
        };
        peers.insert(peer, mark);
    }
    let mut entries = BTreeMap::new();
    for _ in 0..r.u64()? {
        let path = r.str32()?;
        check_path(&path).map_err(|e| corrupt(e.to_string()))?;
        let deleted = r.flag(|| format!("{path}: deleted flag"))?;
        let kind = r.u8()?;
        let size = r.u64()?;
        let mtime_ns = r.i64()?;
        let mode = r.u32()?;
        let entry_sequence = r.u64()?;
        let owner = if version >= OWNERS_SINCE && r.flag(|| format!("{path}: owner flag"))? {
            Some(Owner {
                uid: r.u32()?,
                gid: r.u32()?,
            })
        } else {
            None
        };
        let mut hash = super::NO_HASH;
        let kind = match kind {
            0 => {
                hash.copy_from_slice(r.take(32)?);
                if legacy_hashes && deleted {
                    hash = super::NO_HASH;
                }
                Kind::File
            }
            1 => Kind::Dir,
            2 => Kind::Symlink(r.str32()?),
            other => return Err(corrupt(format!("{path}: kind {other}"))),
        };
        let modified_by = name(r.u32()?)?.clone();
        let mut version = VersionVector::new();
        for _ in 0..r.u16()? {
            let node = name(r.u32()?)?;
            version.set(node, r.u64()?);
        }
        if entry_sequence > sequence {
            return Err(corrupt(format!(
                "{path}: sequence {entry_sequence} above the index's {sequence}"
            )));
        }
        let entry = Entry {
            path: path.clone(),
            kind,
            size,
            mtime_ns,
            mode,
            owner,
            hash,
            version,
            modified_by,
            deleted,
            sequence: entry_sequence,
        };
        if entries.insert(path.clone(), entry).is_some() {
            return Err(corrupt(format!("{path}: listed twice")));
        }
    }
    let mut acked = BTreeMap::new();
    if version >= ACKED_SINCE {
        for _ in 0..r.u32()? {
            let addr = r.str16()?;
            let mark = AckedMark {
                // Only the status's count of what waits for the peer: never a reason to
                // refuse the index.
                sequence: r.u64()?.min(sequence),
                applies: r.flag(|| format!("{addr}: applies flag"))?,
            };
            acked.insert(addr, mark);
        }
    }
    let root_marked = version >= MARKED_SINCE && r.flag(|| "root marked flag".to_owned())?;
    if !r.bytes.is_empty() {
        return Err(corrupt(format!(
            "{} bytes after the last record",
            r.bytes.len()
        )));
    }
    let by_sequence = entries
        .values()
        .map(|e| (e.sequence, e.path.clone()))
        .collect();
    Ok(Index {
        node,
        id,
        sequence,
        // What was loaded is on disk.
        published: sequence,
        entries,
        by_sequence,
        peers,
        acked,
        // A legacy index is saved in the current format once its hashes are redone.
        dirty: legacy_hashes,
        marks_dirty: false,
        legacy_hashes,
        root_marked,
        track_owners: false,
        forgotten_before: i64::MIN,
    })
}

/// Bounds-checked little-endian reads; running out is corruption.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(corrupt("ends in the middle of a record"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A flag octet, 0 or 1; `what` names it in the error otherwise.
    fn flag(&mut self, what: impl FnOnce() -> String) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(corrupt(format!("{} {other}", what()))),
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        self.array().map(i64::from_le_bytes)
    }

    fn string(&mut self, len: usize) -> Result<String, DecodeError> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("a name that is not UTF-8"))
    }

    fn str16(&mut self) -> Result<String, DecodeError> {
        let len = self.u16()?;
        self.string(len as usize)
    }

    fn str32(&mut self) -> Result<String, DecodeError> {
        let len = self.u32()?;
        self.string(len as usize)
    }
}
