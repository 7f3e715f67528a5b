//! HAProxy's stats CSV (`STATS_PATH;csv`, and the control socket's `show stat`), so the scripts
//! and collectors written for HAProxy read Fulcrum unchanged.
//!
//! The columns are HAProxy 2.x's, in its order, from `pxname` (0) to `mode` (75), the last one
//! Fulcrum has a value for; HAProxy's later columns are left out. Columns Fulcrum does not have
//! (`comp_in`, `qtime`, ...) are empty, as HAProxy leaves a column that does not apply to a row,
//! and so is every `None` (`throttle` while no `slow_start` ramps the server). As in HAProxy, the header starts with `# `, and every line,
//! the header included, ends with a `,`. Fields holding `,`, `"`, a line break, or starting with
//! `#`, are quoted (RFC 4180), which HAProxy's names never need but ours may.
//!
//! Fulcrum's own values: `pid` is 1 (one process); `iid` numbers the proxies in output order from
//! 1, `sid` the servers of each from 1 (0 on FRONTEND and BACKEND rows); `hrsp_*` are filled for
//! `http` proxies only; `lastsess` is empty when there was no session yet (HAProxy writes -1).

use std::fmt::Write as _;

use fulcrum_common::stats::{ProxyStats, Row, RowKind, Snapshot};

/// HAProxy's CSV columns, in its order, as far as Fulcrum fills them.
pub(super) const COLUMNS: [&str; 76] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
];

/// The snapshot as HAProxy's CSV: the `# pxname,...` header, then one line per row.
pub fn csv(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(512 + 256 * snapshot.proxies.len());
    out.push_str("# ");
    for column in COLUMNS {
        out.push_str(column);
        out.push(',');
    }
    out.push('\n');
    for (index, proxy) in snapshot.proxies.iter().enumerate() {
        let http = proxy.mode == "http";
        let mut sid = 0u64;
        for row in &proxy.rows {
            let ids = Ids {
                iid: index as u64 + 1,
                sid: if row.kind == RowKind::Server {
                    sid += 1;
                    sid
                } else {
                    0
                },
            };
            for column in COLUMNS {
                match cell(column, proxy, row, ids, http) {
                    Cell::Empty => {}
                    Cell::Num(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Cell::Text(s) => push_field(&mut out, s),
                }
                out.push(',');
            }
            out.push('\n');
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Ids {
    iid: u64,
    sid: u64,
}

enum Cell<'a> {
    Empty,
    Num(u64),
    Text(&'a str),
}

impl From<Option<u64>> for Cell<'_> {
    fn from(value: Option<u64>) -> Self {
        value.map_or(Cell::Empty, Cell::Num)
    }
}

/// `http`: whether `proxy` is in `http` mode (its `hrsp_*` columns are filled).
fn cell<'a>(column: &str, proxy: &'a ProxyStats, row: &'a Row, ids: Ids, http: bool) -> Cell<'a> {
    let num = Cell::Num;
    let opt = |v: Option<u64>| Cell::from(v);
    let opt32 = |v: Option<u32>| Cell::from(v.map(u64::from));
    let hrsp = |v: u64| if http { Cell::Num(v) } else { Cell::Empty };
    match column {
        "pxname" => Cell::Text(&row.pxname),
        "svname" => Cell::Text(&row.svname),
        "qcur" => opt(row.qcur),
        "qmax" => opt(row.qmax),
        "scur" => num(row.scur),
        "smax" => num(row.smax),
        "slim" => opt(row.slim),
        "stot" => num(row.stot),
        "bin" => num(row.bin),
        "bout" => num(row.bout),
        "dreq" => num(row.dreq),
        "dresp" => num(row.dresp),
        "ereq" => opt(row.ereq),
        "econ" => opt(row.econ),
        "eresp" => opt(row.eresp),
        "wretr" => opt(row.wretr),
        "wredis" => opt(row.wredis),
        "status" => Cell::Text(&row.status),
        "weight" => opt32(row.weight),
        "act" => opt32(row.act),
        "bck" => opt32(row.bck),
        "chkfail" => opt(row.chkfail),
        "chkdown" => opt(row.chkdown),
        "hanafail" => opt(row.hanafail),
        "lastchg" => opt(row.lastchg),
        "downtime" => opt(row.downtime),
        "qlimit" => opt(row.qlimit),
        "pid" => num(1),
        "iid" => num(ids.iid),
        "sid" => num(ids.sid),
        "throttle" => opt32(row.throttle),
        "lbtot" => opt(row.lbtot),
        "type" => num(u64::from(row.kind.code())),
        "rate" => num(row.rate),
        "rate_lim" => opt(row.rate_lim),
        "rate_max" => num(row.rate_max),
        "check_status" => row.check_status.as_deref().map_or(Cell::Empty, Cell::Text),
        "check_code" => opt(row.check_code.map(u64::from)),
        "check_duration" => opt(row.check_duration),
        "hrsp_1xx" => hrsp(row.hrsp_1xx),
        "hrsp_2xx" => hrsp(row.hrsp_2xx),
        "hrsp_3xx" => hrsp(row.hrsp_3xx),
        "hrsp_4xx" => hrsp(row.hrsp_4xx),
        "hrsp_5xx" => hrsp(row.hrsp_5xx),
        "hrsp_other" => hrsp(row.hrsp_other),
        "req_tot" => opt(row.req_tot),
        "lastsess" => opt(row.lastsess),
        "agent_status" => row.agent_status.as_deref().map_or(Cell::Empty, Cell::Text),
        "last_agt" => row.last_agt.as_deref().map_or(Cell::Empty, Cell::Text),
        "agent_duration" => opt(row.agent_duration),
        "addr" => row.addr.as_deref().map_or(Cell::Empty, Cell::Text),
        "mode" => Cell::Text(&proxy.mode),
        _ => Cell::Empty,
    }
}

/// One field, quoted when a reader would otherwise split or skip it.
fn push_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) || field.starts_with('#') {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use fulcrum_common::stats::ProxyKind;

    use super::*;

    /// HAProxy 2.x's `show stat` header up to `mode`, as it prints it.
    const HAPROXY_HEADER: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,\
        dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,\
        qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,\
        check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,\
        req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,\
        last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,\
        agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,\
        cookie,mode,";

    fn fields(line: &str) -> Vec<&str> {
        line.split(',').collect()
    }

    fn column(name: &str) -> usize {
        COLUMNS.iter().position(|c| *c == name).unwrap()
    }

    fn sample() -> Snapshot {
        let mut server = Row::new("web", "s1", RowKind::Server);
        server.scur = 3;
        server.stot = 42;
        server.status = "UP".into();
        server.weight = Some(5);
        server.act = Some(1);
        server.bck = Some(0);
        server.check_status = Some("L7OK".into());
        server.check_code = Some(200);
        server.hrsp_2xx = 40;
        server.addr = Some("10.0.0.1:80".into());
        server.rate = 7;
        let mut backend = Row::new("web", "BACKEND", RowKind::Backend);
        backend.status = "UP".into();
        let mut l4 = Row::new("mysql", "10.0.0.5:3306", RowKind::Server);
        l4.hrsp_2xx = 9;
        Snapshot {
            proxies: vec![
                ProxyStats {
                    name: "web".into(),
                    kind: ProxyKind::Backend,
                    mode: "http".into(),
                    rows: vec![server, backend],
                },
                ProxyStats {
                    name: "mysql".into(),
                    kind: ProxyKind::VirtualService,
                    mode: "tcp".into(),
                    rows: vec![l4],
                },
            ],
            ..Snapshot::default()
        }
    }

    #[test]
    fn the_header_is_haproxys() {
        let text = csv(&Snapshot::default());
        assert_eq!(text, format!("{HAPROXY_HEADER}\n"));
    }

    #[test]
    fn cells_are_in_haproxys_columns() {
        let text = csv(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        let header = fields(lines[0].trim_start_matches("# "));
        let s1 = fields(lines[1]);
        assert_eq!(s1.len(), header.len());
        let get = |name: &str| s1[column(name)];
        assert_eq!(get("pxname"), "web");
        assert_eq!(get("svname"), "s1");
        assert_eq!(get("scur"), "3");
        assert_eq!(get("stot"), "42");
        assert_eq!(get("status"), "UP");
        assert_eq!(get("weight"), "5");
        assert_eq!(get("act"), "1");
        assert_eq!(get("bck"), "0");
        assert_eq!(get("pid"), "1");
        assert_eq!(get("iid"), "1");
        assert_eq!(get("sid"), "1");
        assert_eq!(get("type"), "2");
        assert_eq!(get("rate"), "7");
        assert_eq!(get("check_status"), "L7OK");
        assert_eq!(get("check_code"), "200");
        assert_eq!(get("hrsp_2xx"), "40");
        assert_eq!(get("addr"), "10.0.0.1:80");
        assert_eq!(get("mode"), "http");
        // None and columns Fulcrum lacks are empty.
        assert_eq!((get("qcur"), get("slim"), get("throttle")), ("", "", ""));
        let backend = fields(lines[2]);
        assert_eq!(
            (backend[column("type")], backend[column("sid")]),
            ("1", "0")
        );
        // hrsp_* are an HTTP proxy's only.
        let l4 = fields(lines[3]);
        assert_eq!(l4[column("hrsp_2xx")], "");
        assert_eq!((l4[column("iid")], l4[column("sid")]), ("2", "1"));
    }

    #[test]
    fn awkward_names_are_quoted() {
        let mut out = String::new();
        push_field(&mut out, "plain");
        out.push(',');
        push_field(&mut out, "a,b");
        out.push(',');
        push_field(&mut out, "say \"hi\"");
        out.push(',');
        push_field(&mut out, "line\nbreak");
        out.push(',');
        push_field(&mut out, "#not-a-comment");
        assert_eq!(
            out,
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"line\nbreak\",\"#not-a-comment\""
        );
    }
}
