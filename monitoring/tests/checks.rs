//! The built-in checks against this machine and real peers: their states compared with the
//! monitoring-plugins they copy (run on the same machine with the same thresholds), `tcp` and
//! `http` against listeners started here, and every output's perfdata read by a parser written
//! from the Nagios plugin guidelines.
//!
//! The plugins (Debian's `monitoring-plugins-basic`, in /usr/lib/nagios/plugins) are required
//! in CI (`CI` set); elsewhere a missing plugin skips its comparison with a message.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;

use fulcrum_common::stats::{
    ProxyKind, ProxyStats, Row, RowKind, Snapshot, SyncSet, Volume, VrrpInstance,
};
use fulcrum_monitoring::checks::{Builtin, Outcome, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PLUGINS: &str = "/usr/lib/nagios/plugins";

fn args(line: &str) -> Vec<String> {
    line.split(' ').map(str::to_owned).collect()
}

/// Parses and runs `line` (`load -w 1 -c 2`) against `snapshot`, and checks its perfdata.
async fn run_with(line: &str, snapshot: Snapshot) -> Outcome {
    let check = Builtin::parse(&args(line)).unwrap();
    let out = check.run(&move || snapshot.clone()).await;
    assert!(
        out.output.starts_with(&format!("{} ", prefix(line))),
        "{line}: {}",
        out.output
    );
    assert!(!out.output.contains('\n'), "{line}: {}", out.output);
    if let Some((_, perf)) = out.output.split_once('|')
        && let Err(why) = perfdata::parse(perf)
    {
        panic!("{line}: bad perfdata `{perf}`: {why}");
    }
    out
}

async fn run(line: &str) -> Outcome {
    run_with(line, Snapshot::default()).await
}

/// The word a check's output starts with (`LOAD` for `load`).
fn prefix(line: &str) -> String {
    let name = line.split(' ').next().unwrap();
    name.strip_prefix("check_")
        .unwrap_or(name)
        .to_ascii_uppercase()
}

/// Runs the real plugin `name` with `line`'s options; `None` (with a message) when it is not
/// installed outside CI.
async fn real(name: &str, options: &str) -> Option<(State, String)> {
    let path = Path::new(PLUGINS).join(name);
    if !path.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is required in CI (monitoring-plugins-basic)",
            path.display()
        );
        eprintln!("skipped: {} is not installed", path.display());
        return None;
    }
    let out = tokio::process::Command::new(&path)
        .args(options.split(' ').filter(|a| !a.is_empty()))
        .output()
        .await
        .unwrap();
    let state = match out.status.code() {
        Some(0) => State::Ok,
        Some(1) => State::Warning,
        Some(2) => State::Critical,
        _ => State::Unknown,
    };
    Some((state, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Runs ours and the real plugin with the same options and compares their states.
async fn same_state(check: &str, options: &str) -> Option<(Outcome, String)> {
    let line = format!("{check} {options}");
    let ours = run(line.trim_end()).await;
    let (state, text) = real(&format!("check_{check}"), options).await?;
    assert_eq!(
        ours.state, state,
        "{check} {options}:\n ours: {}\n real: {text}",
        ours.output
    );
    Some((ours, text))
}

#[tokio::test]
async fn load_as_check_load() {
    if let Some((ours, real)) = same_state("load", "-w 1000 -c 2000").await {
        assert_eq!(ours.state, State::Ok);
        assert!(real.starts_with("LOAD OK - total load average: "), "{real}");
    }
    same_state("load", "-r -w 1000,1000,1000 -c 2000").await;
    same_state("load", "-r -w 1000,1000 -c 2000,3000").await;
}

#[tokio::test]
async fn disk_as_check_disk() {
    same_state("disk", "-w 1 -c 1 -u MB -p /").await;
    // Absurd amounts: less than that is free anywhere.
    let Some((ours, real)) = same_state("disk", "-w 1000000000 -c 1000000000 -p /").await else {
        return;
    };
    assert_eq!(ours.state, State::Critical);
    // The same percentages of free space and inodes, rounded the same way.
    let shares = |text: &str| {
        let at = text.find(" (").unwrap();
        text[at..].split(')').next().unwrap().to_owned()
    };
    assert_eq!(
        shares(&ours.output),
        shares(&real),
        "{}\n{real}",
        ours.output
    );
    same_state("disk", "-w 100% -c 100% -p /").await;
    let out = run("disk -w 10% -c 5% -p /nonexistent").await;
    assert_eq!(out.state, State::Critical);
    assert_eq!(
        out.output,
        "DISK CRITICAL - /nonexistent is not accessible: No such file or directory"
    );
}

#[tokio::test]
async fn swap_as_check_swap() {
    same_state("swap", "-w 20% -c 10%").await;
    same_state("swap", "-w 90% -c 50%").await;
    same_state("swap", "-w 1000 -c 10").await;
}

#[tokio::test]
async fn procs_as_check_procs() {
    let Some((ours, _)) = same_state("procs", "-w 100000 -c 200000").await else {
        return;
    };
    assert_eq!(ours.state, State::Ok);
    same_state("procs", "-w 1: -c 1: -C no-such-command").await;
    same_state("procs", "-c @0:100000").await;
}

#[tokio::test]
async fn users_as_check_users() {
    same_state("users", "-w 1000 -c 2000").await;
    same_state("users", "-w @0:1000 -c 2000").await;
    same_state("users", "-w 0 -c 0").await;
}

/// Accepts connections on a port of its own; each answers `greeting` then waits for the
/// client to close (or says nothing, for an empty greeting).
async fn banner_server(greeting: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(greeting).await;
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_against_a_listener() {
    let port = banner_server(b"SSH-2.0-Fulcrum\r\n").await;
    let out = run(&format!("tcp -H 127.0.0.1 -p {port}")).await;
    assert_eq!(out.state, State::Ok);
    assert!(out.output.starts_with("TCP OK - 0.0"), "{}", out.output);
    assert!(out.output.contains(&format!(
        " second response time on 127.0.0.1 port {port}|time="
    )));
    let out = run(&format!("tcp -H 127.0.0.1 -p {port} -e SSH-")).await;
    assert_eq!(out.state, State::Ok);
    assert!(out.output.contains("[SSH-2.0-Fulcrum]|"), "{}", out.output);
    let out = run(&format!("tcp -H 127.0.0.1 -p {port} -e HTTP -M crit")).await;
    assert_eq!(out.state, State::Critical);
    assert!(
        out.output
            .starts_with("TCP CRITICAL - Unexpected response from host/socket: SSH-2.0-Fulcrum|")
    );
    let closed = closed_port();
    let out = run(&format!("tcp -H 127.0.0.1 -p {closed}")).await;
    assert_eq!(out.state, State::Critical);
    assert_eq!(
        out.output,
        format!(
            "TCP CRITICAL - connect to address 127.0.0.1 and port {closed}: Connection refused"
        )
    );
    // Silent server, an expectation: the timeout ends it.
    let silent = banner_server(b"").await;
    let out = run(&format!("tcp -H 127.0.0.1 -p {silent} -e x -t 0.5")).await;
    assert_eq!(
        out.output,
        "TCP CRITICAL - Socket timeout after 0.5 seconds"
    );
    // The same states as check_tcp.
    same_state("tcp", &format!("-H 127.0.0.1 -p {port}")).await;
    same_state("tcp", &format!("-H 127.0.0.1 -p {port} -e SSH-")).await;
    same_state("tcp", &format!("-H 127.0.0.1 -p {port} -e nope")).await;
    same_state("tcp", &format!("-H 127.0.0.1 -p {closed}")).await;
}

/// An HTTP server with a few pages: `/` (200, plain), `/chunked` (200, chunked), `/redirect`
/// (302), `/error` (503), anything else 404. HTTP/1.0 answers for HTTP/1.0 requests, as
/// check_http sends them.
async fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
                let version = if request.contains("HTTP/1.0\r\n") {
                    "1.0"
                } else {
                    "1.1"
                };
                let body = "<html>hello fulcrum</html>\n";
                let response = match path.as_str() {
                    "/" => format!(
                        "HTTP/{version} 200 OK\r\nContent-Type: text/html\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                    "/chunked" if version == "1.1" => format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                         {:x}\r\n{body}\r\n0\r\n\r\n",
                        body.len()
                    ),
                    "/redirect" => format!(
                        "HTTP/{version} 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n"
                    ),
                    "/error" => format!(
                        "HTTP/{version} 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown"
                    ),
                    _ => format!(
                        "HTTP/{version} 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
                    ),
                };
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_against_a_server() {
    let port = http_server().await;
    let base = format!("http -H 127.0.0.1 -p {port}");
    let out = run(&base).await;
    assert_eq!(out.state, State::Ok);
    assert!(
        out.output
            .starts_with("HTTP OK: HTTP/1.1 200 OK - 91 bytes in 0.0"),
        "{}",
        out.output
    );
    assert!(out.output.contains(" second response time |time="));
    assert!(out.output.ends_with(";;;0.000000;10.000000 size=91B;;;0"));
    assert_eq!(run(&format!("{base} -s fulcrum")).await.state, State::Ok);
    assert_eq!(
        run(&format!("{base} -u /chunked -s fulcrum")).await.state,
        State::Ok
    );
    let out = run(&format!("{base} -s nothere")).await;
    assert_eq!(out.state, State::Critical);
    assert!(out.output.starts_with(&format!(
        "HTTP CRITICAL: HTTP/1.1 200 OK - string 'nothere' not found on \
         'http://127.0.0.1:{port}/' - 91 bytes in "
    )));
    assert_eq!(run(&format!("{base} -u /redirect")).await.state, State::Ok);
    assert_eq!(
        run(&format!("{base} -u /missing")).await.state,
        State::Warning
    );
    assert_eq!(
        run(&format!("{base} -u /error")).await.state,
        State::Critical
    );
    assert_eq!(
        run(&format!("{base} -u /missing -e 404,200")).await.state,
        State::Ok
    );
    let out = run(&format!("{base} -e 404")).await;
    assert_eq!(
        out.output,
        format!(
            "HTTP CRITICAL - Invalid HTTP response received from host on port {port}: HTTP/1.1 200 OK"
        )
    );
    let closed = closed_port();
    let out = run(&format!("http -I 127.0.0.1 -p {closed}")).await;
    assert_eq!(out.state, State::Critical);
    assert_eq!(
        out.output,
        format!(
            "HTTP CRITICAL - Unable to open TCP socket (connect to address 127.0.0.1 and port \
             {closed}: Connection refused)"
        )
    );
    let silent = banner_server(b"").await;
    let out = run(&format!("http -H 127.0.0.1 -p {silent} -t 0.5")).await;
    assert_eq!(
        out.output,
        "HTTP CRITICAL - Socket timeout after 0.5 seconds"
    );
    // Not HTTP, and no end of headers ever: the timeout ends it.
    let ssh = banner_server(b"SSH-2.0-x\r\n").await;
    let out = run(&format!("http -H 127.0.0.1 -p {ssh} -t 0.5")).await;
    assert_eq!(out.state, State::Critical);
    // The same states as check_http on the same pages.
    for options in [
        "",
        " -s fulcrum",
        " -s nothere",
        " -u /redirect",
        " -u /missing",
        " -u /error",
        " -u /missing -e 404,200",
        " -e 404",
    ] {
        same_state("http", &format!("-H 127.0.0.1 -p {port}{options}")).await;
    }
    same_state("http", &format!("-H 127.0.0.1 -p {closed}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_size_as_check_http() {
    // The page counted whole, headers included, by both.
    let port = http_server().await;
    let Some((_, real)) = real("check_http", &format!("-H 127.0.0.1 -p {port}")).await else {
        return;
    };
    assert!(real.contains(" - 91 bytes in "), "{real}");
}

fn appliance() -> Snapshot {
    let server = |px: &str, sv: &str, status: &str| {
        let mut row = Row::new(px, sv, RowKind::Server);
        row.status = status.to_owned();
        row
    };
    Snapshot {
        proxies: vec![
            ProxyStats {
                name: "web servers".to_owned(),
                kind: ProxyKind::Backend,
                mode: "http".to_owned(),
                rows: vec![
                    server("web servers", "s1", "UP"),
                    server("web servers", "s2", "DOWN 1/2"),
                    Row::new("web servers", "BACKEND", RowKind::Backend),
                ],
            },
            ProxyStats {
                name: "it's=odd".to_owned(),
                kind: ProxyKind::VirtualService,
                mode: "tcp".to_owned(),
                rows: vec![server("it's=odd", "10.0.0.1:80", "UP 2/3")],
            },
        ],
        vrrp: vec![VrrpInstance {
            name: "VI_1".to_owned(),
            state: "MASTER".to_owned(),
            ..VrrpInstance::default()
        }],
        volumes: vec![Volume {
            name: "nfs".to_owned(),
            role: "Primary".to_owned(),
            connection: "SyncSource".to_owned(),
            disk: "UpToDate".to_owned(),
            peer_disk: Some("Inconsistent".to_owned()),
            out_of_sync_bytes: 1 << 20,
            resync_percent: Some(12.5),
            ..Volume::default()
        }],
        syncs: vec![SyncSet {
            name: "www".to_owned(),
            state: "connected".to_owned(),
            pending: 3,
            last_sync_secs: Some(2),
            ..SyncSet::default()
        }],
    }
}

#[tokio::test]
async fn appliance_checks() {
    let out = run_with("vrrp -m VI_1", appliance()).await;
    assert_eq!(out.state, State::Ok);
    let out = run_with("backends", appliance()).await;
    assert_eq!(out.state, State::Warning);
    assert!(
        out.output
            .contains("'web servers'=1;0;;0;2 'it''s=odd'=0;0;;0;1"),
        "{}",
        out.output
    );
    assert_eq!(
        run_with("backends -c 49%", appliance()).await.state,
        State::Critical
    );
    let out = run_with("volume nfs -w 1000", appliance()).await;
    assert_eq!(out.state, State::Warning);
    assert_eq!(
        run_with("volume nope", appliance()).await.state,
        State::Unknown
    );
    let out = run_with("sync www -w 2 -c 10 -W 60", appliance()).await;
    assert_eq!(out.state, State::Warning);
    assert_eq!(
        run_with("sync nope", appliance()).await.state,
        State::Unknown
    );
}

/// Every local check's output on this machine, for the perfdata parser.
#[tokio::test]
async fn local_checks_print_valid_perfdata() {
    for line in [
        "load -w 15,10,5 -c 30,25,20",
        "load -r -w 1 -c 2",
        "disk -w 20% -c 10% -p / -p /tmp -W 10% -K 5%",
        "disk -w 100 -c 50 -u GB",
        "swap -w 20% -c 10%",
        "swap -w 100MB -c 10MB -n ok",
        "procs",
        "procs -w 5 -c @10:20 -s RS",
        "users -w ~:5 -c 10:",
    ] {
        let out = run(line).await;
        assert!(out.output.contains('|'), "{line}: {}", out.output);
    }
}

/// A reader of performance data written from the Nagios plugin guidelines
/// (<https://nagios-plugins.org/doc/guidelines.html#AEN200>), independent of the writer:
///
/// `'label'=value[UOM];[warn];[crit];[min];[max]`, items separated by spaces; the label may be
/// quoted (needed with spaces; a quote inside is doubled), and holds no `=` or `'` unquoted;
/// value, min and max are `[-0-9.]` numbers; warn and crit are ranges in the threshold format;
/// UOM is one of `s us ms % B KB MB TB c`; trailing unfilled semicolons may be dropped.
mod perfdata {
    pub(super) fn parse(text: &str) -> Result<usize, String> {
        let mut rest = text.trim_end();
        let mut items = 0;
        while !rest.is_empty() {
            rest = label(rest)?;
            let end = rest.find(' ').unwrap_or(rest.len());
            fields(&rest[..end])?;
            rest = rest[end..].trim_start_matches(' ');
            items += 1;
        }
        if items == 0 {
            return Err("no items".to_owned());
        }
        Ok(items)
    }

    /// Reads `label=` and returns what follows the `=`.
    fn label(text: &str) -> Result<&str, String> {
        if let Some(quoted) = text.strip_prefix('\'') {
            let mut chars = quoted.char_indices();
            while let Some((at, c)) = chars.next() {
                if c != '\'' {
                    continue;
                }
                if quoted[at + 1..].starts_with('\'') {
                    chars.next();
                    continue;
                }
                if at == 0 {
                    return Err("empty label".to_owned());
                }
                return quoted[at + 1..]
                    .strip_prefix('=')
                    .ok_or_else(|| format!("no `=` after the label in `{text}`"));
            }
            Err(format!("unterminated label in `{text}`"))
        } else {
            let at = text
                .find('=')
                .ok_or_else(|| format!("no `=` in `{text}`"))?;
            let label = &text[..at];
            if label.is_empty() || label.contains([' ', '\'']) {
                return Err(format!("bad label `{label}`"));
            }
            Ok(&text[at + 1..])
        }
    }

    fn fields(text: &str) -> Result<(), String> {
        let parts: Vec<&str> = text.split(';').collect();
        if parts.len() > 5 {
            return Err(format!("too many fields in `{text}`"));
        }
        let value = parts[0];
        let digits = value.trim_end_matches(|c: char| !(c.is_ascii_digit() || c == '.'));
        let uom = &value[digits.len()..];
        if !number(digits) {
            return Err(format!("bad value `{value}`"));
        }
        if !["", "s", "us", "ms", "%", "B", "KB", "MB", "TB", "c"].contains(&uom) {
            return Err(format!("bad UOM `{uom}`"));
        }
        for (i, field) in parts.iter().enumerate().skip(1) {
            let ok = field.is_empty() || if i <= 2 { range(field) } else { number(field) };
            if !ok {
                return Err(format!("bad field {i} `{field}` in `{text}`"));
            }
        }
        Ok(())
    }

    fn number(text: &str) -> bool {
        let digits = text.strip_prefix('-').unwrap_or(text);
        !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
            && digits.chars().filter(|c| *c == '.').count() <= 1
            && digits.chars().any(|c| c.is_ascii_digit())
    }

    /// `[@]start:end` with `start` a number or `~` (or left out with its colon), `end` a number
    /// or empty after a colon.
    fn range(text: &str) -> bool {
        let body = text.strip_prefix('@').unwrap_or(text);
        match body.split_once(':') {
            Some((start, end)) => {
                (start.is_empty() || start == "~" || number(start))
                    && (end.is_empty() || number(end))
            }
            None => number(body),
        }
    }

    #[test]
    fn reads_the_guidelines_examples() {
        assert_eq!(parse("time=0.000148s;;;0.000000;10.000000"), Ok(1));
        assert_eq!(parse("'my disk'=10B;@1:2;~:3;0;100 users=3"), Ok(2));
        assert_eq!(parse("'it''s'=1c"), Ok(1));
        assert_eq!(parse("load1=0.900;1000.000;2000.000;0; load5=1"), Ok(2));
        for bad in [
            "",
            "x",
            "a b=1",
            "x=1GB",
            "x=abc",
            "x=1;a",
            "x=1;;;z",
            "x=1;;;;;",
            "'x=1",
            "''=1",
            "x=1;1:2:3",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
