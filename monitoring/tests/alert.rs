//! The alerter against real peers: mail through aiosmtpd (plain and STARTTLS), Alertmanager's
//! JSON at a local HTTP receiver, receivers that fail, hang or refuse, and a command that
//! writes what it reads.
//!
//! aiosmtpd (Debian's `python3-aiosmtpd`) is required in CI (`CI` set); elsewhere a missing
//! aiosmtpd skips the mail tests with a message.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use fulcrum_common::Spanned;
use fulcrum_monitoring::alert::{
    AlertConfig, AlertSection, Alerter, EmailSection, Event, RateLimitSection, VolumeEventKind,
    WebhookSection,
};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus::Registry;
use serde_json::Value;
use tokio::{net::TcpListener, process::Child, sync::mpsc};

// ---------------------------------------------------------------------------------------------
// Mail

#[tokio::test]
async fn a_vrrp_transition_mails_in_keepalived_shape() {
    let Some(smtp) = Smtp::start(&[]).await else {
        return;
    };
    let mut section = section();
    section.email = Some(email(smtp.addr));
    let registry = Registry::new();
    let alerter = Alerter::start(build(&section), "lb1".into(), &registry);
    alerter.send(vrrp("VI_1", "MASTER", Some("BACKUP")));
    alerter.stop().await;

    let mail = smtp.one_mail().await;
    let header = |name: &str| {
        mail.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in\n{mail}"))
            .to_owned()
    };
    assert_eq!(
        header("Subject"),
        "[lb1] VRRP Instance VI_1 - Entering MASTER state"
    );
    assert_eq!(header("From"), "fulcrum@example.com");
    assert_eq!(header("To"), "root@localhost");
    assert!(header("X-Mailer").starts_with("Fulcrum "));
    assert!(header("Date").ends_with("+0000"), "{mail}");
    // aiosmtpd records the envelope: the recipients are the `to` list.
    assert_eq!(header("X-RcptTo"), "root@localhost");
    let body = mail.split_once("\n\n").unwrap().1;
    assert!(
        body.starts_with(
            "=> VRRP Instance is now owning VRRP VIPs <=\n\nVIPs: 192.0.2.10\nPrevious state: BACKUP"
        ),
        "{body}"
    );
    assert_eq!(counter(&registry, "fulcrum_alerts_sent_total", "email"), 1);
}

#[tokio::test]
async fn starttls_mail_and_a_plain_client_refused() {
    let cert = testdata_cert();
    let cert = cert.to_str().unwrap();
    let Some(smtp) = Smtp::start(&["--tlscert", cert, "--tlskey", cert]).await else {
        return;
    };
    // aiosmtpd requires STARTTLS by default: plain mail is refused with a permanent error,
    // so it is given up at once, not retried.
    let mut section = section();
    section.email = Some(email(smtp.addr));
    let registry = Registry::new();
    let alerter = Alerter::start(build(&section), "lb1".into(), &registry);
    alerter.send(server("DOWN"));
    alerter.stop().await;
    assert_eq!(
        counter(&registry, "fulcrum_alerts_failed_total", "email"),
        1
    );
    assert_eq!(
        counter(&registry, "fulcrum_alert_retries_total", "email"),
        0
    );

    let mut email = email(smtp.addr);
    email.tls = Some(s("starttls".to_owned()));
    email.ca = Some(s(testdata_cert()));
    section.email = Some(email);
    let registry = Registry::new();
    let alerter = Alerter::start(build(&section), "lb1".into(), &registry);
    alerter.send(server("DOWN"));
    alerter.stop().await;
    let mail = smtp.one_mail().await;
    assert!(
        mail.contains("Subject: [lb1] Realserver [10.0.0.1]:tcp:80 of virtual server www - DOWN\n"),
        "{mail}"
    );
    assert!(mail.contains("=> CHECK failed on service : connection refused <="));
    assert_eq!(counter(&registry, "fulcrum_alerts_sent_total", "email"), 1);
}

/// A throwaway aiosmtpd writing to a maildir.
struct Smtp {
    addr: SocketAddr,
    maildir: PathBuf,
    _server: Child,
}

impl Smtp {
    /// Starts aiosmtpd with `extra` options, or returns `None` (outside CI) if it is missing.
    async fn start(extra: &[&str]) -> Option<Self> {
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let present = std::process::Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            assert!(
                std::env::var_os("CI").is_none(),
                "aiosmtpd (python3-aiosmtpd) is required in CI"
            );
            eprintln!("skipped: aiosmtpd is not installed (apt install python3-aiosmtpd)");
            return None;
        }
        let addr = free_port();
        let maildir = scratch("maildir");
        let server = tokio::process::Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &addr.to_string()])
            .args(extra)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Self {
            addr,
            maildir,
            _server: server,
        })
    }

    /// The one mail delivered, with `\n` line ends; removed, so the next call waits again.
    async fn one_mail(&self) -> String {
        let new = self.maildir.join("new");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let files: Vec<_> = std::fs::read_dir(&new)
                .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default();
            if let [file] = files.as_slice() {
                let mail = std::fs::read_to_string(file).unwrap().replace("\r\n", "\n");
                std::fs::remove_file(file).unwrap();
                return mail;
            }
            assert!(files.len() < 2, "{} mails", files.len());
            assert!(Instant::now() < deadline, "no mail in {}", new.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Alertmanager and webhooks

#[tokio::test]
async fn alertmanager_gets_firing_then_resolved_with_the_same_labels() {
    let receiver = Receiver::start(Behaviour::Answer(vec![200])).await;
    let mut section = section();
    section.webhooks = vec![webhook(&receiver.url("/api/v2/alerts"), "alertmanager")];
    let alerter = Alerter::start(build(&section), "lb1".into(), &Registry::new());
    alerter.send(server("DOWN"));
    let fired = receiver.next().await;
    alerter.send(server("UP"));
    let resolved = receiver.next().await;
    alerter.stop().await;

    assert_eq!(fired.path, "/api/v2/alerts");
    assert_eq!(fired.content_type, "application/json");
    let fired = postable_alerts(&fired.body);
    let resolved = postable_alerts(&resolved.body);
    assert_eq!((fired.len(), resolved.len()), (1, 1));
    let (fired, resolved) = (&fired[0], &resolved[0]);
    let labels = serde_json::json!({
        "alertname": "FulcrumServerDown",
        "instance": "lb1",
        "proxy": "www",
        "server": "web1",
        "severity": "warning",
    });
    assert_eq!(fired["labels"], labels);
    assert_eq!(resolved["labels"], labels);
    assert_eq!(resolved["startsAt"], fired["startsAt"]);
    let now = rfc3339_now();
    // Firing: ends in the future (resent before then); resolved: ended now.
    assert!(fired["endsAt"].as_str().unwrap() > now.as_str(), "{fired}");
    let ended = resolved["endsAt"].as_str().unwrap();
    assert!(ended <= now.as_str() && ended >= fired["startsAt"].as_str().unwrap());
    assert_eq!(
        fired["annotations"]["summary"],
        "[lb1] Realserver [10.0.0.1]:tcp:80 of virtual server www - DOWN"
    );
}

// Input: an Alertmanager receiver that holds its first request while web1 goes DOWN, 300
// other alerts follow (more than a sink's queue of 256 holds), then web1 comes back UP.
// Output: once the receiver answers, web1's resolve reaches it: the overflow waited for room
// instead of being dropped. (It was dropped, and `resend` would have fired web1 for good.)
#[tokio::test]
async fn a_recovery_past_a_full_sink_queue_still_resolves_its_alert() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let receiver = Receiver::start(Behaviour::Gate(gate)).await;
    let mut section = section();
    section.webhooks = vec![webhook(&receiver.url("/api/v2/alerts"), "alertmanager")];
    let alerter = Alerter::start(build(&section), "lb1".into(), &Registry::new());
    alerter.send(server("DOWN"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while receiver.requests() == 0 {
        assert!(Instant::now() < deadline, "the receiver was not tried");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..300 {
        alerter.send(vrrp(&format!("VI_{i}"), "MASTER", None));
    }
    alerter.send(server("UP"));
    open.send_replace(true);
    let resolved = async {
        loop {
            let alerts = postable_alerts(&receiver.next().await.body);
            if alerts.iter().any(|a| {
                a["labels"]["server"] == "web1"
                    && a["endsAt"]
                        .as_str()
                        .is_some_and(|end| end <= rfc3339_now().as_str())
            }) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), resolved)
        .await
        .expect("web1 was never resolved");
    alerter.stop().await;
}

#[tokio::test]
async fn alertmanager_gets_firing_alerts_again_until_resolved() {
    let receiver = Receiver::start(Behaviour::Answer(vec![200])).await;
    let mut section = section();
    let mut hook = webhook(&receiver.url("/api/v2/alerts"), "alertmanager");
    hook.resend = s(fulcrum_common::Duration::from_secs(1));
    section.webhooks = vec![hook];
    let alerter = Alerter::start(build(&section), "lb1".into(), &Registry::new());
    alerter.send(Event::Volume {
        name: "r0".into(),
        kind: VolumeEventKind::SplitBrain,
        detail: None,
    });
    let fired = postable_alerts(&receiver.next().await.body);
    let again = postable_alerts(&receiver.next().await.body);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["labels"], fired[0]["labels"]);
    assert_eq!(again[0]["labels"]["alertname"], "FulcrumVolumeSplitBrain");
    assert_eq!(again[0]["startsAt"], fired[0]["startsAt"]);
    assert!(again[0]["endsAt"].as_str() >= fired[0]["endsAt"].as_str());
    alerter.send(Event::Volume {
        name: "r0".into(),
        kind: VolumeEventKind::ResyncDone,
        detail: None,
    });
    let resolved = postable_alerts(&receiver.next().await.body);
    assert_eq!(resolved.len(), 2, "Disconnected and SplitBrain both end");
    assert_eq!(resolved[1]["labels"], fired[0]["labels"]);
    // Resolved: no more resends.
    let quiet = tokio::time::timeout(Duration::from_millis(1500), receiver.next()).await;
    assert!(quiet.is_err(), "sent again after it was resolved");
    alerter.stop().await;
}

#[tokio::test]
async fn https_webhook_trusts_its_ca() {
    let receiver = Receiver::start_https(Behaviour::Answer(vec![200])).await;
    let mut section = section();
    let mut hook = webhook(&receiver.url("/hook"), "json");
    hook.ca = Some(s(testdata_cert()));
    section.webhooks = vec![hook];
    let alerter = Alerter::start(build(&section), "lb1".into(), &Registry::new());
    alerter.send(server("DOWN"));
    let got = receiver.next().await;
    alerter.stop().await;
    assert_eq!(got.path, "/hook");
    let v: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v["firing"], true);

    // Without the CA the certificate is refused, and the failure is final only after retries.
    let mut section = self::section();
    section.webhooks = vec![webhook(&receiver.url("/hook"), "json")];
    section.tries = s(2);
    section.backoff = s(fulcrum_common::Duration::from_millis(10));
    let registry = Registry::new();
    let alerter = Alerter::start(build(&section), "lb1".into(), &registry);
    alerter.send(server("DOWN"));
    alerter.stop().await;
    assert_eq!(
        counter(&registry, "fulcrum_alerts_failed_total", "webhook0"),
        1
    );
}

#[tokio::test]
async fn send_never_waits_and_a_hung_receiver_delays_no_other() {
    let hung = Receiver::start(Behaviour::Hang).await;
    let good = Receiver::start(Behaviour::Answer(vec![200])).await;
    let mut section = section();
    section.webhooks = vec![
        webhook(&hung.url("/"), "json"),
        webhook(&good.url("/"), "json"),
    ];
    let alerter = Alerter::start(build(&section), "lb1".into(), &Registry::new());
    let sender = alerter.sender();
    let started = Instant::now();
    // The hung receiver never answers: a send that waited for delivery would never return.
    for i in 0..2000 {
        sender.send(vrrp(&format!("VI_{i}"), "MASTER", None));
    }
    let first = good.next().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the good receiver waited {:?}",
        started.elapsed()
    );
    let v: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(v["state"], "MASTER");
    let deadline = Instant::now() + Duration::from_secs(5);
    while hung.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the hung receiver was not even tried"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Not `stop()`: it would wait 5s for the hung receiver.
    drop(alerter);
}

#[tokio::test]
async fn failures_are_retried_then_given_up_and_counted() {
    // Fails twice, then takes it: 3 requests, 2 retries, 1 sent.
    let flaky = Receiver::start(Behaviour::Answer(vec![503, 503, 200])).await;
    // Refuses the alert itself: not retried.
    let refusing = Receiver::start(Behaviour::Answer(vec![400])).await;
    // Nobody listens: every try fails, then it is given up.
    let closed = free_port();
    let mut section = section();
    section.webhooks = vec![
        webhook(&flaky.url("/"), "json"),
        webhook(&refusing.url("/"), "json"),
        webhook(&format!("http://{closed}/"), "json"),
    ];
    section.tries = s(3);
    section.backoff = s(fulcrum_common::Duration::from_millis(20));
    let registry = Registry::new();
    let alerter = Alerter::start(build(&section), "lb1".into(), &registry);
    alerter.send(server("DOWN"));
    // Returned before the tries were made: they take 2 backoffs of 20 ms at least.
    assert!(flaky.requests() < 3, "send waited for the tries");
    alerter.stop().await;

    assert_eq!(flaky.requests(), 3);
    assert_eq!(
        counter(&registry, "fulcrum_alert_retries_total", "webhook0"),
        2
    );
    assert_eq!(
        counter(&registry, "fulcrum_alerts_sent_total", "webhook0"),
        1
    );
    assert_eq!(
        counter(&registry, "fulcrum_alerts_failed_total", "webhook0"),
        0
    );
    assert_eq!(refusing.requests(), 1);
    assert_eq!(
        counter(&registry, "fulcrum_alerts_failed_total", "webhook1"),
        1
    );
    assert_eq!(
        counter(&registry, "fulcrum_alert_retries_total", "webhook2"),
        2
    );
    assert_eq!(
        counter(&registry, "fulcrum_alerts_failed_total", "webhook2"),
        1
    );
    assert_eq!(
        counter(&registry, "fulcrum_alerts_sent_total", "webhook2"),
        0
    );
}

#[tokio::test]
async fn a_flapping_server_ends_with_its_last_state_and_stop_flushes() {
    let receiver = Receiver::start(Behaviour::Answer(vec![200])).await;
    let mut section = section();
    section.webhooks = vec![webhook(&receiver.url("/"), "json")];
    section.rate_limit = Some(RateLimitSection {
        max: s(2),
        window: s(fulcrum_common::Duration::from_millis(500)),
    });
    let registry = Registry::new();
    let alerter = Alerter::start(build(&section), "lb1".into(), &registry);
    let started = Instant::now();
    for state in ["DOWN", "UP", "DOWN", "UP", "DOWN"] {
        alerter.send(server(state));
    }
    let mut states = Vec::new();
    for _ in 0..3 {
        let v: Value = serde_json::from_slice(&receiver.next().await.body).unwrap();
        states.push((
            v["state"].as_str().unwrap().to_owned(),
            v["suppressed"].as_u64().unwrap(),
        ));
    }
    // The third waited for the window: the last state, standing for the two it replaced.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        states,
        [("DOWN".into(), 0), ("UP".into(), 0), ("DOWN".into(), 2)]
    );
    assert_eq!(
        counter_plain(&registry, "fulcrum_alerts_suppressed_total"),
        2
    );

    // Over the limit at stop: the held VRRP STOP still goes out, at once.
    alerter.send(vrrp("VI_1", "MASTER", None));
    alerter.send(vrrp("VI_1", "BACKUP", None));
    let v: Value = serde_json::from_slice(&receiver.next().await.body).unwrap();
    assert_eq!(v["state"], "MASTER");
    let v: Value = serde_json::from_slice(&receiver.next().await.body).unwrap();
    assert_eq!(v["state"], "BACKUP");
    alerter.send(vrrp("VI_1", "STOP", Some("BACKUP")));
    let sender = alerter.sender();
    let stopping = Instant::now();
    alerter.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(1));
    let v: Value = serde_json::from_slice(&receiver.next().await.body).unwrap();
    assert_eq!(v["state"], "STOP");
    assert_eq!(v["subject"], "[lb1] VRRP Instance VI_1 - Stopping");
    // After stop nothing is taken: counted as dropped.
    sender.send(server("UP"));
    assert_eq!(counter_plain(&registry, "fulcrum_alerts_dropped_total"), 1);
}

/// How a [`Receiver`] answers.
enum Behaviour {
    /// These statuses in turn, the last one ever after.
    Answer(Vec<u16>),
    /// Reads the request and never answers.
    Hang,
    /// Answers 200 once the gate is open.
    Gate(tokio::sync::watch::Receiver<bool>),
}

/// One request a receiver got.
struct Received {
    path: String,
    content_type: String,
    body: Bytes,
}

/// A local HTTP receiver (hyper) that records what it gets.
struct Receiver {
    addr: SocketAddr,
    https: bool,
    got: tokio::sync::Mutex<mpsc::UnboundedReceiver<Received>>,
    count: Arc<Mutex<usize>>,
}

/// What a receiver's connections share.
struct Shared {
    behaviour: Behaviour,
    got: mpsc::UnboundedSender<Received>,
    count: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Self {
        Self::start_with(behaviour, None).await
    }

    /// An HTTPS receiver with the admin tests' `localhost` certificate.
    async fn start_https(behaviour: Behaviour) -> Self {
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let path = testdata_cert();
        let chain = CertificateDer::pem_file_iter(&path)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&path).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Self::start_with(
            behaviour,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn start_with(behaviour: Behaviour, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let count = Arc::new(Mutex::new(0usize));
        let https = tls.is_some();
        let shared = Arc::new(Shared {
            behaviour,
            got: tx,
            count: Arc::clone(&count),
        });
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let shared = Arc::clone(&shared);
                match &tls {
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(TokioIo::new(stream), shared).await;
                            }
                        });
                    }
                    None => {
                        tokio::spawn(serve(TokioIo::new(stream), shared));
                    }
                }
            }
        });
        Self {
            addr,
            https,
            got: tokio::sync::Mutex::new(rx),
            count,
        }
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The next request answered 200.
    async fn next(&self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.got.lock().await.recv())
            .await
            .expect("no request within 10s")
            .unwrap()
    }

    /// Requests received so far, answered or not.
    fn requests(&self) -> usize {
        *self.count.lock().unwrap()
    }
}

/// Serves one connection, answering as the receiver's behaviour says.
async fn serve<I>(io: TokioIo<I>, shared: Arc<Shared>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let shared = Arc::clone(&shared);
        async move {
            let path = request.uri().path().to_owned();
            let content_type = request
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let n = {
                let mut count = shared.count.lock().unwrap();
                *count += 1;
                *count
            };
            let status = match &shared.behaviour {
                Behaviour::Hang => std::future::pending::<u16>().await,
                Behaviour::Gate(open) => {
                    let _ = open.clone().wait_for(|open| *open).await;
                    200
                }
                Behaviour::Answer(statuses) => statuses[(n - 1).min(statuses.len() - 1)],
            };
            if status == 200 {
                let _ = shared.got.send(Received {
                    path,
                    content_type,
                    body,
                });
            }
            Ok::<_, hyper::Error>(
                Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from_static(b"{}")))
                    .unwrap(),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

/// Checks `body` against Alertmanager's OpenAPI `postableAlerts`: an array of objects with
/// `labels` (required, a non-empty map of strings with Prometheus label names), `annotations`
/// (a map of strings), `startsAt`/`endsAt` (date-times), `generatorURL` (a URI), nothing else.
fn postable_alerts(body: &[u8]) -> Vec<Value> {
    let v: Value = serde_json::from_slice(body).unwrap();
    let alerts = v.as_array().expect("postableAlerts is an array").clone();
    for alert in &alerts {
        let alert = alert.as_object().expect("a postableAlert is an object");
        for key in alert.keys() {
            assert!(
                [
                    "labels",
                    "annotations",
                    "startsAt",
                    "endsAt",
                    "generatorURL"
                ]
                .contains(&key.as_str()),
                "unknown key {key}"
            );
        }
        let labels = alert["labels"].as_object().expect("labels is required");
        assert!(!labels.is_empty());
        for (name, value) in labels {
            let mut chars = name.chars();
            assert!(
                chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "label name {name}"
            );
            assert!(value.is_string(), "label {name} is not a string");
        }
        if let Some(annotations) = alert.get("annotations") {
            assert!(
                annotations
                    .as_object()
                    .unwrap()
                    .values()
                    .all(Value::is_string)
            );
        }
        for key in ["startsAt", "endsAt"] {
            if let Some(t) = alert.get(key) {
                assert!(is_rfc3339(t.as_str().unwrap()), "{key} = {t}");
            }
        }
    }
    alerts
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the form we send.
fn is_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn rfc3339_now() -> String {
    fulcrum_common::UtcTime::now().rfc3339()
}

// ---------------------------------------------------------------------------------------------
// Command

#[tokio::test]
async fn the_command_reads_the_alert_on_stdin() {
    let out = scratch("stdin.txt");
    let mut section = section();
    section.command = Some(s(format!(
        "sh -c 'cat > \"$1\"; echo \"$FULCRUM_ALERT_STATE\" >> \"$1\"' sh '{}'",
        out.display()
    )));
    let registry = Registry::new();
    let alerter = Alerter::start(build(&section), "lb1".into(), &registry);
    alerter.send(server("DOWN"));
    alerter.stop().await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "[lb1] Realserver [10.0.0.1]:tcp:80 of virtual server www - DOWN\n\
         \n\
         => CHECK failed on service : connection refused <=\n\
         \n\
         Server: www/web1\n\
         DOWN\n"
    );
    assert_eq!(
        counter(&registry, "fulcrum_alerts_sent_total", "command"),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn s<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

/// `[alert]` with every category, no sink, and the given defaults.
fn section() -> AlertSection {
    AlertSection {
        events: None,
        email: None,
        webhooks: Vec::new(),
        command: None,
        command_timeout: s(fulcrum_common::Duration::from_secs(10)),
        rate_limit: None,
        tries: s(5),
        backoff: s(fulcrum_common::Duration::from_millis(100)),
    }
}

fn build(section: &AlertSection) -> AlertConfig {
    section.build().unwrap_or_else(|e| panic!("{e:?}"))
}

fn email(relay: SocketAddr) -> EmailSection {
    EmailSection {
        smtp: s(relay.to_string()),
        from: s("fulcrum@example.com".into()),
        to: s(vec![s("root@localhost".into())]),
        tls: None,
        ca: None,
        user: None,
        password: None,
        password_file: None,
        allow_plain_auth: false,
        timeout: s(fulcrum_common::Duration::from_secs(5)),
    }
}

fn webhook(url: &str, format: &str) -> WebhookSection {
    WebhookSection {
        url: s(url.to_owned()),
        format: Some(s(format.to_owned())),
        timeout: s(fulcrum_common::Duration::from_secs(10)),
        resend: s(fulcrum_common::Duration::from_secs(60)),
        ca: None,
    }
}

fn vrrp(instance: &str, state: &str, previous: Option<&str>) -> Event {
    Event::Vrrp {
        instance: instance.into(),
        state: state.into(),
        previous: previous.map(Into::into),
        vips: vec!["192.0.2.10".into()],
    }
}

fn server(state: &str) -> Event {
    Event::Server {
        proxy: "www".into(),
        server: "web1".into(),
        addr: Some("10.0.0.1:80".into()),
        state: state.into(),
        reason: (state == "DOWN").then(|| "connection refused".into()),
    }
}

/// A counter of `registry` with `sink` as its label.
fn counter(registry: &Registry, name: &str, sink: &str) -> u64 {
    metric(registry, &format!("{name}{{sink=\"{sink}\"}}"))
}

fn counter_plain(registry: &Registry, name: &str) -> u64 {
    metric(registry, name)
}

fn metric(registry: &Registry, series: &str) -> u64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().unwrap())
}

/// A port nobody listens on (bound, then released).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A fresh path under the temporary directory.
fn scratch(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "fulcrum-alert-{}-{nanos}-{name}",
        std::process::id()
    ))
}

/// The self-signed `localhost`/`127.0.0.1` certificate and key of the admin tests.
fn testdata_cert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin/testdata/localhost.pem")
}
