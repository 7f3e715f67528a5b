//! `fulcrum status l4`: asks the running process over its control socket and prints the L4 tier
//! the way `ipvsadm -L -n` does (with `--stats` and `--connections` as `ipvsadm --stats` and
//! `-c`), so LVS users read it at a glance. See docs/cli.md.

use std::{fmt::Write, path::Path, process::ExitCode};

use fulcrum_proxy::l4::status::{RealServerStatus, ServiceStatus};

use crate::control;

/// Which `ipvsadm -L` listing to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// Weights, ActiveConn, InActConn and status (`ipvsadm -L -n`).
    Table,
    /// Connections and bytes since start (`ipvsadm -L -n --stats`).
    Stats,
    /// One line per open connection (`ipvsadm -L -n -c`).
    Connections,
    /// The raw JSON document.
    Json,
}

/// Finds the socket (`--socket`, else the config's `control_socket`), asks, prints.
pub(crate) fn l4(config_path: &Path, socket: Option<&Path>, view: View) -> ExitCode {
    super::show(
        config_path,
        socket,
        control::SHOW_L4,
        view == View::Json,
        |services: Vec<ServiceStatus>| render(&services, view),
    )
}

/// The listing, as text.
pub(crate) fn render(services: &[ServiceStatus], view: View) -> String {
    let mut out = String::new();
    match view {
        View::Table | View::Json => {
            out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
            out.push_str(
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn Status\n",
            );
            for s in services {
                let _ = writeln!(out, "{}  {} {}", s.protocol, s.address, flags(s));
                for (rs, tag) in servers(s) {
                    let _ = writeln!(
                        out,
                        "  -> {:<28} {:<7} {:<6} {:<10} {:<9} {}{tag}",
                        rs.address.to_string(),
                        "Masq",
                        rs.effective_weight,
                        rs.active,
                        rs.inactive,
                        rs.status,
                    );
                }
            }
        }
        View::Stats => {
            out.push_str(
                "Prot LocalAddress:Port               Conns   InBytes  OutBytes  ConnErrs\n",
            );
            out.push_str("  -> RemoteAddress:Port\n");
            for s in services {
                let all: Vec<_> = servers(s).map(|(rs, _)| rs).collect();
                let sum = |f: fn(&RealServerStatus) -> u64| all.iter().map(|r| f(r)).sum::<u64>();
                let _ = writeln!(
                    out,
                    "{}  {:<30} {:>6} {:>9} {:>9} {:>9}",
                    s.protocol,
                    s.address.to_string(),
                    sum(|r| r.connections_total),
                    sum(|r| r.bytes_in),
                    sum(|r| r.bytes_out),
                    sum(|r| r.connect_errors),
                );
                for rs in all {
                    let _ = writeln!(
                        out,
                        "  -> {:<30} {:>6} {:>9} {:>9} {:>9}",
                        rs.address.to_string(),
                        rs.connections_total,
                        rs.bytes_in,
                        rs.bytes_out,
                        rs.connect_errors,
                    );
                }
            }
        }
        View::Connections => {
            out.push_str("pro age      state       source                 virtual                destination\n");
            for s in services {
                for c in &s.connections {
                    let _ = writeln!(
                        out,
                        "{} {:<8} {:<11} {:<22} {:<22} {}",
                        s.protocol,
                        age(c.age_secs),
                        c.state,
                        c.client.to_string(),
                        c.virtual_address.to_string(),
                        c.real_server,
                    );
                }
            }
        }
    }
    out
}

/// The real servers, then the fallback tagged as such.
fn servers(s: &ServiceStatus) -> impl Iterator<Item = (&RealServerStatus, &'static str)> {
    s.real_servers
        .iter()
        .map(|r| (r, ""))
        .chain(s.fallback.iter().map(|r| (r, " (fallback)")))
}

/// `wlc persistent 300 mask 255.255.255.0 non-quiescent (web)`: scheduler, flags, and the
/// service's name.
fn flags(s: &ServiceStatus) -> String {
    let mut out = s.scheduler.clone();
    if s.persistence_secs > 0 {
        let _ = write!(out, " persistent {}", s.persistence_secs);
    }
    if let Some(mask) = &s.persistence_netmask {
        let _ = write!(out, " mask {mask}");
    }
    if !s.quiescent {
        out.push_str(" non-quiescent");
    }
    let _ = write!(out, " ({})", s.name);
    out
}

/// `mm:ss` as ipvsadm prints expiry times, hours when needed.
pub(super) fn age(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{:02}:{:02}", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use fulcrum_proxy::l4::status::ConnectionStatus;

    use super::*;

    fn real(addr: &str, weight: u32, active: u32, status: &str) -> RealServerStatus {
        RealServerStatus {
            address: addr.parse().unwrap_or_else(|_| unreachable!()),
            status: status.to_owned(),
            weight,
            effective_weight: if status == "UP" { weight } else { 0 },
            in_service: true,
            active,
            inactive: 1,
            connections_total: 10,
            bytes_in: 100,
            bytes_out: 2000,
            connect_errors: 0,
            last_check: None,
        }
    }

    fn service() -> ServiceStatus {
        ServiceStatus {
            name: "web".to_owned(),
            protocol: "TCP".to_owned(),
            address: "10.10.60.22:80".parse().unwrap_or_else(|_| unreachable!()),
            scheduler: "wlc".to_owned(),
            persistence_secs: 300,
            persistence_netmask: Some("255.255.255.0".to_owned()),
            quiescent: true,
            persistent_clients: 0,
            no_server: 0,
            flows_refused: 0,
            real_servers: vec![
                real("192.168.60.78:80", 3, 2, "UP"),
                real("192.168.60.55:80", 1, 0, "DOWN"),
            ],
            fallback: None,
            connections: vec![ConnectionStatus {
                client: "10.0.0.1:51234".parse().unwrap_or_else(|_| unreachable!()),
                virtual_address: "10.10.60.22:80".parse().unwrap_or_else(|_| unreachable!()),
                real_server: "192.168.60.78:80"
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
                state: "ESTABLISHED".to_owned(),
                age_secs: 75,
            }],
        }
    }

    #[test]
    fn the_table_reads_like_ipvsadm_list() {
        let text = render(&[service()], View::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Prot LocalAddress:Port Scheduler Flags");
        assert_eq!(
            lines[2],
            "TCP  10.10.60.22:80 wlc persistent 300 mask 255.255.255.0 (web)"
        );
        let up: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(up, ["->", "192.168.60.78:80", "Masq", "3", "2", "1", "UP"]);
        let down: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(
            down,
            ["->", "192.168.60.55:80", "Masq", "0", "0", "1", "DOWN"],
            "a quiescent DOWN server shows weight 0"
        );
    }

    #[test]
    fn stats_sum_the_real_servers() {
        let text = render(&[service()], View::Stats);
        let line: Vec<&str> = text
            .lines()
            .nth(2)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(line, ["TCP", "10.10.60.22:80", "20", "200", "4000", "0"]);
    }

    #[test]
    fn connections_list_one_line_each() {
        let text = render(&[service()], View::Connections);
        let line: Vec<&str> = text
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(
            line,
            [
                "TCP",
                "01:15",
                "ESTABLISHED",
                "10.0.0.1:51234",
                "10.10.60.22:80",
                "192.168.60.78:80"
            ]
        );
    }
}
