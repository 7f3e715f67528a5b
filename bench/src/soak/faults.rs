//! Injecting a fault into the running site and undoing it, as an operator or a supervisor
//! would: a crashed or stopped node is started again, a link plugged back, the loss cleared,
//! the disk freed.

use std::time::Duration;

use fulcrum_lab::fulcrum::Signal;
use fulcrum_lab::seed004::Seed004;
use fulcrum_lab::seed004::link_loss::{clear_link_loss, link_loss};

use super::site::panic_text;
use super::{FaultKind, L7Node};

/// The share of packets [`FaultKind::PacketLoss`] drops each way.
const LOSS_PERCENT: u8 = 10;

/// How long a node may take to exit after SIGTERM (its grace and the volume's demotion)
/// before it is killed.
const STOP_PATIENCE: Duration = Duration::from_secs(20);

/// The node a fault's `occurrence`-th injection (from 0) targets: the L7 faults alternate
/// between A and B, so both nodes go through each, unless `only` names one of them (to watch
/// the other survive every fault).
pub(crate) fn target(kind: FaultKind, occurrence: usize, only: Option<L7Node>) -> &'static str {
    match kind {
        FaultKind::Director => "lvs",
        FaultKind::FullDisk => "B",
        _ if only.is_some() => only.map_or("A", L7Node::name),
        _ if occurrence.is_multiple_of(2) => "A",
        _ => "B",
    }
}

/// A fault in place, with what undoing it needs to know.
#[derive(Debug)]
pub(crate) struct Injected {
    pub(crate) kind: FaultKind,
    pub(crate) node: &'static str,
    /// B's `TransferFailed` alerts before the full disk, to count those it sent while full.
    transfer_failures: usize,
}

/// Injects `kind` on `node`.
pub(crate) fn inject(site: &mut Seed004, kind: FaultKind, node: &'static str) -> Injected {
    let transfer_failures = transfer_failures(site, node);
    match kind {
        FaultKind::Crash => site.crash(node),
        FaultKind::Sigterm => site.l7(node).fulcrum.signal(Signal::Term),
        FaultKind::LinkCut => site.bridge().cut(&site.l7(node).ns),
        FaultKind::PacketLoss => link_loss(&site.l7(node).ns, "eth0", LOSS_PERCENT),
        FaultKind::Director => site.lvs.fulcrum.kill(),
        FaultKind::FullDisk => {
            if let Some(disk) = &site.l7(node).uploads_disk {
                disk.fill();
            }
        }
    }
    Injected {
        kind,
        node,
        transfer_failures,
    }
}

/// Undoes `fault`; returns what happened on the way worth a note in the report. A step that
/// fails (the lab panics: a node that does not start again) is caught and returned as an
/// error, so the run goes on to its report.
pub(crate) fn undo(site: &mut Seed004, fault: &Injected) -> Result<Vec<String>, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| undo_steps(site, fault)))
        .map_err(|panic| panic_text(&*panic))
}

fn undo_steps(site: &mut Seed004, fault: &Injected) -> Vec<String> {
    let node = fault.node;
    let mut notes = Vec::new();
    match fault.kind {
        FaultKind::Crash => site.l7_mut(node).fulcrum.restart(),
        FaultKind::Sigterm => {
            notes.extend(stop(site, node));
            site.l7_mut(node).fulcrum.restart();
        }
        FaultKind::LinkCut => site.bridge().heal(&site.l7(node).ns),
        FaultKind::PacketLoss => clear_link_loss(&site.l7(node).ns),
        FaultKind::Director => site.lvs.fulcrum.restart(),
        FaultKind::FullDisk => {
            if let Some(disk) = &site.l7(node).uploads_disk {
                disk.free();
            }
            // A transfer that failed five times is set aside and tried again every 30 s
            // (docs/config.md §9): no restart; the uploads' check shows whether it arrived.
            let failed = transfer_failures(site, node) - fault.transfer_failures;
            if failed > 0 {
                notes.push(format!(
                    "{node} reported {failed} failed transfer(s) while full, retried by itself"
                ));
            }
        }
    }
    notes
}

/// Waits for `node` to exit after its SIGTERM, killing it past [`STOP_PATIENCE`].
fn stop(site: &mut Seed004, node: &str) -> Option<String> {
    let fulcrum = &mut site.l7_mut(node).fulcrum;
    if fulcrum.wait_exit(STOP_PATIENCE) {
        return None;
    }
    fulcrum.kill();
    Some(format!(
        "{node} did not exit within {STOP_PATIENCE:?} of SIGTERM: killed"
    ))
}

/// The `TransferFailed` alerts `node`'s sync set has sent so far.
fn transfer_failures(site: &Seed004, node: &str) -> usize {
    site.alerts
        .alerts()
        .iter()
        .filter(|a| a["node"] == node && a["category"] == "sync" && a["state"] == "TransferFailed")
        .count()
}

#[cfg(test)]
mod tests {
    use super::target;
    use crate::soak::{FaultKind, L7Node};

    #[test]
    fn l7_faults_alternate_between_the_nodes() {
        assert_eq!(target(FaultKind::Crash, 0, None), "A");
        assert_eq!(target(FaultKind::Crash, 1, None), "B");
        assert_eq!(target(FaultKind::LinkCut, 2, None), "A");
        assert_eq!(target(FaultKind::FullDisk, 1, None), "B");
        assert_eq!(target(FaultKind::Director, 0, None), "lvs");
    }

    #[test]
    fn a_named_node_takes_every_l7_fault() {
        for occurrence in 0..4 {
            assert_eq!(target(FaultKind::Crash, occurrence, Some(L7Node::B)), "B");
            assert_eq!(target(FaultKind::Sigterm, occurrence, Some(L7Node::A)), "A");
        }
        assert_eq!(target(FaultKind::Director, 1, Some(L7Node::A)), "lvs");
    }
}
