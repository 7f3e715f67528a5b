//! End-to-end tests of the L4 tier against real peers: HAProxy reading the PROXY header Fulcrum
//! writes, PostgreSQL and dnsmasq served through TCP and UDP virtual services, and a 1 GiB
//! stream each way through a TCP one.
//!
//! Each peer is a real daemon on a free loopback port with its own temporary directory, stopped
//! on drop, so the tests run in parallel and leave nothing behind when they fail.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{
        SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream,
        UdpSocket as StdUdpSocket,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, LazyLock, Mutex},
    time::{Duration, Instant},
};

use support::{Fulcrum, PATIENCE, require_tool};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpSocket, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    task::JoinSet,
};

/// A virtual service `name` on a free loopback port in front of the one real server `real`;
/// `extra` holds more lines for its section.
fn virtual_service(name: &str, protocol: &str, real: SocketAddr, extra: &str) -> String {
    format!(
        "[virtual_server.{name}]\nlisten = \"127.0.0.1:0\"\nprotocol = \"{protocol}\"\n{extra}\nreal_servers = [{{ address = \"{real}\" }}]\n"
    )
}

// ---------- PROXY protocol, read by HAProxy ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_tells_haproxy_the_client_address_and_port() {
    haproxy_sees_the_client_through("v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_tells_haproxy_the_client_address_and_port() {
    haproxy_sees_the_client_through("v2").await;
}

/// A client on 127.0.0.5 sends two pipelined requests through a virtual service speaking PROXY
/// `version` to HAProxy, which answers each with the source and destination it was told. Both
/// name the client's own address and port and the virtual address: the header came once, first,
/// and HAProxy parsed it.
async fn haproxy_sees_the_client_through(version: &str) {
    if !require_tool("haproxy") {
        return;
    }
    let haproxy = Haproxy::start();
    let fulcrum = Fulcrum::start(&virtual_service(
        "pp",
        "tcp",
        haproxy.addr(),
        &format!("proxy_protocol = \"{version}\""),
    ));
    let vip = fulcrum.virtual_server_addr("pp");

    // Not 127.0.0.1, which Fulcrum's own connection to HAProxy comes from.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.5:0".parse().unwrap()).unwrap();
    let client = socket.local_addr().unwrap();
    let mut stream = socket.connect(vip).await.unwrap();
    stream
        .write_all(
            b"GET /1 HTTP/1.1\r\nHost: fulcrum.test\r\n\r\n\
              GET /2 HTTP/1.1\r\nHost: fulcrum.test\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("HAProxy answered and closed")
        .unwrap_or_else(|e| {
            panic!(
                "reading HAProxy's answers: {e}\nHAProxy: {}",
                haproxy.server.output()
            )
        });
    let answer = String::from_utf8_lossy(&answer);
    let seen = format!("src={client} dst={vip}");
    assert_eq!(
        answer.matches("HTTP/1.1 200").count(),
        2,
        "two answers expected: {answer}\nHAProxy: {}",
        haproxy.server.output()
    );
    assert_eq!(
        answer.matches(&seen).count(),
        2,
        "HAProxy should see {seen} in both answers: {answer}"
    );
}

/// HAProxy 2.6 in HTTP mode, its listener requiring a PROXY header, answering every request
/// with the source and destination addresses it believes.
struct Haproxy {
    server: Peer,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start() -> Self {
        let dir = temp_dir("haproxy");
        let config = dir.path().join("haproxy.cfg");
        let server = Peer::start(
            "haproxy",
            None,
            free_tcp_port,
            |port| {
                std::fs::write(&config, haproxy_config(port)).unwrap();
                let mut command = Command::new("haproxy");
                command.arg("-db").arg("-f").arg(&config);
                command
            },
            |peer| haproxy_answers(peer.port),
        );
        Self { server, _dir: dir }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.server.port))
    }
}

fn haproxy_config(port: u16) -> String {
    format!(
        r#"global
    maxconn 100

defaults
    mode http
    timeout connect 5s
    timeout client 20s
    timeout server 20s

frontend from_fulcrum
    bind 127.0.0.1:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "src=%[src]:%[src_port] dst=%[dst]:%[dst_port]"
"#
    )
}

/// Whether HAProxy on `port` takes a PROXY header and answers with its source: proof that it is
/// ours and serving, not another process that took the port.
fn haproxy_answers(port: u16) -> bool {
    let probe = || -> std::io::Result<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(
            b"PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\n\
              GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n",
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    probe().is_ok_and(|answer| answer.contains("src=192.0.2.1:1111"))
}

// ---------- PostgreSQL over a TCP virtual service ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_creates_inserts_and_selects_through_a_virtual_service() {
    let Some(bin) = require_postgres() else {
        return;
    };
    let postgres = Postgres::start(&bin);
    let fulcrum = Fulcrum::start(&virtual_service("db", "tcp", postgres.addr(), ""));
    let vip = fulcrum.virtual_server_addr("db");

    // One session writes, a second one reads: two connections through the service.
    let written = psql(
        &bin,
        vip,
        &[
            "CREATE TABLE peers (id integer PRIMARY KEY, name text NOT NULL)",
            "INSERT INTO peers SELECT g, 'peer-' || g FROM generate_series(1, 1000) AS g",
            "SELECT count(*), sum(id) FROM peers",
        ],
    )
    .await;
    assert_eq!(written, "1000|500500\n");
    // A result of some 12 kB, more than one packet and one protocol message.
    let rows = psql(&bin, vip, &["SELECT id, name FROM peers ORDER BY id"]).await;
    let expected: String = (1..=1000).map(|i| format!("{i}|peer-{i}\n")).collect();
    assert!(
        rows == expected,
        "the rows read back differ from those written ({} bytes, {} expected)",
        rows.len(),
        expected.len()
    );
}

// Input: a virtual service over PostgreSQL whose external check runs PostgreSQL's own
// `pg_isready` on the address it is given (as with ldirectord's `checktype = external` or
// HAProxy's `external-check command`), every 100 ms, fall 1; PostgreSQL then stops. Output:
// `PROCOK` while PostgreSQL answers; once it has stopped, the real server is DOWN with
// pg_isready's exit status 2 and its own words in the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_check_runs_pg_isready_on_the_real_server() {
    let Some(bin) = require_postgres() else {
        return;
    };
    let postgres = Postgres::start(&bin);
    let pg_isready = bin.join("pg_isready");
    // HAProxy's four arguments follow the command: $3 and $4 are the real server's.
    let check = format!(
        r#"health_check = {{ type = "external", command = '''sh -c 'exec "$0" -h "$3" -p "$4" -U postgres' {}''', interval = "100ms", fall = 1 }}"#,
        pg_isready.display()
    );
    let fulcrum = Fulcrum::start(&virtual_service("db", "tcp", postgres.addr(), &check));
    real_server_until(&fulcrum, "db", "no passing check", |s| {
        s["last_check"] == "PROCOK"
    })
    .await;
    let addr = postgres.addr();
    drop(postgres);
    // While it shuts down, PostgreSQL still answers, to refuse (pg_isready's exit 1); once it
    // has gone, nothing does (exit 2).
    let gone = format!("PROCERR exit 2: {addr} - no response");
    let now = real_server_until(&fulcrum, "db", "not seen as gone", |s| {
        s["last_check"] == gone.as_str()
    })
    .await;
    assert_eq!(now["status"], "DOWN", "{now}");
}

// Input: a virtual service over `openssl s_server -www` with a certificate no client trusts,
// checked by an `https` check (SNI a.fulcrum.test) that wants s_server's status page, every
// 100 ms, fall 1; s_server then stops. Output: `L7OK 200` while it serves, the check having
// spoken TLS to OpenSSL; DOWN with `L4CON` once it has gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_check_reads_openssl_s_server_over_tls() {
    if !require_tool("openssl") {
        return;
    }
    let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/a.pem");
    let server = Peer::start(
        "openssl s_server",
        None,
        free_tcp_port,
        |port| {
            let mut command = Command::new("openssl");
            command.args(["s_server", "-quiet", "-www", "-cert", pem, "-key", pem]);
            command.args(["-accept", &format!("127.0.0.1:{port}")]);
            command
        },
        |peer| StdTcpStream::connect(("127.0.0.1", peer.port)).is_ok(),
    );
    let real: SocketAddr = ([127, 0, 0, 1], server.port).into();
    let check = r#"health_check = { type = "https", host = "a.fulcrum.test", expect_body = "s_server -quiet -www", interval = "100ms", fall = 1 }"#;
    let fulcrum = Fulcrum::start(&virtual_service("tls", "tcp", real, check));
    real_server_until(&fulcrum, "tls", "no passing check", |s| {
        s["last_check"] == "L7OK 200"
    })
    .await;
    drop(server);
    let now = real_server_until(&fulcrum, "tls", "not seen as gone", |s| {
        s["status"] == "DOWN"
    })
    .await;
    let last = now["last_check"].as_str().unwrap_or_default();
    assert!(last.starts_with("L4CON"), "{now}");
}

/// Waits until the first real server of `service`, as `fulcrum status l4 --json` shows it,
/// passes `done`, and returns that view; fails with `what` after [`PATIENCE`].
async fn real_server_until(
    fulcrum: &Fulcrum,
    service: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = fulcrum.l4_status(service)["real_servers"][0].clone();
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The directory with PostgreSQL's `initdb`, `postgres` and `psql`: Debian keeps them in
/// `/usr/lib/postgresql/VERSION/bin` (the newest is taken), off the `PATH`; elsewhere `initdb`
/// on the `PATH` says where. Outside CI a missing server skips the test, as `require_tool` does.
fn require_postgres() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "postgres", "psql"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    debian.sort();
    let on_path = || {
        let out = Command::new("sh")
            .args(["-c", "command -v initdb"])
            .output()
            .ok()?;
        let initdb = std::fs::canonicalize(String::from_utf8(out.stdout).ok()?.trim()).ok()?;
        Some(initdb.parent()?.to_path_buf()).filter(|dir| complete(dir))
    };
    let found = debian.pop().map(|(_, bin)| bin).or_else(on_path);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL (initdb, postgres, psql) is required in CI"
        );
        eprintln!("SKIPPED: PostgreSQL is not installed (apt-get install postgresql)");
    }
    found
}

/// A throw-away PostgreSQL cluster: trust authentication on 127.0.0.1, its data and Unix socket
/// in a temporary directory, fsync off.
struct Postgres {
    server: Peer,
    _dir: tempfile::TempDir,
}

impl Postgres {
    fn start(bin: &Path) -> Self {
        let dir = temp_dir("postgres");
        let root = running_as_root();
        if root {
            // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
            let chown = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(chown.success(), "chown postgres: {}", dir.path().display());
        }
        let data = dir.path().join("data");
        let initdb = as_postgres(&bin.join("initdb"), root, dir.path())
            .arg("-D")
            .arg(&data)
            .args([
                "--username=postgres",
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );
        let server = Peer::start(
            "postgres",
            // Fast shutdown: it ends its backends and frees its shared memory.
            Some("INT"),
            free_tcp_port,
            |port| {
                let mut command = as_postgres(&bin.join("postgres"), root, dir.path());
                command
                    .arg("-D")
                    .arg(&data)
                    .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
                    .arg(dir.path())
                    .args(["-c", "fsync=off"]);
                command
            },
            |peer| peer.output().contains("ready to accept connections"),
        );
        Self { server, _dir: dir }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.server.port))
    }
}

/// `program` run as the `postgres` user when we are root (with `setpriv`, which execs, so the
/// child's pid is the program's own and signals reach it), as ourselves otherwise.
fn as_postgres(program: &Path, root: bool, cwd: &Path) -> Command {
    let mut command = if root {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ]);
        command.arg(program);
        command
    } else {
        Command::new(program)
    };
    command.current_dir(cwd);
    command
}

/// Runs `commands` in one psql session to `addr`, stopping at the first error, and returns the
/// rows printed (unaligned, `|` between columns).
async fn psql(bin: &Path, addr: SocketAddr, commands: &[&str]) -> String {
    let mut command = tokio::process::Command::new(bin.join("psql"));
    command
        .args(["--no-psqlrc", "--quiet", "--no-align", "--tuples-only"])
        .args([
            "--set=ON_ERROR_STOP=1",
            "--username=postgres",
            "--dbname=postgres",
        ])
        .arg(format!("--host={}", addr.ip()))
        .arg(format!("--port={}", addr.port()))
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true);
    for sql in commands {
        command.arg("--command").arg(sql);
    }
    let out = tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("psql finished")
        .unwrap();
    assert!(
        out.status.success(),
        "psql {commands:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user; no unsafe geteuid needed.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

// ---------- 1 GiB each way ----------

/// Bytes sent each way.
const BULK: usize = 1 << 30;
/// Bytes per write and per check.
const BULK_CHUNK: usize = 1 << 20;

/// The client sends 1 GiB up while the server sends 1 GiB down, each side then half-closes; both
/// sides check every byte they read and the EOF after the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_each_way_arrives_intact_and_the_half_close_is_passed_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fulcrum = Fulcrum::start(&virtual_service(
        "bulk",
        "tcp",
        listener.local_addr().unwrap(),
        "",
    ));
    let vip = fulcrum.virtual_server_addr("bulk");
    let (up, down) = (1, 2);

    let started = Instant::now();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, write) = stream.into_split();
        tokio::join!(check_stream(read, up), send_stream(write, down));
    });
    let (read, write) = TcpStream::connect(vip).await.unwrap().into_split();
    let both = async {
        tokio::join!(send_stream(write, up), check_stream(read, down), async {
            server.await.unwrap()
        })
    };
    // Generous: a debug build on a loaded machine, yet a stalled relay fails instead of hanging.
    tokio::time::timeout(Duration::from_secs(180), both)
        .await
        .expect("the streams finished");
    let took = started.elapsed();
    eprintln!(
        "1 GiB each way through the virtual service in {took:.2?} ({:.0} MiB/s each way)",
        1024.0 / took.as_secs_f64()
    );
}

/// Writes stream `seed` ([`BULK`] bytes), then shuts the write side down.
async fn send_stream(mut to: OwnedWriteHalf, seed: u64) {
    let mut chunk = vec![0; BULK_CHUNK];
    for index in 0..(BULK / BULK_CHUNK) as u64 {
        fill_chunk(seed, index, &mut chunk);
        to.write_all(&chunk).await.unwrap();
    }
    to.shutdown().await.unwrap();
}

/// Reads stream `seed` and compares it chunk by chunk with what [`send_stream`] sent, then
/// expects EOF.
async fn check_stream(mut from: OwnedReadHalf, seed: u64) {
    let (mut got, mut expected) = (vec![0; BULK_CHUNK], vec![0; BULK_CHUNK]);
    for index in 0..(BULK / BULK_CHUNK) as u64 {
        from.read_exact(&mut got)
            .await
            .unwrap_or_else(|e| panic!("stream {seed}: chunk {index} cut short: {e}"));
        fill_chunk(seed, index, &mut expected);
        // Slice equality is a memcmp: cheap even in a debug build, unlike hashing each byte.
        assert!(got == expected, "stream {seed}: chunk {index} differs");
    }
    assert_eq!(
        from.read(&mut got).await.unwrap(),
        0,
        "stream {seed}: EOF after the last byte"
    );
}

/// Pseudo-random bytes (xorshift64*) whose length is no multiple of [`BULK_CHUNK`], so every
/// chunk is a different window of it.
static PATTERN: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut pattern = vec![0; BULK_CHUNK + 4099];
    for word in pattern.chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let bytes = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
    pattern
});

/// Chunk `index` of stream `seed`: a window of [`PATTERN`] that moves on with each chunk,
/// stamped with the stream and the chunk's index, so a lost, repeated or reordered chunk, or one
/// from the other direction, cannot pass for the right one.
fn fill_chunk(seed: u64, index: u64, chunk: &mut [u8]) {
    let pattern = &PATTERN[..];
    let start = (index as usize * BULK_CHUNK + seed as usize * 7919) % pattern.len();
    let first = chunk.len().min(pattern.len() - start);
    chunk[..first].copy_from_slice(&pattern[start..start + first]);
    let rest = chunk.len() - first;
    chunk[first..].copy_from_slice(&pattern[..rest]);
    chunk[..8].copy_from_slice(&index.to_le_bytes());
    chunk[8..16].copy_from_slice(&seed.to_le_bytes());
}

// ---------- DNS over a UDP virtual service, answered by dnsmasq ----------

/// The address dnsmasq gives every name under `example.test`.
const ANSWER: &str = "192.0.2.55";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_udp_reaches_dnsmasq_and_the_answers_come_back_from_the_virtual_address() {
    if !require_tool("dnsmasq") || !require_tool("dig") {
        return;
    }
    let dnsmasq = Dnsmasq::start();
    let fulcrum = Fulcrum::start(&virtual_service("dns", "udp", dnsmasq.addr(), ""));
    let vip = fulcrum.virtual_server_addr("dns");
    // dig ignores a reply from any address but the one it asked, so every answer below also
    // shows that it came back from the virtual address.

    // One after the other, each dig from its own source port: a new flow each time.
    for name in ["example.test", "www.example.test", "deep.www.example.test"] {
        assert_eq!(dig(vip, name, None).await, ANSWER, "{name}");
    }
    // Two queries from one source port: the second rides the flow the first opened.
    let port = free_udp_port();
    for name in ["a.example.test", "b.example.test"] {
        assert_eq!(
            dig(vip, name, Some(port)).await,
            ANSWER,
            "{name} from port {port}"
        );
    }
    // Eight clients at once.
    let mut clients = JoinSet::new();
    for i in 0..8 {
        clients.spawn(async move {
            let name = format!("client{i}.example.test");
            (dig(vip, &name, None).await, name)
        });
    }
    while let Some(done) = clients.join_next().await {
        let (answer, name) = done.unwrap();
        assert_eq!(answer, ANSWER, "{name}");
    }
}

/// dnsmasq answering `ANSWER` for `example.test` and its subdomains, with no upstream servers,
/// no hosts file and no configuration file of the machine.
struct Dnsmasq {
    server: Peer,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    fn start() -> Self {
        let dir = temp_dir("dnsmasq");
        let server = Peer::start(
            "dnsmasq",
            None,
            free_udp_port,
            |port| {
                let mut command = Command::new("dnsmasq");
                command
                    .args([
                        "--no-daemon",
                        "--conf-file=/dev/null",
                        "--no-resolv",
                        "--no-hosts",
                    ])
                    .arg(format!("--address=/example.test/{ANSWER}"))
                    .arg(format!("--port={port}"))
                    .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
                    // As root it would switch to an unprivileged user; nothing here needs that.
                    .args(["--user=root", "--log-facility=-"])
                    .arg(format!("--pid-file={}", dir.path().join("pid").display()));
                command
            },
            |peer| {
                let addr = SocketAddr::from(([127, 0, 0, 1], peer.port));
                dig_command(addr, "probe.example.test", None, 1)
                    .output()
                    .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == ANSWER)
            },
        );
        Self { server, _dir: dir }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.server.port))
    }
}

/// Asks `server` for `name`'s A record, once (no retry hides a lost datagram), and returns the
/// answer `dig +short` prints.
async fn dig(server: SocketAddr, name: &str, source_port: Option<u16>) -> String {
    let mut command = tokio::process::Command::from(dig_command(server, name, source_port, 5));
    command.kill_on_drop(true);
    let out = tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("dig finished")
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "dig {name} failed: {answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    answer
}

fn dig_command(server: SocketAddr, name: &str, source_port: Option<u16>, wait: u32) -> Command {
    let mut command = Command::new("dig");
    command
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args([name, "A", "+short", "+tries=1"])
        .arg(format!("+time={wait}"));
    if let Some(port) = source_port {
        command.args(["-b", &format!("127.0.0.1#{port}")]);
    }
    command
}

// ---------- Peers: daemons on free ports ----------

/// A daemon run for one test, stopped on drop.
struct Peer {
    name: &'static str,
    child: Child,
    port: u16,
    /// Its stdout and stderr lines, for readiness and for failure messages.
    output: Arc<Mutex<Vec<String>>>,
    /// A signal on which it stops cleanly; without one, or if it outlives [`PATIENCE`], it is
    /// killed.
    stop_signal: Option<&'static str>,
}

impl Peer {
    /// Starts `name` on a free loopback port from `pick_port`, with the command line
    /// `command(port)`, and waits until `ready`. A daemon that exits first (another process
    /// took the port between the pick and its bind) is started again on another port.
    fn start(
        name: &'static str,
        stop_signal: Option<&'static str>,
        pick_port: fn() -> u16,
        mut command: impl FnMut(u16) -> Command,
        ready: impl Fn(&Peer) -> bool,
    ) -> Peer {
        for _ in 0..5 {
            let port = pick_port();
            let mut child = command(port)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
            let output = Arc::new(Mutex::new(Vec::new()));
            collect(child.stdout.take().unwrap(), &output);
            collect(child.stderr.take().unwrap(), &output);
            let mut peer = Peer {
                name,
                child,
                port,
                output,
                stop_signal,
            };
            let deadline = Instant::now() + PATIENCE;
            loop {
                if ready(&peer) {
                    return peer;
                }
                if let Some(status) = peer.child.try_wait().unwrap() {
                    eprintln!(
                        "{name} on port {port} exited ({status}), trying another port: {}",
                        peer.output()
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} on port {port} is not ready: {}",
                    peer.output()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("{name} did not start on any of 5 ports")
    }

    /// Everything it printed so far.
    fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(signal) = self.stop_signal {
            let sent = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.child.id().to_string())
                .status();
            if sent.is_ok_and(|s| s.success()) {
                let deadline = Instant::now() + PATIENCE;
                while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                eprintln!("{} ignored SIG{signal}: killing it", self.name);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps the lines `from` prints in `into`, on a thread of its own.
fn collect(from: impl Read + Send + 'static, into: &Arc<Mutex<Vec<String>>>) {
    let into = Arc::clone(into);
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
}

fn temp_dir(peer: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("fulcrum-test-{peer}-"))
        .tempdir()
        .unwrap()
}

/// A TCP port free on 127.0.0.1 at the time of asking (the peers' configs bind that address;
/// `Peer::start` tries another port if one was taken meanwhile).
fn free_tcp_port() -> u16 {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A loopback port free for both UDP and TCP (dnsmasq binds both) at the time of asking.
fn free_udp_port() -> u16 {
    loop {
        let udp = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if StdTcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
