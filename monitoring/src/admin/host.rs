//! The `Host` check against DNS rebinding. A web page on another site can have its own name
//! resolve to this server's address (127.0.0.1 included): the browser then takes the admin
//! server for that site, lets the page read it and post to it with that `Host`, and the
//! `Origin` check passes, since both name the attacker's site. With the well-known password
//! of a default install, such a page could act on the servers. So every request but the
//! metrics must name this server: by an IP address (which no DNS name can pose as),
//! `localhost`, this machine's host name, or a name listed in `server_names`. An attacker's
//! name is none of those.

use std::net::IpAddr;

use http::{HeaderMap, header::HOST};

/// The names a request's `Host` may give, besides IP addresses and `localhost`.
#[derive(Debug, Clone)]
pub(super) struct AllowedHosts {
    /// From `server_names` and the HTTPS certificate, lowercased: a name, `.domain` for it and
    /// every name under it, `*.domain` (a certificate's) for one label under it, or `*` for
    /// any.
    listed: Vec<String>,
    /// This machine's host name, read when a request needs it: `hostnamectl` may change it.
    hostname: fn() -> Option<String>,
}

impl AllowedHosts {
    /// `listed` as `server_names` gives them, and this machine's host name.
    pub(super) fn new(listed: &[String]) -> Self {
        Self::with_hostname(listed, machine_hostname)
    }

    fn with_hostname(listed: &[String], hostname: fn() -> Option<String>) -> Self {
        AllowedHosts {
            listed: (listed.iter())
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            hostname,
        }
    }

    /// Whether the request's `Host` names this server. A request without one is not a
    /// browser's (browsers always send it), so it passes; one that cannot be read does not.
    pub(super) fn allows(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(value) = headers.get(HOST) else {
            return Ok(());
        };
        let text = value.to_str().map_err(|_| "(not text)".to_owned())?;
        let Some((host, _port)) = super::session::authority(text, 0) else {
            return Err(text.to_owned());
        };
        let host = host.trim_end_matches('.');
        let allowed = host.parse::<IpAddr>().is_ok()
            || host == "localhost"
            || host.ends_with(".localhost")
            || self.listed.iter().any(|name| listed_match(name, host))
            || (self.hostname)().as_deref() == Some(host);
        if allowed {
            Ok(())
        } else {
            Err(text.to_owned())
        }
    }
}

/// The kernel's host name, lowercased, if it has one.
fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| !h.is_empty())
}

/// Whether `host` is the listed `name`: equal, under a `.domain`, or anything for `*`.
fn listed_match(name: &str, host: &str) -> bool {
    if name == "*" {
        return true;
    }
    if let Some(domain) = name.strip_prefix("*.") {
        return host
            .strip_suffix(domain)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.'));
    }
    match name.strip_prefix('.') {
        Some(domain) => host == domain || host.ends_with(name),
        None => host == name,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn check(allowed: &AllowedHosts, host: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::from_str(host).unwrap_or(HeaderValue::from_static("x")),
        );
        allowed.allows(&headers).is_ok()
    }

    #[test]
    fn addresses_localhost_and_the_host_name_pass_and_other_names_do_not() {
        let allowed = AllowedHosts::with_hostname(&[], || Some("lb1".to_owned()));
        for host in [
            "127.0.0.1:8404",
            "10.0.0.5",
            "[::1]:8404",
            "localhost:8404",
            "LOCALHOST",
            "app.localhost",
            "lb1:8404",
            "LB1.",
        ] {
            assert!(check(&allowed, host), "{host}");
        }
        for host in [
            "evil.example:8404",
            "lb1.evil.example",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "lb2",
            "a b",
        ] {
            assert!(!check(&allowed, host), "{host}");
        }
        assert!(allowed.allows(&HeaderMap::new()).is_ok(), "no Host at all");
    }

    #[test]
    fn listed_names_domains_and_the_wildcard_pass() {
        let listed = [
            "LB.example.com.".to_owned(),
            ".corp.example".to_owned(),
            "my_box".to_owned(),
        ];
        let allowed = AllowedHosts::with_hostname(&listed, || None);
        for host in [
            "lb.example.com:8404",
            "corp.example",
            "admin.corp.example:8404",
        ] {
            assert!(check(&allowed, host), "{host}");
        }
        for host in [
            "example.com",
            "xcorp.example",
            "lb.example.com.evil.example",
        ] {
            assert!(!check(&allowed, host), "{host}");
        }
        let certificate = AllowedHosts::with_hostname(&["*.lb.example".to_owned()], || None);
        assert!(check(&certificate, "a.lb.example:8404"));
        for host in ["lb.example", "a.b.lb.example", ".lb.example", "alb.example"] {
            assert!(!check(&certificate, host), "{host}");
        }
        let any = AllowedHosts::with_hostname(&["*".to_owned()], || None);
        assert!(check(&any, "evil.example"));
    }
}
