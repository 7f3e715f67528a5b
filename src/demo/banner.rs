//! What `fulcrum demo` prints on stdout once the site is up: the URLs, with the real ports when
//! port 0 was asked for, and what to try. Logs go to stderr, so the banner stays readable (and
//! parseable) on its own.

use std::{
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use super::site;
use crate::run::Started;

/// Prints the banner for the appliance `started` from the config at `config`.
pub(super) fn print(started: &Started, config: &Path) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (`fulcrum demo | head`) must not stop the demo; the site still serves.
    let _ = out
        .write_all(text(started, config).as_bytes())
        .and_then(|()| out.flush());
}

/// The banner; `None` parts (no listener, no admin server) cannot happen with the demo's config
/// but are shown as such rather than trusted.
fn text(started: &Started, config: &Path) -> String {
    let site = started
        .listeners
        .iter()
        .find(|l| l.frontend == site::FRONTEND)
        .map_or_else(|| "(not listening)".to_owned(), |l| url(l.bound, "/"));
    let (stats, metrics) = match started.admin {
        Some(addr) => (url(addr, site::STATS_PATH), url(addr, "/metrics")),
        None => ("(not listening)".to_owned(), "(not listening)".to_owned()),
    };
    let (user, password) = (site::USER, site::PASSWORD);
    let config = config.display();
    let tries = [
        (
            format!("curl -i {site}"),
            "twice: X-Server: web1, then web2",
        ),
        (
            format!("curl -i -c jar -b jar {site}"),
            "again and again: stays on one server (cookie SERVERID)",
        ),
        (
            format!("curl -i -X POST --data x {site}upload"),
            "X-Server: upload",
        ),
    ];
    let width = tries
        .iter()
        .map(|(command, _)| command.len())
        .max()
        .unwrap_or(0);
    let tries: String = tries
        .iter()
        .map(|(command, what)| format!("  {command:<width$}   # {what}\n"))
        .collect();
    format!(
        "\n\
Fulcrum demo: two web servers (web1, web2) and an upload server behind the L7 tier.

Site:    {site}
Stats:   {stats}  (user {user}, password {password})
Metrics: {metrics}
Config:  {config}

Try:
{tries}  and, on the stats page, drain or stop a server and watch where requests go.

Ctrl-C to stop.
"
    )
}

/// `http://ADDR/PATH`, with a wildcard address shown as loopback, which reaches it from here.
fn url(addr: SocketAddr, path: &str) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}{path}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn the_banner_shows_the_bound_ports() {
        let started = Started {
            listeners: vec![fulcrum_proxy::Listener {
                frontend: site::FRONTEND.to_owned(),
                configured: "127.0.0.1:0".parse().unwrap(),
                bound: "127.0.0.1:41000".parse().unwrap(),
            }],
            admin: Some("0.0.0.0:41001".parse().unwrap()),
        };
        let text = text(&started, Path::new("/tmp/d/fulcrum.toml"));
        assert!(
            text.contains("Site:    http://127.0.0.1:41000/\n"),
            "{text}"
        );
        assert!(
            text.contains("Stats:   http://127.0.0.1:41001/stats  (user admin"),
            "{text}"
        );
        assert!(text.contains("Config:  /tmp/d/fulcrum.toml\n"), "{text}");
        assert!(text.contains("Ctrl-C to stop."), "{text}");
    }

    #[test]
    fn ipv6_urls_have_brackets() {
        assert_eq!(url("[::]:8080".parse().unwrap(), "/"), "http://[::1]:8080/");
    }
}
