//! Is every acknowledged write still there? Each upload answered 201 must be in both L7 nodes'
//! upload directories, byte for byte (checked during the run before its name is reused, and at
//! the end); each NBD write whose flush returned must read back, at the end, from whoever holds
//! VIP1 then.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fulcrum_lab::netns::{Netns, wait_until};
use fulcrum_lab::seed004::load::thread_in;
use serde::{Deserialize, Serialize};

use super::nbd::{BLOCK, Client, Write4k, block, slot_of};
use super::uploads::{Dirs, UploadLog, Version, upload_body};

/// How long the sync may take to bring the last uploads to both nodes, and the NBD export to
/// answer, once the load has stopped.
const PATIENCE: Duration = Duration::from_secs(60);

/// Lost writes listed in the report, at most.
const LISTED: usize = 20;

/// What the check of one kind of write found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteCheck {
    /// Writes attempted, and acknowledged.
    pub attempted: usize,
    pub acknowledged: usize,
    /// Acknowledged writes checked (for NBD, those no later acknowledged write replaced).
    pub checked: usize,
    /// Acknowledged writes missing or different.
    pub lost: usize,
    /// The first few of them, with what was wrong.
    pub lost_examples: Vec<String>,
}

/// The uploads' check: the versions checked during the run (before their name was reused),
/// then the last acknowledged version of each name, given up to [`PATIENCE`] to reach both
/// nodes.
pub(crate) fn check_uploads(t0: Instant, log: &UploadLog, dirs: &Dirs) -> WriteCheck {
    let finals: Vec<(&String, &Version)> = log.last.iter().filter(|(_, v)| v.acked).collect();
    let problems = || -> Vec<String> {
        finals
            .iter()
            .filter_map(|(name, v)| {
                on_both(dirs, name, &upload_body(name, v.n))
                    .err()
                    .map(|problem| {
                        format!(
                            "{name} version {} (sent at {:.1} s): {problem}",
                            v.n,
                            v.started.saturating_duration_since(t0).as_secs_f64()
                        )
                    })
            })
            .collect()
    };
    let mut lost = Vec::new();
    wait_until(PATIENCE, Duration::from_millis(500), || {
        lost = problems();
        lost.is_empty()
    });
    let all_lost: Vec<String> = log.lost.iter().cloned().chain(lost).collect();
    WriteCheck {
        attempted: log.requests.len(),
        acknowledged: log.requests.iter().filter(|r| r.ok).count(),
        checked: log.checked + finals.len(),
        lost: all_lost.len(),
        lost_examples: all_lost.into_iter().take(LISTED).collect(),
    }
}

/// Whether file `name` holds `want` in both `dirs`, or else what is wrong.
pub(crate) fn on_both(dirs: &Dirs, name: &str, want: &[u8]) -> Result<(), String> {
    let mut problems = Vec::new();
    for (node, dir) in dirs {
        match std::fs::read(dir.join(name)) {
            Ok(got) if got == want => {}
            Ok(got) => problems.push(format!(
                "different on {node} ({} bytes{})",
                got.len(),
                String::from_utf8_lossy(got.get(..40).unwrap_or_default())
                    .split(" line")
                    .next()
                    .map(|v| format!(", holds {v}"))
                    .unwrap_or_default()
            )),
            Err(e) => problems.push(format!("missing on {node} ({e})")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join(", "))
    }
}

/// Reads back every slot that holds an acknowledged write, from export `name` on `addr` as seen
/// from `ns`. A slot must hold its last acknowledged write, or one attempted after it (a write
/// that failed may still have reached the disk).
pub(crate) fn check_nbd(
    ns: &Netns,
    addr: SocketAddr,
    name: &'static str,
    writes: &[Write4k],
    slots: u64,
) -> WriteCheck {
    let mut by_slot: BTreeMap<u64, Vec<Write4k>> = BTreeMap::new();
    for w in writes {
        by_slot.entry(slot_of(w.seq, slots)).or_default().push(*w);
    }
    // Per slot: the last acknowledged write, and the writes allowed to be found there.
    let expected: Vec<(u64, u64, Vec<u64>)> = by_slot
        .into_iter()
        .filter_map(|(slot, mut ws)| {
            ws.sort_by_key(|w| w.seq);
            let last = ws.iter().rposition(|w| w.acked)?;
            let allowed = ws[last..].iter().map(|w| w.seq).collect();
            Some((slot, ws[last].seq, allowed))
        })
        .collect();
    let acknowledged = writes.iter().filter(|w| w.acked).count();
    let checked = expected.len();
    let lost = thread_in(ns, move || read_back(addr, name, &expected))
        .join()
        .unwrap_or_else(|_| vec!["the read-back thread panicked".to_owned()]);
    WriteCheck {
        attempted: writes.len(),
        acknowledged,
        checked,
        lost: lost.len(),
        lost_examples: lost.into_iter().take(LISTED).collect(),
    }
}

/// Reads each expected slot; returns what does not match. Connection failures are retried for
/// [`PATIENCE`]; a slot that cannot be read at all counts as lost.
fn read_back(addr: SocketAddr, name: &str, expected: &[(u64, u64, Vec<u64>)]) -> Vec<String> {
    let mut client = None;
    let mut last_error = String::new();
    wait_until(PATIENCE, Duration::from_millis(500), || {
        match Client::connect(addr, name) {
            Ok(c) => client = Some(c),
            Err(e) => last_error = e,
        }
        client.is_some()
    });
    let Some(mut client) = client else {
        return expected
            .iter()
            .map(|(slot, seq, _)| {
                format!("write {seq} (slot {slot}): cannot connect: {last_error}")
            })
            .collect();
    };
    let mut lost = Vec::new();
    let mut got = vec![0u8; BLOCK];
    for (slot, seq, allowed) in expected {
        if let Err(e) = client.read(slot * BLOCK as u64, &mut got) {
            lost.push(format!("write {seq} (slot {slot}): read failed: {e}"));
            // A broken connection would fail every later read too: reconnect once.
            match Client::connect(addr, name) {
                Ok(c) => client = c,
                Err(_) => continue,
            }
            continue;
        }
        if !allowed.iter().any(|&s| block(s) == got) {
            let found = if got.starts_with(b"soak-nbd") {
                let mut n = [0u8; 8];
                n.copy_from_slice(&got[8..16]);
                format!("write {}'s block", u64::from_le_bytes(n))
            } else if got.iter().all(|&b| b == 0) {
                "zeroes".to_owned()
            } else {
                "other bytes".to_owned()
            };
            lost.push(format!("write {seq} (slot {slot}): reads back as {found}"));
        }
    }
    client.close();
    lost
}
