//! The NBD server against real clients (libnbd's `nbdinfo` and `nbdcopy`, QEMU's `qemu-img`)
//! and against a raw TCP client that sends what a well-behaved client would not.
//!
//! Each test starts an [`NbdServer`] on 127.0.0.1:0. A test whose tool is missing is skipped
//! with a message, except in CI (`CI` set), where `.ci/run` installs libnbd-bin and qemu-utils.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use fulcrum_storage::nbd::proto::{
    self, CMD_BLOCK_STATUS, CMD_DISC, CMD_FLAG_FUA, CMD_FLUSH, CMD_READ, CMD_TRIM, CMD_WRITE,
    CMD_WRITE_ZEROES, FLAG_READ_ONLY, IHAVEOPT, OPT_GO, OPT_SET_META_CONTEXT, OPT_STRUCTURED_REPLY,
    REP_ACK, REP_ERR_UNSUP, REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, REPLY_TYPE_ERROR,
    REPLY_TYPE_OFFSET_DATA, RequestHeader,
};
use fulcrum_storage::nbd::{Export, FileExport, MemExport, NbdServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;
const EPERM: u32 = 1;
const ESHUTDOWN: u32 = 108;

// ---------------------------------------------------------------------------------------------
// Real clients

#[tokio::test(flavor = "multi_thread")]
async fn nbdinfo_reports_size_and_flags() {
    if !require_tool("nbdinfo") {
        return;
    }
    for read_only in [false, true] {
        let (file, export) = file_export(16 << 20, read_only);
        let flags = export.flags();
        let server = start(export).await;
        let json = run(&["nbdinfo", "--json", &uri(&server)]).await;
        assert_eq!(
            field(&json, "export-size"),
            (16u64 << 20).to_string(),
            "{json}"
        );
        for (key, expected) in [
            ("is_read_only", flags.read_only),
            ("can_flush", flags.can_flush),
            ("can_fua", flags.can_fua),
            ("can_trim", flags.can_trim),
            ("can_zero", flags.can_write_zeroes),
            ("can_multi_conn", flags.can_multi_conn),
            ("is_rotational", flags.rotational),
            ("can_cache", false),
            ("can_fast_zero", false),
        ] {
            assert_eq!(field(&json, key), expected.to_string(), "{key} in {json}");
        }
        assert_eq!(
            field(&json, "block_size_maximum"),
            (32u64 << 20).to_string()
        );
        assert!(json.contains("base:allocation"), "{json}");
        server.stop().await;
        drop(file);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nbdinfo_lists_the_export() {
    if !require_tool("nbdinfo") {
        return;
    }
    let (_file, export) = file_export(1 << 20, false);
    let server = start(export).await;
    let base = format!("nbd://{}", server.local_addr());
    let list = run(&["nbdinfo", "--list", &base]).await;
    assert!(list.contains("export=\"vol\""), "{list}");
    // The empty name is the default export.
    let size = run(&["nbdinfo", "--size", &format!("{base}/")]).await;
    assert_eq!(size.trim(), (1u64 << 20).to_string());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nbdinfo_map_shows_base_allocation() {
    if !require_tool("nbdinfo") {
        return;
    }
    let export = Arc::new(MemExport::new(1 << 20));
    export
        .write(8192, bytes::Bytes::from(vec![1; 4096]), false)
        .await
        .unwrap();
    let server = NbdServer::start(listener().await, "vol", Arc::clone(&export)).unwrap();
    let map = run(&["nbdinfo", "--map", &uri(&server)]).await;
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            ["0", "8192", "2", "zero"],
            ["8192", "4096", "0", "data"],
            ["12288", "1036288", "2", "zero"],
        ],
        "{map}"
    );
    // The file export reports everything as data.
    server.stop().await;
    let (_file, export) = file_export(1 << 20, false);
    let server = start(export).await;
    let map = run(&["nbdinfo", "--map", &uri(&server)]).await;
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "1048576", "0", "data"]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn qemu_img_info_sees_the_export() {
    if !require_tool("qemu-img") {
        return;
    }
    let (_file, export) = file_export(8 << 20, false);
    let server = start(export).await;
    let info = run(&["qemu-img", "info", "--output=json", &uri(&server)]).await;
    assert_eq!(
        field(&info, "virtual-size"),
        (8u64 << 20).to_string(),
        "{info}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_64_mib_in_and_out_is_byte_identical() {
    if !require_tool("nbdcopy") || !require_tool("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.img");
    let mut random = vec![0u8; 64 << 20];
    getrandom::getrandom(&mut random).unwrap();
    // A zero stretch, so that the zeroing paths are taken too.
    random[(10 << 20)..(12 << 20)].fill(0);
    std::fs::write(&source, &random).unwrap();

    let (_file, export) = file_export(64 << 20, false);
    let server = start(export).await;
    let uri = uri(&server);
    let source_path = source.to_str().unwrap();
    run(&["nbdcopy", "--flush", source_path, &uri]).await;

    let by_nbdcopy = dir.path().join("nbdcopy.img");
    run(&["nbdcopy", &uri, by_nbdcopy.to_str().unwrap()]).await;
    assert_same(&random, &by_nbdcopy);

    let by_qemu = dir.path().join("qemu.img");
    run(&[
        "qemu-img",
        "convert",
        "-f",
        "raw",
        "-O",
        "raw",
        &uri,
        by_qemu.to_str().unwrap(),
    ])
    .await;
    assert_same(&random, &by_qemu);

    // And back in through qemu's writer, which uses write zeroes and FUA/flush its own way.
    let (_file2, export2) = file_export(64 << 20, false);
    let server2 = start(export2).await;
    let uri2 = self::uri(&server2);
    run(&[
        "qemu-img",
        "convert",
        "-n",
        "-f",
        "raw",
        "-O",
        "raw",
        source_path,
        &uri2,
    ])
    .await;
    let again = dir.path().join("again.img");
    run(&["nbdcopy", &uri2, again.to_str().unwrap()]).await;
    assert_same(&random, &again);

    let stats = server.stats();
    // nbdcopy zeroes (or skips) the zero stretch rather than writing it.
    assert!(
        (62 << 20..=64 << 20).contains(&stats.bytes_written),
        "{stats:?}"
    );
    assert!(stats.bytes_read >= 128 << 20, "{stats:?}");
    server.stop().await;
    server2.stop().await;
}

// Input: a sparse 96 MiB image, data only in its first and last MiB, copied in by nbdcopy,
// which zeroes each hole of its source with one WRITE_ZEROES, here 94 MiB long. Output: the
// copy succeeds and reads back identical. (A zeroing longer than the 32 MiB maximum block size
// was refused with EINVAL, and nbdcopy failed.)
#[tokio::test(flavor = "multi_thread")]
async fn nbdcopy_of_a_sparse_image_zeroes_its_long_holes() {
    if !require_tool("nbdcopy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("sparse.img");
    let size = 96u64 << 20;
    let mut expected = vec![0u8; size as usize];
    expected[..1 << 20].fill(0xA5);
    expected[(95 << 20)..].fill(0x5A);
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::create(&source).unwrap();
        file.set_len(size).unwrap();
        file.write_all_at(&expected[..1 << 20], 0).unwrap();
        file.write_all_at(&expected[(95 << 20)..], 95 << 20)
            .unwrap();
    }
    let (target, export) = file_export(size, false);
    // Garbage where the hole goes, so that only the zeroing makes it read back as zeroes.
    {
        use std::os::unix::fs::FileExt;
        target
            .as_file()
            .write_all_at(&vec![0xFF; 8 << 20], 40 << 20)
            .unwrap();
    }
    let server = start(export).await;
    run(&[
        "nbdcopy",
        "--flush",
        source.to_str().unwrap(),
        &uri(&server),
    ])
    .await;
    assert_same(&expected, target.path());
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// A raw client

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_the_right_errors_and_the_connection_survives() {
    let (_file, export) = file_export(1 << 20, false);
    let server = start(export).await;
    for structured in [false, true] {
        let mut c = Client::connect(server.local_addr(), structured).await;

        // A write past the end: ENOSPC, its data consumed.
        let e = c.write(1, (1 << 20) - 2, &[7; 4]).await;
        assert_eq!(e, ENOSPC);
        // A read past the end: EINVAL.
        assert_eq!(c.read(2, 1 << 20, 1).await.unwrap_err(), EINVAL);
        // An unknown command, and a flag no command takes.
        assert_eq!(c.simple_request(3, 42, 0, 0, 0).await, EINVAL);
        assert_eq!(c.simple_request(4, CMD_READ, 1 << 9, 0, 1).await, EINVAL);
        // A write longer than the maximum block size: EINVAL, all 33 MiB consumed.
        let big = vec![9u8; 33 << 20];
        assert_eq!(c.write(5, 0, &big).await, EINVAL);
        // Block status without a selected context.
        assert_eq!(
            c.simple_request(6, CMD_BLOCK_STATUS, 0, 0, 512).await,
            EINVAL
        );

        // Still in step: a write and read back.
        assert_eq!(c.write(7, 4096, b"hello").await, 0);
        assert_eq!(c.read(8, 4096, 5).await.unwrap(), b"hello");
        assert_eq!(c.simple_request(9, CMD_FLUSH, CMD_FLAG_FUA, 0, 0).await, 0);

        // A bad request magic: the server hangs up.
        c.stream.write_all(&[0xde; 28]).await.unwrap();
        assert_eq!(c.stream.read(&mut [0; 1]).await.unwrap(), 0);
    }
    assert_eq!(server.stats().protocol_errors, 2);
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_handshakes_are_refused_without_harm() {
    let (_file, export) = file_export(1 << 20, false);
    let server = start(export).await;

    // An unknown option is answered ERR_UNSUP and haggling goes on.
    let mut s = greet(server.local_addr()).await;
    s.write_all(&3u32.to_be_bytes()).await.unwrap();
    let (reply, _) = option(&mut s, 0xbeef, b"data").await;
    assert_eq!(reply, REP_ERR_UNSUP);
    let (reply, _) = option(&mut s, proto::OPT_STARTTLS, b"").await;
    assert_eq!(reply, REP_ERR_UNSUP);
    let (reply, servers) = option(&mut s, proto::OPT_LIST, b"").await;
    assert_eq!(reply, REP_ACK);
    assert_eq!(servers, [(proto::REP_SERVER, b"\0\0\0\x03vol".to_vec())]);

    // Unknown client flags, bad option magic, garbage: the server hangs up.
    for garbage in [
        &[0, 0, 0, 0x10][..],
        &[0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9, 9],
    ] {
        let mut s = greet(server.local_addr()).await;
        s.write_all(garbage).await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
    // A client that hangs up mid-handshake.
    drop(greet(server.local_addr()).await);
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_export_refuses_writes_with_eperm() {
    let (_file, export) = file_export(1 << 20, true);
    let server = start(export).await;
    for structured in [false, true] {
        let mut c = Client::connect(server.local_addr(), structured).await;
        assert_ne!(c.flags & FLAG_READ_ONLY, 0);
        assert_eq!(c.write(1, 0, b"nope").await, EPERM);
        assert_eq!(c.simple_request(3, CMD_TRIM, 0, 0, 4).await, EPERM);
        assert_eq!(c.simple_request(4, CMD_WRITE_ZEROES, 0, 0, 4).await, EPERM);
        assert_eq!(c.read(2, 0, 4).await.unwrap(), [0; 4]);
        c.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_all_answered_by_cookie() {
    let export = Arc::new(MemExport::new(1 << 20));
    let pattern: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    export
        .write(0, pattern.clone().into(), false)
        .await
        .unwrap();
    let server = NbdServer::start(listener().await, "vol", export).unwrap();
    for structured in [false, true] {
        let mut c = Client::connect(server.local_addr(), structured).await;
        // More than MAX_IN_FLIGHT, all sent before any reply is read.
        let n = 200u64;
        let mut wire = Vec::new();
        let mut lengths = HashMap::new();
        for cookie in 0..n {
            let (offset, length) = (cookie * 4000, 1000 + (cookie as u32 % 7) * 100);
            wire.extend_from_slice(&header(cookie, CMD_READ, 0, offset, length));
            lengths.insert(cookie, (offset, length));
        }
        c.stream.write_all(&wire).await.unwrap();
        let mut seen = HashMap::new();
        for _ in 0..n {
            let reply = c.reply(&lengths).await;
            assert_eq!(reply.error, 0);
            assert!(
                seen.insert(reply.cookie, reply.data).is_none(),
                "cookie answered twice"
            );
        }
        for (cookie, (offset, length)) in lengths {
            let start = offset as usize;
            assert_eq!(seen[&cookie], pattern[start..start + length as usize]);
        }
        c.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn block_status_answers_with_the_selected_context() {
    let export = Arc::new(MemExport::new(1 << 20));
    export
        .write(4096, vec![1; 4096].into(), false)
        .await
        .unwrap();
    let server = NbdServer::start(listener().await, "vol", export).unwrap();
    let mut c = Client::connect_with_meta(server.local_addr()).await;
    c.stream
        .write_all(&header(1, CMD_BLOCK_STATUS, 0, 0, 3 * 4096))
        .await
        .unwrap();
    let (flags, kind, cookie, payload) = c.chunk().await;
    assert_eq!(
        (flags, kind, cookie),
        (REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, 1)
    );
    let words: Vec<u32> = payload
        .chunks(4)
        .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
        .collect();
    assert_eq!(words, [c.context.unwrap(), 4096, 2, 4096, 0, 4096, 2]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_answers_in_flight_requests_then_closes() {
    let (_file, export) = file_export(4 << 20, false);
    let server = start(export).await;
    let mut c = Client::connect(server.local_addr(), true).await;
    let mut wire = Vec::new();
    let mut lengths = HashMap::new();
    for cookie in 0..8u64 {
        wire.extend_from_slice(&header(cookie, CMD_READ, 0, cookie << 19, 1 << 19));
        lengths.insert(cookie, (cookie << 19, 1 << 19));
    }
    c.stream.write_all(&wire).await.unwrap();
    // Wait until the server has them all, then stop while they may still be running.
    let first = c.reply(&lengths).await;
    assert_eq!(first.error, 0);
    assert_eq!(server.connections(), 1);
    let addr = server.local_addr();
    let stop = tokio::spawn(server.stop());
    for _ in 1..8 {
        assert_eq!(c.reply(&lengths).await.error, 0);
    }
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    stop.await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

// Input: three 32 MiB reads sent without reading the replies, so that the third waits for
// room (64 MiB of data in flight at most), then the server stops. Output: three replies, the
// third one ESHUTDOWN, then the end. (The third was dropped without a reply.)
#[tokio::test(flavor = "multi_thread")]
async fn stop_answers_a_request_waiting_for_room() {
    let (_file, export) = file_export(96 << 20, false);
    let server = start(export).await;
    let mut c = Client::connect(server.local_addr(), true).await;
    let mut wire = Vec::new();
    let mut lengths = HashMap::new();
    for cookie in 0..3u64 {
        wire.extend_from_slice(&header(cookie, CMD_READ, 0, cookie << 25, 32 << 20));
        lengths.insert(cookie, (cookie << 25, 32 << 20));
    }
    c.stream.write_all(&wire).await.unwrap();
    // The first two are read and answered into the socket's buffers; the third waits.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stop = tokio::spawn(server.stop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut errors = HashMap::new();
    for _ in 0..3 {
        let reply = c.reply(&lengths).await;
        errors.insert(reply.cookie, reply.error);
    }
    assert_eq!(errors, HashMap::from([(0, 0), (1, 0), (2, ESHUTDOWN)]));
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    stop.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_ends_a_session_whose_client_does_not_read_its_replies() {
    let (_file, export) = file_export(64 << 20, false);
    let server = start(export).await;
    let c = Client::connect(server.local_addr(), true).await;
    // Far more reply data than the socket buffers hold, and a client that never reads.
    let mut wire = Vec::new();
    for cookie in 0..4u64 {
        wire.extend_from_slice(&header(cookie, CMD_READ, 0, cookie << 24, 16 << 20));
    }
    let mut stream = c.stream;
    stream.write_all(&wire).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // A demotion waits for this: it ends after the grace, not never.
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(30), server.stop()).await;
    assert!(
        stopped.is_ok(),
        "stop still waits for a client that does not read"
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_requests_are_held_back_when_their_replies_are_not_read() {
    let export = Arc::new(MemExport::new(1 << 20));
    let server = NbdServer::start(listener().await, "vol", export).unwrap();
    let c = Client::connect(server.local_addr(), true).await;
    let mut stream = c.stream;
    // Requests the server refuses (CACHE, command 5, is not offered), never reading a reply:
    // the server stops reading them once its requests in flight are used up, instead of
    // queueing a refusal for each in memory, so the client's writes stall.
    let one = header(1, 5, 0, 0, 4096);
    let batch: Vec<u8> = std::iter::repeat_n(one, 4096).flatten().collect();
    let sent = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        for _ in 0..1024 {
            stream.write_all(&batch).await.unwrap();
        }
    })
    .await;
    assert!(
        sent.is_err(),
        "4 million refused requests were all taken in"
    );
    drop(stream);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_limit_wait_until_one_ends() {
    let server =
        NbdServer::start(listener().await, "vol", Arc::new(MemExport::new(1 << 20))).unwrap();
    let mut held = Vec::new();
    for _ in 0..fulcrum_storage::nbd::MAX_CONNECTIONS {
        held.push(greet(server.local_addr()).await);
    }
    // One more: connected by the kernel, but not greeted while the others are held.
    let mut extra = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut greeting = [0; 18];
    let early = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        extra.read_exact(&mut greeting),
    )
    .await;
    assert!(early.is_err(), "a connection past the limit was served");
    drop(held.pop());
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        extra.read_exact(&mut greeting),
    )
    .await
    .expect("still waiting after a connection ended")
    .unwrap();
    assert_eq!(&greeting[..8], b"NBDMAGIC");
    drop(held);
    server.stop().await;
}

// Input: a client that connects, takes the greeting and goes silent. Output: the server's side
// of the connection runs TCP keepalive probes, the first within 60 s, as /proc/net/tcp shows
// (timer 2, keepalive). (It had no timer at all: a client that vanished held its slot, one of
// 64, forever.)
#[tokio::test]
async fn an_idle_connection_is_probed_by_tcp_keepalive() {
    let server =
        NbdServer::start(listener().await, "vol", Arc::new(MemExport::new(1 << 20))).unwrap();
    let client = greet(server.local_addr()).await;
    let (local, remote) = (server.local_addr(), client.local_addr().unwrap());
    let hex = |a: SocketAddr| format!("0100007F:{:04X}", a.port());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let row = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[1] == hex(local) && f[2] == hex(remote))
        .unwrap_or_else(|| panic!("no server-side socket for {remote} in\n{table}"));
    // `tr:tm->when`: the timer, and clock ticks until it fires.
    let (timer, when) = row[5].split_once(':').unwrap();
    let ticks = u64::from_str_radix(when, 16).unwrap();
    let hz = 100; // USER_HZ, which /proc/net/tcp counts in on Linux
    assert_eq!(timer, "02", "no keepalive timer: {row:?}");
    assert!(ticks <= 60 * hz, "first probe in {ticks} ticks: {row:?}");
    drop(client);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn require_tool(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
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

fn file_export(size: u64, read_only: bool) -> (tempfile::NamedTempFile, FileExport) {
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(size).unwrap();
    let export = FileExport::open(file.path(), read_only).unwrap();
    (file, export)
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

async fn start(export: FileExport) -> NbdServer {
    NbdServer::start(listener().await, "vol", Arc::new(export)).unwrap()
}

fn uri(server: &NbdServer) -> String {
    format!("nbd://{}/vol", server.local_addr())
}

/// Runs a client tool; it must succeed. Returns its stdout.
async fn run(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The value of `"key": value` in JSON output, as text.
fn field(json: &str, key: &str) -> String {
    let needle = format!("\"{key}\":");
    let start = json
        .find(&needle)
        .unwrap_or_else(|| panic!("{key} not in {json}"))
        + needle.len();
    json[start..]
        .trim_start()
        .split([',', '\n', '}'])
        .next()
        .unwrap()
        .trim()
        .to_owned()
}

fn assert_same(expected: &[u8], path: &Path) {
    let got = std::fs::read(path).unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "{} differs from the source",
        path.display()
    );
}

/// The server still completes a handshake and a read for a new client.
async fn still_serves(server: &NbdServer) {
    let mut c = Client::connect(server.local_addr(), false).await;
    assert_eq!(c.read(1, 0, 16).await.map(|d| d.len()), Ok(16));
    c.disconnect().await;
}

fn header(cookie: u64, command: u16, flags: u16, offset: u64, length: u32) -> [u8; 28] {
    RequestHeader {
        flags,
        command,
        cookie,
        offset,
        length,
    }
    .encode()
}

/// Connects and reads the greeting.
async fn greet(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut greeting = [0; 18];
    s.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting[..8], b"NBDMAGIC");
    assert_eq!(&greeting[8..16], b"IHAVEOPT");
    assert_eq!(u16::from_be_bytes([greeting[16], greeting[17]]), 3);
    s
}

/// Sends an option; returns the final reply type and the (type, data) of the replies before it.
async fn option(s: &mut TcpStream, option: u32, data: &[u8]) -> (u32, Vec<(u32, Vec<u8>)>) {
    let mut msg = IHAVEOPT.to_be_bytes().to_vec();
    msg.extend_from_slice(&option.to_be_bytes());
    msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
    msg.extend_from_slice(data);
    s.write_all(&msg).await.unwrap();
    let mut before = Vec::new();
    loop {
        let mut head = [0; 20];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(
            u64::from_be_bytes(head[..8].try_into().unwrap()),
            proto::OPTION_REPLY_MAGIC
        );
        assert_eq!(u32::from_be_bytes(head[8..12].try_into().unwrap()), option);
        let reply = u32::from_be_bytes(head[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(head[16..20].try_into().unwrap());
        let mut data = vec![0; len as usize];
        s.read_exact(&mut data).await.unwrap();
        // Multi-reply options (LIST, INFO, GO, the meta contexts) end with ACK or an error.
        if reply == REP_ACK || reply & 0x8000_0000 != 0 {
            return (reply, before);
        }
        before.push((reply, data));
    }
}

struct Reply {
    cookie: u64,
    error: u32,
    data: Vec<u8>,
}

struct Client {
    stream: TcpStream,
    structured: bool,
    flags: u16,
    context: Option<u32>,
}

impl Client {
    async fn connect(addr: SocketAddr, structured: bool) -> Client {
        Client::handshake(addr, structured, false).await
    }

    async fn connect_with_meta(addr: SocketAddr) -> Client {
        Client::handshake(addr, true, true).await
    }

    async fn handshake(addr: SocketAddr, structured: bool, meta: bool) -> Client {
        let mut stream = greet(addr).await;
        stream.write_all(&3u32.to_be_bytes()).await.unwrap();
        let mut context = None;
        if structured {
            assert_eq!(
                option(&mut stream, OPT_STRUCTURED_REPLY, b"").await.0,
                REP_ACK
            );
        }
        if meta {
            let mut data = 3u32.to_be_bytes().to_vec();
            data.extend_from_slice(b"vol");
            data.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(&15u32.to_be_bytes());
            data.extend_from_slice(b"base:allocation");
            let (reply, contexts) = option(&mut stream, OPT_SET_META_CONTEXT, &data).await;
            assert_eq!(reply, REP_ACK);
            context = Some(u32::from_be_bytes(contexts[0].1[..4].try_into().unwrap()));
        }
        let mut data = 3u32.to_be_bytes().to_vec();
        data.extend_from_slice(b"vol");
        data.extend_from_slice(&0u16.to_be_bytes());
        let (reply, infos) = option(&mut stream, OPT_GO, &data).await;
        assert_eq!(reply, REP_ACK);
        let export = infos
            .iter()
            .find(|(_, d)| d[..2] == [0, 0])
            .expect("INFO_EXPORT");
        let flags = u16::from_be_bytes(export.1[10..12].try_into().unwrap());
        Client {
            stream,
            structured,
            flags,
            context,
        }
    }

    async fn write(&mut self, cookie: u64, offset: u64, data: &[u8]) -> u32 {
        let mut wire = header(cookie, CMD_WRITE, 0, offset, data.len() as u32).to_vec();
        wire.extend_from_slice(data);
        self.stream.write_all(&wire).await.unwrap();
        let reply = self.reply(&HashMap::new()).await;
        assert_eq!(reply.cookie, cookie);
        reply.error
    }

    async fn read(&mut self, cookie: u64, offset: u64, length: u32) -> Result<Vec<u8>, u32> {
        self.stream
            .write_all(&header(cookie, CMD_READ, 0, offset, length))
            .await
            .unwrap();
        let reply = self
            .reply(&HashMap::from([(cookie, (offset, length))]))
            .await;
        assert_eq!(reply.cookie, cookie);
        if reply.error == 0 {
            Ok(reply.data)
        } else {
            Err(reply.error)
        }
    }

    async fn simple_request(
        &mut self,
        cookie: u64,
        command: u16,
        flags: u16,
        offset: u64,
        length: u32,
    ) -> u32 {
        self.stream
            .write_all(&header(cookie, command, flags, offset, length))
            .await
            .unwrap();
        // A refused read carries no data.
        let reply = self.reply(&HashMap::new()).await;
        assert_eq!(reply.cookie, cookie);
        reply.error
    }

    async fn disconnect(mut self) {
        self.stream
            .write_all(&header(0, CMD_DISC, 0, 0, 0))
            .await
            .unwrap();
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    /// One whole reply; `reads` gives the length of successful simple read replies by cookie.
    async fn reply(&mut self, reads: &HashMap<u64, (u64, u32)>) -> Reply {
        if !self.structured {
            let mut head = [0; 16];
            self.stream.read_exact(&mut head).await.unwrap();
            assert_eq!(
                u32::from_be_bytes(head[..4].try_into().unwrap()),
                proto::SIMPLE_REPLY_MAGIC
            );
            let error = u32::from_be_bytes(head[4..8].try_into().unwrap());
            let cookie = u64::from_be_bytes(head[8..16].try_into().unwrap());
            let mut data = Vec::new();
            if error == 0
                && let Some((_, length)) = reads.get(&cookie)
            {
                data = vec![0; *length as usize];
                self.stream.read_exact(&mut data).await.unwrap();
            }
            return Reply {
                cookie,
                error,
                data,
            };
        }
        let mut data = Vec::new();
        let mut error = 0;
        loop {
            let (flags, kind, cookie, payload) = self.chunk().await;
            match kind {
                REPLY_TYPE_OFFSET_DATA => data.extend_from_slice(&payload[8..]),
                REPLY_TYPE_ERROR => error = u32::from_be_bytes(payload[..4].try_into().unwrap()),
                _ => {}
            }
            if flags & REPLY_FLAG_DONE != 0 {
                return Reply {
                    cookie,
                    error,
                    data,
                };
            }
        }
    }

    /// One structured chunk, or a simple reply read as a chunk of type 0 (error in payload).
    async fn chunk(&mut self) -> (u16, u16, u64, Vec<u8>) {
        let mut magic = [0; 4];
        self.stream.read_exact(&mut magic).await.unwrap();
        if u32::from_be_bytes(magic) == proto::SIMPLE_REPLY_MAGIC {
            let mut rest = [0; 12];
            self.stream.read_exact(&mut rest).await.unwrap();
            let cookie = u64::from_be_bytes(rest[4..12].try_into().unwrap());
            let error = u32::from_be_bytes(rest[..4].try_into().unwrap());
            let kind = if error == 0 { 0 } else { REPLY_TYPE_ERROR };
            return (REPLY_FLAG_DONE, kind, cookie, rest[..4].to_vec());
        }
        assert_eq!(u32::from_be_bytes(magic), proto::STRUCTURED_REPLY_MAGIC);
        let mut head = [0; 16];
        self.stream.read_exact(&mut head).await.unwrap();
        let flags = u16::from_be_bytes(head[..2].try_into().unwrap());
        let kind = u16::from_be_bytes(head[2..4].try_into().unwrap());
        let cookie = u64::from_be_bytes(head[4..12].try_into().unwrap());
        let len = u32::from_be_bytes(head[12..16].try_into().unwrap());
        let mut payload = vec![0; len as usize];
        self.stream.read_exact(&mut payload).await.unwrap();
        (flags, kind, cookie, payload)
    }
}
