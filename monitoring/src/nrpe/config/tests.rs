//! `[nrpe]` checks: defaults, and every refusal reported at its key.

#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;

/// A span no default uses, to see which key an error points at.
fn at<T>(span: usize, value: T) -> Spanned<T> {
    Spanned::new(span..span + 1, value)
}

fn section() -> NrpeSection {
    NrpeSection {
        listen: at(1, "127.0.0.1:5666".parse().unwrap()),
        allowed_hosts: default_allowed_hosts(),
        tls: None,
        allow_arguments: false,
        command_timeout: default_command_timeout(),
        connection_timeout: default_connection_timeout(),
        command: BTreeMap::new(),
    }
}

fn with_command(mut section: NrpeSection, span: usize, name: &str, line: &str) -> NrpeSection {
    section
        .command
        .insert(at(span, name.to_owned()), at(span + 1000, line.to_owned()));
    section
}

fn errors(section: &NrpeSection) -> Vec<(Option<std::ops::Range<usize>>, String)> {
    section
        .build()
        .unwrap_err()
        .into_iter()
        .map(|e| (e.span, e.message))
        .collect()
}

#[test]
fn defaults_are_nrpes() {
    let config = with_command(
        section(),
        10,
        "check_users",
        "/usr/lib/nagios/plugins/check_users -w 5 -c 10",
    )
    .build()
    .unwrap();
    assert_eq!(
        config.allowed_hosts,
        [
            "127.0.0.1/32".parse::<IpNet>().unwrap(),
            "::1/128".parse().unwrap()
        ]
    );
    assert!(!config.allow_arguments);
    assert_eq!(config.command_timeout, time::Duration::from_secs(60));
    assert_eq!(config.connection_timeout, time::Duration::from_secs(300));
    assert_eq!(
        config.commands["check_users"].line(),
        "/usr/lib/nagios/plugins/check_users -w 5 -c 10"
    );
    assert!(config.tls.is_none());
}

#[test]
fn hosts_are_addresses_or_networks() {
    let mut s = section();
    s.allowed_hosts = at(
        9,
        vec![
            at(1, "10.1.2.3/8".into()),
            at(2, "2001:db8::1".into()),
            at(3, "nagios.example".into()),
            at(4, "10.0.0.0/33".into()),
        ],
    );
    let found = errors(&s);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, Some(3..4));
    assert!(
        found[0]
            .1
            .contains("`nagios.example` is neither an IP address nor a network"),
        "{}",
        found[0].1
    );
    assert_eq!(found[1].0, Some(4..5));
    s.allowed_hosts.get_mut().truncate(2);
    // A network written with host bits is read as its network.
    assert_eq!(
        s.build().unwrap().allowed_hosts[0],
        "10.0.0.0/8".parse::<IpNet>().unwrap()
    );
    s.allowed_hosts.get_mut().clear();
    let empty = errors(&s);
    assert_eq!(empty[0].0, Some(9..10), "at the key's value, not FILE:0:0");
    assert!(empty[0].1.contains("`allowed_hosts` is empty"), "{empty:?}");
}

#[test]
fn timeouts_must_be_positive() {
    let mut s = section();
    s.command_timeout = at(5, Duration::from_secs(0));
    s.connection_timeout = at(6, Duration::from_secs(0));
    let errors = errors(&s);
    assert_eq!(
        errors[0],
        (Some(5..6), "`command_timeout` must be more than 0s".into())
    );
    assert_eq!(
        errors[1],
        (
            Some(6..7),
            "`connection_timeout` must be more than 0s".into()
        )
    );
}

#[test]
fn command_errors_point_at_their_key() {
    let s = [
        (10, "empty", ""),
        (20, "quotes", "/bin/echo 'open"),
        (30, "bad!name", "/bin/true"),
        (40, "_NRPE_CHECK", "/bin/true"),
        (50, "args", "/bin/echo $ARG1$"),
        (60, "range", "/bin/echo $ARG17$"),
        (70, "fine", "/bin/true"),
    ]
    .into_iter()
    .fold(section(), |s, (span, name, line)| {
        with_command(s, span, name, line)
    });
    let mut errors = errors(&s);
    errors.sort_by_key(|(span, _)| span.as_ref().map(|s| s.start));
    let spans: Vec<_> = errors
        .iter()
        .map(|(span, _)| span.clone().unwrap().start)
        .collect();
    assert_eq!(spans, [10, 20, 30, 40, 50, 60], "{errors:?}");
    let text = errors
        .iter()
        .map(|(_, m)| m.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for wanted in [
        "command `empty`: the command line is empty",
        "command `quotes`: cannot split it into words",
        "command `bad!name` can never be asked for",
        "`_NRPE_CHECK` is NRPE's version query",
        "command `args` uses `$ARGn$`, but `allow_arguments` is off",
        "command `range`: `$ARG17$`: arguments go from `$ARG1$` to `$ARG16$`",
    ] {
        assert!(text.contains(wanted), "{wanted:?} not in\n{text}");
    }
}

#[test]
fn arguments_allowed_lets_macros_in() {
    let mut s = with_command(section(), 10, "args", "/bin/echo $ARG1$");
    s.allow_arguments = true;
    assert!(s.build().unwrap().commands["args"].uses_arguments());
}

#[test]
fn tls_files_are_checked() {
    let mut s = section();
    s.tls = Some(NrpeTlsSection {
        cert: at(7, PathBuf::from("/nonexistent/nrpe.pem")),
        key: at(8, PathBuf::from("/nonexistent/nrpe.key")),
    });
    let errors = errors(&s);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, Some(7..8));
    assert!(
        errors[0]
            .1
            .starts_with("NRPE TLS certificate /nonexistent/nrpe.pem: cannot read it"),
        "{}",
        errors[0].1
    );
}
