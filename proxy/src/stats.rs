//! The proxy's part of the stats page: a [`ProxyStats`] per frontend, backend and virtual service,
//! with HAProxy's rows and columns, built from the counters and states at one moment. The
//! Prometheus collector ([`crate::metrics`]) reads the same snapshot, plus the few numbers a
//! [`Row`] has no column for ([`Extra`]), so the page, its CSV and JSON, and the metrics agree.

use fulcrum_common::stats::{ProxyKind, ProxyStats, Row, RowKind};

use crate::{
    config::{Backend, Frontend, L4Protocol},
    l4::{service::Service, tier::Tier},
    runtime::Runtime,
    state::{
        Availability, BackendCounters, FrontendState, Gauge, Histogram, ServerState, ServerStatus,
        TotalsSnapshot, counters, seconds_since, unix_millis,
    },
};

/// One [`ProxyStats`] and, row by row, what Prometheus gets beyond it.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) stats: ProxyStats,
    /// Parallel to `stats.rows`.
    pub(crate) extras: Vec<Extra>,
}

/// What a row's metrics need beyond its columns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    /// L7 backends and servers: the response times.
    pub(crate) response_time: Option<Histogram>,
    /// L4 real servers: IPVS's ActiveConn and InActConn (see `Real::connections`).
    pub(crate) active: Option<u64>,
    pub(crate) inactive: Option<u64>,
    /// L4 virtual services: clients refused for want of a real server.
    pub(crate) no_server: Option<u64>,
    /// L4 virtual services: UDP datagrams dropped at the connection limit.
    pub(crate) flows_refused: Option<u64>,
}

/// Every frontend, then every backend in config order, then every virtual service.
pub(crate) fn collect(rt: &Runtime, l4: &Tier) -> Vec<Part> {
    let now = unix_millis();
    let table = rt.table.load_full();
    let mut parts = Vec::new();
    for (cfg, entry) in table.config.frontends.iter().zip(&table.frontends) {
        parts.push(Part {
            stats: ProxyStats {
                name: cfg.name.clone(),
                kind: ProxyKind::Frontend,
                mode: "http".to_owned(),
                rows: vec![frontend_row(cfg, &entry.state)],
            },
            extras: vec![Extra::default()],
        });
    }
    for (cfg, entry) in table.config.backends.iter().zip(&table.backends) {
        parts.push(backend(
            cfg,
            &entry.servers,
            &entry.state.counters,
            &entry.state.availability,
            now,
        ));
    }
    for (service, _) in l4.services() {
        parts.push(virtual_service(&service, now));
    }
    parts
}

fn frontend_row(cfg: &Frontend, state: &FrontendState) -> Row {
    let c = &state.counters;
    let t = c.snapshot();
    let mut row = Row::new(&cfg.name, "FRONTEND", RowKind::Frontend);
    row.scur = c.sessions.get();
    row.smax = c.sessions.max();
    row.slim = (cfg.max_connections > 0).then_some(cfg.max_connections as u64);
    row.stot = t.sessions;
    row.bin = t.bytes_in;
    row.bout = t.bytes_out;
    row.dreq = t.denied_requests;
    row.ereq = Some(t.request_errors);
    row.status = "OPEN".to_owned();
    row.req_tot = Some(t.requests);
    row.set_responses(t.responses);
    row
}

fn backend(
    cfg: &Backend,
    servers: &[std::sync::Arc<ServerState>],
    counters: &BackendCounters,
    availability: &Availability,
    now: u64,
) -> Part {
    let mut rows = Vec::with_capacity(servers.len() + 1);
    let mut extras = Vec::with_capacity(servers.len() + 1);
    let mut members = Vec::with_capacity(servers.len());
    for (scfg, state) in cfg.servers.iter().zip(servers) {
        let (mut row, extra) = server_row(&cfg.name, state, scfg.backup, now);
        let max = state.max_connections(scfg.max_connections);
        row.slim = (max > 0).then_some(u64::from(max));
        row.qcur = Some(state.counters.queue.get());
        row.qmax = Some(state.counters.queue.max());
        if let Some(throttle) = state
            .throttle(cfg.slow_start)
            .filter(|_| row.weight > Some(0))
        {
            row.weight = Some(state.weight_now(cfg.slow_start));
            row.throttle = Some(throttle);
        }
        members.push((state.status(), scfg.backup, row.weight.unwrap_or(0)));
        rows.push(row);
        extras.push(extra);
    }
    let totals = counters.totals.snapshot();
    let mut row = group_row(
        &cfg.name,
        &counters.sessions,
        &totals,
        availability,
        &members,
        now,
    );
    row.qcur = Some(counters.queue.get());
    row.qmax = Some(counters.queue.max());
    extras.push(Extra {
        response_time: Some(totals.response_time),
        ..Extra::default()
    });
    rows.push(row);
    Part {
        stats: ProxyStats {
            name: cfg.name.clone(),
            kind: ProxyKind::Backend,
            mode: "http".to_owned(),
            rows,
        },
        extras,
    }
}

fn virtual_service(service: &Service, now: u64) -> Part {
    let config = service.config();
    let members = service.members();
    let mut rows = Vec::new();
    let mut extras = Vec::new();
    let mut states = Vec::new();
    for (real, backup, threshold) in members.reals() {
        let (mut row, mut extra) = server_row(&service.name, &real.server, backup, now);
        let threshold = real.server.max_connections(threshold);
        row.slim = (threshold > 0).then_some(u64::from(threshold));
        extra.response_time = None;
        let (active, inactive) = real.connections(config.protocol);
        extra.active = Some(u64::from(active));
        extra.inactive = Some(u64::from(inactive));
        states.push((real.server.status(), backup, row.weight.unwrap_or(0)));
        rows.push(row);
        extras.push(extra);
    }
    rows.push(group_row(
        &service.name,
        &service.counters.sessions,
        &service.counters.totals.snapshot(),
        &service.availability,
        &states,
        now,
    ));
    extras.push(Extra {
        no_server: Some(counters::load(&service.no_server)),
        flows_refused: Some(counters::load(&service.flows_refused)),
        ..Extra::default()
    });
    let mode = match config.protocol {
        L4Protocol::Tcp => "tcp",
        L4Protocol::Udp => "udp",
    };
    Part {
        stats: ProxyStats {
            name: service.name.clone(),
            kind: ProxyKind::VirtualService,
            mode: mode.to_owned(),
            rows,
        },
        extras,
    }
}

/// A server's (or real server's) row; the caller fills `slim`, which it knows from the config.
fn server_row(pxname: &str, s: &ServerState, backup: bool, now: u64) -> (Row, Extra) {
    let t = s.counters.totals.snapshot();
    let status = s.status();
    let mut row = Row::new(pxname, &s.name, RowKind::Server);
    row.addr = Some(s.addr.to_string());
    fill_traffic(&mut row, &s.counters.sessions, &t, now);
    row.status = status_text(s);
    row.lastchg = Some(seconds_since(counters::load(&s.last_change), now));
    row.downtime = Some(s.downtime(now) / 1000);
    // The weight the balancer uses now: none unless the server takes new clients.
    row.weight = Some(if status == ServerStatus::Up {
        s.weight()
    } else {
        0
    });
    row.config_weight = Some(s.config_weight());
    row.act = Some(u32::from(!backup));
    row.bck = Some(u32::from(backup));
    row.chkfail = Some(counters::load(&s.counters.failed_checks));
    row.chkdown = Some(counters::load(&s.counters.down_transitions));
    row.hanafail = Some(counters::load(&s.observer.failures));
    let checked = s.checks_enabled();
    row.check_enabled = Some(checked);
    if checked && let Some(check) = s.last_check() {
        let (short, code) = split_check(&check.description);
        row.check_status = Some(short.to_owned());
        row.check_code = code;
        row.check_duration = Some(check.duration.as_millis() as u64);
    }
    // A disabled agent's last word is stale, as a disabled health check's is.
    if !s.agent_disabled()
        && let Some(agent) = s.last_agent()
    {
        row.agent_status = Some(agent.status);
        row.last_agt = Some(agent.text);
        row.agent_duration = Some(agent.duration.as_millis() as u64);
    }
    let extra = Extra {
        response_time: Some(t.response_time),
        ..Extra::default()
    };
    (row, extra)
}

/// The BACKEND row of a backend or virtual service from its own counters (its sessions gauge
/// and its totals, folded) and its members' `(status, backup, effective weight)`, as HAProxy
/// sums it: `act`/`bck` count the UP servers of each kind, and `weight` sums the UP active
/// servers' weights, or the UP backups' when no active server is UP (the ones that get the
/// traffic).
fn group_row(
    pxname: &str,
    sessions: &Gauge,
    t: &TotalsSnapshot,
    availability: &Availability,
    members: &[(ServerStatus, bool, u32)],
    now: u64,
) -> Row {
    let up = |backup: bool| {
        members
            .iter()
            .filter(move |(status, b, _)| *status == ServerStatus::Up && *b == backup)
    };
    let active = up(false).count() as u32;
    let backups = up(true).count() as u32;
    let weight = if active > 0 {
        up(false).map(|(_, _, w)| w).sum()
    } else {
        up(true).map(|(_, _, w)| w).sum()
    };
    let mut row = Row::new(pxname, "BACKEND", RowKind::Backend);
    fill_traffic(&mut row, sessions, t, now);
    row.status = if availability.is_up() { "UP" } else { "DOWN" }.to_owned();
    row.lastchg = Some(seconds_since(availability.last_change(), now));
    row.downtime = Some(availability.downtime(now) / 1000);
    row.weight = Some(weight);
    row.act = Some(active);
    row.bck = Some(backups);
    row.chkdown = Some(availability.went_down());
    row
}

/// HAProxy's server status text: `MAINT`; `DOWN`, or `DOWN 1/2` while checks bring it back
/// (1 success of the 2 it takes); `UP`, or `UP 2/3` while failing checks take it down (2 more
/// failures of 3); `DRAIN` and `DRAIN 2/3` alike; `no check` for a serving server whose checks
/// are off or not configured.
pub(crate) fn status_text(s: &ServerState) -> String {
    let checked = s.checks_enabled();
    // The counter and the verdict are written one after the other by the check task; a scrape
    // in between shows the verdict without a count.
    let progress = checked
        .then(|| s.health_counter())
        .flatten()
        .filter(|h| h.is_up() == s.check_healthy())
        .and_then(|h| h.progress());
    let with_progress = |word: &str| match progress {
        Some((n, of)) => format!("{word} {n}/{of}"),
        None => word.to_owned(),
    };
    match s.status() {
        ServerStatus::Maint => "MAINT".to_owned(),
        // The agent holds it DOWN while its check passes, as HAProxy shows it.
        ServerStatus::Down if s.check_healthy() => "DOWN (agent)".to_owned(),
        ServerStatus::Down => with_progress("DOWN"),
        ServerStatus::Drain => with_progress("DRAIN"),
        ServerStatus::Up if !checked => "no check".to_owned(),
        ServerStatus::Up => with_progress("UP"),
    }
}

/// Splits a check description into HAProxy's short status and the HTTP status code, if it
/// names one: `L7STS 500` is (`L7STS`, 500), `L4CON Connection refused` is (`L4CON`, none).
fn split_check(description: &str) -> (&str, Option<u16>) {
    let mut words = description.split_whitespace();
    let short = words.next().unwrap_or("");
    let code = words
        .next()
        .filter(|w| w.len() == 3)
        .and_then(|w| w.parse().ok());
    (short, code)
}

/// The columns servers and backends count alike: sessions, balancing, bytes, errors, warnings
/// and responses.
fn fill_traffic(row: &mut Row, sessions: &Gauge, t: &TotalsSnapshot, now: u64) {
    row.scur = sessions.get();
    row.smax = sessions.max();
    row.stot = t.sessions;
    row.lbtot = Some(t.load_balanced);
    row.lastsess = last_session(t.last_session, now);
    row.bin = t.bytes_in;
    row.bout = t.bytes_out;
    row.econ = Some(t.connect_errors);
    row.eresp = Some(t.response_errors);
    row.wretr = Some(t.retries);
    row.wredis = Some(t.redispatches);
    row.set_responses(t.responses);
}

fn last_session(unix_ms: u64, now: u64) -> Option<u64> {
    (unix_ms > 0).then(|| seconds_since(unix_ms, now))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use super::*;
    use crate::{
        health::counter::HealthCounter,
        state::{AdminState, CheckResult},
    };

    fn server() -> ServerState {
        ServerState::new("web", "s1", SocketAddr::from(([127, 0, 0, 1], 1)), 1, 0)
    }

    fn checked(rise: u32, fall: u32, start_up: bool) -> ServerState {
        let s = server();
        s.set_check_configured(true);
        *s.health.lock().unwrap() = Some(HealthCounter::new(rise, fall, start_up));
        s.set_healthy(start_up);
        s
    }

    fn record(s: &ServerState, ok: bool) {
        let mut guard = s.health.lock().unwrap();
        let h = guard.as_mut().unwrap();
        h.record(ok);
        let up = h.is_up();
        drop(guard);
        s.set_healthy(up);
    }

    #[test]
    fn status_text_is_haproxys() {
        let s = server();
        assert_eq!(status_text(&s), "no check");
        s.set_admin(AdminState::Drain);
        assert_eq!(status_text(&s), "DRAIN");
        s.set_admin(AdminState::Maint);
        assert_eq!(status_text(&s), "MAINT");

        let s = checked(2, 3, true);
        assert_eq!(status_text(&s), "UP");
        record(&s, false);
        assert_eq!(
            status_text(&s),
            "UP 2/3",
            "going down: 2 more failures of 3"
        );
        s.set_admin(AdminState::Drain);
        assert_eq!(status_text(&s), "DRAIN 2/3");
        s.set_admin(AdminState::Ready);
        record(&s, false);
        record(&s, false);
        assert_eq!(status_text(&s), "DOWN");
        record(&s, true);
        assert_eq!(status_text(&s), "DOWN 1/2", "going up: 1 success of 2");
        record(&s, true);
        assert_eq!(status_text(&s), "UP");
        s.disable_checks();
        assert_eq!(status_text(&s), "no check");
    }

    #[test]
    fn server_row_has_downtime_so_far_and_the_last_check_split() {
        let s = checked(1, 1, true);
        *s.last_check.lock().unwrap() = Some(CheckResult {
            ok: false,
            description: "L7STS 500".to_owned(),
            duration: Duration::from_millis(12),
        });
        s.set_healthy(false);
        let since = counters::load(&s.last_change);
        let (row, extra) = server_row("web", &s, false, since + 7_500);
        assert_eq!(row.status, "DOWN");
        assert_eq!(row.downtime, Some(7), "the current DOWN period counts");
        assert_eq!(row.lastchg, Some(7));
        assert_eq!(row.check_status.as_deref(), Some("L7STS"));
        assert_eq!(row.check_code, Some(500));
        assert_eq!(row.check_duration, Some(12));
        assert_eq!(row.check_enabled, Some(true));
        assert_eq!(row.chkdown, Some(1));
        assert_eq!((row.weight, row.config_weight), (Some(0), Some(1)));
        assert_eq!((row.act, row.bck), (Some(1), Some(0)));
        assert_eq!(row.lastsess, None, "no session yet");
        assert!(extra.response_time.is_some());
        assert_eq!(split_check("L4CON Connection refused"), ("L4CON", None));
        assert_eq!(split_check("L7OK 200"), ("L7OK", Some(200)));
        assert_eq!(split_check("L4OK"), ("L4OK", None));
    }

    #[test]
    fn the_backend_row_sums_as_haproxy() {
        let counters = BackendCounters::default();
        let availability = Availability::default();
        let members = [
            (ServerStatus::Up, false, 2),
            (ServerStatus::Down, false, 0),
            (ServerStatus::Up, true, 5),
        ];
        let row = group_row(
            "web",
            &counters.sessions,
            &counters.totals.snapshot(),
            &availability,
            &members,
            unix_millis(),
        );
        assert_eq!((row.act, row.bck, row.weight), (Some(1), Some(1), Some(2)));
        assert_eq!(row.status, "UP");
        let backups_only = [(ServerStatus::Down, false, 0), (ServerStatus::Up, true, 5)];
        let row = group_row(
            "web",
            &counters.sessions,
            &counters.totals.snapshot(),
            &availability,
            &backups_only,
            unix_millis(),
        );
        assert_eq!(row.weight, Some(5), "the backups carry the traffic");
    }
}
