//! The appliance's statistics as operators read them: one [`Snapshot`] that the stats page, its
//! CSV and JSON, `fulcrum ctl show stat` and Prometheus are all drawn from.
//!
//! Each module fills its own part (the proxy its [`ProxyStats`], VRRP its [`VrrpInstance`]s, ...)
//! and the binary puts them together, so the monitoring crate renders a module's state without
//! depending on the module. Field names are HAProxy's CSV column names (`scur`, `stot`, `econ`,
//! ...) so its users find every number where they expect it; `None` is an empty CSV cell (a
//! column that does not apply to the row, as in HAProxy's own output).

use serde::{Deserialize, Serialize};

/// Everything the stats page shows, taken at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// L7 frontends, then L7 backends, then L4 virtual services, each in config order.
    pub proxies: Vec<ProxyStats>,
    pub vrrp: Vec<VrrpInstance>,
    pub volumes: Vec<Volume>,
    pub syncs: Vec<SyncSet>,
}

/// What a [`ProxyStats`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyKind {
    Frontend,
    Backend,
    /// An L4 virtual service (`[virtual_server.NAME]`); its servers are the real servers.
    VirtualService,
}

/// One table of the stats page: a frontend (one row), or a backend or virtual service (a row per
/// server, then its own summary row), in HAProxy's order.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyStats {
    pub name: String,
    pub kind: ProxyKind,
    /// `http` or `tcp` (L4 TCP) or `udp`.
    pub mode: String,
    pub rows: Vec<Row>,
}

/// What a [`Row`] is: HAProxy's CSV `type` (0 frontend, 1 backend, 2 server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    Frontend,
    Backend,
    Server,
}

impl RowKind {
    /// HAProxy's numeric `type` column.
    pub fn code(self) -> u8 {
        match self {
            Self::Frontend => 0,
            Self::Backend => 1,
            Self::Server => 2,
        }
    }
}

/// One line of HAProxy's stats: a frontend, a backend or a server. Counters count since the
/// process started (they survive reloads while the name stays).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The frontend, backend or virtual service name.
    pub pxname: String,
    /// `FRONTEND`, `BACKEND`, or the server's name (an L4 real server's is its address).
    pub svname: String,
    pub kind: RowKind,
    /// The server's address (servers only).
    pub addr: Option<String>,
    /// Requests waiting for a server slot now, at most, and the limit.
    pub qcur: Option<u64>,
    pub qmax: Option<u64>,
    pub qlimit: Option<u64>,
    /// Sessions now, at most, their limit (`max_connections`), and in all.
    pub scur: u64,
    pub smax: u64,
    pub slim: Option<u64>,
    pub stot: u64,
    /// Times the balancer chose this server (servers and backends).
    pub lbtot: Option<u64>,
    /// Seconds since the last session (backends and servers), `None` if there was none.
    pub lastsess: Option<u64>,
    /// Sessions per second over the last second, the most seen, and the limit. The proxy leaves
    /// `rate` and `rate_max` at 0; the monitoring crate samples `stot` to fill them.
    pub rate: u64,
    pub rate_max: u64,
    pub rate_lim: Option<u64>,
    /// Bytes from clients (requests) and to clients (responses).
    pub bin: u64,
    pub bout: u64,
    /// Requests and responses denied by rules.
    pub dreq: u64,
    pub dresp: u64,
    /// Bad requests (frontends), failed connects to servers, bad or aborted responses.
    pub ereq: Option<u64>,
    pub econ: Option<u64>,
    pub eresp: Option<u64>,
    /// Connect retries and redispatches to another server.
    pub wretr: Option<u64>,
    pub wredis: Option<u64>,
    /// `OPEN` (frontend); `UP` / `DOWN` (backend); for servers `UP`, `DOWN`, `MAINT`, `DRAIN`,
    /// `no check`, or HAProxy's transitional forms: `UP 2/3` (UP but failing: 2 more failed
    /// checks of `fall` 3 take it DOWN; `DRAIN 2/3` alike) and `DOWN 1/2` (DOWN but recovering:
    /// 1 good check of the `rise` 2 it takes to come back UP).
    pub status: String,
    /// Seconds since the status last changed (backends and servers).
    pub lastchg: Option<u64>,
    /// Seconds spent DOWN in all (backends and servers).
    pub downtime: Option<u64>,
    /// The effective weight (servers), or the sum of the active servers' (backends).
    pub weight: Option<u32>,
    /// While `slow_start` ramps a server back UP: the share of its weight it gets, in percent.
    pub throttle: Option<u32>,
    /// The weight from the config (servers), so an operator sees a runtime change.
    pub config_weight: Option<u32>,
    /// Active servers: 1/0 for a server, the number UP for a backend.
    pub act: Option<u32>,
    /// Backup servers: 1/0 for a server, the number UP for a backend.
    pub bck: Option<u32>,
    /// Failed health checks, and UP to DOWN transitions.
    pub chkfail: Option<u64>,
    pub chkdown: Option<u64>,
    /// Times live traffic showed `error_limit` errors in a row (HAProxy's `observe`).
    pub hanafail: Option<u64>,
    /// Whether health checks run (servers with a check configured and not disabled at runtime).
    pub check_enabled: Option<bool>,
    /// The last check: HAProxy's short status (`L4OK`, `L4CON`, `L7STS`, ...), the HTTP status
    /// when there was one, and how long it took in milliseconds.
    pub check_status: Option<String>,
    pub check_code: Option<u16>,
    pub check_duration: Option<u64>,
    /// The last agent check (HAProxy's `agent-check`): its short status (`L7OK`, `L7STS`,
    /// `L4CON`, ...), its reply line or why there was none, and how long it took in
    /// milliseconds.
    pub agent_status: Option<String>,
    pub last_agt: Option<String>,
    pub agent_duration: Option<u64>,
    /// HTTP responses by class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub hrsp_1xx: u64,
    pub hrsp_2xx: u64,
    pub hrsp_3xx: u64,
    pub hrsp_4xx: u64,
    pub hrsp_5xx: u64,
    pub hrsp_other: u64,
    /// HTTP requests received (frontends).
    pub req_tot: Option<u64>,
}

impl Row {
    /// A row with every counter at zero and every optional column empty.
    pub fn new(pxname: &str, svname: &str, kind: RowKind) -> Self {
        Self {
            pxname: pxname.to_owned(),
            svname: svname.to_owned(),
            kind,
            addr: None,
            qcur: None,
            qmax: None,
            qlimit: None,
            scur: 0,
            smax: 0,
            slim: None,
            stot: 0,
            lbtot: None,
            lastsess: None,
            rate: 0,
            rate_max: 0,
            rate_lim: None,
            bin: 0,
            bout: 0,
            dreq: 0,
            dresp: 0,
            ereq: None,
            econ: None,
            eresp: None,
            wretr: None,
            wredis: None,
            status: String::new(),
            lastchg: None,
            downtime: None,
            weight: None,
            throttle: None,
            config_weight: None,
            act: None,
            bck: None,
            chkfail: None,
            chkdown: None,
            hanafail: None,
            check_enabled: None,
            check_status: None,
            check_code: None,
            check_duration: None,
            agent_status: None,
            last_agt: None,
            agent_duration: None,
            hrsp_1xx: 0,
            hrsp_2xx: 0,
            hrsp_3xx: 0,
            hrsp_4xx: 0,
            hrsp_5xx: 0,
            hrsp_other: 0,
            req_tot: None,
        }
    }

    /// `hrsp_1xx` ... `hrsp_other`, in that order.
    pub fn responses(&self) -> [u64; 6] {
        [
            self.hrsp_1xx,
            self.hrsp_2xx,
            self.hrsp_3xx,
            self.hrsp_4xx,
            self.hrsp_5xx,
            self.hrsp_other,
        ]
    }

    /// Sets `hrsp_1xx` ... `hrsp_other` from counts in that order.
    pub fn set_responses(&mut self, counts: [u64; 6]) {
        [
            self.hrsp_1xx,
            self.hrsp_2xx,
            self.hrsp_3xx,
            self.hrsp_4xx,
            self.hrsp_5xx,
            self.hrsp_other,
        ] = counts;
    }
}

/// A VRRP instance (filled once the VRRP module exists).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VrrpInstance {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// 2 or 3.
    pub version: u8,
    /// `INIT`, `BACKUP`, `MASTER` or `FAULT`.
    pub state: String,
    /// Why the state last changed (`master-no-response`, `higher-priority`, `fault`, ...).
    pub reason: Option<String>,
    /// The configured priority.
    pub priority: u8,
    /// The priority adverts carry, after tracking.
    pub effective_priority: u8,
    /// The master's address as last heard, if any.
    pub master: Option<String>,
    pub vips: Vec<String>,
    /// Seconds since the state last changed.
    pub lastchg: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// How many times the instance became master.
    pub became_master: u64,
    /// Packets refused by the receive checks on the instance's interface, by reason
    /// (`bad_ttl`, `auth_failed`, ...).
    pub dropped: Vec<(String, u64)>,
}

/// A replicated volume, with the fields of DRBD's `/proc/drbd`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    /// `Primary` or `Secondary`.
    pub role: String,
    /// The peer's role, while connected.
    pub peer_role: Option<String>,
    /// DRBD's connection states: `Connected`, `WFConnection`, `StandAlone`, `SyncSource`,
    /// `SyncTarget`.
    pub connection: String,
    /// `UpToDate`, `Inconsistent`, `Outdated`, `Diskless`.
    pub disk: String,
    /// The peer's disk state, while connected.
    pub peer_disk: Option<String>,
    /// `A`, `B` or `C`.
    pub protocol: String,
    pub out_of_sync_bytes: u64,
    /// Resync progress 0..=100 while one runs.
    pub resync_percent: Option<f64>,
    /// Resync speed (average since it started), while one runs.
    pub resync_bytes_per_sec: Option<u64>,
    /// Where NBD is served (only while primary).
    pub nbd: Option<String>,
    /// DRBD's `ns`, `nr`, `dw`, `dr`.
    pub net_sent_bytes: u64,
    pub net_received_bytes: u64,
    pub disk_written_bytes: u64,
    pub disk_read_bytes: u64,
}

/// A directory sync set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncSet {
    pub name: String,
    pub path: String,
    /// `scanning` (the start-up scan), `scan failed` (it is tried again), `connected`,
    /// `partly connected` or `connecting`.
    pub state: String,
    /// Each peer: its address, its node name once known, and whether the link is `up`.
    pub peers: Vec<String>,
    /// Changes made here that a peer has not acknowledged yet (summed over the peers).
    pub pending: u64,
    /// While peers are sent the backlog they lacked when they connected (a start-up full
    /// sync, a catch-up): the changes of that backlog acknowledged, and its size (summed over
    /// the peers catching up; both 0 otherwise).
    #[serde(default)]
    pub catch_up_done: u64,
    #[serde(default)]
    pub catch_up_total: u64,
    pub conflicts: u64,
    /// Seconds since a peer last had everything, if ever.
    pub last_sync_secs: Option<u64>,
    pub files_sent: u64,
    pub files_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub bytes_saved_by_delta: u64,
    /// Times the watcher lost events (inotify queue overflow) and rescanned.
    pub overflows: u64,
    pub errors: u64,
    /// While the start-up scan runs (state `scanning`): paths examined, file octets hashed,
    /// and the totals they are counted against (0 when unknown: see `fulcrum_storage`'s
    /// `ScanCounts`).
    #[serde(default)]
    pub scan_examined: u64,
    #[serde(default)]
    pub scan_hashed: u64,
    #[serde(default)]
    pub scan_total_paths: u64,
    #[serde(default)]
    pub scan_total_bytes: u64,
    /// Why the start-up scan failed (state `scan failed`), while it waits to be tried again.
    #[serde(default)]
    pub scan_error: Option<String>,
}
