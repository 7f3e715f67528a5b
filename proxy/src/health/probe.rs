//! One health probe of one server: a TCP connect, or an HTTP request whose status and body are
//! checked (HAProxy's `option httpchk`, ldirectord's `request`/`receive`). Results carry
//! HAProxy's short descriptions (`L4OK`, `L4TOUT`, `L4CON`, `L7OK`, `L7STS`, `L7RSP`, `L7TOUT`)
//! so operators read them as they always have.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use crate::{
    config::{Check, CheckKind},
    state::CheckResult,
};

/// The most of a check response read; enough for a status page, bounded so a huge body costs
/// nothing.
const MAX_RESPONSE: usize = 64 * 1024;

/// Probes `addr` as `check` says.
pub(crate) async fn probe(check: &Check, addr: SocketAddr) -> CheckResult {
    let started = Instant::now();
    let (ok, description) = match tokio::time::timeout(check.timeout, run(check, addr)).await {
        Ok(outcome) => outcome,
        Err(_) => (
            false,
            if check.kind == CheckKind::Http {
                "L7TOUT"
            } else {
                "L4TOUT"
            }
            .to_owned(),
        ),
    };
    CheckResult {
        ok,
        description,
        duration: started.elapsed(),
    }
}

async fn run(check: &Check, addr: SocketAddr) -> (bool, String) {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return (false, format!("L4CON {e}")),
    };
    if check.kind != CheckKind::Http {
        return (true, "L4OK".to_owned());
    }
    let host = check.host.clone().unwrap_or_else(|| addr.to_string());
    let request = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fulcrum-check\r\nConnection: close\r\nAccept: */*\r\n\r\n",
        check.method, check.path
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return (false, format!("L4CON {e}"));
    }
    let mut response = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&chunk[..n]);
                if response.len() >= MAX_RESPONSE || done_reading(&response, check) {
                    break;
                }
            }
            Err(_) if !response.is_empty() => break,
            Err(e) => return (false, format!("L7RSP {e}")),
        }
    }
    judge(check, &response)
}

/// Whether enough of the response is in to judge it, so a server that keeps the connection open
/// despite `Connection: close` does not turn a pass into a timeout.
fn done_reading(response: &[u8], check: &Check) -> bool {
    let Some(head_end) = find(response, b"\r\n\r\n") else {
        return false;
    };
    match &check.expect_body {
        None => true,
        Some(needle) => find(&response[head_end..], needle.as_bytes()).is_some(),
    }
}

/// Decides a check from the raw response.
pub(crate) fn judge(check: &Check, response: &[u8]) -> (bool, String) {
    let status = response
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse::<u16>().ok());
    let Some(status) = status else {
        return (false, "L7RSP invalid response".to_owned());
    };
    let (lo, hi) = check.expect_status;
    if !(lo..=hi).contains(&status) {
        return (false, format!("L7STS {status}"));
    }
    if let Some(needle) = &check.expect_body {
        let body = find(response, b"\r\n\r\n").map_or(&[][..], |i| &response[i + 4..]);
        if find(body, needle.as_bytes()).is_none() {
            return (false, "L7RSP content mismatch".to_owned());
        }
    }
    (true, format!("L7OK {status}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How long to wait before a server's first check: spread over one interval so a backend of many
/// servers is not probed in one burst.
pub(crate) fn first_delay(interval: Duration) -> Duration {
    interval.mul_f64(fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expect_body: Option<&str>) -> Check {
        Check {
            kind: CheckKind::Http,
            method: "GET".into(),
            path: "/test.html".into(),
            host: None,
            expect_status: (200, 399),
            expect_body: expect_body.map(str::to_owned),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            port: None,
        }
    }

    #[test]
    fn status_range_decides() {
        assert!(judge(&check(None), b"HTTP/1.1 200 OK\r\n\r\n").0);
        assert!(judge(&check(None), b"HTTP/1.0 302 Found\r\n\r\n").0);
        let (ok, why) = judge(&check(None), b"HTTP/1.1 503 Unavailable\r\n\r\n");
        assert!(!ok);
        assert_eq!(why, "L7STS 503");
        assert!(!judge(&check(None), b"garbage").0);
    }

    #[test]
    fn body_substring_like_ldirectord_receive() {
        let c = check(Some("Test Page"));
        assert!(judge(&c, b"HTTP/1.1 200 OK\r\n\r\n<h1>Test Page</h1>").0);
        let (ok, why) = judge(&c, b"HTTP/1.1 200 OK\r\n\r\nsomething else");
        assert!(!ok);
        assert!(why.contains("mismatch"));
        // The needle in a header does not count.
        assert!(!judge(&c, b"HTTP/1.1 200 OK\r\nX: Test Page\r\n\r\n").0);
    }
}
