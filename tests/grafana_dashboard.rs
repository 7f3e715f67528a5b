//! The Grafana dashboard `etc/grafana/fulcrum.json` against the real binary: every metric its
//! queries name is one the running process exposes on `/metrics` (so a renamed or removed metric
//! breaks this test instead of leaving an empty panel), every panel is titled and follows the
//! dashboard's data source picker, the template variables are there, and, where `promtool` is
//! installed, every query parses as PromQL.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    process::Command,
    time::Instant,
};

use serde_json::Value;
use support::{Fulcrum, KeepAlive, PATIENCE, curl, origin, require_tool};

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/grafana/fulcrum.json");

/// The template variables the dashboard's queries filter on.
const VARIABLES: [&str; 5] = [
    "datasource",
    "instance",
    "frontend",
    "backend",
    "virtual_service",
];

fn dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Every panel, rows included, with the panels of collapsed rows (which Grafana keeps inside the
/// row's own `panels`).
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every PromQL query of the dashboard with where it comes from: each panel target's `expr`, and
/// each query variable's query.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without an expr: {target}"));
            out.push((format!("panel {title:?}"), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            let query = &variable["query"];
            let query = query["query"].as_str().or(query.as_str()).unwrap();
            out.push((format!("variable ${}", variable["name"]), query.to_owned()));
        }
    }
    out
}

/// The metric names an expression uses: identifiers starting with `fulcrum_` or `process_`,
/// outside string literals (label values such as `"$instance"` or `"fulcrum_x"` are not metrics).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            // Skip the string literal, honouring backslash escapes (none in raw `...` strings).
            let mut escaped = false;
            for (_, d) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if d == '\\' && c != '`' {
                    escaped = true;
                } else if d == c {
                    break;
                }
            }
        } else if is_ident(c) || c == '$' {
            let mut end = start + c.len_utf8();
            while let Some(&(i, d)) = chars.peek() {
                if !is_ident(d) {
                    break;
                }
                end = i + d.len_utf8();
                chars.next();
            }
            let word = &expr[start..end];
            if word.starts_with("fulcrum_") || word.starts_with("process_") {
                names.insert(word.to_owned());
            }
        }
    }
    names
}

/// Whether `name` is a series name of the exposed families (`# TYPE` name to type): a family
/// itself, or the `_bucket`, `_count` or `_sum` series of a histogram (`_count`, `_sum` of a
/// summary).
fn exposed(name: &str, types: &BTreeMap<String, String>) -> bool {
    if types.contains_key(name) {
        return true;
    }
    [
        ("_bucket", &["histogram"][..]),
        ("_count", &["histogram", "summary"][..]),
        ("_sum", &["histogram", "summary"][..]),
    ]
    .iter()
    .any(|(suffix, kinds)| {
        name.strip_suffix(suffix)
            .and_then(|base| types.get(base))
            .is_some_and(|kind| kinds.contains(&kind.as_str()))
    })
}

/// `# TYPE` lines of a Prometheus text exposition: family name to type.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("# TYPE ")?.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// A site with every kind of row the dashboard shows: a frontend with a connection limit, a
/// health-checked backend of two servers with limits, and a health-checked L4 virtual service
/// with a connection threshold (the `limit_*` series exist only where a limit is set).
fn site(s1: SocketAddr, s2: SocketAddr, real: SocketAddr) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[frontend.main]
bind = ["127.0.0.1:0"]
max_connections = 100
default_backend = "web"

[backend.web]
balance = "roundrobin"
health_check = {{ type = "tcp", interval = "1s" }}
servers = [
  {{ name = "s1", address = "{s1}", max_connections = 50 }},
  {{ name = "s2", address = "{s2}", max_connections = 50 }},
]

[virtual_server.vs]
listen = "127.0.0.1:0"
protocol = "tcp"
health_check = {{ type = "tcp", interval = "1s" }}
real_servers = [{{ address = "{real}", upper_threshold = 100 }}]
"#
    )
}

async fn scrape(admin: SocketAddr) -> String {
    let (status, out, err) = curl(&["--fail", &format!("http://{admin}/metrics")]).await;
    assert!(status.success(), "scraping /metrics: {err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exposed() {
    let dashboard = dashboard();
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (place, expr) in queries(&dashboard) {
        for name in metric_names(&expr) {
            used.entry(name).or_default().insert(place.clone());
        }
    }
    assert!(
        used.len() >= 40 && used.contains_key("fulcrum_server_status"),
        "too few metric names found in the dashboard's queries, is the extraction broken? {:?}",
        used.keys()
    );

    let (s1, s2, real) = (origin("s1").await, origin("s2").await, origin("r1").await);
    let fulcrum = Fulcrum::start(&site(s1.addr(), s2.addr(), real.addr()));
    let mut client = KeepAlive::connect(fulcrum.addr("main")).await;
    for _ in 0..5 {
        assert_eq!(client.get("/", &[]).await.unwrap().status, 200);
    }
    drop(client);
    let mut through_l4 = KeepAlive::connect(fulcrum.virtual_server_addr("vs")).await;
    assert_eq!(through_l4.get("/", &[]).await.unwrap().status, 200);
    drop(through_l4);

    // The check durations appear once the first checks are done; everything else is there from
    // the first scrape.
    let admin = fulcrum.admin_addr();
    let deadline = Instant::now() + PATIENCE;
    let types = loop {
        let types = families(&scrape(admin).await);
        let checked = [
            "fulcrum_server_check_duration_seconds",
            "fulcrum_real_server_check_duration_seconds",
        ]
        .iter()
        .all(|name| types.contains_key(*name));
        if checked || Instant::now() >= deadline {
            break types;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exposed(name, &types))
        .map(|(name, places)| {
            let places: Vec<&str> = places.iter().map(String::as_str).collect();
            format!("{name} (used by {})", places.join(", "))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics that /metrics does not expose:\n  {}\nexposed: {:?}",
        missing.join("\n  "),
        types.keys()
    );
}

#[test]
fn metric_names_skip_strings_variables_and_functions() {
    let expr = r#"histogram_quantile(0.99, sum by (proxy, le) (rate(fulcrum_backend_http_response_time_seconds_bucket{instance=~"$instance", proxy=~"fulcrum_not_a_metric"}[$__rate_interval])))
/ on (proxy) process_open_fds or vector(0)"#;
    assert_eq!(
        metric_names(expr).into_iter().collect::<Vec<_>>(),
        [
            "fulcrum_backend_http_response_time_seconds_bucket",
            "process_open_fds"
        ]
    );
    let types = BTreeMap::from([
        (
            "fulcrum_backend_http_response_time_seconds".to_owned(),
            "histogram".to_owned(),
        ),
        ("fulcrum_server_status".to_owned(), "gauge".to_owned()),
    ]);
    assert!(exposed(
        "fulcrum_backend_http_response_time_seconds_bucket",
        &types
    ));
    assert!(exposed(
        "fulcrum_backend_http_response_time_seconds_count",
        &types
    ));
    assert!(exposed("fulcrum_server_status", &types));
    assert!(
        !exposed("fulcrum_server_status_count", &types),
        "a gauge has no _count series"
    );
    assert!(!exposed("fulcrum_backend_http_response_time", &types));
}

#[test]
fn panels_are_titled_and_use_the_datasource_variable() {
    let dashboard = dashboard();
    let all = panels(&dashboard);
    assert!(all.len() > 20, "{} panels", all.len());
    let mut ids = BTreeSet::new();
    for panel in all {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.trim().is_empty(), "a panel without a title: {panel}");
        let id = panel["id"].as_u64();
        assert!(
            id.is_some_and(|id| ids.insert(id)),
            "panel {title:?}: missing or repeated id {id:?}"
        );
        for key in ["h", "w", "x", "y"] {
            assert!(
                panel["gridPos"][key].is_u64(),
                "panel {title:?}: no gridPos.{key}"
            );
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {title:?} must use the data source picker"
        );
        assert_eq!(panel["datasource"]["type"], "prometheus", "panel {title:?}");
        let targets = panel["targets"].as_array();
        assert!(
            targets.is_some_and(|t| !t.is_empty()),
            "panel {title:?} has no query"
        );
        for target in targets.into_iter().flatten() {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "panel {title:?}: target {target}"
            );
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "panel {title:?}: target {target}"
            );
            assert!(target["refId"].is_string(), "panel {title:?}: {target}");
        }
    }
}

#[test]
fn the_dashboard_is_importable_and_has_its_template_variables() {
    let dashboard = dashboard();
    assert_eq!(dashboard["title"], "Fulcrum");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert!(
        dashboard["id"].is_null(),
        "an importable dashboard has no id"
    );
    let inputs = dashboard["__inputs"].as_array().unwrap();
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "{inputs:?}"
    );

    let variables: BTreeMap<&str, &Value> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    for name in VARIABLES {
        assert!(
            variables.contains_key(name),
            "no ${name} variable: {:?}",
            variables.keys()
        );
    }
    let datasource = variables["datasource"];
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert_eq!(datasource["current"]["value"], "${DS_PROMETHEUS}");
    let query = |name: &str| {
        let v = variables[name];
        assert_eq!(v["type"], "query", "${name}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "${name}");
        v["query"]["query"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        query("instance"),
        "label_values(fulcrum_build_info, instance)"
    );
    assert_eq!(
        query("frontend"),
        r#"label_values(fulcrum_frontend_sessions_total{instance=~"$instance"}, proxy)"#
    );
    assert_eq!(
        query("backend"),
        r#"label_values(fulcrum_backend_sessions_total{instance=~"$instance"}, proxy)"#
    );
    assert_eq!(
        query("virtual_service"),
        r#"label_values(fulcrum_virtual_service_connections_total{instance=~"$instance"}, virtual_service)"#
    );

    // Every panel query follows the instance picker.
    for (place, expr) in queries(&dashboard) {
        if place.starts_with("panel") {
            assert!(
                expr.contains(r#"instance=~"$instance""#),
                "{place} ignores $instance: {expr}"
            );
        }
    }
}

/// `expr` with Grafana's variables replaced by values Prometheus accepts: intervals for the
/// built-in `$__*` ones, a match-anything regex for the template variables.
fn substitute(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').unwrap();
                (&braced[..end], &braced[end + 1..])
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        out.push_str(if name.starts_with("__") { "5m" } else { ".*" });
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[test]
fn every_panel_query_is_valid_promql() {
    if !require_tool("promtool") {
        return;
    }
    let dashboard = dashboard();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("dashboard.rules.yml");
    let mut text = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let queries = queries(&dashboard);
    for (i, (_, expr)) in queries.iter().enumerate() {
        if expr.starts_with("label_values(") {
            continue; // Grafana's own function, not PromQL.
        }
        // A JSON string is a YAML double-quoted scalar.
        let expr = serde_json::to_string(&substitute(expr)).unwrap();
        text.push_str(&format!(
            "      - record: dashboard:query:{i}\n        expr: {expr}\n"
        ));
    }
    std::fs::write(&rules, &text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules", "--lint=none"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        queries
            .iter()
            .enumerate()
            .map(|(i, (place, _))| format!("dashboard:query:{i} is {place}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
