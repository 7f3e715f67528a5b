//! Shared helpers for the end-to-end tests: the real `fulcrum` binary run on a config in a temp
//! dir with its JSON log read back, origin servers from `fulcrum-bench`, and HTTP spoken by real
//! clients (curl, h2load, hyper's client) or raw sockets where a test needs malformed bytes.
//!
//! Everything binds port 0 and reads the port back, and everything is torn down on drop, so the
//! tests run in parallel and clean up even when they fail.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different part of the support code"
)]
#![allow(clippy::unwrap_used, reason = "tests")]

pub mod h2;
pub mod seed004;
pub mod vrrp;
pub mod webdriver;

/// The network lab lives in its own crate, `lab/`, shared with `fulcrum-bench failover`; the tests
/// reach it as `support::netns` and `support::keepalived`.
#[allow(unused_imports, reason = "only the netns and VRRP tests use the lab")]
pub use fulcrum_lab::{keepalived, netns};

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use fulcrum_bench::origin::{self, Origin, OriginOptions};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Longest any wait in a test may take before it is a failure.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The `[global]` section every test config starts with: JSON logs, so the harness can read them.
/// The control socket lives in the test's temp dir, so parallel tests never share one.
const GLOBAL: &str = "[global]\ngrace = \"5s\"\ncontrol_socket = \"control.sock\"\nstate_dir = \"state\"\nlog = { format = \"json\", level = \"info\", access_log = true }\n\n";

/// A running `fulcrum run` process.
pub struct Fulcrum {
    child: Option<Child>,
    dir: tempfile::TempDir,
    logs: Arc<Mutex<Vec<Value>>>,
    /// Lines of `[global]` beyond the node name and the suite's own (`max_connections = 1000`
    /// unless a test says otherwise).
    global: String,
}

impl Fulcrum {
    /// Writes `config` (without `[global]`, which is added) and runs fulcrum on it, waiting until
    /// it has started.
    pub fn start(config: &str) -> Self {
        Self::start_wrapped(&[], config)
    }

    /// As [`Fulcrum::start`], with the command line prefixed by `wrapper` (e.g.
    /// `["ip", "netns", "exec", NAME]` to run inside a network namespace).
    pub fn start_wrapped(wrapper: &[&str], config: &str) -> Self {
        Self::start_with_global(wrapper, "max_connections = 1000\n", config)
    }

    /// As [`Fulcrum::start`], with `[global] max_connections = max_connections`.
    pub fn start_with_max_connections(max_connections: usize, config: &str) -> Self {
        let global = format!("max_connections = {max_connections}\n");
        Self::start_with_global(&[], &global, config)
    }

    /// As [`Fulcrum::start`], with `[global] threads = 1`: one event loop, which runs nothing
    /// else while a task goes on without yielding.
    pub fn start_single_threaded(config: &str) -> Self {
        Self::start_with_global(&[], "max_connections = 1000\nthreads = 1\n", config)
    }

    fn start_with_global(wrapper: &[&str], global: &str, config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fulcrum-test-")
            .tempdir()
            .unwrap();
        let fulcrum = Self {
            child: None,
            dir,
            logs: Arc::new(Mutex::new(Vec::new())),
            global: global.to_owned(),
        };
        fulcrum.write_config(config);
        fulcrum.spawn(wrapper)
    }

    /// The control socket `fulcrum status` reaches this process on.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    fn spawn(mut self, wrapper: &[&str]) -> Self {
        let bin = env!("CARGO_BIN_EXE_fulcrum");
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .args(["run", "-c"])
            .arg(self.config_path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::clone(&self.logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                logs.lock().unwrap().push(value);
            }
        });
        self.child = Some(child);
        let started = self
            .wait_log(|l| message(l) == "fulcrum started" || message(l).contains("not starting"));
        assert_eq!(
            message(&started),
            "fulcrum started",
            "fulcrum did not start: {:#?}",
            self.logs()
        );
        self
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("fulcrum.toml")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the config file (the running process sees it on the next SIGHUP).
    pub fn write_config(&self, config: &str) {
        // A node name of its own, as two processes on one host are two nodes to each other.
        let node = self.dir.path().file_name().unwrap().to_string_lossy();
        let global = GLOBAL.replacen(
            "[global]\n",
            &format!("[global]\nnode = \"{node}\"\n{}", self.global),
            1,
        );
        std::fs::write(self.config_path(), format!("{global}{config}")).unwrap();
    }

    /// The address frontend `name` listens on (the last one bound under that name).
    pub fn addr(&self, frontend: &str) -> SocketAddr {
        self.logged_addr(&format!("frontend {frontend}"), |l| {
            message(l) == "listening" && l["frontend"] == frontend
        })
    }

    /// The `addr` field of the last log record `is` picks; `what` names it when there is none.
    fn logged_addr(&self, what: &str, is: impl Fn(&Value) -> bool) -> SocketAddr {
        self.logs()
            .iter()
            .rev()
            .find(|l| is(l))
            .and_then(|l| l["addr"].as_str()?.parse().ok())
            .unwrap_or_else(|| panic!("{what} is not listening: {:#?}", self.logs()))
    }

    /// Everything logged so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for a log record matching `pred` and returns it.
    pub fn wait_log(&self, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_log_from(0, pred)
    }

    /// Waits for a record matching `pred` among those logged after the first `from`.
    pub fn wait_log_from(&self, from: usize, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .skip(from)
                .find(|l| pred(l))
            {
                return found.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no such log record; logs: {:#?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many records have been logged.
    pub fn log_len(&self) -> usize {
        self.logs.lock().unwrap().len()
    }

    /// Waits until at least `n` access log records were written, and returns them all. A record
    /// is written after its response, so a client can be ahead of the log.
    pub fn wait_access_logs(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let logs = self.access_logs();
            if logs.len() >= n {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "{} access records, expected {n}",
                logs.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Access log records (one per request).
    pub fn access_logs(&self) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l["target"] == "access")
            .collect()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY-free: libc::kill on our own child's pid.
        let rc = unsafe_free_kill(self.pid(), signal);
        assert_eq!(rc, 0, "kill failed");
    }

    /// Sends SIGHUP and waits for the reload's outcome; true when it was applied.
    pub fn reload(&self) -> bool {
        let from = self.log_len();
        self.signal(libc::SIGHUP);
        let outcome = self.wait_log_from(from, |l| {
            let m = message(l);
            m == "reloaded" || m.starts_with("reload refused") || m.starts_with("reload failed")
        });
        message(&outcome) == "reloaded"
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "fulcrum did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Fulcrum {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn unsafe_free_kill(pid: i32, signal: i32) -> i32 {
    // `kill(1)` keeps the test crate free of unsafe code.
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    if status.success() { 0 } else { -1 }
}

/// The `message` field of a JSON log record.
pub fn message(record: &Value) -> &str {
    record["message"].as_str().unwrap_or_default()
}

/// Starts an origin called `name` on a free loopback port.
pub async fn origin(name: &str) -> Origin {
    origin_with(OriginOptions {
        name: name.to_owned(),
        ..OriginOptions::default()
    })
    .await
}

/// Starts an origin with `options` on a free loopback port.
pub async fn origin_with(options: OriginOptions) -> Origin {
    origin::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap()
}

/// Waits until `origin` has received `n` requests in all. A request sent from a spawned task
/// has then come through the proxy, and holds whatever it holds there (a connection slot), not
/// only after a sleep that a loaded machine may outlast.
pub async fn wait_origin_requests(origin: &Origin, n: u64) {
    let deadline = Instant::now() + PATIENCE;
    while origin.request_count() < n {
        assert!(
            Instant::now() < deadline,
            "{} received {} requests of {n}",
            origin.name(),
            origin.request_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A free address on a loopback address of this test process's own: 127.X.Y.Z from its pid
/// and a count, bound and released. A config that names two nodes' addresses is written
/// before either starts, so the port is free again until the node binds it; on 127.0.0.1
/// another test could take it in between. No other process binds this address, nor picks it
/// as a source of its connections.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU8, Ordering};
    static COUNT: AtomicU8 = AtomicU8::new(0);
    let pid = std::process::id();
    let ip = std::net::Ipv4Addr::new(
        127,
        1 + (pid >> 8) as u8 % 254,
        pid as u8,
        1 + COUNT.fetch_add(1, Ordering::Relaxed) % 254,
    );
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    listener.local_addr().unwrap()
}

/// An address nothing listens on (see [`free_addr`]: nothing else binds it either).
pub fn dead_addr() -> SocketAddr {
    free_addr()
}

/// Waits until connections to `addr` are refused (a listener closed), failing after `PATIENCE`.
pub async fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A response as a test looks at it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The `X-Server` header: which origin answered.
    pub fn server(&self) -> &str {
        self.headers
            .get("x-server")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }
}

/// An HTTP/1.1 keep-alive client on one connection (hyper's client).
pub struct KeepAlive {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl KeepAlive {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::over(TcpStream::connect(addr).await.unwrap()).await
    }

    /// Speaks HTTP/1.1 over a stream the test connected itself (e.g. from a chosen source).
    pub async fn over(stream: TcpStream) -> Self {
        let addr = stream.peer_addr().unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self {
            sender,
            authority: addr.to_string(),
        }
    }

    /// Whether the connection can carry another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, hyper::Error> {
        self.send("GET", path, headers, Bytes::new()).await
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, hyper::Error> {
        self.sender.ready().await?;
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .sender
            .send_request(req.body(Full::new(body)).unwrap())
            .await?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

/// One request on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    KeepAlive::connect(addr)
        .await
        .get(path, headers)
        .await
        .unwrap()
}

/// `GET /` with `Connection: close` on a fresh connection: the whole answer, as text.
pub async fn get_and_close(addr: SocketAddr) -> String {
    let request = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    String::from_utf8_lossy(&raw_exchange(addr, request).await).into_owned()
}

/// Sends raw bytes and reads until the server closes (or `PATIENCE` runs out).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("server did not close the connection")
        .ok();
    out
}

/// Reads one message head, through its blank line, a byte at a time so that nothing after it is
/// taken; at an early end, what came.
pub async fn read_head(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).await.is_ok() {
        head.push(byte[0]);
    }
    head
}

/// A server on a free loopback port that reads each request's head and answers `response`,
/// leaving any body unread, then closes: a server no origin option makes.
pub async fn answering_server(response: &'static [u8]) -> SocketAddr {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    serve_answers(server, response);
    addr
}

/// Serves [`answering_server`]'s way on a listener the test bound itself (at a given port, or
/// at a given moment).
pub fn serve_answers(server: tokio::net::TcpListener, response: &'static [u8]) {
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                read_head(&mut conn).await;
                let _ = conn.write_all(response).await;
            });
        }
    });
}

/// Runs curl with `args` and returns (exit status, stdout, stderr).
pub async fn curl(args: &[&str]) -> (ExitStatus, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "15"])
        .args(args)
        .output()
        .await
        .expect("curl is installed (apt-get install curl)");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses curl's `-D -` output (the last response head; a body may follow) into status and
/// headers.
pub fn parse_head(text: &str) -> (u16, HashMap<String, Vec<String>>) {
    let last = text
        .split("\r\n\r\n")
        .filter(|block| block.starts_with("HTTP/"))
        .last()
        .unwrap_or_default();
    let mut lines = last.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers
                .entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_owned());
        }
    }
    (status, headers)
}

/// Whether a command-line tool is installed; tests that need one say so when they skip, and in CI
/// (where `.ci/run` installs them) a missing tool is a failure.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// Frontend `main` on a free loopback port before backend `web`, whose only server is in
/// MAINT: every request gets Fulcrum's own 503.
pub const ONLY_SERVER_IN_MAINT: &str = r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
servers = [{ name = "s1", address = "127.0.0.1:9", disabled = true }]
"#;

/// A config with frontend `main` on a free loopback port sending everything to backend `web`
/// with `servers`; `frontend` and `backend` are extra lines for each section.
pub fn site(frontend: &str, backend: &str, servers: &[(&str, SocketAddr)]) -> String {
    format!(
        "[frontend.main]\nbind = [\"127.0.0.1:0\"]\n{frontend}\ndefault_backend = \"web\"\n\n[backend.web]\n{backend}\nservers = {}\n",
        servers_list(servers)
    )
}

/// `servers` as the value of a backend's `servers` key.
pub fn servers_list(servers: &[(&str, SocketAddr)]) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|(name, addr)| format!("{{ name = \"{name}\", address = \"{addr}\" }}"))
        .collect();
    format!("[{}]", servers.join(", "))
}

// L4 virtual services (`[virtual_server.NAME]`), used by tests/l4_*.rs.

impl Fulcrum {
    /// The address virtual service `name` is bound to (the last one bound under that name), read
    /// from its `listening` log record as [`Fulcrum::addr`] does for frontends.
    pub fn virtual_server_addr(&self, name: &str) -> SocketAddr {
        self.logged_addr(&format!("virtual server {name}"), |l| {
            message(l) == "listening" && l["virtual_server"] == name
        })
    }

    /// Virtual service `name` as `fulcrum status l4 --json` shows it.
    pub fn l4_status(&self, name: &str) -> serde_json::Value {
        let config = self.config_path();
        let (ok, out, err) =
            fulcrum_command(["status", "l4", "--json", "-c", config.to_str().unwrap()]);
        assert!(ok, "{err}");
        let all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        all.into_iter()
            .find(|service| service["name"] == name)
            .unwrap_or_else(|| panic!("virtual server `{name}` in `fulcrum status l4`"))
    }
}

// The admin server (`[admin]`), used by tests/admin*.rs.

impl Fulcrum {
    /// The address the admin server is bound to (the last one started), read from its
    /// `admin server listening` log record.
    pub fn admin_addr(&self) -> SocketAddr {
        self.logged_addr("the admin server", |l| {
            message(l) == "admin server listening"
        })
    }

    /// The admin server's `/metrics` text, fetched with curl.
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["--silent", "--max-time", "10"])
            .arg(format!("http://{}/metrics", self.admin_addr()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Runs the `fulcrum` binary with `args` to the end: (success, stdout, stderr).
pub fn fulcrum_command<I, S>(args: I) -> (bool, String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `fulcrum` with `before`, then `--socket` and `node`'s control socket, then `after`.
pub fn fulcrum_on(node: &Fulcrum, before: &[&str], after: &[&str]) -> (bool, String, String) {
    let socket = node.control_socket();
    let args = before
        .iter()
        .map(std::ffi::OsStr::new)
        .chain(["--socket".as_ref(), socket.as_os_str()])
        .chain(after.iter().map(std::ffi::OsStr::new));
    fulcrum_command(args)
}

/// Column `column` (`qcur`, `bin`, `bout`, ...) of row `pxname,svname` (`svname` a server's
/// name, `FRONTEND` or `BACKEND`) in `fulcrum ctl show stat`, HAProxy's CSV, on `node`; `None`
/// when the row is missing or the field empty.
pub fn stat_field(node: &Fulcrum, pxname: &str, svname: &str, column: &str) -> Option<u64> {
    let (ok, csv, err) = fulcrum_on(node, &["ctl"], &["show", "stat"]);
    assert!(ok, "fulcrum ctl show stat: {err}");
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default();
    let at = (header.trim_start_matches("# ").split(','))
        .position(|name| name == column)
        .unwrap_or_else(|| panic!("no column {column} in {header}"));
    lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .find(|fields| fields.len() > at && fields[0] == pxname && fields[1] == svname)
        .and_then(|fields| fields[at].parse().ok())
}

/// Waits until the row `server` (a server's name, or `BACKEND`) of backend `backend` has `n`
/// requests in its queue (`qcur`).
pub async fn wait_queued(node: &Fulcrum, backend: &str, server: &str, n: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let queued = stat_field(node, backend, server, "qcur");
        if queued == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{backend}/{server} queue: {queued:?}, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `fulcrum status WHAT --json` of `node` (`what` is "volume" or "sync"): its first entry.
pub fn status_json(node: &Fulcrum, what: &str) -> Value {
    let (ok, out, err) = fulcrum_on(node, &["status", what, "--json"], &[]);
    assert!(ok, "fulcrum status {what}: {err}");
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

/// `fulcrum status WHAT` of `node`, the text for people.
pub fn status_text(node: &Fulcrum, what: &str) -> String {
    let (ok, text, err) = fulcrum_on(node, &["status", what], &[]);
    assert!(ok, "{err}");
    text
}

/// Asks `addr` for a WebSocket upgrade of `/chat`: the connection and the response head.
pub async fn upgrade(addr: std::net::SocketAddr) -> (tokio::net::TcpStream, String) {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    (stream, String::from_utf8(head).unwrap())
}

/// `node`'s soft limit on open files, lowered (with util-linux's `prlimit`) so that exactly one
/// descriptor is left: a client's connection is accepted, and the connection to its server
/// then fails with EMFILE, as on an appliance out of descriptors. Dropped, it puts the limit
/// back.
pub struct OneDescriptorLeft {
    pid: i32,
    limits: (u64, u64),
}

impl OneDescriptorLeft {
    pub fn on(node: &Fulcrum) -> OneDescriptorLeft {
        let pid = node.pid();
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let numbers: Vec<u64> = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let limits = (numbers[0], numbers[1]);
        let open: std::collections::BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        // The kernel hands out the lowest free descriptor below the limit: with the limit at
        // the second free one, only the first is left.
        let second_free = (0..).filter(|fd| !open.contains(fd)).nth(1).unwrap();
        set_nofile(pid, (second_free, limits.1));
        OneDescriptorLeft { pid, limits }
    }
}

impl Drop for OneDescriptorLeft {
    fn drop(&mut self) {
        set_nofile(self.pid, self.limits);
    }
}

fn set_nofile(pid: i32, (soft, hard): (u64, u64)) {
    let status = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={soft}:{hard}"),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit --nofile={soft}:{hard}");
}
