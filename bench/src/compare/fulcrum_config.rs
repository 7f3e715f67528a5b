//! The Fulcrum side of a [`Site`]: a TOML config equivalent to [`super::haproxy_config`]'s, with
//! one worker thread and the access log off, as HAProxy runs with `nbthread 1` and no `log`.
//! In `mode tcp` the site is a `[virtual_server]` (the L4 tier), scheduled round robin. With an
//! admin site ("Fulcrum+metrics"), an `[admin]` section too.

use std::path::Path;

use super::admin::{AdminSite, METRICS_PATH, PASSWORD, STATS_PATH, USER};
use super::scenario::COOKIE_NAME;
use super::site::{Mode, Site, timeouts};

/// Renders the config of `site`.
pub(crate) fn fulcrum_config(site: &Site) -> String {
    let mut lines = vec![
        "# Written by `fulcrum-bench compare`.".to_owned(),
        String::new(),
        "[global]".to_owned(),
        "threads = 1".to_owned(),
        format!("max_connections = {}", site.max_connections),
        "grace = \"1s\"".to_owned(),
        "log = { format = \"text\", level = \"warn\", access_log = false }".to_owned(),
        String::new(),
    ];
    if let Some(admin) = &site.admin {
        admin_section(admin, &mut lines);
    }
    match site.mode {
        Mode::Http => http_sections(site, &mut lines),
        Mode::Tcp => virtual_server(site, &mut lines),
    }
    lines.push(String::new());
    lines.join("\n")
}

/// `[admin]`: the stats page (with its JSON) behind one login, and Prometheus `/metrics`.
fn admin_section(admin: &AdminSite, lines: &mut Vec<String>) {
    lines.extend([
        "[admin]".to_owned(),
        format!("listen = {}", quote(&admin.listen.to_string())),
        format!("stats_path = {}", quote(STATS_PATH)),
        format!("metrics_path = {}", quote(METRICS_PATH)),
        format!(
            "users = [{{ name = {}, password = {} }}]",
            quote(USER),
            quote(PASSWORD)
        ),
        String::new(),
    ]);
}

/// `[virtual_server.main]`: HAProxy's `listen` section in `mode tcp`, as IPVS words it. The
/// servers have no names in an L4 config; `rr` is `balance roundrobin` with equal weights.
fn virtual_server(site: &Site, lines: &mut Vec<String>) {
    lines.push("[virtual_server.main]".to_owned());
    lines.push(format!("listen = {}", quote(&site.listen.to_string())));
    lines.push("protocol = \"tcp\"".to_owned());
    lines.push("scheduler = \"rr\"".to_owned());
    lines.push(format!(
        "timeout = {{ connect = \"{}\", idle = \"{}\" }}",
        timeouts::CONNECT,
        timeouts::TCP_IDLE
    ));
    lines.push("real_servers = [".to_owned());
    for (_, addr) in &site.servers {
        lines.push(format!(
            "  {{ address = {}, weight = 1 }},",
            quote(&addr.to_string())
        ));
    }
    lines.push("]".to_owned());
}

/// `[frontend.main]` and `[backend.web]`.
fn http_sections(site: &Site, lines: &mut Vec<String>) {
    lines.extend([
        "[frontend.main]".to_owned(),
        format!("bind = [{}]", quote(&site.listen.to_string())),
    ]);
    if let Some(cert) = &site.tls_cert {
        lines.push(format!(
            "tls = {{ certs = [{}], alpn = [\"h2\", \"http/1.1\"] }}",
            quote_path(cert)
        ));
    }
    lines.push("default_backend = \"web\"".to_owned());
    lines.push(format!(
        "timeout = {{ client = \"{}\", http_request = \"{}\", keep_alive = \"{}\" }}",
        timeouts::CLIENT,
        timeouts::HTTP_REQUEST,
        timeouts::KEEP_ALIVE
    ));
    lines.push(String::new());
    lines.push("[backend.web]".to_owned());
    lines.push("balance = \"roundrobin\"".to_owned());
    if site.cookie {
        lines.push(format!(
            "cookie = {{ name = \"{COOKIE_NAME}\", mode = \"insert\", indirect = true, nocache = true }}"
        ));
    }
    lines.push(format!(
        "timeout = {{ connect = \"{}\", server = \"{}\" }}",
        timeouts::CONNECT,
        timeouts::SERVER
    ));
    lines.push("servers = [".to_owned());
    for (name, addr) in &site.servers {
        lines.push(format!(
            "  {{ name = {}, address = {}, cookie = {} }},",
            quote(name),
            quote(&addr.to_string()),
            quote(name)
        ));
    }
    lines.push("]".to_owned());
}

/// A TOML basic string. JSON's escapes are a subset of TOML's, so serde_json quotes correctly.
fn quote(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::PathBuf;

    use super::fulcrum_config;
    use crate::compare::admin::AdminSite;
    use crate::compare::site::Site;
    use crate::compare::site::fixtures::{site, tcp_site};

    /// The plain site as "Fulcrum+metrics" runs it.
    fn metrics_site() -> Site {
        Site {
            admin: Some(AdminSite {
                listen: "127.0.0.1:18404".parse().unwrap(),
            }),
            ..site(false, None)
        }
    }

    #[test]
    fn plain_site() {
        let toml = fulcrum_config(&site(false, None));
        assert!(toml.contains("threads = 1\n"), "{toml}");
        assert!(toml.contains("access_log = false"), "{toml}");
        assert!(toml.contains("max_connections = 11024\n"), "{toml}");
        assert!(toml.contains("bind = [\"127.0.0.1:18080\"]"), "{toml}");
        assert!(toml.contains("balance = \"roundrobin\""), "{toml}");
        assert!(
            toml.contains("{ name = \"s2\", address = \"127.0.0.1:18082\", cookie = \"s2\" }"),
            "{toml}"
        );
        assert!(!toml.contains("tls ="), "{toml}");
        assert!(!toml.contains("cookie = {"), "{toml}");
    }

    #[test]
    fn tcp_site_is_a_virtual_server() {
        let toml = fulcrum_config(&tcp_site());
        let expected = "\
[virtual_server.main]
listen = \"127.0.0.1:18080\"
protocol = \"tcp\"
scheduler = \"rr\"
timeout = { connect = \"5s\", idle = \"10m\" }
real_servers = [
  { address = \"127.0.0.1:18081\", weight = 1 },
  { address = \"127.0.0.1:18082\", weight = 1 },
]
";
        assert!(toml.ends_with(expected), "{toml}");
        assert!(toml.contains("threads = 1\n"), "{toml}");
        assert!(toml.contains("access_log = false"), "{toml}");
        assert!(toml.contains("max_connections = 11024\n"), "{toml}");
        for http in ["[frontend", "[backend", "balance", "cookie"] {
            assert!(!toml.contains(http), "{http} in {toml}");
        }
    }

    #[test]
    fn only_the_metrics_site_has_an_admin_section() {
        let toml = fulcrum_config(&metrics_site());
        let expected = "\
[admin]
listen = \"127.0.0.1:18404\"
stats_path = \"/stats\"
metrics_path = \"/metrics\"
users = [{ name = \"bench\", password = \"bench-scraper\" }]

[frontend.main]
";
        assert!(toml.contains(expected), "{toml}");
        // Otherwise the same site: only `[admin]` differs between metrics on and off.
        let without = toml.replace(&expected[..expected.find("[frontend").unwrap()], "");
        assert_eq!(without, fulcrum_config(&site(false, None)));
        for other in [site(false, None), site(true, None), tcp_site()] {
            assert!(!fulcrum_config(&other).contains("[admin]"));
        }
    }

    #[test]
    fn cookie_and_tls_site() {
        let toml = fulcrum_config(&site(true, Some(PathBuf::from("/tmp/x y/site.pem"))));
        assert!(
            toml.contains(
                "cookie = { name = \"SRV\", mode = \"insert\", indirect = true, nocache = true }"
            ),
            "{toml}"
        );
        assert!(
            toml.contains(
                "tls = { certs = [\"/tmp/x y/site.pem\"], alpn = [\"h2\", \"http/1.1\"] }"
            ),
            "{toml}"
        );
    }

    /// `fulcrum check` accepts every config the runner writes: `FULCRUM_BIN`, or the `fulcrum`
    /// that a workspace build puts beside this test's `deps` directory.
    #[test]
    fn fulcrum_check_accepts_the_configs() {
        let fulcrum = std::env::var_os("FULCRUM_BIN")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                let exe = std::env::current_exe().ok()?;
                Some(exe.parent()?.parent()?.join("fulcrum"))
            })
            .filter(|path| path.is_file());
        let Some(fulcrum) = fulcrum else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI builds the fulcrum binary"
            );
            eprintln!("skipped: no fulcrum binary (build the workspace or set FULCRUM_BIN)");
            return;
        };
        let Some(openssl) = crate::compare::tools::find_in_path("openssl") else {
            assert!(std::env::var_os("CI").is_none(), "CI installs openssl");
            eprintln!("skipped: openssl is not installed");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let cert = crate::compare::cert::generate_cert(&openssl, dir.path()).unwrap();
        for (name, site) in [
            ("plain", site(false, None)),
            ("cookie", site(true, None)),
            ("tls", site(false, Some(cert.clone()))),
            ("tcp", tcp_site()),
            ("metrics", metrics_site()),
        ] {
            let path = dir.path().join(format!("{name}.toml"));
            std::fs::write(&path, fulcrum_config(&site)).unwrap();
            let out = std::process::Command::new(&fulcrum)
                .arg("check")
                .arg("-c")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
