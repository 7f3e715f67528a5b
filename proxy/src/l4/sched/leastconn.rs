//! The least-connection family: `lc`, `wlc`, `sed` and `nq` (ip_vs_lc.c, ip_vs_wlc.c,
//! ip_vs_sed.c, ip_vs_nq.c). Stateless: each decision reads the counters the caller passes in.
//!
//! Ties go to the earlier server in the list, because every comparison is strict, as in the
//! kernel. Weighted loads are compared by cross-multiplication (`h1 * w2 > h2 * w1` for
//! `h1 / w1 > h2 / w2`), widened to 128 bits so no counter or weight can overflow it.

use super::{Dest, conn_overhead};

/// `lc`: the fewest `active * 256 + inactive`, weight only excluding the quiesced (weight 0).
pub(super) fn lc(dests: &[Dest]) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for (i, d) in dests.iter().enumerate() {
        if d.overloaded || d.weight == 0 {
            continue;
        }
        let doh = conn_overhead(d);
        if least.is_none_or(|(_, loh)| doh < loh) {
            least = Some((i, doh));
        }
    }
    least.map(|(i, _)| i)
}

/// `wlc`: the least `(active * 256 + inactive) / weight`. Also the fallback of `lblc` and
/// `lblcr` (`__ip_vs_lblc_schedule`, `__ip_vs_lblcr_schedule` are the same loop).
pub(super) fn wlc(dests: &[Dest]) -> Option<usize> {
    weighted_least(dests, conn_overhead)
}

/// `sed`: the least expected delay `(active + 1) / weight`; inactive connections do not count.
pub(super) fn sed(dests: &[Dest]) -> Option<usize> {
    weighted_least(dests, expected_delay)
}

/// `nq`: the first idle server (no active connections) in list order, else as `sed`.
pub(super) fn nq(dests: &[Dest]) -> Option<usize> {
    let mut least: Option<(usize, u64, u32)> = None;
    for (i, d) in dests.iter().enumerate() {
        if d.overloaded || d.weight == 0 {
            continue;
        }
        if d.active == 0 {
            return Some(i);
        }
        let doh = expected_delay(d);
        if least.is_none_or(|(_, loh, lw)| heavier(loh, lw, doh, d.weight)) {
            least = Some((i, doh, d.weight));
        }
    }
    least.map(|(i, _, _)| i)
}

/// The `wlc`/`sed` loop: the first server that is not overloaded and has weight > 0 seeds the
/// minimum, and a later one replaces it only when strictly lighter. Later servers are not checked
/// for weight 0 (the kernel does not either): `loh * 0 > doh * lw` never holds, so they never win.
fn weighted_least(dests: &[Dest], overhead: fn(&Dest) -> u64) -> Option<usize> {
    let mut servers = dests.iter().enumerate();
    let (mut least, first) = servers
        .by_ref()
        .find(|(_, d)| !d.overloaded && d.weight > 0)?;
    let (mut loh, mut lw) = (overhead(first), first.weight);
    for (i, d) in servers {
        if d.overloaded {
            continue;
        }
        let doh = overhead(d);
        if heavier(loh, lw, doh, d.weight) {
            (least, loh, lw) = (i, doh, d.weight);
        }
    }
    Some(least)
}

/// `sed`/`nq`'s overhead: only active connections, plus the one being scheduled.
fn expected_delay(dest: &Dest) -> u64 {
    u64::from(dest.active) + 1
}

/// Whether the current minimum `loh / lw` is heavier than the candidate `doh / dw`.
fn heavier(loh: u64, lw: u32, doh: u64, dw: u32) -> bool {
    u128::from(loh) * u128::from(dw) > u128::from(doh) * u128::from(lw)
}
