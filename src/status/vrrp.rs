//! `fulcrum status vrrp`: one block per instance with its state, priorities (configured and
//! effective), master, VIPs and advert counters, the facts keepalived users dig out of
//! `/tmp/keepalived.data` and `keepalived.stats`.

use std::{fmt::Write, path::Path, process::ExitCode};

use fulcrum_common::stats::VrrpInstance;

use crate::control;

/// Asks the running process and prints its instances (or the raw JSON with `json`).
pub(crate) fn vrrp(config_path: &Path, socket: Option<&Path>, json: bool) -> ExitCode {
    super::show(
        config_path,
        socket,
        control::SHOW_VRRP,
        json,
        |instances: Vec<VrrpInstance>| render(&instances),
    )
}

/// The listing, as text.
pub(crate) fn render(instances: &[VrrpInstance]) -> String {
    if instances.is_empty() {
        return "No VRRP instance configured.\n".to_owned();
    }
    let mut out = String::new();
    for i in instances {
        let reason = i
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let dropped: u64 = i.dropped.iter().map(|(_, n)| n).sum();
        let _ = writeln!(out, "VRRP instance {}", i.name);
        let _ = writeln!(
            out,
            "  State            {}{reason} for {}",
            i.state,
            super::l4::age(i.lastchg)
        );
        let _ = writeln!(
            out,
            "  Interface        {}   VRID {}   version {}",
            i.interface, i.vrid, i.version
        );
        let _ = writeln!(
            out,
            "  Priority         {} (effective {})",
            i.priority, i.effective_priority
        );
        let _ = writeln!(
            out,
            "  Master           {}",
            i.master.as_deref().unwrap_or("-")
        );
        let _ = writeln!(out, "  Virtual IPs      {}", i.vips.join(" "));
        let _ = writeln!(
            out,
            "  Adverts          sent {}   received {}   became master {} times",
            i.adverts_sent, i.adverts_received, i.became_master
        );
        let detail: Vec<String> = i.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", detail.join(", "))
        };
        let _ = writeln!(out, "  Dropped packets  {dropped}{detail}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_reads_like_keepalived_data() {
        let out = render(&[VrrpInstance {
            name: "VI_1".into(),
            interface: "eth0".into(),
            vrid: 51,
            version: 2,
            state: "MASTER".into(),
            reason: Some("master-no-response".into()),
            priority: 105,
            effective_priority: 100,
            master: Some("10.0.0.1".into()),
            vips: vec!["10.0.0.51/32".into()],
            lastchg: 65,
            adverts_sent: 40,
            adverts_received: 3,
            became_master: 1,
            dropped: vec![("auth_failed".into(), 2)],
        }]);
        assert!(
            out.contains("State            MASTER (master-no-response) for 01:05"),
            "{out}"
        );
        assert!(
            out.contains("Priority         105 (effective 100)"),
            "{out}"
        );
        assert!(out.contains("Dropped packets  2 (auth_failed 2)"), "{out}");
        assert!(
            out.contains("sent 40   received 3   became master 1 times"),
            "{out}"
        );
    }

    #[test]
    fn no_instance_says_so() {
        assert_eq!(render(&[]), "No VRRP instance configured.\n");
    }
}
