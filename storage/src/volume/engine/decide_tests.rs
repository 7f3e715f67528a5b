//! The connect-time plan on both sides of a pair: each case checks that the two sides reach
//! mirrored plans.

use super::*;
use crate::volume::meta::GenerationIds;

fn side(ids: GenerationIds, primary: bool, disk: DiskState) -> Intent {
    Intent {
        side: Side {
            ids,
            primary,
            crashed_primary: false,
            disk,
        },
        discard_my_data: false,
    }
}

fn fresh(disk: DiskState) -> Intent {
    side(GenerationIds::just_created(), false, disk)
}

// Input: two brand-new nodes. Output: no sync, both adopt a common generation.
#[test]
fn a_fresh_pair_needs_no_sync() {
    let (a, b) = (fresh(DiskState::UpToDate), fresh(DiskState::UpToDate));
    assert_eq!(first(&a, &b, false), First::NoSync { initial: true });
    assert_eq!(first(&b, &a, true), First::NoSync { initial: true });
}

// Input: A was promoted before B ever connected (new generation over the just-created one) and
// B is brand new (zeroes). Output: a bitmap-based resync from A, not a full one.
#[test]
fn a_primary_that_started_first_resyncs_its_bitmap_only() {
    let mut ids = GenerationIds::just_created();
    ids.new_current(0x1000, true);
    let a = side(ids, true, DiskState::UpToDate);
    let b = fresh(DiskState::UpToDate);
    assert_eq!(
        first(&a, &b, false),
        First::Sync {
            source: true,
            full: false
        }
    );
    assert_eq!(
        first(&b, &a, true),
        First::Sync {
            source: false,
            full: false
        }
    );
    // B adopted existing data (Inconsistent): its content is unknown, so a full sync.
    let b = fresh(DiskState::Inconsistent);
    assert_eq!(
        first(&a, &b, false),
        First::Sync {
            source: true,
            full: true
        }
    );
    assert_eq!(
        first(&b, &a, true),
        First::Sync {
            source: false,
            full: true
        }
    );
}

fn split() -> SplitBrain {
    SplitBrain {
        bitmap_based: true,
        local_primary_at_split: true,
        peer_primary_at_split: false,
        local_primary: false,
        peer_primary: false,
    }
}

fn mirror(sb: &SplitBrain) -> SplitBrain {
    SplitBrain {
        bitmap_based: sb.bitmap_based,
        local_primary_at_split: sb.peer_primary_at_split,
        peer_primary_at_split: sb.local_primary_at_split,
        local_primary: sb.peer_primary,
        peer_primary: sb.local_primary,
    }
}

fn both(
    sb: SplitBrain,
    discard: (bool, bool),
    changes: (u64, u64),
    policies: &SplitBrainPolicies,
) -> (Plan, Plan) {
    let mut a = fresh(DiskState::UpToDate);
    let mut b = fresh(DiskState::UpToDate);
    a.discard_my_data = discard.0;
    b.discard_my_data = discard.1;
    (
        resolve(&sb, &a, &b, changes, false, policies),
        resolve(&mirror(&sb), &b, &a, (changes.1, changes.0), true, policies),
    )
}

// Input: split brain, default policies. Output: both refuse; with --discard-my-data on B, B is
// the target (bitmap-based), A the source.
#[test]
fn disconnect_unless_an_operator_discards() {
    let p = SplitBrainPolicies::default();
    let refused = Plan::Refuse(Refusal::SplitBrain);
    assert_eq!(
        both(split(), (false, false), (10, 20), &p),
        (refused, refused)
    );
    assert_eq!(
        both(split(), (false, true), (10, 20), &p),
        (Plan::Source { full: false }, Plan::Target { full: false })
    );
    let sb = SplitBrain {
        bitmap_based: false,
        ..split()
    };
    assert_eq!(
        both(sb, (true, false), (10, 20), &p),
        (Plan::Target { full: true }, Plan::Source { full: true })
    );
    let both_discard = Plan::Refuse(Refusal::BothDiscard);
    assert_eq!(
        both(split(), (true, true), (1, 2), &p),
        (both_discard, both_discard)
    );
}

// Input: each 0pri policy. Output: DRBD's victim, the same seen from both sides.
#[test]
fn zero_primaries_policies() {
    let with = |zero_primaries| SplitBrainPolicies {
        zero_primaries,
        ..SplitBrainPolicies::default()
    };
    let (src, tgt) = (Plan::Source { full: false }, Plan::Target { full: false });
    // A was primary at the split (older), B promoted later (younger).
    assert_eq!(
        both(
            split(),
            (false, false),
            (5, 9),
            &with(ZeroPrimariesPolicy::DiscardYoungerPrimary)
        ),
        (src, tgt)
    );
    assert_eq!(
        both(
            split(),
            (false, false),
            (5, 9),
            &with(ZeroPrimariesPolicy::DiscardOlderPrimary)
        ),
        (tgt, src)
    );
    assert_eq!(
        both(
            split(),
            (false, false),
            (5, 9),
            &with(ZeroPrimariesPolicy::DiscardLeastChanges)
        ),
        (tgt, src)
    );
    assert_eq!(
        both(
            split(),
            (false, false),
            (0, 9),
            &with(ZeroPrimariesPolicy::DiscardZeroChanges)
        ),
        (tgt, src)
    );
    let refused = Plan::Refuse(Refusal::SplitBrain);
    assert_eq!(
        both(
            split(),
            (false, false),
            (5, 9),
            &with(ZeroPrimariesPolicy::DiscardZeroChanges)
        ),
        (refused, refused)
    );
    // A tie: the side resolving conflicts (B here) discards.
    assert_eq!(
        both(
            split(),
            (false, false),
            (7, 7),
            &with(ZeroPrimariesPolicy::DiscardLeastChanges)
        ),
        (src, tgt)
    );
}

// Input: B is primary now. Output: discard-secondary discards A; consensus only when the 0pri
// policy agrees; a primary is never a target.
#[test]
fn one_primary_policies() {
    let sb = SplitBrain {
        peer_primary: true,
        ..split()
    };
    let (src, tgt) = (Plan::Source { full: false }, Plan::Target { full: false });
    let p = SplitBrainPolicies {
        one_primary: OnePrimaryPolicy::DiscardSecondary,
        ..SplitBrainPolicies::default()
    };
    assert_eq!(both(sb, (false, false), (5, 9), &p), (tgt, src));
    let consensus = |zero_primaries| SplitBrainPolicies {
        zero_primaries,
        one_primary: OnePrimaryPolicy::Consensus,
        ..SplitBrainPolicies::default()
    };
    assert_eq!(
        both(
            sb,
            (false, false),
            (5, 9),
            &consensus(ZeroPrimariesPolicy::DiscardLeastChanges)
        ),
        (tgt, src)
    );
    let refused = Plan::Refuse(Refusal::SplitBrain);
    assert_eq!(
        both(
            sb,
            (false, false),
            (9, 5),
            &consensus(ZeroPrimariesPolicy::DiscardLeastChanges)
        ),
        (refused, refused)
    );
    // The operator tells the primary to discard: refused.
    let pt = Plan::Refuse(Refusal::PrimaryTarget);
    assert_eq!(
        both(sb, (false, true), (1, 1), &SplitBrainPolicies::default()),
        (pt, pt)
    );
}

#[test]
fn two_primaries_are_refused() {
    let a = side(GenerationIds::just_created(), true, DiskState::UpToDate);
    assert_eq!(first(&a, &a, false), First::Refuse(Refusal::TwoPrimaries));
}

// Input: the soak's false split brain. A (Primary) started a resync as source, B (Secondary)
// recorded its end, the link dropped before A did, and A started a new generation on the loss.
// Output: A bitmap-based SyncSource, B SyncTarget (was: split brain, both StandAlone).
#[test]
fn a_primary_source_that_missed_the_end_of_resync_resyncs_from_its_bitmap() {
    let mut a_ids = GenerationIds::just_created();
    a_ids.skip_initial_sync(0x1000);
    a_ids.set_role(true);
    let mut b_ids = a_ids;
    b_ids.set_role(false);
    a_ids.new_current(0x2000, true);
    let sync = a_ids.begin_resync_as_source(0x3000);
    b_ids.begin_resync_as_target(sync, false);
    let mut finished = a_ids;
    finished.finish_resync_as_source();
    b_ids.finish_resync_as_target(&finished, false);
    a_ids.new_current(0x4000, true);
    let a = side(a_ids, true, DiskState::UpToDate);
    let b = side(b_ids, false, DiskState::UpToDate);
    // A dials, so B resolves conflicts.
    assert_eq!(
        first(&a, &b, false),
        First::Sync {
            source: true,
            full: false
        }
    );
    assert_eq!(
        first(&b, &a, true),
        First::Sync {
            source: false,
            full: false
        }
    );
}
