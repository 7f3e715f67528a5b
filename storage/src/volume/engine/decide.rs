//! What two nodes do once their Hellos are exchanged, decided the same way on both sides from
//! mirrored inputs (pure): [`meta::compare`](crate::volume::meta::compare), one refinement for
//! pairs Fulcrum created, the refusals DRBD applies after it, and the after-split-brain policies
//! (`drbd_asb_recover_0p`/`1p`/`2p`).
//!
//! The refinement: DRBD's rules 20/30 turn "one side still has the just-created id" into a full
//! sync. When that side's disk is UpToDate (Fulcrum created the backing: all zeroes) and the
//! other side's bitmap is relative to the just-created generation, the bitmap covers every block
//! that differs from zeroes, so a bitmap-based resync is enough: a `role = "primary"` node that
//! starts (and writes) before its brand-new peer does not cost a full sync.

use crate::volume::config::{OnePrimaryPolicy, SplitBrainPolicies, ZeroPrimariesPolicy};
use crate::volume::meta::generation::JUST_CREATED;
use crate::volume::meta::{DiskState, Side, SplitBrain, SyncDecision, compare};

/// The first step: whether bitmaps must be exchanged before the final [`Plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum First {
    /// Equal copies; `initial` when both are brand new (they then adopt a common generation).
    NoSync {
        initial: bool,
    },
    /// A resync, after the bitmap exchange.
    Sync {
        source: bool,
        full: bool,
    },
    /// A split brain: exchange bitmaps (the policies weigh the changes), then [`resolve`].
    SplitBrain(SplitBrain),
    Refuse(Refusal),
}

/// What this node does on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    NoSync { initial: bool },
    Source { full: bool },
    Target { full: bool },
    Refuse(Refusal),
}

/// Why a connection is refused; every refusal leaves both nodes StandAlone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No shared history (DRBD: "Unrelated data, aborting!").
    Unrelated,
    /// The rules pick an Inconsistent source.
    SourceInconsistent,
    /// A split brain no policy (and no `--discard-my-data`) resolves.
    SplitBrain,
    /// A Primary would become SyncTarget (DRBD's `rr-conflict disconnect`).
    PrimaryTarget,
    /// Both nodes are Primary.
    TwoPrimaries,
    /// Both sides were told `--discard-my-data`.
    BothDiscard,
}

/// What one side knows of itself beyond [`Side`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Intent {
    pub(crate) side: Side,
    /// `connect --discard-my-data`.
    pub(crate) discard_my_data: bool,
}

/// The decision before bitmaps are exchanged. `resolves_conflicts` is true on exactly one side.
pub(crate) fn first(local: &Intent, peer: &Intent, resolves_conflicts: bool) -> First {
    if local.side.primary && peer.side.primary {
        return First::Refuse(Refusal::TwoPrimaries);
    }
    let fresh = |s: &Side| s.ids.current & !1 == JUST_CREATED;
    let from_fresh = |other: &Side| other.ids.bitmap & !1 == JUST_CREATED;
    let decision = if fresh(&local.side)
        && !fresh(&peer.side)
        && local.side.disk == DiskState::UpToDate
        && from_fresh(&peer.side)
    {
        SyncDecision::BecomeSyncTarget { full: false }
    } else if fresh(&peer.side)
        && !fresh(&local.side)
        && peer.side.disk == DiskState::UpToDate
        && from_fresh(&local.side)
    {
        SyncDecision::BecomeSyncSource { full: false }
    } else {
        compare(&local.side, &peer.side, resolves_conflicts).decision
    };
    let sync = |source: bool, full: bool| primary_check(local, peer, source, full);
    match decision {
        SyncDecision::NoSync => First::NoSync {
            initial: fresh(&local.side) && fresh(&peer.side),
        },
        SyncDecision::BecomeSyncSource { full } => sync(true, full),
        SyncDecision::BecomeSyncTarget { full } => sync(false, full),
        SyncDecision::SplitBrain(sb) => First::SplitBrain(sb),
        SyncDecision::Unrelated => First::Refuse(Refusal::Unrelated),
        SyncDecision::SourceInconsistent => First::Refuse(Refusal::SourceInconsistent),
    }
}

fn primary_check(local: &Intent, peer: &Intent, source: bool, full: bool) -> First {
    let target_is_primary = if source {
        peer.side.primary
    } else {
        local.side.primary
    };
    if target_is_primary {
        First::Refuse(Refusal::PrimaryTarget)
    } else {
        First::Sync { source, full }
    }
}

/// Resolves a split brain once each side's changes (its bitmap's out-of-sync bytes before the
/// union) are known. A resolution discards one side's changes: that side becomes SyncTarget,
/// bitmap-based when both bitmaps are relative to the same generation, full otherwise.
pub(crate) fn resolve(
    sb: &SplitBrain,
    local: &Intent,
    peer: &Intent,
    changes: (u64, u64),
    resolves_conflicts: bool,
    policies: &SplitBrainPolicies,
) -> Plan {
    let full = !sb.bitmap_based;
    // --discard-my-data first: the operator's choice (DRBD applies it before the policies).
    let discard_local = match (local.discard_my_data, peer.discard_my_data) {
        (true, true) => return Plan::Refuse(Refusal::BothDiscard),
        (true, false) => Some(true),
        (false, true) => Some(false),
        (false, false) => match (sb.local_primary, sb.peer_primary) {
            (false, false) => {
                zero_primaries(policies.zero_primaries, sb, changes, resolves_conflicts)
            }
            (true, true) => None,
            _ => one_primary(policies, sb, changes, resolves_conflicts),
        },
    };
    match discard_local {
        // The discarded side becomes target; a primary never does.
        Some(true) if sb.local_primary => Plan::Refuse(Refusal::PrimaryTarget),
        Some(false) if sb.peer_primary => Plan::Refuse(Refusal::PrimaryTarget),
        Some(true) => Plan::Target { full },
        Some(false) => Plan::Source { full },
        None => Plan::Refuse(Refusal::SplitBrain),
    }
}

/// `after-sb-0pri`: `Some(true)` when the local node's changes are discarded.
fn zero_primaries(
    policy: ZeroPrimariesPolicy,
    sb: &SplitBrain,
    (mine, theirs): (u64, u64),
    resolves_conflicts: bool,
) -> Option<bool> {
    // Who was Primary at the split is the older primary; the other was promoted after.
    let (older_local, older_peer) = (sb.local_primary_at_split, sb.peer_primary_at_split);
    let least = || {
        Some(match mine.cmp(&theirs) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            // DRBD's tie-break: the side holding RESOLVE_CONFLICTS discards.
            std::cmp::Ordering::Equal => resolves_conflicts,
        })
    };
    match policy {
        ZeroPrimariesPolicy::Disconnect => None,
        ZeroPrimariesPolicy::DiscardYoungerPrimary | ZeroPrimariesPolicy::DiscardOlderPrimary
            if older_local == older_peer =>
        {
            // Undecidable by age: DRBD falls back to discard-least-changes.
            least()
        }
        ZeroPrimariesPolicy::DiscardYoungerPrimary => Some(!older_local),
        ZeroPrimariesPolicy::DiscardOlderPrimary => Some(older_local),
        ZeroPrimariesPolicy::DiscardZeroChanges => match (mine, theirs) {
            (0, 0) => Some(resolves_conflicts),
            (0, _) => Some(true),
            (_, 0) => Some(false),
            _ => None,
        },
        ZeroPrimariesPolicy::DiscardLeastChanges => least(),
    }
}

/// `after-sb-1pri`: `Some(true)` when the local node's changes are discarded.
fn one_primary(
    policies: &SplitBrainPolicies,
    sb: &SplitBrain,
    changes: (u64, u64),
    resolves_conflicts: bool,
) -> Option<bool> {
    let local_is_secondary = !sb.local_primary;
    match policies.one_primary {
        OnePrimaryPolicy::Disconnect => None,
        OnePrimaryPolicy::DiscardSecondary => Some(local_is_secondary),
        OnePrimaryPolicy::Consensus => {
            // Only if the 0pri policy would discard the secondary as well.
            let zero = zero_primaries(policies.zero_primaries, sb, changes, resolves_conflicts);
            (zero == Some(local_is_secondary)).then_some(local_is_secondary)
        }
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
