//! The HAProxy side of a [`Site`]: `nbthread 1`, no logging, keep-alive on both sides
//! (`http-reuse safe`), round robin over the same two origins, and the cookie and TLS settings
//! that match [`super::fulcrum_config`]'s. In `mode tcp`, one `listen` section relaying bytes,
//! with HAProxy's defaults otherwise (no `option splice-*`: HAProxy copies through its buffers
//! unless told to splice).

use std::path::Path;

use super::scenario::COOKIE_NAME;
use super::site::{Mode, Site, timeouts};

/// Renders the config of `site`.
pub(crate) fn haproxy_config(site: &Site) -> String {
    match site.mode {
        Mode::Http => http_config(site),
        Mode::Tcp => tcp_config(site),
    }
}

/// The `global` section both modes share.
fn global(maxconn: usize) -> Vec<String> {
    vec![
        "# Written by `fulcrum-bench compare`.".to_owned(),
        "global".to_owned(),
        "    nbthread 1".to_owned(),
        format!("    maxconn {maxconn}"),
        // HAProxy reserves two descriptors per connection and, by default, refuses to start when
        // it cannot raise its limit that far (a container without CAP_SYS_RESOURCE). Idle clients
        // hold no server connection, so the limit there is serves the measurement; Fulcrum runs
        // under the same limit.
        "    no strict-limits".to_owned(),
        // No `log` line: nothing is logged, as Fulcrum runs with its access log off.
        String::new(),
    ]
}

/// `mode tcp`: the relay of a Fulcrum `virtual_server`, whose one `idle` timeout is both of
/// HAProxy's inactivity timeouts here.
fn tcp_config(site: &Site) -> String {
    let maxconn = site.max_connections;
    let mut lines = global(maxconn);
    lines.extend([
        "defaults".to_owned(),
        "    mode tcp".to_owned(),
        format!("    maxconn {maxconn}"),
        format!("    timeout connect {}", timeouts::CONNECT),
        format!("    timeout client {}", timeouts::TCP_IDLE),
        format!("    timeout server {}", timeouts::TCP_IDLE),
        String::new(),
        "listen main".to_owned(),
        format!("    bind {}", site.listen),
        "    balance roundrobin".to_owned(),
    ]);
    for (name, addr) in &site.servers {
        lines.push(format!("    server {name} {addr}"));
    }
    lines.push(String::new());
    lines.join("\n")
}

/// `mode http`: a frontend and a backend.
fn http_config(site: &Site) -> String {
    let maxconn = site.max_connections;
    let mut lines = global(maxconn);
    lines.extend([
        "defaults".to_owned(),
        "    mode http".to_owned(),
        "    option http-keep-alive".to_owned(),
        // The frontend's own limit defaults to less than the global one in some versions.
        format!("    maxconn {maxconn}"),
        format!("    timeout connect {}", timeouts::CONNECT),
        format!("    timeout client {}", timeouts::CLIENT),
        format!("    timeout server {}", timeouts::SERVER),
        format!("    timeout http-request {}", timeouts::HTTP_REQUEST),
        format!("    timeout http-keep-alive {}", timeouts::KEEP_ALIVE),
        String::new(),
        "frontend main".to_owned(),
    ]);
    match &site.tls_cert {
        Some(cert) => lines.push(format!(
            "    bind {} ssl crt {} alpn h2,http/1.1",
            site.listen,
            quote_path(cert)
        )),
        None => lines.push(format!("    bind {}", site.listen)),
    }
    lines.push("    default_backend web".to_owned());
    lines.push(String::new());
    lines.push("backend web".to_owned());
    lines.push("    balance roundrobin".to_owned());
    lines.push("    http-reuse safe".to_owned());
    if site.cookie {
        lines.push(format!("    cookie {COOKIE_NAME} insert indirect nocache"));
    }
    for (name, addr) in &site.servers {
        if site.cookie {
            lines.push(format!("    server {name} {addr} cookie {name}"));
        } else {
            lines.push(format!("    server {name} {addr}"));
        }
    }
    lines.push(String::new());
    lines.join("\n")
}

/// HAProxy reads `"..."` as one word with `\` escapes, so a path with spaces stays one argument.
fn quote_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\' | '$') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::haproxy_config;
    use crate::compare::site::fixtures::{site, tcp_site};
    use crate::compare::tools;

    #[test]
    fn plain_site() {
        let cfg = haproxy_config(&site(false, None));
        for line in [
            "    nbthread 1\n",
            "    maxconn 11024\n",
            "    no strict-limits\n",
            "    mode http\n",
            "    option http-keep-alive\n",
            "    bind 127.0.0.1:18080\n",
            "    balance roundrobin\n",
            "    http-reuse safe\n",
            "    server s1 127.0.0.1:18081\n",
            "    server s2 127.0.0.1:18082\n",
        ] {
            assert!(cfg.contains(line), "missing {line:?} in\n{cfg}");
        }
        assert!(!cfg.contains("cookie"), "{cfg}");
        assert!(!cfg.contains(" log "), "{cfg}");
    }

    #[test]
    fn tcp_site_is_a_listen_section() {
        let cfg = haproxy_config(&tcp_site());
        let expected = "\
defaults
    mode tcp
    maxconn 11024
    timeout connect 5s
    timeout client 10m
    timeout server 10m

listen main
    bind 127.0.0.1:18080
    balance roundrobin
    server s1 127.0.0.1:18081
    server s2 127.0.0.1:18082
";
        assert!(cfg.ends_with(expected), "{cfg}");
        for line in ["    nbthread 1\n", "    no strict-limits\n"] {
            assert!(cfg.contains(line), "missing {line:?} in\n{cfg}");
        }
        for http in ["http", "cookie", "frontend", "backend", "splice"] {
            assert!(!cfg.contains(http), "{http} in\n{cfg}");
        }
    }

    #[test]
    fn cookie_and_tls_site() {
        let cfg = haproxy_config(&site(true, Some(PathBuf::from("/tmp/a b/site.pem"))));
        for line in [
            "    cookie SRV insert indirect nocache\n",
            "    server s1 127.0.0.1:18081 cookie s1\n",
            "    bind 127.0.0.1:18080 ssl crt \"/tmp/a b/site.pem\" alpn h2,http/1.1\n",
        ] {
            assert!(cfg.contains(line), "missing {line:?} in\n{cfg}");
        }
    }

    /// `haproxy -c` accepts every config the runner writes. HAProxy is optional on a developer's
    /// machine but CI installs it, so there (`CI` set) a missing binary fails the test.
    #[test]
    fn haproxy_accepts_the_configs() {
        let Some(haproxy) = tools::find_haproxy(None) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "haproxy is not installed, and CI must have it"
            );
            eprintln!("skipped: haproxy is not installed (apt-get install haproxy)");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut sites = vec![
            ("plain", site(false, None)),
            ("cookie", site(true, None)),
            ("tcp", tcp_site()),
        ];
        match tools::find_in_path("openssl") {
            Some(openssl) => {
                let cert = crate::compare::cert::generate_cert(&openssl, dir.path()).unwrap();
                sites.push(("tls", site(false, Some(cert))));
            }
            None => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "openssl is not installed, and CI must have it"
                );
                eprintln!("tls config not checked: openssl is not installed");
            }
        }
        for (name, site) in sites {
            check(&haproxy, dir.path(), name, &haproxy_config(&site));
        }
    }

    fn check(haproxy: &Path, dir: &Path, name: &str, cfg: &str) {
        let path = dir.join(format!("{name}.cfg"));
        std::fs::write(&path, cfg).unwrap();
        let out = Command::new(haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: haproxy -c failed:\n{stdout}{stderr}\n{cfg}"
        );
        // A warning means HAProxy reads the config differently from what was meant.
        assert!(
            !stderr.contains("WARNING") && !stdout.contains("WARNING"),
            "{name}: haproxy -c warned:\n{stdout}{stderr}\n{cfg}"
        );
    }
}
