//! An `external` check: a program whose exit status is the verdict, as HAProxy's
//! `external-check command`, ldirectord's `checktype = external` and keepalived's `MISC_CHECK`
//! run one. It gets HAProxy's four arguments (`PROXY_ADDR PROXY_PORT SERVER_ADDR
//! SERVER_PORT`, which are also ldirectord's) and most of HAProxy's environment variables. Results read `PROCOK`, `PROCERR` and `PROCTOUT`, HAProxy's
//! words for them.

use std::net::SocketAddr;

use fulcrum_common::child::{self, Caps, Exit, Io};
use tokio::process::Command;

use crate::{config::Check, state::ServerState};

/// What a program's output may add to its result: the first line, at most this long.
const MAX_OUTPUT: usize = 1024;

/// The server a probe is about.
#[derive(Debug)]
pub(crate) struct Subject<'a> {
    /// Its name, backend (or virtual service), address and connections.
    pub(crate) state: &'a ServerState,
    /// The virtual service's address; a backend has none (HAProxy's `NOT_USED`).
    pub(crate) listener: Option<SocketAddr>,
    /// The address a `tcp` or `http` probe connects to: the server's, with
    /// `health_check.port` applied.
    pub(crate) addr: SocketAddr,
}

/// HAProxy's word for a proxy address or port a backend does not have.
const NOT_USED: &str = "NOT_USED";

/// Runs `check.command` for `subject` within `check.timeout`: exit status 0 passes.
pub(crate) async fn probe(check: &Check, subject: &Subject<'_>) -> (bool, String) {
    let Some((program, first_args)) = check.command.split_first() else {
        return (false, "PROCERR no command".to_owned());
    };
    let (proxy_addr, proxy_port) = subject.listener.map_or_else(
        || (NOT_USED.to_owned(), NOT_USED.to_owned()),
        |l| (l.ip().to_string(), l.port().to_string()),
    );
    // The server's own port, as HAProxy passes it: `health_check.port` is for the probes that
    // connect.
    let server = subject.state;
    let (server_addr, server_port) = (server.addr.ip().to_string(), server.addr.port().to_string());
    let mut command = Command::new(program);
    command
        .args(first_args)
        .args([&proxy_addr, &proxy_port, &server_addr, &server_port])
        .env("HAPROXY_PROXY_NAME", &server.backend)
        .env("HAPROXY_PROXY_ADDR", &proxy_addr)
        .env("HAPROXY_PROXY_PORT", &proxy_port)
        .env("HAPROXY_SERVER_NAME", &server.name)
        .env("HAPROXY_SERVER_ADDR", &server_addr)
        .env("HAPROXY_SERVER_PORT", &server_port)
        .env("HAPROXY_SERVER_CURCONN", server.active().to_string());
    let caps = Caps {
        stdout: MAX_OUTPUT,
        stderr: MAX_OUTPUT,
    };
    match child::run(command, check.timeout, Io::output(caps)).await {
        Exit::Finished { status, .. } if status.success() => (true, "PROCOK".to_owned()),
        Exit::Finished {
            status,
            stdout,
            stderr,
        } => {
            let how = status
                .code()
                .map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit {c}"));
            // What the program said, stdout first, as a Nagios plugin says it.
            let said = [&stdout, &stderr]
                .into_iter()
                .map(|out| first_line(out))
                .find(|line| !line.is_empty());
            match said {
                Some(line) => (false, format!("PROCERR {how}: {line}")),
                None => (false, format!("PROCERR {how}")),
            }
        }
        Exit::TimedOut => (false, "PROCTOUT".to_owned()),
        Exit::Failed(e) => (false, format!("PROCERR cannot run {program}: {e}")),
    }
}

/// The first line of `output`, trimmed, made [printable](super::printable).
fn first_line(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    super::printable(text.lines().next().unwrap_or_default().trim())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::*;
    use crate::config::CheckKind;

    fn check(script: &str, timeout: Duration) -> Check {
        Check {
            timeout,
            command: vec!["/bin/sh".into(), "-c".into(), script.into(), "check".into()],
            ..Check::of_kind(CheckKind::External)
        }
    }

    /// Server `s1` of `db` at 127.0.0.1:3306, checked on port 9200.
    fn server() -> ServerState {
        ServerState::new("db", "s1", "127.0.0.1:3306".parse().unwrap(), 1, 0)
    }

    fn subject(state: &ServerState, listener: Option<SocketAddr>) -> Subject<'_> {
        Subject {
            state,
            listener,
            addr: "127.0.0.1:9200".parse().unwrap(),
        }
    }

    // Input: a script that prints its four arguments and HAProxy's variables, run for a
    // virtual service and for a backend, for a server checked on another port. Output:
    // HAProxy's arguments and environment, with the server's own port and `NOT_USED` for a
    // backend's proxy address and port; exit 0 is `PROCOK`.
    #[tokio::test]
    async fn the_program_gets_haproxys_arguments_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seen");
        let script = format!(
            r#"echo "$@ $HAPROXY_PROXY_NAME $HAPROXY_PROXY_ADDR $HAPROXY_PROXY_PORT $HAPROXY_SERVER_NAME $HAPROXY_SERVER_ADDR $HAPROXY_SERVER_PORT $HAPROXY_SERVER_CURCONN" >> {}"#,
            out.display()
        );
        let c = check(&script, Duration::from_secs(10));
        let vip = Some("192.0.2.10:3306".parse().unwrap());
        assert_eq!(
            probe(&c, &subject(&server(), vip)).await,
            (true, "PROCOK".to_owned())
        );
        assert!(probe(&c, &subject(&server(), None)).await.0);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "192.0.2.10 3306 127.0.0.1 3306 db 192.0.2.10 3306 s1 127.0.0.1 3306 0\n\
             NOT_USED NOT_USED 127.0.0.1 3306 db NOT_USED NOT_USED s1 127.0.0.1 3306 0\n"
        );
    }

    // Input: scripts that exit 2 after a line on stdout, exit 1 with a line on stderr only,
    // are killed by a signal, outlive the timeout, and a program that does not exist. Output:
    // each fails, with HAProxy's words and what the program said.
    #[tokio::test]
    async fn failures_say_how_and_what_the_program_said() {
        let run = |script: &str, timeout_ms| {
            let c = check(script, Duration::from_millis(timeout_ms));
            async move { probe(&c, &subject(&server(), None)).await }
        };
        assert_eq!(
            run(
                "echo 'CRITICAL: replica lag 300 s'; echo more; exit 2",
                10_000
            )
            .await,
            (
                false,
                "PROCERR exit 2: CRITICAL: replica lag 300 s".to_owned()
            )
        );
        assert_eq!(
            run("echo 'access denied' >&2; exit 1", 10_000).await,
            (false, "PROCERR exit 1: access denied".to_owned())
        );
        assert_eq!(
            run("kill -9 $$", 10_000).await,
            (false, "PROCERR killed by a signal".to_owned())
        );
        assert_eq!(run("sleep 30", 200).await, (false, "PROCTOUT".to_owned()));
        let mut missing = check("", Duration::from_secs(1));
        missing.command = vec!["/nonexistent/check".into()];
        let (ok, why) = probe(&missing, &subject(&server(), None)).await;
        assert!(!ok);
        assert!(
            why.starts_with("PROCERR cannot run /nonexistent/check: "),
            "{why}"
        );
    }
}
