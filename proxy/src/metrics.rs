//! The proxy's Prometheus metrics: a collector that builds every family at scrape time from the
//! same snapshot as the stats page ([`crate::stats`]), so `/metrics`, the CSV and the JSON agree.
//! Names follow HAProxy's exporter with a `fulcrum_` prefix; L7 series carry `proxy` (and
//! `server`) labels, L4 ones `virtual_service` (and `server`, the real server's address).

use std::sync::Arc;

use fulcrum_common::stats::{ProxyKind, Row, RowKind};
use prometheus::{
    core::{Collector, Desc},
    proto::{self, LabelPair, MetricFamily, MetricType},
};

use crate::{
    l4::tier::Tier,
    runtime::Runtime,
    state::{Histogram, RESPONSE_TIME_BOUNDS_MICROS},
    stats::{self, Extra},
};

/// Which rows a metric is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Frontend,
    Backend,
    Server,
    VirtualService,
    RealServer,
}

impl Scope {
    /// The labels naming a row of this scope, before any the metric adds.
    fn labels(self) -> &'static [&'static str] {
        match self {
            Self::Frontend | Self::Backend => &["proxy"],
            Self::Server => &["proxy", "server"],
            Self::VirtualService => &["virtual_service"],
            Self::RealServer => &["virtual_service", "server"],
        }
    }

    fn of(kind: ProxyKind, row: RowKind) -> Self {
        match (kind, row) {
            (ProxyKind::VirtualService, RowKind::Server) => Self::RealServer,
            (ProxyKind::VirtualService, _) => Self::VirtualService,
            (_, RowKind::Frontend) => Self::Frontend,
            (_, RowKind::Backend) => Self::Backend,
            (_, RowKind::Server) => Self::Server,
        }
    }
}

type Read = fn(&Row, &Extra) -> Option<u64>;

/// How a metric is read from a row.
#[derive(Debug, Clone, Copy)]
enum Value {
    Gauge(Read),
    Counter(Read),
    /// A value in milliseconds, shown in seconds.
    GaugeMillis(Read),
    /// `hrsp_*`, one counter series per `code` label.
    Responses,
    /// One gauge series per `state` label, 1 for the server's state now (HAProxy's exporter).
    States,
    /// The response-time histogram.
    ResponseTime,
}

/// One metric family.
#[derive(Debug)]
struct Def {
    scope: Scope,
    name: &'static str,
    value: Value,
    help: &'static str,
}

const fn def(scope: Scope, name: &'static str, value: Value, help: &'static str) -> Def {
    Def {
        scope,
        name,
        value,
        help,
    }
}

use Scope::{Backend as BE, Frontend as FE, RealServer as RS, Server as SV, VirtualService as VS};
use Value::{Counter as C, Gauge as G, GaugeMillis as Ms};

#[rustfmt::skip]
const METRICS: &[Def] = &[
    def(FE, "fulcrum_frontend_current_sessions", G(|r, _| Some(r.scur)), "Current number of active sessions."),
    def(FE, "fulcrum_frontend_max_sessions", G(|r, _| Some(r.smax)), "Maximum observed number of active sessions."),
    def(FE, "fulcrum_frontend_limit_sessions", G(|r, _| r.slim), "Configured session limit."),
    def(FE, "fulcrum_frontend_sessions_total", C(|r, _| Some(r.stot)), "Total number of sessions."),
    def(FE, "fulcrum_frontend_bytes_in_total", C(|r, _| Some(r.bin)), "Total number of request bytes received."),
    def(FE, "fulcrum_frontend_bytes_out_total", C(|r, _| Some(r.bout)), "Total number of response bytes sent."),
    def(FE, "fulcrum_frontend_requests_denied_total", C(|r, _| Some(r.dreq)), "Total number of denied requests."),
    def(FE, "fulcrum_frontend_request_errors_total", C(|r, _| r.ereq), "Total number of invalid requests."),
    def(FE, "fulcrum_frontend_http_requests_total", C(|r, _| r.req_tot), "Total number of HTTP requests received."),
    def(FE, "fulcrum_frontend_http_responses_total", Value::Responses, "Total number of HTTP responses by status class."),

    def(BE, "fulcrum_backend_status", G(|r, _| Some(u64::from(r.status == "UP"))), "Current status of the backend: 1 UP (a server takes new clients), 0 DOWN."),
    def(BE, "fulcrum_backend_current_queue", G(|r, _| r.qcur), "Current number of requests queued for any server of the backend."),
    def(BE, "fulcrum_backend_max_queue", G(|r, _| r.qmax), "Maximum observed number of requests queued for any server of the backend."),
    def(BE, "fulcrum_backend_current_sessions", G(|r, _| Some(r.scur)), "Current number of active sessions."),
    def(BE, "fulcrum_backend_max_sessions", G(|r, _| Some(r.smax)), "Maximum observed number of active sessions."),
    def(BE, "fulcrum_backend_sessions_total", C(|r, _| Some(r.stot)), "Total number of sessions."),
    def(BE, "fulcrum_backend_last_session_seconds", G(|r, _| r.lastsess), "Number of seconds since the last session assigned to the backend."),
    def(BE, "fulcrum_backend_bytes_in_total", C(|r, _| Some(r.bin)), "Total number of request bytes sent to servers."),
    def(BE, "fulcrum_backend_bytes_out_total", C(|r, _| Some(r.bout)), "Total number of response bytes sent to clients."),
    def(BE, "fulcrum_backend_connection_errors_total", C(|r, _| r.econ), "Total number of failed connections to servers."),
    def(BE, "fulcrum_backend_response_errors_total", C(|r, _| r.eresp), "Total number of invalid, aborted or timed out responses."),
    def(BE, "fulcrum_backend_retry_warnings_total", C(|r, _| r.wretr), "Total number of connection retries."),
    def(BE, "fulcrum_backend_redispatch_warnings_total", C(|r, _| r.wredis), "Total number of requests redispatched to another server."),
    def(BE, "fulcrum_backend_active_servers", G(|r, _| r.act.map(u64::from)), "Current number of active servers UP."),
    def(BE, "fulcrum_backend_backup_servers", G(|r, _| r.bck.map(u64::from)), "Current number of backup servers UP."),
    def(BE, "fulcrum_backend_weight", G(|r, _| r.weight.map(u64::from)), "Total weight of the servers that take the traffic."),
    def(BE, "fulcrum_backend_loadbalanced_total", C(|r, _| r.lbtot), "Total number of times a server was selected by the balancer."),
    def(BE, "fulcrum_backend_last_status_change_seconds", G(|r, _| r.lastchg), "Number of seconds since the backend's last UP/DOWN change."),
    def(BE, "fulcrum_backend_downtime_seconds_total", C(|r, _| r.downtime), "Total number of seconds the backend was DOWN."),
    def(BE, "fulcrum_backend_check_up_down_total", C(|r, _| r.chkdown), "Total number of times the backend went from UP to DOWN."),
    def(BE, "fulcrum_backend_http_responses_total", Value::Responses, "Total number of HTTP responses by status class."),
    def(BE, "fulcrum_backend_http_response_time_seconds", Value::ResponseTime, "Time from a request sent to a server to its response headers."),

    def(SV, "fulcrum_server_status", Value::States, "Current status of the server, 1 for its state."),
    def(SV, "fulcrum_server_current_queue", G(|r, _| r.qcur), "Current number of requests queued for the server."),
    def(SV, "fulcrum_server_max_queue", G(|r, _| r.qmax), "Maximum observed number of requests queued for the server."),
    def(SV, "fulcrum_server_current_sessions", G(|r, _| Some(r.scur)), "Current number of active sessions."),
    def(SV, "fulcrum_server_max_sessions", G(|r, _| Some(r.smax)), "Maximum observed number of active sessions."),
    def(SV, "fulcrum_server_limit_sessions", G(|r, _| r.slim), "Configured session limit."),
    def(SV, "fulcrum_server_sessions_total", C(|r, _| Some(r.stot)), "Total number of sessions."),
    def(SV, "fulcrum_server_last_session_seconds", G(|r, _| r.lastsess), "Number of seconds since the last session assigned to the server."),
    def(SV, "fulcrum_server_bytes_in_total", C(|r, _| Some(r.bin)), "Total number of request bytes sent to the server."),
    def(SV, "fulcrum_server_bytes_out_total", C(|r, _| Some(r.bout)), "Total number of response bytes sent to clients."),
    def(SV, "fulcrum_server_connection_errors_total", C(|r, _| r.econ), "Total number of failed connections to the server."),
    def(SV, "fulcrum_server_response_errors_total", C(|r, _| r.eresp), "Total number of invalid, aborted or timed out responses."),
    def(SV, "fulcrum_server_retry_warnings_total", C(|r, _| r.wretr), "Total number of connection retries."),
    def(SV, "fulcrum_server_redispatch_warnings_total", C(|r, _| r.wredis), "Total number of requests redispatched away from the server."),
    def(SV, "fulcrum_server_weight", G(|r, _| r.weight.map(u64::from)), "Effective weight of the server (0 unless it takes new clients)."),
    def(SV, "fulcrum_server_check_failures_total", C(|r, _| r.chkfail), "Total number of failed health checks."),
    def(SV, "fulcrum_server_check_up_down_total", C(|r, _| r.chkdown), "Total number of times the server went from UP to DOWN."),
    def(SV, "fulcrum_server_observe_failures_total", C(|r, _| r.hanafail), "Total number of times live traffic showed error_limit errors in a row (observe)."),
    def(SV, "fulcrum_server_downtime_seconds_total", C(|r, _| r.downtime), "Total number of seconds the server was DOWN."),
    def(SV, "fulcrum_server_last_status_change_seconds", G(|r, _| r.lastchg), "Number of seconds since the server's last status change."),
    def(SV, "fulcrum_server_check_duration_seconds", Ms(|r, _| r.check_duration), "Duration of the last health check."),
    def(SV, "fulcrum_server_loadbalanced_total", C(|r, _| r.lbtot), "Total number of times the server was selected by the balancer."),
    def(SV, "fulcrum_server_http_responses_total", Value::Responses, "Total number of HTTP responses by status class."),
    def(SV, "fulcrum_server_http_response_time_seconds", Value::ResponseTime, "Time from a request sent to the server to its response headers."),

    def(VS, "fulcrum_virtual_service_status", G(|r, _| Some(u64::from(r.status == "UP"))), "Current status of the virtual service: 1 UP (a real server takes new clients), 0 DOWN."),
    def(VS, "fulcrum_virtual_service_current_connections", G(|r, _| Some(r.scur)), "Current number of connections (UDP: flows)."),
    def(VS, "fulcrum_virtual_service_max_connections", G(|r, _| Some(r.smax)), "Maximum observed number of connections."),
    def(VS, "fulcrum_virtual_service_connections_total", C(|r, _| Some(r.stot)), "Total number of connections relayed."),
    def(VS, "fulcrum_virtual_service_bytes_in_total", C(|r, _| Some(r.bin)), "Total number of bytes from clients to real servers."),
    def(VS, "fulcrum_virtual_service_bytes_out_total", C(|r, _| Some(r.bout)), "Total number of bytes from real servers to clients."),
    def(VS, "fulcrum_virtual_service_connection_errors_total", C(|r, _| r.econ), "Total number of failed connections to real servers."),
    def(VS, "fulcrum_virtual_service_no_server_total", C(|_, x| x.no_server), "Total number of clients refused for want of an available real server."),
    def(VS, "fulcrum_virtual_service_flows_refused_total", C(|_, x| x.flows_refused), "Total number of UDP datagrams dropped because the flow they would open was over the process's connection limit."),
    def(VS, "fulcrum_virtual_service_active_servers", G(|r, _| r.act.map(u64::from)), "Current number of real servers UP."),
    def(VS, "fulcrum_virtual_service_backup_servers", G(|r, _| r.bck.map(u64::from)), "Current number of fallback servers UP."),
    def(VS, "fulcrum_virtual_service_weight", G(|r, _| r.weight.map(u64::from)), "Total weight of the real servers that take the traffic."),
    def(VS, "fulcrum_virtual_service_loadbalanced_total", C(|r, _| r.lbtot), "Total number of times the scheduler picked a real server."),
    def(VS, "fulcrum_virtual_service_last_status_change_seconds", G(|r, _| r.lastchg), "Number of seconds since the virtual service's last UP/DOWN change."),
    def(VS, "fulcrum_virtual_service_downtime_seconds_total", C(|r, _| r.downtime), "Total number of seconds the virtual service was DOWN."),

    def(RS, "fulcrum_real_server_status", Value::States, "Current status of the real server, 1 for its state."),
    def(RS, "fulcrum_real_server_active_connections", G(|_, x| x.active), "Current number of active connections (IPVS ActiveConn: TCP opening or established, neither side closed)."),
    def(RS, "fulcrum_real_server_inactive_connections", G(|_, x| x.inactive), "Current number of inactive connections (IPVS InActConn: TCP half-closed, and every UDP flow)."),
    def(RS, "fulcrum_real_server_max_connections", G(|r, _| Some(r.smax)), "Maximum observed number of established connections."),
    def(RS, "fulcrum_real_server_limit_connections", G(|r, _| r.slim), "Configured upper connection threshold."),
    def(RS, "fulcrum_real_server_connections_total", C(|r, _| Some(r.stot)), "Total number of connections relayed."),
    def(RS, "fulcrum_real_server_bytes_in_total", C(|r, _| Some(r.bin)), "Total number of bytes from clients to the real server."),
    def(RS, "fulcrum_real_server_bytes_out_total", C(|r, _| Some(r.bout)), "Total number of bytes from the real server to clients."),
    def(RS, "fulcrum_real_server_connection_errors_total", C(|r, _| r.econ), "Total number of failed connections to the real server."),
    def(RS, "fulcrum_real_server_response_errors_total", C(|r, _| r.eresp), "Total number of UDP flows ended by an error from the real server."),
    def(RS, "fulcrum_real_server_weight", G(|r, _| r.weight.map(u64::from)), "Effective weight of the real server (0 unless it is UP)."),
    def(RS, "fulcrum_real_server_check_failures_total", C(|r, _| r.chkfail), "Total number of failed health checks."),
    def(RS, "fulcrum_real_server_check_up_down_total", C(|r, _| r.chkdown), "Total number of times the real server went from UP to DOWN."),
    def(RS, "fulcrum_real_server_observe_failures_total", C(|r, _| r.hanafail), "Total number of times live traffic showed error_limit errors in a row (observe)."),
    def(RS, "fulcrum_real_server_downtime_seconds_total", C(|r, _| r.downtime), "Total number of seconds the real server was DOWN."),
    def(RS, "fulcrum_real_server_last_status_change_seconds", G(|r, _| r.lastchg), "Number of seconds since the real server's last status change."),
    def(RS, "fulcrum_real_server_check_duration_seconds", Ms(|r, _| r.check_duration), "Duration of the last health check."),
    def(RS, "fulcrum_real_server_loadbalanced_total", C(|r, _| r.lbtot), "Total number of times the scheduler picked the real server."),
];

/// The `code` label values of [`Value::Responses`], in `hrsp_*` order.
const CODES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The `state` label values of [`Value::States`].
const STATES: [&str; 5] = ["UP", "DOWN", "MAINT", "DRAIN", "NOCHECK"];

/// The collector registered for a running proxy.
pub(crate) struct ProxyCollector {
    rt: Arc<Runtime>,
    l4: Arc<Tier>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for ProxyCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCollector")
            .field("families", &self.descs.len())
            .finish_non_exhaustive()
    }
}

impl ProxyCollector {
    pub(crate) fn new(rt: Arc<Runtime>, l4: Arc<Tier>) -> prometheus::Result<Self> {
        let descs = METRICS
            .iter()
            .map(|m| {
                Desc::new(
                    m.name.to_owned(),
                    m.help.to_owned(),
                    label_names(m).iter().map(|&l| l.to_owned()).collect(),
                    Default::default(),
                )
            })
            .collect::<prometheus::Result<_>>()?;
        Ok(Self { rt, l4, descs })
    }
}

impl Collector for ProxyCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        families(&stats::collect(&self.rt, &self.l4))
    }
}

fn label_names(m: &Def) -> Vec<&'static str> {
    let mut names = m.scope.labels().to_vec();
    match m.value {
        Value::Responses => names.push("code"),
        Value::States => names.push("state"),
        _ => {}
    }
    names
}

/// Every family with at least one series, from a stats snapshot.
pub(crate) fn families(parts: &[stats::Part]) -> Vec<MetricFamily> {
    METRICS
        .iter()
        .filter_map(|m| {
            let names = label_names(m);
            let mut metrics = Vec::new();
            for part in parts {
                for (row, extra) in part.stats.rows.iter().zip(&part.extras) {
                    if Scope::of(part.stats.kind, row.kind) == m.scope {
                        samples(m, &names, row, extra, &mut metrics);
                    }
                }
            }
            (!metrics.is_empty()).then(|| {
                let mut family = MetricFamily::default();
                family.set_name(m.name.to_owned());
                family.set_help(m.help.to_owned());
                family.set_field_type(match m.value {
                    Value::Counter(_) | Value::Responses => MetricType::COUNTER,
                    Value::Gauge(_) | Value::GaugeMillis(_) | Value::States => MetricType::GAUGE,
                    Value::ResponseTime => MetricType::HISTOGRAM,
                });
                family.set_metric(metrics);
                family
            })
        })
        .collect()
}

/// Adds the series `m`, labelled `names` ([`label_names`]), has for one row.
fn samples(
    m: &Def,
    names: &[&'static str],
    row: &Row,
    extra: &Extra,
    out: &mut Vec<proto::Metric>,
) {
    let mut labels = vec![row.pxname.as_str()];
    if matches!(m.scope, Scope::Server | Scope::RealServer) {
        labels.push(row.svname.as_str());
    }
    let with = |extra_label: Option<&str>| {
        let values = labels.iter().copied().chain(extra_label);
        proto::Metric::from_label(
            names
                .iter()
                .zip(values)
                .map(|(name, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name((*name).to_owned());
                    pair.set_value(value.to_owned());
                    pair
                })
                .collect(),
        )
    };
    match m.value {
        Value::Gauge(read) | Value::GaugeMillis(read) => {
            if let Some(v) = read(row, extra) {
                let scale = if matches!(m.value, Value::GaugeMillis(_)) {
                    1e-3
                } else {
                    1.0
                };
                let mut metric = with(None);
                metric.set_gauge(gauge(v as f64 * scale));
                out.push(metric);
            }
        }
        Value::Counter(read) => {
            if let Some(v) = read(row, extra) {
                let mut metric = with(None);
                metric.set_counter(counter(v as f64));
                out.push(metric);
            }
        }
        Value::Responses => {
            for (code, v) in CODES.iter().zip(row.responses()) {
                let mut metric = with(Some(code));
                metric.set_counter(counter(v as f64));
                out.push(metric);
            }
        }
        Value::States => {
            let now = state_label(&row.status);
            for state in STATES {
                let mut metric = with(Some(state));
                metric.set_gauge(gauge(if state == now { 1.0 } else { 0.0 }));
                out.push(metric);
            }
        }
        Value::ResponseTime => {
            if let Some(h) = &extra.response_time {
                let mut metric = with(None);
                metric.set_histogram(histogram(h));
                out.push(metric);
            }
        }
    }
}

/// The `state` label for a server's status text: `UP 2/3` is UP, `DOWN 1/2` DOWN, `no check`
/// NOCHECK.
fn state_label(status: &str) -> &'static str {
    match status.split(' ').next().unwrap_or("") {
        "DOWN" => "DOWN",
        "MAINT" => "MAINT",
        "DRAIN" => "DRAIN",
        "no" => "NOCHECK",
        _ => "UP",
    }
}

fn gauge(v: f64) -> proto::Gauge {
    let mut g = proto::Gauge::default();
    g.set_value(v);
    g
}

fn counter(v: f64) -> proto::Counter {
    let mut c = proto::Counter::default();
    c.set_value(v);
    c
}

fn histogram(h: &Histogram) -> proto::Histogram {
    let cumulative = h.cumulative();
    let mut out = proto::Histogram::default();
    out.set_sample_count(h.count());
    out.set_sample_sum(h.sum_micros as f64 / 1e6);
    out.set_bucket(
        RESPONSE_TIME_BOUNDS_MICROS
            .iter()
            .zip(cumulative)
            .map(|(&bound, count)| {
                let mut b = proto::Bucket::default();
                b.set_upper_bound(bound as f64 / 1e6);
                b.set_cumulative_count(count);
                b
            })
            .collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_family_is_named_and_typed_as_prometheus_wants() {
        let mut seen = HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("fulcrum_"), "{}", m.name);
            let counter = matches!(m.value, Value::Counter(_) | Value::Responses);
            assert_eq!(m.name.ends_with("_total"), counter, "{}", m.name);
            assert!(m.help.ends_with('.'), "{}", m.name);
        }
        let rt = crate::runtime::Runtime::new(
            crate::table::Table::build(
                crate::config::build(&crate::config::Sections::default())
                    .unwrap_or_else(|e| panic!("{e:?}")),
                &crate::state::Registry::default(),
            ),
            crate::state::Registry::default(),
            0,
        );
        let c = ProxyCollector::new(rt, Arc::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.desc().len(), METRICS.len());
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(c))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn state_labels_fold_the_transitional_forms() {
        assert_eq!(state_label("UP 2/3"), "UP");
        assert_eq!(state_label("DOWN 1/2"), "DOWN");
        assert_eq!(state_label("DRAIN 1/3"), "DRAIN");
        assert_eq!(state_label("no check"), "NOCHECK");
        assert_eq!(state_label("MAINT"), "MAINT");
    }
}
