//! Generation identifiers (DRBD 8.4's "UUIDs") and the connect-time rule that decides which side
//! resyncs from which, ported from `drbd_uuid_compare` and `drbd_sync_handshake` (drbd_receiver.c).
//!
//! Each node keeps four 64-bit ids: `current` names the data generation it holds now, `bitmap` the
//! generation its out-of-sync bitmap is relative to (0 while the peers are in sync) and `history`
//! the two generations before that. Comparing the two sets on connect tells whether the copies
//! are equal, one descends from the other (bitmap-based resync from the newer side), one appears
//! in the other's history (full sync) or both moved on since they parted (split brain).
//!
//! Bit 0 of `current` says "this node was Primary when the id was set"; it is masked out of every
//! comparison, and survives into `bitmap` so a split-brain policy can tell the older primary (the
//! one that was Primary when the link broke) from the younger one (promoted afterwards).

/// DRBD's `UUID_JUST_CREATED`: the current id of metadata that has never held a generation.
pub const JUST_CREATED: u64 = 4;

/// DRBD's `UUID_NEW_BM_OFFSET`: a SyncSource derives the sync id it hands the target from its
/// bitmap id, so a lost sync-id packet can be recognised (rules 51 and 71) and undone.
const NEW_BM_OFFSET: u64 = 0x0001_0000_0000_0000;

const PRIMARY_BIT: u64 = 1;

/// One node's generation identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationIds {
    /// The generation of the data this node holds now (bit 0: was Primary when set).
    pub current: u64,
    /// The generation the out-of-sync bitmap is relative to; 0 while in sync with the peer.
    pub bitmap: u64,
    /// Older generations, newest first.
    pub history: [u64; 2],
}

impl GenerationIds {
    /// Ids of freshly created metadata: DRBD's `create-md` state.
    pub fn just_created() -> Self {
        Self {
            current: JUST_CREATED,
            bitmap: 0,
            history: [0, 0],
        }
    }

    /// A random id usable as a new generation: never 0, never [`JUST_CREATED`], bit 0 clear.
    pub fn random_id() -> Result<u64, getrandom::Error> {
        loop {
            let mut buf = [0u8; 8];
            getrandom::getrandom(&mut buf)?;
            let id = u64::from_le_bytes(buf) & !PRIMARY_BIT;
            // Rejection keeps the special values special; the loop ends almost surely at once.
            if id != 0 && id != JUST_CREATED {
                return Ok(id);
            }
        }
    }

    /// Starts a new generation `id` (from [`GenerationIds::random_id`]), as DRBD's
    /// `drbd_uuid_new_current`: call it on every promotion while disconnected (with or without
    /// `--force`) and when a Primary loses its peer. The old current becomes the bitmap id, so
    /// the next connect resyncs from the bitmap.
    ///
    /// Deviations, both found by the pair simulation in the tests: DRBD skips the new generation
    /// when the bitmap id is already set (unless forced), assuming the current id is then known
    /// only locally; but a SyncTarget that recorded the end of a resync its source did not has
    /// adopted that id, and writes under it would later be discarded by rule 50 instead of being
    /// seen as a split brain. And where DRBD (forced) overwrites a set bitmap id, we keep it: it
    /// is the generation the peer still holds, and the bitmap covers every change since. A
    /// source that missed the end of a resync thus keeps the sync id as bitmap id under a new
    /// current; rules 38/39 of the compare recognise it where DRBD would have used rule 34.
    pub fn new_current(&mut self, id: u64, primary: bool) {
        if self.bitmap == 0 {
            self.bitmap = self.current;
        }
        self.current = with_role(id, primary);
    }

    /// The peer is gone, with this node primary then (`primary_at_loss`) or now
    /// (`primary_now`, after a promotion in between): a new generation, as
    /// [`new_current`](Self::new_current). Its bitmap id says whether this node was primary at
    /// the split even if it is secondary by now: a demotion may have ended between the loss and
    /// this call, and the policies that look for the primary at the split
    /// (`discard-younger-primary`, `discard-older-primary`) must still find it.
    pub fn lost_peer(&mut self, id: u64, primary_at_loss: bool, primary_now: bool) {
        if primary_at_loss {
            self.set_role(true);
        }
        self.new_current(id, primary_now);
    }

    /// Records the role in bit 0 of the current id, as DRBD's `__drbd_uuid_set` does.
    pub fn set_role(&mut self, primary: bool) {
        self.current = with_role(self.current, primary);
    }

    /// Forgets the bitmap id once the copies are in sync again: it rotates into the history
    /// (`drbd_uuid_set_bm(device, 0)`).
    pub fn clear_bitmap(&mut self) {
        if self.bitmap != 0 {
            self.history = [self.bitmap, self.history[0]];
            self.bitmap = 0;
        }
    }

    /// A SyncSource starting a resync (`drbd_gen_and_send_sync_uuid`): derives the sync id from
    /// its bitmap id (or `random` when it has none), makes it its bitmap id and returns it; the
    /// target adopts it with [`GenerationIds::begin_resync_as_target`].
    pub fn begin_resync_as_source(&mut self, random: u64) -> u64 {
        let bitmap = self.bitmap & !PRIMARY_BIT;
        // Deviation: a bitmap id that is already a sync id (history[0] + offset) means an earlier
        // start never finished here (interrupted, or its sync id was lost). DRBD rotates again,
        // and after two lost attempts of a full sync the generation the target still holds falls
        // out of the history (the pair simulation found it: Unrelated); we resume under the same
        // sync id instead.
        let pending = (self.history[0] & !PRIMARY_BIT).wrapping_add(NEW_BM_OFFSET);
        if bitmap != 0 && bitmap == pending {
            return bitmap;
        }
        // DRBD compares the raw id with UUID_JUST_CREATED; we mask the role bit, which a Primary
        // that started from a just-created id leaves there.
        let sync_id = if bitmap != 0 && bitmap != JUST_CREATED {
            bitmap.wrapping_add(NEW_BM_OFFSET)
        } else {
            random
        } & !PRIMARY_BIT;
        // drbd_uuid_set(UI_BITMAP): a set slot moves into the history first.
        if self.bitmap != 0 {
            self.history = [self.bitmap, self.history[0]];
        }
        self.bitmap = sync_id;
        sync_id
    }

    /// A SyncTarget receiving the sync id (`receive_sync_uuid`): its data is now an unfinished
    /// copy of the source's, named by that id.
    pub fn begin_resync_as_target(&mut self, sync_id: u64, primary: bool) {
        self.current = with_role(sync_id, primary);
        self.bitmap = 0;
    }

    /// The SyncSource when the resync completed.
    pub fn finish_resync_as_source(&mut self) {
        self.clear_bitmap();
    }

    /// The SyncTarget when the resync completed: it now holds the source's generation.
    ///
    /// Simplification: DRBD's `drbd_resync_finished` copies the source's ids as last received,
    /// then pushes its own current through the bitmap slot, which leaves a duplicated history
    /// entry; taking the source's ids after [`GenerationIds::finish_resync_as_source`] gives
    /// both nodes the same set, which is what the compare rules look at.
    pub fn finish_resync_as_target(&mut self, source_after_finish: &GenerationIds, primary: bool) {
        *self = *source_after_finish;
        self.clear_bitmap();
        self.set_role(primary);
    }

    /// The first start of a brand-new pair (DRBD's `new-current-uuid --clear-bitmap`): both
    /// backing files were created by Fulcrum and never written, so they are equal already.
    /// Both nodes call this with the same `id` (chosen by one and sent to the other).
    pub fn skip_initial_sync(&mut self, id: u64) {
        *self = Self {
            current: id & !PRIMARY_BIT,
            bitmap: 0,
            history: [0, 0],
        };
    }
}

fn with_role(id: u64, primary: bool) -> u64 {
    if primary {
        id | PRIMARY_BIT
    } else {
        id & !PRIMARY_BIT
    }
}

/// A disk's state as far as resync is concerned; ordered like DRBD's `enum drbd_disk_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiskState {
    /// Partly written by a resync (or never synced): must not serve as a source.
    Inconsistent,
    /// Consistent but known to lack the peer's newer writes.
    Outdated,
    /// Holds the newest data it knows of.
    UpToDate,
}

/// What one side brings to the connect-time comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    /// Its generation identifiers.
    pub ids: GenerationIds,
    /// Whether it is Primary now.
    pub primary: bool,
    /// Whether it went down uncleanly while Primary (DRBD's `CRASHED_PRIMARY`), so writes may
    /// have reached its disk and not the peer's.
    pub crashed_primary: bool,
    /// Its disk state.
    pub disk: DiskState,
}

/// What to do after connecting, from the local node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncDecision {
    /// The copies are equal: go Connected.
    NoSync,
    /// Send the peer what differs; `full` sets the whole bitmap first.
    BecomeSyncSource {
        /// Every block, not only those the bitmaps mark.
        full: bool,
    },
    /// Receive what differs from the peer; `full` sets the whole bitmap first.
    BecomeSyncTarget {
        /// Every block, not only those the bitmaps mark.
        full: bool,
    },
    /// Both sides changed since they parted; a split-brain policy or the operator decides.
    SplitBrain(SplitBrain),
    /// No shared generation at all: refuse to connect (DRBD: "Unrelated data, aborting!").
    Unrelated,
    /// The rules pick a side as source whose disk is Inconsistent: refuse to connect.
    SourceInconsistent,
}

/// The facts DRBD's after-split-brain policies decide on (`drbd_asb_recover_*`); the caller adds
/// the amount each side changed (its bitmap's out-of-sync bytes) for `discard-least-changes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitBrain {
    /// Both bitmaps are relative to the same generation (DRBD's 100), so resolving it is a
    /// bitmap-based resync; otherwise (DRBD's -100) only a full sync is safe.
    pub bitmap_based: bool,
    /// The local node was Primary when it started its divergent generation (the older primary).
    pub local_primary_at_split: bool,
    /// The peer was Primary when it started its divergent generation.
    pub peer_primary_at_split: bool,
    /// The local node is Primary now.
    pub local_primary: bool,
    /// The peer is Primary now.
    pub peer_primary: bool,
}

/// The outcome of [`compare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// What to do.
    pub decision: SyncDecision,
    /// The DRBD rule number that decided (`uuid_compare()=%d by rule %d` in DRBD's log).
    pub rule: u16,
    /// Disk states overrode the generation ids (DRBD: "Becoming sync source due to disk states").
    pub by_disk_state: bool,
    /// The local ids as DRBD corrects them (rules 34 and 71: the local node missed the end or
    /// the start of the last resync), for the log and the tests. Fulcrum does not persist
    /// them, where DRBD does. With this module's deviations, the stored ids already lead to the
    /// same decisions: a source resumes under a pending sync id, and keeps its bitmap id under
    /// a new current, which rules 38/39 recognise. The pair simulation (`generation_tests.rs`)
    /// keeps every acknowledged write over 20,000 random histories either way.
    pub corrected_local: Option<GenerationIds>,
}

/// Decides what happens when `local` connects to `peer`.
///
/// `local_resolves_conflicts` breaks the one tie the ids cannot (both crashed while Primary);
/// exactly one side of a connection must pass `true` (DRBD's `RESOLVE_CONFLICTS`), which then
/// becomes SyncTarget. The result is symmetric: the peer, passing the mirrored arguments, reaches
/// the mirrored decision.
///
/// Refusals a caller still applies (as DRBD's `drbd_sync_handshake` does after this): a Primary
/// told to become SyncTarget (`rr-conflict`), and the split-brain policies.
pub fn compare(local: &Side, peer: &Side, local_resolves_conflicts: bool) -> Outcome {
    let (hg, rule, corrected_local) = uuid_compare(local, peer, local_resolves_conflicts);
    let mut outcome = Outcome {
        decision: SyncDecision::NoSync,
        rule,
        by_disk_state: false,
        corrected_local,
    };
    let mut hg = match hg {
        Hg::Unrelated => {
            outcome.decision = SyncDecision::Unrelated;
            return outcome;
        }
        Hg::Value(v) => v,
    };

    // An Inconsistent disk cannot be a source whatever its ids say; a split brain or a full sync
    // decided by the ids stays a full sync.
    let (mine, theirs) = (local.disk, peer.disk);
    if (mine == DiskState::Inconsistent && theirs > DiskState::Inconsistent)
        || (theirs == DiskState::Inconsistent && mine > DiskState::Inconsistent)
    {
        let full = hg == -100 || hg.abs() == 2;
        hg = if mine > DiskState::Inconsistent {
            1
        } else {
            -1
        };
        if full {
            hg *= 2;
        }
        outcome.by_disk_state = true;
    }

    outcome.decision = match hg {
        0 => SyncDecision::NoSync,
        100 | -100 => SyncDecision::SplitBrain(SplitBrain {
            bitmap_based: hg == 100,
            local_primary_at_split: local.ids.bitmap & PRIMARY_BIT != 0,
            peer_primary_at_split: peer.ids.bitmap & PRIMARY_BIT != 0,
            local_primary: local.primary,
            peer_primary: peer.primary,
        }),
        // DRBD refuses on the would-be source only; we refuse on both sides so the outcome
        // stays symmetric and neither side starts a resync the other will abort.
        h if h > 0 && mine == DiskState::Inconsistent => SyncDecision::SourceInconsistent,
        h if h < 0 && theirs == DiskState::Inconsistent => SyncDecision::SourceInconsistent,
        h if h > 0 => SyncDecision::BecomeSyncSource { full: h >= 2 },
        h => SyncDecision::BecomeSyncTarget { full: h <= -2 },
    };
    outcome
}

/// DRBD's integer result ("hg"): 2/1 source full/bitmap, 0 none, -1/-2 target, +-100 split brain.
enum Hg {
    Value(i32),
    Unrelated,
}

/// `drbd_uuid_compare` of DRBD 8.4 with protocol >= 96 and the `WSAME` feature, which every
/// Fulcrum peer speaks, so the "requires protocol N" results cannot occur.
fn uuid_compare(
    local: &Side,
    peer: &Side,
    resolve_conflicts: bool,
) -> (Hg, u16, Option<GenerationIds>) {
    let m = |id: u64| id & !PRIMARY_BIT;
    let (l, p) = (&local.ids, &peer.ids);
    let (self_cur, peer_cur) = (m(l.current), m(p.current));

    // Rule 10: both just created: nothing to sync (the first start of a brand-new pair).
    if self_cur == JUST_CREATED && peer_cur == JUST_CREATED {
        return (Hg::Value(0), 10, None);
    }
    // Rule 20: only we are new (or wiped): take everything from the peer.
    if (self_cur == JUST_CREATED || self_cur == 0) && peer_cur != JUST_CREATED {
        return (Hg::Value(-2), 20, None);
    }
    // Rule 30: only the peer is new: send it everything.
    if self_cur != JUST_CREATED && (peer_cur == JUST_CREATED || peer_cur == 0) {
        return (Hg::Value(2), 30, None);
    }

    if self_cur == peer_cur {
        // Rules 34/36: same generation, but we still have a bitmap id and the peer has none:
        // we were SyncSource and missed the "resync finished" event (34, correct ourselves when
        // our history proves it) or the peer failed to persist the sync id (36).
        if p.bitmap == 0 && l.bitmap != 0 {
            if m(l.bitmap) == m(p.history[0]) && m(l.history[0]) == m(p.history[1]) {
                let mut fixed = *l;
                fixed.clear_bitmap();
                return (Hg::Value(1), 34, Some(fixed));
            }
            return (Hg::Value(1), 36, None);
        }
        // Rules 35/37: the mirror image: we were SyncTarget.
        if l.bitmap == 0 && p.bitmap != 0 {
            let rule = if m(l.history[0]) == m(p.bitmap) && m(l.history[1]) == m(p.history[0]) {
                35
            } else {
                37
            };
            return (Hg::Value(-1), rule, None);
        }

        // Rule 40: same generation, no bitmap ids: a link hiccup (no crashed primary), or a
        // common power failure, where the crashed Primary may hold writes the other lacks.
        match (local.crashed_primary, peer.crashed_primary) {
            (false, false) => return (Hg::Value(0), 40, None),
            _ if local.primary || peer.primary => {
                // Rule 41: IO was frozen rather than crashed; the current Primary wins, and two
                // Primaries with unrotated ids "can not happen" (DRBD gives up: -100).
                let hg = match (local.primary, peer.primary) {
                    (true, true) => -100,
                    (true, false) => 1,
                    _ => -1,
                };
                return (Hg::Value(hg), 41, None);
            }
            (true, false) => return (Hg::Value(1), 40, None),
            (false, true) => return (Hg::Value(-1), 40, None),
            (true, true) => return (Hg::Value(if resolve_conflicts { -1 } else { 1 }), 40, None),
        }
    }

    // Rule 50: the peer's bitmap is relative to our current generation: it moved on, we did not.
    if self_cur == m(p.bitmap) {
        return (Hg::Value(-1), 50, None);
    }
    // Rule 51: the peer started a resync as source (its bitmap id is its last one plus the
    // offset) but its sync id never reached us: undo that in our view of the peer; SyncTarget.
    if self_cur == m(p.history[0]) && m(p.history[0]).wrapping_add(NEW_BM_OFFSET) == m(p.bitmap) {
        return (Hg::Value(-1), 51, None);
    }
    // Rule 60: our current generation is in the peer's history: it is far ahead; full sync.
    if p.history.iter().any(|&h| m(h) == self_cur) {
        return (Hg::Value(-2), 60, None);
    }
    // Rule 70: our bitmap is relative to the peer's current generation: we moved on.
    if m(l.bitmap) == peer_cur {
        return (Hg::Value(1), 70, None);
    }
    // Rule 71: the mirror of 51: our sync id never reached the peer; undo our last start of
    // resync (as DRBD would persist; Fulcrum does not, see [`Outcome`]) and stay SyncSource.
    if m(l.history[0]) == peer_cur && m(l.history[0]).wrapping_add(NEW_BM_OFFSET) == m(l.bitmap) {
        let fixed = GenerationIds {
            bitmap: l.history[0],
            history: [l.history[1], l.history[1]],
            ..*l
        };
        return (Hg::Value(1), 71, Some(fixed));
    }
    // Rule 80: the peer's current generation is in our history: we are far ahead; full sync.
    if l.history.iter().any(|&h| m(h) == peer_cur) {
        return (Hg::Value(2), 80, None);
    }
    // Rule 38 (38/39 are not in DRBD's table: our `new_current` deviation needs them): as
    // 34/35, we were SyncSource and missed the end of the resync the peer recorded (its
    // history holds our sync id and the generation before it), but we have started a new
    // generation since, keeping the sync id as bitmap id. DRBD never gets here (no new
    // generation while the bitmap id is set; then rule 34 applies). The peer has no bitmap id,
    // so it has not written since it adopted our generation of the time, and our bitmap covers
    // every change since the sync id: SyncSource, bitmap-based. If the peer did write (it has a
    // bitmap id), both moved on: the split brain of rule 100 stands.
    if m(p.bitmap) == 0
        && m(l.bitmap) != 0
        && m(l.bitmap) == m(p.history[0])
        && m(l.history[0]) == m(p.history[1])
    {
        return (Hg::Value(1), 38, None);
    }
    // Rule 39: the mirror image: the peer was SyncSource and missed the end; SyncTarget.
    if m(l.bitmap) == 0
        && m(p.bitmap) != 0
        && m(l.history[0]) == m(p.bitmap)
        && m(l.history[1]) == m(p.history[0])
    {
        return (Hg::Value(-1), 39, None);
    }
    // Rule 90: both bitmaps relative to the same generation: both changed since (split brain,
    // resolvable from the bitmaps).
    if m(l.bitmap) == m(p.bitmap) && m(l.bitmap) != 0 {
        return (Hg::Value(100), 90, None);
    }
    // Rule 100: only an older generation is shared: split brain needing a full sync.
    // Deviation: DRBD compares the history slots only, empty (0) ones included, which makes two
    // sets sharing nothing but empty slots a split brain that an after-sb policy might resolve
    // by overwriting; we ignore empty slots (those pairs are Unrelated, refused) and look at the
    // bitmap slots too, so a just-created id kept there still proves the common (empty) origin.
    let past = |ids: &GenerationIds| [ids.bitmap, ids.history[0], ids.history[1]].map(m);
    let (lp, pp) = (past(l), past(p));
    if lp.iter().any(|&a| a != 0 && pp.contains(&a)) {
        return (Hg::Value(-100), 100, None);
    }
    (Hg::Unrelated, 100, None)
}

#[cfg(test)]
#[path = "generation_tests.rs"]
mod tests;
