//! Turns the sections users wrote into a validated [`Config`], collecting every problem found
//! rather than stopping at the first.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::Arc,
};

use fulcrum_common::{ConfigError, Spanned, list_or_none, net::binds_overlap};

use super::{
    AgentCheck, Backend, Check, Config, Cookie, CookieMode, DEFAULT_ERROR_LIMIT, Frontend,
    L4Protocol, Observe, OnError, ProxyProtocol, RealServer, Return, Rule, Server, VirtualServer,
    l4_section::VirtualServerSection,
    section::{
        AgentCheckSection, BackendSection, CheckKind, FrontendSection, HealthCheckSection,
        ServerSection,
    },
};
use crate::{
    l4::{
        persist::Granularity,
        sched::{Kind, Options as SchedOptions, Scheduler},
    },
    l7::{
        acl::{Acl, Condition},
        balance::Algorithm,
    },
};

/// The proxy's sections of the config file.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    pub frontend: BTreeMap<String, FrontendSection>,
    pub backend: BTreeMap<String, BackendSection>,
    pub virtual_server: BTreeMap<String, VirtualServerSection>,
    /// `[global] max_connections`; 0 means no limit.
    pub max_connections: usize,
    /// `[global] log.format = "json"`: access log records carry their fields as JSON fields.
    pub json_log: bool,
    /// `[global] spread_checks`: the percent each check interval varies by, 0..=50.
    pub spread_checks: u32,
}

/// Validates `sections`; the error list names every problem found.
pub fn build(sections: &Sections) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let backend_index: HashMap<&str, usize> = sections
        .backend
        .keys()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    let mut backends: Vec<Backend> = sections
        .backend
        .iter()
        .map(|(name, section)| build_backend(name, section, &mut errors))
        .collect();
    let frontends = sections
        .frontend
        .iter()
        .map(|(name, section)| build_frontend(name, section, &backend_index, &mut errors))
        .collect::<Vec<_>>();
    let mut virtual_servers: Vec<VirtualServer> = sections
        .virtual_server
        .iter()
        .map(|(name, section)| build_virtual_server(name, section, &mut errors))
        .collect();
    // A global setting every check carries, so its task needs nothing else.
    let spread = sections.spread_checks;
    for backend in &mut backends {
        if let Some(check) = &mut backend.check {
            check.spread_percent = spread;
        }
        if let Some(agent) = &mut backend.agent {
            agent.spread_percent = spread;
        }
    }
    for vs in &mut virtual_servers {
        if let Some(check) = &mut vs.check {
            check.spread_percent = spread;
        }
        if let Some(agent) = &mut vs.agent {
            agent.spread_percent = spread;
        }
    }
    check_unique_binds(&sections.frontend, &sections.virtual_server, &mut errors);
    for (name, section) in &sections.virtual_server {
        if sections.backend.contains_key(name) {
            // Admin actions, the runtime API and the metrics find a server by its proxy's
            // name and its own: one name for both would act on the backend's server.
            errors.push(ConfigError::at(
                &section.listen,
                format!(
                    "virtual_server `{name}` has the name of a backend: the stats page, `fulcrum ctl` and the metrics tell them apart by name; rename one"
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(Config {
            frontends,
            backends,
            virtual_servers,
            max_connections: sections.max_connections,
            json_log: sections.json_log,
        })
    } else {
        Err(errors)
    }
}

fn build_frontend(
    name: &str,
    section: &FrontendSection,
    backends: &HashMap<&str, usize>,
    errors: &mut Vec<ConfigError>,
) -> Frontend {
    let resolve = |reference: &Spanned<String>, errors: &mut Vec<ConfigError>| {
        let found = backends.get(reference.get_ref().as_str()).copied();
        if found.is_none() {
            let mut defined: Vec<_> = backends.keys().copied().collect();
            defined.sort_unstable();
            errors.push(ConfigError::at(
                reference,
                format!(
                    "frontend `{name}` uses backend `{}`, which is not defined (defined: {})",
                    reference.get_ref(),
                    list_or_none(&defined)
                ),
            ));
        }
        found
    };

    if section.bind.get_ref().is_empty() {
        errors.push(ConfigError::at(&section.bind, format!(
            "frontend `{name}` has an empty `bind`: give at least one address, e.g. [\"0.0.0.0:80\"]"
        )));
    }

    let mut acls = HashMap::new();
    for (acl_name, expr) in &section.acl {
        match Acl::parse(expr.get_ref()) {
            Ok(acl) => {
                acls.insert(acl_name.clone(), Arc::new(acl));
            }
            Err(e) => errors.push(ConfigError::at(expr, format!("acl `{acl_name}`: {e}"))),
        }
    }

    let mut rules = Vec::new();
    for rule in &section.use_backend {
        let backend = resolve(&rule.backend, errors);
        let (text, negate) = match (&rule.if_, &rule.unless) {
            (Some(_), Some(unless)) => {
                errors.push(ConfigError::at(
                    unless,
                    "a use_backend rule takes `if` or `unless`, not both",
                ));
                continue;
            }
            (Some(cond), None) => (cond, false),
            (None, Some(cond)) => (cond, true),
            (None, None) => {
                errors.push(ConfigError::at(
                    &rule.backend,
                    "a use_backend rule needs `if` or `unless`; use `default_backend` for the rest",
                ));
                continue;
            }
        };
        let condition = match Condition::parse(text.get_ref(), &acls) {
            Ok(c) => c,
            Err(e) => {
                errors.push(ConfigError::at(text, format!("condition: {e}")));
                continue;
            }
        };
        if let Some(backend) = backend {
            rules.push(Rule {
                backend,
                condition,
                negate,
            });
        }
    }

    let mut returns = Vec::new();
    for rule in &section.returns {
        let (condition, negate) = match (&rule.if_, &rule.unless) {
            (Some(_), Some(unless)) => {
                errors.push(ConfigError::at(
                    unless,
                    "a return rule takes `if` or `unless`, not both",
                ));
                continue;
            }
            (Some(c), None) => (Some(c), false),
            (None, Some(c)) => (Some(c), true),
            (None, None) => (None, false),
        };
        let condition = match condition.map(|c| (c, Condition::parse(c.get_ref(), &acls))) {
            None => None,
            Some((_, Ok(c))) => Some(c),
            Some((text, Err(e))) => {
                errors.push(ConfigError::at(text, format!("condition: {e}")));
                continue;
            }
        };
        let status = match http::StatusCode::from_u16(*rule.status.get_ref()) {
            Ok(s) if (200..=599).contains(&s.as_u16()) => s,
            _ => {
                errors.push(ConfigError::at(&rule.status, "status must be 200..=599"));
                continue;
            }
        };
        if matches!(status.as_u16(), 204 | 304) && !rule.body.is_empty() {
            // Their responses end at the head: a body would be read as the start of the next
            // response on a kept-alive connection.
            errors.push(ConfigError::at(
                &rule.status,
                format!("a {} response has no body: remove `body`", status.as_u16()),
            ));
            continue;
        }
        let Ok(content_type) = http::HeaderValue::from_str(rule.content_type.get_ref()) else {
            errors.push(ConfigError::at(
                &rule.content_type,
                format!(
                    "content_type `{}` is not a valid header value",
                    rule.content_type.get_ref()
                ),
            ));
            continue;
        };
        returns.push(Return {
            condition,
            negate,
            status,
            content_type,
            body: bytes::Bytes::from(rule.body.clone()),
        });
    }

    let default_backend = section
        .default_backend
        .as_ref()
        .and_then(|d| resolve(d, errors));

    let tls = section.tls.as_ref().and_then(|tls| {
        let Some(first) = tls.certs.get_ref().first() else {
            errors.push(ConfigError::at(
                &tls.certs,
                format!("frontend `{name}`: `tls.certs` is empty; list at least one PEM file"),
            ));
            return None;
        };
        let paths: Vec<&Path> = tls
            .certs
            .get_ref()
            .iter()
            .map(|c| c.get_ref().as_path())
            .collect();
        let alpn: Vec<String> = tls.alpn.iter().map(|a| a.get_ref().clone()).collect();
        for proto in &tls.alpn {
            if !matches!(proto.get_ref().as_str(), "h2" | "http/1.1") {
                errors.push(ConfigError::at(
                    proto,
                    "ALPN protocols allowed: \"h2\", \"http/1.1\"",
                ));
            }
        }
        crate::tls::server_config(&paths, &alpn)
            .map_err(|(index, e)| {
                let at = tls.certs.get_ref().get(index).unwrap_or(first);
                errors.push(ConfigError::at(at, e));
            })
            .ok()
    });

    let max_connections = positive(section.max_connections.as_ref(), "max_connections", errors);
    Frontend {
        name: name.to_owned(),
        binds: section
            .bind
            .get_ref()
            .iter()
            .map(|b| *b.get_ref())
            .collect(),
        tls,
        returns,
        rules,
        default_backend,
        forward_for: section.forward_for,
        max_connections,
        timeout_client: section.timeout.client.get(),
        timeout_http_request: section.timeout.http_request.get(),
        timeout_keep_alive: section.timeout.keep_alive.get(),
    }
}

fn build_backend(name: &str, section: &BackendSection, errors: &mut Vec<ConfigError>) -> Backend {
    let algorithm = match &section.balance {
        None => Algorithm::RoundRobin,
        Some(text) => text.get_ref().parse().unwrap_or_else(|e| {
            errors.push(ConfigError::at(text, format!("{e}")));
            Algorithm::RoundRobin
        }),
    };
    let mut names = HashSet::new();
    let mut cookies = HashSet::new();
    let servers: Vec<Server> = section
        .servers
        .iter()
        .map(|s| {
            let server = build_server(s, errors);
            if !names.insert(server.name.clone()) {
                errors.push(ConfigError::at(
                    &s.name,
                    format!("backend `{name}` has two servers named `{}`", server.name),
                ));
            }
            if section.cookie.is_some() && !cookies.insert(server.cookie.clone()) {
                errors.push(ConfigError::at(
                    cookie_key(s),
                    format!(
                        "backend `{name}`: servers share the cookie value `{}`; give each its own `cookie`",
                        server.cookie
                    ),
                ));
            }
            server
        })
        .collect();
    let cookie = section.cookie.as_ref().map(|c| {
        let valid = !c.name.get_ref().is_empty()
            && c.name
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !valid {
            errors.push(ConfigError::at(
                &c.name,
                "cookie name must be a non-empty HTTP token",
            ));
        }
        if let Some(domain) = &c.domain
            && (domain.get_ref().is_empty() || !domain.get_ref().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            errors.push(ConfigError::at(domain, format!("cookie domain `{}` is not a domain name", domain.get_ref())));
        }
        if let Some(max_age) = &c.max_age
            && max_age.get_ref().get().as_secs() == 0
        {
            errors.push(ConfigError::at(max_age, "cookie max_age must be at least 1s (Max-Age=0 deletes the cookie)"));
        }
        for (server, section) in servers.iter().zip(&section.servers) {
            let value = &server.cookie;
            let ok = crate::l7::cookie::is_cookie_value(value) && !(c.mode == CookieMode::Prefix && value.contains('~'));
            if !ok {
                errors.push(ConfigError::at(
                    cookie_key(section),
                    format!("server `{}`: cookie value `{value}` cannot be sent in a cookie (no spaces, quotes, commas, semicolons or backslashes; no `~` with mode = \"prefix\")", server.name),
                ));
            }
        }
        Cookie {
            name: c.name.get_ref().clone(),
            mode: c.mode,
            nocache: c.nocache,
            indirect: c.indirect,
            httponly: c.httponly,
            secure: c.secure,
            domain: c.domain.as_ref().map(|d| d.get_ref().clone()),
            max_age: c.max_age.as_ref().map(|d| d.get_ref().get()),
        }
    });
    let check = section
        .health_check
        .as_ref()
        .and_then(|c| build_check(c, errors));
    let agent = (section.agent_check.as_ref()).map(|a| build_agent(a, errors));
    let agent_addrs = section.servers.iter().map(|s| s.agent_addr.as_ref());
    check_agent_addrs(agent.is_some(), agent_addrs, errors);
    if let Some(slow_start) = &section.slow_start
        && slow_start.get_ref().is_zero()
    {
        errors.push(ConfigError::at(
            slow_start,
            "slow_start must be longer than 0s (leave it out for none)",
        ));
    }
    // Static algorithms ignore it, as HAProxy's do: resolved here, not at every pick.
    let slow_start = (section.slow_start.as_ref())
        .filter(|_| algorithm.is_dynamic())
        .map(|s| s.get_ref().get());
    Backend {
        name: name.to_owned(),
        algorithm,
        cookie,
        check,
        agent,
        timeout_connect: section.timeout.connect.get(),
        timeout_server: section.timeout.server.get(),
        timeout_queue: section
            .timeout
            .queue
            .unwrap_or(section.timeout.connect)
            .get(),
        timeout_tunnel: section.timeout.tunnel.map(|t| t.get()),
        retries: section.retries,
        redispatch: section.redispatch,
        pool_max_idle: section.pool_max_idle as usize,
        slow_start,
        servers,
    }
}

fn build_server(section: &ServerSection, errors: &mut Vec<ConfigError>) -> Server {
    if !fulcrum_common::action::is_name(section.name.get_ref()) {
        errors.push(ConfigError::at(
            &section.name,
            format!(
                "`{}` cannot name a server: use letters, digits, `-`, `_`, `.` and `:` (`fulcrum ctl` and the stats page name it as backend/server)",
                section.name.get_ref()
            ),
        ));
    }
    let weight = *section.weight.get_ref();
    if weight > 256 {
        errors.push(ConfigError::at(&section.weight, "weight must be 0..=256"));
    }
    check_server_address(&section.address, "address", errors);
    Server {
        name: section.name.get_ref().clone(),
        addr: *section.address.get_ref(),
        weight: weight.min(256),
        cookie: section
            .cookie
            .as_ref()
            .map_or_else(|| section.name.get_ref().clone(), |c| c.get_ref().clone()),
        max_connections: positive(section.max_connections.as_ref(), "max_connections", errors)
            as u32,
        backup: section.backup,
        check: section.check,
        disabled: section.disabled,
        agent_addr: section.agent_addr.as_ref().map(|a| *a.get_ref()),
    }
}

/// `persistence_netmask`, as `ipvsadm -M` takes it: a dotted IPv4 netmask for IPv4 clients, a
/// prefix length for IPv6 ones; each only where the service has such clients.
fn build_granularity(section: &VirtualServerSection, errors: &mut Vec<ConfigError>) -> Granularity {
    let mut granularity = Granularity::default();
    let Some(text) = &section.persistence_netmask else {
        return granularity;
    };
    // An IPv4-mapped listen address has IPv4 clients, as the relay sees them.
    let listen = section.listen.get_ref().ip().to_canonical();
    let mut refuse = |message: &str| errors.push(ConfigError::at(text, message));
    if section.persistence.get().is_zero() {
        refuse("persistence_netmask needs persistence: without it no client is remembered");
    }
    let value = text.get_ref().trim();
    if let Ok(mask) = value.parse::<std::net::Ipv4Addr>() {
        let bits = u32::from(mask);
        let prefix = bits.leading_ones();
        if bits.checked_shl(prefix).unwrap_or(0) != 0 {
            refuse(
                "persistence_netmask is not a netmask: its one bits must come first (255.255.255.0)",
            );
        }
        if listen.is_ipv6() && !listen.is_unspecified() {
            refuse(
                "persistence_netmask: a dotted netmask is for IPv4 clients; an IPv6 service takes a prefix length (\"64\")",
            );
        }
        granularity.v4 = prefix as u8;
    } else if let Ok(prefix @ 1..=128) = value.parse::<u8>() {
        if listen.is_ipv4() {
            refuse(
                "persistence_netmask: an IPv4 service takes a dotted netmask (\"255.255.255.0\"), as ipvsadm -M does",
            );
        }
        granularity.v6 = prefix;
    } else {
        refuse(
            "persistence_netmask must be a dotted IPv4 netmask (\"255.255.255.0\") or an IPv6 prefix length (\"1\" to \"128\"), as ipvsadm -M takes",
        );
    }
    granularity
}

/// `agent_addr` on a server of a backend or virtual service without `agent_check`, where it
/// would be silently ignored.
fn check_agent_addrs<'a>(
    has_agent: bool,
    addrs: impl Iterator<Item = Option<&'a Spanned<IpAddr>>>,
    errors: &mut Vec<ConfigError>,
) {
    if has_agent {
        return;
    }
    for addr in addrs.flatten() {
        errors.push(ConfigError::at(
            addr,
            "agent_addr needs an agent_check: without one no agent is asked",
        ));
    }
}

fn build_check(section: &HealthCheckSection, errors: &mut Vec<ConfigError>) -> Option<Check> {
    let kind = *section.kind.get_ref();
    if kind == CheckKind::None {
        if let Some(observe) = &section.observe {
            errors.push(ConfigError::at(
                observe,
                "health_check.observe needs a health check, and type = \"none\" has none",
            ));
        }
        return None;
    }
    for (value, key) in [(&section.rise, "rise"), (&section.fall, "fall")] {
        if *value.get_ref() == 0 {
            errors.push(ConfigError::at(
                value,
                format!("health_check.{key} must be at least 1"),
            ));
        }
    }
    if section.interval.get_ref().is_zero() {
        errors.push(ConfigError::at(
            &section.interval,
            "health_check.interval must be longer than 0s",
        ));
    }
    for (value, key) in [
        (&section.fast_interval, "fast_interval"),
        (&section.down_interval, "down_interval"),
    ] {
        if let Some(value) = value
            && value.get_ref().is_zero()
        {
            errors.push(ConfigError::at(
                value,
                format!("health_check.{key} must be longer than 0s (leave it out to use interval)"),
            ));
        }
    }
    if let Some(timeout) = &section.timeout
        && timeout.get_ref().is_zero()
    {
        errors.push(ConfigError::at(
            timeout,
            "health_check.timeout must be longer than 0s (leave it out to use interval)",
        ));
    }
    let expect_status = match &section.expect_status {
        None => (200, 399),
        Some(text) => parse_status_range(text.get_ref()).unwrap_or_else(|| {
            errors.push(ConfigError::at(
                text,
                "expect_status must be a status code or an inclusive range, e.g. \"200\" or \"200-399\"",
            ));
            (200, 399)
        }),
    };
    check_probe_target(section, errors);
    if http::Method::from_bytes(section.method.get_ref().as_bytes()).is_err() {
        errors.push(ConfigError::at(
            &section.method,
            format!(
                "health_check.method `{}` is not an HTTP method",
                section.method.get_ref()
            ),
        ));
    }
    let command = check_command(section, errors);
    let (observe, error_limit, on_error) = check_observe(section, errors);
    Some(Check {
        kind,
        method: section.method.get_ref().clone(),
        path: section.path.get_ref().clone(),
        host: section.host.as_ref().map(|h| h.get_ref().clone()),
        expect_status,
        expect_body: section.expect_body.clone(),
        interval: section.interval.get_ref().get(),
        fast_interval: section
            .fast_interval
            .as_ref()
            .map_or(*section.interval.get_ref(), |i| *i.get_ref())
            .get(),
        down_interval: section
            .down_interval
            .as_ref()
            .map_or(*section.interval.get_ref(), |i| *i.get_ref())
            .get(),
        timeout: section
            .timeout
            .as_ref()
            .map_or(*section.interval.get_ref(), |t| *t.get_ref())
            .get(),
        rise: (*section.rise.get_ref()).max(1),
        fall: (*section.fall.get_ref()).max(1),
        port: section.port.as_ref().map(|p| *p.get_ref()),
        on_marked_down: section.on_marked_down,
        on_marked_up: section.on_marked_up,
        command,
        spread_percent: 0,
        observe,
        error_limit,
        on_error,
    })
}

/// `observe`, `error_limit` and `on_error`: the last two only with the first, where they
/// would otherwise be silently ignored.
fn check_observe(
    section: &HealthCheckSection,
    errors: &mut Vec<ConfigError>,
) -> (Option<Observe>, u32, OnError) {
    let observe = section.observe.as_ref().map(|o| *o.get_ref());
    if let Some(limit) = &section.error_limit
        && *limit.get_ref() == 0
    {
        errors.push(ConfigError::at(
            limit,
            "health_check.error_limit must be at least 1",
        ));
    }
    if observe.is_none() {
        let set = [
            section
                .error_limit
                .as_ref()
                .map(|v| (v.span(), "error_limit")),
            section.on_error.as_ref().map(|v| (v.span(), "on_error")),
        ];
        for (span, key) in set.into_iter().flatten() {
            errors.push(ConfigError::spanned(
                span,
                format!("health_check.{key} needs `observe = \"layer4\"` or `\"layer7\"`: without it no traffic is counted"),
            ));
        }
    }
    (
        observe,
        section
            .error_limit
            .as_ref()
            .map_or(DEFAULT_ERROR_LIMIT, |l| *l.get_ref()),
        section
            .on_error
            .as_ref()
            .map(|o| *o.get_ref())
            .unwrap_or_default(),
    )
}

/// An `agent_check`.
fn build_agent(section: &AgentCheckSection, errors: &mut Vec<ConfigError>) -> AgentCheck {
    if *section.port.get_ref() == 0 {
        errors.push(ConfigError::at(
            &section.port,
            "agent_check.port must be 1..=65535",
        ));
    }
    let interval = *section.interval.get_ref();
    for (value, key) in [
        (Some(&section.interval), "interval"),
        (section.timeout.as_ref(), "timeout"),
    ] {
        if let Some(value) = value
            && value.get_ref().is_zero()
        {
            errors.push(ConfigError::at(
                value,
                format!("agent_check.{key} must be longer than 0s"),
            ));
        }
    }
    AgentCheck {
        port: *section.port.get_ref(),
        interval: interval.get(),
        timeout: section
            .timeout
            .as_ref()
            .map_or(interval, |t| *t.get_ref())
            .get(),
        send: section.send.clone().unwrap_or_default(),
        spread_percent: 0,
    }
}

/// An `external` check's `command`, split into words as a shell would (the alert `command`
/// is split the same way); required with that type, and refused with the others, where it
/// would be silently ignored.
fn check_command(section: &HealthCheckSection, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let external = *section.kind.get_ref() == CheckKind::External;
    let Some(text) = &section.command else {
        if external {
            errors.push(ConfigError::at(
                &section.kind,
                "an external health check needs `command`: the program to run, e.g. command = \"/usr/local/bin/check_mysql\"",
            ));
        }
        return Vec::new();
    };
    if !external {
        errors.push(ConfigError::at(
            text,
            "health_check.command is only for type = \"external\"",
        ));
        return Vec::new();
    }
    match shell_words::split(text.get_ref()) {
        Ok(words) if !words.is_empty() => words,
        Ok(_) => {
            errors.push(ConfigError::at(
                text,
                "health_check.command is empty: name a program",
            ));
            Vec::new()
        }
        Err(e) => {
            errors.push(ConfigError::at(
                text,
                format!("cannot split health_check.command: {e}"),
            ));
            Vec::new()
        }
    }
}

/// The check's `path`, `host` and `port` go into the probe as they are: a path that is not an
/// origin-form target (no leading `/`, a space) would have every server answer 400 and be
/// marked DOWN, and a `host` with a line break would add header fields of its own.
fn check_probe_target(section: &HealthCheckSection, errors: &mut Vec<ConfigError>) {
    let path = section.path.get_ref();
    // `*` is the target of an `OPTIONS *` check, as the proxy accepts it from clients.
    let origin_form = path.starts_with('/') || path == "*";
    if !origin_form || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        errors.push(ConfigError::at(
            &section.path,
            format!(
                "health_check.path `{}` must start with `/` and hold no spaces or control characters",
                path.escape_debug()
            ),
        ));
    }
    if let Some(host) = &section.host
        && (host.get_ref().is_empty() || http::HeaderValue::from_str(host.get_ref()).is_err())
    {
        errors.push(ConfigError::at(
            host,
            "health_check.host must be a non-empty header value (no line breaks or control characters)",
        ));
    }
    if let Some(port) = &section.port
        && *port.get_ref() == 0
    {
        errors.push(ConfigError::at(port, "health_check.port must be 1..=65535"));
    }
}

/// A server's address must name one host and one port: not port 0, not `0.0.0.0` or `::`, not
/// a multicast group. Such an address was accepted, and every request to it failed.
/// Where a server's cookie value is written: its `cookie` key, or else its `name`, which is the
/// value then.
fn cookie_key(server: &ServerSection) -> &Spanned<String> {
    server.cookie.as_ref().unwrap_or(&server.name)
}

fn check_server_address(addr: &Spanned<SocketAddr>, key: &str, errors: &mut Vec<ConfigError>) {
    let a = addr.get_ref();
    let problem = if a.port() == 0 {
        "port 0"
    } else if a.ip().is_unspecified() {
        "an unspecified address"
    } else if a.ip().is_multicast() {
        "a multicast address"
    } else {
        return;
    };
    errors.push(ConfigError::at(
        addr,
        format!("{key} `{a}` has {problem}: it must name one host and one port"),
    ));
}

fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
        None => {
            let code = text.trim().parse().ok()?;
            (code, code)
        }
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

/// Reads an optional limit that must not be 0 (0 would refuse everything); unset means 0 = none.
fn positive(value: Option<&Spanned<u32>>, key: &str, errors: &mut Vec<ConfigError>) -> usize {
    match value {
        Some(v) if *v.get_ref() == 0 => {
            errors.push(ConfigError::at(
                v,
                format!("{key} must be at least 1 (leave it out for no limit)"),
            ));
            0
        }
        Some(v) => *v.get_ref() as usize,
        None => 0,
    }
}

/// No two listeners may share an address: TCP frontends and TCP virtual servers share the TCP
/// port space, UDP virtual servers have their own. Port 0 (pick a free port) never clashes.
fn check_unique_binds(
    frontends: &BTreeMap<String, FrontendSection>,
    virtual_servers: &BTreeMap<String, VirtualServerSection>,
    errors: &mut Vec<ConfigError>,
) {
    let mut seen: Vec<(SocketAddr, L4Protocol, String)> = Vec::new();
    let frontend_binds = frontends.iter().flat_map(|(name, section)| {
        section
            .bind
            .get_ref()
            .iter()
            .map(move |bind| (bind, L4Protocol::Tcp, format!("frontend `{name}`")))
    });
    let vs_binds = virtual_servers
        .iter()
        .map(|(name, vs)| (&vs.listen, vs.protocol, format!("virtual_server `{name}`")));
    for (bind, protocol, owner) in frontend_binds.chain(vs_binds) {
        let addr = *bind.get_ref();
        let clash = seen
            .iter()
            .find(|(other, p, _)| *p == protocol && binds_overlap(*other, addr));
        match clash {
            Some((other, _, by)) if *other == addr => errors.push(ConfigError::at(
                bind,
                format!("{addr} is bound by {by} and {owner}"),
            )),
            Some((other, _, by)) => errors.push(ConfigError::at(
                bind,
                format!(
                    "{addr} of {owner} overlaps {other} of {by}: a wildcard address takes its port on every address, so only one of them could listen"
                ),
            )),
            None => seen.push((addr, protocol, owner)),
        }
    }
}

fn build_virtual_server(
    name: &str,
    section: &VirtualServerSection,
    errors: &mut Vec<ConfigError>,
) -> VirtualServer {
    let scheduler = match &section.scheduler {
        None => Kind::Wlc,
        Some(text) => text.get_ref().parse().unwrap_or_else(|e| {
            errors.push(ConfigError::at(text, format!("{e}")));
            Kind::Wlc
        }),
    };
    let options = SchedOptions {
        fallback: section.scheduler_options.fallback,
        port: section.scheduler_options.port,
        mh_table_size: *section.scheduler_options.mh_table_size.get_ref(),
        ..SchedOptions::default()
    };
    if let Err(e) = Scheduler::new(scheduler, options) {
        errors.push(ConfigError::at(
            &section.scheduler_options.mh_table_size,
            format!("{e}"),
        ));
    }
    let mut seen = HashSet::new();
    let real_servers = section
        .real_servers
        .iter()
        .map(|rs| {
            let weight = *rs.weight.get_ref();
            if weight > 65_535 {
                errors.push(ConfigError::at(
                    &rs.weight,
                    "weight must be 0..=65535, as in IPVS",
                ));
            }
            check_server_address(&rs.address, "address", errors);
            if !seen.insert(*rs.address.get_ref()) {
                errors.push(ConfigError::at(
                    &rs.address,
                    format!(
                        "virtual_server `{name}` lists real server {} twice",
                        rs.address.get_ref()
                    ),
                ));
            }
            RealServer {
                addr: *rs.address.get_ref(),
                weight: weight.min(65_535),
                upper_threshold: rs.upper_threshold,
                agent_addr: rs.agent_addr.as_ref().map(|a| *a.get_ref()),
            }
        })
        .collect();
    if section.protocol == L4Protocol::Udp && *section.proxy_protocol.get_ref() == ProxyProtocol::V1
    {
        errors.push(ConfigError::at(
            &section.proxy_protocol,
            "PROXY protocol v1 is for TCP only; use \"v2\" or \"none\" with protocol = \"udp\"",
        ));
    }
    if let Some(fallback) = &section.fallback {
        check_server_address(fallback, "fallback", errors);
        // One address would be one server, in the table twice: its rows, counters and
        // metrics series doubled, and the fallback checked as the real server it is.
        if seen.contains(fallback.get_ref()) {
            errors.push(ConfigError::at(
                fallback,
                format!(
                    "fallback {} is also a real server of virtual_server `{name}`: the fallback \
                     answers while no real server is up, so give it an address of its own",
                    fallback.get_ref()
                ),
            ));
        }
    }
    if section.protocol == L4Protocol::Udp && section.listen.get_ref().ip().is_unspecified() {
        // A reply leaves a wildcard socket from whatever address the route picks, not the VIP
        // the client wrote to, and clients drop it.
        errors.push(ConfigError::at(
            &section.listen,
            "a UDP virtual_server listens on one address (the VIP), not a wildcard: its replies must come from the address the client sent to",
        ));
    }
    let check = section
        .health_check
        .as_ref()
        .and_then(|c| build_check(c, errors));
    if let Some(observe) = (section.health_check.as_ref()).and_then(|c| c.observe.as_ref()) {
        let refused = match (section.protocol, observe.get_ref()) {
            (L4Protocol::Udp, _) => Some("a UDP virtual service makes no connections to observe"),
            (L4Protocol::Tcp, Observe::Layer7) => Some(
                "health_check.observe = \"layer7\" is for backends: a virtual service relays bytes, not HTTP responses; use \"layer4\"",
            ),
            (L4Protocol::Tcp, Observe::Layer4) => None,
        };
        if let Some(message) = refused {
            errors.push(ConfigError::at(observe, message));
        }
    }
    let agent = (section.agent_check.as_ref()).map(|a| build_agent(a, errors));
    let agent_addrs = section.real_servers.iter().map(|rs| rs.agent_addr.as_ref());
    check_agent_addrs(agent.is_some(), agent_addrs, errors);
    VirtualServer {
        name: name.to_owned(),
        listen: *section.listen.get_ref(),
        protocol: section.protocol,
        scheduler,
        scheduler_options: options,
        persistence: section.persistence.get(),
        persistence_granularity: build_granularity(section, errors),
        quiescent: section.quiescent,
        proxy_protocol: *section.proxy_protocol.get_ref(),
        transparent: section.transparent,
        check,
        agent,
        timeout_connect: section.timeout.connect.get(),
        timeout_idle: match (section.timeout.idle, section.protocol) {
            (Some(idle), _) => idle.get(),
            (None, L4Protocol::Tcp) => std::time::Duration::from_secs(15 * 60),
            (None, L4Protocol::Udp) => std::time::Duration::from_secs(5 * 60),
        },
        fallback: section.fallback.as_ref().map(|f| *f.get_ref()),
        real_servers,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    /// Builds from `[frontend.*]`/`[backend.*]`/`[virtual_server.*]` TOML.
    fn built(text: &str) -> Result<Config, Vec<String>> {
        built_spread(text, 0)
    }

    /// [`built`] with `[global] spread_checks = spread`.
    fn built_spread(text: &str, spread: u32) -> Result<Config, Vec<String>> {
        build_text(text, spread).map_err(|errors| errors.into_iter().map(|e| e.message).collect())
    }

    /// Each error of building `text`, with the text its span covers.
    fn errors_at(text: &str) -> Vec<(String, String)> {
        let errors = build_text(text, 0).err().unwrap_or_default();
        errors
            .into_iter()
            .map(|e| {
                let at = e.span.and_then(|s| text.get(s)).unwrap_or_default();
                (e.message, at.to_owned())
            })
            .collect()
    }

    fn build_text(text: &str, spread: u32) -> Result<Config, Vec<ConfigError>> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            frontend: BTreeMap<String, FrontendSection>,
            #[serde(default)]
            backend: BTreeMap<String, BackendSection>,
            #[serde(default)]
            virtual_server: BTreeMap<String, VirtualServerSection>,
        }
        let file: File = toml::from_str(text).unwrap();
        let sections = Sections {
            frontend: file.frontend,
            backend: file.backend,
            virtual_server: file.virtual_server,
            spread_checks: spread,
            ..Sections::default()
        };
        build(&sections)
    }

    // Input: a cookie with a bad domain and a zero max_age, a server cookie value with a
    // space, two servers sharing a value, and PROXY v1 on UDP. Output: each error points at
    // the key that holds the mistake. (They pointed at the cookie's `name`, the server's
    // `name`, and `listen`.)
    #[test]
    fn errors_point_at_the_key_that_is_wrong() {
        let found = errors_at(
            r#"
[backend.web]
cookie = { name = "srv", mode = "insert", domain = "bad domain", max_age = "0s" }
servers = [
  { name = "s1", address = "10.0.0.2:80", cookie = "a b" },
  { name = "s2", address = "10.0.0.3:80", cookie = "same" },
  { name = "s3", address = "10.0.0.4:80", cookie = "same" },
]

[virtual_server.dns]
listen = "10.0.0.1:53"
protocol = "udp"
proxy_protocol = "v1"
real_servers = [{ address = "10.0.0.9:53" }]
"#,
        );
        for (message, at) in [
            ("cookie domain", "\"bad domain\""),
            ("max_age", "\"0s\""),
            ("cookie value `a b`", "\"a b\""),
            ("share the cookie value", "\"same\""),
            ("PROXY protocol v1", "\"v1\""),
        ] {
            assert!(
                found.iter().any(|(m, t)| m.contains(message) && t == at),
                "{message} at {at}: {found:#?}"
            );
        }
    }

    /// The error messages of building `text`; none when it is valid.
    fn errors(text: &str) -> Vec<String> {
        built(text).err().unwrap_or_default()
    }

    // Input: an agent check with only a port and `send`, one with an interval and a timeout,
    // and one with a port of 0 and a zero interval; a server's `agent_addr` without one; then
    // one on a virtual service, with `[global] spread_checks = 20`. Output: a 2 s interval,
    // `interval` as the timeout, and an error at each bad key and at the lone `agent_addr`; the
    // virtual service's agent, spread by 20 %.
    #[test]
    fn an_agent_check_defaults_to_two_seconds_and_refuses_zeros() {
        let with = |keys: &str| {
            format!(
                "[backend.app]\n{keys}\nservers = [{{ name = \"s1\", address = \"10.0.0.2:80\" }}]\n"
            )
        };
        let agent = |keys: &str| {
            let config = built(&with(keys)).unwrap();
            config.backends[0].agent.clone().unwrap()
        };
        let second = std::time::Duration::from_secs(1);
        let alone = agent(r#"agent_check = { port = 9999, send = "hello\n" }"#);
        assert_eq!(
            (
                alone.port,
                alone.send.as_str(),
                alone.interval,
                alone.timeout
            ),
            (9999, "hello\n", 2 * second, 2 * second)
        );
        let timed = agent(r#"agent_check = { port = 9999, interval = "5s", timeout = "1s" }"#);
        assert_eq!((timed.interval, timed.timeout), (5 * second, second));
        assert_eq!(
            errors(&with(r#"agent_check = { port = 0, interval = "0s" }"#)),
            [
                "agent_check.port must be 1..=65535",
                "agent_check.interval must be longer than 0s"
            ]
        );
        let addr_alone = "[backend.app]\nservers = [{ name = \"s1\", address = \"10.0.0.2:80\", agent_addr = \"10.0.1.2\" }]\n";
        assert_eq!(
            errors(addr_alone),
            ["agent_addr needs an agent_check: without one no agent is asked"]
        );
        let config = built_spread(
            "[virtual_server.db]\nlisten = \"10.0.0.1:3306\"\nagent_check = { port = 9999 }\nreal_servers = [{ address = \"10.0.0.2:3306\" }]\n",
            20,
        )
        .unwrap();
        let agent = config.virtual_servers[0].agent.as_ref().unwrap();
        assert_eq!((agent.port, agent.spread_percent), (9999, 20));
    }

    // Input: `observe` with and without `error_limit` and `on_error`; a limit of 0; the two
    // keys without `observe`; `observe = "layer7"` on a TCP virtual service and any `observe` on
    // a UDP one. Output: HAProxy's defaults (10, fastinter), the values given, and an error for
    // each of the rest.
    #[test]
    fn observe_takes_a_limit_and_an_action_and_only_where_it_counts() {
        let backend = |check: &str| {
            format!(
                "[backend.app]\nhealth_check = {check}\nservers = [{{ name = \"s1\", address = \"10.0.0.2:80\" }}]\n"
            )
        };
        let check = |text: &str| {
            built(&backend(text)).unwrap().backends[0]
                .check
                .clone()
                .unwrap()
        };
        let plain = check(r#"{ observe = "layer7" }"#);
        assert_eq!(
            (plain.observe, plain.error_limit, plain.on_error),
            (Some(Observe::Layer7), 10, OnError::Fastinter)
        );
        let set = check(r#"{ observe = "layer4", error_limit = 2, on_error = "sudden-death" }"#);
        assert_eq!(
            (set.observe, set.error_limit, set.on_error),
            (Some(Observe::Layer4), 2, OnError::SuddenDeath)
        );
        assert_eq!(
            errors(&backend(r#"{ observe = "layer7", error_limit = 0 }"#)),
            ["health_check.error_limit must be at least 1"]
        );
        let alone = errors(&backend(r#"{ error_limit = 5, on_error = "mark-down" }"#));
        assert_eq!(alone.len(), 2, "{alone:?}");
        assert!(
            alone.iter().all(|e| e.contains("needs `observe")),
            "{alone:?}"
        );
        assert_eq!(
            errors(&backend(r#"{ type = "none", observe = "layer7" }"#)),
            ["health_check.observe needs a health check, and type = \"none\" has none"]
        );
        let service = |protocol: &str, observe: &str| {
            format!(
                "[virtual_server.vs]\nlisten = \"10.0.0.1:53\"\nprotocol = \"{protocol}\"\nhealth_check = {{ observe = \"{observe}\" }}\nreal_servers = [{{ address = \"10.0.0.2:53\" }}]\n"
            )
        };
        assert_eq!(errors(&service("tcp", "layer4")), Vec::<String>::new());
        assert!(errors(&service("tcp", "layer7"))[0].contains("is for backends"));
        assert!(errors(&service("udp", "layer4"))[0].contains("no connections to observe"));
    }

    // Input: `persistence_netmask` as ipvsadm -M takes it: dotted for an IPv4 service, a prefix
    // length for an IPv6 one, both on a dual-stack one; then a mask with a hole, each form on
    // the other family's service, a bad value, and a netmask without persistence. Output: the
    // prefixes, and an error at the key for each of the rest.
    #[test]
    fn a_persistence_netmask_is_ipvsadms() {
        let service = |listen: &str, keys: &str| {
            format!(
                "[virtual_server.vs]\nlisten = \"{listen}\"\n{keys}\nreal_servers = [{{ address = \"10.0.0.2:80\" }}]\n"
            )
        };
        let with = |listen: &str, mask: &str| {
            service(
                listen,
                &format!("persistence = \"300s\"\npersistence_netmask = \"{mask}\""),
            )
        };
        let granularity =
            |text: &str| built(text).unwrap().virtual_servers[0].persistence_granularity;
        assert_eq!(
            granularity(&with("10.0.0.1:80", "255.255.255.0")),
            Granularity { v4: 24, v6: 128 }
        );
        assert_eq!(
            granularity(&with("[2001:db8::1]:80", "64")),
            Granularity { v4: 32, v6: 64 }
        );
        assert_eq!(
            granularity(&with("[::]:80", "255.255.0.0")),
            Granularity { v4: 16, v6: 128 }
        );
        // An IPv4-mapped address has IPv4 clients.
        assert_eq!(
            granularity(&with("[::ffff:10.0.0.1]:80", "255.255.255.0")),
            Granularity { v4: 24, v6: 128 }
        );
        for (listen, mask, expected) in [
            ("10.0.0.1:80", "255.0.255.0", "its one bits must come first"),
            (
                "[2001:db8::1]:80",
                "255.255.255.0",
                "an IPv6 service takes a prefix length",
            ),
            (
                "10.0.0.1:80",
                "24",
                "an IPv4 service takes a dotted netmask",
            ),
            ("[::]:80", "129", "must be a dotted IPv4 netmask"),
        ] {
            let found = errors(&with(listen, mask));
            assert!(
                found.len() == 1 && found[0].contains(expected),
                "{mask}: {found:?}"
            );
        }
        let alone = errors(&service(
            "10.0.0.1:80",
            "persistence_netmask = \"255.255.255.0\"",
        ));
        assert!(alone[0].contains("needs persistence"), "{alone:?}");
    }

    // Input: external checks with a command split as a shell would, without a command, with
    // an empty or unbalanced one, and a command on a tcp check. Output: the words, or an
    // error naming the key.
    #[test]
    fn an_external_check_needs_a_command_and_only_it_takes_one() {
        let with = |check: &str| {
            format!(
                "[virtual_server.db]\nlisten = \"10.0.0.1:3306\"\nhealth_check = {check}\nreal_servers = [{{ address = \"10.0.0.2:3306\" }}]\n"
            )
        };
        let config = built(&with(
            r#"{ type = "external", command = "/usr/local/bin/check_mysql --user 'mon itor'" }"#,
        ))
        .unwrap();
        let check = config.virtual_servers[0].check.as_ref().unwrap();
        assert_eq!(check.kind, CheckKind::External);
        assert_eq!(
            check.command,
            ["/usr/local/bin/check_mysql", "--user", "mon itor"]
        );
        for (check, expected) in [
            (
                r#"{ type = "external" }"#,
                "an external health check needs `command`",
            ),
            (
                r#"{ type = "external", command = " " }"#,
                "health_check.command is empty",
            ),
            (
                r#"{ type = "external", command = "check 'open" }"#,
                "cannot split health_check.command",
            ),
            (
                r#"{ type = "tcp", command = "/bin/true" }"#,
                "health_check.command is only for type = \"external\"",
            ),
        ] {
            let errors = errors(&with(check));
            assert!(
                errors.len() == 1 && errors[0].contains(expected),
                "{check}: {errors:?}"
            );
        }
    }

    #[test]
    fn a_virtual_server_is_built_with_ipvsadm_defaults() {
        let config = built(
            r#"
[virtual_server.web]
listen = "10.10.60.22:80"
health_check = { type = "http", path = "/test.html", expect_body = "Test Page", interval = "1s", timeout = "3s", rise = 1, fall = 1 }
fallback = "127.0.0.1:8081"
real_servers = [{ address = "192.168.60.78:80" }, { address = "192.168.60.55:80", weight = 3 }]
"#,
        )
        .unwrap();
        let vs = &config.virtual_servers[0];
        assert_eq!(vs.scheduler, Kind::Wlc, "wlc by default, as ipvsadm");
        assert!(vs.quiescent);
        assert_eq!(vs.protocol, L4Protocol::Tcp);
        assert_eq!(vs.proxy_protocol, ProxyProtocol::None);
        assert_eq!(vs.persistence, std::time::Duration::ZERO);
        assert_eq!(vs.real_servers[1].weight, 3);
        assert_eq!(
            vs.check.as_ref().unwrap().expect_body.as_deref(),
            Some("Test Page")
        );
        assert_eq!(vs.fallback, Some("127.0.0.1:8081".parse().unwrap()));
        assert_eq!(vs.timeout_idle, std::time::Duration::from_secs(900));
        let check = vs.check.as_ref().unwrap();
        let second = std::time::Duration::from_secs(1);
        assert_eq!(
            (check.fast_interval, check.down_interval),
            (second, second),
            "interval, as HAProxy's fastinter and downinter default to inter"
        );
        let config = built(
            "[backend.app]\nhealth_check = { interval = \"10s\", fast_interval = \"500ms\", down_interval = \"1m\" }\nservers = [{ name = \"a\", address = \"10.0.0.1:80\" }]\n",
        )
        .unwrap();
        let check = config.backends[0].check.as_ref().unwrap();
        assert_eq!(
            (check.interval, check.fast_interval, check.down_interval),
            (
                10 * second,
                std::time::Duration::from_millis(500),
                60 * second
            )
        );
    }

    // Input: a UDP virtual server without `timeout.idle`, and one with it. Output: 300 s, as
    // IPVS's UDP timeout (`ipvsadm --set` 900 120 300), and the value given. (UDP flows took the
    // TCP default of 15 minutes, each holding a socket and a slot of max_connections.)
    #[test]
    fn a_udp_virtual_server_idles_out_after_ipvs_udp_timeout() {
        let udp = |timeout: &str| {
            built(&format!(
                "[virtual_server.dns]\nlisten = \"10.0.0.1:53\"\nprotocol = \"udp\"\n{timeout}\n\
                 real_servers = [{{ address = \"10.0.0.2:53\" }}]\n"
            ))
            .unwrap()
            .virtual_servers[0]
                .timeout_idle
        };
        assert_eq!(udp(""), std::time::Duration::from_secs(300));
        assert_eq!(
            udp("timeout = { idle = \"30s\" }"),
            std::time::Duration::from_secs(30)
        );
    }

    #[test]
    fn virtual_server_mistakes_are_errors() {
        let errs = errors(
            r#"
[frontend.main]
bind = ["10.0.0.1:80"]

[virtual_server.a]
listen = "10.0.0.1:80"
scheduler = "fastest"
scheduler_options = { mh_table_size = 100 }
real_servers = [{ address = "10.0.0.2:80", weight = 70000 }, { address = "10.0.0.2:80" }]

[virtual_server.dns]
listen = "10.0.0.1:53"
protocol = "udp"
proxy_protocol = "v1"
real_servers = []

[backend.web]
servers = [{ name = "a", address = "10.0.0.3:80" }]

[virtual_server.web]
listen = "10.0.0.1:8080"
real_servers = [{ address = "10.0.0.3:80" }]

[frontend.any]
bind = ["0.0.0.0:8081"]

[frontend.specific]
bind = ["10.0.0.1:8081"]

[frontend.dual]
bind = ["[::]:9090"]

[frontend.v4]
bind = ["0.0.0.0:9090"]

[virtual_server.syslog]
listen = "0.0.0.0:514"
protocol = "udp"
real_servers = [{ address = "10.0.0.9:514" }]
"#,
        );
        for expected in [
            "is bound by frontend `main` and virtual_server `a`",
            "fastest",
            "weight must be 0..=65535",
            "lists real server 10.0.0.2:80 twice",
            "PROXY protocol v1 is for TCP only",
            "virtual_server `web` has the name of a backend",
            "10.0.0.1:8081 of frontend `specific` overlaps 0.0.0.0:8081 of frontend `any`",
            "0.0.0.0:9090 of frontend `v4` overlaps [::]:9090 of frontend `dual`",
            "a UDP virtual_server listens on one address",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(expected)),
                "{expected}: {errs:#?}"
            );
        }
    }

    #[test]
    fn on_marked_down_and_up_take_haproxys_actions() {
        let config = built(
            "[backend.app]\nhealth_check = { on_marked_down = \"shutdown-sessions\", on_marked_up = \"shutdown-backup-sessions\" }\nservers = [{ name = \"a\", address = \"10.0.0.1:80\" }]\n",
        )
        .unwrap();
        let check = config.backends[0].check.as_ref().unwrap();
        assert_eq!(
            check.on_marked_down,
            Some(super::super::OnMarkedDown::ShutdownSessions)
        );
        assert_eq!(
            check.on_marked_up,
            Some(super::super::OnMarkedUp::ShutdownBackupSessions)
        );
        let err = toml::from_str::<BackendSection>(
            "health_check = { on_marked_down = \"shutdown\" }\nservers = []\n",
        )
        .unwrap_err();
        assert!(
            err.message().contains("`shutdown-sessions`"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn slow_start_holds_only_for_a_dynamic_algorithm() {
        let slow_start = |balance: &str| {
            built(&format!(
                "[backend.app]\nbalance = \"{balance}\"\nslow_start = \"10s\"\nservers = [{{ name = \"a\", address = \"10.0.0.1:80\" }}]\n"
            ))
            .unwrap()
            .backends[0]
                .slow_start
        };
        assert_eq!(
            slow_start("leastconn"),
            Some(std::time::Duration::from_secs(10))
        );
        assert_eq!(slow_start("static-rr"), None, "static algorithms ignore it");
    }

    #[test]
    fn impossible_values_are_errors() {
        let errs = errors(
            r#"
[backend.web]
slow_start = "0s"
health_check = { type = "http", interval = "0s", fast_interval = "0s", down_interval = "0s", timeout = "0s", rise = 0, method = "G E T", expect_status = "600" }
servers = [
  { name = "a", address = "127.0.0.1:1", weight = 300, max_connections = 0 },
  { name = "a", address = "127.0.0.1:2" },
]
"#,
        );
        for expected in [
            "interval must be longer than 0s",
            "health_check.fast_interval must be longer than 0s",
            "health_check.down_interval must be longer than 0s",
            "slow_start must be longer than 0s",
            "timeout must be longer than 0s",
            "rise must be at least 1",
            "is not an HTTP method",
            "expect_status must be",
            "weight must be 0..=256",
            "max_connections must be at least 1",
            "two servers named `a`",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(expected)),
                "{expected}: {errs:#?}"
            );
        }
    }

    #[test]
    fn addresses_and_probes_that_cannot_work_are_errors() {
        let errs = errors(
            r#"
[backend.web]
health_check = { type = "http", path = "health", host = "x\r\nX-Injected: 1", port = 0 }
servers = [
  { name = "zero", address = "10.0.0.1:0" },
  { name = "any", address = "0.0.0.0:80" },
  { name = "group", address = "[ff02::1]:80" },
]

[virtual_server.db]
listen = "10.0.0.1:3306"
fallback = "127.0.0.1:0"
real_servers = [{ address = "[::]:3306" }]

[virtual_server.mail]
listen = "10.0.0.1:25"
fallback = "10.0.0.5:25"
real_servers = [{ address = "10.0.0.5:25" }]
"#,
        );
        for expected in [
            "health_check.path `health` must start with `/`",
            "health_check.host must be a non-empty header value",
            "health_check.port must be 1..=65535",
            "address `10.0.0.1:0` has port 0",
            "address `0.0.0.0:80` has an unspecified address",
            "address `[ff02::1]:80` has a multicast address",
            "fallback `127.0.0.1:0` has port 0",
            "address `[::]:3306` has an unspecified address",
            "fallback 10.0.0.5:25 is also a real server of virtual_server `mail`",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(expected)),
                "{expected}: {errs:#?}"
            );
        }
        assert!(
            errors("[backend.web]\nhealth_check = { type = \"http\", path = \"/a?b=1\", host = \"example.com\", port = 8080 }\nservers = [{ name = \"a\", address = \"10.0.0.1:80\" }]\n").is_empty(),
            "a sound probe is refused"
        );
        assert!(
            errors("[backend.web]\nhealth_check = { type = \"http\", method = \"OPTIONS\", path = \"*\" }\nservers = [{ name = \"a\", address = \"10.0.0.1:80\" }]\n").is_empty(),
            "OPTIONS * is refused"
        );
    }

    #[test]
    fn cookie_settings_that_cannot_work_are_errors() {
        let errs = errors(
            r#"
[backend.web]
cookie = { name = "srv", mode = "prefix", domain = "bad domain", max_age = "0s" }
servers = [{ name = "a", address = "127.0.0.1:1", cookie = "x~y" }, { name = "b", address = "127.0.0.1:2", cookie = "has space" }]
"#,
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs.iter().any(|e| e.contains("not a domain name")));
        assert!(errs.iter().any(|e| e.contains("Max-Age=0")));
        assert!(errs.iter().any(|e| e.contains("`x~y` cannot be sent")));
        assert!(
            errs.iter()
                .any(|e| e.contains("`has space` cannot be sent"))
        );
    }

    #[test]
    fn frontend_errors_name_what_is_allowed() {
        let errs = errors(
            r#"
[frontend.main]
bind = []
acl.a = "paht /x"
use_backend = [{ backend = "web", if = "a b" }, { backend = "nope", if = "TRUE" }]
return = [{ if = "TRUE", status = 700 }]
default_backend = "web"

[backend.web]
balance = "fastest"
servers = []
"#,
        );
        assert!(errs.iter().any(|e| e.contains("empty `bind`")), "{errs:#?}");
        assert!(
            errs.iter()
                .any(|e| e.contains("acl `a`") && e.contains("paht")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("`nope`, which is not defined (defined: web)")),
            "{errs:#?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("status must be 200..=599")),
            "{errs:#?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("roundrobin")),
            "the balance error lists the algorithms: {errs:#?}"
        );
    }

    // Input: `return` rules of status 204 and 304 with a body, and a 204 without one. Output:
    // the first two refused, the third accepted. (The body went out after the head, and a
    // kept-alive client read it as the start of the next response.)
    #[test]
    fn a_204_or_304_return_rule_may_not_have_a_body() {
        let config = |rules: &str| {
            format!(
                "[frontend.main]\nbind = [\"127.0.0.1:0\"]\nreturn = [{rules}]\ndefault_backend = \"web\"\n\n\
                 [backend.web]\nservers = [{{ name = \"s1\", address = \"127.0.0.1:8081\" }}]\n"
            )
        };
        let errs = errors(&config(
            r#"{ if = "TRUE", status = 204, body = "x" }, { if = "TRUE", status = 304, body = "y" }"#,
        ));
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs.iter().all(|e| e.contains("has no body")), "{errs:#?}");
        assert!(errors(&config(r#"{ if = "TRUE", status = 204 }"#)).is_empty());
    }
}
