//! The stats page: one self-contained HTML document (inline CSS, no script, no external asset)
//! laid out like HAProxy's, so its users find every number where they expect it: a summary, then
//! a table per frontend, backend and virtual service with HAProxy's grouped columns and row
//! colours, then VRRP instances, volumes and sync sets. It reads on a phone (each table scrolls
//! sideways in its own box, with the name column pinned) as well as on a wide screen.
//!
//! Everything that comes from the config or a peer is HTML-escaped ([`escape_into`]).
//!
//! ## Ids and classes, for people and browser tests
//!
//! A name goes into an id through [`id_part`]: ASCII letters, digits, `-`, `_` and `.` are kept,
//! every other character becomes `_` (`10.0.0.5:3306` gives `10.0.0.5_3306`). Should two ids
//! come out the same, the later gets `-2`, `-3`, ..., frontends coming after backends and virtual
//! services (so a frontend named like its backend gets `web-2`, and the backend keeps `web`).
//! The exact names are in the `data-pxname` and `data-svname` attributes. With P the proxy's and S the row's part:
//!
//! - `header#summary`: node, pid, uptime, version (unless `hide_version`), server counts; in it
//!   `a#csv-link` and `a#refresh-toggle`, and the colour legend `ul#legend`.
//! - `div#flash` (only after an admin action): one `p.flash.ok` or `p.flash.error` per result.
//! - `section.proxy#px-P` per proxy (also `.frontend`, `.backend` or `.virtual-service`), holding
//!   `table.stats`.
//! - `tr#row-P-S.srv` per server, `tr#row-P-FRONTEND.frontend`, `tr#row-P-BACKEND.backend`, each
//!   with one state class: `state-up`, `state-down`, `state-maint`, `state-drain`,
//!   `state-going-down` (`UP 2/3`: UP, failing checks), `state-going-up` (`DOWN 1/2`: DOWN,
//!   passing checks), `state-nocheck`, `state-open` (frontends) or `state-other`; backup servers
//!   also have `backup`. Its `td.status` holds `span.state` (the status text, e.g. `UP`) and
//!   `span.since` (time in that state, e.g. `2h3m`); `td.lastchk` the last check.
//! - With admin actions: `form#form-P` around a backend's or virtual service's table, a checkbox
//!   `input#cb-P-S[name=s]` per server, `select#action-P[name=action]`,
//!   `input#weight-P[name=weight]` and the submit button `button#apply-P`.
//! - `section#vrrp` (rows `tr#vrrp-NAME`), `section#volumes` (`tr#volume-NAME`) and
//!   `section#syncs` (`tr#sync-NAME`), each with a `p.not-configured` line when empty.

use std::{collections::HashSet, fmt::Write as _};

use fulcrum_common::stats::{ProxyKind, ProxyStats, Row, RowKind, Snapshot};

use super::session::Flash;

/// What the page shows besides the snapshot.
#[derive(Debug)]
pub(super) struct Page<'a> {
    pub(super) snapshot: &'a Snapshot,
    /// `None` with `hide_version`.
    pub(super) version: Option<&'a str>,
    pub(super) node: Option<&'a str>,
    pub(super) pid: u32,
    pub(super) uptime: Option<u64>,
    /// When the snapshot was taken, RFC 3339.
    pub(super) generated: &'a str,
    /// Seconds between reloads (the configured refresh, at least 1).
    pub(super) refresh_secs: u64,
    /// `?norefresh`: the page does not reload itself, and links to the one that does.
    pub(super) norefresh: bool,
    pub(super) stats_path: &'a str,
    pub(super) user: Option<&'a str>,
    /// The CSRF token: `Some` when this user may act, and the page then has forms.
    pub(super) token: Option<&'a str>,
    pub(super) flash: &'a [Flash],
}

/// Renders the whole page.
pub(super) fn render(page: &Page<'_>) -> String {
    let mut h = Html::default();
    head(&mut h, page);
    summary(&mut h, page);
    if !page.flash.is_empty() {
        h.raw("<div id=\"flash\" role=\"status\">");
        for flash in page.flash {
            let class = if flash.ok { "ok" } else { "error" };
            h.raw("<p class=\"flash ")
                .raw(class)
                .raw("\">")
                .text(&flash.text)
                .raw("</p>");
        }
        h.raw("</div>\n");
    }
    h.raw("<main>\n<section id=\"proxies\"><h2>Proxies</h2>\n");
    if page.snapshot.proxies.is_empty() {
        h.raw(
            "<p class=\"not-configured\">No frontend, backend or virtual service configured.</p>\n",
        );
    }
    // Backends and virtual services take their ids first: a frontend of the same name (HAProxy's
    // usual style) must not shift the documented ids that scripts act through.
    let proxies = &page.snapshot.proxies;
    let mut px_ids = vec![String::new(); proxies.len()];
    for frontends in [false, true] {
        for (i, proxy) in proxies.iter().enumerate() {
            if (proxy.kind == ProxyKind::Frontend) == frontends {
                px_ids[i] = h.unique(format!("px-{}", id_part(&proxy.name)));
            }
        }
    }
    for (proxy, px) in proxies.iter().zip(px_ids) {
        proxy_section(&mut h, page, proxy, px);
    }
    h.raw("</section>\n");
    vrrp(&mut h, page.snapshot);
    volumes(&mut h, page.snapshot);
    syncs(&mut h, page.snapshot);
    h.raw("</main>\n<footer><p>");
    match page.version {
        Some(version) => h.raw("Fulcrum ").text(version),
        None => h.raw("Fulcrum"),
    };
    h.raw("</p></footer>\n</body>\n</html>\n");
    h.out
}

const STYLE: &str = "\
:root{color-scheme:light}\
body{font:14px/1.35 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;padding:.5rem 1rem;color:#111;background:#fff}\
h1{font-size:1.3rem;margin:.2rem 0}\
h2{font-size:1.1rem;margin:1.2rem 0 .4rem;color:#4b2c80;border-bottom:2px solid #4b2c80}\
h3{font-size:1rem;margin:.9rem 0 .3rem}h3 small{font-weight:normal;color:#555}\
a{color:#2348a8}\
dl.info{display:flex;flex-wrap:wrap;gap:.2rem 1.4rem;margin:.4rem 0}\
dl.info div{display:flex;gap:.35rem}dt{color:#555}dd{margin:0;font-weight:600}\
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}\
table{border-collapse:collapse;font-size:.82rem;white-space:nowrap}\
th,td{border:1px solid #b8b8b8;padding:.15rem .4rem}\
th{background:#ddd8c8;font-weight:600}tr.groups th{background:#cfc6e6}\
td{text-align:right}td.name,td.status,td.lastchk,td.text{text-align:left}\
tr{background:#fff}\
td.name{position:sticky;left:0;background:inherit;font-weight:600;box-shadow:1px 0 0 #b8b8b8}\
td.status .since{color:#444}td.name label{cursor:pointer}td.name input{margin:0 .3rem 0 0;vertical-align:middle}\
tr.frontend,tr.backend{background:#e8e8d0;font-weight:600}\
.state-up,.vrrp.state-master{background:#c0ffc0}\
.state-going-down{background:#ffc878}\
.state-down,.vrrp.state-fault{background:#ff9090}\
.state-going-up{background:#ffff98}\
.state-maint{background:#c8a070}\
.state-drain{background:#8cc8ff}\
.state-nocheck,.vrrp.state-backup{background:#e0e0e0}\
tr.backup td.name{font-style:italic}\
#legend{list-style:none;padding:0;margin:.4rem 0;display:flex;flex-wrap:wrap;gap:.3rem .9rem;font-size:.8rem}\
#legend span{display:inline-block;width:.9em;height:.9em;border:1px solid #888;vertical-align:-.1em;margin-right:.3rem}\
.flash{padding:.4rem .6rem;border-radius:4px;margin:.3rem 0}\
.flash.ok{background:#dff5df;border:1px solid #3a3}.flash.error{background:#fde0e0;border:1px solid #c33}\
.actions{margin:.35rem 0;display:flex;flex-wrap:wrap;gap:.4rem;align-items:center}\
input,select,button{font:inherit;padding:.2rem .35rem}\
.not-configured{color:#666;font-style:italic}\
footer{margin-top:1.5rem;color:#666;font-size:.8rem}\
@media (max-width:600px){body{padding:.4rem}table{font-size:.76rem}}";

fn head(h: &mut Html, page: &Page<'_>) {
    h.raw("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    if !page.norefresh {
        h.raw("<meta http-equiv=\"refresh\" content=\"")
            .num(page.refresh_secs)
            .raw("\">\n");
    }
    h.raw("<title>Fulcrum statistics");
    if let Some(node) = page.node {
        h.raw(" – ").text(node);
    }
    h.raw("</title>\n<style>")
        .raw(STYLE)
        .raw("</style>\n</head>\n<body>\n");
}

fn summary(h: &mut Html, page: &Page<'_>) {
    h.raw("<header id=\"summary\">\n<h1>Fulcrum statistics");
    if let Some(node) = page.node {
        h.raw(" on ").text(node);
    }
    h.raw("</h1>\n<dl class=\"info\">");
    if let Some(version) = page.version {
        item(h, "version", |h| {
            h.text(version);
        });
    }
    item(h, "pid", |h| {
        h.num(u64::from(page.pid));
    });
    if let Some(uptime) = page.uptime {
        item(h, "uptime", |h| {
            h.text(&duration(uptime));
        });
    }
    item(h, "generated", |h| {
        h.text(page.generated);
    });
    item(h, "refresh", |h| {
        // The toggle links to this page with the auto-refresh the other way.
        let toggle = page_url(page.stats_path, !page.norefresh);
        if page.norefresh {
            h.raw("off · <a id=\"refresh-toggle\" href=\"")
                .text(&toggle)
                .raw("\">every ")
                .text(&duration(page.refresh_secs))
                .raw("</a>");
        } else {
            h.raw("every ")
                .text(&duration(page.refresh_secs))
                .raw(" · <a id=\"refresh-toggle\" href=\"")
                .text(&toggle)
                .raw("\">stop</a>");
        }
    });
    let count = |kind| {
        page.snapshot
            .proxies
            .iter()
            .filter(|p| p.kind == kind)
            .count()
    };
    item(h, "proxies", |h| {
        h.text(&plural(count(ProxyKind::Frontend), "frontend"))
            .raw(", ")
            .text(&plural(count(ProxyKind::Backend), "backend"))
            .raw(", ")
            .text(&plural(count(ProxyKind::VirtualService), "virtual service"));
    });
    item(h, "servers", |h| {
        h.raw("<span id=\"servers\">")
            .text(&server_counts(page.snapshot))
            .raw("</span>");
    });
    item(h, "VRRP", |h| {
        if page.snapshot.vrrp.is_empty() {
            h.raw("not configured");
        }
        for (i, instance) in page.snapshot.vrrp.iter().enumerate() {
            if i > 0 {
                h.raw(", ");
            }
            h.text(&instance.name).raw(" ").text(&instance.state);
        }
    });
    if let Some(user) = page.user {
        item(h, "user", |h| {
            h.text(user);
        });
    }
    h.raw("</dl>\n<p><a id=\"csv-link\" href=\"")
        .text(page.stats_path)
        .raw(";csv\">CSV export</a> · JSON: the same URL with <code>Accept: application/json</code></p>\n")
        .raw("<ul id=\"legend\">");
    for (class, label) in [
        ("state-up", "UP"),
        ("state-going-down", "UP, going down (UP 2/3)"),
        ("state-down", "DOWN"),
        ("state-going-up", "DOWN, going up (DOWN 1/2)"),
        ("state-maint", "MAINT"),
        ("state-drain", "DRAIN"),
        ("state-nocheck", "no check"),
    ] {
        h.raw("<li><span class=\"")
            .raw(class)
            .raw("\"></span>")
            .raw(label)
            .raw("</li>");
    }
    h.raw("<li><i>italic</i>: backup server</li></ul>\n</header>\n");
}

/// The page's URL, with or without its auto-refresh.
pub(super) fn page_url(stats_path: &str, norefresh: bool) -> String {
    if norefresh {
        format!("{stats_path}?norefresh")
    } else {
        stats_path.to_owned()
    }
}

fn item(h: &mut Html, term: &str, value: impl FnOnce(&mut Html)) {
    h.raw("<div><dt>").raw(term).raw("</dt><dd>");
    value(h);
    h.raw("</dd></div>");
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// "6: 4 up, 1 down, 1 maint", counting each server by its state.
fn server_counts(snapshot: &Snapshot) -> String {
    let servers = snapshot
        .proxies
        .iter()
        .flat_map(|p| &p.rows)
        .filter(|r| r.kind == RowKind::Server);
    let mut total = 0;
    let mut counts = [0usize; 4];
    for row in servers {
        total += 1;
        let slot = match State::of(&row.status) {
            State::Up | State::GoingDown | State::NoCheck | State::Open | State::Other => 0,
            State::Down | State::GoingUp => 1,
            State::Maint => 2,
            State::Drain => 3,
        };
        counts[slot] += 1;
    }
    let mut out = format!("{total}: {} up", counts[0]);
    for (n, label) in counts[1..].iter().zip(["down", "maint", "drain"]) {
        if *n > 0 {
            let _ = write!(out, ", {n} {label}");
        }
    }
    out
}

/// The state a status string shows, for the row's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Up,
    GoingDown,
    Down,
    GoingUp,
    Maint,
    Drain,
    NoCheck,
    Open,
    Other,
}

impl State {
    fn of(status: &str) -> Self {
        let status = status.trim();
        let transitional = |rest: &str| {
            rest.strip_prefix(' ').is_some_and(|r| {
                r.contains('/') && r.chars().all(|c| c.is_ascii_digit() || c == '/')
            })
        };
        if status.starts_with("MAINT") {
            Self::Maint
        } else if status.starts_with("DRAIN") || status.starts_with("NOLB") {
            Self::Drain
        } else if status == "UP" {
            Self::Up
        } else if status == "DOWN" || status == "DOWN (agent)" {
            // The second: held DOWN by its agent check, whatever its health check says.
            Self::Down
        } else if let Some(rest) = status.strip_prefix("UP")
            && transitional(rest)
        {
            // HAProxy's `UP 2/3`: still UP, with 2 of its 3 tolerated failures left.
            Self::GoingDown
        } else if let Some(rest) = status.strip_prefix("DOWN")
            && transitional(rest)
        {
            // HAProxy's `DOWN 1/2`: still DOWN, 1 of the 2 good checks it needs passed.
            Self::GoingUp
        } else if status.eq_ignore_ascii_case("no check") {
            Self::NoCheck
        } else if status == "OPEN" {
            Self::Open
        } else {
            Self::Other
        }
    }

    fn class(self) -> &'static str {
        match self {
            Self::Up => "state-up",
            Self::GoingDown => "state-going-down",
            Self::Down => "state-down",
            Self::GoingUp => "state-going-up",
            Self::Maint => "state-maint",
            Self::Drain => "state-drain",
            Self::NoCheck => "state-nocheck",
            Self::Open => "state-open",
            Self::Other => "state-other",
        }
    }
}

/// One proxy's section; `px` is its id (`px-P`).
fn proxy_section(h: &mut Html, page: &Page<'_>, proxy: &ProxyStats, px: String) {
    let key = px.strip_prefix("px-").unwrap_or(&px).to_owned();
    let (kind_class, kind_label) = match proxy.kind {
        ProxyKind::Frontend => ("frontend", "frontend"),
        ProxyKind::Backend => ("backend", "backend"),
        ProxyKind::VirtualService => ("virtual-service", "virtual service"),
    };
    // Only what has servers takes actions, and only for a user with a session.
    let token = page.token.filter(|_| {
        proxy.kind != ProxyKind::Frontend && proxy.rows.iter().any(|r| r.kind == RowKind::Server)
    });
    h.raw("<section class=\"proxy ")
        .raw(kind_class)
        .raw("\" id=\"")
        .raw(&px)
        .raw("\" data-pxname=\"")
        .text(&proxy.name)
        .raw("\">\n<h3>")
        .text(&proxy.name)
        .raw(" <small>")
        .raw(kind_label)
        .raw(" · ")
        .text(&proxy.mode)
        .raw("</small></h3>\n");
    if token.is_some() {
        h.raw("<form id=\"form-")
            .raw(&key)
            .raw("\" method=\"post\" action=\"")
            .text(&page_url(page.stats_path, page.norefresh))
            .raw("\">\n");
    }
    h.raw("<div class=\"scroll\"><table class=\"stats\">\n<thead>\n<tr class=\"groups\"><th rowspan=\"2\">Name</th>")
        .raw("<th colspan=\"3\">Queue</th><th colspan=\"3\">Session rate</th><th colspan=\"6\">Sessions</th>")
        .raw("<th colspan=\"2\">Bytes</th><th colspan=\"2\">Denied</th><th colspan=\"3\">Errors</th>")
        .raw("<th colspan=\"2\">Warnings</th><th colspan=\"9\">Server</th></tr>\n<tr class=\"cols\">")
        .raw("<th>Cur</th><th>Max</th><th>Limit</th><th>Cur</th><th>Max</th><th>Limit</th>")
        .raw("<th>Cur</th><th>Max</th><th>Limit</th><th>Total</th><th>LbTot</th><th>Last</th>")
        .raw("<th>In</th><th>Out</th><th>Req</th><th>Resp</th><th>Req</th><th>Conn</th><th>Resp</th>")
        .raw("<th>Retr</th><th>Redis</th><th>Status</th><th>LastChk</th><th>Wght</th><th>Act</th>")
        .raw("<th>Bck</th><th>Chk</th><th>Dwn</th><th>Dwntme</th><th>Thrtle</th></tr>\n</thead>\n<tbody>\n");
    for row in &proxy.rows {
        stats_row(h, &key, row, token.is_some());
    }
    h.raw("</tbody>\n</table></div>\n");
    if let Some(token) = token {
        h.raw("<div class=\"actions\"><input type=\"hidden\" name=\"b\" value=\"")
            .text(&proxy.name)
            .raw("\"><input type=\"hidden\" name=\"token\" value=\"")
            .text(token)
            .raw("\"><label for=\"action-")
            .raw(&key)
            .raw("\">Action on the checked servers:</label> <select name=\"action\" id=\"action-")
            .raw(&key)
            .raw("\"><option value=\"\">Choose…</option>")
            .raw("<option value=\"ready\">Set state to READY</option>")
            .raw("<option value=\"drain\">Set state to DRAIN</option>")
            .raw("<option value=\"maint\">Set state to MAINT</option>")
            .raw("<option value=\"dhlth\">Health: disable checks</option>")
            .raw("<option value=\"ehlth\">Health: enable checks</option>")
            .raw("<option value=\"dagent\">Agent: disable checks</option>")
            .raw("<option value=\"eagent\">Agent: enable checks</option>")
            .raw("<option value=\"shutdown\">Kill sessions</option>")
            .raw("<option value=\"weight\">Set weight</option></select> <label for=\"weight-")
            .raw(&key)
            .raw("\">weight</label> <input name=\"weight\" id=\"weight-")
            .raw(&key)
            .raw("\" inputmode=\"numeric\" size=\"4\"> <button type=\"submit\" id=\"apply-")
            .raw(&key)
            .raw("\">Apply</button></div>\n</form>\n");
    }
    h.raw("</section>\n");
}

fn stats_row(h: &mut Html, px_key: &str, row: &Row, form: bool) {
    let state = State::of(&row.status);
    let row_id = h.unique(format!("row-{px_key}-{}", id_part(&row.svname)));
    let kind = match row.kind {
        RowKind::Frontend => "frontend",
        RowKind::Backend => "backend",
        RowKind::Server => "srv",
    };
    let backup = if row.kind == RowKind::Server && row.bck == Some(1) {
        " backup"
    } else {
        ""
    };
    h.raw("<tr id=\"")
        .raw(&row_id)
        .raw("\" class=\"")
        .raw(kind)
        .raw(" ")
        .raw(state.class())
        .raw(backup)
        .raw("\" data-pxname=\"")
        .text(&row.pxname)
        .raw("\" data-svname=\"")
        .text(&row.svname)
        .raw("\"><td class=\"name\"");
    if let Some(addr) = &row.addr {
        h.raw(" title=\"").text(addr).raw("\"");
    }
    h.raw(">");
    if form && row.kind == RowKind::Server {
        let cb = format!("cb-{}", row_id.strip_prefix("row-").unwrap_or(&row_id));
        h.raw("<input type=\"checkbox\" name=\"s\" value=\"")
            .text(&row.svname)
            .raw("\" id=\"")
            .raw(&cb)
            .raw("\"><label for=\"")
            .raw(&cb)
            .raw("\">")
            .text(&row.svname)
            .raw("</label>");
    } else {
        h.text(&row.svname);
    }
    h.raw("</td>");
    // Queue, session rate, sessions.
    for value in [row.qcur, row.qmax, row.qlimit] {
        h.opt_td(value);
    }
    h.td(row.rate).td(row.rate_max).opt_td(row.rate_lim);
    h.td(row.scur).td(row.smax).opt_td(row.slim).td(row.stot);
    h.opt_td(row.lbtot);
    h.raw("<td>");
    if let Some(last) = row.lastsess {
        h.text(&duration(last));
    }
    h.raw("</td>");
    // Bytes, readable, with the exact count on hover.
    for bytes in [row.bin, row.bout] {
        h.raw("<td title=\"")
            .num(bytes)
            .raw(" bytes\">")
            .text(&human_bytes(bytes))
            .raw("</td>");
    }
    h.td(row.dreq).td(row.dresp);
    for value in [row.ereq, row.econ, row.eresp, row.wretr, row.wredis] {
        h.opt_td(value);
    }
    // Server.
    h.raw("<td class=\"status\"><span class=\"state\">")
        .text(&row.status)
        .raw("</span>");
    if let Some(since) = row.lastchg {
        h.raw(" <span class=\"since\">")
            .text(&duration(since))
            .raw("</span>");
    }
    h.raw("</td><td class=\"lastchk\">");
    if let Some(status) = &row.check_status {
        h.text(status);
        if let Some(code) = row.check_code {
            h.raw("/").num(u64::from(code));
        }
        if let Some(ms) = row.check_duration {
            h.raw(" in ").num(ms).raw("ms");
        }
    }
    h.raw("</td><td>");
    match (row.weight, row.config_weight) {
        (Some(weight), Some(config)) if weight != config => {
            h.num(u64::from(weight)).raw("/").num(u64::from(config));
        }
        (Some(weight), _) => {
            h.num(u64::from(weight));
        }
        (None, _) => {}
    }
    h.raw("</td>");
    for flag in [row.act, row.bck] {
        h.raw("<td>");
        match (row.kind, flag) {
            (RowKind::Server, Some(0)) => h.raw("-"),
            (RowKind::Server, Some(_)) => h.raw("Y"),
            (_, Some(n)) => h.num(u64::from(n)),
            (_, None) => h,
        };
        h.raw("</td>");
    }
    h.opt_td(row.chkfail).opt_td(row.chkdown);
    h.raw("<td>");
    if let Some(down) = row.downtime {
        h.text(&duration(down));
    }
    // HAProxy's Thrtle: the share of its weight a server gets while `slow_start` ramps it.
    h.raw("</td><td>");
    if let Some(throttle) = row.throttle {
        h.num(u64::from(throttle)).raw(" %");
    }
    h.raw("</td></tr>\n");
}

fn vrrp(h: &mut Html, snapshot: &Snapshot) {
    h.raw("<section id=\"vrrp\"><h2>VRRP</h2>\n");
    if snapshot.vrrp.is_empty() {
        h.raw("<p class=\"not-configured\">No VRRP instance configured.</p>\n</section>\n");
        return;
    }
    h.raw(
        "<div class=\"scroll\"><table class=\"info\">\n<thead><tr><th>Name</th><th>Interface</th>",
    )
    .raw("<th>VRID</th><th>State</th><th>Priority</th><th>Effective</th><th>Master</th>")
    .raw("<th>VIPs</th><th>Since</th><th>Adverts out</th><th>Adverts in</th>")
    .raw("<th>Dropped</th></tr></thead>\n<tbody>\n");
    for instance in &snapshot.vrrp {
        let id = h.unique(format!("vrrp-{}", id_part(&instance.name)));
        let state = format!("state-{}", id_part(&instance.state.to_ascii_lowercase()));
        h.raw("<tr id=\"")
            .raw(&id)
            .raw("\" class=\"vrrp ")
            .text(&state)
            .raw("\"><td class=\"name\">")
            .text(&instance.name)
            .raw("</td><td class=\"text\">")
            .text(&instance.interface)
            .raw("</td>")
            .td(u64::from(instance.vrid))
            .raw("<td class=\"text status\">")
            .text(&instance.state)
            .raw("</td>")
            .td(u64::from(instance.priority))
            .td(u64::from(instance.effective_priority))
            .raw("<td class=\"text\">")
            .text(instance.master.as_deref().unwrap_or(""))
            .raw("</td><td class=\"text\">")
            .text(&instance.vips.join(" "))
            .raw("</td><td>")
            .text(&duration(instance.lastchg))
            .raw("</td>")
            .td(instance.adverts_sent)
            .td(instance.adverts_received)
            .raw("<td class=\"text\" title=\"")
            .text(&dropped_detail(&instance.dropped))
            .raw("\">")
            .text(
                &instance
                    .dropped
                    .iter()
                    .map(|(_, n)| n)
                    .sum::<u64>()
                    .to_string(),
            )
            .raw("</td></tr>\n");
    }
    h.raw("</tbody>\n</table></div>\n</section>\n");
}

/// `auth_failed: 3, bad_ttl: 1`: why packets were dropped, for the cell's tooltip.
fn dropped_detail(dropped: &[(String, u64)]) -> String {
    dropped
        .iter()
        .map(|(reason, n)| format!("{reason}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn volumes(h: &mut Html, snapshot: &Snapshot) {
    h.raw("<section id=\"volumes\"><h2>Volumes</h2>\n");
    if snapshot.volumes.is_empty() {
        h.raw("<p class=\"not-configured\">No replicated volume configured.</p>\n</section>\n");
        return;
    }
    h.raw("<div class=\"scroll\"><table class=\"info\">\n<thead><tr><th>Name</th><th>Role</th>")
        .raw("<th>Connection</th><th>Disk</th><th>Out of sync</th><th>Resync</th></tr></thead>\n<tbody>\n");
    for volume in &snapshot.volumes {
        let id = h.unique(format!("volume-{}", id_part(&volume.name)));
        let state = if volume.resync_percent.is_some() || volume.connection.starts_with("Sync") {
            State::GoingUp
        } else if volume.connection == "Connected" && volume.disk == "UpToDate" {
            State::Up
        } else {
            State::Down
        };
        h.raw("<tr id=\"")
            .raw(&id)
            .raw("\" class=\"volume ")
            .raw(state.class())
            .raw("\"><td class=\"name\">")
            .text(&volume.name)
            .raw("</td><td class=\"text\">")
            .text(&volume.role)
            .raw("</td><td class=\"text status\">")
            .text(&volume.connection)
            .raw("</td><td class=\"text\">")
            .text(&volume.disk)
            .raw("</td><td>")
            .text(&human_bytes(volume.out_of_sync_bytes))
            .raw("</td><td>");
        if let Some(percent) = volume.resync_percent {
            h.text(&format!("{percent:.1}%"));
        }
        h.raw("</td></tr>\n");
    }
    h.raw("</tbody>\n</table></div>\n</section>\n");
}

fn syncs(h: &mut Html, snapshot: &Snapshot) {
    h.raw("<section id=\"syncs\"><h2>Directory sync</h2>\n");
    if snapshot.syncs.is_empty() {
        h.raw("<p class=\"not-configured\">No directory sync configured.</p>\n</section>\n");
        return;
    }
    h.raw("<div class=\"scroll\"><table class=\"info\">\n<thead><tr><th>Name</th><th>Path</th>")
        .raw("<th>State</th><th>Peers</th><th>Pending</th><th>Conflicts</th></tr></thead>\n<tbody>\n");
    for sync in &snapshot.syncs {
        let id = h.unique(format!("sync-{}", id_part(&sync.name)));
        // Every peer linked: green; some: going down (changes wait for the others); none: red.
        let state = match sync.state.as_str() {
            "connected" => State::Up,
            "partly connected" => State::GoingDown,
            _ => State::Down,
        };
        h.raw("<tr id=\"")
            .raw(&id)
            .raw("\" class=\"sync ")
            .raw(state.class())
            .raw("\"><td class=\"name\">")
            .text(&sync.name)
            .raw("</td><td class=\"text\">")
            .text(&sync.path)
            .raw("</td><td class=\"text status\">")
            .text(&sync.state)
            .raw("</td><td class=\"text\">")
            .text(&sync.peers.join(" "))
            .raw("</td>")
            .td(sync.pending)
            .td(sync.conflicts)
            .raw("</tr>\n");
    }
    h.raw("</tbody>\n</table></div>\n</section>\n");
}

/// The page being written, and the ids used so far (each must be unique in the document).
#[derive(Debug, Default)]
struct Html {
    out: String,
    ids: HashSet<String>,
}

impl Html {
    fn raw(&mut self, s: &str) -> &mut Self {
        self.out.push_str(s);
        self
    }

    fn text(&mut self, s: &str) -> &mut Self {
        escape_into(&mut self.out, s);
        self
    }

    fn num(&mut self, n: u64) -> &mut Self {
        let _ = write!(self.out, "{n}");
        self
    }

    fn td(&mut self, n: u64) -> &mut Self {
        self.raw("<td>").num(n).raw("</td>")
    }

    fn opt_td(&mut self, n: Option<u64>) -> &mut Self {
        match n {
            Some(n) => self.td(n),
            None => self.raw("<td></td>"),
        }
    }

    /// `base`, or `base-2`, `base-3`, ... if it is taken.
    fn unique(&mut self, base: String) -> String {
        let mut id = base.clone();
        let mut n = 2;
        while self.ids.contains(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        self.ids.insert(id.clone());
        id
    }
}

/// HTML-escapes `s` for text and for quoted attribute values.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A name as part of an element id (see the module header).
pub(super) fn id_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Seconds as HAProxy shows them: the two largest units, `2h3m`, `5d1h`, `42s`.
pub(super) fn duration(secs: u64) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut out = String::new();
    let mut rest = secs;
    let mut shown = 0;
    for (size, unit) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 || (shown > 0) {
            if n > 0 {
                let _ = write!(out, "{n}{unit}");
            }
            shown += 1;
            if shown == 2 {
                break;
            }
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Bytes with a binary unit: `512 B`, `1.5 KiB`, `3.2 GiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss, reason = "shown to one decimal")]
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use fulcrum_common::stats::{SyncSet, Volume, VrrpInstance};

    use super::*;

    fn escape(s: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, s);
        out
    }

    fn page<'a>(snapshot: &'a Snapshot, token: Option<&'a str>, flash: &'a [Flash]) -> Page<'a> {
        Page {
            snapshot,
            version: Some("0.1.0"),
            node: Some("lb1"),
            pid: 42,
            uptime: Some(7380),
            generated: "2025-01-01T00:00:00Z",
            refresh_secs: 5,
            norefresh: false,
            stats_path: "/stats",
            user: Some("admin"),
            token,
            flash,
        }
    }

    fn server(px: &str, sv: &str, status: &str) -> Row {
        let mut row = Row::new(px, sv, RowKind::Server);
        row.status = status.into();
        row.lastchg = Some(7380);
        row.act = Some(1);
        row.bck = Some(0);
        row
    }

    fn snapshot() -> Snapshot {
        let mut frontend = Row::new("www", "FRONTEND", RowKind::Frontend);
        frontend.status = "OPEN".into();
        let mut backup = server("web", "s3", "UP");
        backup.bck = Some(1);
        backup.act = Some(0);
        let mut checked = server("web", "s1", "UP");
        checked.check_status = Some("L7OK".into());
        checked.check_code = Some(200);
        checked.check_duration = Some(2);
        checked.weight = Some(50);
        checked.config_weight = Some(100);
        checked.throttle = Some(50);
        let mut backend = Row::new("web", "BACKEND", RowKind::Backend);
        backend.status = "UP".into();
        Snapshot {
            proxies: vec![
                ProxyStats {
                    name: "www".into(),
                    kind: ProxyKind::Frontend,
                    mode: "http".into(),
                    rows: vec![frontend],
                },
                ProxyStats {
                    name: "web".into(),
                    kind: ProxyKind::Backend,
                    mode: "http".into(),
                    rows: vec![
                        checked,
                        server("web", "s2", "UP 2/3"),
                        backup,
                        server("web", "<script>x</script>", "MAINT"),
                        backend,
                    ],
                },
                ProxyStats {
                    name: "mysql".into(),
                    kind: ProxyKind::VirtualService,
                    mode: "tcp".into(),
                    rows: vec![
                        server("mysql", "10.0.0.5:3306", "DOWN 1/2"),
                        server("mysql", "10.0.0.6:3306", "no check"),
                        server("mysql", "10.0.0.7:3306", "DRAIN"),
                    ],
                },
            ],
            ..Snapshot::default()
        }
    }

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn ids_are_normalised_and_unique() {
        assert_eq!(id_part("web-1"), "web-1");
        assert_eq!(id_part("10.0.0.5:3306"), "10.0.0.5_3306");
        assert_eq!(id_part("[::1]:80"), "___1__80");
        assert_eq!(id_part("a b\"<é"), "a_b___");
        let mut h = Html::default();
        assert_eq!(h.unique("row-a-b".into()), "row-a-b");
        assert_eq!(h.unique("row-a-b".into()), "row-a-b-2");
        assert_eq!(h.unique("row-a-b".into()), "row-a-b-3");
        // Names that look like the prefixes stay whole.
        let snapshot = Snapshot {
            proxies: vec![ProxyStats {
                name: "px-row-".into(),
                kind: ProxyKind::Backend,
                mode: "tcp".into(),
                rows: vec![server("px-row-", "row-1", "UP")],
            }],
            ..Snapshot::default()
        };
        let html = render(&page(&snapshot, Some("t"), &[]));
        assert!(html.contains("id=\"px-px-row-\""));
        assert!(html.contains("id=\"row-px-row--row-1\""));
        assert!(html.contains("id=\"cb-px-row--row-1\""));
        assert!(html.contains("id=\"apply-px-row-\""));
    }

    #[test]
    fn durations_and_sizes_read_like_haproxys() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(125), "2m5s");
        assert_eq!(duration(7380), "2h3m");
        assert_eq!(duration(3600), "1h");
        assert_eq!(duration(90_061), "1d1h");
        assert_eq!(duration(86_400 + 59), "1d");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn states_follow_haproxys_legend() {
        for (status, class) in [
            ("UP", "state-up"),
            ("DOWN", "state-down"),
            ("DOWN (agent)", "state-down"),
            ("UP 2/3", "state-going-down"),
            ("DOWN 1/2", "state-going-up"),
            ("MAINT", "state-maint"),
            ("MAINT (via web/s1)", "state-maint"),
            ("DRAIN", "state-drain"),
            ("no check", "state-nocheck"),
            ("OPEN", "state-open"),
            ("UPSIDE", "state-other"),
            ("", "state-other"),
        ] {
            assert_eq!(State::of(status).class(), class, "{status}");
        }
    }

    #[test]
    fn the_page_has_the_documented_ids_and_classes() {
        let snapshot = snapshot();
        let html = render(&page(&snapshot, None, &[]));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("name=\"viewport\""));
        assert!(html.contains("<tr id=\"row-web-s1\" class=\"srv state-up\""));
        assert!(html.contains("<tr id=\"row-web-s2\" class=\"srv state-going-down\""));
        assert!(html.contains("<tr id=\"row-web-s3\" class=\"srv state-up backup\""));
        assert!(html.contains("id=\"row-mysql-10.0.0.5_3306\" class=\"srv state-going-up\""));
        assert!(html.contains("id=\"row-mysql-10.0.0.7_3306\" class=\"srv state-drain\""));
        assert!(html.contains("id=\"row-www-FRONTEND\" class=\"frontend state-open\""));
        assert!(html.contains("id=\"row-web-BACKEND\" class=\"backend state-up\""));
        assert!(html.contains(
            "<td class=\"status\"><span class=\"state\">UP</span> <span class=\"since\">2h3m</span></td>"
        ));
        assert!(html.contains("<td class=\"lastchk\">L7OK/200 in 2ms</td><td>50/100</td>"));
        assert!(
            html.contains("<td>50 %</td></tr>"),
            "the Thrtle column ends the row of a server that slow_start ramps"
        );
        assert!(html.contains("data-svname=\"10.0.0.5:3306\""));
        assert!(html.contains("id=\"legend\""));
        assert!(html.contains("<dd>0.1.0</dd>"));
        assert!(html.contains("<span id=\"servers\">7: 4 up, 1 down, 1 maint, 1 drain</span>"));
        // Without a token, no form.
        assert!(!html.contains("<form"));
        assert!(!html.contains("type=\"checkbox\""));
        for section in ["vrrp", "volumes", "syncs"] {
            assert!(html.contains(&format!("<section id=\"{section}\">")));
        }
        assert_eq!(html.matches("class=\"not-configured\"").count(), 3);
    }

    // Input: the test snapshot with its frontend renamed `web`, as its backend is (HAProxy's
    // usual style), and rendered first. Output: the backend keeps the documented ids
    // (`form#form-web`, `tr#row-web-s1`, `input#cb-web-s1`) and the frontend takes `web-2`.
    #[test]
    fn a_frontend_named_like_its_backend_leaves_it_the_documented_ids() {
        let mut snapshot = snapshot();
        let frontend = snapshot
            .proxies
            .iter_mut()
            .find(|p| p.kind == ProxyKind::Frontend)
            .unwrap();
        frontend.name = "web".into();
        for row in &mut frontend.rows {
            row.pxname = "web".into();
        }
        let html = render(&page(&snapshot, Some("t0k"), &[]));
        assert!(
            html.contains("<section class=\"proxy backend\" id=\"px-web\""),
            "{html}"
        );
        assert!(html.contains("<form id=\"form-web\""));
        assert!(html.contains("<tr id=\"row-web-s1\""));
        assert!(html.contains("id=\"cb-web-s1\""));
        assert!(html.contains("<section class=\"proxy frontend\" id=\"px-web-2\""));
        assert!(html.contains("id=\"row-web-2-FRONTEND\""));
    }

    #[test]
    fn user_supplied_text_is_escaped() {
        let snapshot = snapshot();
        let flash = [Flash {
            ok: false,
            text: "<img src=x onerror=alert(1)>".into(),
        }];
        let html = render(&page(&snapshot, Some("tok\"en"), &flash));
        assert!(!html.contains("<script>x</script>"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("id=\"row-web-_script_x__script_\""));
        assert!(!html.contains("<img"));
        assert!(html.contains("<p class=\"flash error\">&lt;img src=x onerror=alert(1)&gt;</p>"));
        assert!(html.contains("value=\"tok&quot;en\""));
    }

    #[test]
    fn forms_carry_haproxys_fields_and_the_token() {
        let snapshot = snapshot();
        let html = render(&page(&snapshot, Some("t0k"), &[]));
        assert!(html.contains("<form id=\"form-web\" method=\"post\" action=\"/stats\">"));
        assert!(html.contains("<form id=\"form-mysql\""));
        assert!(
            !html.contains("<form id=\"form-www\""),
            "a frontend has no servers to act on"
        );
        assert!(html.contains(
            "<input type=\"checkbox\" name=\"s\" value=\"s1\" id=\"cb-web-s1\"><label for=\"cb-web-s1\">s1</label>"
        ));
        assert!(html.contains("value=\"10.0.0.5:3306\" id=\"cb-mysql-10.0.0.5_3306\""));
        assert!(html.contains("<input type=\"hidden\" name=\"b\" value=\"web\">"));
        assert!(html.contains("<input type=\"hidden\" name=\"token\" value=\"t0k\">"));
        assert!(html.contains("<select name=\"action\" id=\"action-web\">"));
        for action in [
            "ready", "drain", "maint", "dhlth", "ehlth", "dagent", "eagent", "shutdown", "weight",
        ] {
            assert!(html.contains(&format!("<option value=\"{action}\">")));
        }
        assert!(html.contains("<input name=\"weight\" id=\"weight-web\""));
        assert!(html.contains("<button type=\"submit\" id=\"apply-web\">"));
        // The BACKEND summary row has no checkbox.
        assert!(!html.contains("value=\"BACKEND\""));
    }

    #[test]
    fn version_and_refresh_can_be_left_out() {
        let snapshot = Snapshot::default();
        let mut p = page(&snapshot, None, &[]);
        p.version = None;
        p.norefresh = true;
        let html = render(&p);
        assert!(!html.contains("0.1.0"));
        assert!(!html.contains("http-equiv=\"refresh\""));
        assert!(html.contains("No frontend, backend or virtual service configured."));
    }

    #[test]
    fn vrrp_volumes_and_syncs_are_listed() {
        let snapshot = Snapshot {
            vrrp: vec![VrrpInstance {
                name: "VI_1".into(),
                interface: "eth0".into(),
                vrid: 51,
                state: "MASTER".into(),
                priority: 150,
                effective_priority: 140,
                master: Some("10.0.0.2".into()),
                vips: vec!["10.0.0.100/24".into(), "10.0.0.101/24".into()],
                lastchg: 65,
                adverts_sent: 1234,
                dropped: vec![("auth_failed".into(), 3)],
                ..VrrpInstance::default()
            }],
            volumes: vec![Volume {
                name: "r0".into(),
                role: "Primary".into(),
                connection: "SyncSource".into(),
                disk: "UpToDate".into(),
                out_of_sync_bytes: 2048,
                resync_percent: Some(42.25),
                ..Volume::default()
            }],
            syncs: vec![SyncSet {
                name: "uploads".into(),
                path: "/srv/uploads".into(),
                state: "connected".into(),
                peers: vec!["10.0.0.2:7790".into()],
                pending: 3,
                conflicts: 0,
                ..SyncSet::default()
            }],
            ..Snapshot::default()
        };
        let html = render(&page(&snapshot, None, &[]));
        assert!(html.contains("<tr id=\"vrrp-VI_1\" class=\"vrrp state-master\">"));
        assert!(html.contains("<td>150</td><td>140</td>"));
        assert!(html.contains("10.0.0.100/24 10.0.0.101/24"));
        assert!(
            html.contains(
                "<td>1234</td><td>0</td><td class=\"text\" title=\"auth_failed: 3\">3</td>"
            )
        );
        assert!(html.contains("<tr id=\"volume-r0\" class=\"volume state-going-up\">"));
        assert!(html.contains("42.2%") || html.contains("42.3%"));
        assert!(html.contains("<tr id=\"sync-uploads\" class=\"sync state-up\">"));
        assert!(html.contains("<dd>VI_1 MASTER</dd>"));
        assert_eq!(html.matches("class=\"not-configured\"").count(), 1);
    }
}
