//! The NRPE agent against the real `check_nrpe` 4.1 (Debian's nagios-nrpe-plugin), plain and TLS,
//! and, where texts and exit codes matter, against the real `nrpe` 4.1 daemon given the same
//! commands: each answer must be the one the daemon gives.
//!
//! Tests that need a tool skip with a reason when it is missing, except under `CI`, where they
//! fail. Every server binds port 0 (the daemon a free port), every test has its own temp dir,
//! and all of it is torn down on drop, so the tests run in parallel.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use fulcrum_common::{Spanned, stats::Snapshot};
use fulcrum_monitoring::nrpe::{
    NrpeSection, NrpeServer, NrpeTlsSection,
    packet::{self, Kind, Packet, Version},
};
use prometheus::Registry;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::Command,
};

const CHECK_NRPE: &str = "/usr/lib/nagios/plugins/check_nrpe";
const NRPE: &str = "/usr/sbin/nrpe";

/// Whether `path` (a tool outside `PATH`) is installed; missing is a failure under `CI`, as
/// `tests/support`'s `require_tool` does for tools in `PATH`.
fn require(path: &str) -> bool {
    let found = Path::new(path).is_file();
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{path} is required in CI");
        eprintln!("SKIPPED: {path} is not installed");
    }
    found
}

/// A directory of its own under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "fulcrum-nrpe-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        // The real daemon runs its commands as `nobody`.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(path)
    }

    /// Writes an executable shell script.
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The commands both daemons get: plain lines, no arguments (Debian's daemon has none).
fn commands(dir: &TempDir) -> Vec<(String, String)> {
    let exit = dir.script("exit.sh", "echo \"exit $1\"\nexit $1");
    let long = dir.script("long.sh", "head -c 2000 /dev/zero | tr '\\0' x\necho");
    let slow = dir.script("slow.sh", "sleep 30\necho never");
    let silent = dir.script("silent.sh", "exit 2");
    let multi = dir.script("multi.sh", "printf 'line1\\nline2 | perf=1\\n\\n'");
    let mut commands: Vec<(String, String)> = [0, 1, 2, 3, 5, 255]
        .into_iter()
        .map(|code| (format!("exit{code}"), format!("{exit} {code}")))
        .collect();
    commands.extend([
        ("long".to_owned(), long),
        ("slow".to_owned(), slow),
        ("silent".to_owned(), silent),
        ("multi".to_owned(), multi),
    ]);
    commands
}

/// `[nrpe]` on 127.0.0.1:0 with `commands`, a 1s command timeout, and the defaults otherwise.
fn section(commands: &[(String, String)]) -> NrpeSection {
    let spanned = |value: &str| Spanned::new(0..0, value.to_owned());
    NrpeSection {
        listen: Spanned::new(0..0, "127.0.0.1:0".parse().unwrap()),
        allowed_hosts: Spanned::new(0..0, vec![spanned("127.0.0.1")]),
        tls: None,
        allow_arguments: false,
        command_timeout: Spanned::new(0..0, fulcrum_common::Duration::from_secs(1)),
        connection_timeout: Spanned::new(0..0, fulcrum_common::Duration::from_secs(300)),
        command: commands
            .iter()
            .map(|(name, line)| (spanned(name), spanned(line)))
            .collect::<BTreeMap<_, _>>(),
    }
}

async fn start(section: &NrpeSection) -> (NrpeServer, Registry) {
    let registry = Registry::new();
    let config = section.build().unwrap();
    let server = NrpeServer::start(config, Arc::new(Snapshot::default), &registry)
        .await
        .unwrap();
    (server, registry)
}

/// Runs check_nrpe against `port`; gives its stdout less the final newline, and its exit code.
async fn check_nrpe(port: u16, args: &[&str]) -> (String, i32) {
    let output = Command::new(CHECK_NRPE)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let mut stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if stdout.ends_with('\n') {
        stdout.pop();
    }
    (stdout, output.status.code().unwrap_or(-1))
}

fn refused(registry: &Registry, reason: &str) -> u64 {
    counter(
        registry,
        "fulcrum_nrpe_refused_total",
        &[("reason", reason)],
    )
}

fn counter(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> u64 {
    let value = registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric())
        .find(|metric| {
            labels.iter().all(|(k, v)| {
                metric
                    .get_label()
                    .iter()
                    .any(|pair| pair.name() == *k && pair.value() == *v)
            })
        })
        .map_or(0.0, |metric| metric.get_counter().get_value());
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "small counts"
    )]
    let value = value as u64;
    value
}

/// The real daemon, plain (`-n`), on a free port, given `commands`; killed on drop.
struct Daemon {
    child: tokio::process::Child,
    port: u16,
}

impl Daemon {
    async fn start(dir: &TempDir, commands: &[(String, String)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = format!(
            "server_address=127.0.0.1\nserver_port={port}\nallowed_hosts=127.0.0.1\n\
             pid_file={}/nrpe.pid\nnrpe_user=nobody\nnrpe_group=nogroup\n\
             dont_blame_nrpe=0\ncommand_timeout=1\nconnection_timeout=300\n",
            dir.0.display()
        );
        for (name, line) in commands {
            cfg.push_str(&format!("command[{name}]={line}\n"));
        }
        let cfg_path = dir.0.join("nrpe.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let child = Command::new(NRPE)
            .arg("-c")
            .arg(&cfg_path)
            .args(["-n", "-f"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { child, port };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nrpe did not listen on port {port}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Every answer, as check_nrpe prints it with its exit code, is the real daemon's: the version,
/// an undefined command, exit codes 0 to 3 passed and others UNKNOWN, long output cut at 1023
/// bytes in version 2 and whole in version 4, a silent plugin, multi-line output, a timeout.
#[tokio::test]
async fn answers_as_the_real_daemon_does() {
    if !require(CHECK_NRPE) || !require(NRPE) {
        return;
    }
    let dir = TempDir::new();
    let commands = commands(&dir);
    let (server, _registry) = start(&section(&commands)).await;
    let daemon = Daemon::start(&dir, &commands).await;
    let cases: &[&[&str]] = &[
        &[],
        &["-2"],
        &["-c", "nosuch"],
        &["-2", "-c", "nosuch"],
        &["-c", "exit0"],
        &["-c", "exit1"],
        &["-c", "exit2"],
        &["-2", "-c", "exit3"],
        &["-c", "exit5"],
        &["-c", "exit255"],
        &["-c", "long"],
        &["-2", "-c", "long"],
        &["-c", "silent"],
        &["-c", "multi"],
        &["-c", "slow", "-t", "10"],
        &["-2", "-c", "slow", "-t", "10"],
    ];
    for args in cases {
        let args: Vec<&str> = ["-n"].iter().chain(args.iter()).copied().collect();
        let ours = check_nrpe(server.local_addr().port(), &args).await;
        let theirs = check_nrpe(daemon.port, &args).await;
        assert_eq!(ours, theirs, "check_nrpe {args:?}");
    }
    // And what they are, so a change on both sides shows too.
    let port = server.local_addr().port();
    assert_eq!(check_nrpe(port, &["-n"]).await, ("NRPE v4.1.0".into(), 0));
    assert_eq!(
        check_nrpe(port, &["-n", "-c", "nosuch"]).await,
        ("NRPE: Command 'nosuch' not defined".into(), 3)
    );
    for (code, expected) in [(0, 0), (1, 1), (2, 2), (3, 3), (5, 3), (255, 3)] {
        let text = format!("exit {code}");
        let command = format!("exit{code}");
        assert_eq!(
            check_nrpe(port, &["-n", "-c", &command]).await,
            (text, expected)
        );
    }
    assert_eq!(
        check_nrpe(port, &["-n", "-2", "-c", "long"]).await.0,
        "x".repeat(1023)
    );
    assert_eq!(
        check_nrpe(port, &["-n", "-c", "long"]).await.0,
        "x".repeat(2000)
    );
    assert_eq!(
        check_nrpe(port, &["-n", "-c", "silent"]).await,
        ("NRPE: Unable to read output".into(), 3)
    );
    let started = tokio::time::Instant::now();
    assert_eq!(
        check_nrpe(port, &["-n", "-c", "slow", "-t", "10"]).await,
        ("NRPE: Command timed out after 1 seconds".into(), 3)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(daemon);
    server.stop().await;
}

/// Version 3 (which the 4.1 daemon refuses) is answered in version 3, and check_nrpe -3 reads it
/// without falling back to version 2.
#[tokio::test]
async fn answers_version_3() {
    if !require(CHECK_NRPE) {
        return;
    }
    let dir = TempDir::new();
    let (server, registry) = start(&section(&commands(&dir))).await;
    let port = server.local_addr().port();
    assert_eq!(
        check_nrpe(port, &["-n", "-3"]).await,
        ("NRPE v4.1.0".into(), 0)
    );
    assert_eq!(
        check_nrpe(port, &["-n", "-3", "-c", "long"]).await.0,
        "x".repeat(2000)
    );
    assert_eq!(
        check_nrpe(port, &["-n", "-3", "-c", "exit2"]).await,
        ("exit 2".into(), 2)
    );
    let labels = [("command", "exit2"), ("state", "critical")];
    assert_eq!(
        counter(&registry, "fulcrum_nrpe_requests_total", &labels),
        1
    );
    assert_eq!(refused(&registry, "version"), 0);
    server.stop().await;
}

/// `allowed_hosts` turns away a client bound to 127.0.0.2 before reading anything.
#[tokio::test]
async fn refuses_hosts_not_allowed() {
    if !require(CHECK_NRPE) {
        return;
    }
    let dir = TempDir::new();
    let (server, registry) = start(&section(&commands(&dir))).await;
    let port = server.local_addr().port();
    let (output, code) = check_nrpe(port, &["-n", "-b", "127.0.0.2", "-c", "exit0"]).await;
    eprintln!("check_nrpe from 127.0.0.2: {output} (exit {code})");
    assert!(output.starts_with("CHECK_NRPE: "), "{output}");
    assert_ne!(code, 0);
    assert!(refused(&registry, "host") >= 1);
    assert_eq!(
        check_nrpe(port, &["-n", "-c", "exit0"]).await,
        ("exit 0".into(), 0)
    );
    server.stop().await;
}

/// With `allow_arguments`, arguments reach `$ARGn$` each as one word; `$(...)`, backquotes and
/// `;` are refused before any command runs, even one that hands them to a shell.
#[tokio::test]
async fn arguments_when_allowed() {
    if !require(CHECK_NRPE) {
        return;
    }
    let dir = TempDir::new();
    let args = dir.script("args.sh", "printf '[%s]' \"$@\"\necho");
    let mut section = section(&[
        ("args".into(), format!("{args} $ARG1$ $ARG2$")),
        ("shell".into(), "/bin/sh -c 'echo $ARG1$'".into()),
    ]);
    section.allow_arguments = true;
    let (server, registry) = start(&section).await;
    let port = server.local_addr().port();
    assert_eq!(
        check_nrpe(port, &["-n", "-c", "args", "-a", "a b", "c;d"])
            .await
            .1,
        3,
        "`;` is one of NRPE's metacharacters"
    );
    assert_eq!(
        check_nrpe(port, &["-n", "-c", "args", "-a", "a b", "$HOME"]).await,
        ("[a b][$HOME]".into(), 0)
    );
    assert_eq!(
        check_nrpe(port, &["-n", "-c", "args", "-a", "one"]).await,
        ("[one]".into(), 0)
    );
    let pwned = dir.0.join("pwned");
    for attack in [
        format!("$(touch {})", pwned.display()),
        format!("`touch {}`", pwned.display()),
    ] {
        for command in ["args", "shell"] {
            let (output, code) = check_nrpe(port, &["-n", "-c", command, "-a", &attack]).await;
            assert!(output.starts_with("CHECK_NRPE: "), "{output}");
            assert_ne!(code, 0);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pwned.exists(), "an argument ran a command");
    assert!(refused(&registry, "metachar") >= 5);
    server.stop().await;
}

/// Without `allow_arguments`, a request with arguments is refused, as NRPE refuses it.
#[tokio::test]
async fn arguments_refused_when_not_allowed() {
    if !require(CHECK_NRPE) {
        return;
    }
    let dir = TempDir::new();
    let (server, registry) = start(&section(&commands(&dir))).await;
    let port = server.local_addr().port();
    let (output, code) = check_nrpe(port, &["-n", "-c", "exit0", "-a", "x"]).await;
    eprintln!("check_nrpe with arguments: {output} (exit {code})");
    assert!(output.starts_with("CHECK_NRPE: "), "{output}");
    assert_ne!(code, 0);
    assert!(refused(&registry, "arguments") >= 1);
    assert_eq!(
        counter(
            &registry,
            "fulcrum_nrpe_requests_total",
            &[("command", "exit0")]
        ),
        0
    );
    server.stop().await;
}

/// A hand-built version 2 packet with a bad CRC gets no answer, and is counted.
#[tokio::test]
async fn refuses_a_bad_crc() {
    let dir = TempDir::new();
    let (server, registry) = start(&section(&commands(&dir))).await;
    let mut bytes = packet::encode(&Packet {
        version: Version::V2,
        kind: Kind::Query,
        result_code: 0,
        text: b"exit0".to_vec(),
    });
    bytes[7] ^= 0x55;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut response = Vec::new();
    // A reset is as good as a close here.
    let _ = stream.read_to_end(&mut response).await;
    assert!(response.is_empty());
    assert_eq!(refused(&registry, "crc"), 1);
    server.stop().await;
}

/// Stopping the server ends its connections and kills the commands they run, children included.
#[tokio::test]
async fn stopping_kills_running_commands() {
    if !require(CHECK_NRPE) {
        return;
    }
    let dir = TempDir::new();
    let pids = dir.0.join("pids");
    let hang = dir.script(
        "hang.sh",
        &format!(
            "sleep 300 &\necho $! >> {0}\necho $$ >> {0}\nwait",
            pids.display()
        ),
    );
    let mut section = section(&[("hang".into(), hang)]);
    section.command_timeout = Spanned::new(0..0, fulcrum_common::Duration::from_secs(600));
    let (server, _registry) = start(&section).await;
    let port = server.local_addr().port();
    let client =
        tokio::spawn(async move { check_nrpe(port, &["-n", "-c", "hang", "-t", "600"]).await });
    let mut running = Vec::new();
    for _ in 0..100 {
        running = std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if running.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(running.len(), 2, "the command did not start");
    server.stop().await;
    // check_nrpe, cut off, retries in version 2 and finds nothing listening.
    let (output, code) = client.await.unwrap();
    assert_ne!(code, 0, "{output}");
    for pid in running {
        let mut gone = false;
        for _ in 0..100 {
            // Gone, or a zombie waiting for a parent that does not reap.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "process {pid} outlived the server");
    }
}

/// The crate's test-only self-signed certificate and its key, one PEM file given as both `cert`
/// and `key` (check_nrpe does not verify the agent's certificate unless told to).
fn certificate() -> (PathBuf, PathBuf) {
    let pem = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin/testdata/localhost.pem");
    (pem.clone(), pem)
}

/// A default check_nrpe (TLS, anonymous DH allowed) talks to the TLS listener in versions 4 and
/// 2, over TLS 1.3 and 1.2; `-n` against it, anonymous DH only over TLS 1.2, and TLS against a
/// plain listener fail cleanly and are counted.
#[tokio::test]
async fn tls_with_a_default_check_nrpe() {
    if !require(CHECK_NRPE) {
        return;
    }
    let dir = TempDir::new();
    let (cert, key) = certificate();
    let commands = commands(&dir);
    let mut tls_section = section(&commands);
    tls_section.tls = Some(NrpeTlsSection {
        cert: Spanned::new(0..0, cert),
        key: Spanned::new(0..0, key),
    });
    let (tls_server, tls_registry) = start(&tls_section).await;
    let port = tls_server.local_addr().port();
    assert_eq!(check_nrpe(port, &[]).await, ("NRPE v4.1.0".into(), 0));
    assert_eq!(
        check_nrpe(port, &["-2", "-c", "exit2"]).await,
        ("exit 2".into(), 2)
    );
    assert_eq!(check_nrpe(port, &["-c", "long"]).await.0, "x".repeat(2000));
    assert_eq!(refused(&tls_registry, "tls"), 0);

    // `-d 2` sets OpenSSL's TLS 1.2 cipher list to anonymous DH only; TLS 1.3's suites are set
    // apart and stay, so it still works over TLS 1.3. Held to TLS 1.2 it cannot: rustls has no
    // anonymous DH.
    assert_eq!(
        check_nrpe(port, &["-d", "2"]).await,
        ("NRPE v4.1.0".into(), 0)
    );
    assert_eq!(
        check_nrpe(port, &["-S", "TLSv1.2", "-c", "exit1"]).await,
        ("exit 1".into(), 1)
    );
    for args in [&["-n"][..], &["-d", "2", "-S", "TLSv1.2"][..]] {
        let before = refused(&tls_registry, "tls");
        let (output, code) = check_nrpe(port, args).await;
        eprintln!("check_nrpe {args:?} against TLS: {output} (exit {code})");
        assert!(output.starts_with("CHECK_NRPE: "), "{args:?}: {output}");
        assert_ne!(code, 0, "{args:?}");
        assert!(refused(&tls_registry, "tls") > before, "{args:?}");
    }

    let (plain_server, plain_registry) = start(&section(&commands)).await;
    let (output, code) = check_nrpe(plain_server.local_addr().port(), &[]).await;
    eprintln!("check_nrpe with TLS against plain: {output} (exit {code})");
    assert!(output.starts_with("CHECK_NRPE: "), "{output}");
    assert_ne!(code, 0);
    assert!(refused(&plain_registry, "version") >= 1);
    tls_server.stop().await;
    plain_server.stop().await;
}

/// Stopping frees the address and the metric names: a new server starts on both.
#[tokio::test]
async fn restarts_on_the_same_address_and_registry() {
    let registry = Registry::new();
    let config = section(&[]).build().unwrap();
    let server = NrpeServer::start(config.clone(), Arc::new(Snapshot::default), &registry)
        .await
        .unwrap();
    let addr: SocketAddr = server.local_addr();
    server.stop().await;
    let config = fulcrum_monitoring::nrpe::NrpeConfig {
        listen: addr,
        ..config
    };
    let server = NrpeServer::start(config, Arc::new(Snapshot::default), &registry)
        .await
        .unwrap();
    assert_eq!(server.local_addr(), addr);
    server.stop().await;
}
