//! An aggressive Prometheus in miniature: every target fetched once per interval for a while,
//! each answer checked (status 200 and a non-empty body; for a JSON target, a body that parses as
//! JSON) and counted. `fulcrum-bench scrape --json` prints the [`ScrapeReport`] that `compare`
//! reads in `get-metrics`, where a scrape that failed must not pass for a cheap one.
//!
//! Each scrape opens a connection of its own and closes it after the answer: a little more work
//! for the server than a scraper that keeps its connection, so the cost measured errs high.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, HOST};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior, interval, timeout};

/// The schema name and version of [`ScrapeReport`].
pub const SCHEMA: &str = "fulcrum-bench/scrape/v1";

/// A URL to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://host:port/path`.
    pub url: Uri,
    /// Ask with `Accept: application/json`, and require a body that parses as JSON.
    pub json: bool,
}

impl Target {
    /// Parses `url`, which must be plain `http://` with a host and port.
    pub fn new(url: &str, json: bool) -> Result<Self, String> {
        let parsed: Uri = url
            .parse()
            .map_err(|error| format!("{url:?} is not a URL: {error}"))?;
        if parsed.scheme_str() != Some("http") {
            return Err(format!("{url:?}: only http:// URLs can be scraped"));
        }
        if parsed.authority().and_then(|a| a.port_u16()).is_none() {
            return Err(format!("{url:?} has no host:port"));
        }
        Ok(Self { url: parsed, json })
    }
}

/// What to scrape, how often and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeOptions {
    pub targets: Vec<Target>,
    /// Time between two scrapes of a target; also the longest one scrape may take.
    pub interval: Duration,
    /// Scrapes start at 0, `interval`, 2 × `interval`... while before `duration`.
    pub duration: Duration,
    /// `(user, password)` sent with HTTP basic auth on every request.
    pub basic_auth: Option<(String, String)>,
}

/// What a scraper saw, as `fulcrum-bench scrape --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrapeReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    pub interval_s: f64,
    pub duration_s: f64,
    /// In the order they were given.
    pub targets: Vec<TargetReport>,
}

/// The scrapes of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetReport {
    pub url: String,
    /// Asked for as JSON, and the body had to parse as JSON.
    pub json: bool,
    pub attempts: u64,
    /// Answered 200 with a body that passed the check.
    pub ok: u64,
    /// Bytes of the bodies of the scrapes that passed.
    pub bytes: u64,
    /// The slowest scrape that passed, connecting included, in microseconds.
    pub max_latency_us: u64,
    /// What went wrong with the first scrape that failed; `None` when none did.
    pub first_failure: Option<String>,
}

impl ScrapeReport {
    /// Scrapes that passed, over every target.
    pub fn ok(&self) -> u64 {
        self.targets.iter().map(|t| t.ok).sum()
    }

    /// Scrapes made, over every target.
    pub fn attempts(&self) -> u64 {
        self.targets.iter().map(|t| t.attempts).sum()
    }
}

/// How many times each target is scraped: once per started interval of `duration`, and at least
/// once.
pub fn scrape_rounds(duration: Duration, interval: Duration) -> u64 {
    let interval = interval.as_nanos().max(1);
    let rounds = duration.as_nanos().div_ceil(interval).max(1);
    u64::try_from(rounds).unwrap_or(u64::MAX)
}

/// Scrapes every target once per interval until the duration is over. Failures are counted in
/// the report, not returned: the caller judges them.
pub async fn scrape(options: &ScrapeOptions) -> ScrapeReport {
    let authorization = options.basic_auth.as_ref().map(|(user, password)| {
        let credentials = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    });
    let mut targets: Vec<TargetReport> = options
        .targets
        .iter()
        .map(|t| TargetReport {
            url: t.url.to_string(),
            json: t.json,
            attempts: 0,
            ok: 0,
            bytes: 0,
            max_latency_us: 0,
            first_failure: None,
        })
        .collect();
    let mut ticks = interval(options.interval.max(Duration::from_millis(1)));
    // A slow scrape pushes the next ones back rather than firing a burst to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for _ in 0..scrape_rounds(options.duration, options.interval) {
        ticks.tick().await;
        for (target, report) in options.targets.iter().zip(&mut targets) {
            let started = Instant::now();
            let outcome =
                match timeout(options.interval, fetch(target, authorization.as_deref())).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("no answer within {:?}", options.interval)),
                };
            report.attempts += 1;
            match outcome {
                Ok(bytes) => {
                    report.ok += 1;
                    report.bytes += bytes;
                    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    report.max_latency_us = report.max_latency_us.max(us);
                }
                Err(failure) => {
                    report.first_failure.get_or_insert(failure);
                }
            }
        }
    }
    ScrapeReport {
        schema: SCHEMA.to_owned(),
        interval_s: options.interval.as_secs_f64(),
        duration_s: options.duration.as_secs_f64(),
        targets,
    }
}

/// One scrape on a connection of its own: the body's length if the answer passed the check.
async fn fetch(target: &Target, authorization: Option<&str>) -> Result<u64, String> {
    let url = &target.url;
    let authority = url
        .authority()
        .ok_or_else(|| format!("{url} has no host"))?
        .as_str();
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|error| format!("cannot connect to {authority}: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake with {authority}: {error}"))?;
    let mut request =
        Request::get(url.path_and_query().map_or("/", |p| p.as_str())).header(HOST, authority);
    if target.json {
        request = request.header(ACCEPT, "application/json");
    }
    if let Some(authorization) = authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|error| format!("cannot build a request for {url}: {error}"))?;
    // The sender is dropped once the answer is in, which lets the connection close and its
    // future end; both are driven here, so nothing outlives the scrape.
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("{url}: {error}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("{url}: body: {error}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    let (answer, _closed) = tokio::join!(exchange, connection);
    let (status, body) = answer?;
    check_answer(target, status, &body)?;
    Ok(body.len() as u64)
}

/// 200, a body, and for a JSON target a body that parses.
fn check_answer(target: &Target, status: StatusCode, body: &[u8]) -> Result<(), String> {
    let url = &target.url;
    if status != StatusCode::OK {
        return Err(format!("{url}: status {status}"));
    }
    if body.is_empty() {
        return Err(format!("{url}: empty body"));
    }
    if target.json {
        serde_json::from_slice::<serde_json::Value>(body)
            .map_err(|error| format!("{url}: the body is not JSON: {error}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::time::Duration;

    use super::{SCHEMA, ScrapeOptions, ScrapeReport, Target, scrape, scrape_rounds};

    #[test]
    fn rounds_per_duration() {
        let s = Duration::from_secs;
        assert_eq!(scrape_rounds(s(10), s(1)), 10);
        assert_eq!(scrape_rounds(Duration::from_millis(10_500), s(1)), 11);
        assert_eq!(scrape_rounds(s(1), s(1)), 1);
        assert_eq!(scrape_rounds(Duration::ZERO, s(1)), 1, "at least once");
        assert_eq!(scrape_rounds(s(1), Duration::ZERO), 1_000_000_000);
    }

    #[test]
    fn targets_are_plain_http_with_a_port() {
        let target = Target::new("http://127.0.0.1:8404/stats", true).unwrap();
        assert_eq!(target.url.path(), "/stats");
        assert!(target.json);
        assert!(Target::new("https://127.0.0.1:8404/", false).is_err());
        assert!(Target::new("http://127.0.0.1/metrics", false).is_err());
        assert!(Target::new("not a url", false).is_err());
    }

    /// `bench:s3cret` in base64, as the admin server expects it.
    const AUTHORIZATION: &str = "authorization: Basic YmVuY2g6czNjcmV0";

    /// A server that answers each request by its path, like an admin server would, and closes:
    /// `/metrics` text, `/stats` JSON (only with `Accept: application/json` and the right
    /// credentials), `/empty` nothing, `/broken` a body that is not JSON, anything else 404.
    fn admin_like() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                let authorized = head.contains(&AUTHORIZATION.to_lowercase());
                let wants_json = head.contains("accept: application/json");
                let (status, body) = if head.starts_with("get /metrics ") {
                    ("200 OK", "fulcrum_up 1\n")
                } else if head.starts_with("get /stats ") && !authorized {
                    ("401 Unauthorized", "login\n")
                } else if head.starts_with("get /stats ") && wants_json {
                    ("200 OK", "{\"proxies\":[]}")
                } else if head.starts_with("get /stats ") {
                    ("200 OK", "<html></html>")
                } else if head.starts_with("get /empty ") {
                    ("200 OK", "")
                } else if head.starts_with("get /broken ") {
                    ("200 OK", "{\"proxies\":")
                } else {
                    ("404 Not Found", "no\n")
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        addr
    }

    fn options(addr: SocketAddr, targets: &[(&str, bool)], password: &str) -> ScrapeOptions {
        ScrapeOptions {
            targets: targets
                .iter()
                .map(|&(path, json)| Target::new(&format!("http://{addr}{path}"), json).unwrap())
                .collect(),
            interval: Duration::from_millis(20),
            duration: Duration::from_millis(60),
            basic_auth: Some(("bench".to_owned(), password.to_owned())),
        }
    }

    #[tokio::test]
    async fn good_scrapes_are_counted() {
        let addr = admin_like();
        let report = scrape(&options(
            addr,
            &[("/metrics", false), ("/stats", true)],
            "s3cret",
        ))
        .await;
        assert_eq!(report.schema, SCHEMA);
        assert_eq!((report.attempts(), report.ok()), (6, 6), "{report:#?}");
        let [metrics, stats] = &report.targets[..] else {
            panic!("two targets: {report:?}");
        };
        assert_eq!(metrics.url, format!("http://{addr}/metrics"));
        assert_eq!(metrics.bytes, 3 * "fulcrum_up 1\n".len() as u64);
        assert_eq!(stats.bytes, 3 * "{\"proxies\":[]}".len() as u64);
        assert!(stats.json && metrics.first_failure.is_none() && stats.first_failure.is_none());
        assert!(metrics.max_latency_us > 0);
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<ScrapeReport>(&json).unwrap(), report);
    }

    #[tokio::test]
    async fn bad_answers_are_failures() {
        let addr = admin_like();
        let report = scrape(&options(
            addr,
            &[
                ("/stats", true),
                ("/empty", false),
                ("/broken", true),
                ("/nowhere", false),
                ("/stats", false),
            ],
            "wrong",
        ))
        .await;
        let failures: Vec<(u64, &str)> = report
            .targets
            .iter()
            .map(|t| (t.ok, t.first_failure.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(report.attempts(), 15);
        assert_eq!(report.ok(), 0, "{failures:?}");
        assert!(
            failures[0].1.ends_with("status 401 Unauthorized"),
            "{failures:?}"
        );
        assert!(failures[1].1.ends_with("empty body"), "{failures:?}");
        assert!(failures[2].1.contains("not JSON"), "{failures:?}");
        assert!(
            failures[3].1.ends_with("status 404 Not Found"),
            "{failures:?}"
        );
        // Without the right password even the HTML page is refused.
        assert!(failures[4].1.contains("401"), "{failures:?}");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_failure() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let report = scrape(&options(addr, &[("/metrics", false)], "s3cret")).await;
        assert_eq!((report.attempts(), report.ok()), (3, 0));
        let failure = report.targets[0].first_failure.as_deref().unwrap();
        assert!(failure.starts_with("cannot connect"), "{failure}");
    }
}
