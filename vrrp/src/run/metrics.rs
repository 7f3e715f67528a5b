//! VRRP's Prometheus metrics, built at scrape time from the instances' status (the same numbers
//! as `fulcrum status vrrp` and the stats page), under `fulcrum_vrrp_*`. Instance series carry
//! `instance`, `interface` and `vrid` labels; dropped packets are counted per interface, where
//! the socket that refused them lives, by `reason`.

use std::collections::BTreeMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

use super::StatusHandle;
use super::status::{InstanceStatus, state_name};
use crate::fsm::State;

const INSTANCE_LABELS: [&str; 3] = ["instance", "interface", "vrid"];

/// One family read from each instance.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    read: fn(&InstanceStatus) -> u64,
}

const FAMILIES: [Family; 5] = [
    Family {
        name: "fulcrum_vrrp_priority",
        help: "Configured priority of the instance.",
        kind: MetricType::GAUGE,
        read: |s| u64::from(s.base_priority),
    },
    Family {
        name: "fulcrum_vrrp_effective_priority",
        help: "Priority the instance advertises, after tracked scripts.",
        kind: MetricType::GAUGE,
        read: |s| u64::from(s.effective_priority),
    },
    Family {
        name: "fulcrum_vrrp_adverts_sent_total",
        help: "Adverts sent by the instance.",
        kind: MetricType::COUNTER,
        read: |s| s.counters.adverts_sent,
    },
    Family {
        name: "fulcrum_vrrp_adverts_received_total",
        help: "Adverts for the instance that passed the receive checks.",
        kind: MetricType::COUNTER,
        read: |s| s.counters.adverts_received,
    },
    Family {
        name: "fulcrum_vrrp_became_master_total",
        help: "Times the instance became master.",
        kind: MetricType::COUNTER,
        read: |s| s.counters.became_master,
    },
];

const STATE: &str = "fulcrum_vrrp_state";
const DROPPED: &str = "fulcrum_vrrp_dropped_packets_total";
const STATES: [State; 4] = [
    State::Initialize,
    State::Backup,
    State::Master,
    State::Fault,
];

/// The collector `StatusHandle::register_metrics` registers.
pub(crate) struct VrrpCollector {
    status: StatusHandle,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for VrrpCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VrrpCollector").finish_non_exhaustive()
    }
}

impl VrrpCollector {
    pub(crate) fn new(status: StatusHandle) -> prometheus::Result<Self> {
        let desc = |name: &str, help: &str, extra: Option<&str>| {
            let labels = INSTANCE_LABELS.iter().copied().chain(extra);
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                labels.map(str::to_owned).collect(),
                Default::default(),
            )
        };
        let mut descs = FAMILIES
            .iter()
            .map(|f| desc(f.name, f.help, None))
            .collect::<prometheus::Result<Vec<_>>>()?;
        descs.push(desc(STATE, STATE_HELP, Some("state"))?);
        descs.push(Desc::new(
            DROPPED.to_owned(),
            DROPPED_HELP.to_owned(),
            vec!["interface".to_owned(), "reason".to_owned()],
            Default::default(),
        )?);
        Ok(VrrpCollector { status, descs })
    }
}

const STATE_HELP: &str =
    "1 for the state the instance is in (INIT, BACKUP, MASTER, FAULT), else 0.";
const DROPPED_HELP: &str = "VRRP packets refused by the receive checks, by interface and reason.";

impl Collector for VrrpCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        families(&self.status.instances(), &self.status.dropped())
    }
}

/// Every family, from the instances and the drop counters of each socket.
pub(crate) fn families(
    instances: &[InstanceStatus],
    dropped: &[super::SocketDrops],
) -> Vec<MetricFamily> {
    if instances.is_empty() {
        return Vec::new();
    }
    let labels = |s: &InstanceStatus| vec![s.name.clone(), s.interface.clone(), s.vrid.to_string()];
    let mut out: Vec<MetricFamily> = FAMILIES
        .iter()
        .map(|f| {
            let metrics = instances
                .iter()
                .map(|s| sample(&INSTANCE_LABELS, labels(s), f.kind, (f.read)(s)))
                .collect();
            family(f.name, f.help, f.kind, metrics)
        })
        .collect();

    let names = [
        INSTANCE_LABELS[0],
        INSTANCE_LABELS[1],
        INSTANCE_LABELS[2],
        "state",
    ];
    let states = instances
        .iter()
        .flat_map(|s| {
            STATES.iter().map(move |&state| {
                let mut values = labels(s);
                values.push(state_name(state).to_owned());
                sample(
                    &names,
                    values,
                    MetricType::GAUGE,
                    u64::from(s.state == state),
                )
            })
        })
        .collect();
    out.push(family(STATE, STATE_HELP, MetricType::GAUGE, states));

    // Per socket, that is per interface and family: summed per interface, a reload that closes
    // one family's socket would make the sum go down, which Prometheus reads as a reset.
    let mut by_socket: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for (interface, family, reasons) in dropped {
        for (reason, n) in reasons {
            *by_socket
                .entry((interface.as_str(), family, reason))
                .or_default() += n;
        }
    }
    let drops: Vec<proto::Metric> = by_socket
        .into_iter()
        .map(|((interface, family, reason), n)| {
            sample(
                &["interface", "family", "reason"],
                vec![interface.to_owned(), family.to_owned(), reason.to_owned()],
                MetricType::COUNTER,
                n,
            )
        })
        .collect();
    if !drops.is_empty() {
        out.push(family(DROPPED, DROPPED_HELP, MetricType::COUNTER, drops));
    }
    out
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

fn sample(names: &[&str], values: Vec<String>, kind: MetricType, value: u64) -> proto::Metric {
    let pairs = names
        .iter()
        .zip(values)
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value(value);
            pair
        })
        .collect();
    let mut metric = proto::Metric::from_label(pairs);
    // Counts stay far below 2^53, where f64 stops being exact.
    let value = value as f64;
    if kind == MetricType::COUNTER {
        let mut c = proto::Counter::default();
        c.set_value(value);
        metric.set_counter(c);
    } else {
        let mut g = proto::Gauge::default();
        g.set_value(value);
        metric.set_gauge(g);
    }
    metric
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::net::{IpAddr, Ipv4Addr};
    use std::time::SystemTime;

    use prometheus::{Encoder, TextEncoder};

    use super::*;
    use crate::run::CounterSnapshot;

    fn instance(name: &str, state: State) -> InstanceStatus {
        InstanceStatus {
            name: name.to_owned(),
            interface: "eth0".to_owned(),
            vrid: 51,
            version: 2,
            state,
            reason: None,
            since: SystemTime::now(),
            base_priority: 105,
            effective_priority: 100,
            local_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            master: None,
            virtual_ips: vec!["10.0.0.51/32".to_owned()],
            faulted: false,
            following: false,
            counters: CounterSnapshot {
                adverts_sent: 7,
                adverts_received: 3,
                became_master: 1,
                ..CounterSnapshot::default()
            },
        }
    }

    fn text(families: &[MetricFamily]) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(families, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn instances_and_drops_are_exposed() {
        let dropped = vec![
            (
                "eth0".to_owned(),
                "ipv4",
                vec![("auth_failed", 2), ("bad_ttl", 0)],
            ),
            ("eth0".to_owned(), "ipv6", vec![("auth_failed", 1)]),
        ];
        let out = text(&families(&[instance("VI_1", State::Master)], &dropped));
        let labels = r#"instance="VI_1",interface="eth0",vrid="51""#;
        for line in [
            format!("fulcrum_vrrp_priority{{{labels}}} 105"),
            format!("fulcrum_vrrp_effective_priority{{{labels}}} 100"),
            format!("fulcrum_vrrp_adverts_sent_total{{{labels}}} 7"),
            format!("fulcrum_vrrp_adverts_received_total{{{labels}}} 3"),
            format!("fulcrum_vrrp_became_master_total{{{labels}}} 1"),
            format!("fulcrum_vrrp_state{{{labels},state=\"MASTER\"}} 1"),
            format!("fulcrum_vrrp_state{{{labels},state=\"BACKUP\"}} 0"),
            // The IPv4 and IPv6 sockets of one interface each have their own series: a reload
            // that closes one leaves the other's as it was.
            r#"fulcrum_vrrp_dropped_packets_total{interface="eth0",family="ipv4",reason="auth_failed"} 2"#
                .to_owned(),
            r#"fulcrum_vrrp_dropped_packets_total{interface="eth0",family="ipv6",reason="auth_failed"} 1"#
                .to_owned(),
            r#"fulcrum_vrrp_dropped_packets_total{interface="eth0",family="ipv4",reason="bad_ttl"} 0"#
                .to_owned(),
        ] {
            assert!(out.contains(&line), "missing {line} in\n{out}");
        }
        assert!(out.contains("# TYPE fulcrum_vrrp_adverts_sent_total counter"));
        assert!(out.contains("# TYPE fulcrum_vrrp_state gauge"));
    }

    #[test]
    fn no_instance_no_series() {
        assert!(families(&[], &[]).is_empty());
    }
}
